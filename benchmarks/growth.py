"""Growth curves: wall time and peak memory of decompose and match as samples, tokens per sample and neurons grow.

Each axis doubles from the base size (``--sizes`` sizes, default 4) while the other two stay at the base; at
every size a planted store (``fnet plant``'s ``plant_store``: known networks in a heavy-tailed background, massive
channels, first-token spikes) is decomposed (``fnet_dist.decompose.decompose``) and matched
(``match_networks(..., anatomy=True)``, as ``fnet run`` does) on one Dask LocalCluster of ``--workers`` worker
processes of one thread each, started once and warmed up on the base size (neither is timed). Measured per stage: wall seconds; peak
RSS of the largest process and of the whole process tree (this process + the workers: ``process_memory.TreeMemory``),
each also above the tree's idle RSS just before the stage; planted recovery (``fnet_dist.match.planted``: each
planted network's best IoU with a group template, and the mean over samples of its best IoU with a sample's maps).

Printed: every size's figures as ratios to the smallest size of its axis measured in this run, and the growth
exponent per axis and stage (slope of log time on log size, ``scipy.stats.linregress``, ± its standard error).
Written: a CSV (``--csv``) and a log-log plot (``--plot``).

Decompose settings: the paper's where they shape the work (64 components per sample, 10 group templates), cheap
where they only repeat it (``n_init`` 2, ``stability_runs`` 1, ``splits`` 0); match: the nulls with 99 / 19 random
networks and no sensitivity grid (each repeats the IoU kernel; their cost grows with what is measured here).

    python benchmarks/growth.py [--quick] [--csv docs/growth.csv] [--plot docs/images/growth.png]
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])  # the workers' fnet_dist

AXES = ("samples", "tokens", "neurons")
STAGES = ("decompose", "match")
MB = 2**20


def _trim() -> None:
    """Give freed memory back to the OS (glibc keeps it otherwise), so each stage starts from a clean slate."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


def _measure(address: str, work):
    """(result, seconds, peak largest RSS, peak tree RSS, idle tree RSS, idle largest RSS) of ``work()``."""
    from distributed import Client
    from process_memory import TreeMemory

    with Client(address, set_as_default=False) as client:  # short-lived: a client left open beside the stages'
        client.run(_trim)                                   # own ones hung once in tornado's write buffer
    _trim()
    idle_largest, idle_total = TreeMemory().sample()
    with TreeMemory() as memory:
        start = time.perf_counter()
        result = work()
        seconds = time.perf_counter() - start
    return result, seconds, memory.largest, memory.total, idle_total, idle_largest


def _size(args, axis: str, factor: int) -> dict:
    """The sizes of one measurement: the base, with ``axis`` multiplied by ``factor``."""
    samples = args.samples * (factor if axis == "samples" else 1)
    return {"samples": samples, "tokens": args.tokens * (factor if axis == "tokens" else 1),
            "layers": args.layers, "width": args.width * (factor if axis == "neurons" else 1)}


def run_one(args, address: str, size: dict, folder: Path) -> list[dict]:
    from fnet_dist.core.config import DecomposeSection, MatchSection, PlantSection, RecordSection
    from fnet_dist.decompose import decompose
    from fnet_dist.match.matching import match_networks
    from fnet_dist.match.planted import planted_recovery
    from fnet_dist.record.planted import plant_store

    plant = PlantSection(shape=f"{size['layers']}x{size['width']}", networks=args.networks)
    record = RecordSection(group_samples=size["samples"] // 2, individual_samples=size["samples"] // 2,
                           max_tokens=size["tokens"], min_tokens=size["tokens"])
    store = plant_store(str(folder / "acts"), plant, record, scheduler=address, progress=False)
    section = DecomposeSection(components=args.components, group_components=10, n_init=2, stability_runs=1, splits=0)
    match = MatchSection(permutations=99, summary_permutations=19, sensitivity_thresholds=())
    nets, *decomposed = _measure(address, lambda: decompose(store, str(folder / "nets"), section, scheduler=address))
    _, *matched = _measure(address, lambda: match_networks([nets], str(folder / "match"), match, scheduler=address,
                                                          anatomy=True))
    recovery = planted_recovery(nets, match)
    neurons = size["layers"] * size["width"]
    rows = []
    for stage, (seconds, largest, total, idle_total, idle_largest) in zip(STAGES, (decomposed, matched)):
        rows.append({"stage": stage, "samples": size["samples"], "tokens": size["tokens"], "neurons": neurons,
                     "seconds": round(seconds, 3), "largest_mb": round(largest / MB, 1), "total_mb": round(total / MB, 1),
                     "largest_above_idle_mb": round((largest - idle_largest) / MB, 1),
                     "total_above_idle_mb": round((total - idle_total) / MB, 1),
                     "group_iou": round(float(recovery["group_iou"].mean()), 3),
                     "individual_iou": round(float(recovery["individual_iou"].mean()), 3)})
    return rows


def exponents(frame):
    """{(axis, stage, column): (slope, standard error)} of log2 column on log2 size."""
    import numpy as np
    from scipy.stats import linregress

    fits = {}
    for (axis, stage), part in frame.groupby(["axis", "stage"], sort=False):
        for column in ("seconds", "total_above_idle_mb"):
            y = part[column].to_numpy(dtype=float)
            if len(part) >= 3 and (y > 0).all():
                fit = linregress(np.log2(part[axis].to_numpy(dtype=float)), np.log2(y))
                fits[(axis, stage, column)] = (fit.slope, fit.stderr)
    return fits


def plot(frame, fits, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, panels = plt.subplots(1, 2, figsize=(11, 4.2))
    styles = {"samples": "tab:blue", "tokens": "tab:orange", "neurons": "tab:green"}
    for (axis, stage), part in frame.groupby(["axis", "stage"], sort=False):
        x = part[axis] / part[axis].min()
        for panel, column, unit in ((panels[0], "seconds", "s"), (panels[1], "total_above_idle_mb", "MiB")):
            slope, err = fits.get((axis, stage, column), (float("nan"), float("nan")))
            panel.plot(x, part[column], marker="o" if stage == "decompose" else "s", color=styles[axis],
                       linestyle="-" if stage == "decompose" else "--",
                       label=f"{stage}, {axis}: ^{slope:.2f} ± {err:.2f}")
    for panel, title in zip(panels, ("wall time (s)", "peak memory of the process tree above idle (MiB)")):
        panel.set_xscale("log", base=2)
        panel.set_yscale("log", base=2)
        panel.set_xlabel("size / smallest size (the other two axes held)")
        panel.set_title(title, fontsize=10)
        panel.grid(alpha=0.3, which="both")
        panel.legend(fontsize=7)
    fig.suptitle("Growth of decompose and match (planted stores; fitted exponent ± s.e.)", fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=16, help="base samples (half group, half individual)")
    parser.add_argument("--tokens", type=int, default=256, help="base tokens per sample")
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--width", type=int, default=1024, help="base neurons per layer (the neurons axis doubles it)")
    parser.add_argument("--components", type=int, default=64)
    parser.add_argument("--networks", type=int, default=8)
    parser.add_argument("--sizes", type=int, default=4, help="sizes per axis (doubling)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--axes", default=",".join(AXES))
    parser.add_argument("--quick", action="store_true", help="a small base (a smoke test of the benchmark)")
    parser.add_argument("--csv", type=Path, default=REPO / "docs" / "growth.csv")
    parser.add_argument("--plot", type=Path, default=REPO / "docs" / "images" / "growth.png")
    args = parser.parse_args()
    if args.quick:
        args.samples, args.tokens, args.layers, args.width, args.components, args.sizes = 4, 48, 2, 64, 8, 3
    import pandas as pd
    from distributed import LocalCluster

    rows = []
    with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster:
        address = cluster.scheduler_address
        warm = Path(tempfile.mkdtemp(prefix="fnet-growth-"))
        try:  # imports, numba's compilation and the first-task costs of the workers: not part of any size's figures
            run_one(args, address, _size(args, "samples", 1), warm)
        finally:
            shutil.rmtree(warm, ignore_errors=True)
        for axis in args.axes.split(","):
            for step in range(args.sizes):
                size = _size(args, axis, 2**step)
                folder = Path(tempfile.mkdtemp(prefix="fnet-growth-"))
                try:
                    for row in run_one(args, address, size, folder):
                        rows.append({"axis": axis, **row})
                        print(f"{axis:8s} {row['stage']:9s} S={row['samples']:4d} T={row['tokens']:5d} "
                              f"N={row['neurons']:7d}  {row['seconds']:8.2f} s  largest {row['largest_mb']:7.0f} MiB  "
                              f"tree {row['total_mb']:7.0f} MiB (+{row['total_above_idle_mb']:.0f})  recovery group "
                              f"{row['group_iou']:.2f} individual {row['individual_iou']:.2f}", flush=True)
                finally:
                    shutil.rmtree(folder, ignore_errors=True)
    frame = pd.DataFrame(rows)
    args.csv.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.csv, index=False)
    fits = exponents(frame)
    print(f"\nratios to the smallest size of each axis (same run; load {os.getloadavg()[0]:.2f} at the end):")
    for (axis, stage), part in frame.groupby(["axis", "stage"], sort=False):
        base = part.iloc[0]
        ratios = ", ".join(f"×{r[axis] / base[axis]:.0f}: time ×{r['seconds'] / base['seconds']:.2f}, tree memory "
                           f"×{r['total_mb'] / base['total_mb']:.2f}" for _, r in part.iloc[1:].iterrows())
        print(f"  {stage:9s} {axis:8s} {ratios}")
    print("\ngrowth exponents (log-log least squares, ± standard error):")
    for (axis, stage, column), (slope, err) in fits.items():
        print(f"  {stage:9s} {axis:8s} {column:20s} {slope:5.2f} ± {err:.2f}")
    plot(frame, fits, args.plot)
    print(f"\nwrote {args.csv} and {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
