"""User-facing errors: one line that names the bad value, what was expected and how to fix it."""
from __future__ import annotations

__all__ = ["FnetError", "InputError", "StageError", "StoreError", "one_line"]


class FnetError(Exception):
    """Base class of errors the CLI prints as one line (``error: …``) with exit status ``exit_code``."""

    exit_code = 2


class InputError(FnetError, ValueError):
    """A bad argument, config value or input file."""


class StoreError(FnetError, ValueError):
    """A store is missing, foreign, of another schema version, or of another config."""


class StageError(FnetError):
    """A pipeline stage failed; what the run produced is reported as incomplete (exit status 1)."""

    exit_code = 1


def one_line(exc: BaseException) -> str:
    """``Type: first line of the message``: an exception as a run record or a report names it."""
    return f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0]}"
