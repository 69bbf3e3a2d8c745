"""Damaged stores are refused, never read as zeros: Zarr reads a missing chunk as the array's fill value, so a
deleted chunk of a complete sample would silently become zeros (or NaN) in every result built on it.

Each schema variable with a ``written`` rule (``storage_schemas.WrittenRule``) names the chunks a sound store
holds, from the store's own state (its complete samples and their lengths, its done samples, its attrs): that
is the manifest, kept current by the writers' own resume markers, so it costs no extra file and cannot
disagree with them.

- ``find_damage(url, schema, variables=None, *, decode=False) -> list[Damage]``: the required chunks that are
  missing, or (uncompressed arrays) shorter or longer than a chunk; ``decode``: also read every stored chunk of
  every variable's compressed array (slow; what a decoding error triggers). One listing per variable: a store of 10^5
  chunks costs 10^5 directory entries (or ~100 object-storage list requests), never 10^5 reads.
- ``check_store(url, schema, variables=None)``: raise ``StoreError`` (one line: the store, the variable, the
  chunk, what is wrong and how to repair it) when ``find_damage`` finds anything.
- ``damaged_samples(damages, dim="sample") -> set[int]``: the positions along ``dim`` (samples, splits) to redo
  (the writers' repair).
- ``store_problems(url, schema) -> list[str]``: why the store at ``url`` is not a finished, sound store (none
  there, samples or levels not complete, a damaged chunk); empty when it is. What ``fnet run`` verifies before
  it records a stage as done, and before it trusts a stage recorded as done.
- ``damage_error(exc) -> StoreError | None``: an error that looks like a chunk that could not be decoded, as one
  line naming the damaged chunk of a store this process opened (``remember``); None otherwise.
"""
from __future__ import annotations

import itertools
import logging
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..core.errors import StoreError
from .locations import filesystem, normalize_url

if TYPE_CHECKING:
    from storage_schemas import StoreSchema

log = logging.getLogger(__name__)

__all__ = ["REPAIR", "Damage", "check_store", "damage_error", "damaged_samples", "find_damage", "remember",
           "store_problems"]

REPAIR = {
    "fnet-activations": "rerun the record stage (fnet record with the same arguments, or the same fnet run): it records "
                        "the damaged samples again",
    "fnet-networks": "rerun the decompose stage (fnet decompose with the same arguments, or the same fnet run): it "
                     "redoes the damaged samples, splits and levels",
}
_DECODE_WORDS = ("decompress", "codec", "buffer", "reshape", "truncat", "corrupt", "unexpected end", "zstd", "blosc",
                 "invalid input", "size must be", "frame", "crc32c", "checksum")
_OPENED: dict[str, StoreSchema] = {}  # stores this process opened: where a decoding error may come from


@dataclass(frozen=True)
class Damage:
    """One damaged chunk: its variable, key (relative to the store), grid index, what is wrong, and the positions
    along the variable's first dim ``dim`` (samples, splits) it holds data of (none for a whole-store variable)."""

    variable: str
    key: str
    index: tuple[int, ...]
    problem: str
    dim: str = ""
    positions: tuple[int, ...] = ()

    def describe(self, dims: tuple[str, ...], chunks: tuple[int, ...]) -> str:
        """``chunk 'activation/c/3/1/0/0' of activation (sample 3, token 32-63) is missing``."""
        where = [f"{d} {i * c}" + (f"-{i * c + c - 1}" if c > 1 else "")
                 for d, i, c in zip(dims, self.index, chunks) if d in ("sample", "split", "token", "component")]
        return f"chunk {self.key!r} of {self.variable}" + (f" ({', '.join(where)})" if where else "") + f" is {self.problem}"


def remember(url: str, schema: StoreSchema) -> None:
    """Note that this process reads the store at ``url`` (``damage_error`` looks there, latest first)."""
    url = normalize_url(url)
    _OPENED.pop(url, None)
    _OPENED[url] = schema


def _group(url: str):
    import zarr

    return zarr.open_group(normalize_url(url), mode="r")


def _fixed_size(array) -> int | None:
    """Bytes of every chunk of an uncompressed, unsharded array (Zarr writes edge chunks whole); None otherwise."""
    from zarr.codecs import BytesCodec

    if array.compressors or array.filters or array.shards is not None or not isinstance(array.serializer, BytesCodec):
        return None
    return math.prod(array.chunks) * array.dtype.itemsize


def _walk(folder: str, prefix: str, found: dict[str, int]) -> None:
    """Every file under the local ``folder``: ``scandir`` and one ``stat`` per file (fsspec's ``find`` costs ten
    times as much on 10^5 chunks)."""
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            _walk(entry.path, f"{prefix}{entry.name}/", found)
        elif entry.name != "zarr.json":
            found[prefix + entry.name] = entry.stat(follow_symlinks=False).st_size


def _listing(url: str, variable: str) -> dict[str, int]:
    """{chunk key relative to the variable (``c/0/1``): size in bytes} of the variable's stored chunks."""
    fs, path = filesystem(url)
    if "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)):
        found: dict[str, int] = {}
        _walk(f"{path}/{variable}", "", found)
        return found
    prefix = f"{path}/{variable}/"
    fs.invalidate_cache(f"{path}/{variable}")
    try:
        listed = fs.find(f"{path}/{variable}", detail=True)
    except FileNotFoundError:
        return {}
    return {name[len(prefix):]: int(info.get("size") or 0) for name, info in listed.items()
            if name.startswith(prefix) and not name.endswith("zarr.json")}


def _chosen_samples(group, rule, n_samples: int) -> np.ndarray:
    """Positions of the samples whose ``rule.when`` variables are all true (non-zero)."""
    chosen = np.ones(n_samples, dtype=bool)
    for name in rule.when:
        chosen &= np.asarray(group[name][:]).astype(bool)
    return np.flatnonzero(chosen)


def _required(group, spec, attrs: dict) -> Iterator[tuple[tuple[int, ...], int | None]]:
    """(chunk grid index, sample position or None) of every chunk of ``spec``'s variable a sound store holds (a
    chunk of several samples once per sample)."""
    array, rule = group[spec.name], spec.written
    grid = [range(math.ceil(n / c)) for n, c in zip(array.shape, array.chunks)]
    if rule.when_attr:
        if attrs.get(rule.when_attr):
            for index in itertools.product(*grid):
                yield index, None
        return
    sample_chunk = array.chunks[0]
    bounds = {dim: np.asarray(group[name][:]) for dim, name in rule.upto.items()}
    for position in _chosen_samples(group, rule, array.shape[0]):
        axes = [range(position // sample_chunk, position // sample_chunk + 1)]
        for dim, chunk, full in zip(spec.dims[1:], array.chunks[1:], grid[1:]):
            axes.append(range(math.ceil(int(bounds[dim][position]) / chunk)) if dim in bounds else full)
        for index in itertools.product(*axes):
            yield index, int(position)


def _chunk_index(key: str, separator: str) -> tuple[int, ...] | None:
    """The grid index of a chunk key (``c/3/1/0/0`` or ``3.1.0.0``); None for a key that is not a chunk's."""
    parts = key.split(separator)
    parts = parts[1:] if parts[:1] == ["c"] else parts
    try:
        return tuple(int(p) for p in parts if p != "")
    except ValueError:
        return None


def _decodes(array, index: tuple[int, ...]) -> str | None:
    try:
        array.get_block_selection(index)
    except Exception as exc:  # noqa: BLE001 - a codec's own error (any type): what is wrong, in its words
        return f"unreadable ({type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:120]})"
    return None


def find_damage(url: str, schema: StoreSchema, variables: Iterable[str] | None = None, *,
                decode: bool = False) -> list[Damage]:
    """The damaged chunks of the store at ``url`` among ``variables`` (default: every variable with a rule)."""
    group = _group(url)
    attrs = dict(group.attrs)
    names = [n for n in (variables or schema.variables) if decode or schema.variables[n].written is not None]
    damages = []
    for name in names:
        spec, array = schema.variables[name], group[name]
        encoding = array.metadata.chunk_key_encoding
        # the markers first, then the listing: a sample a concurrent shard completes meanwhile is not required yet
        required: dict[tuple[int, ...], list[int]] = {}
        for index, sample in (_required(group, spec, attrs) if spec.written is not None else ()):
            required.setdefault(index, []).extend([] if sample is None else [sample])
        stored, size = _listing(url, name), _fixed_size(array)
        for index, samples in required.items():
            key = encoding.encode_chunk_key(index)
            problem = None
            if key not in stored:
                problem = "missing"
            elif size is not None and stored[key] != size:
                problem = f"truncated or overwritten ({stored[key]:,} bytes, a chunk holds {size:,})"
            if problem:
                damages.append(Damage(name, f"{name}/{key}", index, problem, spec.dims[0] if samples else "",
                                      tuple(samples)))
        if decode and size is None:
            per_chunk = array.chunks[0] if spec.dims[:1] in (("sample",), ("split",)) else 0
            for key in sorted(stored):
                index = _chunk_index(key, encoding.separator)
                problem = _decodes(array, index) if index is not None else None
                if problem:
                    first = index[0] * per_chunk
                    samples = tuple(range(first, min(first + per_chunk, array.shape[0]))) if per_chunk else ()
                    damages.append(Damage(name, f"{name}/{key}", index, problem, spec.dims[0] if samples else "",
                                          samples))
    return damages


def damaged_samples(damages: Iterable[Damage], dim: str = "sample") -> set[int]:
    """Positions along ``dim`` of ``damages`` (a chunk of a whole-store variable holds none)."""
    return {position for d in damages if d.dim == dim for position in d.positions}


def _error(url: str, schema: StoreSchema, damages: list[Damage]) -> StoreError:
    first = damages[0]
    array = _group(url)[first.variable]
    more = f"; {len(damages) - 1} more damaged chunk{'s' if len(damages) > 2 else ''}" if len(damages) > 1 else ""
    which = []
    for dim in dict.fromkeys(d.dim for d in damages if d.dim):
        positions = sorted(damaged_samples(damages, dim))
        which.append(f"{dim}s {', '.join(map(str, positions[:8]))}{' …' if len(positions) > 8 else ''}")
    held = f" ({'; '.join(which)})" if which else ""
    return StoreError(f"the {schema.name.removeprefix('fnet-')} store {url!r} is damaged: "
                      f"{first.describe(schema.variables[first.variable].dims, tuple(array.chunks))}{more}{held}; "
                      f"it is not read as zeros: {REPAIR.get(schema.name, 'write the store again')}")


def check_store(url: str, schema: StoreSchema, variables: Iterable[str] | None = None) -> None:
    """Raise ``StoreError`` naming the first damaged chunk of the store at ``url`` (see ``find_damage``)."""
    url = normalize_url(url)
    damages = find_damage(url, schema, variables)
    if damages:
        raise _error(url, schema, damages)


_FINISHED = {  # schema -> (is the store finished, what is not)
    "fnet-activations": (lambda group: bool(np.asarray(group["complete"][:]).all()), "samples not recorded yet"),
    "fnet-networks": (lambda group: bool(group.attrs.get("complete")), "levels not decomposed yet"),
}


def store_problems(url: str, schema: StoreSchema) -> list[str]:
    """Why the store at ``url`` is not finished and sound (see the module docstring); empty when it is."""
    url = normalize_url(url)
    try:
        group = _group(url)
        if group.attrs.get("schema") != schema.name:
            return [f"{url} is not an {schema.name} store"]
    except (FileNotFoundError, KeyError, ValueError, OSError):
        return [f"{url}: no store there"]
    finished, unfinished = _FINISHED.get(schema.name, (lambda group: True, ""))
    if not finished(group):
        return [f"{url}: {unfinished}"]
    damages = find_damage(url, schema)
    return [str(_error(url, schema, damages))] if damages else []


def _looks_like_decoding(exc: BaseException) -> bool:
    seen = 0
    while exc is not None and seen < 20:
        text = f"{type(exc).__name__} {exc}".lower()
        if isinstance(exc, (RuntimeError, ValueError, TypeError, OSError)) and any(w in text for w in _DECODE_WORDS):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def damage_error(exc: BaseException) -> StoreError | None:
    """``exc`` as one line naming a damaged chunk, when it looks like a chunk that could not be decoded and a
    store this process opened holds one (every chunk of those stores is checked, compressed ones decoded)."""
    if isinstance(exc, StoreError) or not _looks_like_decoding(exc):
        return None
    for url, schema in reversed(list(_OPENED.items())):
        try:
            damages = find_damage(url, schema, decode=True)
        except Exception as problem:  # noqa: BLE001 - a store that cannot be opened any more: not ours to explain
            log.debug("could not check %s for damaged chunks: %s", url, problem)
            continue
        if damages:
            return _error(url, schema, damages)
    return None

