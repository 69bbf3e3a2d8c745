"""lm-eval's ``HFLM`` with log-likelihoods at the cost of the decoder's forward pass.

- ``LeanHFLM(pretrained=model, tokenizer=tokenizer, batch_size=8)``: an ``HFLM`` (same tokenization, same
  requests, same ``(log-prob, is-greedy)`` answers within float tolerance — tested against ``HFLM``) whose
  ``_loglikelihood_tokens`` of a decoder-only model
  - runs each distinct forward row once (``(context + continuation)[:-1]``, left-truncated to ``max_length``;
    the choices of a multiple-choice question whose continuations end one token apart share it);
  - sorts the rows by length and right-pads up to ``batch_size`` rows at a time, as ``HFLM`` does, but starts
    a new batch rather than pad a row by more than ``PADDING`` of the batch's width (a few long documents
    of different lengths each run alone: right-padding was ~20 % of the default's encyclopedia passages);
  - asks the model for logits only at the positions some continuation scores (``logits_to_keep``, which
    every ``*ForCausalLM`` of transformers takes: the LM head and any final soft-capping or scaling run there
    only; a model without it runs whole and is sliced);
  - takes the log-softmax of each row at its scored positions only (not over padding and context).
  ``loglikelihood`` / ``loglikelihood_rolling`` are ``HFLM``'s own and reach this. Forward hooks on the
  decoder layers (``fnet_dist.model.edit.edited``) act as before: only the head is computed at fewer positions.

On the default's sentiment snippets (~33 tokens a row) the head and the log-softmax over SmolLM2's 49,152
tokens at every position were ~a third of ``HFLM``'s time (``benchmarks/evaluate.py``).
"""
from __future__ import annotations

import inspect
from typing import Sequence

import torch
import torch.nn.functional as F
from lm_eval.models.huggingface import HFLM

__all__ = ["LeanHFLM", "PADDING"]

PADDING = 1 / 8  # the most of a batch's width a row may be padded by (CPU: rows of 4-16 run alike per token)

Request = tuple[tuple[str, str] | None, list[int], list[int]]  # (strings, context tokens, continuation tokens)


class LeanHFLM(HFLM):
    """``HFLM`` that runs each distinct row once and the LM head only at scored positions."""

    def _keeps_logits(self) -> bool:
        """Whether the model's forward takes ``logits_to_keep`` (checked once)."""
        if not hasattr(self, "_logits_to_keep"):
            self._logits_to_keep = "logits_to_keep" in inspect.signature(self.model.forward).parameters
        return self._logits_to_keep

    def _logits(self, ids: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """Logits ``(rows, len(keep), vocab)`` of ``ids`` ``(rows, width)`` at positions ``keep``."""
        if self._keeps_logits():
            with torch.no_grad(), torch.autocast(device_type=self.device.type, dtype=self.mixed_precision_dtype,
                                                 enabled=self.mixed_precision_dtype is not None):
                logits = self.model(ids, logits_to_keep=keep).logits
            if logits.shape[1] == len(keep):
                return logits
            self._logits_to_keep = False  # e.g. virtual tokens of prompt tuning: the whole path from here on
        logits = self._model_call(ids)
        return logits[:, keep + (logits.shape[1] - ids.shape[1])]  # HFLM's offset for virtual tokens

    def _loglikelihood_tokens(self, requests: Sequence[Request], disable_tqdm: bool = False,
                              override_bs: int | None = None) -> list[tuple[float, bool]]:
        """``(sum of log-probs of the continuation, whether it is the greedy one)`` for each request, in order."""
        if self.backend != "causal" or not isinstance(self.batch_size, int):
            return super()._loglikelihood_tokens(requests, disable_tqdm=disable_tqdm, override_bs=override_bs)
        rows: dict[tuple[int, ...], list[int]] = {}  # row tokens -> indices of the requests it scores
        for index, (_, context, continuation) in enumerate(requests):
            if not context or not continuation or len(continuation) > self.max_length:
                raise ValueError(f"request {index}: context and continuation must be non-empty and the "
                                 f"continuation at most {self.max_length} tokens")
            rows.setdefault(tuple((context + continuation)[-(self.max_length + 1):][:-1]), []).append(index)
        answers: list[tuple[float, bool] | None] = [None] * len(requests)
        ordered = sorted(rows, key=lambda row: (-len(row), row))
        for batch in _batches(ordered, self.batch_size):
            width = len(batch[0])
            ids = torch.tensor([list(row) + [0] * (width - len(row)) for row in batch], dtype=torch.long,
                               device=self.device)
            depth = [max(len(requests[i][2]) for i in rows[row]) for row in batch]  # scored positions per row
            scored = sorted({p for row, d in zip(batch, depth) for p in range(len(row) - d, len(row))})
            column = {p: c for c, p in enumerate(scored)}
            logits = self._logits(ids, torch.tensor(scored, dtype=torch.long, device=self.device))
            for b, (row, d) in enumerate(zip(batch, depth)):
                at = torch.tensor([column[p] for p in range(len(row) - d, len(row))], device=self.device)
                logprobs = F.log_softmax(logits[b, at], dim=-1, dtype=self.softmax_dtype)  # (d, vocab)
                greedy = logprobs.argmax(dim=-1)
                for index in rows[row]:
                    tokens = torch.tensor(requests[index][2], dtype=torch.long, device=self.device)
                    k = len(tokens)
                    picked = torch.gather(logprobs[d - k:], 1, tokens[:, None]).squeeze(-1)
                    answers[index] = (float(picked.sum()), bool((greedy[d - k:] == tokens).all()))
        return answers


def _batches(rows: list[tuple[int, ...]], size: int) -> list[list[tuple[int, ...]]]:
    """``rows`` (longest first) cut into batches of at most ``size``, none padding a row by more than ``PADDING``."""
    batches: list[list[tuple[int, ...]]] = []
    for row in rows:
        if batches and len(batches[-1]) < size and len(row) >= (1 - PADDING) * len(batches[-1][0]):
            batches[-1].append(row)
        else:
            batches.append([row])
    return batches
