"""``fnet run CONFIG``: the whole pipeline from a YAML config."""
from __future__ import annotations

import argparse

HELP = "run record → decompose → match → evaluate → report from a pipeline config (cached, resumable)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="pipeline YAML, e.g. pipeline/default.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set record.group_samples=20 (repeatable)")
    parser.add_argument("--stages", help="comma-separated subset of record,decompose,match,evaluate,report")
    parser.add_argument("--out", help="run folder (overrides the config's out)")
    parser.add_argument("--force", action="store_true", help="rerun stages even when cached")


def run(args: argparse.Namespace) -> int:
    from ..config import load_config
    from ..pipeline import run_pipeline

    overrides = list(args.overrides)
    if args.out:
        overrides.append(f"out={args.out}")
    config = load_config(args.config, overrides)
    stages = [s.strip() for s in args.stages.split(",")] if args.stages else None
    run_pipeline(config, stages=stages, force=args.force)
    return 0
