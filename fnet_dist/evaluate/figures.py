"""Figures shaped like the paper's, from tidy rows and logged samples (matplotlib, no display needed).

- ``perplexity_bars(rows, path, task="wiki_ppl", corpus=)``: Figure 2, word perplexity per inhibited network,
  the normal model as a line.
- ``score_changes(rows, path, conditions)``: Figure 3, each task's score under each condition minus normal.
- ``sweep_plot(rows, path, task="wiki_ppl")``: Figures 5-7, the metric against the factor / value, one line
  per mask, one panel per edit kind.
Every value axis is chosen by ``fnet_dist.core.display.value_axis`` (log when the values span more than two
orders of magnitude) and names its unit; conditions are named from their fields (``fnet_dist.core.names``).
- ``prediction_flips(out, task, condition, baseline="normal") -> DataFrame``: Figure 8, the documents whose
  multiple-choice prediction changes between two conditions (text, label, both predictions, fixed or broken).
- ``format_flip(row)``: one flip as the paper's Figure 8 box.
- ``control_plot(controls, separated, path, task)``: each network's damage against the random draws'
  intervals, and split at the massive channels (issue 8's controls).

Every figure draws the values it can and names, inside the panel, those it cannot (``fnet_dist.core.display``).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..core.display import drawable, note_undrawn, undrawn, value_axis
from ..core.errors import InputError
from ..core.metrics import PERPLEXITY_METRICS, axis_label, primary_metric, primary_rows, task_label
from ..core.names import display_name, network_name
from .runner import read_samples
from .tables import network_rows

__all__ = ["control_plot", "format_flip", "perplexity_bars", "prediction_flips", "score_changes", "sweep_plot"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    _pyplot().close(fig)
    return path


def _legend(ax, **options) -> None:
    """A legend when the axes has labelled artists (a panel whose values were all undrawable has none)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**options)


def _value(rows: pd.DataFrame, condition: str, task: str) -> float:
    hit = rows[(rows["condition"] == condition) & (rows["task"] == task)]
    if hit.empty:
        raise InputError(f"no result for condition {condition!r} on task {task!r}; evaluate it first")
    return float(hit["value"].iloc[0])


def perplexity_bars(rows: pd.DataFrame, path: str | os.PathLike, *, task: str = "wiki_ppl", corpus: str) -> Path:
    """Figure 2: a bar per template of ``corpus`` inhibited, a line for the normal model."""
    primary = network_rows(primary_rows(rows), corpus)
    chosen = primary[primary["task"] == task]
    if chosen.empty:
        raise InputError(f"no network of {corpus!r} inhibited and evaluated on {task!r}; add it with --tasks {task}")
    names = [network_name(corpus, int(t)) for t in chosen["template"]]
    values, normal = chosen["value"].to_numpy(dtype=float), _value(primary_rows(rows), "normal", task)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(5, 0.6 * len(chosen)), 3.5))
    ax.bar(names, np.where(drawable(values), values, np.nan), color="#4c72b0")
    if drawable(normal):
        ax.axhline(normal, color="k", ls="--", label="normal")
    value_axis(ax, [*values, normal], "y", axis_label(task))
    ax.set_xlabel(f"inhibited network of {corpus} (corpus/template)")
    note_undrawn(ax, undrawn(names, values) + undrawn(["normal"], [normal]))
    ax.tick_params(axis="x", rotation=45)
    _legend(ax)
    return _save(fig, path)


def score_changes(rows: pd.DataFrame, path: str | os.PathLike, conditions: str | Sequence[str]) -> Path:
    """Figure 3: per task (scores, not perplexity), each condition's score minus the normal model's.

    One group of bars per task, one bar per condition (e.g. every network inhibited, or one amplified).
    """
    conditions = [conditions] if isinstance(conditions, str) else list(conditions)
    chosen = primary_rows(rows)
    tasks = [t for t in dict.fromkeys(chosen["task"]) if primary_metric(t) not in PERPLEXITY_METRICS]
    if not tasks or not conditions:
        raise InputError("score changes need a scored (non-perplexity) task and at least one condition")
    deltas = np.array([[_value(chosen, c, t) - _value(chosen, "normal", t) for t in tasks] for c in conditions])
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(4, 0.4 * len(tasks) * len(conditions) + 2), 3.5))
    width = 0.8 / len(conditions)
    missing = []
    fields = chosen.drop_duplicates("condition").set_index("condition", drop=False)
    for i, (condition, row) in enumerate(zip(conditions, deltas)):
        label = display_name(fields.loc[condition].to_dict()) if condition in fields.index else condition
        ax.bar(np.arange(len(tasks)) + (i - (len(conditions) - 1) / 2) * width, np.where(drawable(row), row, np.nan),
               width, label=label)
        missing += undrawn([f"{label} on {task_label(t)}" for t in tasks], row)
    ax.set_xticks(np.arange(len(tasks)), [task_label(t) for t in tasks], rotation=45)
    ax.axhline(0, color="k", lw=0.8)
    value_axis(ax, deltas, "y", "score − normal\n(accuracy, MCC or F1)")
    note_undrawn(ax, missing)
    if len(conditions) <= 12:
        _legend(ax, fontsize=7)
    return _save(fig, path)


def sweep_plot(rows: pd.DataFrame, path: str | os.PathLike, *, task: str = "wiki_ppl") -> Path:
    """Figures 5-7: metric against the edit amount (rows from ``sweeps.sweep``), a panel per edit kind."""
    if "amount" not in rows:
        raise InputError("sweep_plot needs the rows returned by fnet_dist.evaluate.sweeps.sweep")
    chosen = primary_rows(rows)
    chosen = chosen[chosen["task"] == task]
    kinds = [k for k in ("multiply", "add") if k in set(chosen["edit"])]
    if not kinds:
        raise InputError(f"no sweep results on task {task!r}")
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(kinds), figsize=(4.5 * len(kinds), 3.5), squeeze=False)
    normal = chosen[chosen["kind"] == "normal"]["value"].to_numpy(dtype=float)[:1]
    for ax, kind in zip(axes[0], kinds):
        missing = undrawn(["normal"], normal)
        for mask, group in chosen[chosen["edit"] == kind].groupby("mask", sort=False):
            group = group.sort_values("amount")
            amounts, values = group["amount"].to_numpy(dtype=float), group["value"].to_numpy(dtype=float)
            keep = drawable(values)
            ax.plot(amounts[keep], values[keep], marker="o", label=mask)
            missing += undrawn([f"{mask} at {a:g}" for a in amounts], values)
        if len(normal) and drawable(normal).all():
            ax.axhline(float(normal[0]), color="k", ls="--", label="normal")
        ax.set_xlabel("factor" if kind == "multiply" else "added value")
        value_axis(ax, [*chosen[chosen["edit"] == kind]["value"], *normal], "y", axis_label(task))
        note_undrawn(ax, missing)
        ax.set_title(kind)
        _legend(ax, fontsize=7)
    return _save(fig, path)


def _predictions(samples: list[dict], task: str) -> pd.DataFrame:
    records = []
    for item in samples:
        resps = item["filtered_resps"]
        if not isinstance(resps, list) or len(resps) < 2 or not all(isinstance(r, (list, tuple)) for r in resps):
            raise InputError(f"task {task!r} is not multiple choice: its predictions cannot be compared as choices")
        scores = [float(resp[0]) for resp in resps]
        records.append({"doc_id": item["doc_id"], "doc": item["doc"], "target": item["target"],
                        "prediction": int(np.argmax(scores))})
    return pd.DataFrame(records).set_index("doc_id")


def prediction_flips(out: str | os.PathLike, task: str, condition: str, *, baseline: str = "normal") -> pd.DataFrame:
    """Documents of a multiple-choice ``task`` whose prediction differs between ``baseline`` and ``condition``.

    Columns: ``doc_id, text, target, before, after, effect`` (``fixed``: wrong -> right, ``broken``,
    ``changed``: wrong -> another wrong answer).
    """
    before = _predictions(read_samples(out, baseline, task), task)
    after = _predictions(read_samples(out, condition, task), task)
    joined = before.join(after[["prediction"]].rename(columns={"prediction": "prediction_after"}), how="inner")
    flipped = joined[joined["prediction"] != joined["prediction_after"]]
    effect = np.where(flipped["prediction_after"] == flipped["target"], "fixed",
                      np.where(flipped["prediction"] == flipped["target"], "broken", "changed"))
    text = flipped["doc"].map(lambda d: d.get("text") or d.get("sentence") or str(d) if isinstance(d, dict) else str(d))
    return pd.DataFrame({"doc_id": flipped.index, "text": text.values, "target": flipped["target"].values,
                         "before": flipped["prediction"].values, "after": flipped["prediction_after"].values,
                         "effect": effect}).reset_index(drop=True)


def format_flip(row: pd.Series, *, choices=("negative", "positive"), condition: str = "edited",
                baseline: str = "normal") -> str:
    """One flip in the shape of the paper's Figure 8."""
    def name(i):
        return choices[int(i)] if 0 <= int(i) < len(choices) else str(i)

    return (f"Sample: {row['text']}\nLabel: {name(row['target'])}\nBefore ({baseline}): {name(row['before'])}\n"
            f"After ({condition}): {name(row['after'])}")


def control_plot(controls: pd.DataFrame, separated: pd.DataFrame, path: str | os.PathLike, task: str,
                 labels: dict[str, str] | None = None) -> Path:
    """Left: each network's value against each kind of random draw (a segment from the interval's low to its
    high, a dot at the draws' mean); right: the damage of the whole network, without its massive channels,
    and of those channels alone. Values a panel cannot place (inf, nan) are named in it. ``labels``: a network
    condition's display name by its name (``network_name`` of its corpus and template)."""
    labels = labels or {}
    label_of = lambda name: labels.get(name, name)  # noqa: E731
    plt = _pyplot()
    ctl, sep = controls[controls["task"] == task], separated[separated["task"] == task]
    if ctl.empty and sep.empty:
        raise InputError(f"no control results for task {task!r}")
    networks = list(dict.fromkeys(list(ctl["network"]) + list(sep["network"])))
    position = {n: i for i, n in enumerate(networks)}
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 0.6 * len(networks) + 2.2))
    kinds = list(dict.fromkeys(ctl["control"]))
    missing = []
    for j, kind in enumerate(kinds):
        part = ctl[ctl["control"] == kind]
        y = part["network"].map(position).to_numpy(dtype=float) + 0.15 * (j - len(kinds) / 2)
        mean, low, high = (part[c].to_numpy(dtype=float) for c in ("mean", "low", "high"))
        dots = drawable(mean)
        line, = left.plot(mean[dots], y[dots], "o", ms=3, label=kind)
        spans = drawable(low) & drawable(high)
        left.hlines(y[spans], low[spans], high[spans], color=line.get_color(), lw=1.2)
        missing += undrawn([f"{kind} mean ({label_of(n)})" for n in part["network"]], mean)
        missing += [f"{kind} interval ({label_of(n)})" for n, ok in zip(part["network"], spans) if not ok]
    if not ctl.empty:
        observed = ctl.drop_duplicates("network")
        values = observed["network_value"].to_numpy(dtype=float)
        keep = drawable(values)
        left.scatter(values[keep], observed["network"].map(position).to_numpy()[keep], marker="x", color="k",
                     zorder=3, label="network")
        missing += undrawn([label_of(n) for n in observed["network"]], values)
        normal = float(ctl["normal"].iloc[0])
        if drawable(normal):
            left.axvline(normal, color="grey", ls="--", lw=1, label="normal")
        missing += undrawn(["normal"], [normal])
    left.set_yticks(np.arange(len(networks)), [label_of(n) for n in networks])
    left.set_ylim(len(networks) - 0.5, -0.5)  # one band per network, the first on top
    value_axis(left, ctl[["mean", "low", "high", "network_value", "normal"]].to_numpy(dtype=float) if len(ctl) else [],
               "x", axis_label(task))
    left.set_title("random draws (mean, 95 % interval) vs the network", fontsize=9)
    note_undrawn(left, missing)
    _legend(left, fontsize=7)
    width, missing, damages = 0.27, [], []
    for j, (column, label) in enumerate([("damage_whole", "whole network"), ("damage_minus_massive", "without massive channels"),
                                         ("damage_massive_only", "massive channels only")]):
        values = sep[column].to_numpy(dtype=float)
        keep = drawable(values)
        damages.extend(values)
        right.barh(sep["network"].map(position).to_numpy()[keep] + (j - 1) * width, values[keep], height=width, label=label)
        missing += undrawn([f"{label} ({label_of(n)})" for n in sep["network"]], values)
    right.set_yticks(np.arange(len(networks)), [label_of(n) for n in networks])
    right.set_ylim(len(networks) - 0.5, -0.5)
    right.axvline(0, color="grey", lw=1)
    value_axis(right, damages, "x", f"{axis_label(task)}, damage")
    right.set_title("damage against normal (positive = worse)", fontsize=9)
    note_undrawn(right, missing)
    _legend(right, fontsize=7)
    return _save(fig, path)
