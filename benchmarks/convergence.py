"""Benchmark of individual-level ICA convergence (issue 16, point 6): today's settings against the new ones on the
same samples in the same run, every figure a ratio to today's.

(a) real samples: the individual split of an activations store (e.g. SmolLM2 news, recorded with ``fnet record``),
    at each size K components x up to T tokens; per setting: seconds per sample (two seeds, as stability_runs=2),
    share of samples whose ICA converged (FastICA's criterion below tol for both seeds), median iterations, median
    map stability across the seeds (best-match |r|), and the share of the seed-0 networks (|z| > 3.6, non-empty)
    that the other seed reproduces (IoU > 0.2) ("nets rep."); medians over samples.
(b) planted ground truth (``fnet_dist.core.planted``) at the real data's shape (30 x 576 neurons): the share
    of planted networks recovered (best-match IoU >= 0.5), their median IoU, convergence and seconds.
(c) temporal_raw on the real samples: FastICA against Picard-O.
Settings: today = FastICA, logcosh, 200 iterations (the defaults before issue 16); new = the config's defaults
(``DecomposeSection``); and the candidates the choice was made from (Picard-O with logcosh or cube, super-Gaussian
or extended to sub-Gaussian sources as python-picard's default).

    nice -n 10 python benchmarks/convergence.py --store /tmp/news.zarr [--samples 8] [--sizes 64:1024,32:128]
    (record the store first: fnet record --corpus offline:news --group-samples 1 --individual-samples 8
     --max-tokens 384 --pack-to-tokens 0 --out /tmp/news.zarr)
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TODAY = dict(algorithm="fastica", fun="logcosh", max_iter=200)


def _settings() -> dict[str, dict]:
    from fnet_dist.core.config import DecomposeSection

    d = DecomposeSection()
    new = dict(algorithm=d.algorithm, fun=d.fun, max_iter=d.max_iter)
    return {"today: fastica logcosh 200": TODAY,
            f"new: {new['algorithm']} {new['fun']} {new['max_iter']}": new,
            "picard cube 500": dict(algorithm="picard", fun="cube", max_iter=500),
            "picard logcosh 500": dict(algorithm="picard", fun="logcosh", max_iter=500),
            "picard logcosh 500, extended": dict(algorithm="picard", fun="logcosh", max_iter=500, extended=True)}


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def _fit_two_seeds(X: np.ndarray, k: int, seed: int, method: str, setting: dict):
    """Two single-seed ICAs of one sample (the pipeline's two stability runs): (seconds, maps (2, k, n), converged,
    iterations). ``extended`` runs Picard-O on the estimator's own whitened PCA with python-picard's sign rule."""
    from fnet_dist.decompose import IndividualICA
    from fnet_dist.decompose.ica import METHODS, flip_peak_positive, pca, picard_o, whiten, zscore_rows

    setting = dict(setting)
    extended = setting.pop("extended", False)
    maps, converged, iters, start = [], [], [], time.perf_counter()
    for s in (seed, seed + 1):
        if not extended:
            est = IndividualICA(k, method=method, stability_runs=1, tol=1e-4, random_state=s, **setting).fit(X)
            maps.append(est.components_.reshape(k, -1))
            converged.append(est.converged_)
            iters.append(est.n_iter_)
            continue
        Z, _, _ = whiten(pca(METHODS[method][0](X), k, seed=s).vt)
        res = picard_o(Z, seed=s, tol=1e-4, extended=True, fun=setting["fun"], max_iter=setting["max_iter"])
        rows = res.W @ Z
        maps.append(zscore_rows(rows * flip_peak_positive(rows)[:, None]))
        converged.append(res.converged)
        iters.append(res.n_iter)
    return time.perf_counter() - start, np.stack(maps), all(converged), max(iters)


def _agreement(maps: np.ndarray) -> tuple[float, float]:
    """Median best-match |r| of seed 0's maps with seed 1's, and the share of seed 0's non-empty |z| > 3.6
    networks with an IoU > 0.2 partner among seed 1's."""
    from fnet_dist.decompose.ica import best_match_correlation
    from fnet_dist.core.planted import best_match_iou
    from fnet_dist.core.networks import binarize

    a, b = binarize(maps[0]), binarize(maps[1])
    used = a.sum(axis=1) > 0
    reproduced = float(np.mean(best_match_iou(a[used], b) > 0.2)) if used.any() else float("nan")
    return float(np.median(best_match_correlation(maps[0], maps[1]))), reproduced


def _table(rows: dict[str, list], baseline: str, columns: list[tuple[str, str]]) -> None:
    """One line per setting: mean seconds per sample, its ratio to ``baseline``'s, the converged share, then the
    median of each further value ``(title, format)``."""
    base = np.mean([r[0] for r in rows[baseline]])
    print(f"    {'setting':32s} {'s/sample':>8s} {'ratio':>6s} {'converged':>9s} " + " ".join(f"{t:>9s}" for t, _ in columns))
    for name, values in rows.items():
        v = np.array(values, dtype=float)
        seconds = v[:, 0].mean()
        extra = " ".join(format(x, f">9{fmt}") for x, (_, fmt) in zip(np.nanmedian(v[:, 2:], axis=0), columns))
        print(f"    {name:32s} {seconds:8.2f} {seconds / base:6.2f} {v[:, 1].mean():>9.0%} {extra}")


def part_real(store: str, n: int, sizes: list[tuple[int, int]], method: str = "spatial",
              settings: dict | None = None) -> None:
    import xarray as xr

    ds = xr.open_zarr(store, consolidated=False)
    chosen = np.flatnonzero(ds["split"].values == "individual")[:n]
    settings = settings or _settings()
    for k, t in sizes:
        rows: dict[str, list] = {name: [] for name in settings}
        lengths = []
        for i in chosen:
            length = min(int(ds["n_tokens"].values[i]), t)
            if length - 1 < k:
                continue
            lengths.append(length)
            X = ds["activation"][i, :length].values.reshape(length, -1)  # this sample only
            for name, setting in settings.items():
                seconds, maps, converged, iters = _fit_two_seeds(X, k, int(i), method, setting)
                rows[name].append((seconds, converged, iters, *_agreement(maps)))
        print(f"({'a' if method == 'spatial' else 'c'}) {method} ICA, {len(lengths)} real samples of {store}: "
              f"{k} components, {min(lengths)}-{max(lengths)} tokens x {ds.sizes['layer'] * ds.sizes['neuron']} neurons")
        _table(rows, next(iter(settings)), [("iters", ".0f"), ("stability", ".2f"), ("nets rep.", ".0%")])
        sys.stdout.flush()


def part_planted(n: int, k: int) -> None:
    from fnet_dist.core.planted import best_match_iou, planted_networks
    from fnet_dist.core.networks import binarize

    configs = {"200 tokens, 16 networks, noise 1": dict(n_tokens=200, n_networks=16, noise=1.0),
               "200 tokens, 16 networks, noise 2": dict(n_tokens=200, n_networks=16, noise=2.0),
               "128 tokens, 8 networks, noise 2, first-token spike": dict(n_tokens=128, n_networks=8, noise=2.0,
                                                                          first_token_spike=40.0)}
    settings = _settings()
    for label, config in configs.items():
        rows: dict[str, list] = {name: [] for name in settings}
        for seed in range(n):
            data = planted_networks(n_samples=1, n_layers=30, d_model=576, network_size=40, seed=seed, **config)
            X = data.activations[0].reshape(config["n_tokens"], -1)
            truth = data.networks.reshape(len(data.networks), -1)
            for name, setting in settings.items():
                seconds, maps, converged, _ = _fit_two_seeds(X, k, seed, "spatial", setting)
                iou = best_match_iou(truth, binarize(maps[0]))
                rows[name].append((seconds, converged, np.mean(iou >= 0.5), np.median(iou)))
        print(f"(b) planted ({n} seeds; {label}; 17,280 neurons, {k} components)")
        _table(rows, next(iter(settings)), [("recovered", ".0%"), ("med. IoU", ".2f")])
        sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", help="activations store with individual-split samples (parts a, c)")
    parser.add_argument("--samples", type=int, default=8, help="real samples (a, c) and planted seeds / 2 (b)")
    parser.add_argument("--sizes", default="64:1024,32:128", help="K:T pairs: components and most tokens per sample")
    parser.add_argument("--parts", default="a,b,c")
    args = parser.parse_args()
    from threadpoolctl import threadpool_limits

    sizes = [tuple(int(v) for v in pair.split(":")) for pair in args.sizes.split(",")]
    print(f"load at start: {_uptime()}")
    with threadpool_limits(1), warnings.catch_warnings():  # one BLAS thread, as the pipeline's tasks
        warnings.simplefilter("ignore")
        parts = args.parts.split(",")
        if ("a" in parts or "c" in parts) and not args.store:
            parser.error("parts a and c need --store")
        if "a" in parts:
            part_real(args.store, args.samples, sizes)
        if "b" in parts:
            part_planted(max(1, args.samples // 2), sizes[0][0])
        if "c" in parts:
            part_real(args.store, args.samples, sizes[:1], method="temporal_raw",
                      settings={"today: fastica logcosh 200": TODAY,
                                "picard logcosh 500": dict(algorithm="picard", fun="logcosh", max_iter=500),
                                "picard cube 500": dict(algorithm="picard", fun="cube", max_iter=500)})
    print(f"load at end: {_uptime()}")


if __name__ == "__main__":
    main()
