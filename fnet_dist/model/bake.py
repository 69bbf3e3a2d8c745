"""Bake an edit into a model's weights, so any engine (HF, vLLM, TGI) serves the edited model with no hooks.

- ``bake(model, arch, mask, edit)``: the edit of ``fnet_dist.model.edit.edited`` written into the weights of a
  loaded model, in place, on ``arch.bake_module`` of each layer by ``arch.bake_kind`` (``fnet_dist.model.weights``);
  ``add`` needs a bias and is refused where there is none.
- ``bake_undoable(model, arch, mask, edit) -> saved`` / ``unbake(saved)``: the same in place, undone exactly
  (the vllm backend edits its engine's weights between conditions this way).
- ``bake_checkpoint(spec, mask, edit, out)``: a standard HF checkpoint (safetensors + tokenizer) with the
  edit baked in, ``fnet_edit.json`` (provenance) and ``fnet_mask.npz`` (``fnet_dist.model.checkpoint``):
  streamed shard by shard from a safetensors checkpoint (``fnet_dist.model.bake_stream``), else loaded, baked
  and saved.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from ..core.config import ModelSection
from ..core.errors import InputError
from ..store.outputs import prepare_output
from .architectures import Architecture, decoder_layers, get_module, resolve_architecture
from .bake_stream import StreamedBakeUnsupported, bake_streamed
from .checkpoint import edit_provenance, write_checkpoint_folder, write_provenance
from .edit import Edit, model_shape, require_weight_site
from .loading import check_same_model, load_model
from .masks import NeuronMask
from .weights import CHANNEL_DIM, edit_bias, edit_weight

if TYPE_CHECKING:
    import torch

__all__ = ["Overwritten", "bake", "bake_checkpoint", "bake_undoable", "unbake"]

log = logging.getLogger(__name__)


class Overwritten(NamedTuple):
    """Slices ``index`` along ``dim`` of ``tensor`` as they were before a bake (``values``)."""

    tensor: Any
    dim: int
    index: Any
    values: Any


def _bake_modules(model: torch.nn.Module, arch: Architecture, edit: Edit, mask: NeuronMask, d_model: int) -> list:
    """The module to edit in each layer, all checked before any weight changes."""
    require_weight_site(edit)
    if arch.bake_kind not in CHANNEL_DIM:
        raise InputError(
            f"architecture {arch.name!r} (a --hook-module pattern) has no known place to bake an edit; "
            f"apply the edit with hooks (fnet evaluate --backend hf) or add the family to fnet_dist/model/architectures.py"
        )
    modules = []
    for index, layer in enumerate(decoder_layers(model, arch)):
        module = get_module(layer, arch.bake_module)
        weight = getattr(module, "weight", None)
        dim = CHANNEL_DIM[arch.bake_kind]
        if weight is None or weight.dim() <= dim or weight.shape[dim] != d_model:
            raise InputError(
                f"layer {index}: {arch.bake_module} of {arch.name!r} has no weight with {d_model} output channels "
                f"along dim {dim}; cannot bake there"
            )
        if weight.device.type == "meta":
            raise InputError(
                f"layer {index}: {arch.bake_module} is offloaded (device_map), so its weights are not in memory to "
                f"edit; bake the checkpoint file instead (fnet bake streams a safetensors checkpoint shard by shard)"
            )
        if edit.kind == "add" and mask.values[index].any() and getattr(module, "bias", None) is None:
            raise InputError(
                f"cannot bake 'add' exactly: {arch.bake_module} of {arch.name!r} has no bias to add to; "
                f"use --edit multiply/inhibit, or apply 'add' with hooks (fnet evaluate --backend hf)"
            )
        modules.append(module)
    return modules


def _bake_module(module: torch.nn.Module, kind: str, index: torch.Tensor, edit: Edit) -> None:
    """Edit channels ``index`` of ``module``'s weight (and bias)."""
    edit_weight(module.weight.data, kind, index, edit)
    if getattr(module, "bias", None) is not None:
        edit_bias(module.bias.data, index, edit)


def bake(model: torch.nn.Module, arch: Architecture, mask: NeuronMask, edit: Edit = Edit()) -> None:
    """Write ``edit`` of ``mask``'s channels into ``model``'s weights, in place (same result as ``edited``).

    Everything is checked before any weight changes, so a refused bake leaves the model untouched.
    """
    bake_undoable(model, arch, mask, edit, keep=False)


def bake_undoable(model: torch.nn.Module, arch: Architecture, mask: NeuronMask, edit: Edit, *,
                  keep: bool = True) -> list[Overwritten]:
    """``bake``, returning what it overwrote (``keep``) so that ``unbake`` puts the weights back bit for bit.

    Used on a serving engine's own model (vLLM's, whose layers keep the HF module paths) to edit it between
    conditions: ``saved = bake_undoable(...)``, serve, ``unbake(saved)``.
    """
    import torch

    if not isinstance(edit, Edit):
        raise InputError(f"edit must be an Edit, got {type(edit).__name__}")
    n_layers, d_model = model_shape(model, arch)
    mask.check_shape(n_layers, d_model)
    modules = _bake_modules(model, arch, edit, mask, d_model)
    dim, saved = CHANNEL_DIM[arch.bake_kind], []
    with torch.no_grad():
        for layer, module in enumerate(modules):
            channels = np.flatnonzero(mask.values[layer])
            if channels.size:
                index = torch.as_tensor(channels, device=module.weight.device)
                if keep:
                    saved.append(Overwritten(module.weight.data, dim, index, module.weight.data.index_select(dim, index)))
                    if getattr(module, "bias", None) is not None:
                        saved.append(Overwritten(module.bias.data, 0, index, module.bias.data.index_select(0, index)))
                _bake_module(module, arch.bake_kind, index, edit)
    return saved


def unbake(saved: list[Overwritten]) -> None:
    """Put back what ``bake_undoable`` overwrote (exact copies of the slices it saved)."""
    import torch

    with torch.no_grad():
        for item in reversed(saved):
            item.tensor.index_copy_(item.dim, item.index, item.values)


def _drop_dequantized_gguf(model: torch.nn.Module) -> None:
    """Forget the loader's GGUF quantizer when every weight was unpacked to a plain float tensor.

    transformers keeps the quantizer after dequantizing a GGUF file and then refuses ``save_pretrained``;
    the weights are ordinary, so the checkpoint is an ordinary (safetensors) one.
    """
    import torch

    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is None:
        return
    method = str(getattr(quantizer.quantization_config, "quant_method", "?"))
    plain = all(p.dtype.is_floating_point and type(p) in (torch.nn.Parameter, torch.Tensor) for p in model.parameters())
    if "gguf" not in method.lower() or getattr(quantizer, "packed_modules", None) or not plain:
        raise InputError(
            f"the model is loaded quantized ({method}); baking needs plain float weights: "
            f"use an unquantized checkpoint, or a GGUF file dequantized on load"
        )
    quantizer.remove_quantization_config(model)


def bake_checkpoint(
    model_spec: str, mask: NeuronMask, edit: Edit, out: str | os.PathLike, *, overwrite: bool = False, **load_kwargs: Any
) -> str:
    """Bake ``mask``'s edit into ``model_spec`` and save the checkpoint to folder ``out``.

    A safetensors checkpoint (a local folder or a hub id) is edited shard by shard without loading the model
    (``fnet_dist.model.bake_stream``: peak memory about one edited tensor, the checkpoint's dtype kept, every other
    tensor bit-identical). Other sources (GGUF, ``.bin`` weights, quantized checkpoints, or a ``dtype`` other
    than the checkpoint's) are loaded (``fnet_dist.model.loading.load_model`` with ``load_kwargs``), baked and saved
    as safetensors. Either way the checkpoint is written through ``write_checkpoint_folder`` (``out`` holding
    anything but a baked checkpoint is refused before any work), and a mask made from networks of another
    model than ``model_spec`` is refused.
    """

    out = Path(os.path.expanduser(os.fspath(out))).resolve()
    prepare_output(str(out), "checkpoint", overwrite=overwrite)  # refused before the model is read
    try:
        return bake_streamed(model_spec, mask, edit, out, overwrite=overwrite, revision=load_kwargs.get("revision"),
                             dtype=load_kwargs.get("dtype", ModelSection().dtype))
    except StreamedBakeUnsupported as exc:
        log.info("baking %s through a loaded model: %s", model_spec, exc)
    loaded = load_model(model_spec, **load_kwargs)
    if mask.meta.get("model_id"):
        check_same_model(mask.meta, loaded.info, f"the mask {mask.name} (from {mask.meta.get('source', '?')})")
    arch = resolve_architecture(loaded.model)
    bake(loaded.model, arch, mask, edit)
    _drop_dequantized_gguf(loaded.model)

    def fill(folder: Path) -> None:
        loaded.model.save_pretrained(folder, safe_serialization=True)
        loaded.tokenizer.save_pretrained(folder)
        write_provenance(folder, edit_provenance(loaded.info, arch, mask, edit), mask)

    return write_checkpoint_folder(out, overwrite, fill)
