"""Model placement: dtype auto, and a model split by device_map (CPU + disk offload) records and edits as unsplit."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from fnet_dist.model.architectures import resolve_architecture
from fnet_dist.model.bake import bake
from fnet_dist.model.edit import Edit, edited, model_shape
from fnet_dist.core.errors import InputError
from fnet_dist.model.masks import NeuronMask
from fnet_dist.model.loading import load_model, parse_max_memory
from fnet_dist.record.recording import _batches, record_activations

SPLIT = {"model.embed_tokens": "cpu", "model.rotary_emb": "cpu", "model.layers.0": "cpu", "model.layers.1": "disk",
         "model.norm": "cpu", "lm_head": "cpu"}
ARGS = dict(group_samples=3, individual_samples=3, max_tokens=40, min_tokens=8, seed=0, progress=False, batch_size=2)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("corpus") / "c.txt"
    path.write_text("\n".join(f"Sentence number {i} says {'more ' * i}about the river and the town." for i in range(8)))
    return str(path)


@pytest.mark.parametrize("placement", [dict(device_map=SPLIT), dict(device_map="auto", max_memory={"cpu": "40KB"})],
                         ids=["cpu+disk", "max_memory"])
def test_a_split_model_records_and_edits_as_the_unsplit_one(placement, tiny_llama, corpus, tmp_path):
    whole = load_model(tiny_llama)
    split = load_model(tiny_llama, offload_folder=str(tmp_path / "offload"), **placement)
    assert "disk" in split.info["device_map"].values() and split.device == torch.device("cpu")
    assert split.info["model_dtype"] == whole.info["model_dtype"] == "float32"  # dtype auto on the CPU
    stores = [xr.open_zarr(record_activations(m, corpus, str(tmp_path / f"{i}.zarr"), **ARGS), consolidated=False).load()
              for i, m in enumerate((whole, split))]
    xr.testing.assert_identical(stores[0].drop_attrs(), stores[1].drop_attrs())
    arch = resolve_architecture(whole.model)
    mask = NeuronMask.random(model_shape(whole.model, arch), fraction=0.3, seed=1)
    ids = torch.tensor([[1, 5, 9, 30, 7, 2]])
    with torch.no_grad():
        outputs = []
        for loaded in (whole, split):
            with edited(loaded.model, arch, mask, Edit("multiply", 1.5)):
                outputs.append(loaded.model(ids).logits)
        assert not torch.equal(outputs[0], whole.model(ids).logits)
    torch.testing.assert_close(outputs[0], outputs[1], rtol=0, atol=0)
    if placement.get("max_memory"):
        with pytest.raises(InputError, match="offloaded .*bake the checkpoint file instead"):
            bake(split.model, arch, mask, Edit())


def test_token_budget_batches_record_what_fixed_batches_record(tiny_llama, corpus, tmp_path):
    loaded = load_model(tiny_llama)
    fixed = record_activations(loaded, corpus, str(tmp_path / "fixed.zarr"), **ARGS)
    budget = record_activations(loaded, corpus, str(tmp_path / "budget.zarr"), **{**ARGS, "batch_tokens": 70})
    a, b = (xr.open_zarr(u, consolidated=False).load() for u in (fixed, budget))
    xr.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-3)  # other padding widths: float16 rounding only
    assert a.attrs == b.attrs


def test_token_budget_batching_plan():
    from types import SimpleNamespace

    samples = [SimpleNamespace(n_tokens=n, position=p) for p, n in enumerate([10, 30, 20, 30, 5, 12])]
    widths = [[s.n_tokens for s in b] for b in _batches(samples, 2, batch_tokens=60)]
    assert widths == [[30, 30], [20, 12, 10], [5]]
    assert [[s.n_tokens for s in b] for b in _batches(samples, 4, batch_tokens=10)] == [[30], [30], [20], [12], [10], [5]]
    assert [len(b) for b in _batches(samples, 4, 0)] == [4, 2]


@pytest.mark.parametrize(("items", "message"), [(["0=70GiB", "gpu=1GiB"], "max_memory entry gpu=1GiB"),
                                                ({"cpu": ""}, "expected DEVICE=SIZE")])
def test_bad_max_memory(items, message):
    with pytest.raises(InputError, match=message):
        parse_max_memory(items)
    assert parse_max_memory(["0=70GiB", "cuda:1=70GiB", "cpu=1TiB"]) == {0: "70GiB", 1: "70GiB", "cpu": "1TiB"}


def test_bad_dtype(tiny_llama):
    with pytest.raises(InputError, match="unknown dtype 'float64'; expected one of auto, float32"):
        load_model(tiny_llama, dtype="float64")


def test_gpu_check_says_in_one_line_that_there_is_no_gpu():
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(root)}
    done = subprocess.run([sys.executable, str(root / "benchmarks" / "gpu_check.py")], capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        "gpu_check: no CUDA GPU is visible to torch on this machine; run this script on a GPU machine"]


@pytest.mark.parametrize("flags", [["--max-memory", "0=70GiB", "cpu=200GiB"], ["--max-memory", "0=70GiB,cpu=200GiB"],
                                   ["--max-memory", "{0: 70GiB, cpu: 200GiB}"]])
def test_max_memory_flag_forms_agree_with_the_config(flags, tmp_path):
    """Pairs, comma pairs and a YAML mapping on the command line, and the mapping in a config, place alike."""
    import argparse

    from fnet_dist.core.config import ModelSection, load_config
    from fnet_dist.flags import add_section, section_from

    parser = argparse.ArgumentParser()
    add_section(parser, ModelSection)
    from_flags = section_from(parser.parse_args(["--device-map", "auto", *flags]), ModelSection).placement()
    path = tmp_path / "run.yaml"
    path.write_text("model: {device_map: auto, max_memory: {0: 70GiB, cpu: 200GiB}}\n")
    from_config = load_config(path).model.placement()
    assert from_flags == {k: from_config[k] for k in from_flags}
    assert parse_max_memory(from_flags["max_memory"]) == {0: "70GiB", "cpu": "200GiB"}


def test_a_bad_max_memory_flag_is_one_line_exit_2(capsys):
    from fnet_dist.cli import main

    code = main(["bake", "--model", "m", "--mask", "m.npz", "--out", "o", "--max-memory", "70GiB"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "'70GiB' is not DEVICE=SIZE" in err[0] and "Traceback" not in err[0]
