"""Figures of one network for a notebook (matplotlib ``Figure``s, no pyplot state; Jupyter shows them inline).

- ``plot_zmap(zmap, *, threshold=None, two_sided=True, title=None)``: a continuous z-map as a layer × neuron image
  on a diverging colour scale symmetric around 0, with its colour bar in z units; the neurons of its network
  (|z| > threshold) counted in the title. ``zmap``: a ``(layer, neuron)`` DataArray (``run.zmap("news/5")``,
  which carries its name and the run's rule) or array.
- ``plot_counterparts(run, name, top=3)``: the template's z-map beside the ``top`` individual maps whose networks
  overlap it most (IoU at the run's rule; a counterpart when IoU > ``match.iou``).

Wide models (d_model above 1,024) are drawn with each block of columns shown by its value of largest |z|, so one
strong neuron stays visible; the x axis then says so.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.names import network_name
from ..core.networks import binarize

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["plot_counterparts", "plot_zmap"]

_WIDE = 1024  # columns beyond which an image is pooled


def _pooled(values: np.ndarray) -> tuple[np.ndarray, bool]:
    """``(layer, neuron)`` values with columns pooled by largest |value| when wider than ``_WIDE``."""
    if values.shape[1] <= _WIDE:
        return values, False
    step = int(np.ceil(values.shape[1] / _WIDE))
    width = int(np.ceil(values.shape[1] / step)) * step
    padded = np.zeros((values.shape[0], width), dtype=values.dtype)
    padded[:, : values.shape[1]] = values
    blocks = padded.reshape(values.shape[0], -1, step)
    pick = np.abs(blocks).argmax(axis=2)
    return np.take_along_axis(blocks, pick[..., None], axis=2)[..., 0], True


def _zmap_panel(ax, values: np.ndarray, limit: float, title: str):
    shown, pooled = _pooled(np.nan_to_num(values))
    image = ax.imshow(shown, aspect="auto", cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.set_ylabel("layer")
    ax.set_xlabel(f"neuron (0-{values.shape[1] - 1}{', columns pooled by max |z|' if pooled else ''})")
    return image


def _limit(values: np.ndarray, threshold: float | None) -> float:
    """A symmetric colour limit: the 99.9th percentile of |z|, at least the threshold (so network neurons saturate)."""
    finite = np.abs(values[np.isfinite(values)])
    top = float(np.percentile(finite, 99.9)) if finite.size else 1.0
    return max(top, threshold or 0.0, 1e-6)


def plot_zmap(zmap: Any, *, threshold: float | None = None, two_sided: bool | None = None,
              title: str | None = None) -> Figure:
    """A network's continuous z-map (see the module docstring). ``threshold`` / ``two_sided`` default to the
    DataArray's attrs (``run.zmap`` sets the run's ``match`` rule); without a threshold no network is counted."""
    from matplotlib.figure import Figure

    attrs = getattr(zmap, "attrs", {})
    threshold = attrs.get("threshold") if threshold is None else threshold
    two_sided = attrs.get("two_sided", True) if two_sided is None else two_sided
    values = np.asarray(zmap, dtype=np.float32)
    name = title or attrs.get("name", "z-map")
    if threshold is not None:
        count = int(binarize(values, threshold, two_sided).sum())
        name = f"{name}: {count} neurons at {'|z|' if two_sided else 'z'} > {threshold:g}"
    fig = Figure(figsize=(8, 3.2), constrained_layout=True)
    ax = fig.subplots()
    image = _zmap_panel(ax, values, _limit(values, threshold), name)
    fig.colorbar(image, ax=ax, label="z (across neurons)")
    return fig


def _best_matches(run, corpus: str, network: np.ndarray, top: int) -> list[tuple[float, int, int]]:
    """``(IoU, sample, component)`` of the ``top`` individual maps of ``corpus`` most like ``network``."""
    ds = run.networks(corpus)
    match = run.config.match
    found = []
    for position in range(ds.sizes["sample"]):
        maps = np.asarray(ds["individual_map"].isel(sample=position).values, dtype=np.float32)
        nets = binarize(maps, match.threshold, match.two_sided).reshape(len(maps), -1)
        inter = (nets & network.ravel()).sum(axis=1)
        union = (nets | network.ravel()).sum(axis=1)
        iou = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
        found += [(float(iou[k]), position, k) for k in range(len(maps)) if np.isfinite(maps[k]).any()]
    return sorted(found, reverse=True)[:top]


def plot_counterparts(run, name: str, top: int = 3) -> Figure:
    """Template ``name`` (``news/5``) of ``run`` beside its ``top`` best-matching individual maps (see the module
    docstring); each panel's title gives its IoU with the template and whether it counts as a counterpart."""
    from matplotlib.figure import Figure

    zmap = run.zmap(name)
    corpus = name.rpartition("/")[0]
    match = run.config.match
    network = binarize(zmap.values, match.threshold, match.two_sided)
    matches = _best_matches(run, corpus, network, top)
    ds = run.networks(corpus)
    panels = [(zmap.values, f"{zmap.attrs['name']} (template)")]
    for iou, position, k in matches:
        sample = ds["sample"].values[position]
        verdict = "counterpart" if iou > match.iou else f"not a counterpart (IoU ≤ {match.iou:g})"
        panels.append((np.asarray(ds["individual_map"].isel(sample=position, individual_component=k).values),
                       f"sample {sample}, map {k + 1}: IoU {iou:.2f}, {verdict}"))
    limit = max(_limit(v, match.threshold) for v, _ in panels)
    fig = Figure(figsize=(8, 2.4 * len(panels)), constrained_layout=True)
    axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    for ax, (values, title) in zip(axes, panels):
        image = _zmap_panel(ax, values, limit, title)
    fig.colorbar(image, ax=list(axes), label="z (across neurons)")
    fig.suptitle(f"{network_name(corpus, int(name.rpartition('/')[2]))} and its best-matching individual maps "
                 f"(networks at {'|z|' if match.two_sided else 'z'} > {match.threshold:g})", fontsize=10)
    return fig
