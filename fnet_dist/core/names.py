"""Display names: one name per thing in every table, figure and finding of a run, formatted from records.

Nothing here parses a name: a condition is named from its fields (``fnet_dist.core.conditions.FIELD_COLUMNS``),
which every result row carries.

- ``network_name(corpus, template)``: a group template (a network) of a corpus, ``news/5`` (templates
  numbered from 1, as in the match tables and the paper; ``all`` for their union).
- ``display_name(condition)``: a ``Condition``, or a mapping of its fields (a result row, a finding's condition
  record: ``condition`` and the field columns): the network's name (``news/5``) for the network inhibited, with
  the edit when it is another (``news/5 × 1.02``), a control draw as ``news/5 matched_count draw 3`` (``random 15 %
  draw 3`` for the shared fraction draws), a network's part (``news/5 without massive channels``), or the
  condition's name as it is (``normal``, ``top5:inhibit@news``).
- ``display_names(rows)``: ``{condition name: display name}`` of a results table's conditions, to name the cells
  of a table that carries names without fields (a probing table's columns, a controls table's networks).
- ``condition_names(records)``: a finding's conditions as display names, the draws of one set counted instead of
  listed (``news/5 matched_count draws (19)``).
- ``parse_network_name(name)``: what a user typed (``news/5``, ``news/all``) back to ``(corpus, template or None)``:
  the inverse of ``network_name`` for input only (a run's tables never parse names; they carry the fields).
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Mapping

from .errors import InputError

__all__ = ["condition_names", "display_name", "display_names", "network_name", "parse_network_name"]

_PARTS = {"minus_massive": "without massive channels", "massive_only": "massive channels only"}


def network_name(corpus: str, template: int | str) -> str:
    """``<corpus>/<template>``: ``template`` is 1-based (or ``all``)."""
    return f"{corpus}/{template}"


def parse_network_name(name: str) -> tuple[str, int | None]:
    """``news/5`` -> ``("news", 5)``; ``news/all`` -> ``("news", None)`` (every template of the corpus united)."""
    corpus, slash, template = str(name).strip().rpartition("/")
    if slash and corpus and template == "all":
        return corpus, None
    if not slash or not corpus or not template.isdigit() or int(template) < 1:
        raise InputError(f"network name {name!r}: expected CORPUS/TEMPLATE with the template numbered from 1 as in the "
                         f"report (e.g. news/5), or CORPUS/all")
    return corpus, int(template)


def _fields(condition) -> Mapping[str, Any]:
    """The fields of a ``Condition`` (with its name as ``condition``), or the mapping as it is."""
    if hasattr(condition, "fields") and callable(condition.fields):
        return {**condition.fields(), "condition": condition.name}
    return condition


def _field(fields: Mapping[str, Any], name: str):
    """A field; None when absent or NaN."""
    value = fields.get(name)
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def _network(fields: Mapping[str, Any]) -> str | None:
    corpus, template = _field(fields, "corpus"), _field(fields, "template")
    return network_name(corpus, "all" if template is None else int(template)) if corpus is not None else None


def _draw_set(fields: Mapping[str, Any]) -> str | None:
    """The set a control draw belongs to (``news/5 matched_count``, ``random 15 %``), or None for another kind."""
    if _field(fields, "kind") != "control":
        return None
    if _field(fields, "control") == "fraction":
        return f"random {float(_field(fields, 'percent')):g} %"
    return f"{_network(fields)} {_field(fields, 'control')}"


def display_name(condition) -> str:
    """The display name of a ``Condition`` or of a mapping of its fields (see the module docstring)."""
    fields = _fields(condition)
    kind, network = _field(fields, "kind"), _network(fields)
    if kind == "network" and network:
        edit, factor = _field(fields, "edit"), _field(fields, "factor")
        return network if edit in (None, "inhibit") else f"{network} {'×' if edit == 'multiply' else '+'} {float(factor):g}"
    if kind in _PARTS and network:
        return f"{network} {_PARTS[kind]}"
    if kind == "control":
        return f"{_draw_set(fields)} draw {int(_field(fields, 'draw'))}"
    return str(_field(fields, "condition"))


def display_names(rows) -> dict[str, str]:
    """``{name: display name}`` for each condition of ``rows`` (a DataFrame with ``condition`` and the field columns)."""
    return {record["condition"]: display_name(record) for record in rows.drop_duplicates("condition").to_dict("records")}


def condition_names(records: Iterable[Mapping[str, Any]]) -> list[str]:
    """Display names of condition records in first-seen order (repeats once), each set of draws once with its count."""
    counts: dict[str, int] = {}
    seen: set[str] = set()
    for record in records:
        record = {"condition": record} if isinstance(record, str) else record  # a findings.json of an older run
        if record.get("condition") in seen:
            continue
        seen.add(record.get("condition"))
        draws = _draw_set(record)
        key = f"\0{draws}" if draws else display_name(record)
        counts[key] = counts.get(key, 0) + 1
    return [f"{k[1:]} draws ({n})" if k.startswith("\0") else k for k, n in counts.items()]
