"""Benchmark of the match stage's massive-channel scan (``fnet_dist.match.anatomy.massive_channels``), as ratios
to two references timed in the same run on the same activations store:

- a bare read of every sample's real tokens (``ds["activation"][s, :n].values``): the I/O floor of any scan;
- Dask's peak |activation| over the whole padded array (``abs(a).max(axis=(0, 1)).compute()``): one of the three
  passes the scan replaced (the others read a token subsample and each sample again).

Default store: synthetic and padded like a recorded one, 60 samples of 66-200 real tokens (of 512) over
SmolLM2-135M's 30 × 576 neurons in float16, chunks of 32 tokens, two planted massive channels. ``--store``
times a recorded activations store instead (e.g. runs/paper-smollm2/activations/code.zarr).

    python benchmarks/anatomy.py [--store URL] [--samples 60]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's fnet_dist, not an installed one


def synthetic_store(folder: Path, samples: int) -> str:
    from fnet_dist.model.testing import activation_dataset
    from fnet_dist.store.storage import write_store
    from storage_schemas import ACTIVATIONS

    rng = np.random.default_rng(0)
    n_tokens = rng.integers(66, 201, samples)
    act = np.zeros((samples, 512, 30, 576), dtype=np.float16)
    for s, n in enumerate(n_tokens):
        act[s, :n] = rng.normal(0, 1, (n, 30, 576)).astype(np.float16)
        act[s, 0, 11, 507] = 20000.0  # a first-token massive channel, as SmolLM2's layer 11
    act[3, 40, 28, 100] = 900.0
    ds = activation_dataset(act, n_tokens)
    url = str(folder / "synthetic.zarr")
    write_store(ds, url, ACTIVATIONS, encoding={"activation": {"chunks": (1, 32, 30, 576)}})
    return url


def timed(function):
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", help="an activations store (default: a synthetic one in a temporary folder)")
    parser.add_argument("--samples", type=int, default=60, help="samples of the synthetic store")
    args = parser.parse_args(argv)

    from fnet_dist.core.config import MatchSection
    from fnet_dist.match.anatomy import MassiveRule, massive_channels
    from fnet_dist.store.storage import open_store
    from storage_schemas import ACTIVATIONS

    with tempfile.TemporaryDirectory() as tmp:
        url = args.store or synthetic_store(Path(tmp), args.samples)
        ds = open_store(url, ACTIVATIONS)
        n_tokens = ds["n_tokens"].values
        shape = ds["activation"].shape
        print(f"store: {url}\n  {shape[0]} samples × ≤ {shape[1]} tokens × {shape[2]} × {shape[3]} neurons, "
              f"{int(n_tokens.sum()):,} real tokens ({n_tokens.sum() / (shape[0] * shape[1]):.0%} of the padded array)")
        read, _ = timed(lambda: [ds["activation"][s, :n].values for s, n in enumerate(n_tokens.tolist()) if n])
        peak, _ = timed(lambda: abs(ds["activation"].data).max(axis=(0, 1)).compute())
        scan, table = timed(lambda: massive_channels(ds, MassiveRule.of(MatchSection(), int(ds.attrs.get("seed", 0)))))
    print(f"  bare read of the real tokens:           {read:7.2f} s")
    print(f"  Dask peak over the padded array:        {peak:7.2f} s")
    print(f"  massive_channels (one scan):            {scan:7.2f} s  ({len(table)} massive channels)")
    print(f"  scan / bare read:                       {scan / read:7.2f}×")
    print(f"  scan / Dask peak pass alone:            {scan / peak:7.2f}×")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
