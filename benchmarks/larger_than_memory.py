"""A Qwen2.5-7B-shaped run larger than this machine's memory: plant the store, then decompose and match it with
the real stages (``pipeline/planted-qwen2.5-7b.yaml``), measuring what the scale section of the docs quotes.

Runs, as a user would (each a subprocess, its process tree's memory sampled: ``process_memory.TreeMemory``):

    fnet plant --shape qwen2.5-7b --out STORES/activations/planted.zarr --group-samples G --individual-samples I \
        --min-tokens A --max-tokens B --n-workers W
    fnet run pipeline/planted-qwen2.5-7b.yaml --stages decompose,match --set stores=STORES ...

Prints and writes (``--json``): the store's size on disk, each command's wall seconds and peak memory (the largest
process, and the sum over the process tree: the command and its Dask workers), the decompose stage's group and
individual seconds (its store's attrs) and per sample, the match stage's seconds, planted recovery
(``fnet_dist.match.planted``), the machine's memory and the load average before and after. The stores are
deleted afterwards unless ``--keep``. ``--group-samples 4 --individual-samples 4`` measures the per-sample costs
of a small run first, to extrapolate the full one (printed).

    python benchmarks/larger_than_memory.py [--group-samples 100] [--individual-samples 100] [--min-tokens 512]
        [--max-tokens 1024] [--out runs/planted-qwen2.5-7b] [--json docs/larger_than_memory.json] [--keep]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
CONFIG = REPO / "pipeline" / "planted-qwen2.5-7b.yaml"
GB = 1e9


def _run(command: list[str], log: Path) -> dict:
    """Run ``command`` (its output into ``log``); its wall seconds and peak memory (largest process, tree total)."""
    from process_memory import TreeMemory

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    start = time.perf_counter()
    with open(log, "a") as handle:
        handle.write(f"$ {' '.join(command)}\n")
        handle.flush()
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=handle, stderr=subprocess.STDOUT)
        with TreeMemory(process.pid, interval=0.5) as memory:
            code = process.wait()
    if code:
        raise SystemExit(f"{' '.join(command[2:5])} … failed with exit status {code}; see {log}")
    return {"seconds": round(time.perf_counter() - start, 1), "largest_gb": round(memory.largest / GB, 2),
            "total_gb": round(memory.total / GB, 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--group-samples", type=int, default=100)
    parser.add_argument("--individual-samples", type=int, default=100)
    parser.add_argument("--min-tokens", type=int, default=512)
    parser.add_argument("--max-tokens", type=int, default=1024)
    parser.add_argument("--shape", default="qwen2.5-7b")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "planted-qwen2.5-7b")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--keep", action="store_true", help="keep the stores (tens of GB at the full size)")
    parser.add_argument("--reuse-store", action="store_true", help="do not plant: the store is already there")
    parser.add_argument("--plant-only", action="store_true", help="plant the store (--json: its figures), then stop")
    args = parser.parse_args()
    import psutil

    from fnet_dist.core.config import load_config
    from fnet_dist.match.planted import planted_recovery
    from fnet_dist.store.storage import store_bytes

    stores = Path(f"{args.out}-stores")
    store, networks = stores / "activations" / "planted.zarr", stores / "networks" / "planted.zarr"
    args.out = args.out.resolve()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    log = Path(f"{args.out}.log")
    fnet = [sys.executable, "-m", "fnet_dist"]
    figures: dict = {"shape": args.shape, "group_samples": args.group_samples,
                     "individual_samples": args.individual_samples, "tokens": [args.min_tokens, args.max_tokens],
                     "workers": args.workers, "cpus": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / GB, 1),
                     "load_before": [round(v, 2) for v in os.getloadavg()]}
    if not args.reuse_store:
        figures["plant"] = _run([*fnet, "plant", "--shape", args.shape, "--out", str(store), "--group-samples",
                                 str(args.group_samples), "--individual-samples", str(args.individual_samples),
                                 "--min-tokens", str(args.min_tokens), "--max-tokens", str(args.max_tokens),
                                 "--n-workers", str(args.workers), "--no-progress"], log)
        print(f"plant: {figures['plant']}", flush=True)
    figures["store_gb"] = round(store_bytes(str(store)) / GB, 2)
    if args.plant_only:
        print(json.dumps(figures, indent=2))
        if args.json:
            args.json.write_text(json.dumps(figures, indent=2) + "\n")
        return 0
    overrides = [f"stores={stores}", f"record.group_samples={args.group_samples}",
                 f"record.individual_samples={args.individual_samples}", f"record.max_tokens={args.max_tokens}",
                 f"record.min_tokens={args.min_tokens}", f"dask.n_workers={args.workers}"]
    command = [*fnet, "run", str(CONFIG), "--stages", "decompose,match", "--out", str(args.out)]
    figures["run"] = _run([*command, *[part for o in overrides for part in ("--set", o)]], log)
    record = json.loads((args.out / "run.json").read_text())["stages"]
    figures["stage_seconds"] = {s: record[s]["seconds"] for s in ("decompose", "match")}
    import xarray as xr

    attrs = xr.open_zarr(str(networks), consolidated=False).attrs
    figures["decompose_seconds"] = attrs["seconds"]
    levels = attrs["seconds"]
    figures["per_sample_seconds"] = {
        "group": round(levels.get("group", 0) / max(args.group_samples, 1), 2),
        "individual": round(levels.get("individual", 0) / max(args.individual_samples, 1), 2),
        "match": round(figures["stage_seconds"]["match"] / (args.group_samples + args.individual_samples), 2)}
    config = load_config(str(CONFIG), overrides)
    recovery = planted_recovery(str(networks), config.match)
    figures["recovery"] = recovery.round(3).to_dict(orient="list")
    figures["load_after"] = [round(v, 2) for v in os.getloadavg()]
    figures["uptime"] = subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    full = {"group": 100 * figures["per_sample_seconds"]["group"],
            "individual": 100 * figures["per_sample_seconds"]["individual"],
            "match": 200 * figures["per_sample_seconds"]["match"]}
    figures["extrapolated_to_100_plus_100_seconds"] = {k: round(v) for k, v in full.items()}
    print(json.dumps(figures, indent=2))
    print(recovery.to_string(index=False))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    if not args.keep:
        shutil.rmtree(stores, ignore_errors=True)  # the stores and the ground truth beside them: all ours
    return 0


if __name__ == "__main__":
    sys.exit(main())
