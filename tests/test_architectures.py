"""The registry finds, for every family, the tensor each layer's MLP block adds to the residual stream."""
from __future__ import annotations

import pytest
import torch

from fnet_dist.model.architectures import (
    UnsupportedArchitectureError,
    block_output_modules,
    decoder_layers,
    resolve_architecture,
)
from fnet_dist.model.loading import load_model
from fnet_dist.model.testing import TINY_FAMILIES, ChatGLMStandIn


def _first(output):
    return output[0] if isinstance(output, tuple) else output


def _layer_outputs(model, layers, ids, zero_block_of=None, blocks=None):
    """Outputs of every decoder layer; optionally with one layer's block output replaced by zeros."""
    outputs, handles = {}, []
    for i, layer in enumerate(layers):
        handles.append(layer.register_forward_hook(lambda m, a, o, i=i: outputs.__setitem__(i, _first(o).detach())))
    if zero_block_of is not None:
        handles.append(blocks[zero_block_of].register_forward_hook(lambda m, a, o: torch.zeros_like(o)))
    try:
        with torch.no_grad():
            model(ids)
    finally:
        for h in handles:
            h.remove()
    return outputs


def _check_block_outputs(model, ids):
    arch = resolve_architecture(model)
    layers, blocks = decoder_layers(model, arch), block_output_modules(model, arch)
    recorded = {}
    handles = [b.register_forward_hook(lambda m, a, o, i=i: recorded.__setitem__(i, o.detach())) for i, b in enumerate(blocks)]
    try:
        normal = _layer_outputs(model, layers, ids)
    finally:
        for h in handles:
            h.remove()
    assert len(recorded) == len(layers)
    for i in range(len(layers)):
        # Layer i's input is the same in both runs; only its block output differs, so the difference
        # of the layer outputs is exactly what the block adds to the residual stream.
        without = _layer_outputs(model, layers, ids, zero_block_of=i, blocks=blocks)
        torch.testing.assert_close(recorded[i], normal[i] - without[i], rtol=1e-4, atol=1e-5)
        assert recorded[i].abs().max() > 0


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_block_output_is_what_the_layer_adds_to_the_residual(family, tiny_model_factory):
    loaded = load_model(tiny_model_factory(family))
    ids = loaded.tokenizer(["The cat sat on the mat."], return_tensors="pt").input_ids
    _check_block_outputs(loaded.model, ids)


def test_chatglm_entry_on_a_stand_in_with_the_same_module_tree():
    torch.manual_seed(0)
    model = ChatGLMStandIn().eval()
    assert resolve_architecture(model).name == "chatglm"
    _check_block_outputs(model, torch.randint(0, 250, (1, 7)))


def test_unknown_architecture_names_it_and_says_how_to_add_it():
    model = torch.nn.Module()
    model.config = type("C", (), {"model_type": "mamba9"})()
    with pytest.raises(UnsupportedArchitectureError, match=r"'mamba9' is not in fnet's registry.*--hook-module"):
        resolve_architecture(model)


def test_hook_module_pattern_overrides_the_registry(tiny_llama):
    model = load_model(tiny_llama).model
    arch = resolve_architecture(model, hook_module="model.layers.{i}.mlp")
    assert [type(m).__name__ for m in block_output_modules(model, arch)] == ["LlamaMLP", "LlamaMLP"]
    with pytest.raises(ValueError, match=r"one '\{i\}'"):
        resolve_architecture(model, hook_module="model.layers.mlp")
    with pytest.raises(UnsupportedArchitectureError, match="has no module 'feed_forward'"):
        block_output_modules(model, resolve_architecture(model, hook_module="model.layers.{i}.feed_forward"))
