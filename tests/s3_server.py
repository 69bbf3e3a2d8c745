"""A real S3-protocol server on loopback for tests: moto's server mode in a thread of the test process.

- ``s3_server()``: a context manager that starts ``moto.server.ThreadedMotoServer`` on 127.0.0.1 at a free
  port, empties moto's state (shared by all servers of one process) and always stops it; yields the URL.
- ``s3_endpoint``: a pytest fixture (import it into a test module) that points fsspec / s3fs / boto at a
  fresh server through the environment (inherited by subprocesses) and ``fsspec.config.conf`` (read once at
  import, so the current process needs it set directly), creates the bucket ``fnet-test`` and yields
  ``S3Endpoint(url, bucket)``.
- ``S3_ENV``: the credentials every process needs (fake ones: moto accepts any).
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import pytest

__all__ = ["S3Endpoint", "S3_ENV", "s3_endpoint", "s3_server"]

S3_ENV = {
    "AWS_ACCESS_KEY_ID": "fnet-test-key",
    "AWS_SECRET_ACCESS_KEY": "fnet-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}
BUCKET = "fnet-test"


@dataclass(frozen=True)
class S3Endpoint:
    """A running S3 server: ``endpoint_url`` (http://127.0.0.1:PORT) and a bucket that exists on it."""

    endpoint_url: str
    bucket: str

    def url(self, key: str) -> str:
        """``s3://<bucket>/<key>``."""
        return f"s3://{self.bucket}/{key}"


@contextmanager
def s3_server() -> Iterator[str]:
    """Run a moto S3 server on 127.0.0.1 (a free port chosen by the OS) for the duration of the block."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        assert host == "127.0.0.1", host
        endpoint = f"http://{host}:{port}"
        _reset(endpoint)
        yield endpoint
    finally:
        server.stop()


def _reset(endpoint: str) -> None:
    """Empty moto's in-process state (shared by every server of this process) so each server starts bare."""
    import urllib.request

    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"), timeout=10).close()


@pytest.fixture
def s3_endpoint(monkeypatch) -> Iterator[S3Endpoint]:
    """A fresh S3 server with bucket ``fnet-test``; this process and its children are pointed at it."""
    import fsspec.config
    import s3fs

    with s3_server() as endpoint:
        for key, value in {**S3_ENV, "FSSPEC_S3_ENDPOINT_URL": endpoint}.items():
            monkeypatch.setenv(key, value)
        monkeypatch.setitem(fsspec.config.conf, "s3", {"endpoint_url": endpoint})
        s3fs.S3FileSystem.clear_instance_cache()
        fs = s3fs.S3FileSystem(endpoint_url=endpoint)
        fs.mkdir(BUCKET)
        try:
            yield S3Endpoint(endpoint, BUCKET)
        finally:
            s3fs.S3FileSystem.clear_instance_cache()
