"""ICA kernels on plain arrays (float32, one BLAS thread friendly); no I/O, no Dask.

- ``standardize(X)``: per-column (neuron) z-scores over rows (tokens); constant columns become 0.
- ``sum_of_squares(X)``: Σ x² of a 2-D array as a float64, without a float64 copy of ``X``.
- ``pca(X, k, seed=, solver=, n_iter=)``: ``PCAResult(u, s, vt, explained_variance_ratio)``.
- ``whiten(P)``: centre the rows of a ``(k, n)`` array over its columns and whiten them.
- ``fastica(Z, seed=, fun=, max_iter=, tol=)``: symmetric FastICA on whitened ``(k, n)`` data.
- ``unmix(pcs, seed=, ...)`` / ``spatial_ica(X, k, seed=, ...)``: PCA'd or raw tokens × neurons → ``SpatialICA``.
- ``zscore_rows``, ``flip_peak_positive``, ``best_match_correlation``, ``peak_token_share``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "FUNCTIONS", "SOLVERS", "ICAResult", "PCAResult", "SpatialICA", "best_match_correlation", "fastica",
    "flip_peak_positive", "ica_maps", "pca", "peak_token_share", "spatial_ica", "standardize", "sum_of_squares",
    "unmix", "whiten",
    "zscore_rows",
]

FUNCTIONS = ("cube", "logcosh", "exp")
SOLVERS = ("auto", "full", "randomized")
_EPS = np.float32(1e-12)


def standardize(X) -> np.ndarray:
    """Centre each column of ``X`` (n_rows, n_cols) over rows and scale it to unit variance (float32).

    Constant columns (zero variance) become 0, never NaN.
    """
    X = np.asarray(X, dtype=np.float32)
    out = X - X.mean(axis=0, dtype=np.float64).astype(np.float32)
    std = np.sqrt(np.mean(out * out, axis=0, dtype=np.float64)).astype(np.float32)
    scale = np.divide(1.0, std, out=np.zeros_like(std), where=std > 1e-6 * max(float(std.max(initial=0.0)), 1e-30))
    out *= scale
    return out


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


def pca(X, k: int, *, seed: int = 0, solver: str = "auto", n_iter: int = 4) -> PCAResult:
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
    """``(g(u), mean g'(u) per row)`` for a FastICA contrast, written with multiplications only."""
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


def _sym_decorrelation(W: np.ndarray) -> np.ndarray:
    """``(W W^T)^{-1/2} W``: the nearest orthogonal matrix (paper eq. 10)."""
    values, vectors = np.linalg.eigh((W @ W.T).astype(np.float64))
    values = np.clip(values, 1e-30, None)
    return ((vectors / np.sqrt(values)) @ vectors.T).astype(W.dtype) @ W


@dataclass(frozen=True)
class ICAResult:
    """FastICA output: unmixing W (k, k) with sources W @ Z; iterations run, last change (the largest of
    ``row_change``, each row's |1 − |w_new · w_old|| at the last iteration), converged."""

    W: np.ndarray
    n_iter: int
    change: float
    converged: bool
    row_change: np.ndarray


def fastica(Z, *, seed: int = 0, fun: str = "cube", max_iter: int = 1000, tol: float = 1e-4,
            w_init: np.ndarray | None = None) -> ICAResult:
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


def peak_token_share(sources) -> np.ndarray:
    """Share of each source's energy on its largest token: max(a²) / Σ a² per row of (k, n_tokens)."""
    energy = np.square(np.asarray(sources, dtype=np.float64))
    total = energy.sum(axis=1)
    return np.divide(energy.max(axis=1, initial=0.0), total, out=np.zeros_like(total), where=total > 0)


@dataclass(frozen=True)
class SpatialICA:
    """One spatial ICA: maps (k, n_neurons) z-scored and peak positive, sources (k, n_tokens) with
    X ≈ sources.T @ maps (+ mean), the PCA's explained variance ratio (k,), and convergence (overall and
    each component's last change: near-Gaussian components keep rotating when the rest have settled)."""

    maps: np.ndarray
    sources: np.ndarray
    explained_variance_ratio: np.ndarray
    n_iter: int
    change: float
    converged: bool
    component_change: np.ndarray


def ica_maps(P, *, seed: int, fun: str, max_iter: int, tol: float) -> tuple[np.ndarray, np.ndarray, ICAResult]:
    """FastICA over the columns of ``P`` (k, n): returns raw maps (k', n), the ``K⁺ Wᵀ`` matrix (k, k')
    with P ≈ K⁺ Wᵀ maps + mean, and the ICA result. k' < k when P is rank deficient."""
    Z, K, _ = whiten(P)
    res = fastica(Z, seed=seed, fun=fun, max_iter=max_iter, tol=tol)
    return res.W @ Z, np.linalg.pinv(K) @ res.W.T, res


def unmix(pcs: PCAResult, *, seed: int, fun: str, max_iter: int, tol: float) -> SpatialICA:
    """FastICA of the spatial principal components ``pcs.vt`` (k, n): independent maps over columns.

    Maps are ordered by the energy of their sources (largest first), z-scored and peak positive;
    sources (k', n_rows) satisfy ``u diag(s) vt ≈ sources.T @ maps + const``.
    """
    maps, back, res = ica_maps(pcs.vt, seed=seed, fun=fun, max_iter=max_iter, tol=tol)
    mixing = (pcs.u * pcs.s[None, :]) @ back
    order = np.argsort(-np.sum(mixing.astype(np.float64) ** 2, axis=0), kind="stable")
    maps, mixing = maps[order], mixing[:, order]
    signs = flip_peak_positive(maps)
    return SpatialICA(zscore_rows(maps * signs[:, None]), (mixing * signs[None, :]).T.astype(np.float32),
                      pcs.explained_variance_ratio, res.n_iter, res.change, res.converged, res.row_change[order])


def spatial_ica(X, k: int, *, seed: int = 0, fun: str = "logcosh", max_iter: int = 200, tol: float = 1e-4,
                solver: str = "auto", pca_iter: int = 4) -> SpatialICA:
    """Spatial ICA of one tokens × neurons matrix ``X`` (n_tokens, n_neurons): standardise each neuron over
    tokens, PCA to ``k``, FastICA over neurons. The caller checks that ``k`` < n_tokens."""
    return unmix(pca(standardize(X), k, seed=seed, solver=solver, n_iter=pca_iter),
                 seed=seed, fun=fun, max_iter=max_iter, tol=tol)
