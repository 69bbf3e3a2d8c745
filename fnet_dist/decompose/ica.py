"""ICA kernels on plain arrays (float32, one BLAS thread friendly); no I/O, no Dask.

Tokens are prepared (``standardize``, ``centre``) and sources measured (``peak_token_share``) by
``fnet_dist.core.signals``, which the match stage and the report share.

- ``sum_of_squares(X)``: Σ x² of a 2-D array as a float64, without a float64 copy of ``X``.
- ``pca(X, k, seed=, solver=, n_iter=)``: ``PCAResult(u, s, vt, explained_variance_ratio)``.
- ``whiten(P)``: centre the rows of a ``(k, n)`` array over its columns and whiten them.
- ``fastica(Z, seed=, fun=, max_iter=, tol=)``: symmetric FastICA on whitened ``(k, n)`` data.
- ``picard_o(Z, seed=, fun=, max_iter=, tol=)``: Picard-O (preconditioned L-BFGS under orthogonality) on the same
  data; it reaches FastICA's fixed points and stops on FastICA's own criterion. ``ica(Z, algorithm=, ...)`` picks one.
- ``unmix(pcs, seed=, ...)`` / ``spatial_ica(X, k, seed=, ...)``: PCA'd or standardised tokens × neurons → ``Unmixed``
  (spatial ICA: independent maps over neurons).
- ``unmix_temporal(pcs, ...)`` / ``temporal_ica(X, k, ...)``: PCA'd or raw tokens × neurons → ``Unmixed`` (temporal
  ICA: independent sources over tokens, maps = the mixing matrix's columns; the paper code's first version).
- ``zscore_rows``, ``flip_peak_positive``, ``best_match_correlation``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.signals import centre, standardize

__all__ = [
    "ALGORITHMS", "FUNCTIONS", "METHODS", "SOLVERS", "ICAResult", "PCAResult", "Unmixed", "best_match_correlation",
    "fastica", "flip_peak_positive", "ica", "ica_maps", "pca", "picard_o", "spatial_ica", "sum_of_squares",
    "temporal_ica", "unmix", "unmix_temporal", "whiten", "zscore_rows",
]

FUNCTIONS = ("cube", "logcosh", "exp")
SOLVERS = ("auto", "full", "randomized")
ALGORITHMS = ("picard", "fastica")
_EPS = np.float32(1e-12)


def sum_of_squares(X) -> float:
    """Σ x² over a 2-D array (rows, cols): each row's sum in the array's dtype, the rows' total in float64,
    so no float64 copy of ``X`` is ever made (a worker with little memory holds one block and its row sums)."""
    X = np.asarray(X)
    return float(np.einsum("ij,ij->i", X, X).sum(dtype=np.float64))


@dataclass(frozen=True)
class PCAResult:
    """``X ≈ u @ diag(s) @ vt``: u (n_rows, k), s (k,), vt (k, n_cols); explained_variance_ratio (k,)."""

    u: np.ndarray
    s: np.ndarray
    vt: np.ndarray
    explained_variance_ratio: np.ndarray


def _pca_full(X: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact truncated SVD through the smaller Gram matrix (cheap when one side is short)."""
    wide = X.shape[0] <= X.shape[1]
    gram = X @ X.T if wide else X.T @ X
    values, vectors = np.linalg.eigh(gram.astype(np.float64))
    order = np.argsort(values)[::-1][:k]
    s = np.sqrt(np.clip(values[order], 0.0, None))
    vecs = vectors[:, order].astype(np.float32)
    inv = np.divide(1.0, s, out=np.zeros_like(s), where=s > 1e-10 * max(s[0], 1e-30)).astype(np.float32)
    if wide:
        return vecs, s.astype(np.float32), (vecs.T @ X) * inv[:, None]
    return (X @ vecs) * inv[None, :], s.astype(np.float32), vecs.T


def pca(X, k: int, *, seed: int, solver: str = "auto", n_iter: int = 4) -> PCAResult:
    """Truncated PCA of an already centred ``X`` (n_rows, n_cols) to ``k`` components.

    solver "full" is exact (eigendecomposition of the smaller Gram matrix); "randomized" is Halko et al.
    with ``n_iter`` power iterations and ``seed``; "auto" takes "full" when the smaller side is ≤ 2048.
    Signs are fixed (largest |u| entry positive) so results do not depend on the LAPACK build.
    """
    X = np.asarray(X, dtype=np.float32)
    if solver == "auto":
        solver = "full" if min(X.shape) <= 2048 else "randomized"
    if solver == "full":
        u, s, vt = _pca_full(X, k)
    else:
        from sklearn.utils.extmath import randomized_svd  # imported here: workers on "full" stay lighter

        u, s, vt = randomized_svd(X, k, n_iter=n_iter, random_state=seed)
        u, s, vt = u.astype(np.float32), s.astype(np.float32), vt.astype(np.float32)
    signs = np.sign(u[np.abs(u).argmax(axis=0), np.arange(u.shape[1])])
    signs[signs == 0] = 1
    total = sum_of_squares(X)
    ratio = (s.astype(np.float64) ** 2) / total if total > 0 else np.zeros(len(s))
    return PCAResult(u * signs, s, vt * signs[:, None], ratio)


def whiten(P) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centre the rows of ``P`` (k, n) over its n columns and whiten them.

    Returns ``(Z, K, mean)``: Z = K @ (P - mean) of shape (k, n) with identity covariance, K (k, k)
    the whitening matrix, mean (k, 1). Directions of zero variance are dropped (Z may have fewer rows).
    """
    P = np.asarray(P, dtype=np.float32)
    mean = P.mean(axis=1, keepdims=True, dtype=np.float64).astype(np.float32)
    centred = P - mean
    cov = (centred @ centred.T).astype(np.float64) / P.shape[1]
    values, vectors = np.linalg.eigh(cov)
    keep = values > 1e-10 * max(values.max(initial=0.0), 1e-30)
    K = (vectors[:, keep] / np.sqrt(values[keep])).T.astype(np.float32)
    return K @ centred, K, mean


def _contrast(fun: str):
    """``g(u) -> (g(u), mean g'(u) per row)`` for a contrast G with g = G' (cube: u⁴/4, logcosh: log cosh u,
    exp: −exp(−u²/2); FastICA's and Picard's, α = 1), written with multiplications only."""
    if fun == "cube":
        def g(u):
            u2 = u * u
            return u2 * u, 3.0 * u2.mean(axis=1)
    elif fun == "logcosh":
        def g(u):
            t = np.tanh(u)
            return t, (1.0 - t * t).mean(axis=1)
    elif fun == "exp":
        def g(u):
            u2 = u * u
            e = np.exp(-0.5 * u2)
            return u * e, ((1.0 - u2) * e).mean(axis=1)
    else:
        raise ValueError(f"unknown contrast {fun!r}; expected one of {FUNCTIONS}")
    return g


def _contrast_mean(fun: str):
    """``G(u)`` averaged over each row of ``u`` (k, n) in float64 (up to a constant): the loss Picard-O lowers."""
    if fun == "cube":
        def G(u):
            u2 = u * u
            return np.mean(u2 * u2, axis=1, dtype=np.float64) / 4.0
    elif fun == "logcosh":
        def G(u):  # log cosh u + log 2 = |u| + log(1 + exp(−2|u|)), never overflowing; log, not log1p: 2x faster
            a = np.abs(u)
            e = np.exp(-2.0 * a)
            e += 1.0
            np.log(e, out=e)
            e += a
            return np.mean(e, axis=1, dtype=np.float64)
    elif fun == "exp":
        def G(u):
            return -np.mean(np.exp(-0.5 * (u * u)), axis=1, dtype=np.float64)
    else:
        raise ValueError(f"unknown contrast {fun!r}; expected one of {FUNCTIONS}")
    return G


def _sym_decorrelation(W: np.ndarray) -> np.ndarray:
    """``(W W^T)^{-1/2} W``: the nearest orthogonal matrix (paper eq. 10), in float64 (returned in W's dtype).

    float64 because a near-singular ``W W^T`` (a near-Gaussian row under the cube contrast) in float32 gives a
    matrix that is not orthogonal, and FastICA then diverges to NaN.
    """
    W64 = np.asarray(W, dtype=np.float64)
    values, vectors = np.linalg.eigh(W64 @ W64.T)
    values = np.clip(values, 1e-30, None)
    return (((vectors / np.sqrt(values)) @ vectors.T) @ W64).astype(np.asarray(W).dtype)


@dataclass(frozen=True)
class ICAResult:
    """FastICA output: unmixing W (k, k) with sources W @ Z; iterations run, last change (the largest of
    ``row_change``, each row's |1 − |w_new · w_old|| at the last iteration), converged."""

    W: np.ndarray
    n_iter: int
    change: float
    converged: bool
    row_change: np.ndarray


def fastica(Z, *, seed: int, fun: str, max_iter: int, tol: float, w_init: np.ndarray | None = None) -> ICAResult:
    """Symmetric (parallel) FastICA on whitened data ``Z`` (k, n): rows are mixtures, columns observations.

    Fixed point W ← E[g(WZ) Z^T] − diag(E[g'(WZ)]) W, then symmetric decorrelation, until
    max |1 − |diag(W_new W^T)|| < ``tol`` (scikit-learn's criterion) or ``max_iter``.
    ``w_init`` (k, k) defaults to a standard normal matrix drawn from ``seed``.
    """
    Z = np.asarray(Z, dtype=np.float32)
    k, n = Z.shape
    g = _contrast(fun)
    if w_init is None:
        w_init = np.random.default_rng(seed).standard_normal((k, k))
    W = _sym_decorrelation(np.asarray(w_init, dtype=np.float32))
    rows = np.full(k, np.inf)
    for it in range(1, max_iter + 1):
        gwz, g_prime = g(W @ Z)
        W_new = _sym_decorrelation((gwz @ Z.T) / np.float32(n) - g_prime[:, None].astype(np.float32) * W)
        rows = np.abs(np.abs(np.einsum("ij,ij->i", W_new, W)) - 1.0).astype(np.float64)
        W = W_new
        if rows.max() < tol:
            return ICAResult(W, it, float(rows.max()), True, rows)
    return ICAResult(W, max_iter, float(rows.max()), False, rows)


def _fixed_point_change(grad: np.ndarray, g_mean: np.ndarray) -> np.ndarray:
    """Each row's |1 − |w_new · w|| for one FastICA step from an orthogonal W, from ``grad`` = E[g(WZ) (WZ)ᵀ] (k, k)
    and ``g_mean`` = E[g'(WZ)] (k,): W_new Wᵀ = (M Mᵀ)^{-1/2} M with M = grad − diag(g_mean) (no pass over Z)."""
    step = _sym_decorrelation(grad - np.diag(g_mean))
    return np.abs(np.abs(np.diag(step)) - 1.0)


def _lbfgs_direction(grad, h, memory) -> np.ndarray:
    """Picard-O's search direction (k, k), skew-symmetric: L-BFGS two-loop recursion on the skew gradient with the
    diagonal Hessian approximation ``h`` as the initial inverse; ``memory`` holds (step, gradient change, 1/(s·y))."""
    q, alphas = grad.copy(), []
    for s, y, r in reversed(memory):
        alphas.append(r * np.sum(s * q))
        q -= alphas[-1] * y
    z = q / h
    z = (z - z.T) / 2.0
    for (s, y, r), alpha in zip(memory, reversed(alphas)):
        z += (alpha - r * np.sum(y * z)) * s
    return -z


def _line_search(Z, W, loss, direction, signs, G, tries: int):
    """Backtracking along ``expm(α · direction) W`` from α = 1, halving ``tries`` times: the first rotation that lowers
    Σ signs · E[G(WZ)] wins. Returns (found, W (float64), sources (k, n) float32, loss, the step α · direction).

    ``direction`` is skew-symmetric, so ``1j · direction`` = V Λ Vᴴ is Hermitian and expm(α · direction) =
    V exp(−iαΛ) Vᴴ: one eigendecomposition per search, not one matrix exponential per try (scipy's expm slows
    down on the long steps Picard-O tries first).
    """
    lam, V = np.linalg.eigh(1j * direction)
    Vh = V.conj().T
    alpha = 1.0
    for _ in range(tries):
        W_new = ((V * np.exp(-1j * alpha * lam)) @ Vh).real @ W
        Y_new = W_new.astype(np.float32) @ Z
        new_loss = float(signs @ G(Y_new))
        if np.isfinite(new_loss) and new_loss < loss:
            return True, W_new, Y_new, new_loss, alpha * direction
        alpha /= 2.0
    return False, W_new, Y_new, new_loss, alpha * direction


def picard_o(Z, *, seed: int, fun: str, max_iter: int, tol: float, w_init: np.ndarray | None = None, memory: int = 7,
             ls_tries: int = 10, lambda_min: float = 0.01, extended: bool = False) -> ICAResult:
    """Picard-O (Ablin, Cardoso & Gramfort 2018; python-picard's ``picard(ortho=True)``) on whitened data ``Z``
    (k, n): L-BFGS over rotations, preconditioned by a diagonal Hessian approximation, with backtracking.

    Sources are modelled super-Gaussian (sparse maps: logcosh and exp lowered, cube's kurtosis raised); ``extended``
    gives each component the sign of its own non-Gaussianity instead (python-picard's default, sub-Gaussian sources
    too; on LLM activations it settles on near-Gaussian components, see benchmarks/convergence.py). It stops when
    FastICA's own criterion (max |1 − |w_new · w|| of one fixed-point step, ``fastica``'s) is below ``tol``,
    measured on the returned W, i.e. at a fixed point of symmetric FastICA: ``converged`` means the same for both
    algorithms. Float32 data, float64 k × k algebra; ``w_init`` (k, k) defaults to the same draw from
    ``seed`` as ``fastica``'s. ``n_iter``: gradient evaluations. Unlike python-picard: a memory pair with
    non-positive curvature (s · y ≤ 0) is not stored; when no rotation lowers the loss (stalled), components that
    are sub-Gaussian there take their own sign and the search goes on, and with none it stops (not converged: a
    stationary point of the super-Gaussian model that is no FastICA fixed point, e.g. a saddle).
    """
    Z = np.asarray(Z, dtype=np.float32)
    k, n = Z.shape
    g, G = _contrast(fun), _contrast_mean(fun)
    if w_init is None:
        w_init = np.random.default_rng(seed).standard_normal((k, k))
    W = _sym_decorrelation(np.asarray(w_init, dtype=np.float64))
    Y = W.astype(np.float32) @ Z
    signs, loss, pairs = np.full(k, -1.0 if fun == "cube" else 1.0), None, []  # super-Gaussian for each contrast
    step = previous = None
    stalled = False
    for it in range(max_iter + 1):
        psi, g_mean = g(Y)
        grad = (psi @ Y.T).astype(np.float64) / n
        g_mean = np.asarray(g_mean, dtype=np.float64)
        rows = _fixed_point_change(grad, g_mean)
        # each component's own sign, that of E[g'(y)] − E[g(y) y]: + super-, − sub-Gaussian (logcosh; cube reversed)
        own = np.where(g_mean - np.diag(grad) >= 0, 1.0, -1.0)
        if rows.max() < tol or it == max_iter or (stalled and np.array_equal(own, signs)):
            return ICAResult(W.astype(np.float32), it, float(rows.max()), bool(rows.max() < tol), rows)
        new_signs = own if extended or stalled else signs  # stalled: give a sub-Gaussian component its own sign
        flipped = it > 0 and bool(np.any(new_signs != signs))
        signs = new_signs
        grad *= signs[:, None]
        g_mean = g_mean * signs
        h_off = np.diag(grad).copy()
        h = 0.5 * (g_mean[:, None] + g_mean[None, :] - h_off[:, None] - h_off[None, :])
        h[h < lambda_min] = lambda_min
        skew = (grad - grad.T) / 2.0
        if step is not None:
            change = skew - previous
            curvature = float(np.sum(step * change))
            if curvature > 0:
                pairs = (pairs + [(step, change, 1.0 / curvature)])[-memory:]
        previous = skew
        if flipped or loss is None:  # a new sign pattern is a new loss: forget the curvature pairs
            pairs = [] if flipped else pairs
            loss = float(signs @ G(Y))
        direction = _lbfgs_direction(skew, h, pairs)
        found, W_new, Y_new, new_loss, step = _line_search(Z, W, loss, direction, signs, G, ls_tries)
        if not found:  # fall back on the plain gradient, forgetting the curvature pairs (as python-picard)
            pairs = []
            found, W_new, Y_new, new_loss, step = _line_search(Z, W, loss, -skew, signs, G, 10)
        stalled = not found  # no rotation lowers the loss (float32's floor): stay, and stop unless a sign changes
        if found:
            W, Y, loss = W_new, Y_new, new_loss
    raise AssertionError("unreachable")  # the loop returns at it == max_iter


def ica(Z, *, algorithm: str, seed: int, fun: str, max_iter: int, tol: float) -> ICAResult:
    """ICA of whitened ``Z`` (k, n) with ``algorithm`` ("picard": ``picard_o``, "fastica": ``fastica``)."""
    if algorithm == "picard":
        return picard_o(Z, seed=seed, fun=fun, max_iter=max_iter, tol=tol)
    if algorithm == "fastica":
        return fastica(Z, seed=seed, fun=fun, max_iter=max_iter, tol=tol)
    raise ValueError(f"unknown ICA algorithm {algorithm!r}; expected one of {ALGORITHMS}")


def zscore_rows(maps) -> np.ndarray:
    """Each row of ``maps`` (k, n) z-scored across its n columns; a constant row becomes 0."""
    maps = np.asarray(maps, dtype=np.float32)
    centred = maps - maps.mean(axis=1, keepdims=True, dtype=np.float64).astype(np.float32)
    std = np.sqrt(np.mean(centred * centred, axis=1, keepdims=True, dtype=np.float64)).astype(np.float32)
    return np.divide(centred, std, out=np.zeros_like(centred), where=std > _EPS)


def flip_peak_positive(maps) -> np.ndarray:
    """Signs (k,) of ±1 that make each row's largest-magnitude value positive (multiply rows by them)."""
    maps = np.asarray(maps)
    return np.where(maps.max(axis=1) >= -maps.min(axis=1), 1.0, -1.0).astype(np.float32)


def best_match_correlation(a, b) -> np.ndarray:
    """For each row of ``a`` (k, n): the largest |Pearson correlation| with any row of ``b`` (m, n)."""
    za, zb = zscore_rows(a), zscore_rows(b)
    corr = np.abs(za @ zb.T) / np.float32(za.shape[1])
    return corr.max(axis=1) if corr.shape[1] else np.zeros(len(za), dtype=np.float32)


@dataclass(frozen=True)
class Unmixed:
    """One ICA of a tokens × neurons matrix: maps (k', n_neurons) z-scored and peak positive, sources (k', n_tokens)
    with X ≈ sources.T @ maps (each map before its z-score, plus the mean), ordered by the variance they carry; the
    PCA's explained variance ratio (k,), and convergence (overall and each component's last change: near-Gaussian
    components keep rotating when the rest have settled)."""

    maps: np.ndarray
    sources: np.ndarray
    explained_variance_ratio: np.ndarray
    n_iter: int
    change: float
    converged: bool
    component_change: np.ndarray


def ica_maps(P, *, algorithm: str, seed: int, fun: str, max_iter: int, tol: float
             ) -> tuple[np.ndarray, np.ndarray, ICAResult]:
    """ICA over the columns of ``P`` (k, n): returns raw independent rows (k', n), the ``K⁺ Wᵀ`` matrix (k, k')
    with P ≈ K⁺ Wᵀ rows + mean, and the ICA result. k' < k when P is rank deficient."""
    Z, K, _ = whiten(P)
    res = ica(Z, algorithm=algorithm, seed=seed, fun=fun, max_iter=max_iter, tol=tol)
    return res.W @ Z, np.linalg.pinv(K) @ res.W.T, res


def _ordered(side, other, **ica_kw) -> tuple[np.ndarray, np.ndarray, ICAResult, np.ndarray]:
    """ICA over the columns of ``side`` (k, n) for data ``other @ side`` (m, n): independent rows (k', n) and their
    mixing (m, k'), ordered by the mixing's energy (largest first), the ICA result and that order."""
    rows, back, res = ica_maps(side, **ica_kw)
    mixing = other @ back
    order = np.argsort(-np.sum(mixing.astype(np.float64) ** 2, axis=0), kind="stable")
    return rows[order], mixing[:, order], res, order


def _result(maps, sources, pcs: PCAResult, res: ICAResult, order) -> Unmixed:
    """Maps (k', n) peak positive and z-scored, sources (k', n_tokens) with the same signs."""
    signs = flip_peak_positive(maps)
    return Unmixed(zscore_rows(maps * signs[:, None]), (sources * signs[:, None]).astype(np.float32),
                   pcs.explained_variance_ratio, res.n_iter, res.change, res.converged, res.row_change[order])


def unmix(pcs: PCAResult, *, algorithm: str, seed: int, fun: str, max_iter: int, tol: float) -> Unmixed:
    """Spatial ICA of the principal components ``pcs.vt`` (k, n_neurons): independent maps over neurons;
    sources (k', n_tokens) satisfy ``u diag(s) vt ≈ sources.T @ maps + const``."""
    maps, mixing, res, order = _ordered(pcs.vt, pcs.u * pcs.s[None, :], algorithm=algorithm, seed=seed, fun=fun,
                                        max_iter=max_iter, tol=tol)
    return _result(maps, mixing.T, pcs, res, order)


def unmix_temporal(pcs: PCAResult, *, algorithm: str, seed: int, fun: str, max_iter: int, tol: float) -> Unmixed:
    """Temporal ICA of the token scores ``pcs.u.T`` (k, n_tokens): independent unit-variance sources over tokens;
    maps are the mixing matrix's columns (one value per neuron, ``vt.T diag(s)`` unmixed), as scikit-learn's
    ``FastICA(k).fit(X).mixing_.T`` on the raw tokens × neurons matrix."""
    sources, mixing, res, order = _ordered(pcs.u.T, pcs.vt.T * pcs.s[None, :], algorithm=algorithm, seed=seed,
                                           fun=fun, max_iter=max_iter, tol=tol)
    return _result(mixing.T, sources, pcs, res, order)


METHODS = {"spatial": (standardize, unmix), "temporal_raw": (centre, unmix_temporal)}


def spatial_ica(X, k: int, *, algorithm: str, seed: int, fun: str, max_iter: int, tol: float,
                solver: str = "auto", pca_iter: int = 4) -> Unmixed:
    """Spatial ICA of one tokens × neurons matrix ``X`` (n_tokens, n_neurons): standardise each neuron over
    tokens, PCA to ``k``, ICA over neurons. The caller checks that ``k`` < n_tokens."""
    return unmix(pca(standardize(X), k, seed=seed, solver=solver, n_iter=pca_iter),
                 algorithm=algorithm, seed=seed, fun=fun, max_iter=max_iter, tol=tol)


def temporal_ica(X, k: int, *, algorithm: str, seed: int, fun: str, max_iter: int, tol: float,
                 solver: str = "auto", pca_iter: int = 4) -> Unmixed:
    """Temporal ICA of one raw tokens × neurons matrix ``X`` (n_tokens, n_neurons): centre each neuron over tokens
    (no scaling), PCA to ``k``, ICA over tokens; maps are the mixing columns. The caller checks ``k`` < n_tokens."""
    return unmix_temporal(pca(centre(X), k, seed=seed, solver=solver, n_iter=pca_iter),
                          algorithm=algorithm, seed=seed, fun=fun, max_iter=max_iter, tol=tol)
