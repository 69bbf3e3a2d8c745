"""Shared fixtures: tiny saved models of every registered family, and a real Dask LocalCluster."""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_model_factory(tmp_path_factory):
    """``factory(family) -> folder`` of a saved tiny random model (built once per session)."""
    from fnet_dist.model.testing import build_tiny_model

    cache: dict[str, str] = {}

    def factory(family: str) -> str:
        if family not in cache:
            cache[family] = str(build_tiny_model(family, tmp_path_factory.mktemp(f"tiny-{family}")))
        return cache[family]

    return factory


@pytest.fixture(scope="session")
def tiny_llama(tiny_model_factory) -> str:
    return tiny_model_factory("llama")


@pytest.fixture(scope="session")
def dask_cluster_address():
    """Address of a real LocalCluster with 2 worker processes (one thread each) for the whole session."""
    from distributed import LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                           memory_limit="4GiB")
    try:
        yield cluster.scheduler_address
    finally:
        cluster.close()
