"""Shared fixtures: tiny saved models of every registered family, and a real Dask LocalCluster."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """``pipeline/smoke.yaml`` run once per session with ``fnet run`` in a subprocess: ``(run folder, the
    CompletedProcess)``. Shared by the pipeline, API, notebook and docs tests: read it, never change it (copy it).
    ``FNET_TEST_SMOKE_RUN=FOLDER`` reuses a smoke run made before (while iterating on one test file)."""
    root = Path(__file__).parents[1]
    if os.environ.get("FNET_TEST_SMOKE_RUN"):
        out = Path(os.environ["FNET_TEST_SMOKE_RUN"])
        return out, subprocess.CompletedProcess([], 0, f"report: {out / 'report' / 'index.html'}\n", "")
    out = tmp_path_factory.mktemp("smoke-run")
    done = subprocess.run([sys.executable, "-m", "fnet_dist", "run", str(root / "pipeline" / "smoke.yaml"), "--out",
                           str(out)], cwd=root, capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out, done
