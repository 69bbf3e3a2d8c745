"""Display names: one name per thing in every table, figure and finding of a run.

- ``network_name(corpus, template)``: a group template (a network) of a corpus, ``news/5`` (templates
  numbered from 1, as in the match tables and the paper; ``all`` for their union).
- ``display_name(condition)``: a condition as the report shows it: the network's name (``news/5``) for
  the network inhibited, with the edit when it is another (``news/5 × 1.02``), or the name as it is.
"""
from __future__ import annotations

import re

__all__ = ["display_name", "network_name"]

_NETWORK = re.compile(r"^(?P<edit>inhibit|multiply|add)(?P<value>[-+0-9.e]*):(?P<net>[^:@]+/(\d+|all))$")
_PART = re.compile(r"^(?P<part>minus-massive|massive-only):(?P<net>[^:@]+/(\d+|all))$")
_PARTS = {"minus-massive": "without massive channels", "massive-only": "massive channels only"}


def network_name(corpus: str, template: int | str) -> str:
    """``<corpus>/<template>``: ``template`` is 1-based (or ``all``)."""
    return f"{corpus}/{template}"


def display_name(condition: str) -> str:
    """``inhibit:news/5`` -> ``news/5``; ``multiply1.02:news/5`` -> ``news/5 × 1.02``;
    ``add0.5:news/5`` -> ``news/5 + 0.5``; ``minus-massive:news/5`` -> ``news/5 without massive channels``;
    any other condition (``normal``, ``top5:inhibit``, ``random15:seed0``) as it is."""
    condition = str(condition)
    match = _NETWORK.match(condition)
    if match:
        corpus, template = match["net"].rsplit("/", 1)
        name = network_name(corpus, template)
        if match["edit"] == "inhibit":
            return name
        return f"{name} {'×' if match['edit'] == 'multiply' else '+'} {match['value']}"
    match = _PART.match(condition)
    if match:
        corpus, template = match["net"].rsplit("/", 1)
        return f"{network_name(corpus, template)} {_PARTS[match['part']]}"
    return condition
