"""Benchmark of loading the packaged SmolLM2 (``load_model('smollm2-135m-instruct')``) in a fresh process, as a
ratio to loading its GGUF file directly (what every process paid before the cache), timed in the same run:

- ``GGUF file`` (the baseline): transformers parses and dequantises ``SmolLM2-135M-Instruct.Q4_1.gguf``;
- ``load_model, cache warm``: the safetensors folder ``fnet_dist.model.packaged`` converted on first use;
- ``load_model, first use``: conversion included (a fresh cache folder), once.

Each timing is the median wall time of ``--repeats`` fresh interpreters, imports included.

    python benchmarks/model_load.py [--repeats 3]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GGUF = """
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from fnet_dist.core.offline import smollm2_gguf
gguf = smollm2_gguf()
AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32).eval()
"""
LOAD = "from fnet_dist.model.loading import load_model\nload_model('smollm2-135m-instruct')"


def _seconds(code: str, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fnet-cache-") as cache:
        env = {**os.environ, "FNET_CACHE_DIR": cache}
        first = _seconds(LOAD, env)
        warm = statistics.median(_seconds(LOAD, env) for _ in range(args.repeats))
        gguf = statistics.median(_seconds(GGUF, env) for _ in range(args.repeats))
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    print(f"{'load':<28} {'median s':>9} {'× GGUF file':>12}")
    for name, value in (("GGUF file (baseline)", gguf), ("load_model, cache warm", warm), ("load_model, first use", first)):
        print(f"{name:<28} {value:>9.2f} {value / gguf:>12.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
