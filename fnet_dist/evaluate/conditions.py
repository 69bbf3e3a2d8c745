"""Conditions to evaluate: structured fields, a neuron mask (or none) and an edit; names are for display only.

- ``Condition(kind, mask=None, edit=None, corpus=, template=, percent=, seed=, control=, draw=, label=)``:
  ``kind`` says what chose the mask (``CONDITION_KINDS``); the other fields say which one. ``.name`` (for
  people: ``inhibit:news/3``, ``top5:multiply1.02@news``), ``.slug`` (a folder name), ``.target`` (the mask
  without the edit), ``.fields()`` (the columns every result row carries), ``.fingerprint()``.
  Nothing parses a name: tables, controls and findings select rows by their field columns.
- ``NORMAL``: the unedited model; ``custom(label, mask, edit)``: an ad-hoc mask.
- ``edit_label(edit)``: ``inhibit``, ``multiply1.02``, ``add0.5``.
- ``network_conditions(networks, edit=None, ...)``: each template of a networks store (templates numbered
  from 1 as in the match tables) and all of them at once (``template=None``, the paper's "masked 10").
- ``random_condition(shape, percent, seed)``; ``top_conditions(networks, percent, factor, corpus)``.
- ``select_conditions(conditions, patterns)``: keep those whose display name matches a shell pattern.
- ``check_conditions(conditions)``: unique names and folder names.
- ``matching(rows, **fields)``: the result rows whose field columns equal ``fields``; ``pick``: their names.
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

from ..core.errors import InputError

if TYPE_CHECKING:
    import pandas as pd

    from ..model.edit import Edit
    from ..model.masks import NeuronMask

__all__ = [
    "CONDITION_KINDS",
    "FIELD_COLUMNS",
    "NORMAL",
    "Condition",
    "check_conditions",
    "custom",
    "edit_label",
    "network_conditions",
    "matching",
    "pick",
    "random_condition",
    "select_conditions",
    "slug_of",
    "top_conditions",
]

CONDITION_KINDS = ("normal", "network", "random", "top", "localization", "control", "minus_massive", "massive_only",
                   "custom")
FIELD_COLUMNS = ["kind", "edit", "factor", "corpus", "template", "percent", "seed", "control", "draw"]
_NEEDS = {"network": ("corpus",), "random": ("percent", "seed"), "top": ("percent", "corpus"),
          "localization": ("corpus",), "control": ("control", "draw"), "minus_massive": ("corpus", "template"),
          "massive_only": ("corpus", "template"), "custom": ("label",)}
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/@=+-]*$")


@dataclass(frozen=True)
class Condition:
    """One way of running the model: ``mask`` neurons edited by ``edit`` (or neither: the normal model).

    corpus, template : the network (template 1-based; ``None`` with kind ``network``: all templates at once).
    percent, seed : the share of neurons of a random / top mask and the random draw's seed.
    control, draw : a random control's kind (``draws.CONTROL_KINDS``) and draw number; a matched control
        also carries the corpus and template of the network it is matched to.
    label : the display name of a ``custom`` mask.
    """

    kind: str = "normal"
    mask: "NeuronMask | None" = None
    edit: "Edit | None" = None
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
        if self.kind in ("top", "localization"):
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


def custom(label: str, mask: "NeuronMask", edit: "Edit") -> Condition:
    """An ad-hoc condition: ``mask`` edited by ``edit``, shown as ``<edit>:<label>``."""
    return Condition("custom", mask, edit, label=label)


def edit_label(edit: "Edit") -> str:
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


def network_conditions(networks, *, threshold: float, two_sided: bool = True, edit: "Edit | None" = None,
                       union: bool = True) -> list[Condition]:
    """One condition per template of a networks store (URL or Dataset), plus their union when ``union``."""
    from ..model.edit import Edit
    from ..model.masks import NeuronMask
    from ..store.storage import open_store
    from storage_schemas import NETWORKS

    ds = open_store(networks, NETWORKS) if isinstance(networks, str) else networks
    edit = edit or Edit("inhibit")
    corpus = str(ds.attrs.get("dataset", "networks"))
    components = list(range(ds.sizes["component"]))
    conditions = [Condition("network", NeuronMask.from_networks(ds, [k], threshold=threshold, two_sided=two_sided),
                            edit, corpus=corpus, template=k + 1) for k in components]
    if union and len(components) > 1:
        every = NeuronMask.from_networks(ds, components, threshold=threshold, two_sided=two_sided)
        conditions.append(Condition("network", every, edit, corpus=corpus))
    return conditions


def random_condition(shape: tuple[int, int], *, percent: float, seed: int = 0) -> Condition:
    """That share of all neurons, drawn with ``seed``, inhibited."""
    from ..model.edit import Edit
    from ..model.masks import NeuronMask

    if not 0 < percent < 100:
        raise InputError(f"random percent {percent!r} must lie between 0 and 100 (the paper uses 15)")
    mask = NeuronMask.random(tuple(shape), fraction=percent / 100, seed=seed)
    return Condition("random", mask, Edit("inhibit"), percent=float(percent), seed=int(seed))


def top_conditions(networks, *, percent: float, factor: float, corpus: str | None = None) -> list[Condition]:
    """The top ``percent`` % of neurons by |z| inhibited and multiplied by ``factor``."""
    from ..model.edit import Edit
    from ..model.masks import NeuronMask

    corpus = corpus or str(getattr(networks, "attrs", {}).get("dataset", "networks"))
    mask = NeuronMask.top_percent(networks, percent)
    return [Condition("top", mask, edit, corpus=corpus, percent=float(percent))
            for edit in (Edit("inhibit"), Edit("multiply", factor))]


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
