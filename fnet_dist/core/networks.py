"""From z-maps to binary networks, and what a network is made of.

- ``DEFAULT_THRESHOLD``, ``DEFAULT_TWO_SIDED``: the paper's rule, |z| > 3.6 (the one place it is written; the
  ``match`` section's ``threshold`` and ``two_sided`` default to it).
- ``SMALL_SHARE``: the paper's "fewer than 2 % of the model's neurons": the networks its claims are about (the
  controls' network choice and the report's findings read it; not a user parameter: it defines the claim).
- ``binarize(maps, threshold, two_sided)``: boolean networks of the same shape as ``maps``.
- ``sparse_networks(maps, threshold, two_sided)``: the same networks as rows of a scipy CSR array
  (numpy maps) or as CSR row blocks on Dask (dask maps), thresholded a few rows at a time: no dense
  boolean copy of all maps is ever made.
- ``csr_networks(masks)``: ``(n, n_neurons)`` boolean masks -> the same CSR rows.
- ``flatten_networks(networks)``: ``(..., n_layers, d_model)`` -> ``(n, n_layers * d_model)`` rows.
- ``network_sizes``, ``network_shares``, ``layer_counts``, ``empty_networks``: per-network statistics
  (numpy or dask in, the same out).
- ``describe_networks(networks, labels)``: one table row per network (size, share, empty, per-layer counts).
- ``first_token_flags(anatomy, corpus, n_templates, share)``: which templates are first-token artefacts (the match
  stage's ``network_anatomy`` table; ``match.first_token_share``).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .errors import InputError

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "DEFAULT_THRESHOLD",
    "DEFAULT_TWO_SIDED",
    "SMALL_SHARE",
    "binarize",
    "check_threshold",
    "csr_networks",
    "describe_networks",
    "empty_networks",
    "first_token_flags",
    "flatten_networks",
    "layer_counts",
    "network_shares",
    "network_sizes",
    "sparse_networks",
]

DEFAULT_THRESHOLD = 3.6
DEFAULT_TWO_SIDED = True  # |z| > threshold; False: z > threshold
SMALL_SHARE = 0.02  # the paper's "fewer than 2 % of the model's neurons": the networks its claims are about
_STEP_BYTES = 1 << 20  # one step of rows thresholded at a time: its boolean buffers stay in cache


def check_threshold(threshold: float) -> float:
    """Return ``threshold`` as a float, or raise a clear error unless it is finite and positive."""
    value = float(threshold)
    if not np.isfinite(value) or value <= 0:
        raise InputError(f"threshold {threshold!r} must be a positive finite z-value (the paper uses {DEFAULT_THRESHOLD:g})")
    return value


def binarize(maps, threshold: float = DEFAULT_THRESHOLD, two_sided: bool = DEFAULT_TWO_SIDED):
    """Networks from z-maps: ``|z| > threshold`` (two-sided) or ``z > threshold``.

    maps : array of shape (..., n_layers, d_model), z-scored across neurons; NaN never selected.
    Returns a boolean array (numpy or dask, as given) of the same shape.
    """
    threshold = check_threshold(threshold)
    if two_sided:
        return (maps > threshold) | (maps < -threshold)  # = |z| > t, without an |z| copy of the maps
    return maps > threshold


def _index_dtype(*sizes: int):
    return np.int32 if max(sizes, default=0) < np.iinfo(np.int32).max else np.int64


def _csr_rows(block: np.ndarray, select) -> "scipy.sparse.csr_array":
    """Rows of ``block`` (n, n_neurons) -> CSR of the entries ``select(rows, out, spare)`` marks (it returns
    a boolean array of the rows' shape: ``out`` filled, or the rows themselves when they are boolean).

    A few rows at a time into two reused boolean buffers (``spare`` is scratch), so nothing of the size of
    ``block`` is allocated but the result; data all True, column indices sorted within each row.
    """
    import scipy.sparse as sp

    n, width = block.shape
    step = max(1, _STEP_BYTES // max(width, 1))
    out, spare = np.empty((2, min(step, n), width), dtype=bool)
    starts, columns, total = [np.zeros(1, dtype=np.int64)], [], 0
    for first in range(0, n, step):
        rows = block[first:first + step]
        flat = np.flatnonzero(select(rows, out[:len(rows)], spare[:len(rows)]))
        row_ends = np.searchsorted(flat, np.arange(1, len(rows) + 1) * width)
        columns.append(flat - np.repeat(np.arange(len(rows)) * width, np.diff(row_ends, prepend=0)))
        starts.append(total + row_ends)
        total += len(flat)
    dtype = _index_dtype(width, total)
    indices = np.concatenate(columns).astype(dtype, copy=False) if columns else np.zeros(0, dtype)
    indptr = np.concatenate(starts).astype(dtype, copy=False)
    return sp.csr_array((np.ones(total, dtype=bool), indices, indptr), shape=(n, width))


def _threshold_csr(block: np.ndarray, threshold: float, two_sided: bool):
    """One block of flat z-maps (n, n_neurons) -> CSR of its networks (see ``sparse_networks``)."""
    def select(rows, out, spare):
        np.greater(rows, threshold, out=out)
        if two_sided:
            np.logical_or(out, np.less(rows, -threshold, out=spare), out=out)
        return out

    return _csr_rows(np.asarray(block), select)


def csr_networks(masks):
    """Boolean masks ``(n, n_neurons)`` (numpy) -> ``scipy.sparse.csr_array`` of shape (n, n_neurons), bool."""
    masks = np.asarray(masks)
    if masks.ndim != 2:
        raise InputError(f"networks of shape {masks.shape}: expected (n_networks, n_neurons)")
    if masks.dtype == bool:
        return _csr_rows(masks, lambda rows, out, spare: rows)
    return _csr_rows(masks, lambda rows, out, spare: np.not_equal(rows, 0, out=out))


def sparse_networks(maps, threshold: float = DEFAULT_THRESHOLD, two_sided: bool = DEFAULT_TWO_SIDED):
    """Networks from z-maps held sparse: ``flatten_networks(binarize(maps, ...))`` as CSR rows, without ever
    holding that dense boolean array.

    maps : numpy or dask array of shape (..., n_layers, d_model), z-scored across neurons; NaN never selected.
    Returns ``scipy.sparse.csr_array`` of shape (n, n_layers * d_model), bool (numpy maps), or a dask array of
    that shape whose row blocks are such CSR arrays (dask maps), each thresholded inside the task that holds
    its z-map block.
    """
    import scipy.sparse as sp

    threshold = check_threshold(threshold)
    flat = flatten_networks(maps)
    if hasattr(flat, "dask"):
        flat = flat.rechunk({1: -1})
        return flat.map_blocks(_threshold_csr, threshold, bool(two_sided), dtype=bool,
                               meta=sp.csr_array((0, 0), dtype=bool))
    return _threshold_csr(np.asarray(flat), threshold, bool(two_sided))


def _check_networks(networks) -> None:
    if networks.ndim < 2:
        raise InputError(f"networks of shape {tuple(networks.shape)}: expected (..., n_layers, d_model)")


def flatten_networks(networks):
    """``(..., n_layers, d_model)`` -> ``(n, n_layers * d_model)``: one network per row, layer-major."""
    _check_networks(networks)
    n_layers, d_model = networks.shape[-2:]
    return networks.reshape((-1, n_layers * d_model))


def layer_counts(networks):
    """Neurons of each network per layer: ``(..., n_layers, d_model)`` -> ``(..., n_layers)`` int64."""
    _check_networks(networks)
    return networks.sum(axis=-1, dtype=np.int64)


def network_sizes(networks):
    """Neurons in each network: ``(..., n_layers, d_model)`` -> ``(...)`` int64."""
    return layer_counts(networks).sum(axis=-1)


def network_shares(networks):
    """Share of all ``n_layers * d_model`` neurons in each network: ``(...)`` float64 in [0, 1]."""
    _check_networks(networks)
    n_layers, d_model = networks.shape[-2:]
    return network_sizes(networks) / float(n_layers * d_model)


def empty_networks(networks):
    """True for each network with no neuron (nothing above threshold): ``(...)`` bool."""
    return network_sizes(networks) == 0


def describe_networks(networks, labels: dict | None = None):
    """One row per network of a ``(k, n_layers, d_model)`` numpy stack: a pandas DataFrame.

    Columns: the ``labels`` (constant columns, e.g. ``{"corpus": "news"}``), ``template`` (1-based),
    ``size``, ``share``, ``empty`` and ``layer_<i>`` counts.
    """
    import pandas as pd

    networks = np.asarray(networks)
    if networks.ndim != 3:
        raise InputError(f"networks of shape {networks.shape}: expected (n_networks, n_layers, d_model)")
    counts = layer_counts(networks)
    frame = pd.DataFrame({
        "template": np.arange(1, len(networks) + 1),
        "size": counts.sum(axis=1),
        "share": network_shares(networks),
        "empty": counts.sum(axis=1) == 0,
    })
    layers = pd.DataFrame(counts, columns=[f"layer_{i}" for i in range(counts.shape[1])])
    frame = pd.concat([frame, layers], axis=1)
    for position, (key, value) in enumerate((labels or {}).items()):
        frame.insert(position, key, value)
    return frame


def first_token_flags(anatomy: pd.DataFrame, corpus: str, n_templates: int, share: float) -> np.ndarray:
    """bool (n_templates,): templates whose source peaks at the first token in ≥ ``share`` of tokens' weight
    (``network_anatomy`` rows with ``first_token_peak_share``)."""
    if "first_token_peak_share" not in anatomy:
        return np.zeros(n_templates, dtype=bool)
    rows = anatomy[anatomy["corpus"] == corpus].sort_values("template")
    return rows["first_token_peak_share"].fillna(0).to_numpy() >= share
