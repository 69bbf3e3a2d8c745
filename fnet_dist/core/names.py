"""Display names: one name per thing in every table, figure and finding of a run.

- ``network_name(corpus, template)``: a group template (a network) of a corpus, ``news/5`` (templates
  numbered from 1, as in the match tables and the paper; ``all`` for their union).
- ``display_name(condition)``: a condition as the report shows it, from its fields
  (``fnet_dist.evaluate.conditions``: a ``Condition`` or a result row with the field columns kind, edit,
  factor, corpus, template, percent, control, draw): the network's name (``news/5``) for the network
  inhibited, with the edit when it is another (``news/5 × 1.02``), a control draw as ``news/5 matched_count
  draw 3`` (``random 15 % draw 3`` for the shared fraction draws), or the condition's name as it is. A bare
  name (read back from a file that carries no fields: a findings.json, a controls table) is read by the
  same rules from the name's form.
- ``condition_names(conditions)``: a finding's conditions as display names, the draws of one set counted
  instead of listed (``news/5 matched_count draws (19)``).
"""
from __future__ import annotations

import math
import re

__all__ = ["condition_names", "display_name", "from_fields", "network_name"]

_NETWORK = re.compile(r"^(?P<edit>inhibit|multiply|add)(?P<value>[-+0-9.e]*):(?P<net>[^:@]+/(\d+|all))$")
_PART = re.compile(r"^(?P<part>minus-massive|massive-only):(?P<net>[^:@]+/(\d+|all))$")
_DRAW = re.compile(r"^ctl-(?P<kind>[^:/]+)(?::(?P<net>[^:@/]+/\d+))?/(?P<draw>\d+)$")
_FRACTION = re.compile(r"^fraction(?P<percent>[0-9.]+)$")
_PARTS = {"minus-massive": "without massive channels", "massive-only": "massive channels only"}


def network_name(corpus: str, template: int | str) -> str:
    """``<corpus>/<template>``: ``template`` is 1-based (or ``all``)."""
    return f"{corpus}/{template}"


def display_name(condition) -> str:
    """A ``Condition`` or a mapping of its fields (a result row) by ``from_fields``; a bare name:
    ``inhibit:news/5`` -> ``news/5``; ``multiply1.02:news/5`` -> ``news/5 × 1.02``;
    ``add0.5:news/5`` -> ``news/5 + 0.5``; ``minus-massive:news/5`` -> ``news/5 without massive channels``;
    ``ctl-matched_count:news/5/3`` -> ``news/5 matched_count draw 3``; ``ctl-fraction15/3`` -> ``random 15 % draw 3``;
    any other condition (``normal``, ``top5:inhibit``, ``random15:seed0``) as it is."""
    if not isinstance(condition, str):
        return from_fields(condition)
    match = _NETWORK.match(condition)
    if match:
        corpus, template = match["net"].rsplit("/", 1)
        name = network_name(corpus, template)
        if match["edit"] == "inhibit":
            return name
        return f"{name} {'×' if match['edit'] == 'multiply' else '+'} {match['value']}"
    draws = _draw_set(condition)
    if draws:
        return f"{draws} draw {_DRAW.match(condition)['draw']}"
    match = _PART.match(condition)
    if match:
        corpus, template = match["net"].rsplit("/", 1)
        return f"{network_name(corpus, template)} {_PARTS[match['part']]}"
    return condition


def _field(fields, name: str):
    """A field of a ``Condition`` or a row; None when absent or NaN."""
    value = getattr(fields, name, None) if not hasattr(fields, "get") else fields.get(name)
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def from_fields(fields) -> str:
    """The display name of a ``Condition`` or of a row with the condition field columns (see ``display_name``)."""
    if hasattr(fields, "fields") and callable(fields.fields):
        name, fields = fields.name, {**fields.fields(), "condition": fields.name}
    else:
        name = _field(fields, "condition")
    kind, corpus, template = _field(fields, "kind"), _field(fields, "corpus"), _field(fields, "template")
    network = network_name(corpus, "all" if template is None else int(template)) if corpus is not None else None
    if kind == "network" and network:
        edit, factor = _field(fields, "edit"), _field(fields, "factor")
        return network if edit in (None, "inhibit") else f"{network} {'×' if edit == 'multiply' else '+'} {float(factor):g}"
    if kind in ("minus_massive", "massive_only") and network:
        return f"{network} {_PARTS[kind.replace('_', '-')]}"
    if kind == "control":
        draw = int(_field(fields, "draw"))
        if _field(fields, "control") == "fraction":
            return f"random {float(_field(fields, 'percent')):g} % draw {draw}"
        return f"{network} {_field(fields, 'control')} draw {draw}"
    return str(name)


def _draw_set(condition: str) -> str | None:
    """The set a control draw belongs to (``news/5 matched_count``, ``random 15 %``), or None."""
    match = _DRAW.match(condition)
    if not match:
        return None
    fraction = _FRACTION.match(match["kind"])
    if fraction:
        return f"random {fraction['percent']} %"
    corpus, template = match["net"].rsplit("/", 1) if match["net"] else ("", "")
    return f"{network_name(corpus, template)} {match['kind']}" if match["net"] else match["kind"]


def condition_names(conditions) -> list[str]:
    """Display names in first-seen order (repeats once), each set of control draws once with its count."""
    counts: dict[str, int] = {}
    for condition in dict.fromkeys(str(c) for c in conditions):
        draws = _draw_set(condition)
        key = f"\0{draws}" if draws else display_name(condition)
        counts[key] = counts.get(key, 0) + 1
    return [f"{k[1:]} draws ({n})" if k.startswith("\0") else k for k, n in counts.items()]
