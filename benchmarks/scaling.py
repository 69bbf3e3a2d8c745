"""Scaling on this machine: recording with 1 and 2 shard processes, decomposition on 1 and 2 Dask workers.

Each configuration runs the real ``fnet`` command lines the Kubernetes pods run:

- record: ``fnet record ... --shard 0/1`` alone, then ``--shard 0/2`` and ``--shard 1/2`` as two concurrent
  processes into one store (two Indexed Job pods); every process limited to one CPU thread, as a pod is
  limited to its own device;
- decompose: ``fnet decompose STORE --scheduler ADDR`` on a LocalCluster of 1, then 2 worker processes of
  one thread each (a DaskJob with 1 or 2 workers).

Prints wall times (model loading included: each pod pays it) and the speed-up as a ratio to the one-shard /
one-worker baseline measured in the same run, and checks that both ways give identical stores.

    python benchmarks/scaling.py [--quick] [--model M] [--corpus C] [--samples N] [--max-tokens T]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
# The scheduler and workers started here must import the same fnet_dist as the `fnet` processes.
sys.path.insert(0, str(REPO))
os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])


def _env() -> dict[str, str]:
    return {**os.environ, **ONE_THREAD, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def _fnet(*args: str) -> list[str]:
    return [sys.executable, "-m", "fnet_dist", *args]


def _timed(commands: list[list[str]]) -> float:
    """Run ``commands`` concurrently; wall seconds until the last one ends (any failure aborts)."""
    start = time.perf_counter()
    procs = [subprocess.Popen(c, cwd=REPO, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for c in commands]
    for proc, command in zip(procs, commands):
        _, err = proc.communicate(timeout=1800)
        if proc.returncode:
            raise SystemExit(f"{' '.join(command[2:])} failed ({proc.returncode}):\n{err[-3000:]}")
    return time.perf_counter() - start


def record(args: argparse.Namespace, out: Path) -> tuple[float, float, int, bool]:
    """(1-shard seconds, 2-shard seconds, tokens, stores identical)."""
    import numpy as np
    import xarray as xr

    common = ["--model", args.model, "--corpus", args.corpus, "--group-samples", str(args.samples),
              "--individual-samples", str(args.samples), "--max-tokens", str(args.max_tokens),
              "--batch-size", "8", "--seed", "0", "--no-progress"]
    one = _timed([_fnet("record", *common, "--out", str(out / "one.zarr"), "--shard", "0/1")])
    two = _timed([_fnet("record", *common, "--out", str(out / "two.zarr"), "--shard", f"{i}/2") for i in (0, 1)])
    a = xr.open_zarr(out / "one.zarr", consolidated=False)
    b = xr.open_zarr(out / "two.zarr", consolidated=False)
    same = bool(np.array_equal(a["activation"].values, b["activation"].values, equal_nan=True))
    return one, two, int(a["n_tokens"].sum()), same


def decompose(args: argparse.Namespace, out: Path) -> tuple[float, float, bool]:
    """(1-worker seconds, 2-worker seconds, networks identical)."""
    import numpy as np
    import xarray as xr
    from distributed import LocalCluster

    options = ["--components", str(args.components), "--group-components", "5", "--n-init", "4",
               "--stability-runs", "1", "--seed", "0"]
    seconds = []
    for workers in (1, 2):
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                          env=ONE_THREAD) as cluster:
            seconds.append(_timed([_fnet("decompose", str(out / "one.zarr"), "--out", str(out / f"net{workers}.zarr"),
                                         "--scheduler", cluster.scheduler_address, *options)]))
    a = xr.open_zarr(out / "net1.zarr", consolidated=False)
    b = xr.open_zarr(out / "net2.zarr", consolidated=False)
    same = all(np.allclose(a[v].values, b[v].values, equal_nan=True)
               for v in a.data_vars if np.issubdtype(a[v].dtype, np.floating))
    return seconds[0], seconds[1], same


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small run (16 + 16 samples of 64 tokens)")
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--corpus", default="offline:news")
    parser.add_argument("--samples", type=int, default=40, help="group samples, and as many individual ones")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--components", type=int, default=16)
    args = parser.parse_args()
    if args.quick:
        args.samples, args.max_tokens = 16, 64
    with tempfile.TemporaryDirectory(prefix="fnet-scaling-") as folder:
        out = Path(folder)
        r1, r2, tokens, same_acts = record(args, out)
        d1, d2, same_nets = decompose(args, out)
    print(f"model {args.model}, corpus {args.corpus}: {2 * args.samples} samples, {tokens} tokens; "
          f"{os.cpu_count()} CPU cores; one thread per process")
    print(f"{'stage':<10} {'baseline':<22} {'s':>7} {'scaled':<26} {'s':>7} {'speed-up':>9}")
    print(f"{'record':<10} {'1 shard process':<22} {r1:7.1f} {'2 concurrent shards':<26} {r2:7.1f} {r1 / r2:8.2f}x")
    print(f"{'decompose':<10} {'1 Dask worker':<22} {d1:7.1f} {'2 Dask workers':<26} {d2:7.1f} {d1 / d2:8.2f}x")
    print(f"record: {tokens / r1:.0f} tokens/s with 1 shard, {tokens / r2:.0f} with 2 (model loading included); "
          f"stores identical: {'yes' if same_acts else 'NO'}; networks identical: {'yes' if same_nets else 'NO'}")


if __name__ == "__main__":
    main()
