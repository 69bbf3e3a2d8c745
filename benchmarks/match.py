"""Benchmark of all-pairs IoU matching, as ratios to a naive per-pair numpy loop timed in the same run.

Full case: 10 group templates × (100 samples × 64 components) individual maps over 100,352 neurons
(Qwen2.5-7B's 28 × 3584), synthetic masks at ~1 % density, held on a Dask LocalCluster of 2 worker
processes; plus the 4 × 4 corpora template comparison (every pair of 4 corpora × 10 templates).
``--quick``: 20 samples over 17,280 neurons (SmolLM2-135M's 30 × 576).

    python benchmarks/match.py [--quick] [--workers 2]
"""
from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's fnet_dist, not an installed one


def naive_loop(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The per-pair definition as the paper's code writes it: count(a & b) / count(a | b)."""
    out = np.zeros((len(a), len(b)))
    for i in range(len(a)):
        for j in range(len(b)):
            out[i, j] = np.count_nonzero(a[i] & b[j]) / np.count_nonzero(a[i] | b[j])
    return out


def timed(function, *args, repeat: int = 1):
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = function(*args)
        best = min(best, time.perf_counter() - start)
    return best, result


def synthetic_masks(n_templates: int, n_maps: int, n_neurons: int, density: float, seed: int):
    """Templates in memory; individual maps made on the workers and persisted there: random masks, plus
    for a tenth of the maps a copy of a random template that keeps ~70 % of its neurons."""
    import dask.array as da

    rng = np.random.default_rng(seed)
    templates = rng.random((n_templates, n_neurons), dtype=np.float32) < density
    chunk = max(1, n_maps // 20)
    random = da.random.default_rng(seed + 1)
    noise = random.random((n_maps, n_neurons), chunks=(chunk, -1), dtype=np.float32) < density
    source = np.full(n_maps, n_templates)  # index n_templates: an all-False row
    copies = rng.choice(n_maps, n_maps // 10, replace=False)
    source[copies] = rng.integers(0, n_templates, len(copies))
    rows = da.from_array(np.vstack([templates, np.zeros((1, n_neurons), bool)]), chunks=(-1, -1))
    keep = random.random((n_maps, n_neurons), chunks=(chunk, -1), dtype=np.float32) < 0.7
    individual = noise | (rows[da.from_array(source, chunks=chunk)] & keep)
    return templates, individual.persist()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 samples over 17,280 neurons")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from distributed import wait

    from fnet_dist.cluster import dask_client
    from fnet_dist.iou import lazy_iou, pairwise_iou

    samples, neurons = (20, 17_280) if args.quick else (100, 100_352)
    n_templates, components, density = 10, 64, 0.01
    n_maps = samples * components
    print(f"IoU of {n_templates} templates x {n_maps} individual maps over {neurons:,} neurons at {density:.0%} density; "
          f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    with dask_client(None, n_workers=args.workers) as client:
        templates, individual = synthetic_masks(n_templates, n_maps, neurons, density, args.seed)
        wait(individual)
        subset = individual[:200].compute()
        loop_s, loop_iou = timed(naive_loop, templates, subset, repeat=3)
        loop_full = loop_s * n_maps / len(subset)
        print(f"naive per-pair loop: {loop_s:.2f} s for {n_templates} x {len(subset)} pairs, scaled to all: {loop_full:.1f} s")

        def blocked():
            iou, _, sizes = lazy_iou(templates, individual)
            return client.compute([iou, sizes], sync=True)

        blocked_s, (iou, _) = timed(blocked, repeat=3)
        assert np.array_equal(iou[:, :len(subset)], loop_iou), "blocked IoU differs from the per-pair loop"
        counterparts = (iou > 0.2).sum(axis=1)
        print(f"blocked bit-packed product on Dask ({args.workers} workers): {blocked_s:.3f} s "
              f"= {loop_full / blocked_s:.0f} x the loop (exactly equal on the timed subset); "
              f"counterparts per template {counterparts.tolist()}")

        sparse_templates = np.random.default_rng(args.seed + 5).random(templates.shape, dtype=np.float32) < density / 5
        sparse_s, _ = timed(lambda: client.compute(lazy_iou(sparse_templates, individual)[0], sync=True), repeat=3)
        print(f"same on Dask with templates at {density / 5:.1%} density (most real templates are sparser than 1 %): "
              f"{sparse_s:.3f} s = {loop_full / sparse_s:.0f} x the loop")

        local = individual.compute()
        numpy_s, _ = timed(pairwise_iou, templates, local, repeat=2)
        print(f"same product in one process (numpy, bit-packed): {numpy_s:.3f} s = {loop_full / numpy_s:.0f} x the loop")
        import scipy.sparse as sp

        sparse_a, sparse_b = sp.csr_matrix(templates), sp.csr_matrix(local)
        sparse_s, sparse_iou = timed(pairwise_iou, sparse_a, sparse_b, repeat=2)
        assert np.array_equal(sparse_iou, iou)
        print(f"sparse product on networks already held as CSR: {sparse_s:.3f} s = {loop_full / sparse_s:.0f} x the loop "
              f"(dense-to-CSR conversion not counted)")

    corpora = [np.random.default_rng(args.seed + 10 + k).random((n_templates, neurons), dtype=np.float32) < density
               for k in range(4)]
    corpora[1][:3] = corpora[0][:3]
    pairs = list(itertools.combinations(range(4), 2))
    loop_s, loop_cross = timed(lambda: [naive_loop(corpora[i], corpora[j]) for i, j in pairs])
    fast_s, fast_cross = timed(lambda: [pairwise_iou(corpora[i], corpora[j]) for i, j in pairs], repeat=3)
    assert all(np.array_equal(x, y) for x, y in zip(loop_cross, fast_cross))
    similar = sum(int((x > 0.2).sum()) for x in fast_cross)
    print(f"4 x 4 corpora template comparison ({len(pairs)} pairs of corpora, {len(pairs) * n_templates ** 2} template pairs): "
          f"loop {loop_s * 1000:.1f} ms, bit-packed {fast_s * 1000:.1f} ms = {loop_s / fast_s:.0f} x; {similar} similar pairs")


if __name__ == "__main__":
    main()
