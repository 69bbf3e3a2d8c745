"""The package's layers as a contract (import-linter, configured in pyproject.toml): cli > commands > flags >
paper > pipeline > stages > the five stages (independent of each other) > model > store > core; no import
cycles between the modules of a package; the store schemas import nothing of fnet_dist. And the contract
bites: a copy of the package with one stage importing another, or the foundation importing a stage, fails it.
"""
from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "fnet_dist"


def _lint(root: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` on the packages under ``root`` with the project's contracts."""
    code = ("import sys; from importlinter.cli import lint_imports; "
            f"sys.exit(lint_imports(config_filename={str(ROOT / 'pyproject.toml')!r}))")
    return subprocess.run([sys.executable, "-c", code], cwd=root, env={"PYTHONPATH": str(root), "PATH": ""},
                          capture_output=True, text=True, timeout=300)


def test_the_package_keeps_its_layers():
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout[-4000:]
    assert "Contracts: 3 kept, 0 broken." in result.stdout


@pytest.fixture
def copy(tmp_path):
    """A copy of the package and the schemas to break."""
    for name in ("fnet_dist", "storage_schemas"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


@pytest.mark.parametrize("module,line,broken", [
    ("fnet_dist/match/iou.py", "from ..evaluate import conditions", "fnet_dist.match is not allowed to import fnet_dist.evaluate"),
    ("fnet_dist/core/stats.py", "from ..report import findings", "fnet_dist.core is not allowed to import fnet_dist.report"),
    ("fnet_dist/store/storage.py", "from ..model import masks", "fnet_dist.store is not allowed to import fnet_dist.model"),
    ("fnet_dist/core/errors.py", "from . import layout", "No cycles are allowed in fnet_dist.core"),
])
def test_a_forbidden_import_breaks_the_contract(copy, module, line, broken):
    path = copy / module
    path.write_text(path.read_text() + f"\n{line}  # noqa: E402\n")
    result = _lint(copy)
    assert result.returncode == 1 and broken in result.stdout, result.stdout[-4000:]


def _own_imports_in_functions(path: Path) -> list[str]:
    """``module:line`` of each import of fnet_dist (relative or absolute) inside a function or method body."""
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for inner in ast.walk(node):
                own = (isinstance(inner, ast.ImportFrom) and (inner.level or (inner.module or "").startswith("fnet_dist"))
                       or isinstance(inner, ast.Import) and any(a.name.startswith("fnet_dist") for a in inner.names))
                if own:
                    found.append(f"{path.relative_to(ROOT)}:{inner.lineno}")
    return sorted(set(found))


def test_the_package_imports_its_own_modules_at_the_top():
    """Deferred imports of the project's own modules hid the tangle the layers now forbid; heavy third-party
    packages (torch, transformers, dask, lm-eval, vLLM, zarr, matplotlib) stay lazy so ``fnet --help`` is fast."""
    deferred = [hit for path in sorted(PACKAGE.rglob("*.py")) for hit in _own_imports_in_functions(path)]
    assert deferred == []


def test_fnet_help_imports_no_heavy_package():
    code = ("import sys, fnet_dist.cli as cli; cli.build_parser(); "
            "heavy = {'torch', 'transformers', 'dask', 'distributed', 'lm_eval', 'vllm', 'zarr', 'xarray', 'matplotlib', "
            "'sklearn', 'numba'} & set(sys.modules); print(sorted(heavy))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
