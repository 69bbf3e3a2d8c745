"""Sweeps of the edit strength (the paper's Figures 5-7): multiply or add over a range, per mask.

- ``DEFAULT_FACTORS`` / ``DEFAULT_VALUES``: the multiplicative factors and additive values swept by default.
- ``sweep_conditions(masks, *, factors, values) -> list[Condition]``: for each named mask, one condition per
  factor (``<name>:multiply1.5``) and per value (``<name>:add1``).
- ``sweep(model, masks, out, *, factors, values, tasks, ...) -> DataFrame``: the normal model and every
  sweep condition through ``evaluate_conditions``; the rows gain ``mask``, ``kind`` and ``amount``.
"""
from __future__ import annotations

import math
import os
from typing import Mapping, Sequence

import pandas as pd

from ..errors import InputError
from .conditions import NORMAL, Condition, edit_label
from .runner import evaluate_conditions

__all__ = ["DEFAULT_FACTORS", "DEFAULT_VALUES", "sweep", "sweep_conditions"]

DEFAULT_FACTORS = (0.5, 0.9, 1.02, 1.1, 1.5, 2.0, 3.0)
DEFAULT_VALUES = (0.1, 0.5, 1.0, 1.5, 2.0, 3.0)


def _finite(name: str, amounts: Sequence[float]) -> list[float]:
    amounts = [float(a) for a in amounts]
    bad = [a for a in amounts if not math.isfinite(a)]
    if bad:
        raise InputError(f"sweep {name} {bad[0]!r} is not a finite number; give finite values, e.g. 1.02")
    return amounts


def sweep_conditions(masks: Mapping[str, object], *, factors: Sequence[float] = DEFAULT_FACTORS,
                     values: Sequence[float] = DEFAULT_VALUES) -> list[Condition]:
    """Conditions ``<mask name>:multiply<f>`` for each factor and ``<mask name>:add<v>`` for each value."""
    from ..edit import Edit

    if not masks:
        raise InputError("a sweep needs at least one mask")
    edits = [Edit("multiply", f) for f in _finite("factor", factors)] + [Edit("add", v) for v in _finite("value", values)]
    if not edits:
        raise InputError("a sweep needs at least one factor or value")
    return [Condition(f"{name}:{edit_label(edit)}", mask, edit) for name, mask in masks.items() for edit in edits]


def sweep(model, masks: Mapping[str, object], out: str | os.PathLike, *, factors: Sequence[float] = DEFAULT_FACTORS,
          values: Sequence[float] = DEFAULT_VALUES, tasks: Sequence[str] | None = ("wiki_ppl",), **options) -> pd.DataFrame:
    """Evaluate the normal model and each mask at each strength; ``options`` go to ``evaluate_conditions``."""
    conditions = sweep_conditions(masks, factors=factors, values=values)
    rows = evaluate_conditions(model, [NORMAL, *conditions], tasks, out, **options)
    by_name = {c.name: c for c in conditions}

    def describe(name: str) -> pd.Series:
        condition = by_name.get(name)
        if condition is None:
            return pd.Series({"mask": "", "kind": "normal", "amount": math.nan})
        mask_name = name[: -len(edit_label(condition.edit)) - 1]
        return pd.Series({"mask": mask_name, "kind": condition.edit.kind, "amount": float(condition.edit.value)})

    return pd.concat([rows, rows["condition"].apply(describe)], axis=1)
