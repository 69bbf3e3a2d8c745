"""What the match stage reads and writes, shared by the matching, the anatomy and the nulls.

- ``CorpusNetworks`` / ``load_networks(url, config)``: one networks store as binary networks
  (templates in memory, individual maps lazy on Dask as sparse CSR row blocks, skipped samples left out).
- ``write_file(out, name, data)``: one result file under ``out`` (a folder or URL); ``FILES``: the match
  folder's file names (``fnet_dist.core.layout.MatchFiles``), relative to ``out``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from storage_schemas import NETWORKS

from ..core.config import MatchSection
from ..core.errors import InputError
from ..core.layout import MatchFiles
from ..core.networks import binarize, sparse_networks
from ..store.storage import filesystem, open_store

__all__ = ["FILES", "CorpusNetworks", "load_networks", "write_file"]

FILES = MatchFiles(Path())  # names relative to a match folder, which may be a URL (``write_file`` joins them)


@dataclass
class CorpusNetworks:
    """The binary networks of one networks store.

    templates : bool ndarray of shape (n_templates, n_layers, d_model).
    individual : dask array of shape (n_ok_samples * n_components, n_layers * d_model), sample-major, whose
        blocks are bool ``scipy.sparse.csr_array`` (thresholded inside the task that reads each z-map block).
    samples : labels of the ``ok`` samples; ``skipped`` : {sample label: reason} of the others.
    """

    url: str
    name: str  # the corpus
    model_id: str
    n_layers: int
    d_model: int
    templates: np.ndarray
    individual: Any
    samples: list
    n_components: int
    skipped: dict = field(default_factory=dict)
    model_revision: str = ""

    @property
    def shape(self) -> tuple[int, int]:
        """(n_layers, d_model): the neurons every map of the store spans."""
        return (self.n_layers, self.d_model)


def load_networks(url: str, section: MatchSection) -> CorpusNetworks:
    """Open the networks store at ``url`` and threshold its maps (individual maps stay lazy)."""
    ds = open_store(url, NETWORKS)
    n_layers, d_model = int(ds.attrs["n_layers"]), int(ds.attrs["d_model"])
    shape = tuple(int(n) for n in ds["group_map"].shape[1:])
    if shape != (n_layers, d_model) or tuple(ds["individual_map"].shape[2:]) != shape:
        raise InputError(
            f"{url}: maps of shape {shape} (layer, neuron) and {tuple(ds['individual_map'].shape[2:])} disagree with "
            f"attrs n_layers={n_layers}, d_model={d_model}; the store is damaged, re-run decompose with --overwrite"
        )
    status = np.array([str(v) for v in ds["individual_status"].values], dtype=object)
    ok = np.flatnonzero(status == "ok")
    labels = [_plain(v) for v in ds["sample"].values] if "sample" in ds.coords else list(range(len(status)))
    maps = ds["individual_map"].isel(sample=ok).data.rechunk({1: -1, 2: -1, 3: -1})
    individual = sparse_networks(maps, section.threshold, section.two_sided)
    templates = binarize(np.asarray(ds["group_map"].values, dtype=np.float32), section.threshold, section.two_sided)
    return CorpusNetworks(
        url=url, name=str(ds.attrs["corpus"]), model_id=str(ds.attrs["model_id"]),
        n_layers=n_layers, d_model=d_model, templates=templates, individual=individual,
        samples=[labels[i] for i in ok], n_components=int(ds.sizes["individual_component"]),
        skipped={labels[i]: str(status[i]) for i in np.flatnonzero(status != "ok")},
        model_revision=str(ds.attrs.get("model_revision", "") or ""),
    )


def _plain(value):
    return value.item() if hasattr(value, "item") else value


def write_file(out: str, name: str, data: str | bytes) -> str:
    """Write ``data`` to ``out/name`` through fsspec (``out`` a local folder or a URL); returns its URL."""
    fs, folder = filesystem(out)
    fs.makedirs(folder, exist_ok=True)
    target = f"{folder}/{name}"
    with fs.open(target, "wb") as handle:
        handle.write(data.encode("utf-8") if isinstance(data, str) else data)
    return f"{out}/{name}"
