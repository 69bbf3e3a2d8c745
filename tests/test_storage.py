"""Stores at URLs: a real S3-protocol server on loopback (moto), ``memory://``, and concurrent region writers."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from fnet_dist.core.errors import StoreError
from fnet_dist.store.storage import open_store, remove_store, store_exists, write_store
from fnet_dist.model.testing import activation_dataset
from s3_server import s3_endpoint  # noqa: F401  (the fixture)
from storage_schemas import ACTIVATIONS, NETWORKS

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent


def _dataset(seed: int = 0, n_samples: int = 6) -> xr.Dataset:
    """A small activations-schema Dataset: (n_samples, 8 tokens, 2 layers, 4 neurons), float16, seeded."""
    rng = np.random.default_rng(seed)
    n_tokens = rng.integers(3, 9, size=n_samples)
    activation = rng.standard_normal((n_samples, 8, 2, 4)).astype(np.float16)
    activation[np.arange(8)[None, :] >= n_tokens[:, None]] = 0
    return activation_dataset(activation, n_tokens, seed=seed)


def _assert_same_store(found: xr.Dataset, expected: xr.Dataset) -> None:
    """Equal variables, coords and attrs (the schema stamp aside), value by value."""
    xr.testing.assert_equal(found.load(), expected.load())
    stamp = set(ACTIVATIONS.stamp())
    assert {k: v for k, v in found.attrs.items() if k not in stamp} == json.loads(json.dumps(expected.attrs))


def _bucket_keys(endpoint, prefix: str) -> list[str]:
    """Object keys under ``prefix`` as the server lists them, through a client of its own (boto3)."""
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint.endpoint_url)
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=endpoint.bucket, Prefix=prefix)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


def test_s3_round_trip(s3_endpoint):
    url = s3_endpoint.url("runs/news.zarr")
    ds = _dataset()
    assert not store_exists(url)
    assert write_store(ds, url, ACTIVATIONS) == url
    keys = _bucket_keys(s3_endpoint, "runs/news.zarr/")
    assert "runs/news.zarr/zarr.json" in keys and any(k.startswith("runs/news.zarr/activation/") for k in keys)
    assert store_exists(url)
    opened = open_store(url, ACTIVATIONS)
    assert opened.attrs["schema"] == ACTIVATIONS.name and opened["activation"].dtype == np.float16
    _assert_same_store(opened, ds)


def test_s3_refuses_to_overwrite_and_replaces_only_when_asked(s3_endpoint):
    url = s3_endpoint.url("news.zarr")
    first, second = _dataset(seed=1), _dataset(seed=2)
    write_store(first, url, ACTIVATIONS)
    with pytest.raises(StoreError, match=r"--out 's3://fnet-test/news.zarr' already holds an activations store \(fnet record\); pass --overwrite"):
        write_store(second, url, ACTIVATIONS)
    _assert_same_store(open_store(url, ACTIVATIONS), first)
    write_store(second, url, ACTIVATIONS, overwrite=True)
    _assert_same_store(open_store(url, ACTIVATIONS), second)
    assert not any(".fnet-" in k for k in _bucket_keys(s3_endpoint, ""))  # no staging copy left behind


def test_s3_missing_and_foreign_stores_are_clear_errors(s3_endpoint):
    missing = s3_endpoint.url("nothing.zarr")
    with pytest.raises(StoreError, match=r"no store at 's3://fnet-test/nothing.zarr': expected an fnet-activations store"):
        open_store(missing, ACTIVATIONS)
    url = s3_endpoint.url("acts.zarr")
    write_store(_dataset(), url, ACTIVATIONS)
    with pytest.raises(StoreError, match=r"s3://fnet-test/acts.zarr is not an fnet-networks store"):
        open_store(url, NETWORKS)


def test_s3_invalid_dataset_is_refused_before_anything_is_written(s3_endpoint):
    url = s3_endpoint.url("bad.zarr")
    with pytest.raises(StoreError, match=r"refusing to write an invalid store: .*variable 'n_tokens' is missing"):
        write_store(_dataset().drop_vars("n_tokens"), url, ACTIVATIONS)
    assert _bucket_keys(s3_endpoint, "bad.zarr") == []


def test_memory_url_round_trip_refusal_and_removal():
    url = "memory://fnet-test/storage/acts.zarr"
    remove_store(url)
    ds = _dataset(seed=3)
    try:
        write_store(ds, url, ACTIVATIONS)
        _assert_same_store(open_store(url, ACTIVATIONS), ds)
        with pytest.raises(StoreError, match=r"--out 'memory://fnet-test/storage/acts.zarr' already holds an activations store"):
            write_store(_dataset(seed=4), url, ACTIVATIONS)
        _assert_same_store(open_store(url, ACTIVATIONS), ds)
    finally:
        remove_store(url)
    assert not store_exists(url)


# --- concurrent writers of disjoint sample regions (the recording stage's --shard pattern) ---------------

def _region_vars(ds: xr.Dataset) -> xr.Dataset:
    """Only the variables indexed by sample: the ones a region write may touch."""
    return ds.drop_vars([name for name in ds.variables if "sample" not in ds[name].dims])


def create_template(ds: xr.Dataset, url: str) -> None:
    """Write the store's metadata, one chunk per sample: the small text variables now, no activations."""
    template = ds.assign_attrs(ACTIVATIONS.stamp() | dict(ds.attrs)).chunk({"sample": 1})
    template = template.assign({name: template[name].load() for name in ("text", "split")})
    template.to_zarr(url, mode="w", compute=False, consolidated=False, zarr_format=3)


def write_shard(url: str, shard: int, n_shards: int, seed: int, barrier: str) -> None:
    """Shard ``shard`` of ``n_shards``: wait at the barrier, then write samples ``i % n_shards == shard``."""
    ds = _region_vars(_dataset(seed=seed))
    Path(barrier, f"ready-{shard}").touch()
    deadline = time.monotonic() + 60
    while len(list(Path(barrier).glob("ready-*"))) < n_shards:
        if time.monotonic() > deadline:
            raise TimeoutError(f"shard {shard}: the other writers did not start within 60 s")
        time.sleep(0.05)
    for i in range(shard, ds.sizes["sample"], n_shards):
        ds.isel(sample=slice(i, i + 1)).to_zarr(url, region={"sample": slice(i, i + 1)}, consolidated=False)


def test_two_processes_write_disjoint_regions_of_one_s3_store(s3_endpoint, tmp_path):
    ds = _dataset(seed=5)
    sharded, single = s3_endpoint.url("sharded.zarr"), s3_endpoint.url("single.zarr")
    create_template(ds, sharded)
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import test_storage as t; "
            "t.write_shard(sys.argv[2], int(sys.argv[3]), 2, 5, sys.argv[4])")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    writers = [subprocess.Popen([sys.executable, "-c", code, str(TESTS), sharded, str(shard), str(tmp_path)],
                                cwd=REPO, env=env, stderr=subprocess.PIPE, text=True) for shard in (0, 1)]
    for writer in writers:
        try:
            _, err = writer.communicate(timeout=120)
        finally:
            writer.kill()
        assert writer.returncode == 0, err
    write_store(ds, single, ACTIVATIONS)
    _assert_same_store(open_store(sharded, ACTIVATIONS), ds)
    xr.testing.assert_identical(open_store(sharded, ACTIVATIONS).load(), open_store(single, ACTIVATIONS).load())
    chunks = [k for k in _bucket_keys(s3_endpoint, "sharded.zarr/activation/c/")]
    assert len(chunks) == ds.sizes["sample"], chunks
