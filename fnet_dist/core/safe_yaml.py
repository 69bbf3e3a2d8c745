"""YAML from users (pipeline configs, ``--set`` values, flag values), read safely and bounded.

- ``load_yaml(text, where) -> object``: ``yaml.safe_load`` (no Python tags), refusing in one ``InputError`` line
  a document whose aliases expand to more than ``MAX_NODES`` values (a "billion laughs" of nested aliases: a few
  hundred bytes that PyYAML builds as shared references, but that validation and messages walk as a tree), a
  recursive alias, nesting deeper than ``MAX_DEPTH``, and any YAML error (its problem and line, no traceback).

The expanded size is counted on the composed node graph, each shared node once with its expanded size, so the
check costs as much as the text's own nodes, not the expansion.
"""
from __future__ import annotations

from typing import Any

import yaml

from .errors import InputError

__all__ = ["MAX_DEPTH", "MAX_NODES", "load_yaml"]

MAX_NODES = 100_000  # expanded values of one document (a pipeline config has a few hundred)
MAX_DEPTH = 100  # nesting of sequences and mappings


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _check_expansion(root: yaml.Node, where: str) -> None:
    """Raise unless the document under ``root`` expands to at most ``MAX_NODES`` values, acyclically and at most
    ``MAX_DEPTH`` deep (iterative: a deep document cannot exhaust the interpreter's stack here)."""
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            children = _children(node)
            size[key] = 1 + sum(size[id(c)] for c in children)
            depth[key] = 1 + max((depth[id(c)] for c in children), default=0)
            open_nodes.discard(key)
            if size[key] > MAX_NODES:
                raise InputError(f"{where}: its aliases (*name) expand to more than {MAX_NODES:,} values; a config "
                                 f"never needs that many: write the values out, or remove the nested aliases")
            if depth[key] > MAX_DEPTH:
                raise InputError(f"{where}: values nested more than {MAX_DEPTH} levels deep; flatten the document")
            continue
        if key in size:
            continue
        if key in open_nodes:
            raise InputError(f"{where}: a recursive alias (an anchor used inside its own value); remove it")
        open_nodes.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node) if id(child) not in size)


def _problem(exc: yaml.YAMLError) -> str:
    """A YAML error as ``problem (line N)``."""
    problem = getattr(exc, "problem", None) or str(exc).strip().splitlines()[0]
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    return f"{problem} (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else str(problem)


def load_yaml(text: str, where: str) -> Any:
    """The value of the YAML document ``text`` (None when empty); ``where`` names it in errors (a file, ``--set k``)."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node, where)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise InputError(f"{where}: not valid YAML: {_problem(exc)}") from None
    except RecursionError:
        raise InputError(f"{where}: values nested too deeply to read; flatten the document") from None
    finally:
        loader.dispose()
