"""Per-text features from a model's hidden states, for the localizer and for linear probing.

- ``POOLINGS``: ``last`` (the last real token) and ``mean`` (mean over real tokens).
- ``pool(states, attention_mask, pooling)``: ``(batch, tokens, ...)`` -> ``(batch, ...)``.
- ``residual_features(model, tokenizer, arch, texts, ..., site="residual")``: each decoder layer's output (the
  residual stream; ``site="mlp"``: each layer's MLP-block output), ``ndarray (n_texts, n_layers, d_model)``.
- ``final_features(model, tokenizer, texts, ...)``: the last hidden state the LM head reads,
  ``ndarray (n_texts, d_model)``.
  Both take ``pooling="last"|"mean"``, or several poolings at once (one pass) -> ``{pooling: ndarray}``.

Texts are run in batches, right-padded, truncated to ``max_tokens``, through the decoder without its LM
head (``model.base_model``); padding never enters a feature.
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from ..core.errors import InputError
from ..model.hooks import capture_block_outputs

if TYPE_CHECKING:
    import torch

__all__ = ["POOLINGS", "final_features", "pool", "residual_features"]

POOLINGS = ("last", "mean")


def pool(states: torch.Tensor, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """Pool ``states`` of shape ``(batch, tokens, ...)`` over the real tokens of ``attention_mask`` (batch, tokens)."""
    import torch

    if pooling == "last":
        last = attention_mask.sum(dim=1).clamp(min=1) - 1
        return states[torch.arange(states.shape[0], device=states.device), last]
    if pooling == "mean":
        weights = attention_mask.to(states.dtype).reshape(*attention_mask.shape, *([1] * (states.dim() - 2)))
        return (states * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1)
    raise InputError(f"unknown pooling {pooling!r}; expected one of {', '.join(POOLINGS)}")


def _run(model, tokenizer, texts: Sequence[str], max_tokens: int, batch_size: int,
         extract: Callable[[object], torch.Tensor], pooling: str | Sequence[str]):
    """Pooled features per text: one array, or ``{pooling: array}`` when several poolings are asked for."""
    import torch

    poolings = (pooling,) if isinstance(pooling, str) else tuple(pooling)
    for name in poolings:
        if name not in POOLINGS:
            raise InputError(f"unknown pooling {name!r}; expected one of {', '.join(POOLINGS)}")
    if not texts:
        raise InputError("no texts to encode; give at least one")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    device = next(model.parameters()).device
    decoder = getattr(model, "base_model", model)  # no LM head: most of a small model's cost, not needed here
    chunks: dict[str, list[np.ndarray]] = {name: [] for name in poolings}
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(list(texts[start:start + batch_size]), return_tensors="pt", padding=True,
                              truncation=True, max_length=max_tokens).to(device)
            states = extract(decoder(**batch))
            for name in poolings:
                chunks[name].append(pool(states, batch["attention_mask"], name).float().cpu().numpy())
    arrays = {name: np.concatenate(parts) for name, parts in chunks.items()}
    return arrays[pooling] if isinstance(pooling, str) else arrays


def residual_features(model, tokenizer, arch, texts: Sequence[str], *, max_tokens: int, batch_size: int,
                      pooling: str | Sequence[str] = "last", site: str = "residual"):
    """Decoder-layer outputs (``site="mlp"``: MLP-block outputs) pooled per text: ``(n_texts, n_layers, d_model)``
    (a dict of them for several poolings)."""
    # residual: the layer itself, whose output is the residual stream
    layers_arch = dataclasses.replace(arch, block_output="") if site == "residual" else arch
    with capture_block_outputs(model, layers_arch) as capture:
        def extract(_output):
            return capture.stacked()

        return _run(model, tokenizer, texts, max_tokens, batch_size, extract, pooling)


def final_features(model, tokenizer, texts: Sequence[str], *, max_tokens: int, batch_size: int,
                   pooling: str | Sequence[str] = "last"):
    """The final hidden state (after the last norm, what the LM head reads) pooled per text: ``(n_texts, d_model)``
    (a dict of them for several poolings)."""
    def extract(output):
        return output.last_hidden_state

    return _run(model, tokenizer, texts, max_tokens, batch_size, extract, pooling)
