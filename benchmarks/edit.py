"""Cost of an edit: forward throughput of the hooked and the baked model against the unedited one.

    python benchmarks/edit.py [--quick] [--model M] [--device D] [--threads N] [--batch-size B] [--tokens T]
                              [--batches N] [--rounds R]

Three copies of one loaded model (unedited; hooked, its hooks on for the whole run; baked) run the same
batches, interleaved batch by batch in a rotating order, so a shared machine's noise hits them alike.
Each figure is a ratio to the unedited model measured in the same run: on CPU by process CPU time
(robust to other processes on the machine) and by wall clock; per variant the best of the rounds.
Also: the time to switch masks on one loaded model (enter + exit ``edited``).
Targets: baked >= 0.99, hooked >= 0.95. ``--quick`` uses a tiny random Llama instead of SmolLM2.
"""
from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fnet_dist.model.architectures import resolve_architecture  # noqa: E402
from fnet_dist.model.bake import bake  # noqa: E402
from fnet_dist.model.edit import Edit, edited, model_shape  # noqa: E402
from fnet_dist.model.masks import NeuronMask  # noqa: E402
from fnet_dist.model.loading import load_model  # noqa: E402

VARIANTS = ("unedited", "hooked", "baked")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a tiny random Llama (seconds) instead of SmolLM2")
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: steadiest CPU times)")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--tokens", type=int, default=None, help="tokens per sequence")
    parser.add_argument("--batches", type=int, default=None, help="batches per variant per round")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--fraction", type=float, default=0.05, help="share of neurons in the mask (default 5 %%)")
    parser.add_argument("--edit", default="multiply", choices=("inhibit", "multiply"))
    args = parser.parse_args()
    defaults = (16, 128, 4, 9) if args.quick else (4, 128, 2, 5)
    for name, value in zip(("batch_size", "tokens", "batches", "rounds"), defaults):
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def load(args: argparse.Namespace):
    if not args.quick:
        return load_model(args.model, device=args.device), args.model
    from fnet_dist.model.testing import build_tiny_model

    folder = build_tiny_model("llama", Path(tempfile.mkdtemp(prefix="fnet-bench-")) / "tiny-llama")
    return load_model(str(folder), device=args.device), "tiny random llama"


def forward_seconds(model, ids, device) -> tuple[float, float]:
    """(CPU seconds of this process, wall seconds) of one forward pass with the LM head."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    cpu, wall = time.process_time(), time.perf_counter()
    with torch.inference_mode():
        model(ids)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.process_time() - cpu, time.perf_counter() - wall


def measure(models: dict, batches, rounds: int, device) -> dict[str, list[tuple[float, float]]]:
    """Per variant, per round: summed (CPU, wall) seconds over ``batches``, variants interleaved per batch."""
    for model in models.values():  # warm-up
        forward_seconds(model, batches[0], device)
    totals = {name: [] for name in models}
    step = 0
    for _ in range(rounds):
        sums = {name: [0.0, 0.0] for name in models}
        for ids in batches:
            order = VARIANTS[step % 3:] + VARIANTS[:step % 3]
            step += 1
            for name in order:
                cpu, wall = forward_seconds(models[name], ids, device)
                sums[name][0] += cpu
                sums[name][1] += wall
        for name, (cpu, wall) in sums.items():
            totals[name].append((cpu, wall))
    return totals


def switch_time(model, arch, shape, n: int = 50) -> float:
    """Mean seconds to enter and leave ``edited`` with a new mask each time (masks built beforehand)."""
    masks = [NeuronMask.random(shape, fraction=0.05, seed=seed) for seed in range(n)]
    start = time.perf_counter()
    for mask in masks:
        with edited(model, arch, mask, Edit("inhibit")):
            pass
    return (time.perf_counter() - start) / n


def report(label, shape, device, args, mask, edit, totals, switch) -> None:
    tokens = args.batch_size * args.tokens * args.batches
    best = {name: (min(c for c, _ in rounds), min(w for _, w in rounds)) for name, rounds in totals.items()}
    print(f"model: {label} ({shape[0]} layers x {shape[1]} neurons), device {device}, torch threads {torch.get_num_threads()}")
    print(f"batches: {args.batches} x ({args.batch_size} x {args.tokens} tokens) per variant per round, {args.rounds} rounds, "
          f"variants interleaved per batch; best round per variant")
    print(f"edit: {edit.describe()} on a random mask of {mask.count} neurons ({100 * mask.fraction:.1f} %)")
    print(f"{'variant':<9} {'tokens/s (cpu)':>15} {'ratio (cpu)':>12} {'tokens/s (wall)':>16} {'ratio (wall)':>13}  target")
    for name, target in zip(VARIANTS, (None, 0.95, 0.99)):
        cpu, wall = best[name]
        ratio_cpu, ratio_wall = best["unedited"][0] / cpu, best["unedited"][1] / wall
        verdict = "baseline" if target is None else f">= {target}: {'ok' if ratio_cpu >= target else 'BELOW'}"
        print(f"{name:<9} {tokens / cpu:15.0f} {ratio_cpu:12.3f} {tokens / wall:16.0f} {ratio_wall:13.3f}  {verdict}")
    one_batch = best["unedited"][1] / args.batches
    print(f"mask switch (enter + exit edited(), a new mask): {1e3 * switch:.2f} ms = {switch / one_batch:.4f} x one batch's forward")


def main() -> int:
    args = parse_args()
    torch.set_num_threads(args.threads)
    loaded, label = load(args)
    model, device = loaded.model, loaded.device
    arch = resolve_architecture(model)
    shape = model_shape(model, arch)
    mask = NeuronMask.random(shape, fraction=args.fraction, seed=0)
    edit = Edit(args.edit, 1.02)
    models = {"unedited": model, "hooked": copy.deepcopy(model), "baked": copy.deepcopy(model)}
    bake(models["baked"], arch, mask, edit)
    vocab = model.get_input_embeddings().num_embeddings
    gen = torch.Generator().manual_seed(0)
    batches = [torch.randint(0, vocab, (args.batch_size, args.tokens), generator=gen).to(device) for _ in range(args.batches)]
    with edited(models["hooked"], arch, mask, edit):
        totals = measure(models, batches, args.rounds, device)
    switch = switch_time(model, arch, shape)
    report(label, shape, device, args, mask, edit, totals, switch)
    return 0


if __name__ == "__main__":
    sys.exit(main())
