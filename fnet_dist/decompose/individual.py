"""Individual-level ICA of one sample (tokens × neurons), scikit-learn style: spatial, or temporal on raw data.

- ``IndividualICA(n_components=64, ...)``: ``fit(X, n_tokens=None)`` on a numpy, dask or xarray array of
  shape (n_tokens, n_neurons) or (n_tokens, n_layers, d_model); fitted ``components_``, ``sources_``,
  ``stability_``, convergence and seeds. Too few tokens reduce or skip the analysis (``status_``), never raise.
  Defaults are the ``decompose`` config section's (``fnet_dist.core.config.DecomposeSection``);
  ``IndividualICA.from_section(section, random_state=...)`` builds one from that section.
- ``check_parameters(estimator, fields)``: the estimators' validation in ``fit``, by the section's own
  rules (``fields``: estimator parameter -> section field) and a few estimator-only options.
"""
from __future__ import annotations

import warnings

import numpy as np

from ..core.config import DecomposeSection
from ..core.errors import InputError
from ..core.signals import peak_token_share, token_sources
from .ica import METHODS, SOLVERS, best_match_correlation, pca

__all__ = ["IndividualICA", "blas_thread_count", "check_parameters", "derive_seeds"]

_MIN_TOKENS = 3
_D = DecomposeSection()


def derive_seeds(random_state: int, n: int, *key: int) -> np.ndarray:
    """``n`` seeds (int64) drawn from one ``random_state`` and an optional key (e.g. a sample id)."""
    state = np.random.SeedSequence([int(random_state), *(int(k) for k in key)]).generate_state(n, np.uint32)
    return (state >> 1).astype(np.int64)


def _plain(value):
    """A numpy scalar as its Python value (the section's checks are strict: no bool for an int, no str)."""
    return value.item() if isinstance(value, np.generic) else value


def _count(low: int, none: bool = False):
    return lambda v: (none and v is None) or (isinstance(v, int) and not isinstance(v, bool) and v >= low)


# the estimators' own options, not config parameters (the section's fields are checked by the section)
_OPTIONS = {
    "sample_components": (_count(1, none=True), "a positive integer or None"),
    "svd_solver": (lambda v: v in SOLVERS, f"one of {', '.join(SOLVERS)}"),
    "pca_iter": (_count(0), "a non-negative integer"),
    "do_cca": (lambda v: isinstance(v, bool), "True or False"),
    "blas_threads": (_count(1, none=True), "a positive integer or None"),
}


def check_parameters(estimator, fields: dict[str, str]) -> None:
    """Raise ``InputError`` for the first bad parameter of ``estimator``.

    fields : estimator parameter -> ``DecomposeSection`` field; those are validated by the section (its bounds and
        choices, declared once there), the estimator's other parameters by ``_OPTIONS``.
    """
    from pydantic import ValidationError

    params = {k: _plain(v) for k, v in estimator.get_params().items()}
    try:
        DecomposeSection.model_validate({field: params[name] for name, field in fields.items()}, strict=True)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else ""
        name = next((n for n, f in fields.items() if f == field), field)
        raise InputError(f"{type(estimator).__name__} {name}={first.get('input')!r} (decompose.{field}, "
                         f"--{field.replace('_', '-')}) is invalid: {first['msg'].lower()}") from None
    for name, (ok, expected) in _OPTIONS.items():
        if name in params and not ok(params[name]):
            raise InputError(f"{type(estimator).__name__} {name}={params[name]!r} is invalid: expected {expected}")


def blas_thread_count() -> int:
    """The largest thread count among the BLAS/OpenMP pools loaded in this process."""
    from threadpoolctl import threadpool_info

    return max((int(pool["num_threads"]) for pool in threadpool_info()), default=1)


def _blas_limit(threads: int | None):
    from contextlib import nullcontext

    from threadpoolctl import threadpool_limits

    return nullcontext() if threads is None else threadpool_limits(threads)


class IndividualICA:
    """ICA of one sample: tokens are time points, neurons voxels.

    ``method`` "spatial": per-neuron standardisation over tokens, PCA to ``n_components``, ICA over neurons
    (independent maps). "temporal_raw" (the paper code's first version): the raw matrix centred per neuron, PCA,
    ICA over tokens (independent time courses); maps are the mixing matrix's columns. ``algorithm`` "picard"
    (Picard-O) or "fastica", float32, from ``stability_runs`` seeds; maps of run 0 are kept, z-scored across
    neurons and peak positive, and each map's stability is its best-match |correlation| with the other runs
    (mean over them).

    Parameters: n_components, method, algorithm, fun ("logcosh", "cube", "exp"), max_iter, tol (on FastICA's
    criterion for either algorithm), stability_runs, exclude_first_tokens, single_token_share (flag components
    whose source puts more than this share of its energy on one token), svd_solver ("auto", "full", "randomized"),
    pca_iter, random_state, blas_threads (BLAS threads during fit; None leaves them alone).

    Fitted: components_ (n_components, *feature_shape) NaN rows past n_components_; sources_
    (n_components, n_rows) NaN outside the analysed tokens; explained_variance_ratio_, stability_,
    peak_token_share_, single_token_, component_change_ (run 0's last FastICA change per map) (n_components,);
    n_iter_, change_ (the largest over runs), converged_ (all runs);
    seeds_ (stability_runs,); n_components_; status_ ("ok" or the reason for reduction / skipping); blas_threads_.
    """

    _FIELDS = {"n_components": "components", "method": "individual_method", "algorithm": "algorithm", "fun": "fun",
               "max_iter": "max_iter", "tol": "tol", "stability_runs": "stability_runs",
               "exclude_first_tokens": "exclude_first_tokens", "single_token_share": "single_token_share",
               "random_state": "seed"}  # parameter -> its ``DecomposeSection`` field

    def __init__(self, n_components: int = _D.components, *, method: str = _D.individual_method,
                 algorithm: str = _D.algorithm, fun: str = _D.fun, max_iter: int = _D.max_iter, tol: float = _D.tol,
                 stability_runs: int = _D.stability_runs, exclude_first_tokens: int = _D.exclude_first_tokens,
                 single_token_share: float = _D.single_token_share, svd_solver: str = "auto", pca_iter: int = 4,
                 random_state: int = _D.seed, blas_threads: int | None = 1):
        self.n_components = n_components
        self.method = method
        self.algorithm = algorithm
        self.fun = fun
        self.max_iter = max_iter
        self.tol = tol
        self.stability_runs = stability_runs
        self.exclude_first_tokens = exclude_first_tokens
        self.single_token_share = single_token_share
        self.svd_solver = svd_solver
        self.pca_iter = pca_iter
        self.random_state = random_state
        self.blas_threads = blas_threads

    @classmethod
    def from_section(cls, section: DecomposeSection, **options) -> "IndividualICA":
        """The estimator of the ``decompose`` section's individual-level fields; ``options`` set the others or
        replace some (``random_state`` of one sample, ``blas_threads``)."""
        return cls(**{**{name: getattr(section, field) for name, field in cls._FIELDS.items()}, **options})

    def get_params(self) -> dict:
        return {k: getattr(self, k) for k in ("n_components", "method", "algorithm", "fun", "max_iter", "tol",
                                               "stability_runs", "exclude_first_tokens", "single_token_share",
                                               "svd_solver", "pca_iter", "random_state", "blas_threads")}

    def _plan(self, n_rows: int, n_tokens: int | None) -> tuple[slice, int, str]:
        """Rows to analyse, the number of components and the status for a sample of ``n_tokens``."""
        real = n_rows if n_tokens is None else int(min(max(int(n_tokens), 0), n_rows))
        rows = slice(min(self.exclude_first_tokens, real), real)
        usable = rows.stop - rows.start
        if usable < _MIN_TOKENS:
            return rows, 0, (f"skipped: {usable} tokens to analyse ({real} real, {self.exclude_first_tokens} "
                             f"excluded), at least {_MIN_TOKENS} needed")
        if usable - 1 < self.n_components:
            return rows, usable - 1, (f"reduced: {usable} tokens allow at most {usable - 1} components, "
                                      f"not {self.n_components}")
        return rows, self.n_components, "ok"

    def fit(self, X, n_tokens: int | None = None) -> "IndividualICA":
        """Fit on ``X`` (n_rows, n_neurons) or (n_rows, n_layers, d_model); rows past ``n_tokens`` are fill."""
        check_parameters(self, self._FIELDS)
        X = np.asarray(X)
        if X.ndim < 2:
            raise InputError(f"X has shape {X.shape}: expected (n_tokens, n_neurons) or (n_tokens, n_layers, d_model)")
        feature_shape, n_rows = X.shape[1:], X.shape[0]
        rows, k, status = self._plan(n_rows, n_tokens)
        self.seeds_ = derive_seeds(self.random_state, self.stability_runs)
        self._allocate(k, feature_shape, n_rows)
        self.status_ = status
        if k > 0:
            with _blas_limit(self.blas_threads):
                self.blas_threads_ = blas_thread_count()
                self._fit_rows(X[rows].reshape(rows.stop - rows.start, -1), k, rows, feature_shape)
        else:
            self.blas_threads_ = blas_thread_count()
            warnings.warn(f"sample {status}", RuntimeWarning, stacklevel=2)
        return self

    def _allocate(self, k: int, feature_shape: tuple, n_rows: int) -> None:
        n = self.n_components
        self.n_components_ = k
        self.components_ = np.full((n, *feature_shape), np.nan, dtype=np.float32)
        self.sources_ = np.full((n, n_rows), np.nan, dtype=np.float32)
        for name in ("explained_variance_ratio_", "stability_", "peak_token_share_", "component_change_"):
            setattr(self, name, np.full(n, np.nan))
        self.single_token_ = np.zeros(n, dtype=bool)
        self.n_iter_, self.change_, self.converged_ = 0, float("nan"), False

    def _fit_rows(self, X: np.ndarray, k: int, rows: slice, feature_shape: tuple) -> None:
        from sklearn.exceptions import ConvergenceWarning

        prepare, unmix = METHODS[self.method]
        pcs = pca(prepare(X), k, seed=int(self.seeds_[0]), solver=self.svd_solver, n_iter=self.pca_iter)
        runs = [unmix(pcs, algorithm=self.algorithm, seed=int(s), fun=self.fun, max_iter=self.max_iter, tol=self.tol)
                for s in self.seeds_]
        best = runs[0]
        got = best.maps.shape[0]
        if got < k:
            self.status_ = f"reduced: the sample's data has rank {got}, fewer than {k} components"
        self.n_components_ = got
        self.components_[:got] = best.maps.reshape(got, *feature_shape)
        self.sources_[:got, rows] = best.sources
        self.explained_variance_ratio_[:k] = pcs.explained_variance_ratio
        if len(runs) > 1:
            self.stability_[:got] = np.mean([best_match_correlation(best.maps, r.maps) for r in runs[1:]], axis=0)
        self.peak_token_share_[:got] = peak_token_share(best.sources)
        self.component_change_[:got] = best.component_change
        self.single_token_[:got] = self.peak_token_share_[:got] > self.single_token_share
        self.n_iter_ = max(r.n_iter for r in runs)
        self.change_ = max(r.change for r in runs)
        self.converged_ = all(r.converged for r in runs)
        if not self.converged_:
            warnings.warn(f"{self.algorithm} did not converge in {self.max_iter} iterations (last change "
                          f"{self.change_:.2e}, tol {self.tol:g}); raise max_iter or tol", ConvergenceWarning, stacklevel=3)

    def transform(self, X) -> np.ndarray:
        """Least-squares sources (n_rows, n_components_) of new rows ``X`` (prepared as in fit: standardised for
        "spatial", centred for "temporal_raw") on the fitted maps (``fnet_dist.core.signals.token_sources``)."""
        X = np.asarray(X, dtype=np.float32).reshape(len(X), -1)
        maps = self.components_[: self.n_components_].reshape(self.n_components_, -1)
        return token_sources(X, maps, self.method)
