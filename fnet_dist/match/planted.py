"""Planted recovery: how well the decomposition of a planted store (``fnet plant``) finds the networks planted in it.

- ``planted_truth(activations) -> (networks (m, n_layers, d_model) bool, planted attrs)``: the ground truth an
  activations store's ``planted`` attrs hold (an ``InputError`` for a recorded store, which has none).
- ``planted_recovery(networks, section) -> DataFrame``: one row per planted network: its size; the best IoU with
  any group template (``group_iou``); over the individual samples, the mean of each sample's best IoU with its
  maps (``individual_iou``) and the share of samples holding a map with IoU > ``match.iou`` (``individual_share``).
  Maps are networks by the match stage's rule (``match.threshold``, ``match.two_sided``); the IoUs of the
  individual maps are computed on the current Dask client (or Dask's threads), block by block.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from storage_schemas import ACTIVATIONS, NETWORKS

from ..core.config import MatchSection
from ..core.errors import InputError
from ..core.networks import flatten_networks
from ..core.planted import best_match_iou
from ..store.storage import open_store
from .io import load_networks
from .iou import lazy_iou

__all__ = ["planted_recovery", "planted_truth"]


def planted_truth(activations: str) -> tuple[np.ndarray, dict[str, Any]]:
    """The planted networks of the activations store at ``activations`` and its ``planted`` attrs."""
    ds = open_store(activations, ACTIVATIONS, verify=False)
    planted = ds.attrs.get("planted")
    if not ds.attrs.get("synthetic") or not isinstance(planted, dict):
        raise InputError(f"{activations} is not a planted store (no 'planted' attrs): only the stores of fnet plant "
                         f"have a ground truth to score recovery against")
    n_layers, d_model = int(planted["n_layers"]), int(planted["d_model"])
    networks = np.zeros((len(planted["network_neurons"]), n_layers * d_model), dtype=bool)
    for row, neurons in enumerate(planted["network_neurons"]):
        networks[row, neurons] = True
    return networks.reshape(-1, n_layers, d_model), dict(planted)


def planted_recovery(networks: str, section: MatchSection | None = None) -> pd.DataFrame:
    """Recovery of the planted networks by the networks store at ``networks`` (see the module docstring)."""
    section = section or MatchSection()
    corpus = load_networks(networks, section)
    truth, _ = planted_truth(str(open_store(networks, NETWORKS, verify=False).attrs["activations"]))
    flat = flatten_networks(truth)
    group = best_match_iou(truth, corpus.templates) if len(corpus.templates) else np.zeros(len(truth))
    n_samples = len(corpus.samples)
    if n_samples:
        iou, _, _ = lazy_iou(flat, corpus.individual)
        best = np.asarray(iou.compute()).reshape(len(truth), n_samples, corpus.n_components).max(axis=2)
        individual, share = best.mean(axis=1), (best > section.iou).mean(axis=1)
    else:
        individual = share = np.full(len(truth), np.nan)
    return pd.DataFrame({"network": np.arange(1, len(truth) + 1), "size": flat.sum(axis=1), "group_iou": group,
                         "individual_iou": individual, "individual_share": share})
