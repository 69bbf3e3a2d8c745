"""From z-maps to binary networks, and what a network is made of.

- ``DEFAULT_THRESHOLD``: 3.6, the paper's |z| threshold.
- ``binarize(maps, threshold, two_sided)``: boolean networks of the same shape as ``maps``.
- ``flatten_networks(networks)``: ``(..., n_layers, d_model)`` -> ``(n, n_layers * d_model)`` rows.
- ``network_sizes``, ``network_shares``, ``layer_counts``, ``empty_networks``: per-network statistics
  (numpy or dask in, the same out).
- ``describe_networks(networks, labels)``: one table row per network (size, share, empty, per-layer counts).
"""
from __future__ import annotations

import numpy as np

from .errors import InputError

__all__ = [
    "DEFAULT_THRESHOLD",
    "binarize",
    "check_threshold",
    "describe_networks",
    "empty_networks",
    "flatten_networks",
    "layer_counts",
    "network_shares",
    "network_sizes",
]

DEFAULT_THRESHOLD = 3.6


def check_threshold(threshold: float) -> float:
    """Return ``threshold`` as a float, or raise a clear error unless it is finite and positive."""
    value = float(threshold)
    if not np.isfinite(value) or value <= 0:
        raise InputError(f"threshold {threshold!r} must be a positive finite z-value (the paper uses 3.6)")
    return value


def binarize(maps, threshold: float = DEFAULT_THRESHOLD, two_sided: bool = True):
    """Networks from z-maps: ``|z| > threshold`` (two-sided) or ``z > threshold``.

    maps : array of shape (..., n_layers, d_model), z-scored across neurons; NaN never selected.
    Returns a boolean array (numpy or dask, as given) of the same shape.
    """
    threshold = check_threshold(threshold)
    values = abs(maps) if two_sided else maps
    return values > threshold


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

    Columns: the ``labels`` (constant columns, e.g. ``{"dataset": "news"}``), ``template`` (1-based),
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
