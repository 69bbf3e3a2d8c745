"""Edits by hooks and by baked weights agree for every registered family; hooks always go; bad input is refused."""
from __future__ import annotations

import copy
import dataclasses
import json
import re

import numpy as np
import pytest
import torch

from fnet_dist.model.architectures import Architecture, block_output_modules, resolve_architecture
from fnet_dist.model.bake import bake, bake_checkpoint
from fnet_dist.model.checkpoint import EDIT_FILE, MASK_FILE
from fnet_dist.model.edit import Edit, edited, model_shape
from fnet_dist.core.errors import InputError, StoreError
from fnet_dist.model.hooks import capture_block_outputs
from fnet_dist.model.masks import NeuronMask
from fnet_dist.model.loading import load_model
from fnet_dist.model.testing import TINY_FAMILIES, ChatGLMStandIn

WITH_BIAS = {"gpt2", "gpt_neox"}  # families whose MLP output projection has a bias: 'add' bakes exactly
EDITS = [Edit("inhibit"), Edit("multiply", 1.5), Edit("add", 0.3)]


def _ids(seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (2, 10), generator=torch.Generator().manual_seed(seed))


def _logits(model, ids) -> torch.Tensor:
    with torch.no_grad():
        return model(ids).logits


def _hooked(model, arch, mask, edit, ids) -> torch.Tensor:
    with edited(model, arch, mask, edit):
        return _logits(model, ids)


def _baked(model, arch, mask, edit, ids) -> torch.Tensor:
    twin = copy.deepcopy(model)
    bake(twin, arch, mask, edit)
    return _logits(twin, ids)


def _check_hooked_equals_baked(model, family: str) -> None:
    arch = resolve_architecture(model)
    mask = NeuronMask.random(model_shape(model, arch), fraction=0.25, seed=1)
    ids = _ids()
    normal = _logits(model, ids)
    for edit in EDITS:
        hooked = _hooked(model, arch, mask, edit, ids)
        assert (hooked - normal).abs().max() > 1e-3, f"{edit} changed nothing"
        if edit.kind == "add" and family not in WITH_BIAS:
            before = copy.deepcopy(model.state_dict())
            with pytest.raises(InputError, match="cannot bake 'add' exactly.*no bias"):
                bake(model, arch, mask, edit)
            assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "refused bake changed weights"
            continue
        torch.testing.assert_close(_baked(model, arch, mask, edit, ids), hooked, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(_logits(model, ids), normal, rtol=0, atol=0)  # hooks gone, weights untouched


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_hooked_equals_baked(family, tiny_model_factory):
    _check_hooked_equals_baked(load_model(tiny_model_factory(family)).model, family)


def test_hooked_equals_baked_chatglm_layout():
    torch.manual_seed(0)
    _check_hooked_equals_baked(ChatGLMStandIn().eval(), "chatglm")


@pytest.mark.parametrize("family", ["llama", "gpt2", "gemma3"])
def test_hook_edits_exactly_the_masked_channels(family, tiny_model_factory):
    model = load_model(tiny_model_factory(family)).model
    arch = resolve_architecture(model)
    mask = NeuronMask.from_indices(model_shape(model, arch), [(0, 3), (0, 17), (1, 5)])
    with torch.no_grad(), capture_block_outputs(model, arch, layers=[0]) as normal:
        model(_ids())
    expected = {"inhibit": lambda x: 0 * x, "multiply": lambda x: 1.5 * x, "add": lambda x: x + 0.3}
    for edit in EDITS:
        with torch.no_grad(), edited(model, arch, mask, edit), capture_block_outputs(model, arch, layers=[0]) as got:
            model(_ids())
        want = normal.outputs[0].clone()  # layer 0's input is unedited, so its output is the edit of the normal one
        want[..., [3, 17]] = expected[edit.kind](want[..., [3, 17]])
        torch.testing.assert_close(got.outputs[0], want, rtol=0, atol=0)


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_residual_site_ablates_the_decoder_layer_outputs(family, tiny_model_factory):
    """LLM Localization's ablation: ``hidden *= 1 - mask[layer]`` after each layer. A residual channel inhibited
    after layer 0 only is 0 in that layer's output, every other channel as it was, and non-zero again after layer 1
    (which writes into it); the same mask at the MLP site leaves layer 0's output channel non-zero (attention wrote
    into it too). Layer outputs are read by hooks registered after the edit's, so they see the edited output."""
    model = load_model(tiny_model_factory(family)).model
    arch = resolve_architecture(model)
    layers = dataclasses.replace(arch, block_output="")  # each decoder layer's own output: the residual stream
    mask = NeuronMask.from_indices(model_shape(model, arch), [(0, 3), (0, 17)])

    def outputs(edit):
        with torch.no_grad(), edited(model, arch, mask, edit), capture_block_outputs(model, layers) as got:
            model(_ids())
        return got.outputs

    normal, residual, mlp = outputs(Edit("multiply", 1.0)), outputs(Edit("inhibit", site="residual")), outputs(Edit())
    assert residual[0][..., [3, 17]].abs().max() == 0
    others = [c for c in range(residual[0].shape[-1]) if c not in (3, 17)]
    torch.testing.assert_close(residual[0][..., others], normal[0][..., others], rtol=0, atol=0)
    assert residual[1][..., [3, 17]].abs().min() > 0 and mlp[0][..., [3, 17]].abs().min() > 0
    doubled = outputs(Edit("multiply", 2.0, site="residual"))
    torch.testing.assert_close(doubled[0][..., [3, 17]], 2 * normal[0][..., [3, 17]], rtol=1e-6, atol=1e-6)


def test_a_residual_edit_is_never_written_into_weights(tiny_llama, tmp_path):
    model = load_model(tiny_llama).model
    arch = resolve_architecture(model)
    mask = NeuronMask.random(model_shape(model, arch), count=4, seed=0)
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(InputError, match="residual-stream edit cannot be written into the weights.*--backend hf"):
        bake(model, arch, mask, Edit("inhibit", site="residual"))
    with pytest.raises(InputError, match="residual-stream edit cannot be written into the weights"):
        bake_checkpoint(tiny_llama, mask, Edit("inhibit", site="residual"), tmp_path / "baked")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not (tmp_path / "baked").exists()
    with pytest.raises(InputError, match="edit site 'attention' is unknown; expected one of mlp, residual"):
        Edit("inhibit", site="attention")
    assert Edit("inhibit").to_dict() == {"kind": "inhibit", "value": None}
    assert Edit("inhibit", site="residual").to_dict() == {"kind": "inhibit", "value": None, "site": "residual"}


def test_hooks_removed_after_an_exception(tiny_llama):
    model = load_model(tiny_llama).model
    arch = resolve_architecture(model)
    mask = NeuronMask.random(model_shape(model, arch), count=10, seed=0)
    normal = _logits(model, _ids())
    with pytest.raises(RuntimeError, match="boom"):
        with edited(model, arch, mask, Edit("inhibit")):
            assert sum(len(m._forward_hooks) for m in block_output_modules(model, arch)) == 2
            raise RuntimeError("boom")
    assert all(not m._forward_hooks for m in block_output_modules(model, arch))
    torch.testing.assert_close(_logits(model, _ids()), normal, rtol=0, atol=0)


def test_many_masks_in_a_row_on_one_model(tiny_llama):
    model = load_model(tiny_llama).model
    arch = resolve_architecture(model)
    shape, ids = model_shape(model, arch), _ids(1)
    masks = [NeuronMask.random(shape, count=8, seed=s) for s in range(3)] + [NeuronMask(np.zeros(shape))]
    for mask in masks:
        torch.testing.assert_close(_hooked(model, arch, mask, Edit("inhibit"), ids),
                                   _baked(model, arch, mask, Edit("inhibit"), ids), rtol=1e-5, atol=1e-5)
    assert all(not m._forward_hooks for m in block_output_modules(model, arch))


def test_half_precision_hooks_scale_by_the_exact_factor(tiny_llama):
    """In bfloat16, 1.02 is 1.0234: the hook multiplies in float32 and rounds once, keeping the dtype."""
    model = load_model(tiny_llama, dtype="bfloat16").model
    arch = resolve_architecture(model)
    mask = NeuronMask.from_indices(model_shape(model, arch), [(0, 3), (0, 9)])
    with torch.no_grad(), capture_block_outputs(model, arch, layers=[0]) as normal:
        model(_ids())
    with torch.no_grad(), edited(model, arch, mask, Edit("multiply", 1.02)), capture_block_outputs(model, arch) as got:
        model(_ids())
    assert all(t.dtype == torch.bfloat16 for t in got.outputs.values())
    want = normal.outputs[0].clone()
    want[..., [3, 9]] = (want[..., [3, 9]].float() * 1.02).to(torch.bfloat16)
    torch.testing.assert_close(got.outputs[0], want, rtol=0, atol=0)
    assert not torch.equal(want, (normal.outputs[0] * torch.tensor(1.02, dtype=torch.bfloat16)))


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_baked_checkpoint_reloads_equal_to_hooked(family, tiny_model_factory, tmp_path):
    folder = tiny_model_factory(family)
    loaded = load_model(folder)
    arch = resolve_architecture(loaded.model)
    mask = NeuronMask.random(model_shape(loaded.model, arch), fraction=0.2, seed=2)
    edit = Edit("multiply", 0.5)
    hooked = _hooked(loaded.model, arch, mask, edit, _ids())
    out = bake_checkpoint(folder, mask, edit, tmp_path / "baked")
    assert sorted(p.name for p in (tmp_path / "baked").glob("*.safetensors")) == ["model.safetensors"]
    reloaded = load_model(out)
    torch.testing.assert_close(_logits(reloaded.model, _ids()), hooked, rtol=1e-5, atol=1e-5)
    provenance = json.loads((tmp_path / "baked" / EDIT_FILE).read_text())
    assert provenance["edit"] == {"kind": "multiply", "value": 0.5} and provenance["mask"]["count"] == mask.count
    assert NeuronMask.load(str(tmp_path / "baked" / MASK_FILE)) == mask
    tied = loaded.model.config.tie_word_embeddings
    assert reloaded.model.config.tie_word_embeddings == tied
    if tied:
        assert reloaded.model.get_output_embeddings().weight.data_ptr() == reloaded.model.get_input_embeddings().weight.data_ptr()
    assert not list(tmp_path.glob(".*.fnet-*"))  # no staging copy left beside


def test_bake_checkpoint_never_replaces_a_users_folder_and_its_own_only_with_overwrite(tiny_llama, tmp_path):
    mask = NeuronMask.random((2, 32), count=4, seed=0)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("x")
    for overwrite in (False, True):
        with pytest.raises(StoreError, match="holds a folder of files that fnet did not write, not a baked checkpoint"):
            bake_checkpoint(tiny_llama, mask, Edit(), tmp_path / "out", overwrite=overwrite)
        assert (tmp_path / "out" / "keep.txt").read_text() == "x"
    ckpt = tmp_path / "ckpt"
    bake_checkpoint(tiny_llama, mask, Edit(), ckpt)
    with pytest.raises(StoreError, match="already holds a baked checkpoint \\(fnet bake\\); pass --overwrite"):
        bake_checkpoint(tiny_llama, NeuronMask.random((2, 32), count=6, seed=1), Edit(), ckpt)
    assert NeuronMask.load(str(ckpt / MASK_FILE)) == mask
    other = NeuronMask.random((2, 32), count=6, seed=1)
    bake_checkpoint(tiny_llama, other, Edit(), ckpt, overwrite=True)
    assert NeuronMask.load(str(ckpt / MASK_FILE)) == other and (ckpt / EDIT_FILE).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt", "out"]  # no staging copy left beside


def test_bad_inputs(tiny_llama):
    model = load_model(tiny_llama).model
    arch = resolve_architecture(model)
    wrong = NeuronMask.random((3, 32), count=4, seed=0)
    with pytest.raises(InputError, match=r"shape \(3, 32\).*model has \(2, 32\)"):
        with edited(model, arch, wrong):
            pass
    with pytest.raises(InputError, match=r"shape \(3, 32\).*model has \(2, 32\)"):
        bake(model, arch, wrong, Edit())
    for bad in (float("inf"), float("nan"), -float("inf")):
        with pytest.raises(InputError, match="not finite"):
            Edit("multiply", bad)
    with pytest.raises(InputError, match="edit 'scale' is unknown"):
        Edit("scale")
    with pytest.raises(InputError, match="must be a number"):
        Edit("add", "big")
    pattern = resolve_architecture(model, hook_module="model.layers.{i}.mlp")
    mask = NeuronMask.random((2, 32), count=4, seed=0)
    with pytest.raises(InputError, match="no known place to bake"):
        bake(model, pattern, mask, Edit())
    with edited(model, pattern, mask):  # hooks work for a pattern all the same
        assert _logits(model, _ids()).isfinite().all()
    broken = Architecture("broken", (), "model.layers", "mlp", "mlp.up_proj", "linear_rows")
    with pytest.raises(InputError, match="no weight with 32 output channels"):
        bake(model, broken, mask, Edit())


# --- fnet bake --------------------------------------------------------------------------------

@pytest.fixture
def fnet(monkeypatch, capsys):
    """``fnet(*argv) -> (exit status, stdout, stderr)`` through the real CLI entry point, bake only."""
    from fnet_dist import cli

    monkeypatch.setattr(cli, "COMMANDS", ("bake",))

    def call(*argv: str):
        status = cli.main([str(a) for a in argv])
        captured = capsys.readouterr()
        return status, captured.out, captured.err

    return call


@pytest.fixture(scope="module")
def llama_networks(tmp_path_factory, tiny_llama) -> str:
    from storage_schemas import NETWORKS
    from fnet_dist.model.loading import resolve_source
    from fnet_dist.store.storage import write_store
    from test_masks import networks_dataset

    planted = {0: {(0, 1): 5.0, (1, 7): -4.0}, 1: {(1, 30): 4.5}}
    url = str(tmp_path_factory.mktemp("llama-nets") / "networks.zarr")
    ds = networks_dataset(planted, shape=(2, 32)).assign_attrs(model_id=resolve_source(tiny_llama).model_id)
    return write_store(ds, url, NETWORKS)


def test_cli_bakes_templates_of_a_networks_store(fnet, tiny_llama, llama_networks, tmp_path):
    status, out, err = fnet("bake", "--model", tiny_llama, "--networks", llama_networks, "--templates", 1, 2,
                            "--edit", "multiply", "--factor", 1.5, "--out", tmp_path / "ckpt")
    assert status == 0, err
    assert "multiply x1.5 of template-1+2 (3 neurons" in out
    loaded = load_model(tiny_llama)
    arch = resolve_architecture(loaded.model)
    mask = NeuronMask.from_networks(llama_networks, [0, 1])
    hooked = _hooked(loaded.model, arch, mask, Edit("multiply", 1.5), _ids())
    torch.testing.assert_close(_logits(load_model(str(tmp_path / "ckpt")).model, _ids()), hooked, rtol=1e-5, atol=1e-5)


def test_cli_bakes_a_mask_file(fnet, tiny_llama, tmp_path):
    mask = NeuronMask.random((2, 32), count=5, seed=9)
    path = mask.save(str(tmp_path / "mask.npz"))
    status, out, err = fnet("bake", "--model", tiny_llama, "--mask", path, "--out", tmp_path / "ckpt")
    assert status == 0, err
    assert "inhibit of random-5-seed9 (5 neurons" in out
    loaded = load_model(tiny_llama)
    hooked = _hooked(loaded.model, resolve_architecture(loaded.model), mask, Edit(), _ids())
    torch.testing.assert_close(_logits(load_model(str(tmp_path / "ckpt")).model, _ids()), hooked, rtol=1e-5, atol=1e-5)


def test_cli_bad_inputs(fnet, tiny_llama, llama_networks, tmp_path):
    wrong = NeuronMask.random((3, 32), count=5, seed=0).save(str(tmp_path / "wrong.npz"))
    right = NeuronMask.random((2, 32), count=5, seed=0).save(str(tmp_path / "right.npz"))
    base = ("bake", "--model", tiny_llama, "--out", tmp_path / "ckpt")
    cases = [
        (("--mask", wrong), r"error: mask 'random-5-seed0' has shape \(3, 32\).*model has \(2, 32\)"),
        (("--mask", right, "--edit", "multiply", "--factor", "nan"), "error: edit factor nan is not finite"),
        (("--mask", right, "--edit", "multiply", "--factor", "inf"), "error: edit factor inf is not finite"),
        (("--mask", right, "--edit", "add"), "error: --edit add needs the value to add"),
        (("--mask", right, "--edit", "add", "--factor", "0.5"), "error: cannot bake 'add' exactly.*no bias"),
        (("--mask", right, "--factor", "2"), "error: --factor 2 has no effect with --edit inhibit"),
        (("--networks", llama_networks), "error: --networks needs --templates"),
        (("--networks", llama_networks, "--templates", "3"), r"error: --templates 3 is out of range: .* has templates 1..2"),
        (("--networks", llama_networks, "--templates", "0"), "error: --templates 0 is out of range"),
        (("--mask", tmp_path / "missing.npz"), "error: no mask file at"),
    ]
    for extra, message in cases:
        status, _, err = fnet(*base, *extra)
        assert status == 2 and re.search(message, err), (extra, err)
    assert not (tmp_path / "ckpt").exists()


@pytest.mark.slow
def test_packaged_gguf_model_bakes_to_safetensors(tmp_path):
    """SmolLM2 (GGUF, tied embeddings) baked, saved as safetensors, reloaded: equal to the hooked model."""
    loaded = load_model("smollm2-135m-instruct")
    arch = resolve_architecture(loaded.model)
    mask = NeuronMask.random(model_shape(loaded.model, arch), fraction=0.01, seed=0)
    ids = loaded.tokenizer(["The quick brown fox jumps over the lazy dog."], return_tensors="pt").input_ids
    hooked = _hooked(loaded.model, arch, mask, Edit("multiply", 1.5), ids)
    out = bake_checkpoint("smollm2-135m-instruct", mask, Edit("multiply", 1.5), tmp_path / "baked")
    reloaded = load_model(out)
    assert (tmp_path / "baked" / "model.safetensors").exists() and reloaded.model.config.tie_word_embeddings
    assert "quantization_config" not in json.loads((tmp_path / "baked" / "config.json").read_text())
    torch.testing.assert_close(_logits(reloaded.model, ids), hooked, rtol=1e-4, atol=1e-4)
