"""``fnet evaluate``: lm-eval on the normal model and with networks inhibited / amplified, plus baselines; or with
masks of your own (``--mask FILE``)."""
from __future__ import annotations

import argparse
import re

from ..core.conditions import NORMAL, custom
from ..core.config import EvaluateSection, MatchSection, ModelSection
from ..core.errors import InputError
from ..evaluate.backends import get_backend
from ..evaluate.experiment import evaluate_networks
from ..evaluate.runner import evaluate_conditions
from ..evaluate.tables import condition_table, to_markdown
from ..evaluate.tasks import TaskOptions, resolve_tasks
from ..evaluate.vllm_backend import vllm_options
from ..flags import MODEL_FLAGS, add_section, section_from
from ..model.edit import Edit
from ..model.loading import load_model
from ..model.masks import NeuronMask
from ..store.locks import output_lock
from ..store.outputs import prepare_output

HELP = ("evaluate the model with each network inhibited, and the random, top-percent and LLM-Localization baselines "
        "(lm-eval); or with masks of your own (--mask)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--networks", nargs="+", metavar="NETWORKS",
                        help="networks store(s) written by fnet decompose: the paper's conditions")
    parser.add_argument("--mask", nargs="+", default=[], metavar="FILE",
                        help="neuron mask file(s) (.npz: NeuronMask.save, an evaluation's masks/ folder), each "
                             "inhibited, beside the normal model; with --networks, beside the paper's conditions too")
    parser.add_argument("--out", required=True, help="results folder (rerun with the same --out to resume)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    add_section(parser, ModelSection, rename=MODEL_FLAGS)
    add_section(parser, MatchSection, only=("threshold", "two_sided"))
    add_section(parser, EvaluateSection, skip=("enabled", "networks_of"))


def _mask_conditions(files: list[str]) -> list:
    """One inhibit condition per mask file, named by its file's stem (``my-mask.npz`` -> ``inhibit:my-mask``)."""
    masks = [NeuronMask.load(path) for path in files]
    labels = [re.sub(r"[^A-Za-z0-9_.-]+", "-", path.rsplit("/", 1)[-1].removesuffix(".npz")).strip("-") or "mask"
              for path in files]
    if len(set(labels)) != len(labels):
        raise InputError(f"--mask files {files} share a name; give each mask file its own name")
    return [custom(label, mask, Edit("inhibit")) for label, mask in zip(labels, masks)]


def run(args: argparse.Namespace) -> int:
    settings = section_from(args, EvaluateSection)
    match = section_from(args, MatchSection)
    model = section_from(args, ModelSection, rename=MODEL_FLAGS)
    if not args.networks and not args.mask:
        raise InputError("nothing to evaluate: pass --networks (stores of fnet decompose) or --mask FILE")
    get_backend(settings.backend).require(settings.vllm.python)
    options = TaskOptions.of(settings)
    tasks = resolve_tasks(list(settings.tasks), options.include_path)  # an unknown task fails before the model loads
    masks = _mask_conditions(args.mask)  # a bad mask file fails before the model loads
    with output_lock(args.out):  # a second writer of these results is refused before the model loads
        prepare_output(args.out, "evaluation", resume=True)  # a folder of other files: refused before any work
        loaded = load_model(model.id, **model.placement())
        engine = {"progress": not args.quiet, **vllm_options(settings, model)}
        if args.networks:
            rows = evaluate_networks(loaded, args.networks, args.out, settings, match, hook_module=model.hook_module,
                                     extra=masks, **engine)
        else:  # the same options evaluate_networks takes from the section
            rows = evaluate_conditions(loaded, [NORMAL, *masks], tasks, args.out, limit=settings.limit,
                                       backend=settings.backend, batch_size=settings.batch_size, seed=settings.seed,
                                       hook_module=model.hook_module, task_options=options, **engine)
    print(to_markdown(condition_table(rows, list(dict.fromkeys(rows["condition"])))), end="")
    print(f"results: {args.out}/results.csv, tables in {args.out}/tables, figures in {args.out}/figures")
    return 0
