"""Edit a model's neurons in your own code: ``with fnet.inhibit(model, mask): model(...)``.

- ``inhibit(model, mask)``, ``amplify(model, mask, factor=None)``, ``add(model, mask, value)``, ``edit(model, mask,
  edit)``: context managers; inside, every forward pass has ``mask``'s MLP-block output channels set to 0,
  multiplied by ``factor`` (default the run config's ``evaluate.amplify_factor``, the paper's 1.02) or shifted by
  ``value``; the hooks are removed on exit, also when the body raises.

``model`` is a Hugging Face causal LM (``AutoModelForCausalLM``), or a ``LoadedModel`` from ``fnet.load_model``; its
architecture is resolved from ``model.config.model_type`` (``hook_module="model.layers.{i}.mlp"`` for a family fnet
does not know). ``mask`` is a ``NeuronMask`` (``run.mask("news/5")``) or a boolean array of shape
``(n_layers, d_model)``. A model loaded with ``device_map`` (layers on several GPUs, the CPU or disk) is edited in
place the same way: each layer's edit vector follows that layer's output to its device.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from ..core.config import EvaluateSection
from ..model.architectures import resolve_architecture
from ..model.edit import Edit, edited
from ..model.masks import NeuronMask

__all__ = ["add", "amplify", "edit", "inhibit"]


def _torch_model(model: Any) -> Any:
    """The ``torch.nn.Module`` of a ``LoadedModel`` or the module itself."""
    return model if hasattr(model, "register_forward_hook") else model.model


def _mask(mask: Any) -> NeuronMask:
    return mask if isinstance(mask, NeuronMask) else NeuronMask(np.asarray(mask, dtype=bool), "mask")


@contextmanager
def edit(model: Any, mask: Any, how: Edit, *, hook_module: str | None = None) -> Iterator[Any]:
    """Apply ``how`` (an ``Edit``) to ``mask``'s channels inside the ``with`` block; yields the torch model."""
    module = _torch_model(model)
    with edited(module, resolve_architecture(module, hook_module), _mask(mask), how):
        yield module


def inhibit(model: Any, mask: Any, *, hook_module: str | None = None):
    """Set ``mask``'s channels (``(n_layers, d_model)``) to 0 inside the ``with`` block."""
    return edit(model, mask, Edit("inhibit"), hook_module=hook_module)


def amplify(model: Any, mask: Any, factor: float | None = None, *, hook_module: str | None = None):
    """Multiply ``mask``'s channels by ``factor`` (default ``evaluate.amplify_factor``) inside the ``with`` block."""
    factor = EvaluateSection().amplify_factor if factor is None else factor
    return edit(model, mask, Edit("multiply", factor), hook_module=hook_module)


def add(model: Any, mask: Any, value: float, *, hook_module: str | None = None):
    """Add ``value`` to ``mask``'s channels inside the ``with`` block."""
    return edit(model, mask, Edit("add", value), hook_module=hook_module)
