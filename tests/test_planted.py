"""``fnet plant``: planted activations stores that the stages accept as recorded ones, with a ground truth that the
decomposition recovers; bad input is one line with exit status 2."""
from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import xarray as xr

from fnet_dist.cli import main
from fnet_dist.core.config import DecomposeSection, MatchSection, PlantSection, RecordSection
from fnet_dist.core.errors import InputError
from fnet_dist.core.planted import PlantedModel
from fnet_dist.decompose import decompose
from fnet_dist.match.planted import planted_recovery, planted_truth
from fnet_dist.record.planted import plant_store, truth_url
from fnet_dist.store.activations import ActivationArray
from fnet_dist.store.integrity import store_problems
from storage_schemas import ACTIVATIONS

SECTION = PlantSection(shape="2x256", networks=3, network_share=0.05)
RECORD = RecordSection(group_samples=6, individual_samples=4, max_tokens=160, min_tokens=120)


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> str:
    return plant_store(str(tmp_path_factory.mktemp("plant") / "acts"), SECTION, RECORD, n_workers=1, progress=False)


def test_a_planted_store_is_a_whole_activations_store_of_the_recorded_layout(planted):
    assert store_problems(planted, ACTIVATIONS) == []
    ds = xr.open_zarr(planted, consolidated=False)
    lengths = ds["n_tokens"].values
    assert ((lengths >= RECORD.min_tokens) & (lengths <= RECORD.max_tokens)).all() and len(set(lengths)) > 1
    array = ActivationArray(10, int(lengths.max()), 2, 256, "float16")
    assert ds["activation"].encoding["chunks"] == array.chunks and ds["activation"].dtype == np.float16
    assert list(ds["split"].values) == ["group"] * 6 + ["individual"] * 4
    assert ds.attrs["synthetic"] is True and ds.attrs["model_id"] == "planted-2x256"
    # padding past a sample's tokens is never written (the recorded store's rule), its tokens are
    first = int(lengths[0])
    values = ds["activation"][0].values
    assert np.abs(values[:first]).max() > 0 and not values[first:].any()
    # massive channels reach the anatomy's rule at token 0; the first-token spike is there
    massive = np.array(ds.attrs["planted"]["massive_neurons"])
    assert np.allclose(values[0].reshape(-1)[massive], SECTION.massive_value)


def test_the_ground_truth_beside_the_store_is_the_one_in_its_attrs(planted):
    truth, attrs = planted_truth(planted)
    with open(truth_url(planted), "rb") as handle:
        beside = np.load(handle)["networks"]
    assert np.array_equal(truth, beside) and truth.shape == (3, 2, 256)
    assert (truth.sum(axis=(1, 2)) == round(0.05 * 512)).all() and not (truth.sum(axis=0) > 1).any()
    assert attrs["network_size"] == round(0.05 * 512)


def test_samples_are_drawn_from_the_seed_and_their_index_alone(planted, tmp_path, dask_cluster_address):
    """Written by Dask worker processes, one task per sample, the store holds the same values as written here."""
    other = plant_store(str(tmp_path / "acts"), SECTION, RECORD, scheduler=dask_cluster_address, progress=False)
    a, b = xr.open_zarr(planted, consolidated=False), xr.open_zarr(other, consolidated=False)
    assert np.array_equal(a["activation"].values, b["activation"].values)
    assert np.array_equal(a["peak"].values, b["peak"].values) and a.attrs["config_hash"] == b.attrs["config_hash"]
    model = PlantedModel.draw(2, 256, SECTION, RECORD.seed)
    n = int(a["n_tokens"].values[3])
    values, peak = model.sample(3, n, dtype="float16")
    assert np.array_equal(values, a["activation"][3, :n].values) and np.allclose(peak, a["peak"].values[3])


def test_a_rerun_resumes_and_rewrites_a_damaged_sample(tmp_path):
    url = plant_store(str(tmp_path / "acts"), SECTION, RECORD, n_workers=1, progress=False)
    chunk = os.path.join(url, "activation", "c", "2", "0", "0", "0")
    before = xr.open_zarr(url, consolidated=False)["activation"][2].values
    stamp = os.path.getmtime(os.path.join(url, "activation", "c", "1", "0", "0", "0"))
    os.remove(chunk)
    assert store_problems(url, ACTIVATIONS)  # a missing chunk of a complete sample is damage
    plant_store(url, SECTION, RECORD, n_workers=1, progress=False)
    assert store_problems(url, ACTIVATIONS) == []
    assert np.array_equal(xr.open_zarr(url, consolidated=False)["activation"][2].values, before)
    assert os.path.getmtime(os.path.join(url, "activation", "c", "1", "0", "0", "0")) == stamp  # whole: not rewritten


def test_decompose_recovers_the_planted_networks(planted, tmp_path):
    """Spatial ICA finds each planted network at both levels (IoU of the network with its best template / map)."""
    nets = decompose(planted, str(tmp_path / "nets"),
                     DecomposeSection(components=8, group_components=4, n_init=2, stability_runs=1, splits=0))
    recovery = planted_recovery(nets, MatchSection())
    assert len(recovery) == 3 and (recovery["size"] == 26).all()
    assert (recovery["group_iou"] > 0.7).all(), recovery
    assert (recovery["individual_iou"] > 0.7).all() and (recovery["individual_share"] == 1).all(), recovery


def test_a_recorded_store_has_no_ground_truth(planted, tmp_path):
    import zarr

    copy = tmp_path / "recorded"
    shutil.copytree(planted, copy)
    group = zarr.open_group(str(copy), mode="r+")
    group.attrs.update({"synthetic": False})
    with pytest.raises(InputError, match="is not a planted store"):
        planted_truth(str(copy))


@pytest.mark.parametrize("args, message", [
    (["--shape", "gpt-9"], r"unknown model shape 'gpt-9': expected one of gpt2, smollm2-135m"),
    (["--shape", "0x64"], r"shape '0x64': expected at least 1 layer"),
    (["--networks", "0"], r"--networks"),
    (["--network-share", "0.5"], r"--network-share"),
    (["--shape", "1x16", "--networks", "3"], r"3 networks of 8 neurons do not fit 16 neurons"),
    (["--shard", "2/2"], r"bad shard 2/2"),
    (["--min-tokens", "50", "--max-tokens", "20"], r"max_tokens 20 < min_tokens 50"),
])
def test_bad_input_is_one_line_with_exit_status_2(args, message, tmp_path, capsys):
    import re

    code = main(["plant", "--out", str(tmp_path / "acts"), "--n-workers", "1", "--no-progress", *args])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and re.search(message, err), err
    assert not (tmp_path / "acts").exists()  # refused before anything was written


def test_fnet_plant_writes_and_summarises(tmp_path, capsys):
    assert main(["plant", "--out", str(tmp_path / "acts"), "--shape", "2x64", "--networks", "2", "--group-samples", "2",
                 "--individual-samples", "1", "--max-tokens", "40", "--min-tokens", "20", "--n-workers", "1",
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "planted-2x64" in out and "3 of 3 samples" in out and "truth.npz" in out
    assert store_problems(str(tmp_path / "acts"), ACTIVATIONS) == []


def test_decompose_and_match_hold_a_sample_at_a_time_not_the_store(tmp_path):
    """A store larger than each Dask worker's memory limit (a worker past it is killed, failing the stage) and than
    what this process may add while the stages run: decompose and match go through it sample by sample (a full-array
    compute, a rechunk that materialises, a concatenation of all samples would not fit; measured: this process grows by
    ~0.29 GiB for a 0.75 GiB store in float32)."""
    import threading

    import psutil
    from distributed import LocalCluster

    from fnet_dist.match.matching import match_networks
    from fnet_dist.store.storage import store_bytes

    section = PlantSection(shape="4x4096", networks=4, network_share=0.004)
    record = RecordSection(group_samples=12, individual_samples=12, max_tokens=512, min_tokens=480)
    store = plant_store(str(tmp_path / "acts"), section, record, n_workers=1, progress=False)
    as_float32 = 2 * store_bytes(store)  # what the stages compute in: ~0.8 GB (the anatomy's median: 1,024 tokens)
    decomposition = DecomposeSection(components=8, group_components=4, n_init=1, stability_runs=1, splits=0)
    match = MatchSection(permutations=99, summary_permutations=19, sensitivity_thresholds=())
    this, peak, stop, start = psutil.Process(), [0], threading.Event(), 0

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], this.memory_info().rss - start)
            stop.wait(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      memory_limit=f"{as_float32 // 2**20 // 2 + 400}MiB") as cluster:
        # the same stages on a store of 2 + 2 short samples first: imports, compiled kernels, first-call caches
        small = plant_store(str(tmp_path / "small"), section, record.model_copy(update={
            "group_samples": 2, "individual_samples": 2, "min_tokens": 40, "max_tokens": 40}), n_workers=1, progress=False)
        warm = decompose(small, str(tmp_path / "warm"), decomposition, scheduler=cluster.scheduler_address)
        match_networks([warm], str(tmp_path / "warm-match"), match, scheduler=cluster.scheduler_address, anatomy=True)
        start = this.memory_info().rss
        sampler.start()
        try:
            nets = decompose(store, str(tmp_path / "nets"), decomposition, scheduler=cluster.scheduler_address)
            match_networks([nets], str(tmp_path / "match"), match, scheduler=cluster.scheduler_address, anatomy=True)
        finally:
            stop.set()
            sampler.join()
    # what it holds at most: one sample's template sources in float64 (the anatomy's least squares, a few copies) and
    # the 1,024-token subsample of the layer medians: ~0.3 GiB here, whatever the number of samples
    assert peak[0] < as_float32 / 2, f"this process grew by {peak[0] / 2**20:.0f} MiB for a {as_float32 / 2**20:.0f} MiB store"
    assert (planted_recovery(nets, match)["group_iou"] > 0.5).all()
