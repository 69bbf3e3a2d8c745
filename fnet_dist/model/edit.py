"""Edit the neurons of a mask while a model runs: inhibit (× 0), multiply by a factor, or add a value.

- ``Edit(kind, value, site)``: what to do to each masked channel (validated on creation), and where: ``mlp`` (each
  layer's MLP-block output, the neurons ICA finds) or ``residual`` (each decoder layer's output, the units LLM
  Localization selects and ablates: ``hidden *= 1 - mask[layer]`` after every layer).
- ``edited(model, arch, mask, edit)``: a context manager; forward hooks on each layer's block output (or the layer
  itself for ``residual``) apply the edit on every forward pass inside it and are always removed on exit.
- ``model_shape(model, arch)``: ``(n_layers, d_model)``, the shape a mask for ``model`` must have.

The same edit written into the weights: ``fnet_dist.model.bake`` (in memory, and ``bake_checkpoint``, the entry
point), ``fnet_dist.model.bake_stream`` (shard by shard), ``fnet_dist.model.weights`` (the tensor edits both
share), ``fnet_dist.model.checkpoint`` (a baked checkpoint's folder and provenance).
"""
from __future__ import annotations

import dataclasses
import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterator, Literal

import numpy as np

from ..core.errors import InputError
from .architectures import Architecture, block_output_modules
from .masks import NeuronMask

if TYPE_CHECKING:
    import torch

__all__ = ["EDIT_KINDS", "EDIT_SITES", "Edit", "edited", "model_shape", "require_weight_site"]

EDIT_KINDS = ("inhibit", "multiply", "add")
EDIT_SITES = ("mlp", "residual")


@dataclass(frozen=True)
class Edit:
    """``inhibit`` sets a channel to 0; ``multiply`` scales it by ``value``; ``add`` adds ``value``; ``site``: the
    channels of each layer's MLP-block output (``mlp``) or of its residual-stream output (``residual``)."""

    kind: Literal["inhibit", "multiply", "add"] = "inhibit"
    value: float = 1.02
    site: Literal["mlp", "residual"] = "mlp"

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
        if self.site not in EDIT_SITES:
            raise InputError(f"edit site {self.site!r} is unknown; expected one of {', '.join(EDIT_SITES)}")

    def describe(self) -> str:
        what = {"inhibit": "inhibit", "multiply": f"multiply x{self.value:g}", "add": f"add {self.value:+g}"}[self.kind]
        return what if self.site == "mlp" else f"{what} (residual stream)"

    def to_dict(self) -> dict:
        """``{"kind", "value"}`` (value ``None`` for inhibit, which ignores it), and ``"site"`` unless ``mlp``."""
        found = {"kind": self.kind, "value": None if self.kind == "inhibit" else self.value}
        return found if self.site == "mlp" else found | {"site": self.site}


def require_weight_site(edit: Edit) -> None:
    """Refuse an edit no weight can carry: a residual-stream channel is the sum of every earlier block's output."""
    if edit.site != "mlp":
        raise InputError(f"a {edit.site}-stream edit cannot be written into the weights (each residual channel sums "
                         f"every earlier layer's output); apply it with hooks (fnet evaluate --backend hf)")


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
    import torch

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
    """Apply ``edit`` to ``mask``'s channels of every layer's block output (``edit.site`` ``residual``: of every
    decoder layer's output) on each forward pass inside.

    mask : NeuronMask of shape (n_layers, d_model) (checked against the model). Layers without a masked
    neuron get no hook. The hooks are removed on exit, also when the body raises.
    """
    if not isinstance(edit, Edit):
        raise InputError(f"edit must be an Edit, got {type(edit).__name__}")
    mask.check_shape(*model_shape(model, arch))
    modules = block_output_modules(model, arch if edit.site == "mlp" else dataclasses.replace(arch, block_output=""))
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
