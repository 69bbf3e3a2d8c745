"""``fnet plant --out STORE --shape qwen2.5-7b``: a planted activations store of any model's shape."""
from __future__ import annotations

import argparse

from ..core.config import DaskSection, PlantSection, RecordSection
from ..flags import add_section, section_from
from ..model.dimensions import KNOWN_SHAPES
from ..record.planted import plant_store, truth_url
from ..record.recording import parse_shard
from ..store.activations import summarize_store

HELP = ("write a synthetic activations store of a model's shape with planted networks (known neurons), a heavy-tailed "
        "background, massive channels and first-token spikes, to run decompose and match at any scale")

_RECORD_FLAGS = ("group_samples", "individual_samples", "max_tokens", "min_tokens", "seed", "store_dtype")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="store URL (local path, s3://, gs://, memory://); the ground truth "
                                                     "is written beside it as STORE.truth.npz")
    parser.add_argument("--shard", default="0/1", metavar="I/N", help="write shard I of N (Kubernetes Indexed Job: I = "
                                                                      "the job index)")
    parser.add_argument("--overwrite", action="store_true", help="replace a store of another config")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_section(parser, PlantSection)
    add_section(parser, RecordSection, only=_RECORD_FLAGS)
    add_section(parser, DaskSection, only=("scheduler", "n_workers"))
    parser.epilog = ("known shapes: " + ", ".join(f"{k} ({layers}x{width})" for k, (layers, width) in KNOWN_SHAPES.items())
                     + "; sample lengths are drawn uniformly between --min-tokens and --max-tokens; --n-workers 1 "
                       "without --scheduler writes in this process")


def run(args: argparse.Namespace) -> int:
    dask = section_from(args, DaskSection)
    url = plant_store(args.out, section_from(args, PlantSection), section_from(args, RecordSection),
                      scheduler=dask.scheduler, n_workers=dask.n_workers, shard=parse_shard(args.shard),
                      overwrite=args.overwrite, progress=not args.no_progress)
    print(summarize_store(url))
    print(f"  ground truth: {truth_url(url)} (and the store's 'planted' attrs)")
    return 0
