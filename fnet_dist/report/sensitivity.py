"""The structure findings across the sensitivity grid: does a verdict survive another threshold, sidedness or
counterpart cut-off than the paper's?

The match stage wrote, for every cell of the grid, the same tables as for its own rule
(``fnet_dist.match.sensitivity``); here each cell is judged by the report's own functions (``counterparts``,
``recurrence``, ``reproducibility`` of ``fnet_dist.report.findings``), each cell on its own at alpha — the grid shows
how the verdicts move, it is not a further confirmatory test.

- ``sensitivity_grid(match, settings) -> DataFrame``: one row per claim and cell: ``claim``, ``threshold``,
  ``two_sided``, ``iou`` (NaN where the claim has no cut-off), ``effect``, ``low``, ``high``, ``p_value``,
  ``verdict``; empty without the grid's tables.
- ``sensitivity_figure(grid, paper) -> bytes``: the effects against the threshold, one panel per claim, a line per
  sidedness (and cut-off), the marker the verdict (filled: holds, open: unclear, ×: fails), the run's own rule ringed.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..core.display import figure_png
from ..core.layout import MatchFiles
from ..core.stats import conclude
from .findings import FindingSettings, counterparts, read_table, recurrence, reproducibility

__all__ = ["CLAIMS", "sensitivity_figure", "sensitivity_grid"]

CLAIMS = ("counterparts", "recurrence", "reproducibility")
_MARKERS = {"holds": ("o", True), "unclear": ("o", False), "fails": ("x", True), "not applicable": (".", True)}


def _at(frame: pd.DataFrame | None, **cell) -> pd.DataFrame | None:
    if frame is None or frame.empty:
        return frame
    keep = np.ones(len(frame), dtype=bool)
    for key, value in cell.items():
        keep &= np.isclose(frame[key].astype(float), float(value))
    return frame[keep]


def sensitivity_grid(match: MatchFiles, settings: FindingSettings) -> pd.DataFrame:
    """Every structure finding in every cell of the grid, judged (see the module)."""
    tables = {name: read_table(match.sensitivity(name)) for name in ("counterparts", "samples", "nulls", "halves")}
    if tables["counterparts"] is None or tables["counterparts"].empty:
        return pd.DataFrame()
    pairs = read_table(match.recurrence)
    cells, found = [], []
    for (threshold, two_sided, iou), table in tables["counterparts"].groupby(["threshold", "two_sided", "iou"]):
        cell = {"threshold": threshold, "two_sided": bool(two_sided)}
        samples = _at(tables["samples"], iou=iou, **cell)
        cells.append({"claim": "counterparts", **cell, "iou": iou})
        found.append(counterparts(table, samples, settings))
    for (threshold, two_sided), nulls in (tables["nulls"] if tables["nulls"] is not None else pd.DataFrame(
            columns=["threshold", "two_sided"])).groupby(["threshold", "two_sided"]):
        cell = {"threshold": threshold, "two_sided": bool(two_sided)}
        halves = _at(tables["halves"], **cell)
        if pairs is not None and not pairs.empty:
            cells.append({"claim": "recurrence", **cell, "iou": np.nan})
            found.append(recurrence(pairs, nulls[nulls["claim"] == "recurrence"], halves, settings))
        split = reproducibility(nulls[nulls["claim"] == "reproducibility"], halves, settings)
        if split is not None:
            cells.append({"claim": "reproducibility", **cell, "iou": np.nan})
            found.append(split)
    judged = conclude(found, settings.alpha, "finding")
    rows = []
    for cell, f in zip(cells, judged):
        low, high = f.interval if f.interval is not None else (np.nan, np.nan)
        rows.append({**cell, "effect": f.effect, "low": low, "high": high, "p_value": f.p_value, "verdict": f.verdict})
    return pd.DataFrame(rows)


def sensitivity_figure(grid: pd.DataFrame, paper: dict) -> bytes:
    """The grid's effects and verdicts (see the module); ``paper``: the run's own cell (threshold, two_sided, iou)."""
    import matplotlib.pyplot as plt

    claims = [c for c in CLAIMS if c in set(grid["claim"])]
    fig, axes = plt.subplots(1, len(claims), figsize=(4.2 * len(claims), 3.4), squeeze=False)
    colours = plt.get_cmap("viridis")
    for ax, claim in zip(axes[0], claims):
        rows = grid[grid["claim"] == claim]
        ious = sorted(rows["iou"].dropna().unique()) or [np.nan]
        for i, iou in enumerate(ious):
            for two_sided, style in ((True, "-"), (False, "--")):
                line = rows[(rows["two_sided"] == two_sided) & (rows["iou"].isna() if np.isnan(iou) else np.isclose(rows["iou"], iou))]
                line = line.sort_values("threshold")
                if line.empty:
                    continue
                colour = colours(i / max(len(ious) - 1, 1))
                label = ("two-sided" if two_sided else "one-sided") + ("" if np.isnan(iou) else f", IoU > {iou:g}")
                ax.plot(line["threshold"], line["effect"], style, color=colour, label=label, linewidth=1)
                for r in line.itertuples():
                    marker, filled = _MARKERS.get(r.verdict, ("o", False))
                    ax.scatter([r.threshold], [r.effect], marker=marker, s=28, color=colour if filled else "white",
                               edgecolors=colour, zorder=3)
        own = rows[np.isclose(rows["threshold"], paper["threshold"]) & (rows["two_sided"] == paper["two_sided"])
                   & (rows["iou"].isna() | np.isclose(rows["iou"].fillna(-1), paper["iou"]))]
        ax.scatter(own["threshold"], own["effect"], s=160, facecolors="none", edgecolors="crimson", zorder=4,
                   label="this run's rule")
        ax.axhline(0, color="grey", linewidth=0.6)
        ax.set_title(claim)
        ax.set_xlabel("threshold |z| (or z)")
        ax.set_ylabel("effect beyond the stricter null")
        ax.legend(fontsize=6, loc="best")
    fig.suptitle("Structure findings across the network rule (filled: holds, open: unclear, ×: fails)", fontsize=9)
    png = figure_png(fig)
    plt.close(fig)
    return png
