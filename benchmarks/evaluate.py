"""Benchmark of ``fnet_dist.evaluate`` on the packaged SmolLM2-135M-Instruct (CPU).

Runs lm-eval through ``evaluate_conditions`` for: the normal model, a random 15 % mask inhibited,
the LLM-Localization top 5 % inhibited and amplified ×1.02. Prints per condition its score and its
wall time as a ratio to the normal condition measured in the same run (hook overhead + edit effect on
lm-eval's work; after a warm-up run), the localizer's time, and probe accuracy under normal vs random 15 %.

    python benchmarks/evaluate.py [--limit 40] [--ppl-limit 2] [--threads 1] [--out /tmp/fnet-bench-eval]
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from fnet_dist.architectures import resolve_architecture
from fnet_dist.edit import Edit, model_shape
from fnet_dist.evaluate import NORMAL, Condition, evaluate_conditions, random_condition
from fnet_dist.evaluate.baselines import localize, localizer_stimuli
from fnet_dist.evaluate.probing import labelled_texts, probe_conditions
from fnet_dist.models import load_model
from fnet_dist.outputs import prepare_output
from fnet_dist.storage import remove_store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=40, help="Rotten Tomatoes snippets per condition")
    parser.add_argument("--ppl-limit", type=int, default=2, help="wiki passages per condition")
    parser.add_argument("--probe-texts", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a shared machine)")
    parser.add_argument("--out", default="/tmp/fnet-bench-eval")
    args = parser.parse_args()
    for part in ("warmup-sentiment_rt", "warmup-wiki_ppl", "rt", "ppl"):  # fresh results; nothing else is touched
        if prepare_output(f"{args.out}/{part}", "evaluation", overwrite=True):
            remove_store(f"{args.out}/{part}")
    torch.set_num_threads(args.threads)

    start = time.perf_counter()
    loaded = load_model("smollm2-135m-instruct")
    arch = resolve_architecture(loaded.model)
    print(f"model load: {time.perf_counter() - start:.1f} s")

    start = time.perf_counter()
    sentences, nonwords = localizer_stimuli(120, seed=0)
    shape = model_shape(loaded.model, arch)
    found = localize(loaded.model, loaded.tokenizer, arch, sentences, nonwords, percent=5)
    print(f"localizer (120 + 120 stimuli, {found.mask.count} units): {time.perf_counter() - start:.1f} s")

    conditions = [NORMAL, random_condition(shape, percent=15, seed=0),
                  Condition("localization:inhibit", found.mask, Edit("inhibit")),
                  Condition("localization:multiply1.02", found.mask, Edit("multiply", 1.02))]
    seconds = {}
    for task in ("sentiment_rt", "wiki_ppl"):  # warm-up: data materialised, first batches paid, before timing
        evaluate_conditions(loaded, [NORMAL], [task], f"{args.out}/warmup-{task}", limit=1, progress=False)
    rows = evaluate_conditions(loaded, conditions, ["sentiment_rt"], f"{args.out}/rt", limit=args.limit)
    ppl = evaluate_conditions(loaded, conditions, ["wiki_ppl"], f"{args.out}/ppl", limit=args.ppl_limit)
    for folder in ("rt", "ppl"):
        for condition in conditions:
            record = json.load(open(f"{args.out}/{folder}/conditions/{condition.slug}/condition.json"))
            seconds[(folder, condition.name)] = record["seconds"]
    print(f"\n{'condition':28s} {'neurons':>8s} {'RT acc':>8s} {'wiki word ppl':>14s} {'time RT / normal':>17s} {'time ppl / normal':>18s}")
    for condition in conditions:
        acc = rows[(rows.condition == condition.name) & (rows.metric == "acc")].value.item()
        word = ppl[(ppl.condition == condition.name) & (ppl.metric == "word_perplexity")].value.item()
        rt_ratio = seconds[("rt", condition.name)] / seconds[("rt", "normal")]
        ppl_ratio = seconds[("ppl", condition.name)] / seconds[("ppl", "normal")]
        print(f"{condition.name:28s} {condition.neurons:8d} {acc:8.3f} {word:14.2f} {rt_ratio:17.3f} {ppl_ratio:18.3f}")
    print(f"normal condition wall time: RT {seconds[('rt', 'normal')]:.1f} s ({args.limit} snippets), "
          f"ppl {seconds[('ppl', 'normal')]:.1f} s ({args.ppl_limit} passages)")

    start = time.perf_counter()
    texts, labels = labelled_texts("sentiment_rt", args.probe_texts, seed=0)
    probes = probe_conditions(loaded, conditions[:2], texts, labels, poolings=("last", "mean"), folds=5, seed=0)
    print(f"\nprobing ({args.probe_texts} snippets, 5-fold, {time.perf_counter() - start:.1f} s):")
    print(probes[["condition", "pooling", "accuracy", "std"]].to_string(index=False))


if __name__ == "__main__":
    main()
