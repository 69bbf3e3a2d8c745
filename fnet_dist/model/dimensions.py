"""A model's size without loading it: what a run's stores will hold can be estimated before any weights load.

- ``model_dimensions(section) -> (n_layers, d_model) | None``: from a local folder's ``config.json``, a GGUF
  file's header (the packaged default's too), or a hub model's ``config.json`` already in the local cache;
  None when none of these is at hand (nothing is downloaded).
- ``KNOWN_SHAPES``: (n_layers, d_model) of the architectures the paper and the docs name; ``parse_shape(text)``: a
  known name, ``LAYERSxWIDTH``, a transformers ``config.json`` (file or folder) or any model spec above, as
  (n_layers, d_model) — what ``fnet plant`` builds a store for.

The GGUF header is read key by key up to the two it needs (``{arch}.block_count``, ``{arch}.embedding_length``),
not through a reader that maps every tensor.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any, BinaryIO

from ..core.config import ModelSection
from ..core.errors import InputError
from ..core.offline import smollm2_gguf
from .loading import DEFAULT_MODEL, resolve_source

__all__ = ["KNOWN_SHAPES", "model_dimensions", "parse_shape"]

KNOWN_SHAPES = {  # the hub configs' num_hidden_layers × hidden_size
    "gpt2": (12, 768),
    "smollm2-135m": (30, 576),
    "smollm2-360m": (32, 960),
    "smollm2-1.7b": (24, 2048),
    "qwen2.5-3b": (36, 2048),
    "qwen2.5-7b": (28, 3584),
    "chatglm3-6b": (28, 4096),
    "llama-3-8b": (32, 4096),
    "llama-3-70b": (80, 8192),
}
_LAYER_KEYS = ("num_hidden_layers", "n_layer", "num_layers", "n_layers")
_WIDTH_KEYS = ("hidden_size", "n_embd", "d_model", "dim")
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9


def _from_config(config: dict[str, Any]) -> tuple[int, int] | None:
    for part in (config, config.get("text_config") or {}):
        layers = next((part[k] for k in _LAYER_KEYS if isinstance(part.get(k), int)), None)
        width = next((part[k] for k in _WIDTH_KEYS if isinstance(part.get(k), int)), None)
        if layers and width:
            return int(layers), int(width)
    return None


def _read(handle: BinaryIO, fmt: str) -> Any:
    size = struct.calcsize(fmt)
    data = handle.read(size)
    if len(data) != size:
        raise EOFError("the GGUF header ends early")
    return struct.unpack(fmt, data)[0]


def _value(handle: BinaryIO, kind: int) -> Any:
    if kind in _SCALARS:
        return _read(handle, _SCALARS[kind])
    if kind == _STRING:
        return handle.read(_read(handle, "<Q")).decode("utf-8", errors="replace")
    if kind == _ARRAY:
        item, count = _read(handle, "<I"), _read(handle, "<Q")
        if item in _SCALARS:  # skipped whole: a vocabulary's scores are long
            handle.seek(count * struct.calcsize(_SCALARS[item]), 1)
        else:
            for _ in range(count):
                _value(handle, item)
        return None
    raise ValueError(f"unknown GGUF value type {kind}")


def _from_gguf(path: Path) -> tuple[int, int] | None:
    """(block_count, embedding_length) from a GGUF file's key-value header."""
    with open(path, "rb") as handle:
        if handle.read(4) != b"GGUF":
            return None
        _read(handle, "<I")  # version
        _read(handle, "<Q")  # tensors
        found: dict[str, Any] = {}
        for _ in range(_read(handle, "<Q")):
            key = handle.read(_read(handle, "<Q")).decode("utf-8", errors="replace")
            found[key] = _value(handle, _read(handle, "<I"))
            arch = found.get("general.architecture")
            if arch and isinstance(found.get(f"{arch}.block_count"), int) and isinstance(
                    found.get(f"{arch}.embedding_length"), int):
                return found[f"{arch}.block_count"], found[f"{arch}.embedding_length"]
    return None


def _cached_hub_config(model_id: str, revision: str | None) -> dict[str, Any] | None:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    path = try_to_load_from_cache(model_id, "config.json", revision=revision)
    return json.loads(Path(path).read_text()) if isinstance(path, str) else None


def model_dimensions(section: ModelSection) -> tuple[int, int] | None:
    """(n_layers, d_model) of ``section``'s model, read without loading it; None when unknown here.

    A model spec that cannot name a model (a missing folder or file) raises the loader's own ``InputError``. The
    packaged default is read from its GGUF file's header, so that asking does not convert it."""
    try:
        if section.id.lower() == DEFAULT_MODEL:
            return _from_gguf(smollm2_gguf())
        source = resolve_source(section.id)
        if source.gguf_file:
            return _from_gguf(Path(source.path) / source.gguf_file)
        if source.local:
            return _from_config(json.loads((Path(source.path) / "config.json").read_text()))
        config = _cached_hub_config(source.path, section.revision)
        return _from_config(config) if config else None
    except InputError:
        raise
    except (OSError, ValueError, EOFError, struct.error) as exc:
        raise InputError(f"model {section.id!r}: its configuration cannot be read ({exc}); check the model files") from None


def parse_shape(text: str) -> tuple[int, int]:
    """(n_layers, d_model) of ``text``: a name of ``KNOWN_SHAPES``, ``LAYERSxWIDTH`` (``28x3584``), a transformers
    ``config.json`` file or a folder holding one, or a model spec ``model_dimensions`` reads; an ``InputError``
    naming the choices otherwise."""
    name = str(text).strip()
    if name.lower() in KNOWN_SHAPES:
        return KNOWN_SHAPES[name.lower()]
    layers, times, width = name.lower().partition("x")
    if times and layers.isdigit() and width.isdigit():
        if int(layers) < 1 or int(width) < 2:
            raise InputError(f"shape {name!r}: expected at least 1 layer and 2 neurons per layer, e.g. 28x3584")
        return int(layers), int(width)
    path = Path(name).expanduser()
    if path.is_file():
        try:
            found = _from_config(json.loads(path.read_text()))
        except (OSError, ValueError) as exc:
            raise InputError(f"shape {name!r}: the config file cannot be read ({exc})") from None
        if found is None:
            raise InputError(f"shape {name!r}: the config has no layer count ({', '.join(_LAYER_KEYS)}) and width "
                             f"({', '.join(_WIDTH_KEYS)}); give LAYERSxWIDTH instead")
        return found
    found = None
    if path.is_dir():
        found = model_dimensions(ModelSection(id=str(path)))
    if found is None:
        raise InputError(f"unknown model shape {name!r}: expected one of {', '.join(KNOWN_SHAPES)}, LAYERSxWIDTH "
                         f"(e.g. 28x3584), or a transformers config.json (file or folder)")
    return found
