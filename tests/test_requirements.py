"""The declared dependencies admit only versions the code runs on: model loading passes ``dtype=`` to
``from_pretrained``, which transformers accepts from 4.56 on (before, ``torch_dtype=``)."""
from __future__ import annotations

import ast
from pathlib import Path

import tomllib
from packaging.requirements import Requirement

ROOT = Path(__file__).parents[1]


def _requirement(name: str) -> Requirement:
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return next(r for r in map(Requirement, dependencies) if r.name == name)


def _passes_dtype_to_from_pretrained(path: Path) -> bool:
    calls = [node for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.Call)
             and isinstance(node.func, ast.Attribute) and node.func.attr == "from_pretrained"]
    return any(keyword.arg == "dtype" for call in calls for keyword in call.keywords)


def test_transformers_floor_has_from_pretrained_dtype():
    assert _passes_dtype_to_from_pretrained(ROOT / "fnet_dist" / "model" / "loading.py")
    specifier = _requirement("transformers").specifier
    assert not specifier.contains("4.55.4") and not specifier.contains("4.50.0")  # torch_dtype= only
    assert specifier.contains("4.56.0")
