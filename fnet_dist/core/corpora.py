"""Corpora: where texts come from, and the records of the samples a recording chose.

- ``load_corpus(spec, text_field=) -> list[str]``: the texts of ``hf:NAME[:CONFIG][@SPLIT]``
  (``datasets.load_dataset``; NAME may be a hub id or a local dataset folder), a local or fsspec
  ``.txt`` (one text per line), ``.jsonl``, ``.csv`` or ``.parquet`` file (``text_field`` names the
  column), or ``offline:news|wiki|math|code|sentiment`` (``fnet_dist.core.offline``). Index i is the corpus row i.
  Through ``datasets`` as well: files matched by a glob (``data/*.jsonl``, ``data/**/*.txt``, in sorted order) and
  compressed files (``.jsonl.gz``, ``.txt.zst``, ``.csv.bz2``, ``.xz``), read by its ``text`` / ``json`` / ``csv`` /
  ``parquet`` builders. Options after ``#``, comma-separated: ``revision=REV`` (a hub dataset's branch, tag or
  commit: pin it for a reproducible run), ``streaming`` (read rows as they come, without downloading or converting
  the whole dataset first) and ``take=N`` (only the first N rows; with ``streaming`` nothing past them is read),
  e.g. ``hf:allenai/c4:en@train#revision=1588ec4,streaming,take=20000`` or ``data/*.jsonl.gz#take=5000``.
- ``parse_options(spec) -> (spec, options)``: a spec without its ``#`` options, and the options.
- ``check_corpus(spec, text_field=)``: what can be checked in a moment before a run (``fnet run``'s preflight):
  the spec's form and options, an offline name, a glob that matches files, and a plain file that is readable, not
  empty, and whose head holds the field (a Parquet file's schema, a CSV header, the first JSON line); the same
  one-line ``InputError`` as ``load_corpus``.
- ``Sample`` / ``Selection``: one recorded text and the chosen samples with their counts (the activations store
  writes them; ``fnet_dist.record.sampling.select_samples`` makes them).
"""
from __future__ import annotations

import csv
import glob
import io
import json
import os
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .errors import InputError
from .offline import domain_texts

__all__ = ["COMPRESSIONS", "FILE_SUFFIXES", "Sample", "Selection", "check_corpus", "load_corpus", "parse_hf_spec",
           "parse_options"]

FILE_SUFFIXES = (".txt", ".jsonl", ".csv", ".parquet")
COMPRESSIONS = (".gz", ".bz2", ".xz", ".zst")  # what ``datasets`` decompresses on its own
_BUILDERS = {".txt": "text", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}
_OPTIONS = ("revision", "streaming", "take")
_HELP = (f"expected hf:NAME[:CONFIG][@SPLIT], offline:news|wiki|math|code|sentiment, or a {'/'.join(FILE_SUFFIXES)} file "
         f"(a glob, compressed {'/'.join(COMPRESSIONS)}), with #revision=REV,streaming,take=N options")


def parse_options(spec: str) -> tuple[str, dict[str, Any]]:
    """``SPEC#revision=abc,streaming,take=100`` -> ``(SPEC, {"revision": "abc", "streaming": True, "take": 100})``."""
    body, sep, tail = spec.partition("#")
    options: dict[str, Any] = {}
    for item in filter(None, (p.strip() for p in tail.split(","))) if sep else ():
        key, eq, value = item.partition("=")
        if key not in _OPTIONS or (key == "streaming") == bool(eq) or (key != "streaming" and not value):
            raise InputError(f"corpus option {item!r} of {spec!r} is unknown or malformed: expected revision=REV, "
                             f"streaming or take=N after '#', comma-separated")
        if key == "take" and not (value.isdigit() and int(value) > 0):
            raise InputError(f"corpus option take={value} of {spec!r}: expected a positive number of rows")
        options[key] = True if key == "streaming" else int(value) if key == "take" else value
    return body, options


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


def _dataset_texts(spec: str, field: str, options: dict[str, Any], *args: Any, **kwargs: Any) -> list[str]:
    """``datasets.load_dataset(*args, **kwargs)``'s ``field`` column, streamed or taken as ``options`` say."""
    from itertools import islice

    try:
        import datasets
    except ImportError:
        raise InputError(f"corpus {spec!r} needs the 'datasets' package: pip install datasets") from None
    try:
        data = datasets.load_dataset(*args, streaming=bool(options.get("streaming")), **kwargs)
        if options.get("streaming"):
            rows = islice(iter(data), options.get("take"))
            first = next(rows, None)
            columns = list(first or {}) if data.column_names is None else data.column_names
            _require_field(field, columns, spec)
            return _as_texts([r[field] for r in ([first] if first is not None else []) + list(rows)])
        if options.get("take"):
            data = data.select(range(min(options["take"], len(data))))
    except InputError:
        raise
    except Exception as exc:  # datasets raises many types (DatasetNotFoundError, ValueError, ConnectionError…)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise InputError(f"could not load dataset {spec!r}: {first}; check the name, config, split and revision "
                         f"(or the files)") from None
    _require_field(field, data.column_names, spec)
    return _as_texts(data[field])


def _load_hf(spec: str, field: str, options: dict[str, Any]) -> list[str]:
    name, config, split = parse_hf_spec(spec)
    return _dataset_texts(spec, field, options, name, config, split=split, revision=options.get("revision"))


def _file_kind(spec: str) -> str | None:
    """The suffix among ``FILE_SUFFIXES`` of a file name (before a compression suffix), or None."""
    name = spec.lower()
    name = next((name[: -len(c)] for c in COMPRESSIONS if name.endswith(c)), name)
    return next((s for s in FILE_SUFFIXES if name.endswith(s)), None)


def _load_files(spec: str, field: str, options: dict[str, Any]) -> list[str]:
    """Files matched by a glob, or a compressed file, or any file with options: through ``datasets``' builders."""
    files = sorted(glob.glob(spec, recursive=True)) if glob.has_magic(spec) else [spec]
    if not files or not all(os.path.isfile(f) for f in files):
        raise InputError(f"corpus {spec!r} matches no file; check the path or the glob")
    if options.get("revision"):
        raise InputError(f"corpus {spec!r}: revision= pins a hub dataset (hf:NAME); local files have none")
    kinds = {_file_kind(f) for f in files}
    if len(kinds) != 1 or None in kinds:
        raise InputError(f"corpus {spec!r} matches files of several or unknown kinds ({', '.join(map(str, kinds))}): "
                         f"a glob must match one kind of {'/'.join(FILE_SUFFIXES)} files")
    builder = _BUILDERS[kinds.pop()]
    texts = _dataset_texts(spec, "text" if builder == "text" else field, options, builder, data_files=files,
                           split="train")
    return texts


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
        _require_field(field, next(csv.reader(io.StringIO(text.split("\n", 1)[0])), []), spec)
    elif suffix == ".jsonl":
        _jsonl(next(line for line in text.splitlines() if line.strip()).encode(), spec, field)


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
    body, options = parse_options(spec)
    if body.startswith("offline:"):
        texts = domain_texts(body[len("offline:"):])
        texts = texts[: options["take"]] if options.get("take") else texts
    elif body.startswith("hf:"):
        texts = _load_hf(body, text_field, options)
    elif body.lower().endswith(FILE_SUFFIXES) and not options and not any(c in body for c in "*?["):
        texts = _load_file(body, text_field)  # one plain file: read whole, with line-exact errors
    elif _file_kind(body) or any(c in body for c in "*?["):
        texts = _load_files(body, text_field, options)
    else:
        raise InputError(f"unknown corpus {spec!r}; {_HELP}")
    if not any(t.strip() for t in texts):
        raise InputError(f"corpus {spec!r} holds no text ({len(texts)} empty rows); check the file or --text-field")
    return texts


def check_corpus(spec: str, *, text_field: str) -> None:
    """Raise ``InputError`` for what a moment's look shows is wrong with corpus ``spec`` (the module docstring);
    a hub dataset is only parsed (reaching the hub is the record stage's)."""
    if not isinstance(spec, str) or not spec.strip():
        raise InputError(f"empty corpus spec {spec!r}; {_HELP}")
    body, options = parse_options(spec)
    if body.startswith("offline:"):
        domain_texts(body[len("offline:"):])
    elif body.startswith("hf:"):
        parse_hf_spec(body)
    elif body.lower().endswith(FILE_SUFFIXES) and not options and not any(c in body for c in "*?["):
        _check_file(body, text_field)
    elif _file_kind(body) or any(c in body for c in "*?["):
        files = sorted(glob.glob(body, recursive=True)) if glob.has_magic(body) else [body]
        if not files or not all(os.path.isfile(f) for f in files):
            raise InputError(f"corpus {spec!r} matches no file; check the path or the glob")
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
