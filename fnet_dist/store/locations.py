"""Where stores and outputs live: local paths and URLs (``s3://``, ``gs://``, ``memory://``) through fsspec.

- ``normalize_url(url)``: absolute local paths, URLs unchanged.
- ``filesystem(url)``: the fsspec filesystem of ``url`` and the path inside it.
- ``remove_store(url)``: delete whatever is at ``url`` (nothing if there is none).

Below both ``fnet_dist.store.outputs`` (the output rule) and ``fnet_dist.store.storage`` (opening and writing
stores), which re-exports these names.
"""
from __future__ import annotations

import os

import fsspec

__all__ = ["filesystem", "normalize_url", "remove_store"]


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


def remove_store(url: str) -> None:
    """Delete the store at ``url`` (nothing if there is none)."""
    fs, path = filesystem(url)
    fs.invalidate_cache(path)
    if fs.exists(path):
        fs.rm(path, recursive=True)
