"""Corpora: where texts come from, and the records of the samples a recording chose.

- ``load_corpus(spec, text_field=) -> list[str]``: the texts of ``hf:NAME[:CONFIG][@SPLIT]``
  (``datasets.load_dataset``; NAME may be a hub id or a local dataset folder), a local or fsspec
  ``.txt`` (one text per line), ``.jsonl``, ``.csv`` or ``.parquet`` file (``text_field`` names the
  column), or ``offline:news|wiki|math|code`` (``fnet_dist.core.offline``). Index i is the corpus row i.
- ``check_corpus(spec, text_field=)``: what can be checked in a moment before a run (``fnet run``'s preflight):
  the spec's form, an offline name, and a file that is readable, not empty, and whose head holds the field
  (a Parquet file's schema, a CSV header, the first JSON line); the same one-line ``InputError`` as ``load_corpus``.
- ``Sample`` / ``Selection``: one recorded text and the chosen samples with their counts (the activations store
  writes them; ``fnet_dist.record.sampling.select_samples`` makes them).
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

__all__ = ["FILE_SUFFIXES", "Sample", "Selection", "check_corpus", "load_corpus", "parse_hf_spec"]

FILE_SUFFIXES = (".txt", ".jsonl", ".csv", ".parquet")
_HELP = f"expected hf:NAME[:CONFIG][@SPLIT], offline:news|wiki|math|code, or a {'/'.join(FILE_SUFFIXES)} file"


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


def _read_bytes(spec: str, size: int = -1) -> bytes:
    """The first ``size`` bytes (all with -1) of a corpus file; a missing or unreadable file is one line."""
    import fsspec

    try:
        with fsspec.open(spec, "rb") as handle:
            return handle.read(size)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise InputError(f"corpus file {spec!r} not found; check the path") from None
    except PermissionError as exc:
        raise InputError(f"corpus file {spec!r} cannot be read ({exc.strerror}); check its permissions") from None


def _parquet_table(raw: bytes, spec: str, *, schema_only: bool = False):
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_schema(io.BytesIO(raw)) if schema_only else pq.read_table(io.BytesIO(raw))
    except (pa.ArrowException, OSError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise InputError(f"corpus {spec!r} is not a readable Parquet file ({first}); check the file, or give the "
                         f"texts as .jsonl, .csv or .txt") from None


def _csv_rows(text: str, spec: str, field: str) -> list[str]:
    csv.field_size_limit(max(len(text), csv.field_size_limit()))  # a long document is one long field, not an error
    reader = csv.DictReader(io.StringIO(text))
    try:
        _require_field(field, reader.fieldnames or [], spec)
        return _as_texts([row[field] for row in reader])
    except csv.Error as exc:
        raise InputError(f"corpus {spec!r} line {reader.line_num} is not valid CSV ({exc}); check the file") from None


def _load_file(spec: str, field: str) -> list[str]:
    suffix = next(s for s in FILE_SUFFIXES if spec.lower().endswith(s))
    raw = _read_bytes(spec)
    if suffix == ".txt":
        return raw.decode("utf-8", errors="replace").splitlines()
    if suffix == ".parquet":
        table = _parquet_table(raw, spec)
        _require_field(field, table.column_names, spec)
        return _as_texts(table.column(field).to_pylist())
    if suffix == ".csv":
        return _csv_rows(raw.decode("utf-8", errors="replace"), spec, field)
    return _jsonl(raw, spec, field)


def _check_file(spec: str, field: str, head_bytes: int = 1 << 20) -> None:
    suffix = next(s for s in FILE_SUFFIXES if spec.lower().endswith(s))
    head = _read_bytes(spec, -1 if suffix == ".parquet" else head_bytes)
    if not head.strip():
        raise InputError(f"corpus file {spec!r} is empty; check the path")
    if suffix == ".parquet":
        _require_field(field, _parquet_table(head, spec, schema_only=True).names, spec)
        return
    text = head.decode("utf-8", errors="replace")
    if suffix == ".csv":
        first = next(csv.reader(io.StringIO(text.split("\n", 1)[0])), [])
        _require_field(field, first, spec)
    elif suffix == ".jsonl":
        line = next(line for line in text.splitlines() if line.strip())
        _jsonl(line.encode(), spec, field)


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


def check_corpus(spec: str, *, text_field: str) -> None:
    """Raise ``InputError`` for what a moment's look shows is wrong with corpus ``spec`` (the module docstring)."""
    if not isinstance(spec, str) or not spec.strip():
        raise InputError(f"empty corpus spec {spec!r}; {_HELP}")
    if spec.startswith("offline:"):
        domain_texts(spec[len("offline:"):])
    elif spec.startswith("hf:"):
        parse_hf_spec(spec)
    elif spec.lower().endswith(FILE_SUFFIXES):
        _check_file(spec, text_field)
    else:
        raise InputError(f"unknown corpus {spec!r}; {_HELP}")


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
