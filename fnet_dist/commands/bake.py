"""``fnet bake``: write a mask edit into a model's weights and save a standard HF checkpoint."""
from __future__ import annotations

import argparse

from storage_schemas import NETWORKS

from ..core.config import MatchSection
from ..core.errors import InputError
from ..flags import add_section, section_from
from ..model.bake import bake_checkpoint
from ..model.edit import Edit
from ..model.masks import NeuronMask
from ..store.locks import output_lock
from ..store.outputs import prepare_output
from ..store.storage import open_store
from .placement import add_placement_arguments, placement

HELP = "bake an edit of a neuron mask (inhibit, multiply, add) into the weights and save a safetensors checkpoint"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="hub id, local folder, .gguf file, or smollm2-135m-instruct")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--mask", metavar="FILE", help="a neuron mask file (.npz written by fnet)")
    source.add_argument("--networks", metavar="NETWORKS", help="networks store URL; pick templates with --template")
    parser.add_argument("--template", type=int, nargs="+", metavar="K",
                        help="group template number(s) of --networks, 1-based as in the match tables; several are united")
    parser.add_argument("--out", required=True, metavar="CHECKPOINT", help="folder for the baked checkpoint")
    parser.add_argument("--edit", default="inhibit", choices=("inhibit", "multiply", "add"),
                        help="inhibit (x 0, default), multiply by --factor, or add --factor")
    parser.add_argument("--factor", type=float, default=None, metavar="F",
                        help="factor for multiply (default 1.02) or value for add (required)")
    parser.add_argument("--overwrite", action="store_true", help="replace a checkpoint already at --out")
    parser.add_argument("--revision", default=None, help="hub revision (branch, tag or commit)")
    add_placement_arguments(parser)
    parser.add_argument("--device", default="cpu", help="where to bake: cpu (default), auto, cuda or cuda:N")
    parser.add_argument("--trust-remote-code", action="store_true", help="allow a model's own modelling code (ChatGLM3 …)")
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
    """The mask of ``--mask FILE`` or ``--networks NETWORKS --template K...``."""
    if args.mask:
        if args.template:
            raise InputError("--template picks templates of --networks; it has no effect with --mask")
        return NeuronMask.load(args.mask)
    if not args.template:
        raise InputError("--networks needs --template K (one or more group template indices)")


    count = open_store(args.networks, NETWORKS).sizes["component"]
    bad = [k for k in args.template if not 1 <= k <= count]
    if bad:
        raise InputError(f"--template {bad[0]} is out of range: {args.networks} has templates 1..{count} "
                         f"(numbered as in the match tables)")
    match = section_from(args, MatchSection)
    return NeuronMask.from_networks(args.networks, [k - 1 for k in args.template], threshold=match.threshold,
                                    two_sided=match.two_sided)


def run(args: argparse.Namespace) -> int:
    placed = placement(args)  # a bad placement flag fails before any work
    with output_lock(args.out):  # a second writer of this checkpoint is refused before any work
        prepare_output(args.out, "checkpoint", overwrite=args.overwrite)  # a user's folder: refused before any work
        edit = edit_from_args(args.edit, args.factor)
        mask = mask_from_args(args)
        out = bake_checkpoint(args.model, mask, edit, args.out, overwrite=args.overwrite, revision=args.revision,
                              device=args.device, trust_remote_code=args.trust_remote_code, **placed)
    print(f"baked {edit.describe()} of {mask.name} ({mask.count} neurons, {100 * mask.fraction:.2f} %) into {out}")
    return 0
