"""``fnet run CONFIG``: the whole pipeline, some stages, or one shard of a stage, from a YAML config."""
from __future__ import annotations

import argparse

from ..core.config import load_config
from ..core.errors import InputError
from ..pipeline import run_pipeline

HELP = "run record → decompose → match → evaluate → controls → report from a pipeline config (cached, resumable)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="pipeline YAML, e.g. pipeline/default.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set record.group_samples=20 (repeatable)")
    parser.add_argument("--stages", help="comma-separated subset of record,decompose,match,evaluate,controls,report")
    parser.add_argument("--index", type=int, help="run shard INDEX of --count of one sharded stage (record: samples; "
                                                  "evaluate, controls: conditions), e.g. $JOB_COMPLETION_INDEX")
    parser.add_argument("--count", type=int, help="number of shards of --index")
    parser.add_argument("--scheduler", metavar="ADDR", help="Dask scheduler for decompose and match (default: the "
                                                             "config's dask.scheduler, $DASK_SCHEDULER_ADDRESS, else local)")
    parser.add_argument("--out", help="run folder (overrides the config's out)")
    parser.add_argument("--force", action="store_true", help="rerun stages even when cached")


def run(args: argparse.Namespace) -> int:
    overrides = list(args.overrides)
    if args.out:
        overrides.append(f"out={args.out}")
    config = load_config(args.config, overrides)
    stages = [s.strip() for s in args.stages.split(",")] if args.stages else None
    if (args.index is None) != (args.count is None):
        raise InputError("--index and --count go together: shard INDEX of COUNT (e.g. --index 0 --count 2)")
    shard = None if args.index is None else (args.index, args.count)
    run_pipeline(config, stages=stages, force=args.force, shard=shard, scheduler=args.scheduler)
    return 0
