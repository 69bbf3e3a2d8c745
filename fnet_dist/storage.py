"""Store locations as URLs (local path, ``s3://``, ``gs://``, ``memory://``) through fsspec.

- ``normalize_url(url)``: absolute local paths, URLs unchanged.
- ``store_exists(url)``: is there a Zarr group at ``url``.
- ``open_store(url, schema)``: open with xarray and validate against a ``storage_schemas`` schema.
- ``write_store(ds, url, schema)``: validate, then write a whole Dataset (an existing store is refused
  unless ``overwrite``; the old store is only removed once the new one is valid).
- ``remove_store(url)``, ``filesystem(url)``.

S3-compatible endpoints and credentials come from the environment as fsspec reads them
(``AWS_ACCESS_KEY_ID`` …, ``FSSPEC_S3_ENDPOINT_URL`` for a non-AWS endpoint).
"""
from __future__ import annotations

import os
from typing import Any

import fsspec
import xarray as xr

from storage_schemas import SchemaError, StoreSchema

from .errors import StoreError

__all__ = ["filesystem", "normalize_url", "open_store", "remove_store", "store_exists", "write_store"]


def normalize_url(url: str | os.PathLike) -> str:
    """Return ``url`` with local paths made absolute (``~`` expanded); remote URLs unchanged."""
    text = os.fspath(url)
    if "://" in text and not text.startswith("file://"):
        return text.rstrip("/")
    if text.startswith("file://"):
        text = text[len("file://"):]
    return os.path.abspath(os.path.expanduser(text))


def filesystem(url: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec filesystem of ``url`` and the path inside it."""
    return fsspec.core.url_to_fs(normalize_url(url))


def store_exists(url: str) -> bool:
    """True when a Zarr v3 group (``zarr.json``) or v2 group lies at ``url``."""
    fs, path = filesystem(url)
    fs.invalidate_cache(path)  # Zarr writes through its own (async) instance: drop listings cached here
    return fs.exists(f"{path}/zarr.json") or fs.exists(f"{path}/.zgroup")


def open_store(url: str, schema: StoreSchema, *, chunks: Any = None) -> xr.Dataset:
    """Open the store at ``url`` lazily (dask-backed) and check it against ``schema``."""
    url = normalize_url(url)
    if not store_exists(url):
        raise StoreError(f"no store at {url!r}: expected an {schema.name} store; check the path or run its stage first")
    ds = xr.open_zarr(url, consolidated=False, chunks=chunks if chunks is not None else {})
    try:
        schema.validate(ds, url)
    except SchemaError as exc:
        raise StoreError(str(exc)) from None
    return ds


def remove_store(url: str) -> None:
    """Delete the store at ``url`` (nothing if there is none)."""
    fs, path = filesystem(url)
    if fs.exists(path):
        fs.rm(path, recursive=True)


def write_store(ds: xr.Dataset, url: str, schema: StoreSchema, *, overwrite: bool = False, encoding: dict | None = None) -> str:
    """Validate ``ds`` against ``schema`` and write it as a new Zarr v3 store at ``url``.

    An existing store is refused unless ``overwrite``; then the new store is written beside it first
    and swapped in only when complete, so a failure never leaves the old store damaged.
    Returns the normalized URL.
    """
    url = normalize_url(url)
    ds = ds.assign_attrs(schema.stamp() | dict(ds.attrs))
    try:
        schema.validate(ds, url)
    except SchemaError as exc:
        raise StoreError(f"refusing to write an invalid store: {exc}") from None
    exists = store_exists(url)
    if exists and not overwrite:
        raise StoreError(f"a store already exists at {url!r}; pass --overwrite to replace it, or choose another --out")
    target = f"{url}.partial" if exists else url
    remove_store(target)
    ds.to_zarr(target, mode="w", consolidated=False, zarr_format=3, encoding=encoding or {})
    if exists:
        fs, path = filesystem(url)
        _, tmp = filesystem(target)
        fs.rm(path, recursive=True)
        _move_tree(fs, tmp, path)
    return url


def _move_tree(fs: fsspec.AbstractFileSystem, src: str, dst: str) -> None:
    """Move folder ``src`` to ``dst``: a rename on a local disk; on object storage (no rename, no real
    folders) a copy of each object, then the source deleted."""
    fs.invalidate_cache()
    if "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)):
        fs.mv(src, dst, recursive=True)
        return
    files = fs.find(src)
    fs.copy(files, [dst + name[len(src):] for name in files])
    fs.rm(src, recursive=True)
