"""Benchmark of evaluation throughput: tokens scored per second over many conditions, three ways, one run.

On one loaded model, for the same conditions (the normal model and random 15 % masks inhibited) and the
same tasks and documents (the default config's tasks and limits):

(a) a bare batched forward pass over the texts lm-eval scores (each distinct forward row, per request type
    as HFLM batches them, sorted by length,
    ``--batch-size`` rows at a time, ``model(ids)`` and nothing else), once per condition;
(b) the ``hf`` backend's engine: ``scoring.Scorer`` on ``hflm.LeanHFLM`` (requests built once — its setup is
    timed with it — then per condition: scored under the edit hooks, per-document metrics, aggregation,
    logged samples);
(b0) the same ``Scorer`` on lm-eval's stock ``HFLM`` (the engine before ``LeanHFLM``: the LM head and the
    log-softmax at every position, long documents padded to the longest in their batch);
(c) the per-condition ``lm_eval.simple_evaluate`` path on the stock ``HFLM`` that the engine replaced (one
    call per task-limit group per condition, under the same hooks).

All run interleaved, condition by condition, so that a change of load touches them alike.

Prints tokens scored per second of each, (b) / (a) (target ≥ 0.8) and (b) / (c) (target ≥ 3), in wall and in
CPU seconds (with ``--threads 1`` these hold on a busy machine), seconds per condition before / after
``LeanHFLM``, and the bare forward's tokens per CPU-second at larger batches (several conditions per batch,
one mask per row, would pay only if these grew).

    python benchmarks/evaluate.py [--quick] [--conditions 4] [--batch-size 8] [--threads 2]

``--backend vllm`` measures the vllm backend beside the hf backend on the same conditions and documents (the
packaged SmolLM2; ``--quick``: 16 + 1 documents), interleaved condition by condition: (h) the ``hf`` engine
(hooks), (v) the ``vllm`` engine, one engine for all conditions edited in place, (vb) the ``vllm`` engine with
``in_place: false``, each masked condition baked and served by a fresh engine (seconds include the bake and
the start). Prints each engine start, seconds per condition (start apart), tokens/s and the ratios against (h).

    python benchmarks/evaluate.py --backend vllm [--quick] [--conditions 3]
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from fnet_dist.model.architectures import resolve_architecture  # noqa: E402
from fnet_dist.core.config import load_config  # noqa: E402
from fnet_dist.model.edit import edited, model_shape  # noqa: E402
from fnet_dist.evaluate.conditions import random_condition
from fnet_dist.core.conditions import NORMAL  # noqa: E402
from fnet_dist.evaluate.hflm import LeanHFLM, _batches  # noqa: E402
from fnet_dist.evaluate.runner import _limit_groups, _simple_evaluate, evaluate_conditions  # noqa: E402
from fnet_dist.evaluate.scoring import Scorer, _environment  # noqa: E402
from fnet_dist.evaluate.tasks import prepare_tasks  # noqa: E402
from fnet_dist.model.loading import load_model  # noqa: E402
from fnet_dist.evaluate.backends import get_backend  # noqa: E402
from fnet_dist.core.config import VLLMSection  # noqa: E402


def forward_rows(scorer: Scorer) -> list[list[list[int]]]:
    """The token rows lm-eval's HFLM runs for ``scorer``'s requests, one list per request type as HFLM batches
    them (one row per distinct context; one per rolling window)."""
    from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

    lm, rows, rolling = scorer.lm, {}, []
    for instance in scorer.requests.get("loglikelihood", []):
        context, continuation = lm._encode_pair(*instance.args)
        row = tuple(context + continuation[:-1])
        rows[row] = list(row)
    for instance in scorer.requests.get("loglikelihood_rolling", []):
        windows = get_rolling_token_windows(token_list=lm.tok_encode(instance.args[0]), prefix_token=lm.prefix_token_id,
                                            max_seq_len=lm.max_length, context_len=1)
        for context, continuation in map(make_disjoint_window, windows):
            rolling.append((context + continuation)[-(lm.max_length + 1):][:-1])
    return [kind for kind in (list(rows.values()), rolling) if kind]


def bare_forward(model, rows: list[list[int]], batch_size: int) -> None:
    """``model(ids)`` on ``rows`` sorted by length, right-padded, ``batch_size`` at a time."""
    ordered = sorted(rows, key=len, reverse=True)
    with torch.no_grad():
        for start in range(0, len(ordered), batch_size):
            batch = ordered[start:start + batch_size]
            width = max(map(len, batch))
            model(torch.tensor([row + [0] * (width - len(row)) for row in batch]))


def cpu_seconds() -> float:
    """CPU seconds of this process and its finished children (lm-eval's environment probes run ``pip``, ``git``)."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a tiny random Llama and 8 + 1 documents")
    parser.add_argument("--conditions", type=int, default=4, help="normal + (N - 1) random masks")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--backend", choices=("hf", "vllm"), default="hf", help="vllm: the vllm backend beside hf")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.backend == "vllm":
        return vllm_main(args)
    work = Path(tempfile.mkdtemp(prefix="fnet-bench-eval-"))
    settings = load_config(ROOT / "pipeline" / "default.yaml").evaluate
    tasks, limit = list(settings.tasks), dict(settings.limit)
    if args.quick:
        from fnet_dist.model.testing import build_tiny_model

        spec, limit = str(build_tiny_model("llama", work / "tiny")), {task: (8 if "ppl" not in task else 1) for task in tasks}
    else:
        spec = "smollm2-135m-instruct"
    loaded = load_model(spec)
    arch = resolve_architecture(loaded.model)
    shape = model_shape(loaded.model, arch)
    conditions = [NORMAL] + [random_condition(shape, percent=15, seed=s) for s in range(args.conditions - 1)]
    contexts = [(lambda c=c: nullcontext() if c.mask is None else edited(loaded.model, arch, c.mask, c.edit))
                for c in conditions]
    manager = prepare_tasks(tasks, work / "tasks")
    from lm_eval.models.huggingface import HFLM

    stock = HFLM(pretrained=loaded.model, tokenizer=loaded.tokenizer, batch_size=args.batch_size)
    lm = LeanHFLM(pretrained=loaded.model, tokenizer=loaded.tokenizer, batch_size=args.batch_size)
    groups = _limit_groups(tasks, limit)
    scorers = [Scorer(lm, manager, group, limit=group_limit, seed=0, bootstrap_iters=1000) for group_limit, group in groups]
    stock_scorers = [Scorer(stock, manager, group, limit=group_limit, seed=0, bootstrap_iters=1000)
                     for group_limit, group in groups]
    row_sets = [rows for scorer in scorers for rows in forward_rows(scorer)]  # batched apart, as HFLM does
    tokens = sum(scorer.tokens for scorer in scorers)
    evaluate_conditions(loaded, [NORMAL], tasks, work / "warmup", limit={t: 1 for t in tasks}, progress=False)
    bare_forward(loaded.model, row_sets[0][:2], args.batch_size)

    def bare_pass(size: int) -> None:
        for rows in row_sets:
            bare_forward(loaded.model, rows, size)

    spent = {part: [0.0, 0.0] for part in ("a", "b", "b0", "c", "setup")}  # wall, CPU seconds

    def timed(part: str, work) -> None:
        t0, c0 = time.perf_counter(), cpu_seconds()
        work()
        spent[part][0] += time.perf_counter() - t0
        spent[part][1] += cpu_seconds() - c0

    def setup() -> None:  # (b)'s once-per-run cost: tasks loaded, requests built, environment probed
        _environment.cache_clear()
        scorers[:] = [Scorer(lm, manager, group, limit=group_limit, seed=0, bootstrap_iters=1000)
                      for group_limit, group in groups]

    def before(context) -> None:
        for group_limit, group in groups:
            with context():
                _simple_evaluate(stock, group, manager, group_limit, 0, 1000)

    def body_pass() -> None:  # the decoder body alone (no LM head), batched as LeanHFLM batches
        with torch.no_grad():
            for rows in row_sets:
                for batch in _batches(sorted(map(tuple, rows), key=lambda row: (-len(row), row)), args.batch_size):
                    width = len(batch[0])
                    loaded.model.base_model(torch.tensor([list(row) + [0] * (width - len(row)) for row in batch]))

    def differences(ours: list[dict], theirs: list[dict]) -> float:
        """Largest relative difference between the numbers of two runs' ``results``."""
        pairs = [(a[task][key], b[task][key]) for a, b in zip([r["results"] for r in ours], [r["results"] for r in theirs])
                 for task in b for key in b[task] if isinstance(b[task][key], float)]
        return max(abs(x - y) / max(abs(y), 1e-12) for x, y in pairs)

    timed("setup", setup)
    worst = 0.0
    for context in contexts:  # interleaved, so that a change of load on the machine touches all alike
        timed("a", lambda: bare_pass(args.batch_size))
        outcome: dict[str, list] = {}
        timed("b", lambda: outcome.__setitem__("b", [scorer.score(context()) for scorer in scorers]))
        timed("b0", lambda: outcome.__setitem__("b0", [scorer.score(context()) for scorer in stock_scorers]))
        timed("c", lambda: before(context))
        worst = max(worst, differences(outcome["b"], outcome["b0"]))
    (bare, bare_cpu), (before, before_cpu), (stock_engine, stock_cpu) = spent["a"], spent["c"], spent["b0"]
    (scoring, scoring_cpu), (setup_wall, setup_cpu) = spent["b"], spent["setup"]
    engine, engine_cpu = scoring + setup_wall, scoring_cpu + setup_cpu

    n = len(conditions)
    print(f"model {spec}, torch threads {args.threads}, batch {args.batch_size}; tasks {limit}; "
          f"{n} conditions; {tokens} tokens per condition ({sum(map(len, row_sets))} forward rows)")
    for label, seconds, cpu in (("(a) bare batched forward", bare, bare_cpu),
                                ("(b) scoring engine (+ its setup)", engine, engine_cpu),
                                ("(b0) engine on the stock HFLM", stock_engine, stock_cpu),
                                ("(c) simple_evaluate per condition", before, before_cpu)):
        print(f"{label:36s} {seconds:8.1f} s  {seconds / n:6.2f} s/condition  {tokens * n / seconds:8.0f} tokens/s  "
              f"(CPU {cpu / n:6.2f} s/condition)")
    print(f"engine / bare forward: {bare / engine:.2f} x (target >= 0.8); "
          f"engine / simple_evaluate path: {before / engine:.2f} x (target >= 3)")
    print(f"in CPU seconds (steadier on a busy machine): engine / bare {bare_cpu / engine_cpu:.2f} x, "
          f"engine / simple_evaluate path {before_cpu / engine_cpu:.2f} x")
    print(f"CPU seconds per condition (setup apart) before / after LeanHFLM: {stock_cpu / n:.2f} / "
          f"{scoring_cpu / n:.2f} ({stock_cpu / scoring_cpu:.2f} x; wall {stock_engine / scoring:.2f} x); results equal within "
          f"{worst:.1e} (largest relative difference)")
    c0 = time.process_time()
    body_pass()
    body_cpu = time.process_time() - c0
    print(f"decoder body alone (no LM head), batched as LeanHFLM: {body_cpu:.2f} CPU-s per condition; "
          f"engine (setup apart) / body: {body_cpu / (scoring_cpu / n):.2f} x; the engine's setup: {setup_cpu:.1f} CPU-s")
    for size in sorted({args.batch_size, 32, 64}):
        c0 = time.process_time()
        bare_pass(size)
        cpu = time.process_time() - c0
        print(f"bare forward, batch {size:3d}: {tokens / cpu:8.0f} tokens per CPU-second")
    shutil.rmtree(work, ignore_errors=True)


def vllm_main(args) -> None:
    """(h) hf hooks, (v) vllm in place, (vb) vllm baked: the same conditions and documents, interleaved."""
    from fnet_dist.evaluate.vllm_backend import VLLMSettings

    work = Path(tempfile.mkdtemp(prefix="fnet-bench-vllm-"))
    settings = load_config(ROOT / "pipeline" / "default.yaml").evaluate
    tasks, limit = list(settings.tasks), dict(settings.limit)
    if args.quick:
        limit = {task: (16 if "ppl" not in task else 1) for task in tasks}
    loaded = load_model("smollm2-135m-instruct")
    shape = model_shape(loaded.model, resolve_architecture(loaded.model))
    conditions = [NORMAL] + [random_condition(shape, percent=15, seed=s) for s in range(args.conditions - 1)]
    manager = prepare_tasks(tasks, work / "tasks")
    groups = _limit_groups(tasks, limit)
    options = {"batch_size": args.batch_size, "hook_module": None, "keep_checkpoints": False}
    engines = {"h": get_backend("hf").open(loaded, work / "h", **options),
               "v": get_backend("vllm").open(loaded, work / "v", **options, vllm=VLLMSettings(scratch=str(work / "v"))),
               "vb": get_backend("vllm").open(loaded, work / "vb", **options, vllm=VLLMSettings(
                   VLLMSection(in_place=False), scratch=str(work / "vb")))}
    seconds, results = {name: [] for name in engines}, {name: [] for name in engines}
    for condition in conditions:  # interleaved, so that a change of load touches all alike
        for name, engine in engines.items():
            starts = len(getattr(engine, "starts", []))
            t0 = time.perf_counter()
            results[name].append([engine.run(condition, group, manager, group_limit, 0, 1000)["results"]
                                  for group_limit, group in groups])
            spent = time.perf_counter() - t0
            seconds[name].append(spent - sum(getattr(engine, "starts", [])[starts:]) if name == "v" else spent)
    tokens = sum(stat["tokens"] for stat in engines["v"].stats[:len(groups)])  # one condition's (same tokenizer)
    n, masked = len(conditions), len(conditions) - 1
    print(f"model smollm2-135m-instruct (float32, CPU), tasks {limit}; {n} conditions (normal + {masked} random 15 % "
          f"inhibited); {tokens} tokens per condition")
    print(f"(v) vllm engine start: {engines['v'].starts[0]:.1f} s (once per run); (vb) engine starts: "
          f"{', '.join(f'{s:.1f}' for s in engines['vb'].starts)} s")
    base = sum(seconds["h"]) / n
    for name, label in (("h", "(h) hf, hooks"), ("v", "(v) vllm, one engine, in place"),
                        ("vb", "(vb) vllm, baked + fresh engine")):
        per = sum(seconds[name]) / n
        edited = sum(seconds[name][1:]) / max(masked, 1)
        print(f"{label:34s} {per:7.2f} s/condition ({edited:7.2f} per edited one)  {tokens / per:8.0f} tokens/s  "
              f"time vs (h): {per / base:5.2f} x")
    def largest(a: str, b: str) -> float:
        """Largest relative difference between the metrics of two engines' results, all conditions."""
        pairs = [(x[task][key], y[task][key]) for xs, ys in zip(results[a], results[b]) for x, y in zip(xs, ys)
                 for task in y for key in y[task] if isinstance(y[task][key], float)]
        return max(abs(x - y) / max(abs(y), 1e-12) for x, y in pairs)

    print(f"results equal within (largest relative difference): (v) vs (vb) {largest('v', 'vb'):.1e}, "
          f"(v) vs (h) {largest('v', 'h'):.1e}")
    whole = {name: sum(seconds[name]) + (engines[name].starts[0] if name == "v" else 0) for name in engines}
    print(f"whole run with engine starts: (h) {whole['h']:.1f} s, (v) {whole['v']:.1f} s, (vb) {whole['vb']:.1f} s")
    for engine in engines.values():
        engine.close()
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
