"""``fnet match NETWORKS... --out RESULTS``: consistency tables, cross-corpus similarity and figures."""
from __future__ import annotations

import argparse

from ..core.config import DaskSection, MatchSection
from ..flags import add_section, section_from
from ..match.matching import match_networks

HELP = "match group templates with individual maps and across corpora (paper Tables 1, 2, 6-8; Figure 4)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("networks", nargs="+", metavar="NETWORKS", help="networks stores (one per corpus), paths or URLs")
    parser.add_argument("--out", required=True, metavar="RESULTS", help="results folder (path or URL) for tables and figures")
    parser.add_argument("--anatomy", action=argparse.BooleanOptionalAction, default=True,
                        help="also find massive channels in the activations stores behind the networks (what the "
                             "controls of fnet evaluate need; default: yes)")
    parser.add_argument("--overwrite", action="store_true", help="replace match results already at --out")
    add_section(parser, DaskSection, only=("scheduler",))
    add_section(parser, MatchSection)


def run(args: argparse.Namespace) -> int:
    params = section_from(args, MatchSection)
    results = match_networks(args.networks, args.out, params, scheduler=section_from(args, DaskSection).scheduler,
                             anatomy=args.anatomy, overwrite=args.overwrite)
    for corpus in results.corpora:  # empty templates are already logged as warnings by match_networks
        if corpus["skipped_samples"]:
            kinds = ", ".join(f"{n} {k}" for k, n in corpus["skipped_reasons"].items())
            print(f"note: {corpus['corpus']}: {len(corpus['skipped_samples'])} of "
                  f"{corpus['samples'] + len(corpus['skipped_samples'])} individual samples are not usable ({kinds}); "
                  f"counts are over the {corpus['samples']} usable ones")
        if corpus["empty_individual_maps"]:
            print(f"note: {corpus['corpus']}: {corpus['empty_individual_maps']} of {corpus['individual_maps']} "
                  f"individual maps are empty at threshold {params.threshold:g}")
    print(f"wrote {len(results.files)} files under {args.out}; {len(results.similar_pairs)} similar template pairs across corpora\n")
    print(results.markdown, end="")
    return 0
