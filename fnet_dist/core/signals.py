"""Source signals of tokens under maps: the one copy of the math the decomposition, the match stage and the
report share (no I/O, no model).

- ``standardize(X, dtype=np.float32)``: per-column (neuron) z-scores over rows (tokens); near-constant columns
  become 0.
- ``centre(X, dtype=np.float32)``: per-column centring over rows, no scaling.
- ``PREPARE``: how each ICA method prepares tokens before PCA or regression (``"spatial"``: ``standardize``,
  ``"temporal_raw"``: ``centre``).
- ``source_signals(X, maps)``: dual regression, the least-squares ``S`` with ``X ≈ S · maps``.
- ``token_sources(X, maps, method, dtype=np.float32)``: tokens prepared as ``method`` does, then
  regressed on the maps: ``IndividualICA.transform``, the anatomy's and the explain page's source signals.
- ``peak_token_share(sources)``: share of each source's energy on its largest token.

Shapes: X (n_tokens, n_neurons), maps (n_components, n_neurons), sources (n_tokens, n_components) as returned
(``peak_token_share`` takes them transposed, (n_components, n_tokens)).
"""
from __future__ import annotations

import numpy as np

__all__ = ["PREPARE", "centre", "peak_token_share", "source_signals", "standardize", "token_sources"]


def standardize(X, dtype=np.float32) -> np.ndarray:
    """Centre each column of ``X`` (n_rows, n_cols) over rows and scale it to unit variance, in ``dtype``.

    Means and variances are summed in float64. A column whose standard deviation is at most 1e-6 of the largest
    (constant up to rounding) becomes 0, never NaN or rounding noise blown up.
    """
    X = np.asarray(X, dtype=dtype)
    out = X - X.mean(axis=0, dtype=np.float64).astype(dtype)
    std = np.sqrt(np.mean(out * out, axis=0, dtype=np.float64)).astype(dtype)
    scale = np.divide(1.0, std, out=np.zeros_like(std), where=std > 1e-6 * max(float(std.max(initial=0.0)), 1e-30))
    out *= scale
    return out


def centre(X, dtype=np.float32) -> np.ndarray:
    """Centre each column of ``X`` (n_rows, n_cols) over rows, no scaling, in ``dtype``: raw data for temporal ICA."""
    X = np.asarray(X, dtype=dtype)
    return X - X.mean(axis=0, dtype=np.float64).astype(dtype)


PREPARE = {"spatial": standardize, "temporal_raw": centre}


def source_signals(X, maps) -> np.ndarray:
    """Dual regression: least-squares ``S`` with ``X ≈ S · maps``, i.e. ``S = X · pinv(maps)``.

    X : (n_tokens, n_neurons), already prepared; maps : (n_components, n_neurons), NaN read as 0.
    Returns S of shape (n_tokens, n_components), computed in the wider of the two dtypes (at least float32).
    """
    X, maps = np.asarray(X), np.nan_to_num(np.asarray(maps))
    dtype = np.result_type(X.dtype, maps.dtype, np.float32)
    # the pseudo-inverse of the few maps (an SVD of (k, n_neurons)), then one product: the minimum-norm
    # least-squares solution, as lstsq's, 3-10x faster (lstsq factors the tall (n_neurons, k) system per call)
    return X.astype(dtype, copy=False) @ np.linalg.pinv(maps.astype(dtype, copy=False))


def token_sources(X, maps, method: str, dtype=np.float32) -> np.ndarray:
    """Sources (n_tokens, n_components) of the raw tokens ``X`` (n_tokens, n_neurons) under ``maps``
    (n_components, n_neurons): ``X`` prepared as ``method``'s ICA prepares it (``PREPARE``) in ``dtype``, then
    regressed on the maps (``source_signals``)."""
    return source_signals(PREPARE[method](X, dtype), maps)


def peak_token_share(sources) -> np.ndarray:
    """Share of each source's energy on its largest token: max(a²) / Σ a² per row of (k, n_tokens); 0 for a
    source without energy."""
    energy = np.square(np.asarray(sources, dtype=np.float64))
    total = energy.sum(axis=1)
    return np.divide(energy.max(axis=1, initial=0.0), total, out=np.zeros_like(total), where=total > 0)
