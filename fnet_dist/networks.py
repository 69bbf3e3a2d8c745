"""From z-maps to binary networks.

- ``DEFAULT_THRESHOLD``: 3.6, the paper's |z| threshold.
- ``binarize(maps, threshold, two_sided)``: boolean networks of the same shape as ``maps``.
"""
from __future__ import annotations

import numpy as np

from .errors import InputError

__all__ = ["DEFAULT_THRESHOLD", "binarize", "check_threshold"]

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
