"""Where stores and outputs live: local paths and URLs (``s3://``, ``gs://``, ``memory://``) through fsspec.

- ``normalize_url(url)``: absolute local paths, URLs unchanged.
- ``filesystem(url)``: the fsspec filesystem of ``url`` and the path inside it. A protocol whose package is not
  installed (``gs://`` without gcsfs) is one line (exit 1); ``gs://`` without any Google credentials is one line
  at once (exit 2) instead of a minute of retries against the metadata server.
- ``remove_store(url)``: delete whatever is at ``url`` (nothing if there is none).

Below both ``fnet_dist.store.outputs`` (the output rule) and ``fnet_dist.store.storage`` (opening and writing
stores), which re-exports these names.
"""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import fsspec

from ..core.errors import EnvironmentFailure, StoreError

__all__ = ["filesystem", "normalize_url", "remove_store"]

GCS_PROTOCOLS = ("gs", "gcs")


def normalize_url(url: str | os.PathLike) -> str:
    """Return ``url`` with local paths made absolute (``~`` expanded); remote URLs unchanged."""
    text = os.fspath(url)
    if "://" in text and not text.startswith("file://"):
        return text.rstrip("/")
    if text.startswith("file://"):
        text = text[len("file://"):]
    return os.path.abspath(os.path.expanduser(text))


def _gcs_credentials() -> str | None:
    """Where Google credentials would come from, without asking the network: a token given to fsspec, a key file,
    gcloud's application-default login, or a Google Compute Engine / GKE machine (its metadata server)."""
    options = fsspec.config.conf.get("gcs", {}) | fsspec.config.conf.get("gs", {})
    if options.get("token") or os.environ.get("FSSPEC_GCS_TOKEN") or os.environ.get("FSSPEC_GS_TOKEN"):
        return "an fsspec token"
    key = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
    if key and Path(key).is_file():
        return "GOOGLE_APPLICATION_CREDENTIALS"
    gcloud = Path(os.environ.get("CLOUDSDK_CONFIG") or Path.home() / ".config" / "gcloud")
    if (gcloud / "application_default_credentials.json").is_file():
        return "gcloud application-default credentials"
    if os.environ.get("GCE_METADATA_HOST") or os.environ.get("GCE_METADATA_IP"):
        return "the metadata server"
    try:
        if "Google" in Path("/sys/class/dmi/id/product_name").read_text():
            return "the metadata server"
    except OSError:
        pass
    return None


@lru_cache(maxsize=8)
def _check_protocol(protocol: str, bucket: str) -> None:
    """Raise once per bucket when ``protocol`` cannot be used (package missing, no credentials)."""
    url = f"{protocol}://{bucket}"
    try:
        fsspec.get_filesystem_class(protocol)
    except ImportError as exc:
        package = {"gs": "gcsfs", "gcs": "gcsfs", "s3": "s3fs", "az": "adlfs", "abfs": "adlfs"}.get(protocol, "")
        hint = f"pip install {package}" + (" (or fnet-dist[gcs])" if package == "gcsfs" else "") if package else str(exc)
        raise EnvironmentFailure(f"{url!r}: {protocol}:// needs a package that is not installed: {hint}") from None
    except ValueError:
        raise StoreError(f"{url!r}: unknown storage protocol {protocol!r}; use a local path, s3://, gs:// or "
                         f"memory://") from None
    if protocol in GCS_PROTOCOLS and _gcs_credentials() is None:
        raise StoreError(f"no Google Cloud Storage credentials for {url!r}: set GOOGLE_APPLICATION_CREDENTIALS to a "
                         f"service-account key file, run `gcloud auth application-default login`, or set "
                         f"FSSPEC_GCS_TOKEN=anon for a public bucket")


def filesystem(url: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec filesystem of ``url`` and the path inside it (see the module docstring for the checks)."""
    url = normalize_url(url)
    if "://" in url:
        protocol, _, rest = url.partition("://")
        _check_protocol(protocol, rest.split("/", 1)[0])
    return fsspec.core.url_to_fs(url)


def remove_store(url: str) -> None:
    """Delete the store at ``url`` (nothing if there is none)."""
    fs, path = filesystem(url)
    fs.invalidate_cache(path)
    if fs.exists(path):
        fs.rm(path, recursive=True)
