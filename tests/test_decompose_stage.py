"""The decomposition stage on a real Dask LocalCluster: planted stores in, networks stores out."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import storage_schemas
from fnet_dist.decompose import GroupCanICA, IndividualICA, decompose
from fnet_dist.decompose.ica import best_match_correlation
from fnet_dist.decompose.individual import derive_seeds
from fnet_dist.core.planted import best_match_iou, planted_networks
from fnet_dist.core.errors import InputError, StoreError
from fnet_dist.core.networks import binarize
from fnet_dist.store.storage import write_store
from fnet_dist.model.testing import activation_dataset

ROOT = Path(__file__).resolve().parents[1]
CONFIG = dict(components=8, group_components=4, n_init=3, seed=0, max_iter=300)


def _write_planted(folder: Path, n_samples: int = 12, n_tokens: int = 80, d_model: int = 400, short=(), seed: int = 0,
                   courses: str = "normal"):
    """A planted activations store: first half group split, second half individual; ``short`` = {index: n_tokens}."""
    data = planted_networks(n_samples=n_samples, n_tokens=n_tokens, d_model=d_model, n_networks=4, seed=seed,
                            courses=courses)
    acts = data.activations.copy()
    n_tok = np.full(n_samples, n_tokens)
    for index, n in dict(short).items():
        n_tok[index] = n
        acts[index, n:] = 0.0
    url = write_store(activation_dataset(acts.astype(np.float16), n_tok), str(folder / "acts.zarr"),
                      storage_schemas.ACTIVATIONS)
    return url, data, acts.astype(np.float16), n_tok


@pytest.fixture(scope="module")
def planted_store(tmp_path_factory):
    return _write_planted(tmp_path_factory.mktemp("planted"), short={8: 60, 10: 2})


@pytest.fixture(scope="module")
def networks(planted_store, dask_cluster_address, tmp_path_factory):
    url = planted_store[0]
    out = str(tmp_path_factory.mktemp("networks") / "net.zarr")
    decompose(url, out, scheduler=dask_cluster_address, **CONFIG)
    return out


def test_planted_networks_recovered_at_both_levels(planted_store, networks):
    _, data, _, n_tok = planted_store
    ds = xr.open_zarr(networks, consolidated=False)
    assert ds.attrs["complete"] and ds.attrs["group_complete"] and ds.attrs["corpus"] == "synthetic"
    assert ds.attrs["parameters"]["components"] == 8 and ds.attrs["parameters"]["blas_threads"] == 1
    assert set(ds.attrs["seconds"]) == {"group", "splits", "individual"} and min(ds.attrs["seconds"].values()) > 0
    assert best_match_iou(data.networks, binarize(ds["group_map"].values)).min() >= 0.9
    halves = ds["split_half"].values   # each split: disjoint halves of the 6 group samples, 3 and 3, seeded apart
    assert ds["split_done"].values.all() and halves.shape == (3, 6) and ((halves == 0).sum(axis=1) == 3).all()
    assert len({tuple(h) for h in halves}) > 1
    for split in range(3):             # each half's group level finds the planted networks too (3 samples each)
        for half in (0, 1):
            assert best_match_iou(data.networks, binarize(ds["split_map"].values[split, half])).min() >= 0.9, (split, half)
    assert list(ds["sample"].values) == list(range(6, 12)) and list(ds["group_sample"].values) == list(range(6))
    status = [str(s) for s in ds["individual_status"].values]
    assert status[5] == "ok" and status[2] == "ok" and status[4].startswith("skipped: 2 tokens")
    maps = ds["individual_map"].values
    for pos in (0, 1, 2, 3, 5):
        assert best_match_iou(data.networks, binarize(maps[pos])).min() >= 0.9, pos
    assert np.isnan(maps[4]).all() and ds["individual_n_components"].values[4] == 0
    sources = ds["individual_source"].values
    assert np.isnan(sources[2, :, 60:]).all() and np.isfinite(sources[2, :, :60]).all()
    assert ds["individual_done"].values.all() and (ds["individual_blas_threads"].values == 1).all()
    assert ds["individual_seed"].shape == (6, 2) and ds["group_kept"].values.sum() == 1
    planted_maps = best_match_iou(binarize(maps[0]), data.networks) >= 0.9
    assert np.all(ds["individual_stability"].values[0][planted_maps] > 0.99)
    assert ds["individual_component_change"].values[0][planted_maps].max() < 1e-4  # planted maps settle
    assert ds.attrs["ica"] == {"individual": {"method": "spatial", "algorithm": "picard", "fun": "logcosh"},
                               "group": {"method": "canica", "algorithm": "fastica", "fun": "cube"}}
    assert ds.attrs["parameters"]["group_fun"] == "cube" and ds.attrs["parameters"]["individual_method"] == "spatial"
    ran = ds["individual_n_components"].values > 0
    assert ds.attrs["individual_analysed"] == 5 == ran.sum()
    assert ds.attrs["individual_converged_share"] == pytest.approx(ds["individual_converged"].values[ran].mean(), abs=1e-4)
    assert ds.attrs["individual_converged_share"] == 1.0  # Picard-O converges on every analysed planted sample


@pytest.mark.filterwarnings("ignore:sample skipped")
def test_dask_path_equals_in_memory_path(planted_store, networks):
    _, _, acts, n_tok = planted_store
    ds = xr.open_zarr(networks, consolidated=False)
    for pos, sample in enumerate(range(6, 12)):
        seed = int(derive_seeds(0, 1, sample)[0])
        est = IndividualICA(8, max_iter=300, random_state=seed).fit(acts[sample], n_tokens=n_tok[sample])
        np.testing.assert_allclose(ds["individual_map"].values[pos], est.components_, atol=1e-4)
        assert ds["individual_n_iter"].values[pos] == est.n_iter_
    group = GroupCanICA(4, n_init=3, random_state=0).fit([a[:n] for a, n in zip(acts[:6], n_tok[:6])])
    got = ds["group_map"].values.reshape(4, -1)
    assert np.all(best_match_correlation(got, group.components_.reshape(4, -1)) >= 0.99)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_temporal_raw_on_dask_same_store_schema_and_config_rule(dask_cluster_address, tmp_path):
    """temporal_raw: the same Dask tasks and store schema; maps recover planted networks driven by super-Gaussian
    time courses and equal the in-memory estimator; asking the same store for the other method is another config."""
    url, data, acts, n_tok = _write_planted(tmp_path, n_samples=8, n_tokens=300, seed=2, courses="laplace")
    out = str(tmp_path / "net.zarr")
    config = {**CONFIG, "levels": "individual", "individual_method": "temporal_raw"}
    decompose(url, out, scheduler=dask_cluster_address, **config)
    ds = xr.open_zarr(out, consolidated=False)
    storage_schemas.NETWORKS.validate(ds, out)
    assert ds.attrs["ica"]["individual"]["method"] == "temporal_raw" and ds.attrs["complete"]
    for pos, sample in enumerate(range(4, 8)):
        assert best_match_iou(data.networks, binarize(ds["individual_map"].values[pos])).min() >= 0.9, pos
        est = IndividualICA(8, method="temporal_raw", max_iter=300, random_state=int(derive_seeds(0, 1, sample)[0]))
        est.fit(acts[sample], n_tokens=n_tok[sample])
        np.testing.assert_allclose(ds["individual_map"].values[pos], est.components_, atol=1e-4)
    with pytest.raises(StoreError, match="holds networks of another config"):
        decompose(url, out, scheduler=dask_cluster_address, **{**config, "individual_method": "spatial"})
    decompose(url, out, scheduler=dask_cluster_address, overwrite=True, **{**config, "individual_method": "spatial"})
    assert xr.open_zarr(out, consolidated=False).attrs["ica"]["individual"]["method"] == "spatial"


def test_rerun_resumes_only_unfinished_samples(planted_store, networks, dask_cluster_address, tmp_path):
    import shutil
    import zarr

    copy = str(tmp_path / "net.zarr")
    shutil.copytree(networks, copy)
    before = xr.open_zarr(copy, consolidated=False)["individual_map"].values
    group = zarr.open_group(copy, mode="r+")
    group["individual_done"][1] = False  # as if the run died before sample 7 was written
    group["individual_map"][1] = np.nan
    group["individual_status"][3] = "sentinel"  # a done sample must not be rewritten
    group.attrs.update(complete=False)
    decompose(planted_store[0], copy, scheduler=dask_cluster_address, **CONFIG)
    after = xr.open_zarr(copy, consolidated=False)
    np.testing.assert_array_equal(after["individual_map"].values, before)
    assert str(after["individual_status"].values[3]) == "sentinel" and after.attrs["complete"]


def test_other_config_is_refused_unless_overwrite(planted_store, dask_cluster_address, tmp_path):
    out = str(tmp_path / "net.zarr")
    decompose(planted_store[0], out, scheduler=dask_cluster_address, levels="group", **CONFIG)
    with pytest.raises(StoreError, match="holds networks of another config .* pass --overwrite"):
        decompose(planted_store[0], out, scheduler=dask_cluster_address, levels="group", **{**CONFIG, "seed": 1})
    decompose(planted_store[0], out, scheduler=dask_cluster_address, levels="group", overwrite=True, **{**CONFIG, "seed": 1})
    ds = xr.open_zarr(out, consolidated=False)
    assert ds.attrs["parameters"]["seed"] == 1 and ds.sizes["sample"] == 6 and not ds["individual_done"].values.any()


@pytest.mark.parametrize("change, error, match", [
    ({"activations": "missing"}, StoreError, "no store at .*missing.zarr.*expected an fnet-activations store"),
    ({"activations": "networks"}, StoreError, "is not an fnet-activations store"),
    ({"components": 800}, InputError, "--components 800 is larger than possible: the store has 800 neurons"),
    ({"group_components": 100}, InputError, "--group-components 100 is larger than possible"),
    ({"levels": "group,subject"}, InputError, r"levels 'group,subject' names an unknown level \['subject'\]: expected a comma-separated subset of group,individual"),
    ({"tol": 0}, InputError, "tol 0: input should be greater than 0"),
    ({"single_token_share": -0.5}, InputError, "single_token_share -0.5: input should be greater than 0"),
    ({"n_init": 0}, InputError, "n_init 0: input should be greater than or equal to 1"),
    ({"out": "same"}, InputError, "is the activations store itself"),
])
def test_bad_input_is_one_clear_error(planted_store, networks, tmp_path, change, error, match):
    change = dict(change)
    source = {"missing": str(tmp_path / "missing.zarr"), "networks": networks}.get(change.pop("activations", None),
                                                                                  planted_store[0])
    out = source if change.pop("out", None) else str(tmp_path / "out.zarr")
    with pytest.raises(error, match=match):
        decompose(source, out, **{**CONFIG, **change})
    assert not os.path.exists(tmp_path / "out.zarr")


def test_incomplete_activations_store_is_refused(tmp_path):
    data = planted_networks(n_samples=4, n_tokens=20, d_model=50)
    ds = activation_dataset(data.activations.astype(np.float16), np.full(4, 20))
    ds["complete"].values[2] = False
    url = write_store(ds, str(tmp_path / "acts.zarr"), storage_schemas.ACTIVATIONS)
    with pytest.raises(StoreError, match="1 samples of the activations store are not complete"):
        decompose(url, str(tmp_path / "net.zarr"), components=4, group_components=2)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_worker_killed_mid_run_completes_with_the_same_result(dask_cluster_address, tmp_path):
    from distributed import Client

    url, _, acts, n_tok = _write_planted(tmp_path, n_samples=24, n_tokens=150, d_model=1000, seed=5)
    out = str(tmp_path / "net.zarr")
    errors: list[BaseException] = []
    run = threading.Thread(target=lambda: _capture(errors, decompose, url, out, scheduler=dask_cluster_address,
                                                   levels="individual", **CONFIG))
    with Client(dask_cluster_address) as client:
        pids = client.run(os.getpid)
        run.start()
        victim = _first_busy_worker(client, run)
        if victim:
            os.kill(pids[victim], signal.SIGKILL)
        run.join(timeout=240)
    assert victim, "no worker was seen processing a task"
    assert not errors and not run.is_alive()
    ds = xr.open_zarr(out, consolidated=False)
    assert ds["individual_done"].values.all()
    for pos, sample in enumerate(range(12, 24)):
        est = IndividualICA(8, max_iter=300, random_state=int(derive_seeds(0, 1, sample)[0])).fit(acts[sample])
        np.testing.assert_allclose(ds["individual_map"].values[pos], est.components_, atol=1e-4)


def _capture(errors, fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except BaseException as exc:  # noqa: BLE001 - re-raised by the test's assertion
        errors.append(exc)


def _first_busy_worker(client, thread, timeout: float = 60.0):
    deadline = time.time() + timeout
    while time.time() < deadline and thread.is_alive():
        busy = [addr for addr, keys in client.processing().items()
                if any("individual_task" in str(k) for k in keys)]
        if busy:
            return busy[0]
        time.sleep(0.02)
    return None


def test_cli_decompose(planted_store, dask_cluster_address, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = str(tmp_path / "cli.zarr")
    cmd = [sys.executable, "-m", "fnet_dist", "decompose", planted_store[0], "--out", out, "--components", "6",
           "--group-components", "4", "--n-init", "2", "--individual-method", "temporal_raw", "--algorithm", "fastica", "--fun", "logcosh",
           "--group-fun", "logcosh", "--scheduler", dask_cluster_address, "--levels", "group,individual"]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "group: 4 templates" in done.stdout and "individual: 5/6 samples ok" in done.stdout
    ds = xr.open_zarr(out, consolidated=False)
    assert ds.attrs["complete"] and ds.attrs["ica"] == {
        "individual": {"method": "temporal_raw", "algorithm": "fastica", "fun": "logcosh"},
        "group": {"method": "canica", "algorithm": "fastica", "fun": "logcosh"}}
    bad = subprocess.run(cmd[:-2] + ["--levels", "everything"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.startswith(
        "error: levels 'everything' names an unknown level ['everything']: expected a comma-separated subset of group,individual")
    assert len(bad.stderr.strip().splitlines()) == 1


def test_splits_need_two_group_samples(tmp_path):
    url = _write_planted(tmp_path, n_samples=2, n_tokens=30, d_model=60)[0]
    with pytest.raises(InputError, match="decompose.splits 3 halves the group samples, but the store has 1; .* set splits to 0"):
        decompose(url, str(tmp_path / "net.zarr"), components=4, group_components=2, splits=3)
    assert not os.path.exists(tmp_path / "net.zarr")
    decompose(url, str(tmp_path / "net.zarr"), components=4, group_components=2, splits=0, n_init=1)
    assert xr.open_zarr(str(tmp_path / "net.zarr"), consolidated=False).sizes["split"] == 0
