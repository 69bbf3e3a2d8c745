"""The decomposition stage: spatial ICA of recorded activations at the individual and group level.

- ``decompose(activations, out, ...)``: activations store → networks store, on Dask (``stage``).
- ``IndividualICA``: one sample's spatial ICA with stability across seeds (``individual``).
- ``GroupCanICA``: CanICA over many samples, in memory or out of core on Dask (``canica``).
- ``ica``: the float32 kernels (standardise, PCA, whiten, FastICA, z-maps) on plain arrays.
- planted ground truth for tests and benchmarks: ``fnet_dist.core.planted``. Parameters, defaults and their constraints: the ``decompose`` config
  section (``fnet_dist.core.config.DecomposeSection``); the estimators take it with ``from_section(section)``.
"""
from __future__ import annotations

from ..core.config import LEVELS
from .canica import GroupCanICA
from .individual import IndividualICA
from .stage import decompose

__all__ = ["LEVELS", "GroupCanICA", "IndividualICA", "decompose"]
