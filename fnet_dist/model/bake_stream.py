"""Bake an edit into a safetensors checkpoint shard by shard, never loading the model.

- ``bake_streamed(spec, mask, edit, out, *, overwrite, revision, dtype) -> str``: copy the checkpoint
  (a local folder, or a hub id resolved in the local Hugging Face cache) to ``out`` and rewrite, in the
  copies, only the bytes of the tensors the edit touches (each bake module's weight and bias).
- ``read_bake_weights(folder, arch, layers)``: each layer's bake-module weight as the checkpoint stores it.
- ``StreamedBakeUnsupported``: the source cannot be streamed (no safetensors weights, quantized, a family
  without a bake place, another dtype asked for); ``fnet_dist.model.bake.bake_checkpoint`` then loads the model.

Every shard file is copied whole (the kernel copies; nothing goes through Python memory), then each edited
tensor is read alone (``safetensors.safe_open``), edited in float32, rounded once to its own dtype and
written back at its offset: peak memory is one edited tensor, the checkpoint's dtype stays (bf16 stays bf16),
the headers and every other tensor stay bit-identical. Config, tokenizer and generation files are copied.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import struct
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.config import ModelSection
from ..core.errors import InputError
from .architectures import Architecture, resolve_architecture
from .checkpoint import edit_provenance, write_checkpoint_folder, write_provenance
from .edit import Edit, require_weight_site
from .loading import check_same_model, resolve_source
from .masks import NeuronMask
from .weights import CHANNEL_DIM, edit_bias, edit_weight

if TYPE_CHECKING:
    pass

__all__ = ["StreamedBakeUnsupported", "bake_streamed", "checkpoint_folder", "read_bake_weights"]

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".h5", ".msgpack", ".ckpt")
_FLOAT_DTYPES = {"BF16": "bfloat16", "F16": "float16", "F32": "float32"}
_HUB_FILES = ["*.safetensors", "*.json", "*.txt", "*.model", "*.tiktoken", "*.py", "*.jinja"]


class StreamedBakeUnsupported(InputError):
    """The checkpoint cannot be baked file by file; the caller falls back to loading the model."""


def checkpoint_folder(spec: str, revision: str | None = None) -> Path:
    """The folder holding ``spec``'s files: a local folder as is, a hub id from the Hugging Face cache
    (downloaded there when the hub is reachable)."""
    source = resolve_source(spec)
    if source.gguf_file:
        raise StreamedBakeUnsupported(f"{spec!r} is a GGUF file, not a safetensors checkpoint")
    if source.local:
        return Path(source.path)
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(source.path, revision=revision, allow_patterns=_HUB_FILES))
    except Exception as exc:  # offline without a cached copy, no such repo …: the loaded path reports it
        raise StreamedBakeUnsupported(f"no local copy of {spec!r} ({type(exc).__name__})") from None


def _header(path: Path) -> tuple[dict[str, Any], int]:
    """A safetensors file's header (tensor name → dtype, shape, data_offsets) and where its data starts."""
    with open(path, "rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(length))
    header.pop("__metadata__", None)
    return header, 8 + length


def _locate(headers: dict[Path, dict], arch: Architecture) -> dict[int, dict[str, tuple[Path, str]]]:
    """Layer index → {"weight"|"bias": (file, tensor name)} of each layer's bake module. Names are tried
    with the family's full layer path, then without its leading parts (checkpoints saved from the base
    model), each optionally under a prefix (``language_model.`` …)."""
    names = {name: path for path, header in headers.items() for name in header}
    parts = arch.layers.split(".")
    for start in range(len(parts)):
        pattern = re.compile(rf"^(.*\.)?{re.escape('.'.join(parts[start:]))}\.(\d+)\.{re.escape(arch.bake_module)}\.(weight|bias)$")
        found: dict[int, dict[str, tuple[Path, str]]] = {}
        prefixes = set()
        for name, path in names.items():
            match = pattern.match(name)
            if match:
                prefixes.add(match.group(1))
                found.setdefault(int(match.group(2)), {})[match.group(3)] = (path, name)
        if len(prefixes) > 1:
            raise StreamedBakeUnsupported(f"the checkpoint holds {arch.bake_module} under several prefixes {sorted(map(str, prefixes))}")
        if found:
            if sorted(found) != list(range(len(found))) or any("weight" not in v for v in found.values()):
                raise StreamedBakeUnsupported(f"the checkpoint's {arch.bake_module} tensors are not one weight per layer 0..N-1")
            return found
    raise StreamedBakeUnsupported(f"no {arch.layers}.N.{arch.bake_module}.weight tensors in the checkpoint")


def read_bake_weights(folder: str | os.PathLike, arch: Architecture, layers) -> dict[int, Any]:
    """The bake module's weight of each of ``layers`` (layer index → tensor, as stored) from the safetensors
    checkpoint in ``folder``; a serving engine that packed its own copy away (vLLM on the CPU) reads them here."""
    from safetensors import safe_open

    files = sorted(Path(folder).glob("*.safetensors"))
    located = _locate({path: _header(path)[0] for path in files}, arch)
    weights = {}
    for layer in layers:
        path, name = located[layer]["weight"]
        with safe_open(str(path), framework="pt") as handle:
            weights[layer] = handle.get_tensor(name)
    return weights


def _plan(folder: Path, mask: NeuronMask, edit: Edit, dtype: str) -> tuple[Architecture, dict, dict, dict[str, Any]]:
    """-> (family, ``_locate``'s tensors, {file: (header, data start)}, provenance of the source)."""
    """Check everything before any file is written: the family, the tensors, their dtype, the mask's shape."""
    config_path = folder / "config.json"
    config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    if config.get("quantization_config"):
        raise StreamedBakeUnsupported("the checkpoint is quantized")
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise StreamedBakeUnsupported(f"no .safetensors weights in {folder}")
    arch = resolve_architecture(SimpleNamespace(config=SimpleNamespace(model_type=config.get("model_type", "?"))))
    if arch.bake_kind not in CHANNEL_DIM:
        raise StreamedBakeUnsupported(f"architecture {arch.name!r} has no known place to bake an edit")
    headers = {path: _header(path) for path in files}
    located = _locate({p: h for p, (h, _) in headers.items()}, arch)
    dim = CHANNEL_DIM[arch.bake_kind]
    kinds, widths = set(), set()
    for layer, tensors in located.items():
        path, name = tensors["weight"]
        info = headers[path][0][name]
        kinds.add(info["dtype"])
        widths.add(info["shape"][dim] if len(info["shape"]) > dim else None)
    if not kinds <= set(_FLOAT_DTYPES) or len(kinds) != 1:
        raise StreamedBakeUnsupported(f"the {arch.bake_module} weights are stored as {sorted(kinds)}, not one float dtype")
    stored = _FLOAT_DTYPES[kinds.pop()]
    if dtype not in ("auto", stored):
        raise StreamedBakeUnsupported(f"dtype {dtype} was asked for and the checkpoint is {stored}")
    if len(widths) != 1 or None in widths:
        raise StreamedBakeUnsupported(f"the {arch.bake_module} weights do not all have one output width")
    mask.check_shape(len(located), widths.pop())
    if edit.kind == "add":
        missing = [layer for layer, tensors in located.items() if mask.values[layer].any() and "bias" not in tensors]
        if missing:
            raise InputError(
                f"cannot bake 'add' exactly: {arch.bake_module} of {arch.name!r} has no bias to add to; "
                f"use --edit multiply/inhibit, or apply 'add' with hooks (fnet evaluate --backend hf)"
            )
    info = {"model_id": str(config.get("_name_or_path") or folder), "architecture": config.get("model_type"),
            "model_dtype": stored, "model_revision": "local"}
    return arch, located, headers, info


def _rewrite(copy: Path, source: Path, name: str, data_start: int, offsets: list[int], update) -> None:
    """Read tensor ``name`` from ``source`` alone, ``update`` it in place, write its bytes into ``copy``."""
    import torch
    from safetensors import safe_open

    with safe_open(str(source), framework="pt") as handle:
        tensor = handle.get_tensor(name).contiguous()
    update(tensor)
    data = tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b""
    if len(data) != offsets[1] - offsets[0]:
        raise InputError(f"{source.name}: tensor {name} is {offsets[1] - offsets[0]} bytes in its header, {len(data)} in memory")
    with open(copy, "r+b") as handle:
        handle.seek(data_start + offsets[0])
        handle.write(data)


def bake_streamed(spec: str, mask: NeuronMask, edit: Edit, out: str | os.PathLike, *, overwrite: bool = False,
                  revision: str | None = None, dtype: str = ModelSection().dtype) -> str:
    """Bake ``edit`` of ``mask`` into a copy of the safetensors checkpoint ``spec`` at folder ``out`` (written in
    the staging folder of ``outputs.replacing`` and swapped in; a mask of another model is refused)."""
    import torch

    if not isinstance(edit, Edit):
        raise InputError(f"edit must be an Edit, got {type(edit).__name__}")
    require_weight_site(edit)

    source = resolve_source(spec)
    folder = checkpoint_folder(spec, revision)
    arch, located, headers, info = _plan(folder, mask, edit, dtype)
    # as load_model names it: the hub snapshot folder is the commit; a local folder has no revision
    info |= {"model_id": source.model_id, "model_revision": revision or ("local" if source.local else folder.name)}
    if mask.meta.get("model_id"):
        check_same_model(mask.meta, info, f"the mask {mask.name} (from {mask.meta.get('source', '?')})")

    def fill(partial: Path) -> None:
        for path in sorted(folder.iterdir()):
            if path.is_file() and not path.name.endswith(_WEIGHT_SUFFIXES) and not path.name.startswith("fnet_"):
                shutil.copyfile(path, partial / path.name)  # config, tokenizer, generation config, index …
        for path in headers:
            shutil.copyfile(path, partial / path.name)
        for layer, tensors in located.items():
            channels = np.flatnonzero(mask.values[layer])
            if not channels.size:
                continue
            index = torch.as_tensor(channels)
            for part, (path, name) in tensors.items():
                update = ((lambda t: edit_weight(t, arch.bake_kind, index, edit)) if part == "weight"
                          else (lambda t: edit_bias(t, index, edit)))
                header, start = headers[path]
                _rewrite(partial / path.name, path, name, start, header[name]["data_offsets"], update)
        write_provenance(partial, edit_provenance(info, arch, mask, edit, method="streamed"), mask)

    return write_checkpoint_folder(out, overwrite, fill)
