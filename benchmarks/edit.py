"""Cost of an edit: forward throughput of the hooked and the baked model against the unedited one.

    python benchmarks/edit.py [--quick] [--model M] [--batch-size B] [--tokens T] [--batches N] [--rounds R]

Every figure is a ratio to the unedited model on the same batches, measured in the same run: the three
variants run in turn inside each round, in a rotating order (so machine noise hits them alike) and each variant's time is
its best round (the ratio of medians is printed beside it). Also: the time to switch masks on one loaded model (enter + exit ``edited``).
Targets: baked >= 0.99, hooked >= 0.95. ``--quick`` uses a tiny random Llama instead of SmolLM2.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fnet_dist.architectures import resolve_architecture  # noqa: E402
from fnet_dist.edit import Edit, bake, edited, model_shape  # noqa: E402
from fnet_dist.masks import NeuronMask  # noqa: E402
from fnet_dist.models import load_model  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a tiny random Llama (seconds) instead of SmolLM2")
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--tokens", type=int, default=None, help="tokens per sequence")
    parser.add_argument("--batches", type=int, default=None, help="batches per variant per round")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--fraction", type=float, default=0.05, help="share of neurons in the mask (default 5 %%)")
    parser.add_argument("--edit", default="multiply", choices=("inhibit", "multiply"))
    args = parser.parse_args()
    defaults = (16, 128, 4, 7) if args.quick else (8, 128, 3, 5)
    for name, value in zip(("batch_size", "tokens", "batches", "rounds"), defaults):
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def load(args: argparse.Namespace):
    if not args.quick:
        return load_model(args.model, device=args.device), args.model
    from fnet_dist.testing import build_tiny_model

    folder = build_tiny_model("llama", Path(tempfile.mkdtemp(prefix="fnet-bench-")) / "tiny-llama")
    return load_model(str(folder), device=args.device), "tiny random llama"


def timed(model, batches, device) -> float:
    """Seconds for forward passes (with LM head) over ``batches``."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    with torch.inference_mode():
        for ids in batches:
            model(ids)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def measure(model, baked, arch, mask, edit, batches, rounds, device) -> dict[str, list[float]]:
    """Seconds per round for each variant; inside a round the variants run in turn, in a rotating order."""

    def hooked(chunk):
        with edited(model, arch, mask, edit):
            return timed(model, chunk, device)

    variants = {"unedited": lambda chunk: timed(model, chunk, device), "hooked": hooked,
                "baked": lambda chunk: timed(baked, chunk, device)}
    for run in variants.values():  # warm-up
        run(batches[:1])
    times: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for r in range(rounds):
        for name in names[r % 3:] + names[:r % 3]:
            times[name].append(variants[name](batches))
    return times


def switch_time(model, arch, shape, n: int = 50) -> float:
    """Mean seconds to enter and leave ``edited`` with a new mask each time (masks built beforehand)."""
    masks = [NeuronMask.random(shape, fraction=0.05, seed=seed) for seed in range(n)]
    start = time.perf_counter()
    for mask in masks:
        with edited(model, arch, mask, Edit("inhibit")):
            pass
    return (time.perf_counter() - start) / n


def main() -> int:
    args = parse_args()
    loaded, label = load(args)
    model, device = loaded.model, loaded.device
    arch = resolve_architecture(model)
    shape = model_shape(model, arch)
    mask = NeuronMask.random(shape, fraction=args.fraction, seed=0)
    edit = Edit(args.edit, 1.02)
    baked = copy.deepcopy(model)
    bake(baked, arch, mask, edit)
    vocab = model.get_input_embeddings().num_embeddings
    gen = torch.Generator().manual_seed(0)
    batches = [torch.randint(0, vocab, (args.batch_size, args.tokens), generator=gen).to(device) for _ in range(args.batches)]
    rounds = measure(model, baked, arch, mask, edit, batches, args.rounds, device)
    seconds = {name: min(values) for name, values in rounds.items()}  # best round: the least disturbed
    switch = switch_time(model, arch, shape)
    tokens = args.batch_size * args.tokens * args.batches
    print(f"model: {label} ({shape[0]} layers x {shape[1]} neurons), device {device}, torch threads {torch.get_num_threads()}")
    print(f"batches: {args.batches} x ({args.batch_size} x {args.tokens} tokens) per variant, {args.rounds} rounds "
          f"in rotating order; best round per variant")
    print(f"edit: {edit.describe()} on a random mask of {mask.count} neurons ({100 * mask.fraction:.1f} %)")
    print(f"unedited  {tokens / seconds['unedited']:10.0f} tokens/s   1.000 (baseline)")
    for name, target in (("hooked", 0.95), ("baked", 0.99)):
        ratio = seconds["unedited"] / seconds[name]
        verdict = "ok" if ratio >= target else "BELOW target"
        medians = statistics.median(rounds["unedited"]) / statistics.median(rounds[name])
        print(f"{name:<8}  {tokens / seconds[name]:10.0f} tokens/s   {ratio:.3f} x baseline (target >= {target}: {verdict}; "
              f"ratio of medians {medians:.3f})")
    one_batch = seconds["unedited"] / args.batches
    print(f"mask switch (enter + exit edited(), new mask): {1e3 * switch:.2f} ms = {switch / one_batch:.4f} x one batch's forward")
    return 0


if __name__ == "__main__":
    sys.exit(main())
