"""``fnet bake``: write a mask edit into a model's weights and save a standard HF checkpoint."""
from __future__ import annotations

import argparse

from storage_schemas import NETWORKS

from ..core.config import MatchSection, ModelSection
from ..core.errors import InputError
from ..flags import MODEL_FLAGS, OVERWRITE_HELP, TEMPLATES_HELP, add_section, renamed, section_from
from ..model.bake import bake_checkpoint
from ..model.edit import Edit
from ..model.masks import NeuronMask
from ..store.locks import output_lock
from ..store.outputs import prepare_output
from ..store.storage import open_store

HELP = "bake an edit of a neuron mask (inhibit, multiply, add) into the weights and save a safetensors checkpoint"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--mask", metavar="FILE", help="a neuron mask file (.npz written by fnet)")
    source.add_argument("--networks", metavar="NETWORKS", help="networks store URL; pick templates with --templates")
    parser.add_argument("--templates", "--template", dest="templates", type=int, nargs="+", metavar="K",
                        action=renamed("store", "--templates"), help=f"{TEMPLATES_HELP} of --networks; several are united")
    parser.add_argument("--out", required=True, metavar="CHECKPOINT", help="folder for the baked checkpoint")
    parser.add_argument("--edit", default="inhibit", choices=("inhibit", "multiply", "add"),
                        help="inhibit (x 0, default), multiply by --factor, or add --factor")
    parser.add_argument("--factor", type=float, default=None, metavar="F",
                        help="factor for multiply (default 1.02) or value for add (required)")
    parser.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    add_section(parser, ModelSection, rename=MODEL_FLAGS)
    add_section(parser, MatchSection, only=("threshold", "two_sided"))


def edit_from_args(kind: str, factor: float | None):
    """The ``Edit`` of ``--edit`` / ``--factor``, with a clear error for a factor that does not fit."""
    if kind == "inhibit":
        if factor is not None:
            raise InputError(f"--factor {factor:g} has no effect with --edit inhibit; drop it or use --edit multiply")
        return Edit("inhibit")
    if kind == "add" and factor is None:
        raise InputError("--edit add needs the value to add: pass --factor VALUE (e.g. --factor 0.5)")
    return Edit(kind, 1.02 if factor is None else factor)


def mask_from_args(args: argparse.Namespace):
    """The mask of ``--mask FILE`` or ``--networks NETWORKS --templates K...``."""
    if args.mask:
        if args.templates:
            raise InputError("--templates picks templates of --networks; it has no effect with --mask")
        return NeuronMask.load(args.mask)
    if not args.templates:
        raise InputError("--networks needs --templates K (one or more group template numbers, 1-based)")
    count = open_store(args.networks, NETWORKS).sizes["component"]
    bad = [k for k in args.templates if not 1 <= k <= count]
    if bad:
        raise InputError(f"--templates {bad[0]} is out of range: {args.networks} has templates 1..{count} "
                         f"(numbered as in the match tables)")
    match = section_from(args, MatchSection)
    return NeuronMask.from_networks(args.networks, [k - 1 for k in args.templates], threshold=match.threshold,
                                    two_sided=match.two_sided)


def run(args: argparse.Namespace) -> int:
    model = section_from(args, ModelSection, rename=MODEL_FLAGS)  # a bad placement flag fails before any work
    with output_lock(args.out):  # a second writer of this checkpoint is refused before any work
        prepare_output(args.out, "checkpoint", overwrite=args.overwrite)  # a user's folder: refused before any work
        edit = edit_from_args(args.edit, args.factor)
        mask = mask_from_args(args)
        out = bake_checkpoint(model.id, mask, edit, args.out, overwrite=args.overwrite, **model.placement())
    print(f"baked {edit.describe()} of {mask.name} ({mask.count} neurons, {100 * mask.fraction:.2f} %) into {out}")
    return 0
