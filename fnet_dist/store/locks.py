"""One writer per output: an exclusive lock beside every output (store, results folder, run folder) while a
command writes it, so a second writer is refused in one line instead of silently mixing with the first.

- ``output_lock(url, *, part=None)``: a context manager holding the lock of the output at ``url`` (re-entrant
  within a process); yields a ``HeldLock`` (``replaced``: the record of a stale lock taken over, or None). A
  lock held by another process raises ``OutputBusy`` (exit status 1: the output is busy, the input may be fine,
  so a Kubernetes Job retries) naming the holder: pid, host, start time and command.
- ``part``: the lock of one shard of the output (``"record-0-of-4"``): shards of one output run together, a
  whole writer and a shard exclude each other (each takes its own lock, then looks for the other kind; the
  later one backs off).
- ``holds_lock(url)``: whether this process holds the lock of ``url`` (whole or a part).
- ``lock_url(url, part=None)``: where the lock lives: ``.NAME.fnet-lock`` (``.NAME.fnet-lock.PART``) beside
  ``url``, so it survives the output being swapped in, and is never a file of the output.

Local file systems: ``flock`` on the lock file; the kernel drops it when its process ends (killed included), so
a lock left by a dead process is free and the next writer takes it (and says so); the file holds the holder's
record and is removed on release. Object storage (``s3://``): the lock object is created by a conditional PUT
(``If-None-Match: *``: of two writers exactly one succeeds), refreshed every ``REFRESH_SECONDS`` by its holder
(``If-Match``: its own version), and taken over when stale — its holder ran on this host and its pid is gone,
or it was not refreshed for ``STALE_SECONDS`` (a killed pod) — by a conditional PUT on the stale version, so of
two processes taking over one wins. A holder whose lock was taken over (it stalled longer than
``STALE_SECONDS``) learns it at its next refresh and fails at the end (exit 1) instead of reporting success.
Other fsspec file systems (``memory://``, ``gs://``): the same rules through fsspec's create-if-absent, which
is exclusive where the file system offers it.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from ..core.errors import EnvironmentFailure, InputError
from .locations import filesystem, normalize_url

__all__ = ["LOCK_SUFFIX", "REFRESH_SECONDS", "STALE_SECONDS", "HeldLock", "OutputBusy", "holds_lock", "lock_url",
           "output_lock"]

log = logging.getLogger(__name__)

LOCK_SUFFIX = ".fnet-lock"
REFRESH_SECONDS = 20.0  # an object-storage lock's holder rewrites it this often
STALE_SECONDS = 120.0  # … and one not rewritten for this long belongs to a dead process
_ATTEMPTS = 8


class OutputBusy(EnvironmentFailure):
    """Another process holds the lock of an output (exit status 1)."""


def lock_url(url: str, part: str | None = None) -> str:
    """The lock beside the output at ``url`` (``part``: one shard's lock)."""
    url = normalize_url(url)
    parent, _, name = url.rpartition("/")
    if not name or not parent or parent.endswith((":/", ":")):
        raise InputError(f"{url!r} is not a folder or store inside a folder (or bucket); give a path such as "
                         f"{url.rstrip('/')}/run")
    return f"{parent}/.{name}{LOCK_SUFFIX}" + (f".{part}" if part else "")


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _command() -> str:
    argv = [os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python", *sys.argv[1:]]
    text = " ".join(argv)
    return text if len(text) <= 160 else text[:157] + "..."


def _holder_record() -> dict[str, Any]:
    stamp = _now().isoformat(timespec="seconds")
    return {"pid": os.getpid(), "host": socket.gethostname(), "started": stamp, "refreshed": stamp,
            "command": _command(), "token": uuid.uuid4().hex}


def _parse(data: bytes) -> dict[str, Any]:
    try:
        record = json.loads(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return {}
    return record if isinstance(record, dict) else {}


def describe_holder(record: dict[str, Any]) -> str:
    """``pid 12 on host h since 2026-12-07T11:54:36+00:00: fnet match …`` (what is known of it)."""
    if not record:
        return "a process whose lock record is not written yet"
    return (f"pid {record.get('pid', '?')} on host {record.get('host', '?')} since {record.get('started', '?')}"
            + (f": {record['command']}" if record.get("command") else ""))


def _busy(url: str, record: dict[str, Any], what: str = "being written") -> OutputBusy:
    return OutputBusy(f"{url!r} is {what} by another fnet process ({describe_holder(record)}); wait for it to "
                      f"finish or choose another --out (a lock left by a killed process is taken over by the next writer)")


def _pid_alive(pid: Any) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, TypeError, OverflowError):
        return True  # another user's process, or a pid we cannot judge: assume it lives
    return True


def stale_reason(record: dict[str, Any], age: float, stale_after: float = STALE_SECONDS) -> str | None:
    """Why a lock whose record is ``record`` and whose last write is ``age`` seconds old is stale, or None when
    its holder may be alive: a holder on this host whose pid is gone, or no refresh for ``stale_after`` s."""
    if record.get("host") == socket.gethostname() and not _pid_alive(record.get("pid")):
        return f"its process (pid {record.get('pid')}) is gone"
    if age > stale_after:
        return f"not refreshed for {age:.0f} s"
    return None


class _FileLock:
    """``flock`` on a local lock file (the kernel releases it when the process ends)."""

    def __init__(self, path: str) -> None:
        self.path, self.fd, self.replaced = path, None, None
        self.reason = "its process is gone (the system released its lock)"

    def acquire(self, url: str, record: dict[str, Any]) -> None:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        for _ in range(_ATTEMPTS):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_settled(fd)
                os.close(fd)
                raise _busy(url, holder) from None
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if not same:  # its holder removed it between our open and our lock: take the new file
                os.close(fd)
                continue
            previous = _parse(os.pread(fd, 65536, 0))
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(record).encode() + b"\n", 0)
            os.fsync(fd)
            self.fd, self.replaced = fd, previous or None
            return
        raise OutputBusy(f"could not take the lock {self.path!r} after {_ATTEMPTS} tries (other writers keep "
                         f"replacing it); rerun the command")

    def release(self) -> str | None:
        if self.fd is None:
            return None
        try:
            os.unlink(self.path)  # while still locked: a waiting process then sees another file and retries
        except FileNotFoundError:
            pass
        os.close(self.fd)
        self.fd = None
        return None

    def held_by_other(self, path: str) -> dict[str, Any] | None:
        """The record of the process holding the lock file ``path``, or None when it is free (or absent)."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_settled(fd)
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)


def _read_settled(fd: int) -> dict[str, Any]:
    """The holder record in a lock file, waiting briefly while its holder has created but not yet written it."""
    for _ in range(10):
        record = _parse(os.pread(fd, 65536, 0))
        if record:
            return record
        time.sleep(0.05)
    return {}


def _precondition_failed(exc: BaseException) -> bool:
    """Whether ``exc`` says a conditional write or delete lost (HTTP 412, or 409 of two conditional writes at once)."""
    seen = 0
    while exc is not None and seen < 20:
        if isinstance(exc, FileExistsError):
            return True
        code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
        if code in ("PreconditionFailed", "ConditionalRequestConflict", "412", "409"):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def _read_object(fs: Any, path: str, s3: bool) -> tuple[dict[str, Any], str, float] | None:
    """(record, version, age in seconds) of the lock object at ``path``, or None when there is none. The version
    is the S3 ETag (what a conditional write names), elsewhere the record's token; the age is the time since the
    storage last wrote it (its own clock where it keeps one)."""
    fs.invalidate_cache(path)
    try:
        info = fs.info(path)
        record = _parse(fs.cat_file(path))
    except FileNotFoundError:
        return None
    modified = info.get("LastModified") or info.get("mtime") or info.get("created")
    if isinstance(modified, datetime):
        written = modified if modified.tzinfo else modified.replace(tzinfo=timezone.utc)
    elif isinstance(modified, (int, float)):
        written = datetime.fromtimestamp(modified, timezone.utc)
    else:
        try:
            written = datetime.fromisoformat(str(record.get("refreshed")))
        except ValueError:
            written = _now()
    version = str(info.get("ETag")) if s3 and info.get("ETag") else str(record.get("token", ""))
    return record, version, max(0.0, (_now() - written).total_seconds())


class _ObjectLock:
    """A lock object on object storage: conditional create, refresh and takeover (see the module docstring)."""

    def __init__(self, url: str, stale_after: float, refresh: float) -> None:
        self.fs, self.path = filesystem(url)
        self.s3 = "s3" in (self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,))
        self.stale_after, self.refresh = stale_after, refresh
        self.version: str | None = None
        self.replaced: dict[str, Any] | None = None
        self.reason = ""
        self.lost: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._record: dict[str, Any] = {}

    def _version_of(self, response: Any, record: dict[str, Any]) -> str:
        etag = response.get("ETag") if isinstance(response, dict) else None
        return str(etag) if etag and self.s3 else record["token"]

    def _read(self) -> tuple[dict[str, Any], str, float] | None:
        return _read_object(self.fs, self.path, self.s3)

    def _put_over(self, data: bytes, version: str) -> Any:
        """Replace the lock object only if it is still at ``version`` (raises when it is not)."""
        if self.s3:
            return self.fs.pipe_file(self.path, data, IfMatch=version)
        current = self._read()
        if current is None or current[1] != version:
            raise FileExistsError(self.path)
        return self.fs.pipe_file(self.path, data)

    def acquire(self, url: str, record: dict[str, Any]) -> None:
        data = json.dumps(record).encode() + b"\n"
        for _ in range(_ATTEMPTS):
            try:
                response = self.fs.pipe_file(self.path, data, mode="create")
            except Exception as exc:  # re-raised unless the conditional write lost
                if not _precondition_failed(exc):
                    raise
            else:
                self._hold(record, self._version_of(response, record))
                return
            current = self._read()
            if current is None:
                continue  # released meanwhile: try to create it again
            holder, version, age = current
            reason = stale_reason(holder, age, self.stale_after)
            if reason is None:
                raise _busy(url, holder)
            try:
                response = self._put_over(data, version)
            except Exception as exc:  # re-raised unless the conditional write lost
                if not _precondition_failed(exc):
                    raise
                continue  # another process took it over first: look again
            self.replaced, self.reason = holder, reason
            self._hold(record, self._version_of(response, record))
            return
        raise OutputBusy(f"could not take the lock of {url!r} after {_ATTEMPTS} tries (other writers keep "
                         f"replacing it); rerun the command")

    def _hold(self, record: dict[str, Any], version: str) -> None:
        self._record, self.version = record, version
        self._thread = threading.Thread(target=self._refresh_loop, name="fnet-lock-refresh", daemon=True)
        self._thread.start()

    def _refresh_loop(self) -> None:
        while not self._stop.wait(self.refresh):
            record = {**self._record, "refreshed": _now().isoformat(timespec="seconds")}
            try:
                response = self._put_over(json.dumps(record).encode() + b"\n", self.version)
            except Exception as exc:  # noqa: BLE001 - a lost lock, or a failure of the storage service: both judged here
                if _precondition_failed(exc):
                    current = self._read()
                    self.lost = (f"the lock of this output was taken over by "
                                 f"{describe_holder(current[0]) if current else 'another process'} while this "
                                 f"process stalled for over {self.stale_after:.0f} s")
                    return
                log.warning("could not refresh the lock %s (%s); retrying", self.path, exc)
                continue
            self._record, self.version = record, self._version_of(response, record)

    def release(self) -> str | None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.lost:
            return self.lost
        try:
            if self.s3:
                bucket, key, _ = self.fs.split_path(self.path)
                self.fs.call_s3("delete_object", Bucket=bucket, Key=key, IfMatch=self.version)
            else:
                current = self._read()
                if current is not None and current[1] == self.version:
                    self.fs.rm(self.path)
        except Exception as exc:  # noqa: BLE001 - a lost lock, or a failure of the storage service: both judged here
            if _precondition_failed(exc):
                return "the lock of this output was taken over by another process before this one finished"
            if not isinstance(exc, FileNotFoundError):
                log.warning("could not remove the lock %s (%s); the next writer takes it over once it is stale",
                            self.path, exc)
        self.fs.invalidate_cache(self.path)
        return None

    def held_by_other(self, path: str) -> dict[str, Any] | None:
        """The record of the live holder of the lock object at ``path``, or None (absent or stale)."""
        current = _read_object(self.fs, path, self.s3)
        if current is None or stale_reason(current[0], current[2], self.stale_after):
            return None
        return current[0]


@dataclass
class HeldLock:
    """A lock this process holds: the output, its lock, and what it replaced (a stale lock's holder record)."""

    url: str
    lock_url: str
    part: str | None
    replaced: dict[str, Any] | None = None
    depth: int = 1
    _impl: Any = field(default=None, repr=False)


_HELD: dict[str, HeldLock] = {}  # output URL -> the lock this process holds on it
_GUARD = threading.Lock()


def holds_lock(url: str) -> bool:
    """Whether this process holds the lock of the output at ``url`` (whole, or a shard's)."""
    return normalize_url(url) in _HELD


def _is_local(url: str) -> bool:
    fs, _ = filesystem(url)
    return "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,))


def _other_kind_held(url: str, part: str | None, impl: Any) -> dict[str, Any] | None:
    """The holder of a lock of the other kind on ``url`` held by another process: for a whole writer any shard's
    lock, for a shard the whole writer's lock; None when there is none."""
    fs, whole = filesystem(lock_url(url))
    if part is not None:
        candidates = [whole]
    else:
        folder, _, name = whole.rpartition("/")
        fs.invalidate_cache(folder)
        try:
            names = fs.ls(folder, detail=False)
        except FileNotFoundError:
            names = []
        candidates = [n for n in names if n.rstrip("/").rsplit("/", 1)[-1].startswith(f"{name}.")]
    for candidate in candidates:
        holder = impl.held_by_other(candidate)
        if holder is not None:
            return holder
    return None


@contextmanager
def output_lock(url: str, *, part: str | None = None, stale_after: float = STALE_SECONDS,
                refresh: float = REFRESH_SECONDS) -> Iterator[HeldLock]:
    """Hold the lock of the output at ``url`` (``part``: one shard's) for the block; see the module docstring."""
    url = normalize_url(url)
    with _GUARD:
        held = _HELD.get(url)
        if held is not None:
            if held.part is not None and held.part != part:
                raise RuntimeError(f"this process holds the lock of {url} for {held.part}, not for {part or 'all of it'}")
            held.depth += 1
    if held is not None:
        try:
            yield held
        finally:
            with _GUARD:
                held.depth -= 1
        return
    where = lock_url(url, part)
    impl: Any = _FileLock(filesystem(where)[1]) if _is_local(url) else _ObjectLock(where, stale_after, refresh)
    impl.acquire(url, _holder_record())
    try:
        other = _other_kind_held(url, part, impl)
    except BaseException:
        impl.release()
        raise
    if other is not None:
        impl.release()
        raise _busy(url, other, "being written in shards" if part is None else "being written whole")
    if impl.replaced:
        log.warning("took over the lock of %s left by %s: %s", url, describe_holder(impl.replaced), impl.reason)
    held = HeldLock(url, where, part, impl.replaced, _impl=impl)
    with _GUARD:
        _HELD[url] = held
    failed = False
    try:
        yield held
    except BaseException:
        failed = True
        raise
    finally:
        with _GUARD:
            _HELD.pop(url, None)
        lost = impl.release()
        if lost and not failed:
            raise EnvironmentFailure(f"{url!r}: {lost}; what it wrote may be mixed with another writer's: rerun the "
                                     f"same command once no other process writes it")
        if lost:
            log.error("%s: %s", url, lost)
