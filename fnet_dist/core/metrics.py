"""What each evaluation task reports and how it is labelled, and the rows of a results table that carry it.

- ``PERPLEXITY_METRICS``: metrics where lower is better (word / byte perplexity, bits per byte).
- ``primary_metric(task)``: the metric the paper reports for a task (MCC for CoLA, F1 for MRPC / QQP …).
- ``task_label(task)``: a table label (``CoLA (MCC)``); ``axis_label(task)``: a figure axis with the metric's
  unit (``Wiki: word perplexity``, ``Rotten Tomatoes: accuracy (share correct)``).
- ``primary_rows(rows)``: the rows of a tidy results table (columns condition, task, metric, filter, …) that
  carry each task's reported metric.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["PERPLEXITY_METRICS", "axis_label", "primary_metric", "primary_rows", "task_label"]

PERPLEXITY_METRICS = ("word_perplexity", "byte_perplexity", "bits_per_byte")
_PRIMARY = {"cola": "mcc", "mrpc": "f1", "qqp": "f1", "squad_fnet": "f1",
            "wikitext": "word_perplexity", "wiki_ppl": "word_perplexity", "news_ppl": "word_perplexity"}
_LABELS = {"cola": "CoLA", "mnli": "MNLI", "mrpc": "MRPC", "qnli": "QNLI", "qqp": "QQP", "rte": "RTE",
           "sst2": "SST-2", "wnli": "WNLI", "ag_news_fnet": "AG News", "squad_fnet": "SQuAD", "wikitext": "WikiText",
           "sentiment_rt": "Rotten Tomatoes", "polarity_pl": "Polarity", "wiki_ppl": "Wiki", "news_ppl": "News"}
_METRIC_LABELS = {"mcc": "MCC", "f1": "F1", "word_perplexity": "PPL", "acc": "acc", "exact_match": "EM"}
_METRIC_UNITS = {"acc": "accuracy (share correct)", "mcc": "Matthews correlation (−1 to 1)", "f1": "F1 (0 to 1)",
                 "exact_match": "exact match (share)", "word_perplexity": "word perplexity",
                 "byte_perplexity": "byte perplexity", "bits_per_byte": "bits per byte"}


def primary_metric(task: str) -> str:
    """The metric the paper's tables report for ``task`` (``acc`` unless named otherwise)."""
    return _PRIMARY.get(task, "acc")


def task_label(task: str, metric: str | None = None) -> str:
    """A table row label such as ``CoLA (MCC)`` or ``SST-2``."""
    metric = metric or primary_metric(task)
    name = _LABELS.get(task, task)
    return name if metric == "acc" else f"{name} ({_METRIC_LABELS.get(metric, metric)})"


def axis_label(task: str, metric: str | None = None) -> str:
    """A figure axis label with the metric's unit, e.g. ``Wiki: word perplexity``."""
    metric = metric or primary_metric(task)
    return f"{_LABELS.get(task, task)}: {_METRIC_UNITS.get(metric, metric)}"


def primary_rows(rows: "pd.DataFrame") -> "pd.DataFrame":
    """The rows of each task's reported metric (``primary_metric``), filter ``none`` preferred."""
    keep = rows[rows["metric"] == rows["task"].map(primary_metric)]
    keep = keep.sort_values("filter", key=lambda s: s != "none", kind="stable").drop_duplicates(["condition", "task"])
    return keep.reset_index(drop=True)
