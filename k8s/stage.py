"""What one Kubernetes pod of an fnet run executes: the pipeline config (a ConfigMap) → one ``fnet`` command.

Every pod of ``k8s/`` runs ``python /app/k8s/stage.py STAGE [--index I]``; this file turns the mounted
pipeline config (``$FNET_CONFIG``, default ``/etc/fnet/pipeline.yaml``) and the pod's completion index into
the stage's own command line, so the config stays the one place where the run is described.

- ``prefetch``: download the model into the shared Hugging Face cache once, before many pods load it.
- ``record --index I``: corpus ``I // shards``, shard ``I % shards`` (``$FNET_RECORD_SHARDS`` per corpus).
- ``decompose``: every corpus in turn, on the Dask cluster the operator names in ``$DASK_SCHEDULER_ADDRESS``.
- ``match``: all networks stores → ``<out>/match``.
- ``evaluate --index I``: the I-th evaluation condition (see ``conditions``) → ``<out>/evaluate``.
- ``completions record|evaluate``: how many indexes the Indexed Job needs (the manifests' ``completions``).
- ``conditions``: the evaluation conditions, one per line.

Locations: results under ``$FNET_OUT`` (default: the config's ``out``), stores under ``$FNET_STORES`` (a URL
such as ``s3://bucket/run``; default: the results root). ``--print`` shows the commands instead of running.
"""
from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys

from fnet_dist.config import PipelineConfig, load_config
from fnet_dist.errors import FnetError, InputError
from fnet_dist.evaluate.conditions import network_condition_name, random_condition_name

__all__ = ["Locations", "commands", "completions", "conditions", "main"]

STAGES = ("prefetch", "record", "decompose", "match", "evaluate")


class Locations:
    """Where a run's stores (URLs) and results (paths on the shared volume) live."""

    def __init__(self, config: PipelineConfig, env: dict[str, str]) -> None:
        self.out = (env.get("FNET_OUT") or config.out).rstrip("/")
        self.stores = (env.get("FNET_STORES") or self.out).rstrip("/")

    def activations(self, corpus: str) -> str:
        return f"{self.stores}/activations/{corpus}.zarr"

    def networks(self, corpus: str) -> str:
        return f"{self.stores}/networks/{corpus}.zarr"


def record_shards(env: dict[str, str]) -> int:
    """``$FNET_RECORD_SHARDS``: recording pods per corpus (default 1)."""
    raw = env.get("FNET_RECORD_SHARDS", "1")
    if not raw.isdigit() or int(raw) < 1:
        raise InputError(f"FNET_RECORD_SHARDS={raw!r}: expected a whole number ≥ 1 (pods per corpus)")
    return int(raw)


def conditions(config: PipelineConfig) -> list[str]:
    """The evaluation conditions of ``config``, named as ``fnet evaluate`` names them: the normal model; each
    group template of each ``evaluate.networks_of`` corpus inhibited, and their union (``/all``); a random
    mask; the top percent inhibited and amplified; the LLM Localization baseline, inhibited and amplified.
    With several corpora, the top-percent and localization names end in ``@<corpus>``."""
    ev, corpora = config.evaluate, config.evaluation_corpora()
    components = config.decompose.group_components
    names = ["normal"]
    for corpus in corpora:
        names += [network_condition_name("inhibit", corpus, k) for k in range(components)]
        names += [network_condition_name("inhibit", corpus, None)] if components > 1 else []
    names.append(random_condition_name(ev.random_fraction * 100, ev.seed))
    edits = ("inhibit", f"multiply{ev.amplify_factor:g}")
    for corpus in corpora:
        suffix = "" if len(corpora) == 1 else f"@{corpus}"
        names += [f"top{ev.top_percent:g}:{edit}{suffix}" for edit in edits]
        names += [f"localization:{edit}{suffix}" for edit in edits] if ev.localization else []
    return names


def completions(stage: str, config: PipelineConfig, env: dict[str, str]) -> int:
    """Indexes the Indexed Job of ``stage`` needs."""
    if stage == "record":
        return len(config.corpora) * record_shards(env)
    if stage == "evaluate":
        return len(conditions(config))
    raise InputError(f"stage {stage!r} is not an Indexed Job; expected record or evaluate")


def _pick(items: list, index: int | None, stage: str) -> object:
    if index is None:
        raise InputError(f"{stage} needs --index (set from $JOB_COMPLETION_INDEX in an Indexed Job)")
    if not 0 <= index < len(items):
        raise InputError(f"{stage} index {index} is out of range 0..{len(items) - 1}; set the Job's "
                         f"completions to `python k8s/stage.py completions {stage}` = {len(items)}")
    return items[index]


def _prefetch(config: PipelineConfig, at: Locations, index: int | None, env: dict[str, str]) -> list[list[str]]:
    model = config.model
    local = model.id.startswith((".", "/", "~")) or model.id.endswith(".gguf") or os.path.exists(model.id)
    if local or model.id.count("/") != 1:  # a folder, a file or a packaged name: nothing to download
        return []
    return [["hf", "download", model.id] + (["--revision", model.revision] if model.revision else [])]


def _record(config: PipelineConfig, at: Locations, index: int | None, env: dict[str, str]) -> list[list[str]]:
    shards = record_shards(env)
    corpus, shard = _pick([(c, s) for c in config.corpora for s in range(shards)], index, "record")
    model, rec, entry = config.model, config.record, config.corpora[corpus]
    argv = ["fnet", "record", "--model", model.id, "--corpus", entry.spec, "--out", at.activations(corpus),
            "--group-samples", str(rec.group_samples), "--individual-samples", str(rec.individual_samples),
            "--max-tokens", str(rec.max_tokens), "--min-tokens", str(rec.min_tokens),
            "--batch-size", str(rec.batch_size), "--seed", str(rec.seed), "--shard", f"{shard}/{shards}",
            "--dtype", model.dtype, "--device", model.device, "--store-dtype", rec.store_dtype,
            "--text-field", entry.text_field or rec.text_field]
    argv += ["--revision", model.revision] if model.revision else []
    argv += ["--hook-module", model.hook_module] if model.hook_module else []
    argv += ["--trust-remote-code"] if model.trust_remote_code else []
    return [argv]


def _decompose(config: PipelineConfig, at: Locations, index: int | None, env: dict[str, str]) -> list[list[str]]:
    d = config.decompose
    return [["fnet", "decompose", at.activations(c), "--out", at.networks(c), "--components", str(d.components),
             "--group-components", str(d.group_components), "--n-init", str(d.n_init), "--seed", str(d.seed),
             "--exclude-first-tokens", str(d.exclude_first_tokens), "--stability-runs", str(d.stability_runs),
             "--levels", ",".join(d.levels)] for c in config.corpora]


def _match(config: PipelineConfig, at: Locations, index: int | None, env: dict[str, str]) -> list[list[str]]:
    m = config.match
    argv = ["fnet", "match", *(at.networks(c) for c in config.corpora), "--out", f"{at.out}/match",
            "--threshold", f"{m.threshold:g}", "--iou", f"{m.iou:g}"]
    return [argv + ([] if m.two_sided else ["--one-sided"])]


def _evaluate(config: PipelineConfig, at: Locations, index: int | None, env: dict[str, str]) -> list[list[str]]:
    ev, model = config.evaluate, config.model
    condition = _pick(conditions(config), index, "evaluate")
    argv = ["fnet", "evaluate", "--model", model.id,
            "--networks", *(at.networks(c) for c in config.evaluation_corpora()),
            "--out", f"{at.out}/evaluate", "--tasks", *ev.tasks, "--backend", ev.backend,
            "--conditions", str(condition), "--seed", str(ev.seed), "--batch-size", str(ev.batch_size),
            "--factor", f"{ev.amplify_factor:g}", "--random-percent", f"{ev.random_fraction * 100:g}",
            "--top-percent", f"{ev.top_percent:g}", "--threshold", f"{config.match.threshold:g}",
            "--dtype", model.dtype, "--device", model.device]
    argv += ["--limit", str(ev.limit)] if ev.limit else []
    argv += [] if config.match.two_sided else ["--one-sided"]
    argv += [] if ev.localization else ["--no-localization"]
    argv += ["--hook-module", model.hook_module] if model.hook_module else []
    argv += ["--trust-remote-code"] if model.trust_remote_code else []
    return [argv]


_BUILDERS = {"prefetch": _prefetch, "record": _record, "decompose": _decompose, "match": _match, "evaluate": _evaluate}


def commands(stage: str, config: PipelineConfig, env: dict[str, str], index: int | None = None) -> list[list[str]]:
    """The ``fnet`` command lines (argv lists) that pod ``index`` of ``stage`` runs, in order."""
    if stage not in _BUILDERS:
        raise InputError(f"unknown stage {stage!r}; expected one of {', '.join(STAGES)}")
    return _BUILDERS[stage](config, Locations(config, env), index, env)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stage.py", description=__doc__.splitlines()[0])
    parser.add_argument("stage", choices=[*STAGES, "completions", "conditions"])
    parser.add_argument("what", nargs="?", help="for completions: record or evaluate")
    parser.add_argument("--index", type=int, help="this pod's completion index ($JOB_COMPLETION_INDEX)")
    parser.add_argument("--config", default=os.environ.get("FNET_CONFIG", "/etc/fnet/pipeline.yaml"))
    parser.add_argument("--print", action="store_true", help="print the commands instead of running them")
    return parser


def _run(args: argparse.Namespace, env: dict[str, str]) -> int:
    config = load_config(args.config)
    if args.stage == "completions":
        print(completions(args.what or "", config, env))
        return 0
    if args.stage == "conditions":
        print("\n".join(conditions(config)))
        return 0
    for argv in commands(args.stage, config, env, args.index):
        print("+ " + shlex.join(argv), flush=True)
        if not args.print:
            code = subprocess.call(argv)
            if code:
                return code
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _run(args, dict(os.environ))
    except FnetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
