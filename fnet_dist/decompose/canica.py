"""Group-level ICA (CanICA) over many samples, scikit-learn style, in memory or out of core on Dask.

- ``GroupCanICA(n_components=10, ...)``: ``fit(X, n_tokens=None)`` on a list of (n_tokens, n_neurons…)
  arrays or one (n_samples, n_rows, n_neurons…) numpy, dask or xarray array (rows past ``n_tokens``
  are fill). With a dask array, every per-sample PCA is a task and the group PCA is
  ``dask.array.linalg.svd_compressed``: only one sample per task and the small reduced stack are in memory.
  ``transform(X)``: one sample's sources over its tokens on the fitted templates (dual regression).
- ``reduce_sample(X, k, ...)``: one sample's standardised PCA components (k, n_neurons).
"""
from __future__ import annotations

import warnings

import numpy as np

from ..core.config import DecomposeSection
from ..core.errors import InputError
from ..core.signals import standardize, token_sources
from .ica import PCAResult, best_match_correlation, pca, sum_of_squares, unmix
from .individual import _D, _blas_limit, blas_thread_count, check_parameters, derive_seeds

__all__ = ["GroupCanICA", "reduce_sample"]

_BLOCK_BYTES = 128 * 2**20  # row blocks of the reduced stack for the out-of-core group PCA (at most)
_BLOCKS_PER_WORKER_MEMORY = 8  # and at most this share of the smallest worker's memory limit


def _row_block_bytes() -> int:
    """Bytes of one row block of the reduced stack: ``_BLOCK_BYTES``, or less on workers with little memory
    (a block is merged from its parts and multiplied in a task: a few copies of it are live at once)."""
    try:
        from distributed import get_client

        workers = get_client().scheduler_info()["workers"].values()
    except (ImportError, ValueError):  # no distributed client: the default
        return _BLOCK_BYTES
    limits = [int(w["memory_limit"]) for w in workers if w.get("memory_limit")]
    return min([_BLOCK_BYTES] + [limit // _BLOCKS_PER_WORKER_MEMORY for limit in limits])


def reduce_sample(X, k: int, *, first: int, n_tokens: int, do_cca: bool, seed: int, solver: str,
                  pca_iter: int, blas_threads: int | None) -> np.ndarray:
    """Rows ``first:n_tokens`` of one sample (n_rows, …) → its PCA components (k, n_neurons), float32.

    With ``do_cca`` the components have unit norm (nilearn's CCA); otherwise they are scaled by their
    singular values.
    """
    X = np.asarray(X)
    X = X.reshape(X.shape[0], -1)[first:n_tokens]
    with _blas_limit(blas_threads):
        pcs = pca(standardize(X), k, seed=seed, solver=solver, n_iter=pca_iter)
    return pcs.vt if do_cca else pcs.vt * pcs.s[:, None]


def _restart(pcs: PCAResult, seed: int, fun: str, max_iter: int, tol: float, blas_threads: int | None):
    with _blas_limit(blas_threads):
        return unmix(pcs, algorithm="fastica", seed=seed, fun=fun, max_iter=max_iter, tol=tol)


class GroupCanICA:
    """CanICA (Varoquaux et al. 2010, as in nilearn): per-sample PCA, stacked, group PCA, FastICA restarts.

    Each sample: rows ``exclude_first_tokens:n_tokens`` standardised per neuron and reduced to
    ``sample_components`` (default ``n_components``); a sample with too few tokens is skipped (see
    ``sample_status_``). Group PCA to ``n_components`` (randomized, ``power_iter`` power iterations);
    ``n_init`` FastICA restarts (contrast ``fun``, nilearn's cube by default) with seeds drawn from
    ``random_state``; the sparsest (lowest largest L1 norm of its z-maps) is kept and each of its maps' stability
    is its mean best-match |correlation| with the other restarts. Defaults: the ``decompose`` config section's
    group fields (``group_components``, ``group_fun``, ``group_max_iter`` …); ``from_section(section)`` builds one
    from that section.

    Fitted: components_ (n_components, *feature_shape) z-maps, peak positive; explained_variance_ratio_,
    stability_ (n_components,); seeds_, n_iter_, converged_ (n_init,); best_restart_; sample_status_
    (n_samples,); n_samples_used_; blas_threads_.

    Differences from nilearn: no masker or detrending (rows are tokens, columns neurons); float32 kernels;
    restarts and per-sample reductions are Dask tasks when ``X`` is a dask array.
    """

    _FIELDS = {"n_components": "group_components", "n_init": "n_init", "fun": "group_fun", "max_iter": "group_max_iter",
               "tol": "tol", "power_iter": "power_iter", "exclude_first_tokens": "exclude_first_tokens",
               "random_state": "seed"}  # parameter -> its ``DecomposeSection`` field

    def __init__(self, n_components: int = _D.group_components, *, sample_components: int | None = None,
                 n_init: int = _D.n_init, fun: str = _D.group_fun, max_iter: int = _D.group_max_iter,
                 tol: float = _D.tol, power_iter: int = _D.power_iter, do_cca: bool = True,
                 exclude_first_tokens: int = _D.exclude_first_tokens, svd_solver: str = "auto", pca_iter: int = 4,
                 random_state: int = _D.seed, blas_threads: int | None = 1):
        self.n_components = n_components
        self.sample_components = sample_components
        self.n_init = n_init
        self.fun = fun
        self.max_iter = max_iter
        self.tol = tol
        self.power_iter = power_iter
        self.do_cca = do_cca
        self.exclude_first_tokens = exclude_first_tokens
        self.svd_solver = svd_solver
        self.pca_iter = pca_iter
        self.random_state = random_state
        self.blas_threads = blas_threads

    @classmethod
    def from_section(cls, section: DecomposeSection, **options) -> "GroupCanICA":
        """The estimator of the ``decompose`` section's group-level fields; ``options`` set the others
        (``blas_threads``, ``sample_components`` …)."""
        return cls(**{**{name: getattr(section, field) for name, field in cls._FIELDS.items()}, **options})

    def get_params(self) -> dict:
        return {k: getattr(self, k) for k in ("n_components", "sample_components", "n_init", "fun", "max_iter",
                                               "tol", "power_iter", "do_cca", "exclude_first_tokens",
                                               "svd_solver", "pca_iter", "random_state", "blas_threads")}

    # -- reading and reducing ------------------------------------------------------------------------
    def _sample_plan(self, n_rows: int, n_tokens) -> tuple[np.ndarray, list[str]]:
        """Per sample: the number of real rows, and "ok" or why it is skipped."""
        k = self.sample_components or self.n_components
        real = np.minimum(np.asarray(n_tokens, dtype=np.int64), n_rows)
        status = []
        for n in real:
            usable = int(n) - self.exclude_first_tokens
            status.append("ok" if usable - 1 >= k else
                          f"skipped: {max(usable, 0)} tokens to analyse allow fewer than {k} components")
        return real, status

    def _reduce(self, X, n_tokens):
        """The stacked per-sample components (n_used · k_s, n_neurons): numpy, or dask for a dask ``X``."""
        import dask.array as da

        if isinstance(X, (list, tuple)):
            n_tokens = [len(x) for x in X] if n_tokens is None else n_tokens
            rows, blocks, lazy = max(len(x) for x in X), list(X), False
        else:
            X = getattr(X, "data", X)  # xarray → its numpy or dask array
            lazy = isinstance(X, da.Array)
            if not lazy:
                X = np.asarray(X)
            if X.ndim < 3:
                raise InputError(f"X has shape {X.shape}: expected (n_samples, n_tokens, n_neurons…) or a list of samples")
            rows = X.shape[1]
            n_tokens = np.full(X.shape[0], rows) if n_tokens is None else n_tokens
            blocks = X.rechunk({0: 1, **{i: -1 for i in range(1, X.ndim)}}).to_delayed().ravel() if lazy else X
        real, self.sample_status_ = self._sample_plan(rows, n_tokens)
        used = [i for i, s in enumerate(self.sample_status_) if s == "ok"]
        self.n_samples_used_ = len(used)
        k = self.sample_components or self.n_components
        if not used:
            raise InputError(f"no sample has enough tokens for {k} components per sample: lower "
                             f"--group-components or --exclude-first-tokens, or record longer samples")
        seeds = derive_seeds(self.random_state, len(real))
        kw = dict(first=self.exclude_first_tokens, do_cca=self.do_cca, solver=self.svd_solver,
                  pca_iter=self.pca_iter, blas_threads=self.blas_threads)
        if not lazy:
            return np.vstack([reduce_sample(blocks[i], k, n_tokens=int(real[i]), seed=int(seeds[i]), **kw) for i in used])
        import dask

        n_features = int(np.prod(X.shape[2:]))
        parts = [da.from_delayed(dask.delayed(reduce_sample)(blocks[i][0], k, n_tokens=int(real[i]), seed=int(seeds[i]), **kw),
                                 shape=(k, n_features), dtype=np.float32) for i in used]
        return da.concatenate(parts, axis=0)

    # -- the group step ------------------------------------------------------------------------------
    def _group_pca(self, stack) -> PCAResult:
        """Randomized PCA of the stack's rows over neurons: (n_components, n_neurons) components."""
        import dask.array as da

        k = self.n_components
        if k > min(stack.shape):
            raise InputError(f"--group-components {k} is larger than possible: the stack of {self.n_samples_used_} "
                             f"samples has shape {stack.shape}; lower it or add samples")
        if isinstance(stack, da.Array):
            import dask

            rows = max(1, _row_block_bytes() // (4 * stack.shape[1]))  # few large row blocks: fewer tasks per SVD pass
            stack = stack.rechunk({0: min(stack.shape[0], rows), 1: -1}).persist()
            _, s, vt = da.linalg.svd_compressed(stack, k, n_power_iter=self.power_iter, seed=self.random_state,
                                                compute=False)
            squares = stack.map_blocks(lambda block: np.array([[sum_of_squares(block)]]), chunks=(1, 1), dtype=np.float64)
            s, vt, total = dask.compute(s, vt, squares.sum())
        else:
            from sklearn.utils.extmath import randomized_svd

            _, s, vt = randomized_svd(stack, k, n_iter=self.power_iter, random_state=self.random_state)
            total = sum_of_squares(stack)
        s, vt = np.asarray(s, dtype=np.float32), np.asarray(vt, dtype=np.float32)
        return PCAResult(np.eye(k, dtype=np.float32), s, vt, (s.astype(np.float64) ** 2) / total)

    def fit(self, X, n_tokens=None) -> "GroupCanICA":
        """Fit on samples ``X`` (see the class docstring); returns self."""
        check_parameters(self, self._FIELDS)
        feature_shape = tuple(np.shape(X[0])[1:]) if isinstance(X, (list, tuple)) else tuple(X.shape[2:])
        stack = self._reduce(X, n_tokens)
        pcs = self._group_pca(stack)
        self.seeds_ = derive_seeds(self.random_state, self.n_init)
        args = (self.fun, self.max_iter, self.tol, self.blas_threads)
        if isinstance(stack, np.ndarray):
            runs = [_restart(pcs, int(s), *args) for s in self.seeds_]
        else:
            import dask

            shared = dask.delayed(pcs)  # one graph node: sent to each worker once, not once per restart
            runs = list(dask.compute(*[dask.delayed(_restart)(shared, int(s), *args) for s in self.seeds_]))
        self._keep_sparsest(runs, pcs, feature_shape)
        return self

    def transform(self, X) -> np.ndarray:
        """Sources ``(n_rows, n_components)`` of one sample's rows ``X`` (n_rows, n_neurons) or (n_rows, n_layers,
        d_model), standardised per neuron as in fit, regressed on the fitted templates (least squares, as the
        report's token attribution: ``fnet_dist.core.signals.token_sources``)."""
        X = np.asarray(X, dtype=np.float32).reshape(len(X), -1)
        return token_sources(X, self.components_.reshape(len(self.components_), -1), "spatial")

    def _keep_sparsest(self, runs, pcs: PCAResult, feature_shape: tuple) -> None:
        from sklearn.exceptions import ConvergenceWarning

        scores = [np.abs(r.maps).sum(axis=1).max() for r in runs]
        best = int(np.argmin(scores))
        maps = runs[best].maps
        others = [r.maps for i, r in enumerate(runs) if i != best]
        self.best_restart_ = best
        self.components_ = maps.reshape(len(maps), *feature_shape)
        self.explained_variance_ratio_ = pcs.explained_variance_ratio
        self.stability_ = (np.mean([best_match_correlation(maps, o) for o in others], axis=0) if others
                           else np.full(len(maps), np.nan))
        self.n_iter_ = np.array([r.n_iter for r in runs])
        self.converged_ = np.array([r.converged for r in runs])
        with _blas_limit(self.blas_threads):
            self.blas_threads_ = blas_thread_count()
        if not self.converged_[best]:
            warnings.warn(f"the kept FastICA restart did not converge in {self.max_iter} iterations; raise "
                          f"max_iter or tol", ConvergenceWarning, stacklevel=3)
