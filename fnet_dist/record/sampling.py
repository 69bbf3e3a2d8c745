"""The record stage's choice of samples: a seeded walk over a corpus's texts (records: ``fnet_dist.core.corpora``).

- ``select_samples(texts, tokenizer, group=, individual=, max_tokens=, min_tokens=, seed=, pack_to_tokens=)
  -> Selection``: tokenizes texts, cuts them to ``max_tokens`` tokens, skips (and counts) those under
  ``min_tokens``, and keeps disjoint group and individual sets, group first. With ``pack_to_tokens`` N > 0, a text
  of fewer than N tokens is joined (by a newline) with the texts that follow it in the corpus until the sample has
  N tokens; a pack that meets a text already used or the corpus end is skipped and counted.
- ``shuffle_tokens(selection, seed) -> Selection``: the corpus control of a null-model run — each sample's tokens
  after the first in a seeded random order (token statistics kept, sequence structure destroyed; the first token
  stays first, so the attention sink every sequence has at position 0 stays as in the real text).
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Sequence

import numpy as np

from ..core.corpora import Sample, Selection
from ..core.errors import InputError

__all__ = ["select_samples", "shuffle_tokens"]

_CHARS_PER_TOKEN_BOUND = 12  # tokenize a prefix of this many characters per token before the whole text
_TOKENIZE_BLOCK = 64


def _tokenize_cut(tokenizer: Any, texts: list[str], max_tokens: int) -> list[tuple[list[int], str]]:
    """Each text's first ``max_tokens`` token ids and the text they cover.

    A character prefix is tokenized first; the whole text only when the prefix gives too few tokens
    (a margin of 8 keeps the kept tokens clear of the cut).
    """
    limit = max_tokens * _CHARS_PER_TOKEN_BOUND
    out: list[tuple[list[int], str] | None] = [None] * len(texts)
    todo = list(range(len(texts)))
    for prefix in (True, False):
        batch = [texts[i][:limit] if prefix else texts[i] for i in todo]
        if not batch:
            break
        enc = tokenizer(batch, add_special_tokens=True, return_offsets_mapping=bool(getattr(tokenizer, "is_fast", False)))
        retry = []
        for k, i in enumerate(todo):
            ids = enc["input_ids"][k]
            if prefix and len(texts[i]) > limit and len(ids) < max_tokens + 8:
                retry.append(i)
                continue
            ids = ids[:max_tokens]
            out[i] = (ids, _covered_text(tokenizer, texts[i], ids, enc, k))
        todo = retry
    return out  # type: ignore[return-value]


def _covered_text(tokenizer: Any, text: str, ids: list[int], enc: Any, k: int) -> str:
    offsets = enc.get("offset_mapping") if hasattr(enc, "get") else None
    if offsets is not None:
        ends = [end for _, end in offsets[k][: len(ids)] if end]
        return text[: max(ends)] if ends else ""
    return tokenizer.decode(ids, skip_special_tokens=True)


def select_samples(
    texts: Sequence[str],
    tokenizer: Any,
    *,
    group: int,
    individual: int,
    max_tokens: int,
    min_tokens: int,
    seed: int,
    pack_to_tokens: int,
    corpus: str = "corpus",
) -> Selection:
    """Walk ``texts`` in a seeded random order; keep ``group`` then ``individual`` texts of ≥ ``min_tokens`` tokens.

    Texts are cut to ``max_tokens`` tokens (special tokens the tokenizer adds included). Texts met on
    the walk with fewer tokens are skipped and counted; the walk stops once both sets are full.
    ``pack_to_tokens`` > 0 (``record.pack_to_tokens`` resolved) packs short texts with the ones after them (see the
    module docstring); 0: one text per sample.
    """
    if pack_to_tokens:
        return _select_packed(texts, tokenizer, group=group, individual=individual, max_tokens=max_tokens,
                              min_tokens=min_tokens, seed=seed, corpus=corpus, target=pack_to_tokens)
    wanted = group + individual
    order = np.random.default_rng(seed).permutation(len(texts))
    kept: list[tuple[int, list[int], str]] = []
    skipped = 0
    for start in range(0, len(order), _TOKENIZE_BLOCK):
        block = [int(i) for i in order[start:start + _TOKENIZE_BLOCK]]
        nonempty = [i for i in block if texts[i].strip()]
        cut = dict(zip(nonempty, _tokenize_cut(tokenizer, [texts[i] for i in nonempty], max_tokens)))
        for index in block:
            if len(kept) == wanted:
                break
            if index not in cut or len(cut[index][0]) < min_tokens:
                skipped += 1
                continue
            kept.append((index, *cut[index]))
        if len(kept) == wanted:
            break
    _check_enough(len(kept), wanted, skipped, len(texts), corpus, min_tokens)
    samples = tuple(
        Sample(position, index, "group" if position < group else "individual", np.asarray(ids, dtype=np.int32), text)
        for position, (index, ids, text) in enumerate(kept)
    )
    return Selection(samples, skipped, len(texts), 0)


def _select_packed(texts: Sequence[str], tokenizer: Any, *, group: int, individual: int, max_tokens: int,
                   min_tokens: int, seed: int, corpus: str, target: int) -> Selection:
    """``select_samples`` with packing: each walk step starts a sample at an unused text (corpus order after it)."""
    if not isinstance(target, (int, np.integer)) or target < 0 or target > max_tokens:
        raise InputError(f"pack_to_tokens {target!r} must lie between 0 (off) and max_tokens {max_tokens}; "
                         f"raise record.max_tokens or lower record.pack_to_tokens")
    wanted, need = group + individual, max(int(target), min_tokens)
    used = np.zeros(len(texts), dtype=bool)
    kept: list[tuple[int, list[int], str, int]] = []
    skipped = 0
    for start in np.random.default_rng(seed).permutation(len(texts)):
        if len(kept) == wanted:
            break
        start = int(start)
        if used[start]:
            continue
        if not texts[start].strip():
            skipped += 1
            continue
        end, joined = start + 1, texts[start]
        ids, text = _tokenize_cut(tokenizer, [joined], max_tokens)[0]
        while len(ids) < need and end < len(texts) and not used[end]:
            joined, end = f"{joined}\n{texts[end]}" if texts[end].strip() else joined, end + 1
            ids, text = _tokenize_cut(tokenizer, [joined], max_tokens)[0]
        if len(ids) < need:
            skipped += 1  # the corpus end or a used text came first: this start is counted, not kept
            continue
        used[start:end] = True
        kept.append((start, ids, text, end - start))
    _check_enough(len(kept), wanted, skipped, len(texts), corpus, need, packed=True)
    samples = tuple(
        Sample(position, index, "group" if position < group else "individual", np.asarray(ids, dtype=np.int32), text, n)
        for position, (index, ids, text, n) in enumerate(kept)
    )
    return Selection(samples, skipped, len(texts), int(target))


def _check_enough(kept: int, wanted: int, skipped: int, total: int, corpus: str, min_tokens: int, packed: bool = False) -> None:
    if packed and kept < wanted:
        raise InputError(
            f"corpus {corpus!r} gives {kept} samples of ≥ {min_tokens} tokens when texts are packed ({skipped} starts "
            f"too short, {total} texts), fewer than the {wanted} asked for; lower --group-samples / "
            f"--individual-samples or record.pack_to_tokens"
        )
    if kept == 0:
        raise InputError(
            f"every text of corpus {corpus!r} is shorter than --min-tokens {min_tokens} ({skipped} of {total} skipped); "
            f"lower --min-tokens or use longer texts"
        )
    if kept < wanted:
        raise InputError(
            f"corpus {corpus!r} has {kept} texts of ≥ {min_tokens} tokens ({skipped} of {total} too short), "
            f"fewer than the {wanted} asked for; lower --group-samples / --individual-samples or --min-tokens"
        )


def shuffle_tokens(selection: Selection, seed: int) -> Selection:
    """``selection`` with each sample's tokens after the first permuted (seeded by ``seed`` and the sample's place in
    the store, so shards and reruns shuffle alike); a sample's ``text`` notes that its tokens are shuffled."""
    samples = []
    for sample in selection.samples:
        ids = np.array(sample.token_ids, copy=True)
        ids[1:] = np.random.default_rng([seed, 3571, sample.position]).permutation(ids[1:])
        samples.append(replace(sample, token_ids=ids, text=f"[tokens shuffled] {sample.text}"))
    return replace(selection, samples=tuple(samples))
