"""``fnet decompose STORE --out NETWORKS``: individual-level ICA and group CanICA on Dask."""
from __future__ import annotations

import argparse

HELP = "spatial ICA of an activations store (individual maps per sample + group CanICA templates) on Dask"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("store", help="activations store (path or URL) written by fnet record")
    parser.add_argument("--out", required=True, help="networks store to write (path or URL)")
    parser.add_argument("--components", type=int, default=64, help="individual-level components per sample (64)")
    parser.add_argument("--group-components", type=int, default=10, help="group templates (10)")
    parser.add_argument("--n-init", type=int, default=10, help="group FastICA restarts; the sparsest is kept (10)")
    parser.add_argument("--seed", type=int, default=0, help="seed all restarts and stability runs are drawn from")
    parser.add_argument("--scheduler", help="Dask scheduler address (default $DASK_SCHEDULER_ADDRESS, else a LocalCluster)")
    parser.add_argument("--exclude-first-tokens", type=int, default=0,
                        help="leave the first N tokens of each sample out (massive first-token activations; 0 = the paper's way)")
    parser.add_argument("--stability-runs", type=int, default=2, help="ICA seeds per sample to measure map stability (2)")
    parser.add_argument("--levels", default="group,individual", help="comma-separated subset of group,individual")
    parser.add_argument("--max-iter", type=int, default=200, help="FastICA iterations per individual run (200)")
    parser.add_argument("--tol", type=float, default=1e-4, help="FastICA tolerance (1e-4)")
    parser.add_argument("--fun", default="logcosh", help="FastICA contrast: logcosh, cube or exp (logcosh)")
    parser.add_argument("--single-token-share", type=float, default=0.5,
                        help="flag components whose source puts more than this share of its energy on one token (0.5)")
    parser.add_argument("--dataset", help="corpus name recorded in the store (default: the activations' corpus)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing networks store of another config (the same config always resumes)")


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import xarray as xr

    from ..decompose import decompose

    url = decompose(args.store, args.out, components=args.components, group_components=args.group_components,
                    n_init=args.n_init, seed=args.seed, scheduler=args.scheduler,
                    exclude_first_tokens=args.exclude_first_tokens, stability_runs=args.stability_runs,
                    max_iter=args.max_iter, tol=args.tol, fun=args.fun, single_token_share=args.single_token_share,
                    overwrite=args.overwrite, levels=args.levels, dataset=args.dataset)
    ds = xr.open_zarr(url, consolidated=False)
    if ds.sizes["sample"]:
        status = [str(s) for s in ds["individual_status"].values]
        print(f"individual: {status.count('ok')}/{len(status)} samples ok, "
              f"{int(ds['individual_converged'].values.sum())} converged, "
              f"median stability {float(np.nanmedian(ds['individual_stability'].values)):.2f}")
    if "group" in ds.attrs["levels"]:
        print(f"group: {ds.sizes['component']} templates, stability "
              f"{', '.join(f'{v:.2f}' for v in ds['group_stability'].values)}")
    print(url)
    return 0
