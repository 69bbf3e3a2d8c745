"""Forward passes that return block outputs: the recording stage's batches and one text's tokens.

- ``layer_outputs(loaded, arch, ids, mask) -> list[Tensor]``: the decoder (no LM head) on a padded batch
  ``ids`` (batch, tokens) with ``mask``; each layer's block output ``(batch, tokens, d_model)`` (model dtype,
  on that layer's device).
- ``trace_text(loaded, ids, hook_module=None) -> ndarray``: one unpadded sequence's block outputs as float32
  ``(n_tokens, n_layers, d_model)``, as the recording stage sees them.
- ``tokenize_text(tokenizer, text, max_tokens) -> (ids, pieces, spans)``: token ids with each token's piece of
  ``text`` and its (start, end) span (None for special tokens or where the tokenizer gives no offsets).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from .architectures import resolve_architecture
from .hooks import capture_block_outputs

if TYPE_CHECKING:
    import torch

__all__ = ["layer_outputs", "tokenize_text", "trace_text"]


def layer_outputs(loaded: Any, arch: Any, ids: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
    """Run the decoder (no LM head) on a padded batch; returns each layer's ``(batch, tokens, d_model)`` output."""
    import torch

    decoder = getattr(loaded.model, "base_model", loaded.model)
    with torch.inference_mode(), capture_block_outputs(loaded.model, arch) as capture:
        decoder(input_ids=ids, attention_mask=mask, use_cache=False)
        return [capture.outputs[i] for i in capture.layers]


def trace_text(loaded: Any, ids: Sequence[int], hook_module: str | None = None) -> np.ndarray:
    """Block outputs of one forward pass over ``ids``: ``(n_tokens, n_layers, d_model)`` float32 on the host.

    ``hook_module``: the block-output pattern (``"model.layers.{i}.mlp"``) for a family not in the registry.
    """
    import torch

    arch = resolve_architecture(loaded.model, hook_module)
    tokens = torch.tensor([list(ids)], device=loaded.device)
    outputs = layer_outputs(loaded, arch, tokens, torch.ones_like(tokens))
    device = outputs[0].device  # layers of a model split by device_map sit on several
    return torch.stack([out.to(device) for out in outputs], dim=2)[0].float().cpu().numpy()


def tokenize_text(tokenizer: Any, text: str, max_tokens: int) -> tuple[list[int], list[str], list[tuple[int, int] | None]]:
    """Token ids, pieces and spans, from the tokenizer's offsets where it has them."""
    fast = bool(getattr(tokenizer, "is_fast", False))
    encoded = tokenizer(text, truncation=True, max_length=max_tokens, return_offsets_mapping=fast)
    ids = list(encoded["input_ids"])
    special = set(getattr(tokenizer, "all_special_ids", []))
    pieces, spans = [], []
    for index, token_id in enumerate(ids):
        if fast and token_id not in special:
            start, end = (int(v) for v in encoded["offset_mapping"][index])
            spans.append((start, end))
            pieces.append(text[start:end])
        else:
            spans.append(None)
            pieces.append(tokenizer.convert_ids_to_tokens(token_id) if token_id in special else tokenizer.decode([token_id]))
    return ids, pieces, spans
