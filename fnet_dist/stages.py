"""The stage registry: every stage of a run declared once; ``fnet run``, a Dask cluster and Kubernetes all use it.

- ``RunLayout`` (``fnet_dist.core.layout``): where each stage reads and writes.
- ``Stage``: a stage's name, its config section, what it reads and writes, how it shards (``None``,
  ``"samples"`` or ``"conditions"``), whether it needs the model or Dask, and its function.
- ``STAGES``: the stages in run order (record → decompose → match → evaluate → controls → nulls → report); ``nulls``
  runs each null variant of the config (``PipelineConfig.null_variant``) through record, decompose and match.
- ``Run``: what the stages of one process share (config, layout, the model and Dask client, loaded once).
- ``stage_hash(config, stage)``: a stable hash of everything that determines a stage's output.
- ``Stage.unfinished(config, layout) -> list[str]``: what of the stage's outputs is missing, unfinished or
  damaged (empty when they are whole): ``fnet run`` records a stage as done only when this is empty, and reruns a
  stage recorded as done for this config when it is not.

A shard ``(index, count)`` of a sharded stage does the ``index``-th of every ``count`` units (record: the
samples of every corpus, position % count == index; evaluate and controls: the conditions) and writes only
its own files; the report stage merges the evaluation shards into tables, figures and findings.
"""
from __future__ import annotations

import hashlib
import json
import logging
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from storage_schemas import ACTIVATIONS, NETWORKS

from .core.cluster import dask_client
from .core.config import PipelineConfig
from .core.errors import InputError
from .core.layout import EvaluationFiles, RunLayout
from .decompose import decompose
from .evaluate.controls import controls_stage, merge_controls
from .evaluate.experiment import evaluate_stage, merge_evaluation
from .match.matching import match_networks
from .model.loading import load_model
from .record.recording import record_activations
from .report import build_report
from .store.integrity import store_problems

__all__ = ["STAGES", "STRUCTURE_STAGES", "Run", "RunLayout", "Stage", "stage_hash"]

log = logging.getLogger(__name__)


class Run:
    """State shared by the stages of one process: config, layout, the loaded model and the Dask scheduler."""

    def __init__(self, config: PipelineConfig, layout: RunLayout, stack: ExitStack, scheduler: str | None = None) -> None:
        self.config, self.layout, self._stack = config, layout, stack
        self._model = None
        self._wanted_scheduler = scheduler or config.dask.scheduler
        self._scheduler: str | None = None
        self.failed: dict[str, str] = {}  # stage -> its error, for the report of an incomplete run
        # runs a null variant's config through the structure stages (``fnet_dist.pipeline`` sets it: the registry's
        # stages, run.json caching and resumption, as for the trained model)
        self.run_variant: Callable[[PipelineConfig], dict[str, Any]] | None = None

    @property
    def model(self):
        if self._model is None:
            m = self.config.model
            self._model = load_model(m.id, **m.placement())
        return self._model

    @property
    def scheduler(self) -> str:
        """The address of the Dask scheduler (given, ``$DASK_SCHEDULER_ADDRESS``, or a local cluster started once)."""
        if self._scheduler is None:
            client = self._stack.enter_context(dask_client(self._wanted_scheduler, n_workers=self.config.dask.n_workers,
                                                           dashboard_address=self.config.dask.dashboard_address))
            self._scheduler = client.scheduler.address
        return self._scheduler


Shard = tuple[int, int]


def _record(run: Run, shard: Shard) -> dict[str, Any]:
    stores = {}
    for corpus, entry in run.config.corpora.items():
        print(f"  record {corpus} ({entry.spec}), shard {shard[0]}/{shard[1]}", flush=True)
        params = run.config.record.model_copy(update={"text_field": entry.text_field or run.config.record.text_field,
                                                        "pack_to_tokens": run.config.pack_to_tokens()})
        stores[corpus] = record_activations(run.config.model, entry.spec, run.layout.activations(corpus), params,
                                            loaded=run.model, shard=shard, overwrite=True)
    return {"stores": stores}


def _decompose(run: Run, shard: Shard) -> dict[str, Any]:
    stores = {}
    for corpus in run.config.corpora:
        print(f"  decompose {corpus}", flush=True)
        stores[corpus] = decompose(run.layout.activations(corpus), run.layout.networks(corpus), run.config.decompose,
                                   scheduler=run.scheduler, corpus=corpus, overwrite=True)
    return {"stores": stores}


def _match(run: Run, shard: Shard) -> dict[str, Any]:
    networks = [run.layout.networks(c) for c in run.config.corpora]
    match_networks(networks, str(run.layout.match.folder), run.config.match, scheduler=run.scheduler, anatomy=True,
                   overwrite=True)  # the run owns its match folder: a rerun replaces it
    return {"folder": str(run.layout.match.folder)}


STRUCTURE_STAGES = ("record", "decompose", "match")  # what a null variant runs


def _nulls(run: Run, shard: Shard) -> dict[str, Any]:
    if not run.config.nulls:
        print("  no null variants in the config (nulls)", flush=True)
        return {"variants": {}}
    if run.run_variant is None:
        raise InputError("the nulls stage runs its variants through fnet run (it is not sharded): "
                         "fnet run CONFIG --stages nulls")
    done = {}
    for name in run.config.nulls:
        print(f"  null variant {name}: {', '.join(STRUCTURE_STAGES)} into {run.layout.null_run(name).root}", flush=True)
        run.run_variant(run.config.null_variant(name))
        done[name] = str(run.layout.null_run(name).root)
    return {"variants": done}


def _evaluate(run: Run, shard: Shard) -> dict[str, Any]:
    if not run.config.evaluate.enabled:
        print("  evaluation disabled in the config", flush=True)
        return {"conditions": []}
    return {"conditions": evaluate_stage(run.model, run.config, run.layout, *shard)}


def _controls(run: Run, shard: Shard) -> dict[str, Any]:
    e = run.config.evaluate
    if not e.enabled or not e.controls.draws:
        print("  controls off (evaluate disabled or evaluate.controls.draws = 0)", flush=True)
        return {"conditions": []}
    return {"conditions": controls_stage(run.model, run.config, run.layout, *shard)}


def _report(run: Run, shard: Shard) -> dict[str, Any]:
    if run.config.evaluate.enabled:
        merge_evaluation(run.config, run.layout)
        merge_controls(run.config, run.layout)
    explain = run.config.report.explain_texts and not run.failed
    page = build_report(run.config, run.layout, model=run.model if explain else None, failed=run.failed)
    return {"page": str(page)}


def _stores(kind: str) -> Callable[[PipelineConfig, RunLayout], list[str]]:
    return lambda config, layout: [getattr(layout, kind)(c) for c in config.corpora]


def _evaluated(config: PipelineConfig, layout: RunLayout) -> list[str]:
    return [layout.networks(c) for c in config.evaluation_corpora()]


def _whole_stores(kind: str) -> Callable[[PipelineConfig, RunLayout], list[str]]:
    schema = {"activations": ACTIVATIONS, "networks": NETWORKS}[kind]
    return lambda config, layout: [p for c in config.corpora for p in store_problems(getattr(layout, kind)(c), schema)]


def _missing(paths) -> list[str]:
    return [f"{path} is missing" for path in paths if not Path(path).is_file()]


def _conditions_done(files: EvaluationFiles) -> list[str]:
    """The plan of an evaluation folder and each planned condition's record (written last, when it is done)."""
    if not files.plan.is_file():
        return [f"{files.plan} is missing"]
    slugs = [c["slug"] for c in json.loads(files.plan.read_text())["conditions"]]
    return _missing(files.condition(slug).record for slug in slugs)


def _evaluation_done(config: PipelineConfig, layout: RunLayout) -> list[str]:
    return _conditions_done(layout.evaluate) if config.evaluate.enabled else []


def _controls_done(config: PipelineConfig, layout: RunLayout) -> list[str]:
    e = config.evaluate
    return _conditions_done(layout.controls) if e.enabled and e.controls.draws else []


def _nulls_done(config: PipelineConfig, layout: RunLayout) -> list[str]:
    """What each null variant's record, decompose and match left unfinished, in the variant's own run folder."""
    return [problem for name in config.nulls for stage in STRUCTURE_STAGES
            for problem in STAGES[stage].unfinished(config.null_variant(name), layout.null_run(name))]


def _report_done(config: PipelineConfig, layout: RunLayout) -> list[str]:
    return _missing([layout.report.page, layout.report.findings])


@dataclass(frozen=True)
class Stage:
    """One stage: its config section, inputs and outputs (from a ``RunLayout``), its function, what of its outputs
    is not finished (``unfinished``), and its sharding."""

    name: str
    section: str
    reads: Callable[[PipelineConfig, RunLayout], list[str]]
    writes: Callable[[PipelineConfig, RunLayout], list[str]]
    run: Callable[[Run, Shard], dict[str, Any]] = field(repr=False)
    unfinished: Callable[[PipelineConfig, RunLayout], list[str]] = field(repr=False)
    shards: str | None = None
    uses_dask: bool = False
    uses_model: bool = False


STAGES: dict[str, Stage] = {s.name: s for s in (
    Stage("record", "record", lambda c, layout: [e.spec for e in c.corpora.values()], _stores("activations"), _record,
          _whole_stores("activations"), shards="samples", uses_model=True),
    Stage("decompose", "decompose", _stores("activations"), _stores("networks"), _decompose,
          _whole_stores("networks"), uses_dask=True),
    Stage("match", "match", _stores("networks"), lambda c, layout: [str(layout.match.folder)], _match,
          lambda c, layout: _missing(layout.match.written(anatomy=True)), uses_dask=True),
    Stage("evaluate", "evaluate", _evaluated, lambda c, layout: [str(layout.evaluate.conditions)], _evaluate,
          _evaluation_done, shards="conditions", uses_model=True),
    Stage("controls", "evaluate", lambda c, layout: [str(layout.match.consistency), str(layout.match.massive_mask),
                                                     *_evaluated(c, layout)],
          lambda c, layout: [str(layout.controls.conditions)], _controls, _controls_done, shards="conditions",
          uses_model=True),
    Stage("nulls", "nulls", lambda c, layout: [e.spec for e in c.corpora.values()],
          lambda c, layout: [str(layout.null_run(n).root) for n in c.nulls], _nulls, _nulls_done, uses_dask=True,
          uses_model=True),
    Stage("report", "report", lambda c, layout: [str(layout.root)], lambda c, layout: [str(layout.report.folder)], _report,
          _report_done),
)}


def stage_hash(config: PipelineConfig, stage: str) -> str:
    """Hash of the config parts that determine ``stage``'s output (its section and every upstream one)."""
    if stage not in STAGES:
        raise InputError(f"unknown stage {stage!r}; expected one of {', '.join(STAGES)}")
    names = list(STAGES)
    parts: dict[str, Any] = {"model": config.model.model_dump(), "stores": config.stores,
                             "corpora": {k: v.model_dump() for k, v in config.corpora.items()}}
    for name in names[: names.index(stage) + 1]:
        section = STAGES[name].section
        if section != "report" or stage == "report":
            value = getattr(config, section)
            parts[section] = {k: v.model_dump() for k, v in value.items()} if isinstance(value, dict) else value.model_dump()
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
