"""Every parameter is declared once, in its config section: no function signature (or dataclass field) restates
a config default as a literal.

A parameter named like a config field (its name, or one of the ``ALIASES`` the code uses for it) with a literal
default is a copy of that field, and copies drift (``n_draws=10`` beside ``evaluate.controls.draws: 19``). Such a
function takes the section (or the value, without a default); a shared constant (``DEFAULT_THRESHOLD``, ``_D.tol``)
is not a copy, only a literal is.

- ``NOT_CONFIG``: parameters that share a config field's name and are something else (the reason says what).
- ``OPEN``: copies left to their owners (empty since issue 25 fixed the ones it found); the test fails on any copy
  not listed, and on a listed one that is gone (take it off the list then).
Entries are ``(function or class name, parameter)``, so a module moved or split keeps its entries.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from fnet_dist.core import config

PACKAGE = Path(__file__).resolve().parents[1] / "fnet_dist"
CONFIG_MODULE = PACKAGE / "core" / "config.py"  # the one place defaults are written

# names the code gives a config field where the field's own name would not fit
ALIASES = {
    "n_draws": "draws", "fraction": "random_fraction", "random_state": "seed", "n_components": "components",
    "ratio": "massive_ratio", "min_value": "massive_min_value", "n_permutations": "permutations",
    "factors": "sweep_factors", "values": "sweep_values", "method": "individual_method",
}

# modules whose parameters describe test data, not a run (planted networks, tiny models)
FIXTURE_MODULES = {"core/planted.py", "record/planted.py", "model/testing.py"}

NOT_CONFIG = {
    ("section", "level"): "a heading level of the report page, not report.level",
    ("from_indices", "name"): "a mask's display name, not the run's name",
    ("NeuronMask", "name"): "a mask's display name, not the run's name",
    ("RunInfo", "model"): "the placeholder shown for a run whose model is unknown, not the model section",
    ("edit_provenance", "method"): "how an edit reached the model (hooks or baked), not decompose.individual_method",
    ("compare_paper", "out"): "the comparison document written, not the run folder",
    ("token_budget", "limit"): "a cap on padded tokens per batch, not evaluate.limit",
    ("localize", "max_tokens"): "the cut of a localizer stimulus (12 words), not record.max_tokens (recorded samples)",
    ("localize", "batch_size"): "stimuli per forward pass of the localizer, not evaluate.batch_size (lm-eval documents)",
    ("probe_conditions", "max_tokens"): "the cut of a probe text, not record.max_tokens (recorded samples)",
    ("probe_conditions", "batch_size"): "probe texts per forward pass, not evaluate.batch_size (lm-eval documents)",
    ("explain_text", "max_tokens"): "the cut of the text a report or fnet explain attributes, not record.max_tokens",
    ("paired_effect", "n_permutations"): "the sign flips of the paired test (exact while 2^n ≤ it), not match.permutations "
                                         "(random networks of the counterparts null)",
    ("two_sample_effect", "n_permutations"): "the relabellings of the two-sample test (trained vs null model), not "
                                             "match.permutations (random networks of the counterparts null)",
    ("networks_against_draws", "n_permutations"): "the relabellings of the stratified test over networks (exact while "
                                                  "they are fewer), not match.permutations (random networks)",
}

OPEN: set[tuple[str, str]] = set()  # copies of config defaults left for their owners; issue 25 fixed every one found


def _config_fields() -> set[str]:
    sections = [v for v in vars(config).values()
                if isinstance(v, type) and issubclass(v, config._Section) and v.__module__ == config.__name__]
    return {name for section in sections for name in section.model_fields}


FIELDS = _config_fields()


def _literal(node: ast.AST) -> bool:
    """A literal other than None (None says "not given", a sentinel and no value)."""
    if isinstance(node, ast.Constant):
        return node.value is not None
    if isinstance(node, ast.UnaryOp) and isinstance(node.operand, ast.Constant):
        return True
    if isinstance(node, (ast.Tuple, ast.List)):
        return all(isinstance(e, ast.Constant) or _literal(e) for e in node.elts)
    return False


def _field_of(name: str) -> str | None:
    return name if name in FIELDS else ALIASES.get(name) if ALIASES.get(name) in FIELDS else None


def _is_record(node: ast.ClassDef) -> bool:
    """A dataclass or NamedTuple: its annotated class attributes are the parameters of its constructor."""
    names = [ast.unparse(d) for d in node.decorator_list] + [ast.unparse(b) for b in node.bases]
    return any("dataclass" in n or "NamedTuple" in n for n in names)


def restated_defaults(source: str) -> list[tuple[str, str, str, int]]:
    """(function or class, parameter, its default, line) for every literal default of a config-named parameter."""
    found = []
    for node in ast.walk(ast.parse(source)):
        pairs = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args
            positional = args.posonlyargs + args.args
            pairs = list(zip(positional[len(positional) - len(args.defaults):], args.defaults))
            pairs += [(a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is not None]
            pairs = [(a.arg, d) for a, d in pairs]
        elif isinstance(node, ast.ClassDef) and _is_record(node):
            pairs = [(s.target.id, s.value) for s in node.body
                     if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name) and s.value is not None]
        found += [(node.name, name, ast.unparse(default), default.lineno) for name, default in pairs
                  if _field_of(name) and _literal(default)]
    return found


def _package_hits() -> dict[tuple[str, str], str]:
    hits = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if path == CONFIG_MODULE or relative in FIXTURE_MODULES:
            continue
        for owner, name, default, line in restated_defaults(path.read_text()):
            hits[(owner, name)] = f"fnet_dist/{relative}:{line} {owner}({name}={default})"
    return hits


@pytest.mark.parametrize("source, flagged", [
    ("def draws(shape, n_draws=10): ...", [("draws", "n_draws", "10")]),       # drift: the config says 19
    ("def tables(rows, *, fraction=0.15): ...", [("tables", "fraction", "0.15")]),  # a copy of the config's value
    ("def fit(X, random_state=0, levels=('group',)): ...", [("fit", "random_state", "0"), ("fit", "levels", "('group',)")]),
    ("@dataclass\nclass Rule:\n    ratio: float = 300.0\n", [("Rule", "ratio", "300.0")]),
    ("def binarize(maps, threshold=DEFAULT_THRESHOLD, limit=None): ...", []),  # a shared constant; None: not given
    ("def fit(X, n_components=_D.components, copy=True): ...", []),             # the section's own default; no field
])
def test_the_check_finds_copies_and_drift(source, flagged):
    assert [hit[:3] for hit in restated_defaults(source)] == flagged


def test_no_signature_restates_a_config_default():
    hits = _package_hits()
    new = sorted(hits[key] for key in hits if key not in NOT_CONFIG and key not in OPEN)
    assert not new, ("literal defaults of config parameters (take the section, or the value without a default; a "
                     "parameter that is not the config field goes in NOT_CONFIG with the reason):\n" + "\n".join(new))


def test_the_lists_hold_only_what_is_still_there():
    hits = _package_hits()
    gone = sorted(f"{owner}({name})" for owner, name in {*NOT_CONFIG, *OPEN} if (owner, name) not in hits)
    assert not gone, "fixed or renamed: take these off NOT_CONFIG / OPEN in this file:\n" + "\n".join(gone)


@pytest.mark.parametrize("text", ["n_draws=10", "n_draws: int = 10", "fraction=0.15", "fraction: float = 0.15"])
def test_the_controls_defaults_are_written_once(text):
    assert not [str(p) for p in PACKAGE.rglob("*.py") if text in p.read_text()]
    assert "Field(19" in CONFIG_MODULE.read_text() and "Field(0.15" in CONFIG_MODULE.read_text()
