"""What fnet writes, and the one rule for where: a command replaces only an output it wrote itself.

Every output carries a marker of its kind (``KINDS``): a Zarr store its ``schema`` attr (``fnet-activations``,
``fnet-networks``), a folder the file ``fnet-output.json`` (``{"kind": ...}``), an explain page the
``<meta name="fnet-output">`` tag of ``html_marker(kind)`` in its head.

- ``output_kind(url) -> str | None``: the kind at ``url``; ``None`` when nothing (or an empty folder) is
  there, ``FOREIGN`` for anything else (a user's files, another program's store).
- ``prepare_output(url, kind, *, overwrite=False, resume=False) -> bool``: refuse (``StoreError``, one line)
  an ``url`` that holds something other than an output of ``kind`` — with or without ``overwrite`` — and an
  output of ``kind`` unless ``overwrite`` or ``resume``. True when an output of ``kind`` is there.
- ``open_output(url, kind) -> str``: a resumable output folder (evaluation results, a run folder): checked,
  created and marked when new.
- ``replacing(url, kind, *, overwrite=False)``: a context manager holding the output's lock
  (``fnet_dist.store.locks``) and yielding a staging URL beside ``url`` unique to this process (an empty folder for
  folder kinds; stagings that killed writers left behind are removed first); when the block ends without error
  the output is marked and swapped in, so a crash leaves the old output whole.
- ``staging_url(url)``, ``swap_in(staged, url)``, ``mark(url, kind)``: the parts, for stages
  that fill a store incrementally (record, decompose) and swap it in when complete. Their staging name is fixed
  (``.NAME.fnet-new``), so that a rerun resumes it; the output's lock keeps it to one writer.

Local paths and object-storage URLs alike (fsspec). On a local disk the swap is two renames (an interrupted
swap is repaired by the next ``prepare_output`` of a process holding the output's lock); object storage has no rename, so there the finished staging
copy is moved in object by object after the old output is removed.
"""
from __future__ import annotations

import json
import os
import uuid
from contextlib import contextmanager
from typing import Iterator

from .. import __version__
from ..core.errors import StoreError
from .locations import filesystem, normalize_url, remove_store
from .locks import holds_lock, output_lock

__all__ = ["FOREIGN", "KINDS", "MARKER_FILE", "html_marker", "mark", "open_output", "output_kind", "prepare_output",
           "replacing", "staging_url", "swap_in"]

KINDS = {
    "activations": "an activations store (fnet record)",
    "networks": "a networks store (fnet decompose)",
    "match": "match results (fnet match)",
    "evaluation": "evaluation results (fnet evaluate)",
    "checkpoint": "a baked checkpoint (fnet bake)",
    "explain": "an explain page (fnet explain)",
    "run": "a run folder (fnet run)",
}
STORE_KINDS = {"fnet-activations": "activations", "fnet-networks": "networks"}  # schema attr -> kind
FILE_KINDS = ("explain",)
MARKER_FILE = "fnet-output.json"
FOREIGN = "foreign"
_STAGED, _OLD = ".fnet-new", ".fnet-old"


def html_marker(kind: str) -> str:
    """The ``<meta>`` tag that marks an HTML file as an fnet output of ``kind``."""
    return f'<meta name="fnet-output" content="{_check_kind(kind)}">'


def _check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown output kind {kind!r}; expected one of {', '.join(KINDS)}")
    return kind


def _sibling(url: str, suffix: str) -> str:
    parent, _, name = normalize_url(url).rpartition("/")
    return f"{parent}/.{name}{suffix}"


def staging_url(url: str) -> str:
    """Where a new output for ``url`` is written before it is swapped in (a hidden sibling)."""
    return _sibling(url, _STAGED)


def _read_json(fs, path: str) -> dict | None:
    try:
        data = json.loads(fs.cat_file(path))
    except (FileNotFoundError, ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _zarr_schema(fs, path: str) -> str | None:
    """The ``schema`` attr of a Zarr v3 (``zarr.json``) or v2 (``.zattrs``) group at ``path``, else None."""
    v3 = _read_json(fs, f"{path}/zarr.json")
    if v3 is not None:
        return str((v3.get("attributes") or {}).get("schema"))
    v2 = _read_json(fs, f"{path}/.zattrs")
    return None if v2 is None else str(v2.get("schema"))


def _describe(fs, path: str) -> tuple[str, str]:
    """(kind or FOREIGN or "", words for the message) of what lies at ``path``; "" means nothing is there."""
    if fs.isfile(path):
        with fs.open(path, "rb") as handle:
            head = handle.read(4096).decode("utf-8", errors="replace")
        for kind in FILE_KINDS:
            if html_marker(kind) in head:
                return kind, KINDS[kind]
        return FOREIGN, "a file that fnet did not write"
    marker = _read_json(fs, f"{path}/{MARKER_FILE}")
    if marker is not None and marker.get("kind") in KINDS:
        return marker["kind"], KINDS[marker["kind"]]
    schema = _zarr_schema(fs, path)
    if schema is not None:
        kind = STORE_KINDS.get(schema)
        return (kind, KINDS[kind]) if kind else (FOREIGN, f"a Zarr store that fnet did not write (schema {schema!r})")
    if not fs.ls(path, detail=False):
        return "", "an empty folder"
    return FOREIGN, "a folder of files that fnet did not write"


def _exists(fs, path: str) -> bool:
    fs.invalidate_cache(path)
    return fs.exists(path)


def _repair(fs, path: str) -> None:
    """Finish a local swap that was interrupted between its two renames (only under the output's lock: without
    it the swap may be another process's, under way)."""
    old = _sibling(path, _OLD)
    if not holds_lock(path) or not _exists(fs, old):
        return
    if _exists(fs, path):
        fs.rm(old, recursive=True)
    else:
        fs.mv(old, path, recursive=True)


def output_kind(url: str) -> str | None:
    """The kind of the fnet output at ``url``: ``None`` (nothing, or an empty folder), a kind, or ``FOREIGN``."""
    fs, path = filesystem(url)
    _repair(fs, path)
    if not _exists(fs, path):
        return None
    return _describe(fs, path)[0] or None


def prepare_output(url: str, kind: str, *, overwrite: bool = False, resume: bool = False) -> bool:
    """Check that an output of ``kind`` may be written at ``url``; True when one is there already.

    Refused, whatever ``overwrite`` says: anything that is not an output of ``kind``. Refused unless
    ``overwrite`` or ``resume``: an output of ``kind``. Nothing is changed either way.
    """
    _check_kind(kind)
    url = normalize_url(url)
    fs, path = filesystem(url)
    _repair(fs, path)
    if not _exists(fs, path):
        return False
    found, words = _describe(fs, path)
    if not found:
        return False
    if found != kind:
        raise StoreError(
            f"--out {url!r} holds {words}, not {KINDS[kind]}; fnet replaces only its own outputs of the same kind "
            f"(with or without --overwrite), so nothing was changed: choose another --out"
        )
    if not (overwrite or resume):
        raise StoreError(f"--out {url!r} already holds {KINDS[kind]}; pass --overwrite to replace it, or choose another --out")
    return True


def _is_folder(kind: str) -> bool:
    """Whether outputs of ``kind`` are plain folders (marked by ``MARKER_FILE``), not stores or files."""
    return _check_kind(kind) not in STORE_KINDS.values() and kind not in FILE_KINDS


def mark(url: str, kind: str) -> None:
    """Mark the folder ``url`` as an output of ``kind`` (stores and pages carry their marker in their content)."""
    if not _is_folder(kind):
        return
    fs, path = filesystem(url)
    fs.makedirs(path, exist_ok=True)
    fs.pipe_file(f"{path}/{MARKER_FILE}", json.dumps({"kind": kind, "package_version": __version__}).encode() + b"\n")


def open_output(url: str, kind: str) -> str:
    """A resumable output folder of ``kind`` at ``url``: refused if it holds anything else, created and
    marked when new; returns the normalized URL."""
    url = normalize_url(url)
    if not prepare_output(url, kind, resume=True):
        mark(url, kind)
    return url


def _is_local(fs) -> bool:
    return "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,))


def swap_in(staged: str, url: str) -> None:
    """Put the finished output at ``staged`` in the place of ``url`` (whose old content is dropped)."""
    fs, path = filesystem(url)
    _, source = filesystem(staged)
    fs.invalidate_cache()
    if _is_local(fs):
        old = _sibling(path, _OLD)
        if _exists(fs, path):
            fs.mv(path, old, recursive=True)
        fs.mv(source, path, recursive=True)
        if _exists(fs, old):
            fs.rm(old, recursive=True)
        return
    if _exists(fs, path):
        fs.rm(path, recursive=True)
    if fs.isfile(source):
        fs.mv(source, path)
        return
    files = fs.find(source)
    fs.copy(files, [path + name[len(source):] for name in files])
    fs.rm(source, recursive=True)


def _drop_stale_stagings(url: str) -> None:
    """Remove the per-process stagings of ``url`` that writers killed before their swap left (the caller holds
    the output's lock, so no live writer has one)."""
    fs, path = filesystem(url)
    folder, _, name = path.rpartition("/")
    prefix = f".{name}{_STAGED}-"
    fs.invalidate_cache(folder)
    try:
        entries = fs.ls(folder, detail=False)
    except FileNotFoundError:
        return
    for entry in entries:
        if entry.rstrip("/").rsplit("/", 1)[-1].startswith(prefix):
            fs.rm(entry, recursive=True)


@contextmanager
def replacing(url: str, kind: str, *, overwrite: bool = False) -> Iterator[str]:
    """Write a whole output of ``kind`` for ``url`` under its lock: yields a staging URL (unique to this process)
    to write to; when the block ends without error the output is marked and swapped in. An error (or a kill)
    leaves ``url`` as it was."""
    url = normalize_url(url)
    with output_lock(url):
        prepare_output(url, kind, overwrite=overwrite)
        _drop_stale_stagings(url)
        staged = _sibling(url, f"{_STAGED}-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        if _is_folder(kind):
            fs, path = filesystem(staged)
            fs.makedirs(path, exist_ok=True)
        try:
            yield staged
        except BaseException:
            remove_store(staged)
            raise
        mark(staged, kind)
        swap_in(staged, url)
