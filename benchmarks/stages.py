"""A finished run's stage times (from its ``run.json``) against the documented budget for the default run (docs/index.md).

    python benchmarks/stages.py [RUN_FOLDER] [--budget-minutes 15]

RUN_FOLDER defaults to ``runs/default`` (what ``make demo`` writes). Prints each stage's seconds and share of
the budget, their total, the decompose stage's group / individual seconds per corpus (networks stores'
attrs), and the evaluation's seconds per condition (from each condition's
``condition.json``) with how many conditions the time left under the budget would still pay for.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", nargs="?", default="runs/default")
    parser.add_argument("--budget-minutes", type=float, default=15.0, help="the documented figure for the default run")
    args = parser.parse_args()
    record_file = Path(args.run) / "run.json"
    if not record_file.is_file():
        print(f"no run.json in {args.run!r}; run fnet run pipeline/default.yaml first, or give a run folder", file=sys.stderr)
        return 2
    stages = json.loads(record_file.read_text()).get("stages", {})
    budget = args.budget_minutes * 60
    total = 0.0
    print(f"{'stage':10s} {'seconds':>9s} {'of budget':>10s}")
    for stage, info in stages.items():
        if info.get("status") != "done":
            print(f"{stage:10s} {'—':>9s} {'':>10s}  ({info.get('status')})")
            continue
        total += info["seconds"]
        print(f"{stage:10s} {info['seconds']:9.1f} {info['seconds'] / budget:9.0%}")
    verdict = "within" if total <= budget else "OVER"
    print(f"{'total':10s} {total:9.1f} {total / budget:9.0%}  ({verdict} the {args.budget_minutes:g}-minute budget)")
    for store in sorted((Path(args.run) / "networks").glob("*.zarr")):
        attrs = json.loads((store / "zarr.json").read_text()).get("attributes", {}) if (store / "zarr.json").is_file() else {}
        parts = ", ".join(f"{level} {value:.1f} s" for level, value in attrs.get("seconds", {}).items())
        print(f"  decompose {store.stem}: {parts or 'no timings recorded'}")
    records = [json.loads(p.read_text()) for p in sorted((Path(args.run) / "evaluate").rglob("condition.json"))]
    seconds = [r["seconds"] for r in records if "seconds" in r]
    if seconds:
        per = sum(seconds) / len(seconds)
        spare = budget - total
        print(f"evaluation: {len(seconds)} conditions, {per:.1f} s per condition (mean); "
              f"time left under the budget pays for {max(0, int(spare // per))} more")
    return 0


if __name__ == "__main__":
    sys.exit(main())
