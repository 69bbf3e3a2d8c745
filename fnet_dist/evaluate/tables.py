"""Tables shaped like the paper's, from the tidy rows of ``evaluate_conditions``.

- (``fnet_dist.core.metrics.primary_rows``: one row per condition × task, the task's reported metric.)
- ``network_rows(rows, corpus, edit="inhibit")``: the rows of each single template of ``corpus`` (not their union).
- ``network_table(rows, corpus)``: Table 3, one row per inhibited network (named by
  ``fnet_dist.core.names.network_name``, ``news/5``), its neuron count, then one column per task.
- ``condition_table(rows, columns)``: Tables 10 / 11 and 4 / 9, one row per task (``CoLA (MCC)``), one
  column per condition (``{"Normal": "normal", "ICA": "top5:inhibit", ...}``), with an ``Average`` row over
  the non-perplexity tasks, perplexity tasks last.
- ``iou_table(pairs)``: Table 5, the IoU between named masks.
- ``to_markdown(table)`` (``inf`` / ``nan`` as they are, with a note); ``save_table(table, folder, name) -> (csv_path, markdown_path)``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import pandas as pd

from ..core.display import nonfinite_note
from ..core.errors import InputError
from ..core.metrics import PERPLEXITY_METRICS, primary_metric, primary_rows, task_label
from ..core.names import network_name

__all__ = ["condition_table", "iou_table", "network_rows", "network_table", "save_table", "to_markdown"]


def _is_perplexity(task: str) -> bool:
    return primary_metric(task) in PERPLEXITY_METRICS


def _task_order(tasks: Sequence[str]) -> list[str]:
    return sorted(dict.fromkeys(tasks), key=lambda t: (_is_perplexity(t), list(tasks).index(t)))


def network_rows(rows: pd.DataFrame, corpus: str, edit: str = "inhibit") -> pd.DataFrame:
    """The rows of each single template of ``corpus`` edited by ``edit`` (kind ``network``, not the union)."""
    keep = (rows["kind"] == "network") & (rows["corpus"] == corpus) & (rows["edit"] == edit) & rows["template"].notna()
    return rows[keep]


def network_table(rows: pd.DataFrame, corpus: str) -> pd.DataFrame:
    """Table 3: each template of ``corpus`` inhibited (not their union) × tasks."""
    chosen = network_rows(primary_rows(rows), corpus)
    if chosen.empty:
        raise InputError(f"no network of corpus {corpus!r} inhibited in the results; evaluate networks first")
    chosen = chosen.assign(network=[network_name(corpus, int(t)) for t in chosen["template"]])
    table = chosen.pivot(index="network", columns="task", values="value")
    order = list(dict.fromkeys(chosen["network"]))
    tasks = _task_order(list(dict.fromkeys(chosen["task"])))
    table = table.loc[order, tasks]
    table.columns = [task_label(t) for t in tasks]
    table.insert(0, "neurons", chosen.drop_duplicates("network").set_index("network").loc[order, "neurons"].astype(int))
    return table


def condition_table(rows: pd.DataFrame, columns: Mapping[str, str] | Sequence[str]) -> pd.DataFrame:
    """Tasks × the given conditions (``{column label: condition name}`` or names), with an Average row."""
    columns = dict(columns) if isinstance(columns, Mapping) else {c: c for c in columns}
    chosen = primary_rows(rows)
    missing = [c for c in columns.values() if c not in set(chosen["condition"])]
    if missing:
        raise InputError(f"conditions {missing} are not in the results; evaluated: {sorted(set(chosen['condition']))}")
    chosen = chosen[chosen["condition"].isin(list(columns.values()))]
    table = chosen.pivot(index="task", columns="condition", values="value")
    tasks = _task_order(list(dict.fromkeys(chosen["task"])))
    scores = [t for t in tasks if not _is_perplexity(t)]
    table = table[list(columns.values())]
    if len(scores) > 1:
        table.loc["__average__"] = table.loc[scores].mean()
        tasks = scores + ["__average__"] + [t for t in tasks if t not in scores]
    table = table.loc[tasks]
    table.index = ["Average" if t == "__average__" else task_label(t) for t in tasks]
    table.columns = list(columns)
    return table


def iou_table(pairs: Mapping[str, float]) -> pd.DataFrame:
    """Table 5: one row ``Spatial Similarity (IoU)``, one column per compared pair of methods."""
    return pd.DataFrame([dict(pairs)], index=["Spatial Similarity (IoU)"])


def _cell(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def to_markdown(table: pd.DataFrame) -> str:
    """A GitHub Markdown table with the index as the first column and 4-decimal numbers; ``inf`` / ``nan``
    shown as they are, with a note under the table."""
    header = [str(table.index.name or "")] + [str(c) for c in table.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, row in table.iterrows():
        lines.append("| " + " | ".join([str(label)] + [_cell(v) for v in row]) + " |")
    note = nonfinite_note(table)
    return "\n".join(lines) + "\n" + (f"\n{note}\n" if note else "")


def save_table(table: pd.DataFrame, folder: str | os.PathLike, name: str) -> tuple[Path, Path]:
    """Write ``table`` as ``folder/name.csv`` and ``folder/name.md``; its index is a column only when it names
    something (a task, a condition), never a bare row number (read back as "Unnamed: 0")."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = folder / f"{name}.csv", folder / f"{name}.md"
    table.to_csv(csv_path, na_rep="nan", index=not isinstance(table.index, pd.RangeIndex))
    md_path.write_text(to_markdown(table), encoding="utf-8")
    return csv_path, md_path
