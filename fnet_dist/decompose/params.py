"""The one table of decomposition parameters: their defaults, constraints, CLI flags and validation.

- ``CONSTRAINTS``: name → ``Constraint(check, expected, flag)``.
- ``check_params(params)``: validate a mapping of parameters; raise ``InputError`` naming the first bad one.
- ``LEVELS``: the analysis levels (``group``, ``individual``); ``parse_levels(value)``.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from ..core.errors import InputError
from .ica import ALGORITHMS, FUNCTIONS, METHODS, SOLVERS

__all__ = ["CONSTRAINTS", "LEVELS", "Constraint", "check_params", "parse_levels"]

LEVELS = ("group", "individual")


def _int(low: int) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= low


def _positive_float(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and 0 < float(v) < float("inf")


@dataclass(frozen=True)
class Constraint:
    """A parameter's test, what it expects (for the message) and its CLI flag (None if not on the CLI)."""

    check: Callable[[Any], bool]
    expected: str
    flag: str | None = None


CONSTRAINTS: dict[str, Constraint] = {
    "n_components": Constraint(_int(1), "a positive integer", "--components"),
    "components": Constraint(_int(1), "a positive integer", "--components"),
    "group_components": Constraint(_int(1), "a positive integer", "--group-components"),
    "sample_components": Constraint(lambda v: v is None or _int(1)(v), "a positive integer or None"),
    "n_init": Constraint(_int(1), "a positive integer", "--n-init"),
    "stability_runs": Constraint(_int(1), "a positive integer (2 or more to measure stability)", "--stability-runs"),
    "max_iter": Constraint(_int(1), "a positive integer", "--max-iter"),
    "tol": Constraint(_positive_float, "a positive finite number", "--tol"),
    "random_state": Constraint(_int(0), "a non-negative integer", "--seed"),
    "seed": Constraint(_int(0), "a non-negative integer", "--seed"),
    "group_max_iter": Constraint(_int(1), "a positive integer"),
    "exclude_first_tokens": Constraint(_int(0), "a non-negative integer", "--exclude-first-tokens"),
    "single_token_share": Constraint(lambda v: _positive_float(v) and float(v) <= 1, "a share in (0, 1]",
                                     "--single-token-share"),
    "fun": Constraint(lambda v: v in FUNCTIONS, f"one of {', '.join(FUNCTIONS)}", "--fun"),
    "group_fun": Constraint(lambda v: v in FUNCTIONS, f"one of {', '.join(FUNCTIONS)}", "--group-fun"),
    "algorithm": Constraint(lambda v: v in ALGORITHMS, f"one of {', '.join(ALGORITHMS)}", "--algorithm"),
    "method": Constraint(lambda v: v in METHODS, f"one of {', '.join(METHODS)}", "--individual-method"),
    "individual_method": Constraint(lambda v: v in METHODS, f"one of {', '.join(METHODS)}", "--individual-method"),
    "svd_solver": Constraint(lambda v: v in SOLVERS, f"one of {', '.join(SOLVERS)}"),
    "pca_iter": Constraint(_int(0), "a non-negative integer"),
    "power_iter": Constraint(_int(0), "a non-negative integer"),
    "do_cca": Constraint(lambda v: isinstance(v, bool), "True or False"),
    "blas_threads": Constraint(lambda v: v is None or _int(1)(v), "a positive integer or None"),
}


def check_params(params: Mapping[str, Any]) -> None:
    """Raise ``InputError`` for the first parameter of ``params`` that breaks its constraint."""
    for name, value in params.items():
        rule = CONSTRAINTS[name]
        if not rule.check(value):
            where = f"{rule.flag} / {name}" if rule.flag else name
            raise InputError(f"{where}={value!r} is invalid: expected {rule.expected}")


def parse_levels(value: str | Iterable[str]) -> tuple[str, ...]:
    """``"group,individual"`` or a sequence → a tuple of known levels, in the canonical order."""
    items = [v.strip() for v in value.split(",")] if isinstance(value, str) else [str(v).strip() for v in value]
    unknown = [v for v in items if v not in LEVELS]
    if unknown or not items:
        raise InputError(f"--levels {','.join(items)!r} names an unknown level {unknown}: expected a "
                         f"comma-separated subset of {','.join(LEVELS)}")
    return tuple(level for level in LEVELS if level in items)
