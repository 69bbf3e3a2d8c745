"""The activations store on disk: its array (shape, dtype, chunks), creation by any shard, sample writes.

- ``ActivationArray``: shape, dtype and chunking of ``activation(sample, token, layer, neuron)``;
  ``choose_token_chunk(...)`` picks the power-of-two token chunk (≤ ``MAX_TOKEN_CHUNK`` tokens and
  ≤ ``CHUNK_BYTES`` per chunk). ``activation`` is stored uncompressed: float16 activations compress to
  ~0.94 of their size with zstd, for twice the CPU of the write and three times that of the read.
- ``config_hash(config)``: a short digest of everything that determines a store's content.
- ``prepare_store(url, selection, array, attrs, shard=, overwrite=)``: whichever shard comes first creates
  the store (or resumes one of the same config); creation is idempotent and never touches sample data, so
  shards need not wait for each other (only replacing a store of another config is left to shard 0).
- ``recording_target(url, digest, overwrite=, shard=) -> str``: ``url``, or (``overwrite`` of a store of another
  config) the staging URL beside it where the new store is recorded, to be swapped in when complete.
- ``open_for_samples(url, selection, array, attrs, shard=, overwrite=) -> (target, done)``: the store to write
  samples into (``recording_target``, prepared) and which samples need no writing (complete, and whole on disk:
  a complete sample with a missing or truncated chunk is written again); what ``fnet record`` and ``fnet plant``
  share.
- ``refuse_foreign(url)``: refuse (``StoreError``) what is not an activations store nor one under creation.
- ``SampleWriter``: writes finished samples (the sample's region of each array, from a background thread
  or in line), then their ``complete`` marker, so a killed run leaves no sample marked complete that is not written.
- ``summarize_store(url) -> str``: a short human summary of a store.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import tempfile
import threading
import time
import uuid
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from storage_schemas import ACTIVATIONS

from ..core.corpora import Selection
from ..core.errors import StoreError
from .integrity import damaged_samples, find_damage
from .outputs import prepare_output, staging_url
from .storage import filesystem, normalize_url, open_store, remove_store, store_bytes, store_exists

if TYPE_CHECKING:
    import xarray as xr

__all__ = [
    "CHUNK_BYTES",
    "MAX_TOKEN_CHUNK",
    "PENDING",
    "STORE_DTYPES",
    "ActivationArray",
    "SampleWriter",
    "choose_token_chunk",
    "complete_mask",
    "config_hash",
    "open_for_samples",
    "prepare_store",
    "recording_target",
    "refuse_foreign",
    "summarize_store",
]

log = logging.getLogger(__name__)

CHUNK_BYTES = 32 * 2**20
MAX_TOKEN_CHUNK = 32  # a sample's padding costs at most one partly filled chunk (~5 % of the bytes at 200 tokens)
STORE_DTYPES = ("float16", "float32")
PENDING = "pending:"  # config_hash prefix of a creation left unfinished by fnet-dist ≤ 0.1 (created again)
POLL_SECONDS = 1.0
_DIMS = ("sample", "token", "layer", "neuron")


def choose_token_chunk(n_tokens: int, n_layers: int, d_model: int, itemsize: int, budget: int = CHUNK_BYTES) -> int:
    """The largest power of two ``t ≤ MAX_TOKEN_CHUNK`` with ``t × n_layers × d_model × itemsize ≤ budget``
    (at least 1), capped at ``n_tokens`` (one chunk then holds the whole token axis)."""
    per_token = n_layers * d_model * itemsize
    chunk = 1
    while chunk * 2 <= MAX_TOKEN_CHUNK and chunk * 2 * per_token <= budget:
        chunk *= 2
    return max(1, min(chunk, n_tokens))


@dataclass(frozen=True)
class ActivationArray:
    """``activation`` of shape ``(n_samples, n_tokens, n_layers, d_model)`` in ``dtype``, chunks ``(1, token_chunk, n_layers, d_model)``."""

    n_samples: int
    n_tokens: int
    n_layers: int
    d_model: int
    dtype: str

    @property
    def token_chunk(self) -> int:
        return choose_token_chunk(self.n_tokens, self.n_layers, self.d_model, np.dtype(self.dtype).itemsize)

    @property
    def chunks(self) -> tuple[int, int, int, int]:
        return (1, self.token_chunk, self.n_layers, self.d_model)


def config_hash(config: Mapping[str, Any]) -> str:
    """16 hex digits of SHA-256 over ``config`` as canonical JSON."""
    text = json.dumps(dict(config), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _template(selection: Selection, array: ActivationArray, attrs: Mapping[str, Any]) -> xr.Dataset:
    """The store as a Dataset: a lazy all-fill ``activation`` and the filled per-sample variables."""
    import dask.array as da
    import xarray as xr

    samples = selection.samples
    n, t = array.n_samples, array.n_tokens
    token_id = np.full((n, t), -1, dtype=np.int32)
    for s in samples:
        token_id[s.position, : s.n_tokens] = s.token_ids
    lazy = da.zeros((n, t, array.n_layers, array.d_model), dtype=array.dtype, chunks=array.chunks)
    return xr.Dataset(
        {
            "activation": (_DIMS, lazy),
            "n_tokens": ("sample", np.array([s.n_tokens for s in samples], dtype=np.int32)),
            "token_id": (("sample", "token"), token_id),
            "text": ("sample", np.array([s.text for s in samples], dtype=object)),
            "split": ("sample", np.array([s.split for s in samples], dtype=object)),
            "source_index": ("sample", np.array([s.source_index for s in samples], dtype=np.int64)),
            # lazy like activation: creating the store writes no chunk of them, so a late creator never
            # overwrites what a faster shard has already written (unwritten chunks read as the fill value)
            "peak": (("sample", "layer"), da.zeros((n, array.n_layers), dtype=np.float32, chunks=(1, array.n_layers))),
            "complete": ("sample", da.zeros(n, dtype=bool, chunks=1)),
        },
        coords={"sample": np.arange(n), "layer": np.arange(array.n_layers)},
        attrs=dict(attrs),
    )


def _encoding(array: ActivationArray) -> dict[str, dict[str, Any]]:
    per_sample = {"chunks": (1,)}
    return {
        "activation": {"chunks": array.chunks, "fill_value": 0.0, "compressors": None},
        "token_id": {"chunks": (1, array.n_tokens)},
        # uncompressed (n_layers floats a chunk): a chunk of known size is checked without reading it (store.integrity)
        "peak": {"chunks": (1, array.n_layers), "fill_value": 0.0, "compressors": None},
        "complete": {"chunks": (1,), "fill_value": False},
        **{name: per_sample for name in ("n_tokens", "text", "split", "source_index")},
    }


def _create(url: str, selection: Selection, array: ActivationArray, attrs: Mapping[str, Any], *, replace: bool) -> None:
    """Write the store's metadata and per-sample variables, root metadata (and so readiness) last.

    The template is written to a local folder, then copied key by key (each key whole: a rename on local
    disks, one PUT on object stores). Every shard of a config writes the same keys with the same content and
    no data chunk of ``activation``, ``peak`` or ``complete``, so shards may create concurrently, and a late
    one leaves the samples of a faster one intact. ``replace`` first removes a store of another config.
    """
    import zarr

    template = _template(selection, array, {**ACTIVATIONS.stamp(), **attrs})
    ACTIVATIONS.validate(template, url)
    if replace:
        remove_store(url)
    fs, root = filesystem(url)
    local = "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,))
    with tempfile.TemporaryDirectory(prefix="fnet-store-") as staging, warnings.catch_warnings():
        # consolidated metadata: not (yet) in the v3 spec; lets a plain xr.open_zarr(url) work
        warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
        template.to_zarr(staging, mode="w", compute=False, consolidated=True, zarr_format=3, encoding=_encoding(array))
        zarr.consolidate_metadata(staging)
        keys = sorted(os.path.relpath(os.path.join(d, f), staging) for d, _, files in os.walk(staging) for f in files)
        keys.sort(key=lambda k: k == "zarr.json")  # the root last: the store reads as ready once it is there
        for key in keys:
            with open(os.path.join(staging, key), "rb") as handle:
                data = handle.read()
            target = f"{root}/{key.replace(os.sep, '/')}"
            if local:
                os.makedirs(os.path.dirname(target), exist_ok=True)
                temporary = f"{target}.{uuid.uuid4().hex}.tmp"
                with open(temporary, "wb") as handle:
                    handle.write(data)
                os.replace(temporary, target)
            else:
                fs.pipe_file(target, data)


def _group_attrs(url: str) -> dict[str, Any] | None:
    """The root attrs of the store at ``url``, or None when there is no store (yet)."""
    import zarr

    if not store_exists(url):
        return None
    try:
        return dict(zarr.open_group(url, mode="r").attrs)
    except (FileNotFoundError, KeyError, ValueError):
        return None


def _mismatch(url: str, found: Mapping[str, Any], config: Mapping[str, Any]) -> StoreError:
    theirs = found.get("record_config") or {}
    diffs = [f"{k}: {theirs.get(k)!r} there, {v!r} here" for k, v in config.items() if theirs.get(k) != v]
    detail = "; ".join(diffs[:4]) or f"config hash {found.get('config_hash')!r}"
    return StoreError(
        f"the store at {url!r} was recorded with another config ({detail}); "
        f"pass --overwrite to replace it, or choose another --out"
    )


def _check_existing(url: str, found: Mapping[str, Any], config: Mapping[str, Any], digest: str) -> None:
    """Raise unless ``found`` (a store's attrs) is a ready activations store of this config."""
    if found.get("schema") != ACTIVATIONS.name or found.get("schema_version") != ACTIVATIONS.version:
        open_store(url, ACTIVATIONS, verify=False)  # raises the schema's own message (foreign store / other version)
    if found.get("config_hash") not in (digest, PENDING + digest):
        raise _mismatch(url, found, config)


_STORE_ENTRIES = {"zarr.json", "activation", "n_tokens", "token_id", "text", "split", "source_index", "peak", "complete",
                  "sample", "layer"}


def refuse_foreign(url: str) -> None:
    """Never write over what is not an activations store (``outputs.prepare_output``: a user's files, another
    kind of store); a folder holding only this store's own entries but no root metadata yet is a creation under
    way (another shard's), not foreign."""
    fs, path = filesystem(url)
    if _group_attrs(url) is None and fs.isdir(path):
        entries = {str(e).rstrip("/").rsplit("/", 1)[-1] for e in fs.ls(path, detail=False)}
        if entries and entries <= _STORE_ENTRIES and "zarr.json" not in entries:
            return
    prepare_output(url, "activations", resume=True)


def _verify_array(ds: xr.Dataset, url: str, selection: Selection, array: ActivationArray) -> None:
    expected = np.array([s.source_index for s in selection.samples])
    shape = tuple(ds["activation"].shape)
    want = (array.n_samples, array.n_tokens, array.n_layers, array.d_model)
    if shape != want or not np.array_equal(ds["source_index"].values, expected):
        raise StoreError(
            f"the store at {url!r} has the config hash of this run but another array shape ({shape} vs {want}); "
            f"it was changed by hand or by another fnet-dist version: pass --overwrite to re-record it"
        )


def prepare_store(
    url: str,
    selection: Selection,
    array: ActivationArray,
    attrs: Mapping[str, Any],
    *,
    shard: tuple[int, int] = (0, 1),
    overwrite: bool = False,
    wait_timeout: float = 600.0,
) -> xr.Dataset:
    """Make sure the store of this config exists at ``url`` and return it opened (lazily).

    Any shard creates it when there is none (or an unfinished one of this config): shards do not depend on
    each other. Replacing a store of another config (``overwrite``) is shard 0's alone; the other shards
    poll until it has, for up to ``wait_timeout`` s.
    """
    url = normalize_url(url)
    config, digest = attrs["record_config"], attrs["config_hash"]
    deadline, created = time.monotonic() + wait_timeout, False
    while True:
        found = _group_attrs(url)
        if found is not None and found.get("config_hash") == digest:
            ds = open_store(url, ACTIVATIONS, verify=False)  # damaged samples are recorded again (record_activations)
            _verify_array(ds, url, selection, array)
            return ds
        if found is not None and not overwrite:
            _check_existing(url, found, config, digest)
        ours = found is None or found.get("config_hash") == PENDING + digest
        if not created and (ours or shard[0] == 0):
            refuse_foreign(url)  # a user's files or another kind of store: refused
            _create(url, selection, array, attrs, replace=not ours)
            created = True
            continue
        if created:
            raise StoreError(f"the store at {url!r} was created but does not read back as ready; check the storage")
        if time.monotonic() > deadline:
            raise StoreError(
                f"shard {shard[0]}/{shard[1]} waited {wait_timeout:.0f} s for shard 0 to replace the store of another "
                f"config at {url!r} (--overwrite); start shard 0 with the same arguments, or check its log"
            )
        time.sleep(POLL_SECONDS)


def recording_target(url: str, digest: str, *, overwrite: bool, shard: tuple[int, int] = (0, 1)) -> str:
    """Where to record a store of config hash ``digest`` for ``url``: ``url`` itself, unless ``overwrite``
    replaces a store of another config there; then the staging URL beside it (resumed when it holds this
    config), so the old store stays whole until the new one is complete and swapped in."""
    url = normalize_url(url)
    found = _group_attrs(url)
    if not overwrite or found is None or found.get("config_hash") in (digest, PENDING + digest):
        return url
    if shard[1] > 1:
        raise StoreError(
            f"the store at {url!r} holds another config; with --shard {shard[0]}/{shard[1]}, --overwrite cannot swap a "
            f"new store in atomically: delete the old store yourself, or choose another --out"
        )
    staged = staging_url(url)
    if (_group_attrs(staged) or {}).get("config_hash") != digest:
        remove_store(staged)  # an earlier replacement of another config, never finished: ours to drop
    return staged


def complete_mask(url: str) -> np.ndarray:
    """``complete(sample)`` of the store at ``url``, read fresh (bool array of shape (n_samples,))."""
    import xarray as xr

    return xr.open_zarr(normalize_url(url), consolidated=False)["complete"].values.astype(bool)


def open_for_samples(url: str, selection: Selection, array: ActivationArray, attrs: Mapping[str, Any], *,
                     shard: tuple[int, int] = (0, 1), overwrite: bool = False,
                     wait_timeout: float = 600.0) -> tuple[str, np.ndarray]:
    """``(target, done)``: the URL to write the samples of this config into (``url``, or with ``overwrite`` of a
    store of another config the staging URL beside it, to be swapped in when complete), created or resumed
    (``prepare_store``), and ``done`` (n_samples,) bool: the samples complete and whole on disk (a complete sample
    with a missing or truncated chunk is written again, never read as zeros)."""
    target = recording_target(url, attrs["config_hash"], overwrite=overwrite, shard=shard)
    prepare_store(target, selection, array, attrs, shard=shard, overwrite=overwrite, wait_timeout=wait_timeout)
    done = complete_mask(target)
    damaged = sorted(damaged_samples(find_damage(target, ACTIVATIONS)))
    if damaged:
        log.warning("%s: %d complete samples have damaged chunks (%s): writing them again", url, len(damaged),
                    ", ".join(map(str, damaged[:10])))
        done[damaged] = False
    return target, done


class SampleWriter:
    """Write samples ``(position, activation (n_tokens, n_layers, d_model), peak (n_layers,))``, from a
    thread (``background``) or in ``put`` itself.

    Each sample is written as whole chunks of its token row: the chunks its real tokens fill, the last one
    completed with zeros (fill); chunks past it stay unwritten (fill). Then its ``complete`` marker.
    In the background, ``put`` blocks while ``max_pending`` samples wait; ``close`` writes what is left
    and re-raises the writer's first error.
    """

    def __init__(self, url: str, array: ActivationArray, max_pending: int = 4, background: bool = True) -> None:
        import zarr

        self.url, self.array = normalize_url(url), array
        group = zarr.open_group(self.url, mode="r+")  # opened once: a region write per sample, no metadata reads
        self._arrays = {name: group[name] for name in ("activation", "peak", "complete")}
        # every activation chunk written holds real tokens: skip zarr's all-fill check (half the cost of a write);
        # and a peak chunk is written even when all zero, so that the integrity check finds every chunk of a
        # complete sample (fnet_dist.store.integrity)
        for name in ("activation", "peak"):
            self._arrays[name] = self._arrays[name].with_config({"write_empty_chunks": True})
        self._tail = np.zeros((array.token_chunk, array.n_layers, array.d_model), dtype=array.dtype)
        self._queue: queue.Queue = queue.Queue(maxsize=max_pending)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="fnet-record-writer", daemon=True) if background else None
        if self._thread is not None:
            self._thread.start()

    def put(self, position: int, activation: np.ndarray, peak: np.ndarray) -> None:
        self._raise_if_failed()
        if self._thread is None:
            self._write(position, activation, peak)
        else:
            self._queue.put((position, activation, peak))

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
        self._raise_if_failed()

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._write(*item)
                except BaseException as exc:  # handed to the recording thread by put/close
                    self._error = exc

    def _write(self, position: int, activation: np.ndarray, peak: np.ndarray) -> None:
        chunk, n = self.array.token_chunk, activation.shape[0]
        whole = n - n % chunk
        if whole:
            self._arrays["activation"][position, :whole] = activation[:whole]
        if whole < n:  # the last, partly filled chunk: real tokens then zeros, so no chunk is read back
            end = min(whole + chunk, self.array.n_tokens)
            tail = self._tail[: end - whole]
            tail[: n - whole] = activation[whole:]
            tail[n - whole:] = 0
            self._arrays["activation"][position, whole:end] = tail
        self._arrays["peak"][position] = peak.astype(np.float32)
        self._arrays["complete"][position] = True  # last: the sample is whole on disk


def summarize_store(url: str) -> str:
    """A short human summary: model, corpus, samples per split, tokens, layers × neurons, bytes, peak."""
    url = normalize_url(url)
    ds = open_store(url, ACTIVATIONS, verify=False)
    a = ds.attrs
    n_tokens = ds["n_tokens"].values
    split = np.array([str(v) for v in ds["split"].values], dtype=object)
    complete = ds["complete"].values.astype(bool)
    peak = ds["peak"].values
    _, t, layers, neurons = ds["activation"].shape
    size = store_bytes(url)
    total = int(n_tokens[complete].sum())
    where = np.unravel_index(int(np.argmax(peak)), peak.shape) if peak.size else (0, 0)
    return "\n".join([
        f"activations store {url} ({a['schema']} v{a['schema_version']}, config {a['config_hash']})",
        f"  model: {a['model_id']} ({a['architecture']}, {a['model_dtype']}, revision {a['model_revision']}); "
        f"hook: {a['hook_points'][0] if a['hook_points'] else '?'} …",
        f"  corpus: {a['corpus']}, seed {a['seed']}: {int((split == 'group').sum())} group + "
        f"{int((split == 'individual').sum())} individual samples; {a['n_skipped_short']} texts skipped "
        f"(< {a['min_tokens']} tokens)" + (f"; {a.get('n_packed_samples', 0)} samples packed from consecutive texts "
                                            f"to ≥ {a['pack_to_tokens']} tokens" if a.get("pack_to_tokens") else ""),
        f"  complete: {int(complete.sum())} of {len(complete)} samples, {total:,} tokens "
        f"(≤ {a['max_tokens']} per sample, token axis {t})",
        f"  neurons: {layers} layers × {neurons} = {layers * neurons:,}, stored as {ds['activation'].dtype}",
        f"  on disk: {size / 2**20:,.1f} MiB ({size / max(total, 1) / 1024:,.1f} KiB per token)",
        f"  peak |activation|: {float(peak[where]) if peak.size else 0.0:.4g} at sample {int(where[0])} "
        f"({split[where[0]] if split.size else '?'}), layer {int(where[1])}",
    ])
