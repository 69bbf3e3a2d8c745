"""Conditions to evaluate: a name, a neuron mask (or none) and an edit.

- ``Condition(name, mask=None, edit=None)``: ``normal`` has neither; any other has both.
  ``.slug`` (a folder name), ``.neurons`` (masked count), ``.fingerprint()`` (what makes a result reusable).
- ``NORMAL``: the unedited model.
- ``edit_label(edit)``: ``inhibit``, ``multiply1.02``, ``add0.5``.
- ``network_conditions(networks, edit=None, ...)``: each template of a networks store inhibited
  (``inhibit:news/3``, templates numbered from 1 as in the match tables) and all of them at once (``inhibit:news/all``, the paper's "masked 10").
- ``random_condition(shape, percent, seed)``: ``random15:seed0``.
- ``top_conditions(networks, percent, factor)``: ``top5:inhibit`` and ``top5:multiply1.02``.
- ``select_conditions(conditions, patterns)``: keep those whose name matches a shell pattern.
- ``check_conditions(conditions)``: unique names and folder names.
"""
from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from ..errors import InputError

if TYPE_CHECKING:
    from ..edit import Edit
    from ..masks import NeuronMask

__all__ = [
    "NORMAL",
    "Condition",
    "check_conditions",
    "edit_label",
    "network_condition_name",
    "network_conditions",
    "random_condition_name",
    "random_condition",
    "select_conditions",
    "top_conditions",
]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/@=+-]*$")


@dataclass(frozen=True)
class Condition:
    """One way of running the model: ``mask`` neurons edited by ``edit``, or neither (the normal model)."""

    name: str
    mask: "NeuronMask | None" = None
    edit: "Edit | None" = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise InputError(
                f"condition name {self.name!r} must start with a letter or digit and use only letters, digits "
                f"and _ . : / @ = + -, e.g. 'inhibit:news/3'"
            )
        if (self.mask is None) != (self.edit is None):
            raise InputError(f"condition {self.name!r} needs both a mask and an edit, or neither (the normal model)")

    @property
    def slug(self) -> str:
        """A folder name for the condition (``inhibit:news/3`` -> ``inhibit-news_3``)."""
        return self.name.replace(":", "-").replace("/", "_").replace("@", "_at_")

    @property
    def neurons(self) -> int:
        return 0 if self.mask is None else int(self.mask.count)

    def fingerprint(self) -> dict[str, Any]:
        """What identifies this condition's result: the mask bits (hashed) and the edit."""
        if self.mask is None:
            return {"name": self.name, "mask": None, "edit": None}
        values = np.ascontiguousarray(np.asarray(self.mask.values, dtype=bool))
        digest = hashlib.sha256(np.packbits(values).tobytes() + repr(values.shape).encode()).hexdigest()
        edit = dataclasses.asdict(self.edit) if dataclasses.is_dataclass(self.edit) else repr(self.edit)
        return {"name": self.name, "mask": digest, "neurons": self.neurons, "shape": list(values.shape), "edit": edit}


NORMAL = Condition("normal")


def edit_label(edit: "Edit") -> str:
    """``inhibit``, or the kind with its value: ``multiply1.02``, ``add0.5``."""
    return "inhibit" if edit.kind == "inhibit" else f"{edit.kind}{edit.value:g}"


def network_condition_name(verb: str, dataset: str, position: int | None) -> str:
    """``<verb>:<dataset>/<template>`` with the 1-based template number of the match tables and the paper
    (``position`` is 0-based along the store's ``component`` axis); ``None`` names the union, ``/all``."""
    return f"{verb}:{dataset}/{'all' if position is None else position + 1}"


def random_condition_name(percent: float, seed: int) -> str:
    """``random<percent>:seed<seed>``."""
    return f"random{percent:g}:seed{seed}"


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


def network_conditions(networks, *, edit: "Edit | None" = None, threshold: float = 3.6, two_sided: bool = True,
                       union: bool = True) -> list[Condition]:
    """One condition per template of a networks store (URL or Dataset), plus their union when ``union``.

    Names: ``<verb>:<dataset>/<component>`` and ``<verb>:<dataset>/all``, ``<verb>`` from ``edit_label``.
    """
    from ..edit import Edit
    from ..masks import NeuronMask
    from ..storage import open_store
    from storage_schemas import NETWORKS

    ds = open_store(networks, NETWORKS) if isinstance(networks, str) else networks
    edit = edit or Edit("inhibit")
    dataset, verb = str(ds.attrs.get("dataset", "networks")), edit_label(edit)
    components = list(range(ds.sizes["component"]))
    conditions = [
        Condition(network_condition_name(verb, dataset, k),
                  NeuronMask.from_networks(ds, [k], threshold=threshold, two_sided=two_sided), edit)
        for k in components
    ]
    if union and len(components) > 1:
        every = NeuronMask.from_networks(ds, components, threshold=threshold, two_sided=two_sided)
        conditions.append(Condition(network_condition_name(verb, dataset, None), every, edit))
    return conditions


def random_condition(shape: tuple[int, int], *, percent: float = 15.0, seed: int = 0) -> Condition:
    """``random<percent>:seed<seed>``: that share of all neurons, drawn with ``seed``, inhibited."""
    from ..edit import Edit
    from ..masks import NeuronMask

    if not 0 < percent < 100:
        raise InputError(f"random percent {percent!r} must lie between 0 and 100 (the paper uses 15)")
    mask = NeuronMask.random(tuple(shape), fraction=percent / 100, seed=seed)
    return Condition(random_condition_name(percent, seed), mask, Edit("inhibit"))


def top_conditions(networks, *, percent: float = 5.0, factor: float = 1.02, suffix: str = "") -> list[Condition]:
    """``top<p>:inhibit`` and ``top<p>:multiply<factor>`` on the top ``percent`` % of neurons by |z|."""
    from ..edit import Edit
    from ..masks import NeuronMask

    mask = NeuronMask.top_percent(networks, percent)
    return [Condition(f"top{percent:g}:{edit_label(edit)}{suffix}", mask, edit)
            for edit in (Edit("inhibit"), Edit("multiply", factor))]


def select_conditions(conditions: Sequence[Condition], patterns: Sequence[str] | None) -> list[Condition]:
    """The conditions whose names match any of ``patterns`` (shell wildcards), in their order.

    ``None`` keeps all; a pattern that matches nothing raises with the names there are.
    """
    if not patterns:
        return list(conditions)
    names = [c.name for c in conditions]
    for pattern in patterns:
        if not fnmatch.filter(names, pattern):
            raise InputError(f"--conditions {pattern!r} matches no condition; there are: {', '.join(names)}")
    return [c for c in conditions if any(fnmatch.fnmatchcase(c.name, p) for p in patterns)]
