"""``fnet match NETWORKS... --out RESULTS``: consistency tables, cross-corpus similarity and figures."""
from __future__ import annotations

import argparse

HELP = "match group templates with individual maps and across corpora (paper Tables 1, 2, 6-8; Figure 4)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("networks", nargs="+", metavar="NETWORKS", help="networks stores (one per corpus), paths or URLs")
    parser.add_argument("--out", required=True, metavar="RESULTS", help="results folder (path or URL) for tables and figures")
    parser.add_argument("--threshold", type=float, default=3.6, help="z threshold that makes a map a network (default 3.6)")
    parser.add_argument("--one-sided", action="store_true", help="keep only z > threshold (default: |z| > threshold)")
    parser.add_argument("--iou", type=float, default=0.2, help="IoU above which an individual map is a counterpart (default 0.2)")
    parser.add_argument("--similar-iou", type=float, default=0.2,
                        help="IoU above which templates of two corpora are listed as similar (default 0.2)")
    parser.add_argument("--overwrite", action="store_true", help="replace match results already at --out")
    parser.add_argument("--scheduler", metavar="ADDR", default=None,
                        help="Dask scheduler address (default: $DASK_SCHEDULER_ADDRESS, else a local cluster)")


def run(args: argparse.Namespace) -> int:
    from fnet_dist.match import match_networks

    results = match_networks(
        args.networks, args.out, threshold=args.threshold, two_sided=not args.one_sided, iou=args.iou,
        scheduler=args.scheduler, similar_iou=args.similar_iou, overwrite=args.overwrite,
    )
    for corpus in results.corpora:  # empty templates are already logged as warnings by match_networks
        if corpus["skipped_samples"]:
            kinds = ", ".join(f"{n} {k}" for k, n in corpus["skipped_reasons"].items())
            print(f"note: {corpus['dataset']}: {len(corpus['skipped_samples'])} of "
                  f"{corpus['samples'] + len(corpus['skipped_samples'])} individual samples are not usable ({kinds}); "
                  f"counts are over the {corpus['samples']} usable ones")
        if corpus["empty_individual_maps"]:
            print(f"note: {corpus['dataset']}: {corpus['empty_individual_maps']} of {corpus['individual_maps']} "
                  f"individual maps are empty at threshold {args.threshold:g}")
    print(f"wrote {len(results.files)} files under {args.out}; {len(results.similar_pairs)} similar template pairs across corpora\n")
    print(results.markdown, end="")
    return 0
