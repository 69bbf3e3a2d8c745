"""Capture each decoder layer's MLP-block output in one forward pass.

- ``capture_block_outputs(model, arch, layers=None) -> BlockCapture``: a context manager; inside it,
  every forward pass stores ``capture.outputs[i]``, layer i's block output of shape
  ``(batch, tokens, d_model)`` (detached, on that layer's device, in the model's dtype).
- ``BlockCapture.stacked()``: the captured layers as one tensor ``(batch, tokens, n_layers, d_model)``.

Hooks are always removed on exit, also when the forward pass raises.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

from .architectures import Architecture, block_output_modules

if TYPE_CHECKING:
    import torch

__all__ = ["BlockCapture", "capture_block_outputs", "first_tensor"]


def first_tensor(output: object) -> torch.Tensor:
    """A module's output tensor (the first element when it returns a tuple)."""
    return output[0] if isinstance(output, (tuple, list)) else output  # type: ignore[return-value]


class BlockCapture:
    """Block outputs of the last forward pass, by layer index."""

    def __init__(self, layers: Sequence[int]) -> None:
        self.layers = list(layers)
        self.outputs: dict[int, torch.Tensor] = {}

    def hook(self, index: int) -> Callable:
        def store(_module: torch.nn.Module, _inputs: object, output: object) -> None:
            self.outputs[index] = first_tensor(output).detach()

        return store

    def stacked(self) -> torch.Tensor:
        """``(batch, tokens, n_layers, d_model)`` of the captured layers in order."""
        import torch

        missing = [i for i in self.layers if i not in self.outputs]
        if missing:
            raise RuntimeError(f"no block output captured for layers {missing}: was the model run inside the context?")
        device = self.outputs[self.layers[0]].device  # layers of a model split by device_map sit on several
        return torch.stack([self.outputs[i].to(device) for i in self.layers], dim=2)

    def clear(self) -> None:
        self.outputs.clear()


@contextmanager
def capture_block_outputs(
    model: torch.nn.Module, arch: Architecture, layers: Sequence[int] | None = None
) -> Iterator[BlockCapture]:
    """Record the block output of ``layers`` (default all) on every forward pass inside the context."""
    modules = block_output_modules(model, arch)
    chosen = list(range(len(modules))) if layers is None else list(layers)
    capture = BlockCapture(chosen)
    handles = []
    try:
        for index in chosen:
            handles.append(modules[index].register_forward_hook(capture.hook(index)))
        yield capture
    finally:
        for handle in handles:
            handle.remove()
