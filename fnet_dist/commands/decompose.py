"""``fnet decompose STORE --out NETWORKS``: individual-level ICA and group CanICA on Dask."""
from __future__ import annotations

import argparse

from ..core.config import DaskSection, DecomposeSection
from ..decompose import decompose
from ..flags import add_section, section_from

HELP = "spatial ICA of an activations store (individual maps per sample + group CanICA templates) on Dask"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("store", help="activations store (path or URL) written by fnet record")
    parser.add_argument("--out", required=True, help="networks store to write (path or URL)")
    parser.add_argument("--corpus", help="corpus name recorded in the store (default: the activations' corpus)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing networks store of another config (the same config always resumes)")
    add_section(parser, DaskSection, only=("scheduler",))
    add_section(parser, DecomposeSection)


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import xarray as xr


    url = decompose(args.store, args.out, section_from(args, DecomposeSection),
                    scheduler=section_from(args, DaskSection).scheduler, overwrite=args.overwrite, corpus=args.corpus)
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
