"""``fnet run CONFIG``: the whole pipeline, some stages, or one shard of a stage, from a YAML config."""
from __future__ import annotations

import argparse

from ..core.config import load_config
from ..core.errors import InputError
from ..flags import renamed
from ..pipeline import describe_plan, plan_pipeline, run_pipeline

HELP = "run record → decompose → match → evaluate → controls → report from a pipeline config (cached, resumable)"


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """``CONFIG``, ``--set KEY=VALUE`` and ``--out``: the resolved config of ``fnet run`` and ``fnet config show``."""
    parser.add_argument("config", help="pipeline YAML, e.g. pipeline/default.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set record.group_samples=20 (repeatable)")
    parser.add_argument("--out", help="run folder (overrides the config's out)")


def config_from_args(args: argparse.Namespace):
    """The config of ``CONFIG`` with ``--set`` and ``--out`` applied, validated."""
    overrides = list(args.overrides)
    if args.out:
        overrides.append(f"out={args.out}")
    return load_config(args.config, overrides)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--stages", help="comma-separated subset of record,decompose,match,evaluate,controls,report")
    parser.add_argument("--index", type=int, help="run shard INDEX of --count of one sharded stage (record: samples; "
                                                  "evaluate, controls: conditions), e.g. $JOB_COMPLETION_INDEX")
    parser.add_argument("--count", type=int, help="number of shards of --index")
    parser.add_argument("--scheduler", metavar="ADDR", help="Dask scheduler for decompose and match (default: the "
                                                             "config's dask.scheduler, $DASK_SCHEDULER_ADDRESS, else local)")
    parser.add_argument("--overwrite", "--force", dest="overwrite", action=renamed("store_true", "--overwrite"),
                        help="rerun stages even when cached, replacing their outputs")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the plan (stages to run or reuse, shards, sizes, a time estimate) and stop")


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    stages = [s.strip() for s in args.stages.split(",")] if args.stages else None
    if (args.index is None) != (args.count is None):
        raise InputError("--index and --count go together: shard INDEX of COUNT (e.g. --index 0 --count 2)")
    if args.dry_run:
        print(describe_plan(plan_pipeline(config, stages=stages, overwrite=args.overwrite), config))
        return 0
    shard = None if args.index is None else (args.index, args.count)
    run_pipeline(config, stages=stages, overwrite=args.overwrite, shard=shard, scheduler=args.scheduler)
    return 0
