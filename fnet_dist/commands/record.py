"""``fnet record``: record a model's MLP-block outputs on a corpus into an activations store."""
from __future__ import annotations

import argparse

from ..config import RecordSection
from .placement import add_placement_arguments, placement

HELP = "record every layer's MLP-block output for the tokens of corpus samples into a Zarr activations store"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="hub id, local folder, .gguf file, or smollm2-135m-instruct")
    parser.add_argument("--corpus", required=True,
                        help="hf:NAME[:CONFIG][@SPLIT], offline:news|wiki|math|code, or a .txt/.jsonl/.csv/.parquet file")
    parser.add_argument("--out", required=True, help="store URL (local path, s3://, gs://, memory://)")
    parser.add_argument("--group-samples", type=int, default=100, metavar="N", help="samples for the group level (default 100)")
    parser.add_argument("--individual-samples", type=int, default=100, metavar="N", help="samples for the individual level (default 100)")
    parser.add_argument("--max-tokens", type=int, default=256, metavar="T", help="cut texts to T tokens (default 256)")
    parser.add_argument("--min-tokens", type=int, default=16, metavar="T", help="skip texts under T tokens (default 16)")
    parser.add_argument("--batch-size", type=int, default=8, metavar="B", help="texts per forward pass (default 8)")
    parser.add_argument("--batch-tokens", type=int, default=0, metavar="T",
                        help=RecordSection.model_fields["batch_tokens"].description)
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="seed of the sample choice (default 0)")
    parser.add_argument("--shard", default="0/1", metavar="I/N", help="write shard I of N (Kubernetes Indexed Job: I = the job index)")
    parser.add_argument("--overwrite", action="store_true", help="replace a store of another config or schema version")
    parser.add_argument("--revision", default=None, help="hub revision (branch, tag or commit)")
    add_placement_arguments(parser)
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N")
    parser.add_argument("--trust-remote-code", action="store_true", help="allow a model's own modelling code (ChatGLM3 …)")
    parser.add_argument("--hook-module", default=None, metavar="PATTERN",
                        help="module of each layer's MLP block for an unregistered family, e.g. 'model.layers.{i}.mlp'")
    parser.add_argument("--store-dtype", default="float16", help="float16 (default) or float32 (for activations beyond ±65504)")
    parser.add_argument("--text-field", default="text", metavar="F", help="column holding the text in jsonl/csv/parquet/hf corpora")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from ..record import parse_shard, record_activations, summarize_store

    url = record_activations(
        args.model, args.corpus, args.out,
        group_samples=args.group_samples, individual_samples=args.individual_samples,
        max_tokens=args.max_tokens, min_tokens=args.min_tokens, batch_size=args.batch_size, seed=args.seed,
        shard=parse_shard(args.shard), overwrite=args.overwrite, device=args.device, batch_tokens=args.batch_tokens,
        revision=args.revision, trust_remote_code=args.trust_remote_code, hook_module=args.hook_module,
        store_dtype=args.store_dtype, text_field=args.text_field, progress=not args.no_progress, **placement(args),
    )
    print(summarize_store(url))
    return 0
