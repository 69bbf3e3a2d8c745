"""The checks that need a GPU, in one run on a CUDA machine, printed as one table.

    python benchmarks/gpu_check.py [--model M] [--samples N] [--limit L] [--out DIR]

1. recording on CUDA equals recording on the CPU (both float32 models, float16 stores) within float16 tolerance;
2. recording throughput (tokens/s) against bare forward passes of the same batches on the GPU;
3. a baked checkpoint (streamed bake of a bf16 safetensors copy) against the hooked edit on CUDA, logits;
4. lm-eval through HF on the baked checkpoint against the hooked HF model (same task, same documents);
5. the same through the vllm backend (lm-eval's ``vllm`` model, one engine, the edit written into its weights in
   place) when vLLM is installed;
6. peak GPU memory of each step.
The model (default: the packaged SmolLM2-135M) is saved as a bf16 safetensors folder first, so the bake
streams. Without CUDA the script says so in one line and exits with status 1.
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct", help="model spec (default: the packaged SmolLM2)")
    parser.add_argument("--samples", type=int, default=40, help="corpus samples recorded (group + individual)")
    parser.add_argument("--limit", type=int, default=40, help="lm-eval documents of sentiment_rt")
    parser.add_argument("--out", default=None, help="work folder (default: a temporary folder)")
    parser.add_argument("--device", default="cuda", help="cuda (default); cpu: a dry run of this script's logic, no GPU figures")
    return parser.parse_args(argv)


class Table:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, str]] = []

    def add(self, check: str, value: str, bound: str = "", ok: bool | None = None) -> None:
        self.rows.append((check, value, bound, "" if ok is None else ("pass" if ok else "FAIL")))
        print(f"  {check}: {value} {bound} {'' if ok is None else ('pass' if ok else 'FAIL')}", file=sys.stderr, flush=True)

    def show(self) -> str:
        lines = ["| check | value | bound | result |", "|---|---|---|---|"]
        return "\n".join(lines + [f"| {' | '.join(row)} |" for row in self.rows])


def peak_gib(torch) -> str:
    if not torch.cuda.is_available():
        return "n/a (no CUDA)"
    value = torch.cuda.max_memory_allocated() / 2**30
    torch.cuda.reset_peak_memory_stats()
    return f"{value:.2f} GiB"


def main(argv=None) -> int:
    import torch

    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA GPU is visible to torch on this machine; run this script on a GPU machine", file=sys.stderr)
        return 1
    import numpy as np
    import xarray as xr

    from fnet_dist.model.architectures import resolve_architecture
    from fnet_dist.model.bake import bake_checkpoint
    from fnet_dist.model.edit import Edit, edited, model_shape
    from fnet_dist.core.conditions import NORMAL, Condition
    from fnet_dist.evaluate.runner import evaluate_conditions
    from fnet_dist.model.masks import NeuronMask
    from fnet_dist.model.loading import load_model
    from fnet_dist.record.recording import _batches, _padded, record_activations

    table = Table()
    device = args.device
    synchronize = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    work = Path(args.out or tempfile.mkdtemp(prefix="fnet-gpu-check-"))
    source = work / "model-bf16"
    if not (source / "config.json").is_file():
        from fnet_dist.model.bake import _drop_dequantized_gguf

        first = load_model(args.model, dtype="float32", device="cpu")
        _drop_dequantized_gguf(first.model)  # a GGUF source (the packaged SmolLM2) is saved as plain safetensors
        first.model.to(torch.bfloat16).save_pretrained(source)
        first.tokenizer.save_pretrained(source)
        del first
    record = dict(group_samples=args.samples // 2, individual_samples=args.samples - args.samples // 2, max_tokens=256,
                  min_tokens=16, seed=0, progress=False, overwrite=True)
    corpus = "offline:news"

    # 1. CUDA recording equals CPU recording
    cpu = load_model(str(source), dtype="float32", device="cpu")
    gpu = load_model(str(source), dtype="float32", device=device)
    stores = [xr.open_zarr(record_activations(m, corpus, str(work / f"{name}.zarr"), **record), consolidated=False)
              for name, m in (("cpu", cpu), ("cuda", gpu))]
    a, b = (s["activation"].values.astype(np.float32) for s in stores)
    scale = float(np.abs(a).max())
    diff = float(np.abs(a - b).max())
    table.add("record: CUDA vs CPU, max abs diff / max abs activation", f"{diff / scale:.2e}", "≤ 2e-3 (float16)", diff / scale <= 2e-3)
    table.add("record (float32 model): peak GPU memory", peak_gib(torch))
    del cpu

    # 2. recording throughput against bare forward passes (bf16 model, the auto token budget)
    model = load_model(str(source), device=device)  # dtype auto: the checkpoint's bf16
    synchronize()
    start = time.perf_counter()
    url = record_activations(model, corpus, str(work / "bf16.zarr"), **record)
    synchronize()
    recorded = time.perf_counter() - start
    ds = xr.open_zarr(url, consolidated=False)
    tokens = int(ds["n_tokens"].values.sum())
    table.add("record: peak GPU memory (bf16, token budget)", peak_gib(torch))
    from fnet_dist.core.corpora import Sample

    samples = [Sample(position=p, source_index=p, split="group", token_ids=ds["token_id"].values[p, :n], text="")
               for p, n in enumerate(ds["n_tokens"].values)]
    decoder = getattr(model.model, "base_model", model.model)
    pad = model.tokenizer.pad_token_id or 0
    synchronize()
    start = time.perf_counter()
    with torch.inference_mode():
        for batch in _batches(samples, 8, 4096):
            ids, mask = _padded(batch, pad, model.device)
            decoder(input_ids=ids, attention_mask=mask, use_cache=False)
    synchronize()
    bare = time.perf_counter() - start
    table.add("record: tokens/s (store writes included)", f"{tokens / recorded:,.0f}")
    table.add("bare forward, same batches: tokens/s", f"{tokens / bare:,.0f}")
    table.add("record / bare forward time", f"{recorded / bare:.1f}×", "(writes dominate small models)")

    # 3. baked vs hooked on CUDA
    arch = resolve_architecture(model.model)
    neurons = NeuronMask.random(model_shape(model.model, arch), fraction=0.05, seed=0)
    edit = Edit("multiply", 1.5)
    start = time.perf_counter()
    baked_folder = bake_checkpoint(str(source), neurons, edit, work / "baked", overwrite=True)
    table.add("streamed bake: seconds", f"{time.perf_counter() - start:.1f}")
    baked = load_model(baked_folder, device=device)
    ids = torch.tensor([model.tokenizer("The council met on Tuesday to discuss the bridge.")["input_ids"]], device=device)
    with torch.inference_mode():
        with edited(model.model, arch, neurons, edit):
            hooked_logits = model.model(ids).logits.float()
        baked_logits = baked.model(ids).logits.float()
    gap = float((hooked_logits - baked_logits).abs().max() / hooked_logits.abs().max())
    table.add("baked vs hooked logits on CUDA (bf16), max abs diff / max abs logit", f"{gap:.2e}", "≤ 2e-2 (bf16)", gap <= 2e-2)
    table.add("bake + forward: peak GPU memory", peak_gib(torch))

    # 4. lm-eval, HF: baked checkpoint vs hooked
    condition = Condition("multiply:check", neurons, edit)
    hooked_rows = evaluate_conditions(model, [condition], ["sentiment_rt"], work / "eval-hooked", limit=args.limit,
                                      progress=False)
    baked_rows = evaluate_conditions(baked, [NORMAL], ["sentiment_rt"], work / "eval-baked", limit=args.limit,
                                     progress=False)
    h = hooked_rows[hooked_rows["metric"] == "acc"]["value"].iloc[0]
    k = baked_rows[baked_rows["metric"] == "acc"]["value"].iloc[0]
    table.add(f"lm-eval HF sentiment_rt acc ({args.limit} docs): hooked vs baked", f"{h:.3f} vs {k:.3f}",
              "abs diff ≤ 0.05", abs(h - k) <= 0.05)
    table.add("lm-eval HF: peak GPU memory", peak_gib(torch))

    # 5. lm-eval, vLLM: one engine, the edit written into its weights in place
    if importlib.util.find_spec("vllm") is None:
        table.add("lm-eval vLLM", "vLLM not installed: not run")
    else:
        del baked
        rows = evaluate_conditions(model, [condition], ["sentiment_rt"], work / "eval-vllm", limit=args.limit,
                                   backend="vllm", progress=False)
        v = rows[rows["metric"] == "acc"]["value"].iloc[0]
        table.add(f"lm-eval vLLM sentiment_rt acc: vs hooked HF", f"{v:.3f} vs {h:.3f}", "abs diff ≤ 0.05", abs(v - h) <= 0.05)
    where = torch.cuda.get_device_name() if device == "cuda" else "CPU (dry run)"
    print(f"device: {where}, torch {torch.__version__}, model {args.model}")
    print(table.show())
    return 0 if all(row[3] != "FAIL" for row in table.rows) else 1


if __name__ == "__main__":
    sys.exit(main())
