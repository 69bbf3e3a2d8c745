"""Store schemas as data: which variables, dims, dtypes and attrs each fnet store must hold.

- ``ACTIVATIONS``: the recording stage's store (``activations.json``).
- ``NETWORKS``: the decomposition stage's store (``networks.json``).
- ``StoreSchema.validate(ds, where)``: raise ``SchemaError`` naming the first mismatch.
- ``load_schema(name)``: read a schema file of this folder.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

__all__ = ["ACTIVATIONS", "NETWORKS", "SchemaError", "StoreSchema", "VariableSpec", "load_schema"]

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
class VariableSpec:
    """One variable: its dims in order and the dtypes it may be stored in ("str" = any string dtype)."""

    name: str
    dims: tuple[str, ...]
    dtypes: tuple[str, ...]
    doc: str = ""

    @classmethod
    def from_dict(cls, name: str, data: Mapping[str, Any]) -> "VariableSpec":
        dtypes = data["dtype"]
        if isinstance(dtypes, str):
            dtypes = [dtypes]
        return cls(name, _parse_dims(data["dims"], name), tuple(dtypes), data.get("doc", ""))

    def to_dict(self) -> dict[str, Any]:
        return {"dims": list(self.dims), "dtype": list(self.dtypes), "doc": self.doc}

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
