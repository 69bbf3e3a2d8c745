"""Benchmark of all-pairs IoU matching, as ratios to a naive per-pair numpy loop timed in the same run.

Full case: 10 group templates × (100 samples × 64 components) individual maps over 100,352 neurons
(Qwen2.5-7B's 28 × 3584), synthetic masks at ~1 % density, held on a Dask LocalCluster of 2 worker
processes; plus the 4 × 4 corpora template comparison (every pair of 4 corpora × 10 templates).
The sparse path (what ``fnet match`` runs) starts from z-maps whose thresholding gives those masks: it is
timed on the networks as thresholding leaves them (CSR row blocks on the workers, or gathered in one
process), and the thresholding itself is timed apart, both to dense masks (what the loop and the
bit-packed product need) and to CSR.
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


def synthetic_zmaps(masks, n_layers: int, d_model: int, seed: int):
    """z-maps (n, n_layers, d_model) float32 on the workers whose |z| > 3.6 is exactly ``masks``: noise in
    [-3.5, 3.5) and ±5 (random sign) on the mask's neurons; one seed per row block."""
    def block(mask, block_id=None):
        rng = np.random.default_rng([seed, block_id[0]])
        z = rng.random(mask.shape, dtype=np.float32) * 7 - 3.5
        z[mask] = np.where(rng.random(int(mask.sum())) < 0.5, -5.0, 5.0)
        return z

    z = masks.map_blocks(block, dtype=np.float32)
    return z.reshape(masks.shape[0], n_layers, d_model).persist()


def scipy_product_iou(a, b):
    """The earlier sparse path, kept as a baseline: one scipy sparse product ``b @ a.T`` on int64 data."""
    import scipy.sparse as sp

    from fnet_dist.match.iou import iou_from_counts

    a, b = sp.csr_matrix(a, dtype=bool).astype(np.int64), sp.csr_matrix(b, dtype=bool).astype(np.int64)
    return iou_from_counts((b @ a.T).T.toarray(), np.asarray(a.sum(axis=1)).ravel(), np.asarray(b.sum(axis=1)).ravel())


def persisted(collection):
    from distributed import wait

    collection = collection.persist()
    wait(collection)
    return collection


def sparse_path(client, templates, individual, subset, iou, loop_full: float, shape, seed: int) -> tuple[float, float]:
    """Threshold z-maps to dense masks and to CSR blocks (timed apart), then IoU on the CSR networks.
    Returns the seconds to dense masks, and to CSR plus the IoU on Dask."""
    from fnet_dist.match.iou import lazy_iou, pairwise_iou
    from fnet_dist.core.networks import binarize, flatten_networks, sparse_networks

    zmaps = synthetic_zmaps(individual, *shape, seed)
    persisted(zmaps)
    # one run each: a second persist of the same graph would find its blocks still in memory
    dense_s, dense = timed(lambda: persisted(flatten_networks(binarize(zmaps))))
    del dense
    sparse_s, networks = timed(lambda: persisted(sparse_networks(zmaps)))
    del zmaps
    assert np.array_equal(networks[:len(subset)].compute().toarray(), subset), "thresholding did not give the masks"
    nnz = int(networks.map_blocks(lambda block: np.full((1, 1), block.nnz), chunks=(1, 1), dtype=np.int64).sum().compute())
    print(f"thresholding z-maps on Dask ({len(networks.chunks[0])} row blocks): to dense masks {dense_s:.3f} s, "
          f"to CSR {sparse_s:.3f} s ({nnz:,} neurons in networks, {nnz * 5 / 1e6:.0f} MB as CSR "
          f"against {individual.nbytes / 1e6:.0f} MB of dense masks)")

    def on_dask():
        lazy, _, sizes = lazy_iou(templates, networks)
        return client.compute([lazy, sizes], sync=True)

    first_s, _ = timed(on_dask)  # the workers compile the kernel (or load it from numba's cache)
    dask_s, (sparse_iou, _) = timed(on_dask, repeat=5)
    assert np.array_equal(sparse_iou[:, :len(subset)], naive_loop(templates, subset)), "sparse IoU differs from the loop"
    assert np.array_equal(sparse_iou, iou)
    print(f"sparse bit-table kernel on the CSR blocks on Dask: {dask_s:.3f} s = {loop_full / dask_s:.0f} x the loop "
          f"(exactly equal on the timed subset and to the blocked product everywhere; first call {first_s:.2f} s)")
    local = networks.compute()
    first_s, _ = timed(pairwise_iou, templates, local)
    local_s, local_iou = timed(pairwise_iou, templates, local, repeat=5)
    assert np.array_equal(local_iou, iou)
    print(f"same kernel in one process on the gathered CSR: {local_s * 1000:.1f} ms = {loop_full / local_s:.0f} x the loop "
          f"(first call {first_s:.2f} s: numba compiles it, or loads it from its cache)")
    return dense_s, sparse_s + dask_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 samples over 17,280 neurons")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from distributed import wait

    from fnet_dist.core.cluster import dask_client
    from fnet_dist.match.iou import lazy_iou, pairwise_iou

    samples, shape = (20, (30, 576)) if args.quick else (100, (28, 3584))
    neurons = shape[0] * shape[1]
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
        from fnet_dist.core.networks import csr_networks

        sparse_a, sparse_b = csr_networks(templates), csr_networks(local)
        del local
        sparse_s, sparse_iou = timed(scipy_product_iou, sparse_a, sparse_b, repeat=2)
        assert np.array_equal(sparse_iou, iou)
        print(f"scipy sparse product (b @ a.T) on networks already held as CSR: {sparse_s:.3f} s = "
              f"{loop_full / sparse_s:.0f} x the loop (dense-to-CSR conversion not counted)")
        del sparse_a, sparse_b
        to_dense_s, sparse_total_s = sparse_path(client, templates, individual, subset, iou, loop_full, shape, args.seed + 20)
        print(f"threshold + IoU on Dask: dense masks + blocked bit-packed {to_dense_s + blocked_s:.2f} s, "
              f"CSR + sparse kernel {sparse_total_s:.2f} s")

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
