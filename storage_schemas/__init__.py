"""Store schemas as data: which variables, dims, dtypes and attrs each fnet store must hold.

- ``ACTIVATIONS``: the recording stage's store (``activations.json``).
- ``NETWORKS``: the decomposition stage's store (``networks.json``).
- ``StoreSchema.validate(ds, where)``: raise ``SchemaError`` naming the first mismatch.
- ``WrittenRule`` (a variable's ``written``): which chunks of the variable a sound store holds, so that a missing
  chunk (which Zarr would read as its fill value) is found: every chunk once an attr is true (``when_attr``), or
  the chunks of the positions along the variable's first dim (samples, splits) whose variables in ``when`` (along
  that dim alone) are all true (non-zero); along a dim listed in ``upto`` only those chunks that start below the
  position's value of the named variable (``{"token": "n_tokens"}``).
- ``load_schema(name)``: read a schema file of this folder.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

__all__ = ["ACTIVATIONS", "NETWORKS", "SchemaError", "StoreSchema", "VariableSpec", "WrittenRule", "load_schema"]

_HERE = Path(__file__).parent
_ATTR_TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int, np.integer),
    "float": (float, int, np.floating, np.integer),
    "list": (list, tuple),
    "dict": (dict,),
    "bool": (bool, np.bool_),
}
_STRING_KINDS = {"O", "U", "T"}


class SchemaError(ValueError):
    """A store does not match its schema (missing variable, wrong dims or dtype, foreign or old store)."""


def _parse_dims(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(d, str) for d in value):
        raise TypeError(f"{where}: dims must be a list of names, got {value!r}")
    return tuple(value)


@dataclass(frozen=True)
class WrittenRule:
    """Which chunks of a variable a sound store holds (see the module docstring)."""

    when: tuple[str, ...] = ()
    when_attr: str | None = None
    upto: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, where: str, data: Mapping[str, Any]) -> WrittenRule:
        unknown = set(data) - {"when", "when_attr", "upto"}
        if unknown:
            raise TypeError(f"{where}: unknown keys {sorted(unknown)} in 'written' (expected when, when_attr, upto)")
        upto = data.get("upto", {})
        if not isinstance(upto, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in upto.items()):
            raise TypeError(f"{where}: 'upto' must map a dim to a per-sample variable, got {upto!r}")
        rule = cls(_parse_dims(data.get("when", []), where), data.get("when_attr"), dict(upto))
        if bool(rule.when) == bool(rule.when_attr):
            raise TypeError(f"{where}: 'written' needs exactly one of when (per-sample variables) or when_attr")
        return rule

    def to_dict(self) -> dict[str, Any]:
        return {**({"when": list(self.when)} if self.when else {}),
                **({"when_attr": self.when_attr} if self.when_attr else {}),
                **({"upto": dict(self.upto)} if self.upto else {})}


@dataclass(frozen=True)
class VariableSpec:
    """One variable: its dims in order, the dtypes it may be stored in ("str" = any string dtype), and which of
    its chunks a sound store holds (``written``; None: not checked, e.g. a chunk equal to the fill value is
    legitimately absent)."""

    name: str
    dims: tuple[str, ...]
    dtypes: tuple[str, ...]
    doc: str = ""
    written: WrittenRule | None = None

    @classmethod
    def from_dict(cls, name: str, data: Mapping[str, Any]) -> "VariableSpec":
        dtypes = data["dtype"]
        if isinstance(dtypes, str):
            dtypes = [dtypes]
        written = WrittenRule.from_dict(name, data["written"]) if "written" in data else None
        return cls(name, _parse_dims(data["dims"], name), tuple(dtypes), data.get("doc", ""), written)

    def to_dict(self) -> dict[str, Any]:
        return {"dims": list(self.dims), "dtype": list(self.dtypes), "doc": self.doc,
                **({"written": self.written.to_dict()} if self.written else {})}

    def accepts(self, dtype: np.dtype) -> bool:
        if "str" in self.dtypes and dtype.kind in _STRING_KINDS:
            return True
        return str(dtype) in self.dtypes


@dataclass(frozen=True)
class StoreSchema:
    """A versioned store layout; ``validate`` checks an opened ``xarray.Dataset`` against it."""

    name: str
    version: int
    dims: tuple[str, ...]
    variables: Mapping[str, VariableSpec] = field(default_factory=dict)
    attrs: Mapping[str, str] = field(default_factory=dict)
    description: str = ""
    upgrades: Mapping[str, str] = field(default_factory=dict)  # older version -> how to bring its stores up to date

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "StoreSchema":
        variables = {k: VariableSpec.from_dict(k, v) for k, v in data["variables"].items()}
        for name, spec in variables.items():
            rule = spec.written
            markers = [*(rule.when if rule else ()), *(rule.upto.values() if rule else ())]
            wrong = [m for m in markers if m not in variables or variables[m].dims != spec.dims[:1]]
            if wrong:
                raise TypeError(f"{name}: its 'written' rule names {wrong}, which are not variables along its first dim "
                                f"{spec.dims[:1]}")
        for key, kind in data.get("attrs", {}).items():
            if kind not in _ATTR_TYPES:
                raise TypeError(f"attr {key!r}: unknown type {kind!r}, expected one of {sorted(_ATTR_TYPES)}")
        return cls(
            name=str(data["name"]),
            version=int(data["version"]),
            dims=_parse_dims(data["dims"], "schema"),
            variables=variables,
            attrs=dict(data.get("attrs", {})),
            description=data.get("description", ""),
            upgrades={str(k): str(v) for k, v in data.get("upgrades", {}).items()},
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "description": self.description,
            "dims": list(self.dims),
            "variables": {k: v.to_dict() for k, v in self.variables.items()},
            "attrs": dict(self.attrs),
            **({"upgrades": dict(self.upgrades)} if self.upgrades else {}),
        }

    def stamp(self) -> dict[str, Any]:
        """The attrs that mark a store as this schema's."""
        return {"schema": self.name, "schema_version": self.version}

    def validate(self, ds: Any, where: str) -> None:
        """Raise ``SchemaError`` unless ``ds`` (an xarray Dataset) holds this schema's store.

        ``where`` names the store (its URL) in the message.
        """
        found = ds.attrs.get("schema")
        if found != self.name:
            raise SchemaError(
                f"{where} is not an {self.name} store (its schema attr is {found!r}); "
                f"point to a store written by the matching fnet stage"
            )
        version = ds.attrs.get("schema_version")
        if version != self.version:
            how = self.upgrades.get(str(version), "re-create the store (--overwrite) or use the fnet-dist release that wrote it")
            raise SchemaError(f"{where} has {self.name} schema version {version!r}, this fnet-dist reads version "
                              f"{self.version}; {how}")
        for key, kind in self.attrs.items():
            if key not in ds.attrs:
                raise SchemaError(f"{where}: attr {key!r} is missing (expected a {kind})")
            if not isinstance(ds.attrs[key], _ATTR_TYPES[kind]):
                raise SchemaError(
                    f"{where}: attr {key!r} is {type(ds.attrs[key]).__name__} {ds.attrs[key]!r}, expected a {kind}"
                )
        for name, spec in self.variables.items():
            if name not in ds.variables:
                raise SchemaError(f"{where}: variable {name!r} is missing (expected dims {spec.dims})")
            var = ds.variables[name]
            if tuple(var.dims) != spec.dims:
                raise SchemaError(f"{where}: variable {name!r} has dims {tuple(var.dims)}, expected {spec.dims}")
            if not spec.accepts(var.dtype):
                raise SchemaError(f"{where}: variable {name!r} has dtype {var.dtype}, expected one of {spec.dtypes}")


def load_schema(name: str) -> StoreSchema:
    """Read ``<name>.json`` beside this module."""
    path = _HERE / f"{name}.json"
    if not path.exists():
        known = sorted(p.stem for p in _HERE.glob("*.json"))
        raise LookupError(f"no store schema {name!r}; known: {known}")
    return StoreSchema.from_dict(json.loads(path.read_text()))


ACTIVATIONS = load_schema("activations")
NETWORKS = load_schema("networks")
