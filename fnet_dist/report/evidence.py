"""What the findings read from a run's evaluate folder: per-example damage of each condition, by role.

Conditions are found by their fields (``fnet_dist.evaluate.conditions.FIELD_COLUMNS``: kind, edit, factor,
corpus, template, percent, control, draw), which every result row carries; no name is parsed. The findings
ask for roles (a network, its draws of one kind, its part without massive channels, the amplified top
neurons) and get condition names (to report and to find the samples by) and per-example values back.

- ``Evidence(evaluation, controls)`` (``EvaluationFiles`` of the evaluate and controls stages): ``.primary`` (one row per condition and task), ``.tasks``, ``.names``.
- ``.damage(condition, task) -> pd.Series``: per-example damage against ``normal`` (positive = worse), indexed by
  ``doc_id``: accuracy lost per example (0/1 metrics), or nats per word lost per passage (word perplexity:
  (log-likelihood under normal - under the condition) / words). Empty when the samples are missing.
- ``.units(task)``: the damage's units. ``.networks()``: single networks inhibited (kind ``network``).
- ``.draws(kind, network, task, fraction) -> (names, DataFrame draws × examples)``; ``.part(kind, network)``: the
  condition of a network's part (``minus_massive`` / ``massive_only``), or None when it was not evaluated.
- ``.top(percent, edit, factor=None)``: ``{suffix: condition}`` for the top-percent conditions of every corpus
  (``"@news"`` …), and ``.localization(suffix, edit)``.
- ``.mask(condition) -> NeuronMask | None`` (the evaluate stage's saved masks) and ``.selection`` (the rule
  that chose the networks evaluated against controls).
"""
from __future__ import annotations

import json
from functools import cached_property, lru_cache

import numpy as np
import pandas as pd

from ..core.conditions import FIELD_COLUMNS, matching, slug_of
from ..core.layout import EvaluationFiles
from ..core.metrics import primary_rows
from ..core.names import display_name
from ..model.masks import NeuronMask

__all__ = ["Evidence"]


class Evidence:
    """Reads the evaluate folder lazily; every value comes from lm-eval's own logged samples."""

    def __init__(self, evaluation: EvaluationFiles, controls: EvaluationFiles) -> None:
        self.evaluation, self.controls = evaluation, controls

    @cached_property
    def rows(self) -> pd.DataFrame:
        frames = [pd.read_csv(p) for p in (self.evaluation.results, self.controls.results) if p.is_file()]
        if not frames:
            return pd.DataFrame(columns=["condition", "task", "metric", "value", "neurons", *FIELD_COLUMNS])
        rows = pd.concat(frames, ignore_index=True)
        for column in FIELD_COLUMNS:  # rows written without a field (an older run) have it absent
            if column not in rows:
                rows[column] = None
        return primary_rows(rows).drop_duplicates(["condition", "task"])

    @cached_property
    def conditions(self) -> pd.DataFrame:
        """One row per condition: its name and fields."""
        return self.rows.drop_duplicates("condition")

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
        return _scores((self.evaluation, self.controls), condition, task, self.metric(task))

    def damage(self, condition: str, task: str) -> pd.Series:
        normal, edited = self._samples("normal", task), self._samples(condition, task)
        both = normal.index.intersection(edited.index)
        return (normal[both] - edited[both]).sort_index()

    def _names(self, rows: pd.DataFrame) -> list[str]:
        return list(dict.fromkeys(rows["condition"]))

    def networks(self) -> list[str]:
        rows = matching(self.conditions, kind="network", edit="inhibit")
        return self._names(rows[rows["template"].notna()])

    def where(self, network: str) -> dict:
        """The corpus and template of the network condition named ``network``."""
        row = self.conditions[self.conditions["condition"] == network].iloc[0]
        return {"corpus": row["corpus"], "template": int(row["template"])}

    def records(self, names) -> list[dict]:
        """The conditions named ``names`` as records: ``condition`` and the field columns (absent ones None)."""
        table = self.conditions.set_index("condition", drop=False)[["condition", *FIELD_COLUMNS]]
        table = table.astype(object).where(table.notna(), None)
        return [table.loc[name].to_dict() if name in table.index else {"condition": name} for name in names]

    def label(self, name: str) -> str:
        """The display name of the condition named ``name``, from its fields."""
        return display_name(self.records([name])[0])

    def neurons(self, condition: str) -> int:
        return int(self.rows.loc[self.rows["condition"] == condition, "neurons"].iloc[0])

    def draws(self, kind: str, network: str, task: str, fraction: float) -> tuple[list[str], pd.DataFrame]:
        """The draws of one control ``kind`` for ``network``: their names and per-example damage (draws × examples);
        ``fraction``: the share of the ``fraction`` draws (``evaluate.random_fraction``)."""
        if kind == "fraction":
            chosen = matching(self.conditions, kind="control", control=kind, percent=round(100 * fraction, 9))
        else:
            chosen = matching(self.conditions, kind="control", control=kind, **self.where(network))
        names = self._names(chosen.sort_values("draw"))
        rows = [self.damage(n, task).rename(n) for n in names]
        return names, (pd.DataFrame(rows) if rows else pd.DataFrame())

    def part(self, kind: str, network: str) -> str | None:
        """The condition of ``network``'s part ``kind`` (``minus_massive`` / ``massive_only``), or None."""
        names = self._names(matching(self.conditions, kind=kind, **self.where(network)))
        return names[0] if names else None

    def top(self, percent: float, edit: str, factor: float | None = None, kind: str = "top") -> dict[str, str]:
        """``{"@<corpus>": condition}`` of the top-``percent`` conditions edited by ``edit`` (× ``factor``);
        ``kind`` ``top_no_first_token``: those without the first-token templates."""
        fields = {"kind": kind, "percent": float(percent), "edit": edit, **({"factor": factor} if factor is not None else {})}
        chosen = matching(self.conditions, **fields)
        return {f"@{r.corpus}": r.condition for r in chosen.sort_values("corpus").itertuples()}

    def localization(self, suffix: str, edit: str) -> str | None:
        """The LLM-Localization condition of the corpus of ``suffix`` (``@news``), or None."""
        names = self._names(matching(self.conditions, kind="localization", edit=edit, corpus=suffix.removeprefix("@")))
        return names[0] if names else None

    def mask(self, condition: str):
        path = self.evaluation.mask(slug_of(condition))
        return NeuronMask.load(str(path)) if path.is_file() else None

    @cached_property
    def selection(self) -> dict:
        path = self.controls.selection
        return json.loads(path.read_text()) if path.is_file() else {}


def _scores(folders: tuple[EvaluationFiles, ...], condition: str, task: str, metric: str) -> pd.Series:
    """Per-example score (higher = better) from the condition's logged samples in the first of ``folders`` that
    has them: the 0/1 metric itself, or log-likelihood per word for word perplexity."""
    slug = slug_of(condition)
    for folder in folders:
        path = folder.condition(slug).samples(task)
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
