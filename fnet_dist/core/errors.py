"""User-facing errors: one line that names the bad value, what was expected and how to fix it.

Exit codes: 2 for bad input (``InputError``, ``StoreError``: the command cannot succeed until the user changes
an argument, a file, a config value or a credential), 1 for a failure of the environment (``EnvironmentFailure``:
a full disk, a read-only folder, an output another process is writing; the same command may succeed once that
is fixed, so a Kubernetes Job retries it) and for a failed stage (``StageError``).

- ``shorten(value, chars=)``: ``repr(value)`` bounded by ``reprlib`` (nested containers and long strings cut), so
  a message never prints a huge value.
- ``one_line(exc)``: ``Type: first line`` of an exception, as a run record names it.
- ``environment_failure(exc)``: an ``OSError`` of a full disk, a read-only or forbidden folder or a file size
  limit, anywhere in ``exc``'s chain, as one ``EnvironmentFailure`` line naming the file; None otherwise.
"""
from __future__ import annotations

import errno
import reprlib
from typing import Any

__all__ = ["EnvironmentFailure", "FnetError", "InputError", "StageError", "StoreError", "environment_failure",
           "one_line", "shorten"]

MESSAGE_CHARS = 1000  # the longest error line the command line prints (the rest is cut)


class FnetError(Exception):
    """Base class of errors the CLI prints as one line (``error: …``) with exit status ``exit_code``."""

    exit_code = 2


class InputError(FnetError, ValueError):
    """A bad argument, config value or input file."""


class StoreError(FnetError, ValueError):
    """A store is missing, foreign, damaged, of another schema version, or of another config."""


class StageError(FnetError):
    """A pipeline stage failed; what the run produced is reported as incomplete (exit status 1)."""

    exit_code = 1


class EnvironmentFailure(FnetError):
    """The machine or a service failed (full disk, read-only folder, an output busy): exit status 1."""

    exit_code = 1


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 80
_REPR.maxlist = _REPR.maxtuple = _REPR.maxset = _REPR.maxdict = 8
_REPR.maxlevel = 3


def shorten(value: Any, chars: int = 200) -> str:
    """``repr(value)``, nested containers and long strings cut by ``reprlib`` and the whole at most ``chars`` long."""
    text = _REPR.repr(value)
    return text if len(text) <= chars else text[: chars - 3] + "..."


def one_line(exc: BaseException) -> str:
    """``Type: first line of the message``: an exception as a run record names it."""
    return f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0]}"[:MESSAGE_CHARS]


_ENVIRONMENT = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exhausted",
    errno.EFBIG: "a file grew past the file size limit",
    errno.EROFS: "the folder is on a read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOLCK: "its file system offers no file locks (an NFS mount without a lock service?)",
}


def _chain(exc: BaseException | None) -> list[BaseException]:
    chain: list[BaseException] = []
    while exc is not None and len(chain) < 20 and exc not in chain:
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    return chain


def environment_failure(exc: BaseException) -> EnvironmentFailure | None:
    """``exc`` as one ``EnvironmentFailure`` line when its chain holds an ``OSError`` of a full disk, a quota, a
    file size limit, a read-only file system or a refused permission; None for any other error."""
    for error in _chain(exc):
        if isinstance(error, EnvironmentFailure):
            return error
        if isinstance(error, OSError) and error.errno in _ENVIRONMENT:
            where = error.filename or "a file"
            full = error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
            fix = ("free some space (or choose another --out / stores location) and rerun the same command: it resumes"
                   if full else "choose a folder this user may write (--out, stores), or fix its permissions")
            verb = "write" if full or error.errno == errno.EROFS else "lock" if error.errno == errno.ENOLCK else "access"
            return EnvironmentFailure(f"cannot {verb} {shorten(str(where))}: {_ENVIRONMENT[error.errno]} "
                                      f"({error.strerror or errno.errorcode.get(error.errno, error.errno)}); {fix}")
    return None
