"""The tensor edits both bake paths share (``fnet_dist.model.bake`` in memory, ``fnet_dist.model.bake_stream`` shard
by shard): an ``Edit`` of some output channels written into a bake module's weight and bias, in place.

- ``CHANNEL_DIM``: which weight dimension holds output channel j, per ``Architecture.bake_kind``:
  ``linear_rows`` (weight row j, bias j), ``conv1d_columns`` (GPT-2 ``Conv1D``: weight column j, bias j),
  ``norm_scale`` (norm weight j, bias j), ``norm_scale_plus_one`` (Gemma norms ``x·(1+w)``: ``w' = f·(1+w) − 1``,
  inhibit ``w' = −1``); ``add`` needs a bias (bias j += value).
- ``edit_weight(weight, kind, index, edit)`` / ``edit_bias(bias, index, edit)``: computed in float32, rounded once.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .edit import Edit

if TYPE_CHECKING:
    import torch

__all__ = ["CHANNEL_DIM", "edit_bias", "edit_weight"]

# which weight dimension holds output channel j, per bake kind
CHANNEL_DIM = {"linear_rows": 0, "conv1d_columns": 1, "norm_scale": 0, "norm_scale_plus_one": 0}


def _edit_channels(param: torch.Tensor, dim: int, index: torch.Tensor, update) -> None:
    """``param``'s slices ``index`` along ``dim`` replaced by ``update(slices)``, in place."""
    param.index_copy_(dim, index, update(param.index_select(dim, index)))


def edit_weight(weight: torch.Tensor, kind: str, index: torch.Tensor, edit: Edit) -> None:
    """Edit output channels ``index`` of a bake-module weight (``kind`` as in ``Architecture.bake_kind``), in
    place, computed in float32 and rounded once to the weight's dtype."""
    import torch

    f, plus_one = edit.value, kind == "norm_scale_plus_one"
    if edit.kind == "inhibit":
        _edit_channels(weight, CHANNEL_DIM[kind], index, lambda w: torch.full_like(w, -1.0 if plus_one else 0.0))
    elif edit.kind == "multiply":
        scale = (lambda w: f * (1 + w.float()) - 1) if plus_one else (lambda w: w.float() * f)
        _edit_channels(weight, CHANNEL_DIM[kind], index, lambda w: scale(w).to(w.dtype))


def edit_bias(bias: torch.Tensor, index: torch.Tensor, edit: Edit) -> None:
    """Edit entries ``index`` of a bake-module bias, in place (float32, rounded once)."""
    import torch

    f = edit.value
    update = {"inhibit": torch.zeros_like, "multiply": lambda b: (b.float() * f).to(b.dtype),
              "add": lambda b: (b.float() + f).to(b.dtype)}[edit.kind]
    _edit_channels(bias, 0, index, update)
