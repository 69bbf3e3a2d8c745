"""``fnet compare-paper RUN... --out docs/replication.md``: the paper's tables beside one or more runs."""
from __future__ import annotations

import argparse

from ..paper.compare import compare_paper

HELP = "write docs/replication.md: the paper's Tables 1-13 beside the figures of one or more run folders"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", metavar="RUN", help="run folders written by fnet run (config.yaml, match/, evaluate/)")
    parser.add_argument("--out", default="docs/replication.md", metavar="FILE.md",
                        help="the page to write (default docs/replication.md); its numbers go to FILE.csv beside it")
    parser.add_argument("--label", action="append", metavar="NAME",
                        help="a column name per run, in order (default: each run folder's name)")


def run(args: argparse.Namespace) -> int:
    path = compare_paper(args.runs, args.out, labels=args.label)
    print(f"wrote {path} and {path.with_suffix('.csv')}")
    return 0
