"""Store locations as URLs (local path, ``s3://``, ``gs://``, ``memory://``) through fsspec.

- ``normalize_url(url)``, ``filesystem(url)``, ``remove_store(url)``: from ``fnet_dist.store.locations`` (below
  ``fnet_dist.store.outputs``, which this module writes through).
- ``store_exists(url)``: is there a Zarr group at ``url``; ``store_bytes(url)``: what it holds on disk (0: none).
- ``open_store(url, schema, verify=True)``: open with xarray, validate against a ``storage_schemas`` schema and
  (``verify``) refuse a damaged store (``fnet_dist.store.integrity``: a missing or truncated chunk is one line
  naming it, never read as zeros).
- ``write_store(ds, url, schema)``: validate, then write a whole Dataset (through ``fnet_dist.store.outputs``: an
  existing store is refused unless ``overwrite``, anything else always; the old store is only replaced once
  the new one is complete).
- ``access_error(exc) -> StoreError | None``: missing or rejected object-storage credentials (or an
  unreachable endpoint) as one line; None for any other error.

S3-compatible endpoints and credentials come from the environment as fsspec reads them
(``AWS_ACCESS_KEY_ID`` …, ``FSSPEC_S3_ENDPOINT_URL`` for a non-AWS endpoint).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from storage_schemas import SchemaError, StoreSchema

from ..core.errors import StoreError
from .integrity import check_store, remember
from .locations import filesystem, normalize_url, remove_store
from .outputs import STORE_KINDS, replacing

if TYPE_CHECKING:
    import xarray as xr

__all__ = ["access_error", "filesystem", "normalize_url", "open_store", "remove_store", "store_bytes", "store_exists",
           "write_store"]


def store_exists(url: str) -> bool:
    """True when a Zarr v3 group (``zarr.json``) or v2 group lies at ``url``."""
    fs, path = filesystem(url)
    fs.invalidate_cache(path)  # Zarr writes through its own (async) instance: drop listings cached here
    return fs.exists(f"{path}/zarr.json") or fs.exists(f"{path}/.zgroup")


def store_bytes(url: str) -> int:
    """Bytes of everything under ``url``: 0 when nothing is there, or when the file system cannot tell (no ``du``);
    the disk check before a run then asks for the whole planned size, the safe side."""
    fs, path = filesystem(url)
    fs.invalidate_cache(path)
    try:
        return int(fs.du(path, total=True)) if fs.exists(path) else 0
    except (NotImplementedError, FileNotFoundError):
        return 0


def open_store(url: str, schema: StoreSchema, *, chunks: Any = None, verify: bool = True) -> xr.Dataset:
    """Open the store at ``url`` lazily (dask-backed) and check it against ``schema``; ``verify``: and refuse it
    when a chunk its complete samples (or levels) must hold is missing or truncated. A writer that repairs its
    own store (record, decompose resuming) opens it with ``verify=False``."""
    import xarray as xr

    url = normalize_url(url)
    if not store_exists(url):
        raise StoreError(f"no store at {url!r}: expected an {schema.name} store; check the path or run its stage first")
    ds = xr.open_zarr(url, consolidated=False, chunks=chunks if chunks is not None else {})
    try:
        schema.validate(ds, url)
    except SchemaError as exc:
        raise StoreError(str(exc)) from None
    remember(url, schema)
    if verify:
        check_store(url, schema)
    return ds


def write_store(ds: xr.Dataset, url: str, schema: StoreSchema, *, overwrite: bool = False, encoding: dict | None = None) -> str:
    """Validate ``ds`` against ``schema`` and write it as a whole Zarr v3 store at ``url``.

    Through ``fnet_dist.store.outputs.replacing``: anything at ``url`` that is not a store of this schema is refused,
    one that is only with ``overwrite``; the new store is written beside and swapped in when complete, so a
    failure never leaves the old store damaged. Returns the normalized URL.
    """
    url = normalize_url(url)
    ds = ds.assign_attrs(schema.stamp() | dict(ds.attrs))
    try:
        schema.validate(ds, url)
    except SchemaError as exc:
        raise StoreError(f"refusing to write an invalid store: {exc}") from None
    with replacing(url, STORE_KINDS[schema.name], overwrite=overwrite) as staged:
        # every chunk written, also one equal to the fill value: the integrity check requires the chunks of
        # complete samples, and cannot tell an unwritten chunk from one that was lost
        ds.to_zarr(staged, mode="w", consolidated=False, zarr_format=3, encoding=encoding or {}, write_empty_chunks=True)
    return url


_CREDENTIAL_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "ExpiredToken", "InvalidToken",
                     "403", "Forbidden", "AllAccessDisabled"}


def access_error(exc: BaseException) -> StoreError | None:
    """``exc`` as a one-line ``StoreError`` when object storage refused us or was unreachable, else None."""
    chain = []
    while exc is not None and len(chain) < 20:
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    names = {type(e).__name__ for e in chain}
    if names & {"NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError"}:
        return StoreError(
            "no object-storage credentials were found (botocore: Unable to locate credentials); set "
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), and FSSPEC_S3_ENDPOINT_URL for a non-AWS endpoint"
        )
    codes = {str(getattr(e, "response", {}).get("Error", {}).get("Code", "")) for e in chain if type(e).__name__ == "ClientError"}
    if codes & _CREDENTIAL_CODES or (codes and "PermissionError" in names):
        return StoreError(
            f"object storage refused the credentials ({', '.join(sorted(c for c in codes if c))}); check "
            f"AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) and that they may read and write the bucket"
        )
    if "EndpointConnectionError" in names:
        return StoreError(
            f"object storage could not be reached ({next(str(e) for e in chain if type(e).__name__ == 'EndpointConnectionError')}); "
            f"check the network and FSSPEC_S3_ENDPOINT_URL"
        )
    return None
