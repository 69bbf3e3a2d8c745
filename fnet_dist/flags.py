"""Command-line flags generated from the config sections, so a parameter is declared once (``fnet_dist.core.config``).

- ``add_section(parser, section, *, only=None, skip=(), rename=None)``: one flag per field of a section
  class: ``--max-tokens`` for ``max_tokens``, its help text the field's description and default, booleans as
  ``--x / --no-x``, tuples as several values, ``Literal`` fields with their choices.
- ``section_from(args, section, base=None)``: the section from ``base`` (default: its defaults) with the
  flags that were given, validated by the section itself; a bad value is an ``InputError`` naming the flag.
- ``MODEL_FLAGS``: the model section's renames (``id`` is ``--model``), shared by every command that loads a model.
- ``TEMPLATES_HELP``, ``OVERWRITE_HELP``: the one vocabulary of the commands: ``--templates K...`` picks group
  templates by their 1-based numbers, ``--overwrite`` replaces an output.
- ``renamed(action, new)``: an argparse action under its new flag that also answers to older spellings, each
  use of one warning on stderr (``--template`` → ``--templates``).
"""
from __future__ import annotations

import argparse
import sys
import types
import typing
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from .core.config import describe_error
from .core.errors import InputError
from .core.safe_yaml import load_yaml

__all__ = ["MODEL_FLAGS", "OVERWRITE_HELP", "TEMPLATES_HELP", "add_section", "renamed", "section_from"]

_PREFIX = "section__"
MODEL_FLAGS = {"id": "model"}
TEMPLATES_HELP = "group template numbers, 1-based as in the match tables and the report (news/5 is template 5)"
OVERWRITE_HELP = "replace an output of fnet's own already at --out (anything else is always refused)"
_ACTIONS = {"store": argparse._StoreAction, "store_true": argparse._StoreTrueAction}


def renamed(action: str, new: str) -> type[argparse.Action]:
    """The argparse ``action`` ("store" or "store_true") that warns on stderr when the flag is given under any
    option string but ``new`` (a deprecated spelling kept working)."""

    class Renamed(_ACTIONS[action]):  # type: ignore[misc, valid-type]
        def __call__(self, parser, namespace, values, option_string=None):
            if option_string is not None and option_string != new:
                print(f"warning: {option_string} is deprecated and will be removed; use {new}", file=sys.stderr)
            super().__call__(parser, namespace, values, option_string)

    return Renamed


def _value(text: str) -> Any:
    """A flag's text as YAML (``3`` → 3, ``0.2`` → 0.2, ``{a: 1}`` → a mapping); left as text if it is not YAML
    (or not YAML fnet reads: a Python tag, aliases that expand beyond ``fnet_dist.core.safe_yaml.MAX_NODES``)."""
    try:
        return load_yaml(text, "a flag value")
    except InputError:
        return text


def _options(annotation: Any) -> dict[str, Any]:
    """argparse options for a field of type ``annotation`` (values are checked by the section, not argparse,
    so that a bad one is a one-line error)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is bool:
        return {"action": argparse.BooleanOptionalAction}
    if origin is Literal:
        return {}
    if origin is tuple:
        item = args[0]
        return {"nargs": "*", **({} if item is str or typing.get_origin(item) is Literal else {"type": _value})}
    if origin is dict or (args and all(typing.get_origin(a) is dict or a is type(None) for a in args)):
        # a mapping alone (max_memory): KEY=VALUE pairs or one YAML mapping
        return {"nargs": "+", "type": _value}
    if annotation is str or (origin in (typing.Union, types.UnionType) and set(args) == {str, type(None)}):
        return {}
    return {"type": _value}


def _choices(annotation: Any) -> str:
    """``: one of a, b`` for a ``Literal`` field (or a tuple of them), else nothing."""
    if typing.get_origin(annotation) is tuple:
        annotation = typing.get_args(annotation)[0]
    if typing.get_origin(annotation) is Literal:
        return f"; one of {', '.join(map(str, typing.get_args(annotation)))}"
    return ""


def add_section(parser: argparse.ArgumentParser, section: type[BaseModel], *, only: tuple[str, ...] | None = None,
                skip: tuple[str, ...] = (), rename: dict[str, str] | None = None) -> None:
    """Add one flag per field of ``section`` (sub-sections are left out)."""
    rename = rename or {}
    group = parser.add_argument_group(f"{section.__name__.removesuffix('Section').lower()} parameters (config section)")
    for name, field in section.model_fields.items():
        annotation = field.annotation
        if (only is not None and name not in only) or name in skip or (
                isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            continue
        default = field.default
        shown = " ".join(map(str, default)) if isinstance(default, tuple) else default
        choices = _choices(annotation)
        group.add_argument(f"--{rename.get(name, name).replace('_', '-')}", dest=f"{_PREFIX}{section.__name__}.{name}",
                           default=argparse.SUPPRESS, help=f"{field.description}{choices} (default: {shown})".replace("%", "%%"),
                           **({} if annotation is bool else {"metavar": name.upper()}),
                           **_options(annotation))


def section_from(args: argparse.Namespace, section: type[BaseModel], base: BaseModel | None = None,
                 rename: dict[str, str] | None = None) -> Any:
    """``section`` from ``base`` (or its defaults) updated with the flags given in ``args``; validated."""

    prefix = f"{_PREFIX}{section.__name__}."
    given = {k[len(prefix):]: v for k, v in vars(args).items() if k.startswith(prefix)}
    for name, value in given.items():  # "a,b" and "a b" both give several values
        if isinstance(value, list):
            given[name] = [p for v in value for p in (v.split(",") if isinstance(v, str) else [v]) if p != ""]
    data = {**(base.model_dump() if base is not None else {}), **given}
    try:
        return section.model_validate(data)
    except ValidationError as exc:
        message = describe_error(exc, "", flags=True)
        for field, flag in (rename or {}).items():
            message = message.replace(f"--{field.replace('_', '-')}:", f"--{flag.replace('_', '-')}:")
        raise InputError(message) from None
