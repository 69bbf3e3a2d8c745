"""Figures of the match stage (matplotlib, Agg canvas, PNG bytes; no pyplot state).

- ``plot_networks(templates)``: each template as a layer × neuron image, corpora side by side (Figure 4).
- ``plot_counterparts(consistency)``: counterparts per template and corpus as a heat map.
- ``plot_layer_distribution(network_sizes)``: network neurons per layer, one line per corpus.
- ``plot_cross_corpus(cross_corpus)``: template × template IoU between corpora as a heat map.
- ``match_figures(...)``: all of the above by file name, as PNG bytes.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..core.display import figure_png, pool_columns, value_axis
from ..core.names import network_name

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "match_figures",
    "plot_counterparts",
    "plot_cross_corpus",
    "plot_layer_distribution",
    "plot_networks",
]



def plot_networks(templates: dict[str, np.ndarray]) -> Figure:
    """Figure 4: one panel per (template, corpus); each row of a panel is a layer, lit where a neuron is in.

    templates : {corpus: bool array of shape (n_templates, n_layers, d_model)}.
    """
    from matplotlib.figure import Figure

    names = list(templates)
    n_rows = max(len(t) for t in templates.values())
    fig = Figure(figsize=(3.2 * len(names), 0.9 * n_rows + 0.8), constrained_layout=True)
    axes = fig.subplots(n_rows, len(names), squeeze=False)
    for col, name in enumerate(names):
        for row in range(n_rows):
            ax = axes[row, col]
            ax.set_xticks([])
            if row >= len(templates[name]):
                ax.set_axis_off()
                continue
            network = templates[name][row]
            ax.imshow(pool_columns(network.astype(np.uint8)), aspect="auto", cmap="Greys", vmin=0, vmax=1,
                      interpolation="nearest")
            ax.set_title(f"{network_name(name, row + 1)}: {int(network.sum())} neurons", fontsize=7)
            ax.set_yticks([0, len(network) - 1], ["0", str(len(network) - 1)], fontsize=6)
            if col == 0:
                ax.set_ylabel("layer", fontsize=7)
            if row == len(templates[name]) - 1:
                ax.set_xlabel(f"neuron (0-{network.shape[1] - 1})", fontsize=7)
    fig.suptitle("Group templates (rows: layers; dark: neurons in the network)", fontsize=9)
    return fig


def _heatmap(ax, values: np.ndarray, rows: list, columns: list, fmt: str, limits=(None, None), unit: str = "") -> None:
    image = ax.imshow(values, aspect="auto", cmap="viridis", vmin=limits[0], vmax=limits[1])
    rotation = 90 if max((len(str(c)) for c in columns), default=0) > 6 else 0
    ax.set_xticks(range(len(columns)), [str(c) for c in columns], rotation=rotation, fontsize=7)
    ax.set_yticks(range(len(rows)), [str(r) for r in rows], fontsize=7)
    if values.size <= 400:
        top = np.nanmax(values) if values.size else 0
        for (i, j), value in np.ndenumerate(values):
            ax.text(j, i, fmt.format(value), ha="center", va="center", fontsize=6,
                    color="black" if top and value > 0.6 * top else "white")
    ax.figure.colorbar(image, ax=ax, shrink=0.8, label=unit)


def plot_counterparts(consistency: pd.DataFrame) -> Figure:
    """Counterparts (individual maps with IoU above the match threshold) per template (rows) and corpus (columns)."""
    from matplotlib.figure import Figure

    wide = consistency.pivot(index="template", columns="corpus", values="counterparts")
    wide = wide[list(dict.fromkeys(consistency["corpus"]))]
    fig = Figure(figsize=(1.2 * wide.shape[1] + 2.5, 0.4 * wide.shape[0] + 1.5), constrained_layout=True)
    ax = fig.subplots()
    _heatmap(ax, wide.to_numpy(dtype=float), list(wide.index), list(wide.columns), "{:.0f}",
             unit="counterparts (individual maps)")
    ax.set_xlabel("corpus")
    ax.set_ylabel("template")
    ax.set_title("Counterparts in the individual-level maps", fontsize=9)
    return fig


def plot_layer_distribution(network_sizes: pd.DataFrame) -> Figure:
    """Neurons of all templates per layer, one line per corpus (the distribution of Appendix A.3)."""
    from matplotlib.figure import Figure

    layer_columns = [c for c in network_sizes.columns if c.startswith("layer_")]
    fig = Figure(figsize=(6.5, 3.2), constrained_layout=True)
    ax = fig.subplots()
    counts = []
    for name, rows in network_sizes.groupby("corpus", sort=False):
        counts.append(rows[layer_columns].sum(axis=0).to_numpy())
        ax.plot(range(len(layer_columns)), counts[-1], marker="o", markersize=3, label=str(name))
    ax.set_xlabel("layer")
    value_axis(ax, counts, "y", "network neurons (all templates), count")
    ax.legend(fontsize=7)
    ax.set_title("Where the network neurons are", fontsize=9)
    return fig


def plot_cross_corpus(cross_corpus: pd.DataFrame) -> Figure:
    """Template × template IoU between corpora; each pair of corpora once (upper blocks)."""
    from matplotlib.figure import Figure

    labels = list(dict.fromkeys(
        [network_name(d, t) for d, t in zip(cross_corpus["corpus_1"], cross_corpus["template_1"])]
        + [network_name(d, t) for d, t in zip(cross_corpus["corpus_2"], cross_corpus["template_2"])]
    ))
    position = {label: i for i, label in enumerate(labels)}
    values = np.full((len(labels), len(labels)), np.nan)
    for row in cross_corpus.itertuples(index=False):
        i, j = position[network_name(row.corpus_1, row.template_1)], position[network_name(row.corpus_2, row.template_2)]
        values[i, j] = values[j, i] = row.iou
    size = 0.22 * len(labels) + 2.5
    fig = Figure(figsize=(size, size), constrained_layout=True)
    ax = fig.subplots()
    _heatmap(ax, values, labels, labels, "{:.2f}", limits=(0.0, 1.0), unit="IoU (0 to 1)")
    ax.set_title("IoU between templates of different corpora", fontsize=9)
    return fig


def match_figures(consistency: pd.DataFrame, network_sizes: pd.DataFrame, cross_corpus: pd.DataFrame,
                  templates: dict[str, np.ndarray]) -> dict[str, bytes]:
    """All match figures as ``{name: PNG bytes}`` (names: ``fnet_dist.core.layout.MATCH_FIGURES``; the
    cross-corpus one only with two corpora or more)."""
    figures = {
        "networks": plot_networks(templates),
        "counterparts": plot_counterparts(consistency),
        "layer_distribution": plot_layer_distribution(network_sizes),
    }
    if len(cross_corpus):
        figures["cross_corpus"] = plot_cross_corpus(cross_corpus)
    return {name: figure_png(fig) for name, fig in figures.items()}
