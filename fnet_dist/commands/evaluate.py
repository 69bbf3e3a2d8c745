"""``fnet evaluate``: lm-eval on the normal model and with networks inhibited / amplified, plus baselines."""
from __future__ import annotations

import argparse

from .placement import add_placement_arguments, placement

HELP = "evaluate the model with each network inhibited, and the random, top-percent and LLM-Localization baselines (lm-eval)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="smollm2-135m-instruct",
                        help="hub id, model folder, .gguf file or smollm2-135m-instruct (default)")
    parser.add_argument("--networks", nargs="+", required=True, metavar="NETWORKS",
                        help="networks store(s) written by fnet decompose")
    parser.add_argument("--out", required=True, help="results folder (rerun with the same --out to resume)")
    parser.add_argument("--tasks", nargs="+", default=None, metavar="TASK",
                        help="lm-eval task names (default: sentiment_rt polarity_pl wiki_ppl, offline); "
                             "the paper's: cola mnli mrpc qnli qqp rte sst2 wnli ag_news_fnet squad_fnet wikitext (need the hub)")
    parser.add_argument("--limit", type=float, default=None, help="documents per task (or a fraction below 1)")
    parser.add_argument("--backend", choices=("hf", "vllm"), default="hf",
                        help="hf: hooks on the loaded model; vllm: baked checkpoints (needs vLLM on a CUDA machine)")
    parser.add_argument("--conditions", nargs="+", default=None, metavar="PATTERN",
                        help="keep only conditions whose names match these shell patterns, e.g. normal 'inhibit:*' top5:inhibit")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random mask, localizer stimuli, probes and lm-eval")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--factor", type=float, default=1.02, help="amplification factor of the top-percent conditions")
    parser.add_argument("--random-percent", type=float, default=15.0, help="share of neurons in the random mask")
    parser.add_argument("--top-percent", type=float, default=5.0, help="share of neurons in the top-|z| mask")
    parser.add_argument("--threshold", type=float, default=3.6, help="|z| threshold of a network")
    parser.add_argument("--one-sided", action="store_true", help="networks are z > threshold (default |z| > threshold)")
    parser.add_argument("--no-localization", action="store_true", help="skip the LLM Localization baseline")
    parser.add_argument("--amplify-networks", action="store_true",
                        help="also amplify each network by --factor (the paper's Figure 3)")
    parser.add_argument("--probe", action="store_true", help="also run linear probes (Tables 12-13)")
    parser.add_argument("--sweep", action="store_true", help="also sweep multiplicative / additive edits (Figures 5-7)")
    parser.add_argument("--sweep-factors", type=float, nargs="+", default=None, metavar="F",
                        help="multiplicative factors of --sweep (default 0.5 0.9 1.02 1.1 1.5 2 3)")
    parser.add_argument("--sweep-values", type=float, nargs="*", default=None, metavar="V",
                        help="additive values of --sweep (default 0.1 0.5 1 1.5 2 3)")
    parser.add_argument("--hook-module", default=None, help="MLP block path for an unregistered family, e.g. 'model.layers.{i}.mlp'")
    add_placement_arguments(parser)
    parser.add_argument("--device", default=None, help="auto (default), cpu, cuda or cuda:N")
    parser.add_argument("--trust-remote-code", action="store_true", help="allow models that ship their own code (ChatGLM3)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")


def run(args: argparse.Namespace) -> int:
    from ..evaluate.experiment import ExperimentSettings, evaluate_networks
    from ..evaluate.runner import require_vllm
    from ..evaluate.tables import condition_table, to_markdown
    from ..evaluate.tasks import resolve_tasks
    from ..evaluate.vllm_backend import VLLMSettings
    from ..models import load_model
    from ..outputs import prepare_output

    if args.backend == "vllm":
        require_vllm()
    prepare_output(args.out, "evaluation", resume=True)  # a folder of other files: refused before any work
    tasks = resolve_tasks(args.tasks)
    settings = ExperimentSettings(seed=args.seed, factor=args.factor, random_percent=args.random_percent,
                                  top_percent=args.top_percent, threshold=args.threshold, two_sided=not args.one_sided,
                                  localization=not args.no_localization,
                                  amplify_networks=args.amplify_networks,
                                  **({"sweep_factors": tuple(args.sweep_factors)} if args.sweep_factors else {}),
                                  **({"sweep_values": tuple(args.sweep_values)} if args.sweep_values is not None else {}),
                                  ).validated()
    loaded = load_model(args.model, device=args.device, trust_remote_code=args.trust_remote_code, **placement(args))
    rows = evaluate_networks(loaded, args.networks, args.out, tasks=tasks, conditions=args.conditions, settings=settings,
                             probing=args.probe, sweeps=args.sweep, hook_module=args.hook_module, limit=args.limit,
                             backend=args.backend, batch_size=args.batch_size, progress=not args.quiet,
                             **({"vllm": VLLMSettings(trust_remote_code=args.trust_remote_code)} if args.backend == "vllm" else {}))
    print(to_markdown(condition_table(rows, list(dict.fromkeys(rows["condition"])))), end="")
    print(f"results: {args.out}/results.csv, tables in {args.out}/tables, figures in {args.out}/figures")
    return 0
