"""Conditions as records: structured fields, a neuron mask (or none) and an edit; names are for display only.

- ``Condition(kind, mask=None, edit=None, corpus=, template=, percent=, seed=, control=, draw=, label=)``:
  ``kind`` says what chose the mask (``CONDITION_KINDS``); the other fields say which one. ``.name`` (for
  people: ``inhibit:news/3``, ``top5:multiply1.02@news``), ``.slug`` (a folder name), ``.target`` (the mask
  without the edit), ``.fields()`` (the columns every result row carries), ``.fingerprint()``.
  Nothing parses a name: tables, controls and findings select rows by their field columns.
- ``NORMAL``: the unedited model; ``custom(label, mask, edit)``: an ad-hoc mask.
- ``edit_label(edit)``: ``inhibit``, ``multiply1.02``, ``add0.5``; ``slug_of(name)``: a name's folder name.
- ``select_conditions(conditions, patterns)``: keep those whose display name matches a shell pattern.
- ``check_conditions(conditions)``: unique names and folder names.
- ``matching(rows, **fields)``: the result rows whose field columns equal ``fields``; ``pick``: their names.

A mask is any object with ``values`` (bool array of shape (n_layers, d_model)) and ``count``; an edit any
with ``kind``, ``value`` and ``to_dict()`` (``fnet_dist.model``'s ``NeuronMask`` and ``Edit``). The
constructors that build masks from stores live in ``fnet_dist.evaluate.conditions``.
"""
from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from .errors import InputError

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "CONDITION_KINDS",
    "FIELD_COLUMNS",
    "NORMAL",
    "Condition",
    "check_conditions",
    "custom",
    "edit_label",
    "matching",
    "pick",
    "select_conditions",
    "slug_of",
]

CONDITION_KINDS = ("normal", "network", "random", "top", "top_no_first_token", "localization", "control", "minus_massive",
                   "massive_only", "custom")
FIELD_COLUMNS = ["kind", "edit", "factor", "corpus", "template", "percent", "seed", "control", "draw"]
_NEEDS = {"network": ("corpus",), "random": ("percent", "seed"), "top": ("percent", "corpus"),
          "top_no_first_token": ("percent", "corpus"),
          "localization": ("corpus",), "control": ("control", "draw"), "minus_massive": ("corpus", "template"),
          "massive_only": ("corpus", "template"), "custom": ("label",)}
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/@=+-]*$")


@dataclass(frozen=True)
class Condition:
    """One way of running the model: ``mask`` neurons edited by ``edit`` (or neither: the normal model).

    corpus, template : the network (template 1-based; ``None`` with kind ``network``: all templates at once).
    percent, seed : the share of neurons of a random / top mask and the random draw's seed.
    control, draw : a random control's kind (``evaluate.draws.CONTROL_KINDS``) and draw number; a matched control
        also carries the corpus and template of the network it is matched to.
    label : the display name of a ``custom`` mask.
    """

    kind: str = "normal"
    mask: "Any" = None
    edit: "Any" = None
    corpus: str | None = None
    template: int | None = None
    percent: float | None = None
    seed: int | None = None
    control: str | None = None
    draw: int | None = None
    label: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in CONDITION_KINDS:
            raise InputError(f"condition kind {self.kind!r} is unknown; expected one of {', '.join(CONDITION_KINDS)}")
        missing = [f for f in _NEEDS.get(self.kind, ()) if getattr(self, f) is None]
        if missing:
            raise InputError(f"a {self.kind} condition needs {', '.join(missing)}; got none")
        if self.label is not None and not _LABEL.match(self.label):
            raise InputError(f"condition name {self.label!r} must start with a letter or digit and use only letters, "
                             f"digits and _ . : / @ = + -, e.g. 'half'")
        if (self.mask is None) != (self.edit is None) or (self.kind == "normal") != (self.mask is None):
            raise InputError(f"condition {self.label or self.kind!r} needs both a mask and an edit, or neither (the normal model)")

    @property
    def target(self) -> str:
        """The mask without the edit, for display: ``news/3``, ``top5@news``, ``fraction15/2``."""
        k, where = self.kind, f"{self.corpus}/{'all' if self.template is None else self.template}"
        if k == "normal":
            return "normal"
        if k == "random":
            return f"random{self.percent:g}:seed{self.seed}"
        if k == "top":
            return f"top{self.percent:g}@{self.corpus}"
        if k == "top_no_first_token":
            return f"top{self.percent:g}-nofirst@{self.corpus}"
        if k == "localization":
            return f"localization@{self.corpus}"
        if k == "control":
            base = f"fraction{self.percent:g}" if self.control == "fraction" else f"{self.control}:{where}"
            return f"ctl-{base}/{self.draw}"
        if k in ("minus_massive", "massive_only"):
            return f"{k.replace('_', '-')}:{where}"
        return where if k == "network" else str(self.label)

    @property
    def name(self) -> str:
        """For display only: ``normal``, ``inhibit:news/3``, ``top5:multiply1.02@news``, ``random15:seed0``."""
        if self.kind == "normal":
            return "normal"
        verb = edit_label(self.edit)
        if self.kind in ("top", "top_no_first_token", "localization"):
            head, _, corpus = self.target.partition("@")
            return f"{head}:{verb}@{corpus}"
        if self.kind in ("network", "custom"):
            return f"{verb}:{self.target}"
        return self.target if verb == "inhibit" else f"{self.target}:{verb}"

    @property
    def slug(self) -> str:
        """A folder name for the condition (``inhibit:news/3`` -> ``inhibit-news_3``)."""
        return slug_of(self.name)

    @property
    def neurons(self) -> int:
        return 0 if self.mask is None else int(self.mask.count)

    def fields(self) -> dict[str, Any]:
        """The structured fields as result-table columns (``FIELD_COLUMNS``); absent ones are None."""
        edit = None if self.edit is None else self.edit.to_dict()
        return {"kind": self.kind, "edit": edit and edit["kind"], "factor": edit and edit["value"],
                "corpus": self.corpus if self.kind != "custom" else self.label, "template": self.template,
                "percent": self.percent, "seed": self.seed, "control": self.control, "draw": self.draw}

    def fingerprint(self) -> dict[str, Any]:
        """What identifies this condition's result: its fields, the mask bits (hashed) and the edit."""
        if self.mask is None:
            return {"fields": self.fields(), "mask": None, "edit": None}
        values = np.ascontiguousarray(np.asarray(self.mask.values, dtype=bool))
        digest = hashlib.sha256(np.packbits(values).tobytes() + repr(values.shape).encode()).hexdigest()
        edit = dataclasses.asdict(self.edit) if dataclasses.is_dataclass(self.edit) else repr(self.edit)
        return {"fields": self.fields(), "mask": digest, "neurons": self.neurons, "shape": list(values.shape), "edit": edit}


NORMAL = Condition()


def slug_of(name: str) -> str:
    """The folder name of a condition's display name (``:`` → ``-``, ``/`` → ``_``, ``@`` → ``_at_``)."""
    return name.replace(":", "-").replace("/", "_").replace("@", "_at_")


def custom(label: str, mask: Any, edit: Any) -> Condition:
    """An ad-hoc condition: ``mask`` edited by ``edit``, shown as ``<edit>:<label>``."""
    return Condition("custom", mask, edit, label=label)


def edit_label(edit: Any) -> str:
    """``inhibit``, or the kind with its value: ``multiply1.02``, ``add0.5``."""
    return "inhibit" if edit.kind == "inhibit" else f"{edit.kind}{edit.value:g}"


def check_conditions(conditions: Sequence[Condition]) -> list[Condition]:
    """``conditions`` as a list, refusing none, repeated names, or names that share a folder."""
    conditions = list(conditions)
    if not conditions:
        raise InputError("no conditions to evaluate; give at least one (e.g. the normal model)")
    for attribute in ("name", "slug"):
        seen: dict[str, str] = {}
        for condition in conditions:
            key = getattr(condition, attribute)
            if key in seen:
                raise InputError(f"conditions {seen[key]!r} and {condition.name!r} have the same {attribute}; rename one")
            seen[key] = condition.name
    return conditions


def select_conditions(conditions: Sequence[Condition], patterns: Sequence[str] | None) -> list[Condition]:
    """The conditions whose display names match any of ``patterns`` (shell wildcards), in their order.

    ``None`` keeps all; a pattern that matches nothing raises with the names there are.
    """
    if not patterns:
        return list(conditions)
    names = [c.name for c in conditions]
    for pattern in patterns:
        if not fnmatch.filter(names, pattern):
            raise InputError(f"--conditions {pattern!r} matches no condition; there are: {', '.join(names)}")
    return [c for c in conditions if any(fnmatch.fnmatchcase(c.name, p) for p in patterns)]


def _equal(column: "pd.Series", value: Any) -> "pd.Series":
    import pandas as pd

    if value is None:
        return column.isna()
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return pd.to_numeric(column, errors="coerce").sub(value).abs() < 1e-9
    return column == value


def matching(rows: "pd.DataFrame", **fields: Any) -> "pd.DataFrame":
    """The result rows whose field columns (``FIELD_COLUMNS``) equal ``fields`` (``None``: the field is absent)."""
    unknown = [f for f in fields if f not in FIELD_COLUMNS]
    if unknown:
        raise InputError(f"unknown condition field(s) {unknown}; expected some of {', '.join(FIELD_COLUMNS)}")
    keep = np.ones(len(rows), dtype=bool)
    for field, value in fields.items():
        keep &= _equal(rows[field], value).to_numpy()
    return rows[keep]


def pick(rows: "pd.DataFrame", **fields: Any) -> list[str]:
    """Names of the conditions whose rows match ``fields`` (see ``matching``), in row order."""
    return list(dict.fromkeys(matching(rows, **fields)["condition"]))
