"""``fnet evaluate``: lm-eval on the normal model and with networks inhibited / amplified, plus baselines."""
from __future__ import annotations

import argparse

from ..core.config import EvaluateSection, MatchSection, ModelSection
from ..evaluate.backends import get_backend
from ..evaluate.experiment import evaluate_networks
from ..evaluate.tables import condition_table, to_markdown
from ..evaluate.tasks import resolve_tasks
from ..evaluate.vllm_backend import vllm_options
from ..flags import add_section, section_from
from ..model.loading import load_model
from ..store.locks import output_lock
from ..store.outputs import prepare_output

HELP = "evaluate the model with each network inhibited, and the random, top-percent and LLM-Localization baselines (lm-eval)"
MODEL_FLAGS = {"id": "model"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--networks", nargs="+", required=True, metavar="NETWORKS",
                        help="networks store(s) written by fnet decompose")
    parser.add_argument("--out", required=True, help="results folder (rerun with the same --out to resume)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    add_section(parser, ModelSection, rename=MODEL_FLAGS)
    add_section(parser, MatchSection, only=("threshold", "two_sided"))
    add_section(parser, EvaluateSection, skip=("enabled", "networks_of"))


def run(args: argparse.Namespace) -> int:
    settings = section_from(args, EvaluateSection)
    match = section_from(args, MatchSection)
    model = section_from(args, ModelSection, rename=MODEL_FLAGS)
    get_backend(settings.backend).require()
    resolve_tasks(list(settings.tasks))  # an unknown task fails before the model loads
    with output_lock(args.out):  # a second writer of these results is refused before the model loads
        prepare_output(args.out, "evaluation", resume=True)  # a folder of other files: refused before any work
        loaded = load_model(model.id, **model.placement())
        rows = evaluate_networks(loaded, args.networks, args.out, settings, match, hook_module=model.hook_module,
                                 progress=not args.quiet, **vllm_options(settings, model))
    print(to_markdown(condition_table(rows, list(dict.fromkeys(rows["condition"])))), end="")
    print(f"results: {args.out}/results.csv, tables in {args.out}/tables, figures in {args.out}/figures")
    return 0
