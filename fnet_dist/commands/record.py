"""``fnet record``: record a model's MLP-block outputs on a corpus into an activations store."""
from __future__ import annotations

import argparse

from ..core.config import ModelSection, RecordSection
from ..flags import MODEL_FLAGS, add_section, section_from
from ..record.recording import parse_shard, record_activations, summarize_store

HELP = "record every layer's MLP-block output for the tokens of corpus samples into a Zarr activations store"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--corpus", required=True,
                        help="hf:NAME[:CONFIG][@SPLIT], offline:news|wiki|math|code, or a .txt/.jsonl/.csv/.parquet file, a glob "
                             "of them or compressed (.gz, .bz2, .xz, .zst); options after '#': revision=REV, "
                             "streaming, take=N (e.g. 'hf:NAME@train#revision=abc1234,streaming,take=5000')")
    parser.add_argument("--out", required=True, help="store URL (local path, s3://, gs://, memory://)")
    parser.add_argument("--shard", default="0/1", metavar="I/N", help="write shard I of N (Kubernetes Indexed Job: I = the job index)")
    parser.add_argument("--overwrite", action="store_true", help="replace a store of another config or schema version")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_section(parser, ModelSection, rename=MODEL_FLAGS)
    add_section(parser, RecordSection)


def run(args: argparse.Namespace) -> int:
    model = section_from(args, ModelSection, rename=MODEL_FLAGS)
    url = record_activations(model, args.corpus, args.out, section_from(args, RecordSection),
                             shard=parse_shard(args.shard), overwrite=args.overwrite, progress=not args.no_progress)
    print(summarize_store(url))
    return 0
