"""Peak memory of a streamed bake: a random bf16 Llama-shaped checkpoint of ~1 GB in shards, baked by ``fnet bake``.

    python benchmarks/bake_memory.py [--quick] [--hidden 2048] [--layers 8] [--shard-mb 250] [--keep DIR]

Builds the checkpoint tensor by tensor (never the whole model in memory) in a temporary folder, writes a
random 5 % neuron mask, runs ``fnet bake --edit inhibit`` in a child process and reports that child's peak
RSS (``VmHWM`` of ``/proc/self/status``, Linux), next to the RSS of a child that only imports what the bake
imports (torch, fnet_dist). Then checks the result tensor by tensor: bf16 kept, exactly the masked rows of
every ``down_proj`` zeroed, every other tensor and every unedited shard file bit-identical.
``--quick``: hidden 256, 4 layers (~30 MB).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fnet_dist.model.masks import NeuronMask  # noqa: E402
from fnet_dist.model.testing import byte_tokenizer  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="hidden 256, 4 layers (~30 MB)")
    parser.add_argument("--hidden", type=int, default=2048)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--shard-mb", type=int, default=250)
    parser.add_argument("--keep", default=None, metavar="DIR", help="build in DIR and keep it (default: a temporary folder)")
    args = parser.parse_args()
    if args.quick:
        args.hidden, args.layers, args.shard_mb = 256, 4, 8
    return args


def tensor_shapes(hidden: int, layers: int, vocab: int = 32000) -> dict[str, tuple[int, ...]]:
    """Llama's tensors (grouped-query attention with hidden/4 key/value width, MLP of 2.75 × hidden)."""
    inner, kv = int(hidden * 2.75) // 64 * 64, hidden // 4
    shapes: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (vocab, hidden)}
    for i in range(layers):
        p = f"model.layers.{i}."
        shapes |= {p + "self_attn.q_proj.weight": (hidden, hidden), p + "self_attn.k_proj.weight": (kv, hidden),
                   p + "self_attn.v_proj.weight": (kv, hidden), p + "self_attn.o_proj.weight": (hidden, hidden),
                   p + "mlp.gate_proj.weight": (inner, hidden), p + "mlp.up_proj.weight": (inner, hidden),
                   p + "mlp.down_proj.weight": (hidden, inner), p + "input_layernorm.weight": (hidden,),
                   p + "post_attention_layernorm.weight": (hidden,)}
    return shapes | {"model.norm.weight": (hidden,), "lm_head.weight": (vocab, hidden)}


def build(folder: Path, hidden: int, layers: int, shard_bytes: int) -> int:
    """Write the checkpoint shard by shard (one shard's tensors in memory at a time); returns its bytes."""
    from safetensors.torch import save_file

    shapes, generator = tensor_shapes(hidden, layers), torch.Generator().manual_seed(0)
    groups, current, size = [], [], 0
    for name, shape in shapes.items():
        nbytes = 2 * int(torch.tensor(shape).prod())
        if current and size + nbytes > shard_bytes:
            groups.append(current)
            current, size = [], 0
        current.append(name)
        size += nbytes
    groups.append(current)
    weight_map, total = {}, 0
    for index, names in enumerate(groups, 1):
        file = f"model-{index:05d}-of-{len(groups):05d}.safetensors"
        tensors = {n: (torch.randn(shapes[n], generator=generator) * 0.02).to(torch.bfloat16) for n in names}
        save_file(tensors, str(folder / file), metadata={"format": "pt"})
        total += sum(t.numel() * 2 for t in tensors.values())
        weight_map |= {n: file for n in names}
        del tensors
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}))
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": hidden,
              "intermediate_size": shapes["model.layers.0.mlp.down_proj.weight"][1], "num_hidden_layers": layers,
              "num_attention_heads": hidden // 64, "num_key_value_heads": hidden // 256, "vocab_size": 32000,
              "torch_dtype": "bfloat16", "rms_norm_eps": 1e-5, "tie_word_embeddings": False}
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    (folder / "generation_config.json").write_text(json.dumps({"do_sample": False}))
    byte_tokenizer().save_pretrained(folder)
    return total


def child_peak(argv: list[str]) -> tuple[float, float]:
    """(peak RSS in MiB, seconds) of a child process running ``argv``: its VmHWM (reset by exec, unlike
    ``ru_maxrss``, which a child inherits from this process's own peak)."""
    script = ("import runpy, sys; sys.argv = sys.argv[1:]; "
              "code = 0\ntry:\n    runpy.run_module(sys.argv[0], run_name='__main__')\nexcept SystemExit as e:\n    code = e.code or 0\n"
              "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
              "print('PEAK', hwm, file=sys.stderr); sys.exit(code)")
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", script, *argv], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed:\n{done.stderr[-2000:]}")
    peak = [line for line in done.stderr.splitlines() if line.startswith("PEAK ")][-1]
    return int(peak.split()[1]) / 1024, seconds


def sha(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 24), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(source: Path, baked: Path, mask: NeuronMask) -> str:
    """Check the bake tensor by tensor (one tensor in memory at a time)."""
    from safetensors import safe_open

    edited_files, changed = set(), 0
    for path in sorted(source.glob("*.safetensors")):
        with safe_open(str(path), "pt") as a, safe_open(str(baked / path.name), "pt") as b:
            for name in a.keys():
                x, y = a.get_tensor(name), b.get_tensor(name)
                assert y.dtype == torch.bfloat16 == x.dtype, name
                if name.endswith("mlp.down_proj.weight"):
                    rows = torch.from_numpy(mask.values[int(name.split(".")[2])].copy())
                    assert not y[rows].any() and torch.equal(y[~rows].view(torch.int16), x[~rows].view(torch.int16)), name
                    edited_files.add(path.name)
                    changed += int(rows.sum())
                else:
                    assert torch.equal(x.view(torch.int16), y.view(torch.int16)), name
        if path.name not in edited_files:
            assert sha(path) == sha(baked / path.name), f"{path.name} is not bit-identical"
    return f"{changed} rows zeroed in {len(edited_files)} shard files; all other tensors and files bit-identical"


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="fnet-bake-bench-") as tmp:
        root = Path(args.keep or tmp)
        source, out = root / "source", root / "baked"
        source.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        total = build(source, args.hidden, args.layers, args.shard_mb * 2**20)
        print(f"checkpoint: {total / 2**20:,.0f} MiB bf16 in {len(list(source.glob('*.safetensors')))} shards "
              f"(hidden {args.hidden}, {args.layers} layers), built in {time.perf_counter() - start:.1f} s")
        mask = NeuronMask.random((args.layers, args.hidden), fraction=0.05, seed=0)
        mask.save(str(root / "mask.npz"))
        base, _ = child_peak(["fnet_dist.model.bake_stream"])
        peak, seconds = child_peak(["fnet_dist", "bake", "--model", str(source), "--mask", str(root / "mask.npz"),
                                    "--out", str(out), "--overwrite"])
        print(f"fnet bake: peak RSS {peak:,.0f} MiB ({peak / (total / 2**20):.2f} × the checkpoint); "
              f"importing its modules alone: {base:,.0f} MiB; {seconds:.1f} s")
        print("check:", verify(source, out, mask))


if __name__ == "__main__":
    main()
