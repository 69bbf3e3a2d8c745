"""Where each decoder family keeps its MLP-block output: the tensor added to the residual stream.

- ``Architecture``: one family's module paths (decoder layers, block output, where to bake an edit).
- ``REGISTRY`` / ``register(arch)``: the known families, by ``config.model_type``.
- ``resolve_architecture(model, hook_module=None)``: the family of a loaded model, or one built from a
  ``--hook-module`` pattern such as ``"model.layers.{i}.mlp"``.
- ``block_output_modules(model, arch)``: one module per decoder layer whose forward output is the
  block output (shape ``(batch, tokens, d_model)``).
- ``decoder_layers(model, arch)``: the decoder layer modules (their output is the residual stream).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Literal

from ..core.errors import InputError

if TYPE_CHECKING:
    import torch

__all__ = [
    "Architecture",
    "REGISTRY",
    "UnsupportedArchitectureError",
    "block_output_modules",
    "decoder_layers",
    "get_module",
    "register",
    "resolve_architecture",
]

BakeKind = Literal["linear_rows", "conv1d_columns", "norm_scale", "norm_scale_plus_one", "none"]


class UnsupportedArchitectureError(InputError, LookupError):
    """The model's family is not in the registry and no ``--hook-module`` pattern was given."""


@dataclass(frozen=True)
class Architecture:
    """Module paths of one decoder family, relative to the loaded ``*ForCausalLM`` model.

    layers:        dotted path of the decoder layer list (``model.layers``).
    block_output:  path inside a layer of the module whose output is added to the residual stream.
    bake_module:   path inside a layer of the module to edit when baking a mask into the weights.
    bake_kind:     how an output channel ``j`` is scaled there:
                   ``linear_rows`` (``nn.Linear``: weight row j and bias j), ``conv1d_columns``
                   (GPT-2 ``Conv1D``: weight column j and bias j), ``norm_scale`` (norm weight j),
                   ``norm_scale_plus_one`` (Gemma norms compute ``x * (1 + w)``), ``none`` (hooks only).
    """

    name: str
    model_types: tuple[str, ...]
    layers: str
    block_output: str
    bake_module: str
    bake_kind: BakeKind

    def hook_pattern(self) -> str:
        return f"{self.layers}.{{i}}.{self.block_output}"


REGISTRY: dict[str, Architecture] = {}


def register(arch: Architecture) -> Architecture:
    """Add ``arch`` to the registry under each of its ``model_types``."""
    for model_type in arch.model_types:
        REGISTRY[model_type] = arch
    return arch


_LLAMA_LIKE = ("llama", "mistral", "qwen2", "qwen3", "phi3", "olmo", "granite", "stablelm", "smollm3", "cohere")
register(Architecture("llama-like", _LLAMA_LIKE, "model.layers", "mlp", "mlp.down_proj", "linear_rows"))
register(Architecture("gpt2", ("gpt2",), "transformer.h", "mlp", "mlp.c_proj", "conv1d_columns"))
register(Architecture("gpt-neox", ("gpt_neox",), "gpt_neox.layers", "mlp", "mlp.dense_4h_to_h", "linear_rows"))
register(Architecture("falcon", ("falcon",), "transformer.h", "mlp", "mlp.dense_4h_to_h", "linear_rows"))
register(Architecture("starcoder2", ("starcoder2",), "model.layers", "mlp", "mlp.c_proj", "linear_rows"))
register(
    Architecture(
        "gemma2/3",
        ("gemma2", "gemma3_text", "gemma3"),
        "model.layers",
        "post_feedforward_layernorm",
        "post_feedforward_layernorm",
        "norm_scale_plus_one",
    )
)
register(Architecture("gemma", ("gemma",), "model.layers", "mlp", "mlp.down_proj", "linear_rows"))
register(
    Architecture("olmo2", ("olmo2",), "model.layers", "post_feedforward_layernorm", "post_feedforward_layernorm", "norm_scale")
)
register(
    Architecture("chatglm", ("chatglm",), "transformer.encoder.layers", "mlp", "mlp.dense_4h_to_h", "linear_rows")
)


def get_module(root: torch.nn.Module, path: str) -> torch.nn.Module:
    """The submodule at dotted ``path`` (list indices as plain parts); ``LookupError(path)`` if absent."""
    try:
        return root.get_submodule(path)
    except AttributeError:
        raise LookupError(path) from None


def _model_type(model: torch.nn.Module) -> str:
    config = getattr(model, "config", None)
    return str(getattr(config, "model_type", type(model).__name__))


def _from_pattern(pattern: str) -> Architecture:
    if pattern.count("{i}") != 1 or not pattern.startswith(tuple("abcdefghijklmnopqrstuvwxyz_")):
        raise InputError(
            f"--hook-module {pattern!r} must be a dotted module path with one '{{i}}' for the layer index, "
            f"e.g. 'model.layers.{{i}}.mlp'"
        )
    layers, _, block = pattern.partition(".{i}")
    block = block.lstrip(".")
    if not block:
        raise InputError(f"--hook-module {pattern!r} names the decoder layer itself; add the block inside it, e.g. '.mlp'")
    return Architecture(f"pattern:{pattern}", (), layers, block, block, "none")


def resolve_architecture(model: torch.nn.Module, hook_module: str | None = None) -> Architecture:
    """The registry entry for ``model`` (by ``config.model_type``), or one built from ``hook_module``."""
    if hook_module:
        return _from_pattern(hook_module)
    model_type = _model_type(model)
    if model_type in REGISTRY:
        return REGISTRY[model_type]
    raise UnsupportedArchitectureError(
        f"architecture {model_type!r} is not in fnet's registry (known: {', '.join(sorted(REGISTRY))}); "
        f"pass --hook-module with the path of each layer's MLP block, e.g. 'model.layers.{{i}}.mlp', "
        f"or add an Architecture to fnet_dist/model/architectures.py"
    )


def decoder_layers(model: torch.nn.Module, arch: Architecture) -> list[torch.nn.Module]:
    """The decoder layers of ``model`` in order."""
    try:
        layers = get_module(model, arch.layers)
    except LookupError:
        raise UnsupportedArchitectureError(
            f"{type(model).__name__} has no module {arch.layers!r} expected for architecture {arch.name!r}; "
            f"pass --hook-module with the right path"
        ) from None
    if not isinstance(layers, Iterable):
        raise UnsupportedArchitectureError(f"{arch.layers!r} of {type(model).__name__} is not a list of layers")
    return list(layers)


def block_output_modules(model: torch.nn.Module, arch: Architecture) -> list[torch.nn.Module]:
    """One module per decoder layer whose output is that layer's MLP-block output."""
    modules = []
    for index, layer in enumerate(decoder_layers(model, arch)):
        try:
            modules.append(get_module(layer, arch.block_output))
        except LookupError:
            raise UnsupportedArchitectureError(
                f"layer {index} of {type(model).__name__} has no module {arch.block_output!r} "
                f"(architecture {arch.name!r}); pass --hook-module with the right path"
            ) from None
    return modules
