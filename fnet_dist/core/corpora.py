"""Corpora: where texts come from, and the seeded choice of the samples a recording uses.

- ``load_corpus(spec, text_field=) -> list[str]``: the texts of ``hf:NAME[:CONFIG][@SPLIT]``
  (``datasets.load_dataset``; NAME may be a hub id or a local dataset folder), a local or fsspec
  ``.txt`` (one text per line), ``.jsonl``, ``.csv`` or ``.parquet`` file (``text_field`` names the
  column), or ``offline:news|wiki|math|code`` (``fnet_dist.core.offline``). Index i is the corpus row i.
- ``select_samples(texts, tokenizer, group=, individual=, max_tokens=, min_tokens=, seed=, pack_to_tokens=)
  -> Selection``: a seeded walk over the corpus that tokenizes texts, cuts them to ``max_tokens`` tokens, skips
  (and counts) those under ``min_tokens``, and keeps disjoint group and individual sets, group first. With
  ``pack_to_tokens`` N > 0, a text of fewer than N tokens is joined (by a newline) with the texts that follow
  it in the corpus until the sample has N tokens; a pack that meets a text already used or the corpus end is
  skipped and counted.
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .errors import InputError
from .offline import domain_texts

__all__ = ["FILE_SUFFIXES", "Sample", "Selection", "load_corpus", "parse_hf_spec", "select_samples"]

FILE_SUFFIXES = (".txt", ".jsonl", ".csv", ".parquet")
_HELP = f"expected hf:NAME[:CONFIG][@SPLIT], offline:news|wiki|math|code, or a {'/'.join(FILE_SUFFIXES)} file"
_CHARS_PER_TOKEN_BOUND = 12  # tokenize a prefix of this many characters per token before the whole text
_TOKENIZE_BLOCK = 64


def parse_hf_spec(spec: str) -> tuple[str, str | None, str]:
    """``hf:NAME[:CONFIG][@SPLIT]`` -> (name, config or None, split; default ``train``)."""
    body = spec[len("hf:"):]
    body, at, split = body.rpartition("@") if "@" in body else (body, "", "train")
    name, _, config = body.partition(":")
    if not name or (at and not split):
        raise InputError(f"malformed corpus {spec!r}: expected hf:NAME[:CONFIG][@SPLIT], e.g. hf:wikitext:wikitext-2-raw-v1@test")
    return name, config or None, split


def _require_field(field: str, columns: Sequence[str], spec: str) -> None:
    if field not in columns:
        raise InputError(f"corpus {spec!r} has no field {field!r} (its fields: {', '.join(map(str, columns))}); pass --text-field")


def _as_texts(values: Sequence[Any]) -> list[str]:
    return ["" if v is None else str(v) for v in values]


def _load_hf(spec: str, field: str) -> list[str]:
    try:
        import datasets
    except ImportError:
        raise InputError(f"corpus {spec!r} needs the 'datasets' package: pip install datasets") from None
    name, config, split = parse_hf_spec(spec)
    try:
        data = datasets.load_dataset(name, config, split=split)
    except Exception as exc:  # datasets raises many types (DatasetNotFoundError, ValueError, ConnectionError…)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise InputError(f"could not load dataset {spec!r}: {first}; check the name, config and split (or use a local file)") from None
    _require_field(field, data.column_names, spec)
    return _as_texts(data[field])


def _load_file(spec: str, field: str) -> list[str]:
    import fsspec

    suffix = next(s for s in FILE_SUFFIXES if spec.lower().endswith(s))
    try:
        with fsspec.open(spec, "rb") as handle:
            raw = handle.read()
    except (FileNotFoundError, IsADirectoryError):
        raise InputError(f"corpus file {spec!r} not found; check the path") from None
    if suffix == ".txt":
        return raw.decode("utf-8", errors="replace").splitlines()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(io.BytesIO(raw))
        _require_field(field, table.column_names, spec)
        return _as_texts(table.column(field).to_pylist())
    if suffix == ".csv":
        reader = csv.DictReader(io.StringIO(raw.decode("utf-8", errors="replace")))
        _require_field(field, reader.fieldnames or [], spec)
        return _as_texts([row[field] for row in reader])
    return _jsonl(raw, spec, field)


def _jsonl(raw: bytes, spec: str, field: str) -> list[str]:
    texts = []
    for number, line in enumerate(raw.decode("utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"corpus {spec!r} line {number} is not JSON ({exc.msg}); expected one JSON object per line") from None
        if not isinstance(row, dict) or field not in row:
            keys = ", ".join(row) if isinstance(row, dict) else type(row).__name__
            raise InputError(f"corpus {spec!r} line {number} has no field {field!r} (it has: {keys}); pass --text-field")
        texts.append(row[field])
    return _as_texts(texts)


def load_corpus(spec: str, *, text_field: str) -> list[str]:
    """The texts of corpus ``spec`` in corpus order (see the module docstring for the forms); ``text_field``: the
    column of a field file or hf dataset (``record.text_field``, or the corpus entry's own)."""
    if not isinstance(spec, str) or not spec.strip():
        raise InputError(f"empty corpus spec {spec!r}; {_HELP}")
    if spec.startswith("offline:"):
        texts = domain_texts(spec[len("offline:"):])
    elif spec.startswith("hf:"):
        texts = _load_hf(spec, text_field)
    elif spec.lower().endswith(FILE_SUFFIXES):
        texts = _load_file(spec, text_field)
    else:
        raise InputError(f"unknown corpus {spec!r}; {_HELP}")
    if not any(t.strip() for t in texts):
        raise InputError(f"corpus {spec!r} holds no text ({len(texts)} empty rows); check the file or --text-field")
    return texts


@dataclass(frozen=True)
class Sample:
    """One recorded text: its place in the store, in the corpus, and its tokens (already cut)."""

    position: int
    source_index: int
    split: str
    token_ids: np.ndarray  # shape (n_tokens,), int32
    text: str
    n_texts: int = 1  # corpus texts source_index, source_index + 1, … packed into this sample

    @property
    def n_tokens(self) -> int:
        return int(self.token_ids.shape[0])


@dataclass(frozen=True)
class Selection:
    """The samples of a recording in store order (group first), and what the walk skipped."""

    samples: tuple[Sample, ...]
    n_skipped_short: int
    n_corpus_texts: int
    pack_to_tokens: int  # the packing target the walk used (0: one text per sample)

    @property
    def n_packed(self) -> int:
        """Samples made of more than one text."""
        return sum(s.n_texts > 1 for s in self.samples)

    @property
    def max_tokens(self) -> int:
        return max(s.n_tokens for s in self.samples)


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
