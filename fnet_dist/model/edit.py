"""Edit the neurons of a mask while a model runs: inhibit (× 0), multiply by a factor, or add a value.

- ``Edit(kind, value)``: what to do to each masked MLP-block output channel (validated on creation).
- ``edited(model, arch, mask, edit)``: a context manager; forward hooks on each layer's block output
  apply the edit on every forward pass inside it and are always removed on exit.
- ``model_shape(model, arch)``: ``(n_layers, d_model)``, the shape a mask for ``model`` must have.
- ``bake(model, arch, mask, edit)``: the same edit written into the weights, in place, on
  ``arch.bake_module`` of each layer by ``arch.bake_kind``: ``linear_rows`` (weight row j, bias j),
  ``conv1d_columns`` (GPT-2 ``Conv1D``: weight column j, bias j), ``norm_scale`` (norm weight j, bias j),
  ``norm_scale_plus_one`` (Gemma norms ``x·(1+w)``: ``w' = f·(1+w) − 1``, inhibit ``w' = −1``);
  ``add`` needs a bias (bias j += value) and is refused where there is none.
- ``bake_checkpoint(spec, mask, edit, out)``: a standard HF checkpoint (safetensors + tokenizer) with the
  edit baked in, ``fnet_edit.json`` (provenance) and ``fnet_mask.npz``, so any engine (HF, vLLM, TGI)
  serves the edited model with no hooks: streamed shard by shard from a safetensors checkpoint
  (``fnet_dist.model.bake_stream``), else loaded, baked and saved.
- ``edit_weight`` / ``edit_bias``: the tensor edits both bake paths share.
"""
from __future__ import annotations

import json
import logging
import math
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Literal

import numpy as np
import torch

from .. import __version__
from .architectures import Architecture, block_output_modules, decoder_layers, get_module
from ..core.errors import InputError
from .masks import NeuronMask

__all__ = ["CHANNEL_DIM", "EDIT_FILE", "EDIT_KINDS", "MASK_FILE", "Edit", "bake", "bake_checkpoint", "edit_bias", "edit_weight",
           "edited", "model_shape", "edit_provenance", "write_checkpoint_folder", "write_provenance"]

EDIT_KINDS = ("inhibit", "multiply", "add")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Edit:
    """``inhibit`` sets a channel to 0; ``multiply`` scales it by ``value``; ``add`` adds ``value``."""

    kind: Literal["inhibit", "multiply", "add"] = "inhibit"
    value: float = 1.02

    def __post_init__(self) -> None:
        if self.kind not in EDIT_KINDS:
            raise InputError(f"edit {self.kind!r} is unknown; expected one of {', '.join(EDIT_KINDS)}")
        try:
            value = float(self.value)
        except (TypeError, ValueError):
            raise InputError(f"edit value {self.value!r} must be a number") from None
        if not math.isfinite(value):
            raise InputError(
                f"edit factor {self.value!r} is not finite; pass a finite --factor such as 1.02 (multiply) or 0.5 (add)"
            )
        object.__setattr__(self, "value", value)

    def describe(self) -> str:
        return {"inhibit": "inhibit", "multiply": f"multiply x{self.value:g}", "add": f"add {self.value:+g}"}[self.kind]

    def to_dict(self) -> dict:
        """``{"kind", "value"}`` (value ``None`` for inhibit, which ignores it)."""
        return {"kind": self.kind, "value": None if self.kind == "inhibit" else self.value}


def model_shape(model: torch.nn.Module, arch: Architecture) -> tuple[int, int]:
    """``(n_layers, d_model)``: decoder layers found by ``arch`` and the hidden size of ``model.config``."""
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "get_text_config"):
        config = config.get_text_config()
    d_model = getattr(config, "hidden_size", None)
    if not isinstance(d_model, int):
        raise InputError(f"{type(model).__name__} has no config.hidden_size; cannot tell its number of neurons per layer")
    return len(block_output_modules(model, arch)), d_model


def _placement(module: torch.nn.Module, model: torch.nn.Module) -> torch.dtype:
    """Dtype of ``module``'s parameters (the model's when it has none of its own)."""
    param = next(module.parameters(), None)
    if param is None:
        param = next(model.parameters())
    return param.dtype


def _channel_hook(edit: Edit, row: np.ndarray, dtype: torch.dtype) -> Callable:
    """A forward hook applying ``edit`` to the channels where ``row`` (shape (d_model,)) is True.

    The edit runs in the model's dtype when its value is exact there (always for float32 and inhibit);
    otherwise (1.02 in bfloat16 is 1.0234) in float32, rounded once back to the model's dtype. The edit
    vector follows the output to its device (a model split by ``device_map`` runs layers on several).
    """
    value = 0.0 if edit.kind == "inhibit" else edit.value
    exact = torch.tensor(value, dtype=dtype).item() == value
    work = dtype if exact else torch.float32
    selected = torch.tensor(row, dtype=torch.bool)
    base = torch.zeros if edit.kind == "add" else torch.ones
    vectors = {torch.device("cpu"): base(row.shape, dtype=work).masked_fill_(selected, value)}
    combine = torch.add if edit.kind == "add" else torch.mul

    def apply(tensor: torch.Tensor) -> torch.Tensor:
        vector = vectors.get(tensor.device)
        if vector is None:
            vector = vectors[tensor.device] = vectors[torch.device("cpu")].to(tensor.device)
        if tensor.dtype == work:
            return combine(tensor, vector)
        return combine(tensor.to(work), vector).to(tensor.dtype)

    def hook(_module: torch.nn.Module, _inputs: object, output: object) -> object:
        if isinstance(output, tuple):
            return (apply(output[0]),) + output[1:]
        return apply(output)

    return hook


@contextmanager
def edited(model: torch.nn.Module, arch: Architecture, mask: NeuronMask, edit: Edit = Edit()) -> Iterator[None]:
    """Apply ``edit`` to ``mask``'s channels of every layer's block output on each forward pass inside.

    mask : NeuronMask of shape (n_layers, d_model) (checked against the model). Layers without a masked
    neuron get no hook. The hooks are removed on exit, also when the body raises.
    """
    if not isinstance(edit, Edit):
        raise InputError(f"edit must be an Edit, got {type(edit).__name__}")
    mask.check_shape(*model_shape(model, arch))
    modules = block_output_modules(model, arch)
    handles = []
    try:
        for layer, module in enumerate(modules):
            if mask.values[layer].any():
                hook = _channel_hook(edit, mask.values[layer], _placement(module, model))
                handles.append(module.register_forward_hook(hook))
        yield
    finally:
        for handle in handles:
            handle.remove()


# --- baking: the same edit written into the weights ----------------------------------------

EDIT_FILE = "fnet_edit.json"
MASK_FILE = "fnet_mask.npz"
# which weight dimension holds output channel j, per bake kind
CHANNEL_DIM = {"linear_rows": 0, "conv1d_columns": 1, "norm_scale": 0, "norm_scale_plus_one": 0}


def _bake_modules(model: torch.nn.Module, arch: Architecture, edit: Edit, mask: NeuronMask, d_model: int) -> list:
    """The module to edit in each layer, all checked before any weight changes."""
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


def _edit_channels(param: torch.Tensor, dim: int, index: torch.Tensor, update) -> None:
    """``param``'s slices ``index`` along ``dim`` replaced by ``update(slices)``, in place."""
    param.index_copy_(dim, index, update(param.index_select(dim, index)))


def edit_weight(weight: torch.Tensor, kind: str, index: torch.Tensor, edit: Edit) -> None:
    """Edit output channels ``index`` of a bake-module weight (``kind`` as in ``Architecture.bake_kind``), in
    place, computed in float32 and rounded once to the weight's dtype."""
    f, plus_one = edit.value, kind == "norm_scale_plus_one"
    if edit.kind == "inhibit":
        _edit_channels(weight, CHANNEL_DIM[kind], index, lambda w: torch.full_like(w, -1.0 if plus_one else 0.0))
    elif edit.kind == "multiply":
        scale = (lambda w: f * (1 + w.float()) - 1) if plus_one else (lambda w: w.float() * f)
        _edit_channels(weight, CHANNEL_DIM[kind], index, lambda w: scale(w).to(w.dtype))


def edit_bias(bias: torch.Tensor, index: torch.Tensor, edit: Edit) -> None:
    """Edit entries ``index`` of a bake-module bias, in place (float32, rounded once)."""
    f = edit.value
    update = {"inhibit": torch.zeros_like, "multiply": lambda b: (b.float() * f).to(b.dtype),
              "add": lambda b: (b.float() + f).to(b.dtype)}[edit.kind]
    _edit_channels(bias, 0, index, update)


def _bake_module(module: torch.nn.Module, kind: str, index: torch.Tensor, edit: Edit) -> None:
    """Edit channels ``index`` of ``module``'s weight (and bias)."""
    edit_weight(module.weight.data, kind, index, edit)
    if getattr(module, "bias", None) is not None:
        edit_bias(module.bias.data, index, edit)


def bake(model: torch.nn.Module, arch: Architecture, mask: NeuronMask, edit: Edit = Edit()) -> None:
    """Write ``edit`` of ``mask``'s channels into ``model``'s weights, in place (same result as ``edited``).

    Everything is checked before any weight changes, so a refused bake leaves the model untouched.
    """
    if not isinstance(edit, Edit):
        raise InputError(f"edit must be an Edit, got {type(edit).__name__}")
    n_layers, d_model = model_shape(model, arch)
    mask.check_shape(n_layers, d_model)
    modules = _bake_modules(model, arch, edit, mask, d_model)
    with torch.no_grad():
        for layer, module in enumerate(modules):
            channels = np.flatnonzero(mask.values[layer])
            if channels.size:
                index = torch.as_tensor(channels, device=module.weight.device)
                _bake_module(module, arch.bake_kind, index, edit)


def edit_provenance(info: dict, arch: Architecture, mask: NeuronMask, edit: Edit, method: str = "loaded") -> dict:
    return {
        "format": "fnet-edit", "version": 1, "package_version": __version__, "bake_method": method,
        "source_model": info, "architecture": arch.name,
        "bake_module": arch.bake_module, "bake_kind": arch.bake_kind, "edit": edit.to_dict(),
        "mask": {"name": mask.name, "shape": list(mask.values.shape), "count": mask.count, "meta": mask.meta,
                 "file": MASK_FILE},
    }


def _drop_dequantized_gguf(model: torch.nn.Module) -> None:
    """Forget the loader's GGUF quantizer when every weight was unpacked to a plain float tensor.

    transformers keeps the quantizer after dequantizing a GGUF file and then refuses ``save_pretrained``;
    the weights are ordinary, so the checkpoint is an ordinary (safetensors) one.
    """
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


def write_checkpoint_folder(out: str | os.PathLike, overwrite: bool, fill: Callable[[Path], None]) -> str:
    """Run ``fill(folder)`` on the staging folder ``outputs.replacing`` gives for ``out`` and swap it in when
    complete: an interrupted bake never leaves a checkpoint that looks finished nor harms the old one, and
    ``out`` may hold an earlier baked checkpoint (replaced only with ``overwrite``), never anything else."""
    from ..store.outputs import replacing

    out = Path(os.path.expanduser(os.fspath(out))).resolve()
    with replacing(str(out), "checkpoint", overwrite=overwrite) as staged:
        fill(Path(staged))
    return str(out)


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
    from .architectures import resolve_architecture
    from .bake_stream import StreamedBakeUnsupported, bake_streamed
    from .loading import check_same_model, load_model
    from ..store.outputs import prepare_output

    out = Path(os.path.expanduser(os.fspath(out))).resolve()
    prepare_output(str(out), "checkpoint", overwrite=overwrite)  # refused before the model is read
    try:
        return bake_streamed(model_spec, mask, edit, out, overwrite=overwrite, revision=load_kwargs.get("revision"),
                             dtype=load_kwargs.get("dtype", "auto"))
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


def write_provenance(folder: Path, provenance: dict, mask: NeuronMask) -> None:
    """``fnet_mask.npz`` and ``fnet_edit.json`` into a baked checkpoint ``folder``."""
    mask.save(str(folder / MASK_FILE))
    (folder / EDIT_FILE).write_text(json.dumps(provenance, indent=2, default=str) + "\n")
