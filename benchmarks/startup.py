"""Benchmark of the command line's start-up (``fnet --help``) as ratios to references timed in the same run:

- a bare interpreter (``python -c pass``): the floor;
- the light third-party packages every layer imports at the top (numpy, pandas, pydantic, yaml): what the
  package's own top-level imports cost at the least since the layers import their own modules at the top;

and, beside them, importing every stage with the package's own modules (``fnet_dist.stages``) and what
``fnet --help`` would cost if the heavy packages (torch, transformers, lm-eval) were imported at the top.
Each command runs ``--repeats`` times in a fresh process; the median wall time is reported.

    python benchmarks/startup.py [--repeats 7]
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

COMMANDS = {
    "bare interpreter": "pass",
    "numpy + pandas + pydantic + yaml": "import numpy, pandas, pydantic, yaml",
    "fnet --help": "import sys; sys.argv = ['fnet', '--help']\nfrom fnet_dist import cli\ntry:\n    cli.main()\nexcept SystemExit:\n    pass",
    "import fnet_dist.stages (every stage)": "import fnet_dist.stages",
    "torch + transformers + lm_eval (eager heavy imports)": "import torch, transformers, lm_eval.api",
}


def _median_seconds(code: str, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    seconds = {name: _median_seconds(code, args.repeats) for name, code in COMMANDS.items()}
    bare, light = seconds["bare interpreter"], seconds["numpy + pandas + pydantic + yaml"]
    print(f"{'command':<55} {'median s':>9} {'× bare':>8} {'× light libs':>13}")
    for name, value in seconds.items():
        print(f"{name:<55} {value:>9.3f} {value / bare:>8.1f} {value / light:>13.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
