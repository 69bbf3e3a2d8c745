"""What the findings read from a run's evaluate folder: per-example damage of each condition, by role.

The one place that knows how conditions are named (``inhibit:news/3``, ``ctl-matched_count:news/3/0``,
``top5:multiply1.02@news`` …): the findings ask for roles (a network, its draws of one kind, its part without
massive channels, the amplified top neurons) and get names and per-example values back.

- ``Evidence(folder)``: ``.primary`` (one row per condition and task), ``.tasks``, ``.names``.
- ``.damage(condition, task) -> pd.Series``: per-example damage against ``normal`` (positive = worse), indexed by
  ``doc_id``: accuracy lost per example (0/1 metrics), or nats per word lost per passage (word perplexity:
  (log-likelihood under normal - under the condition) / words). Empty when the samples are missing.
- ``.units(task)``: the damage's units. ``.networks()``: single networks inhibited (``inhibit:<corpus>/<k>``).
- ``.draws(kind, network, task) -> (names, DataFrame draws × examples)``; ``.part(label, network)``: the
  condition of a network's part (``minus-massive`` / ``massive-only``).
- ``.top(percent, verb)``: ``{suffix: condition}`` for the top-percent conditions of every corpus (``""``
  for a single corpus, ``"@news"`` …), and ``.localization(verb, suffix)``.
- ``.mask(condition) -> NeuronMask | None`` (the evaluate stage's saved masks) and ``.selection`` (the rule
  that chose the networks evaluated against controls).
"""
from __future__ import annotations

import json
import re
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from ..evaluate.conditions import Condition

__all__ = ["Evidence"]

_NETWORK = re.compile(r"^inhibit:(?P<corpus>[^/]+)/(?P<template>\d+)$")


class Evidence:
    """Reads the evaluate folder lazily; every value comes from lm-eval's own logged samples."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    @cached_property
    def rows(self) -> pd.DataFrame:
        from ..evaluate.tables import primary_rows

        frames = [pd.read_csv(p) for p in (self.folder / "results.csv", self.folder / "controls" / "results.csv") if p.is_file()]
        return primary_rows(pd.concat(frames, ignore_index=True)).drop_duplicates(["condition", "task"]) if frames else pd.DataFrame(
            columns=["condition", "task", "metric", "value", "neurons"])

    @property
    def primary(self) -> pd.DataFrame:
        return self.rows

    @property
    def tasks(self) -> list[str]:
        return list(dict.fromkeys(self.rows["task"]))

    @property
    def names(self) -> set[str]:
        return set(self.rows["condition"])

    def metric(self, task: str) -> str:
        return str(self.rows.loc[self.rows["task"] == task, "metric"].iloc[0])

    def units(self, task: str) -> str:
        metric = self.metric(task)
        if metric == "word_perplexity":
            return f"nats per word lost on {task} (per passage)"
        return f"{metric} lost on {task} (share of examples)"

    def _samples(self, condition: str, task: str) -> pd.Series:
        """Per-example score of ``condition`` on ``task`` (higher = better), indexed by doc_id."""
        return _scores(str(self.folder), condition, task, self.metric(task))

    def damage(self, condition: str, task: str) -> pd.Series:
        normal, edited = self._samples("normal", task), self._samples(condition, task)
        both = normal.index.intersection(edited.index)
        return (normal[both] - edited[both]).sort_index()

    def networks(self) -> list[str]:
        return [n for n in dict.fromkeys(self.rows["condition"]) if _NETWORK.match(n)]

    def neurons(self, condition: str) -> int:
        return int(self.rows.loc[self.rows["condition"] == condition, "neurons"].iloc[0])

    def draws(self, kind: str, network: str, task: str, fraction: float = 0.15) -> tuple[list[str], pd.DataFrame]:
        """The draws of one control ``kind`` for ``network``: their names and per-example damage (draws × examples)."""
        target = network.split(":", 1)[-1]
        prefix = f"ctl-fraction{100 * fraction:g}/" if kind == "fraction" else f"ctl-{kind}:{target}/"
        names = sorted((n for n in self.names if n.startswith(prefix) and n[len(prefix):].isdigit()),
                       key=lambda n: int(n[len(prefix):]))
        rows = [self.damage(n, task).rename(n) for n in names]
        return names, (pd.DataFrame(rows) if rows else pd.DataFrame())

    @staticmethod
    def part(label: str, network: str) -> str:
        """``minus-massive:<corpus>/<k>`` or ``massive-only:<corpus>/<k>``."""
        return f"{label}:{network.split(':', 1)[-1]}"

    def top(self, percent: float, verb: str) -> dict[str, str]:
        base = f"top{percent:g}:{verb}"
        return {n[len(base):]: n for n in sorted(self.names) if n == base or n.startswith(base + "@")}

    @staticmethod
    def localization(verb: str, suffix: str) -> str:
        return f"localization:{verb}{suffix}"

    def mask(self, condition: str):
        from ..masks import NeuronMask

        path = self.folder / "masks" / f"{Condition(condition).slug}.npz"
        return NeuronMask.load(str(path)) if path.is_file() else None

    @cached_property
    def selection(self) -> dict:
        path = self.folder / "controls" / "selection.json"
        return json.loads(path.read_text()) if path.is_file() else {}


def _scores(folder: str, condition: str, task: str, metric: str) -> pd.Series:
    """Per-example score (higher = better) from ``conditions/<slug>/samples_<task>.jsonl`` under ``folder`` or
    its ``controls``: the 0/1 metric itself, or log-likelihood per word for word perplexity."""
    slug = Condition(condition).slug
    for root in (Path(folder), Path(folder) / "controls"):
        path = root / "conditions" / slug / f"samples_{task}.jsonl"
        if path.is_file():
            return _read_scores(str(path), path.stat().st_mtime_ns, metric)
    return pd.Series(dtype=float)


@lru_cache(maxsize=512)
def _read_scores(path: str, mtime: int, metric: str) -> pd.Series:
    scores = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            item = json.loads(line)
            value = item.get(metric)
            if metric in ("word_perplexity", "byte_perplexity") and isinstance(value, (list, tuple)):
                loglikelihood, units = value
                scores[item["doc_id"]] = loglikelihood / units if units else np.nan
            elif isinstance(value, (int, float, bool)):
                scores[item["doc_id"]] = float(value)
    return pd.Series(scores, dtype=float)
