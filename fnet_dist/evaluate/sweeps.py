"""Sweeps of the edit strength (the paper's Figures 5-7): multiply or add over a range, per mask.

- ``DEFAULT_FACTORS`` / ``DEFAULT_VALUES``: the multiplicative factors and additive values swept by default.
- ``sweep_conditions(bases, *, factors, values) -> list[Condition]``: for each base condition, the same mask
  once per factor (edit ``multiply``) and once per value (edit ``add``).
- ``sweep(model, bases, out, *, factors, values, tasks, ...) -> DataFrame``: the normal model and every
  sweep condition through ``evaluate_conditions``; the rows gain ``mask`` (the base's ``target``) and ``amount``.
"""
from __future__ import annotations

import math
import os
from dataclasses import replace
from typing import Sequence

import pandas as pd

from ..core.conditions import NORMAL, Condition
from ..core.errors import InputError
from ..model.edit import Edit
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


def sweep_conditions(bases: Sequence[Condition], *, factors: Sequence[float] = DEFAULT_FACTORS,
                     values: Sequence[float] = DEFAULT_VALUES) -> list[Condition]:
    """Each base condition's mask multiplied by each factor and shifted by each value."""

    bases = [b for b in bases if b.mask is not None]
    if not bases:
        raise InputError("a sweep needs at least one masked condition")
    edits = [Edit("multiply", f) for f in _finite("factor", factors)] + [Edit("add", v) for v in _finite("value", values)]
    if not edits:
        raise InputError("a sweep needs at least one factor or value")
    return [replace(base, edit=edit) for base in bases for edit in edits]


def sweep(model, bases: Sequence[Condition], out: str | os.PathLike, *, factors: Sequence[float] = DEFAULT_FACTORS,
          values: Sequence[float] = DEFAULT_VALUES, tasks: Sequence[str] | None, **options) -> pd.DataFrame:
    """Evaluate the normal model and each base mask at each strength on ``tasks`` (the run's perplexity tasks);
    ``options`` go to ``evaluate_conditions``."""
    conditions = sweep_conditions(bases, factors=factors, values=values)
    rows = evaluate_conditions(model, [NORMAL, *conditions], tasks, out, **options)
    targets = {c.name: c.target for c in conditions}
    return rows.assign(mask=rows["condition"].map(targets).fillna(""), amount=rows["factor"].astype(float))
