"""Damaged stores are refused, never read as zeros: chunks of each store kind deleted and truncated.

An activations store recorded from a tiny model and a networks store with planted networks (and one written by
decompose) each lose a chunk or get one cut short: every reader refuses them in one line naming the variable,
the chunk (and its sample) and how to repair, the commands exit 2 before any work, and the writers repair
them: ``fnet record`` records the damaged sample again, ``fnet decompose`` redoes the damaged sample and level,
each giving back the store it had before the damage.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from networks_fixtures import networks_dataset, planted_networks, write_networks

from fnet_dist import cli
from fnet_dist.core.config import PipelineConfig
from fnet_dist.core.errors import StoreError
from fnet_dist.core.layout import RunLayout
from fnet_dist.decompose import decompose
from fnet_dist.model.loading import load_model
from fnet_dist.model.testing import activation_dataset
from fnet_dist.record.recording import record_activations
from fnet_dist.stages import STAGES
from fnet_dist.store.integrity import damage_error, find_damage
from fnet_dist.store.storage import open_store, write_store
from storage_schemas import ACTIVATIONS, NETWORKS

RECORD = {"group_samples": 3, "individual_samples": 3, "max_tokens": 40, "min_tokens": 4, "seed": 0, "batch_size": 2,
          "progress": False}
TEXTS = ["The council met on Tuesday to discuss the new bridge over the river and its costs.", "Rain fell on the town.",
         "Markets rose sharply after the central bank held interest rates steady for another quarter of the year.",
         "Voters queued for hours.", "Bells rang at noon today.", "Snow closed the roads.",
         "Prices of wheat and corn climbed for a third week in a row, traders said on Friday morning.",
         "An old lighthouse was restored by volunteers over two summers."]


def _damage(store: str, key: str, how: str) -> None:
    path = Path(store, key)
    assert path.is_file(), f"{key} is not a chunk of {store}"
    if how == "deleted":
        path.unlink()
    else:
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])


def _errors(err: str) -> list[str]:
    """The ``error:`` lines of a command's stderr (a progress bar may share it); never a traceback."""
    assert "Traceback" not in err, err
    return [line for line in err.splitlines() if line.startswith("error:")]


def _copy(url: str, folder: Path) -> str:
    return str(shutil.copytree(url, folder / Path(url).name))


@pytest.fixture(scope="module")
def recording(tiny_llama, tmp_path_factory) -> tuple:
    """(the tiny model loaded, its corpus file, the store recorded from them)."""
    folder = tmp_path_factory.mktemp("recording")
    corpus = folder / "news.txt"
    corpus.write_text("\n".join(TEXTS) + "\n")
    llama = load_model(tiny_llama)
    return llama, str(corpus), record_activations(llama, str(corpus), str(folder / "news.zarr"), **RECORD)


@pytest.fixture(scope="module")
def recorded(recording) -> str:
    return recording[2]


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> str:
    truth = planted_networks(seed=0)
    return write_networks(networks_dataset(truth.group_map, truth.individual_map, corpus="news"),
                          tmp_path_factory.mktemp("nets") / "news.zarr")


def test_a_sound_store_has_no_damage_though_chunks_past_each_sample_are_never_written(recorded, planted):
    ds = xr.open_zarr(recorded, consolidated=False)
    short = int(np.argmin(ds["n_tokens"].values))
    assert int(ds["n_tokens"][short]) <= 32 and not Path(recorded, f"activation/c/{short}/1/0/0").exists()
    assert find_damage(recorded, ACTIVATIONS) == [] and find_damage(planted, NETWORKS) == []
    assert find_damage(recorded, ACTIVATIONS, decode=True) == []


@pytest.mark.parametrize("how", ["deleted", "truncated"])
@pytest.mark.parametrize("variable", ["activation", "peak"])
def test_a_damaged_activations_chunk_is_one_line_and_record_records_the_sample_again(
        how, variable, recording, tmp_path, capsys):
    llama, corpus, recorded = recording
    url = _copy(recorded, tmp_path)
    before = xr.open_zarr(recorded, consolidated=False).load()
    key = "activation/c/2/0/0/0" if variable == "activation" else "peak/c/2/0"
    _damage(url, key, how)
    problem = "missing" if how == "deleted" else "truncated"  # both arrays are uncompressed: a chunk's size is known
    with pytest.raises(StoreError, match=rf"store '{url}' is damaged: chunk '{key}' of {variable} \(sample 2"
                                         rf".*\) is {problem}.* rerun the record stage"):
        open_store(url, ACTIVATIONS)
    assert cli.main(["decompose", url, "--out", str(tmp_path / "nets.zarr")]) == 2
    (line,) = _errors(capsys.readouterr().err)
    assert key in line and not (tmp_path / "nets.zarr").exists()
    record_activations(llama, corpus, url, **RECORD)  # the same arguments: sample 2 is recorded again
    after = open_store(url, ACTIVATIONS).load()
    xr.testing.assert_identical(after, before)


@pytest.mark.parametrize("key, sample, how", [("group_map/c/0/0/0", None, "deleted"),
                                              ("individual_map/c/2/0/0/0", 2, "deleted"),
                                              ("individual_source/c/0/0/0", "0, 1, 2, 3, 4, 5", "deleted")])
def test_a_damaged_networks_chunk_is_refused_by_every_reader(key, sample, how, planted, tmp_path, capsys):
    url = _copy(planted, tmp_path)
    _damage(url, key, how)
    which = rf" \(samples {sample}\)" if sample is not None else ""  # a chunk of all samples names them all
    with pytest.raises(StoreError, match=rf"chunk '{key}' .* is missing{which}; it is not read as zeros: rerun the "
                                         rf"decompose stage"):
        open_store(url, NETWORKS)
    assert cli.main(["match", url, "--out", str(tmp_path / "m"), "--no-anatomy"]) == 2
    (line,) = _errors(capsys.readouterr().err)
    assert key in line and not (tmp_path / "m").exists()


def test_a_truncated_compressed_chunk_is_named_when_decoding_fails(planted, tmp_path, dask_cluster_address, capsys):
    url = _copy(planted, tmp_path)
    _damage(url, "individual_map/c/3/0/0/0", "truncated")  # zstd: the size alone cannot tell
    code = cli.main(["match", url, "--out", str(tmp_path / "m"), "--no-anatomy", "--scheduler", dask_cluster_address])
    (line,) = _errors(capsys.readouterr().err)
    assert code == 2 and f"store '{url}' is damaged: chunk 'individual_map/c/3/0/0/0' of individual_map (sample 3) " \
                         f"is unreadable" in line
    assert "rerun the decompose stage" in line and not (tmp_path / "m").exists()
    assert damage_error(ValueError("an unrelated mistake")) is None


def test_decompose_redoes_the_damaged_samples_and_level_of_its_own_store(dask_cluster_address, tmp_path):
    from fnet_dist.core.planted import planted_networks as planted_activations

    data = planted_activations(n_samples=8, n_tokens=60, d_model=120, n_networks=3, seed=3)
    acts = write_store(activation_dataset(data.activations.astype(np.float16), np.full(8, 60)),
                       str(tmp_path / "acts.zarr"), ACTIVATIONS)
    args = {"components": 4, "group_components": 3, "n_init": 2, "seed": 0, "max_iter": 200,
            "scheduler": dask_cluster_address}
    out = decompose(acts, str(tmp_path / "nets.zarr"), **args)
    before = xr.open_zarr(out, consolidated=False).load()
    _damage(out, "group_map/c/0/0/0", "deleted")
    _damage(out, "individual_map/c/1/0/0/0", "deleted")
    with pytest.raises(StoreError, match=r"chunk 'group_map/c/0/0/0' .* missing; 1 more damaged chunk \(samples 1\)"):
        open_store(out, NETWORKS)
    decompose(acts, out, **args)  # the same arguments: the store reads complete, yet sample 1 and the group are redone
    after = open_store(out, NETWORKS).load()
    for name in ("group_map", "individual_map", "individual_source", "individual_done", "individual_status"):
        xr.testing.assert_equal(after[name], before[name])
    assert after.attrs["complete"] and after.attrs["group_complete"]


def test_fnet_run_does_not_trust_a_stage_whose_store_was_damaged(recorded, tmp_path):
    config = PipelineConfig(out=str(tmp_path / "run"), corpora={"news": "offline:news"})
    layout = RunLayout.of(config)
    store = Path(layout.activations("news"))
    store.parent.mkdir(parents=True)
    shutil.copytree(recorded, store)
    assert STAGES["record"].unfinished(config, layout) == []
    _damage(str(store), "activation/c/0/0/0/0", "deleted")
    (problem,) = STAGES["record"].unfinished(config, layout)
    assert "chunk 'activation/c/0/0/0/0' of activation (sample 0, token 0-" in problem and "is missing" in problem
    assert STAGES["decompose"].unfinished(config, layout) == [f"{layout.networks('news')}: no store there"]
