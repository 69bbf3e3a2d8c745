"""Streamed baking: a sharded bf16 safetensors checkpoint edited file by file equals the loaded bake, bit for bit."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from fnet_dist.model.architectures import resolve_architecture
from fnet_dist.model.bake_stream import StreamedBakeUnsupported, bake_streamed
from fnet_dist.model.bake import bake, bake_checkpoint
from fnet_dist.model.checkpoint import EDIT_FILE
from fnet_dist.model.edit import Edit, model_shape
from fnet_dist.model.masks import NeuronMask
from fnet_dist.model.loading import load_model
from fnet_dist.model.testing import TINY_FAMILIES, byte_tokenizer


def _sharded_bf16(folder: str, out: Path) -> Path:
    """The tiny model of ``folder`` saved again as bf16 in shards of ~20 kB."""
    model = load_model(folder, dtype="bfloat16").model
    model.save_pretrained(out, max_shard_size="20KB")
    byte_tokenizer().save_pretrained(out)
    return out


def _tensors(folder: Path) -> dict[str, torch.Tensor]:
    return {k: v for path in sorted(folder.glob("*.safetensors")) for k, v in load_file(str(path)).items()}


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_streamed_bake_of_a_sharded_bf16_checkpoint_equals_the_loaded_bake(family, tiny_model_factory, tmp_path):
    source = _sharded_bf16(tiny_model_factory(family), tmp_path / "source")
    assert len(list(source.glob("*.safetensors"))) > 2, "the checkpoint must be sharded"
    reference = load_model(str(source), dtype="bfloat16").model
    arch = resolve_architecture(reference)
    mask = NeuronMask.random(model_shape(reference, arch), fraction=0.2, seed=3)
    edit = Edit("multiply", 1.5)
    out = Path(bake_checkpoint(str(source), mask, edit, tmp_path / "baked"))
    assert json.loads((out / EDIT_FILE).read_text())["bake_method"] == "streamed"
    bake(reference, arch, mask, edit)
    expected, before, after = reference.state_dict(), _tensors(source), _tensors(out)
    assert after.keys() == before.keys()
    changed = {name for name in after if not torch.equal(after[name].view(torch.uint8), before[name].view(torch.uint8))}
    assert changed and all(f".{arch.bake_module}." in name for name in changed)
    assert all(tensor.dtype == before[name].dtype == torch.bfloat16 for name, tensor in after.items())
    baked = [name for name in after if f".{arch.bake_module}." in name]
    assert len(baked) >= 2
    for name in baked:
        torch.testing.assert_close(after[name], expected[name], rtol=0, atol=0)
    for extra in ("config.json", "tokenizer.json", "model.safetensors.index.json"):
        assert (out / extra).read_bytes() == (source / extra).read_bytes()


def test_inhibit_zeroes_exactly_the_masked_rows(tiny_llama, tmp_path):
    source = _sharded_bf16(tiny_llama, tmp_path / "source")
    mask = NeuronMask.random((2, 32), count=5, seed=1)
    out = Path(bake_streamed(str(source), mask, Edit("inhibit"), tmp_path / "baked"))
    before, after = _tensors(source), _tensors(out)
    for layer in range(2):
        name = f"model.layers.{layer}.mlp.down_proj.weight"
        rows = torch.as_tensor(mask.values[layer])
        assert not after[name][rows].any() and torch.equal(after[name][~rows], before[name][~rows])


def test_sources_that_cannot_stream_fall_back_to_the_loaded_bake(tiny_llama, tmp_path):
    shutil.copytree(tiny_llama, tmp_path / "bin")
    weights = tmp_path / "bin" / "model.safetensors"
    torch.save(load_file(str(weights)), tmp_path / "bin" / "pytorch_model.bin")
    weights.unlink()
    mask = NeuronMask.random((2, 32), count=4, seed=0)
    with pytest.raises(StreamedBakeUnsupported, match="no .safetensors weights"):
        bake_streamed(str(tmp_path / "bin"), mask, Edit(), tmp_path / "never")
    out = Path(bake_checkpoint(str(tmp_path / "bin"), mask, Edit(), tmp_path / "baked"))
    assert json.loads((out / EDIT_FILE).read_text())["bake_method"] == "loaded"
    with pytest.raises(StreamedBakeUnsupported, match="dtype bfloat16 was asked for and the checkpoint is float32"):
        bake_streamed(tiny_llama, mask, Edit(), tmp_path / "never", dtype="bfloat16")
    with pytest.raises(Exception, match=r"mask of shape \(3, 32\)|shape"):
        bake_streamed(tiny_llama, NeuronMask.random((3, 32), count=4, seed=0), Edit(), tmp_path / "never")
    assert not (tmp_path / "never").exists()


def test_streamed_bake_keeps_the_output_rule_and_the_model_check(tiny_llama, tmp_path):
    """Issue 12 on the streamed path: a mask of another model and an --out of other files are refused
    before anything is written; a baked checkpoint is replaced only with overwrite."""
    from fnet_dist.core.errors import InputError, StoreError
    from fnet_dist.model.loading import resolve_source

    mask = NeuronMask.random((2, 32), count=4, seed=0)
    foreign = NeuronMask(mask.values, meta={"model_id": "someone/else", "model_revision": "abc", "source": "nets.zarr"})
    with pytest.raises(InputError, match=r"was made from model 'someone/else'.*not from the model loaded here"):
        bake_checkpoint(tiny_llama, foreign, Edit(), tmp_path / "never")
    assert not (tmp_path / "never").exists() and not list(tmp_path.glob(".never*"))
    ours = NeuronMask(mask.values, meta={"model_id": resolve_source(tiny_llama).model_id, "model_revision": "local"})
    out = Path(bake_checkpoint(tiny_llama, ours, Edit(), tmp_path / "baked"))
    assert json.loads((out / EDIT_FILE).read_text())["bake_method"] == "streamed"
    with pytest.raises(StoreError, match="already holds a baked checkpoint"):
        bake_checkpoint(tiny_llama, ours, Edit(), out)
    bake_checkpoint(tiny_llama, ours, Edit("multiply", 0.5), out, overwrite=True)
    assert json.loads((out / EDIT_FILE).read_text())["edit"]["kind"] == "multiply"
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    with pytest.raises(StoreError, match="holds a folder of files that fnet did not write"):
        bake_checkpoint(tiny_llama, ours, Edit(), tmp_path / "mine", overwrite=True)
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]
