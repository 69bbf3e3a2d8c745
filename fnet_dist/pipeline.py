"""``fnet run CONFIG``: the stages of the registry (``fnet_dist.stages``) in order, resumable and cached.

- ``run_pipeline(config, stages=None, overwrite=False, shard=None, scheduler=None) -> dict``: run the stages in
  order. First ``fnet_dist.preflight`` checks everything the stages to run need (tasks, corpora, the model spec,
  writable folders, object storage, free disk) and reports every problem at once, before any model loads; then the
  run folder is locked (``fnet_dist.store.locks``: a second ``fnet run`` on it is refused in one line, exit 1;
  a shard takes its shard's lock, so shards of one stage run together). A stage recorded as done for the same
  config hash (``run.json``) is skipped when its outputs are whole (``Stage.unfinished``), and rerun when they
  are not; a stage is recorded as done only once its outputs are verified whole. A crashed stage is rerun and,
  since every stage resumes its own partial work, finishes what is missing. Returns the run record.
  With ``shard=(index, count)`` one sharded stage runs its part only and ``run.json`` is left alone (shards run
  concurrently; the report stage, run once afterwards, records the run).
  A stage that raises is recorded as ``failed`` with its error; the stages after it do not run, except the
  report, which shows what exists marked incomplete (status ``incomplete``); then ``StageError`` (exit 1).
- ``plan_pipeline(config, stages=None, overwrite=False) -> list[dict]``: what ``run_pipeline`` would do, without
  doing it: each stage run or reused (cached), what it shards by and into how many units, the size of the stores
  it writes (an upper bound from the record section and the model's shape: ``fnet_dist.preflight.planned_bytes``),
  and the seconds it took last time
  (``run.json``); ``describe_plan(plan)`` prints it (``fnet run --dry-run``).
"""
from __future__ import annotations

import json
import logging
import os
import time
from contextlib import ExitStack
from datetime import datetime, timezone
from typing import Any

import yaml

from . import __version__
from .core.config import PipelineConfig
from .core.errors import FnetError, InputError, StageError, environment_failure, one_line
from .core.layout import RunLayout
from .model.dimensions import model_dimensions
from .preflight import planned_bytes, preflight
from .stages import STAGES, STRUCTURE_STAGES, Run, stage_hash
from .store.integrity import damage_error
from .store.locks import output_lock
from .store.outputs import open_output

__all__ = ["describe_plan", "plan_pipeline", "run_pipeline"]

log = logging.getLogger(__name__)


def _say(message: str) -> None:
    print(message, flush=True)


def _load_record(layout: RunLayout) -> dict[str, Any]:
    if layout.record_file.exists():
        return json.loads(layout.record_file.read_text())
    return {"stages": {}}


def _save_record(layout: RunLayout, record: dict[str, Any]) -> None:
    tmp = layout.record_file.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2, default=str))
    os.replace(tmp, layout.record_file)


def _check(chosen: list[str], shard: tuple[int, int] | None) -> None:
    unknown = [s for s in chosen if s not in STAGES]
    if unknown:
        raise InputError(f"unknown stage(s) {unknown}; expected some of {', '.join(STAGES)}")
    if shard is None:
        return
    index, count = shard
    if count < 1 or not 0 <= index < count:
        raise InputError(f"shard --index {index} --count {count}: expected 0 ≤ index < count")
    if len(chosen) != 1 or STAGES[chosen[0]].shards is None:
        sharded = [s.name for s in STAGES.values() if s.shards]
        raise InputError(f"--index/--count run one stage that shards ({', '.join(sharded)}); got --stages {','.join(chosen)}")


def _run_shard(run: Run, stage: str, shard: tuple[int, int]) -> dict[str, Any]:
    _say(f"{stage} shard {shard[0]}/{shard[1]} …")
    t0 = time.perf_counter()
    outputs = STAGES[stage].run(run, shard)
    _say(f"{stage} shard {shard[0]}/{shard[1]}: done in {time.perf_counter() - t0:.1f} s")
    return {"stages": {stage: {"shard": list(shard), "outputs": outputs}}}


def _model_shape(config: PipelineConfig) -> tuple[int, int] | None:
    """``(n_layers, hidden_size)`` of the config's model, read without loading it; None where only loading would
    tell (a hub model not in the cache) or the model spec is bad (the run itself says so)."""
    try:
        return model_dimensions(config.model)
    except FnetError:
        return None


def _size(n_bytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n_bytes < 1024 or unit == "TiB":
            return f"{n_bytes:.0f} {unit}" if unit == "B" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1024
    return ""


def plan_pipeline(config: PipelineConfig, *, stages: list[str] | None = None,
                  overwrite: bool = False) -> list[dict[str, Any]]:
    """One record per stage of ``stages`` (default all): ``stage``, ``action`` (``run`` or ``reuse``), ``why``,
    ``shards`` (what a sharded stage splits, and how many units where the config tells), ``writes`` (sizes) and
    ``last_seconds`` (the stage's time in the last run's ``run.json``, None if it never finished)."""
    chosen = list(stages or STAGES)
    _check(chosen, None)
    layout = RunLayout.of(config)
    record = _load_record(layout)
    record_section, corpora = config.record, list(config.corpora)
    samples = record_section.group_samples + record_section.individual_samples
    shape = _model_shape(config)
    sizes = planned_bytes(config, shape) if shape else {}
    plan = []
    for stage in chosen:
        done = record["stages"].get(stage, {})
        cached = _cached(config, record, stage)
        action = "reuse" if cached and not overwrite else "run"
        why = ("cached for this config" if action == "reuse" else "asked to rerun (--overwrite)" if cached else
               "never run" if not done else f"last {done.get('status')} for another config" if done.get("hash") !=
               stage_hash(config, stage) else f"last {done.get('status')}")
        shards = {"samples": f"{samples} samples × {len(corpora)} corpora", "conditions": "the conditions",
                  None: "—"}[STAGES[stage].shards]
        writes = ""
        if stage == "record":
            writes = (f"≤ {_size(len(corpora) * sizes['activations'])} of activations ({shape[0]} layers × "
                      f"{shape[1]} neurons)" if shape else "size unknown until the model is read")
        elif stage == "decompose" and shape:
            writes = f"≤ {_size(len(corpora) * sizes['networks'])} of z-maps and sources"
        plan.append({"stage": stage, "action": action, "why": why, "shards": shards, "writes": writes,
                     "last_seconds": done.get("seconds") if done.get("status") in ("done", "incomplete") else None})
    return plan


def describe_plan(plan: list[dict[str, Any]], config: PipelineConfig) -> str:
    """The plan as a table and a time estimate (the last run's seconds of each stage that runs)."""
    lines = [f"plan of run {config.name!r} in {RunLayout.of(config).root}:",
             f"  {'stage':<10} {'action':<6} {'last time':>10}  {'shards by':<28} writes / why"]
    for step in plan:
        last = "—" if step["last_seconds"] is None else f"{step['last_seconds']:.0f} s"
        detail = "; ".join(x for x in (step["writes"], step["why"]) if x)
        lines.append(f"  {step['stage']:<10} {step['action']:<6} {last:>10}  {step['shards']:<28} {detail}")
    running = [s for s in plan if s["action"] == "run"]
    unknown = [s["stage"] for s in running if s["last_seconds"] is None]
    total = sum(s["last_seconds"] or 0 for s in running)
    estimate = f"about {total / 60:.1f} min from the last run's run.json" if running else "nothing to run"
    if unknown:
        estimate += f" (+ {', '.join(unknown)}: no earlier time)"
    lines.append(f"time: {estimate}")
    return "\n".join(lines)


def run_pipeline(config: PipelineConfig, *, stages: list[str] | None = None, overwrite: bool = False,
                 shard: tuple[int, int] | None = None, scheduler: str | None = None) -> dict[str, Any]:
    """Run ``stages`` (default all) of ``config``; skip those already done for the same config hash."""
    chosen = list(stages or STAGES)
    _check(chosen, shard)
    layout = RunLayout.of(config)
    preflight(config, layout, chosen if overwrite or shard else _to_run(config, layout, chosen))
    part = None if shard is None else f"{chosen[0]}-{shard[0]}-of-{shard[1]}"
    with output_lock(str(layout.root), part=part), ExitStack() as stack:
        open_output(str(layout.root), "run")  # a folder of other files is refused before any work; a run resumes
        run = Run(config, layout, stack, scheduler)
        run.run_variant = lambda variant: run_pipeline(variant, stages=list(STRUCTURE_STAGES), overwrite=overwrite,
                                                       scheduler=run.scheduler)
        if shard is not None:
            return _run_shard(run, chosen[0], shard)
        (layout.root / "config.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
        record = _load_record(layout)
        record.update(name=config.name, package_version=__version__, config=config.model_dump(mode="json"))
        started = time.perf_counter()
        for number, stage in enumerate(chosen, start=1):
            _run_stage(run, record, stage, f"[{number}/{len(chosen)}] {stage}", overwrite)
        total = time.perf_counter() - started
        record["last_run_seconds"] = round(total, 2)
        _save_record(layout, record)
    report = record["stages"].get("report", {}).get("outputs", {}).get("page")
    if run.failed:
        where = f"; the report of what exists (marked incomplete): {report}" if report else ""
        raise StageError(f"run {config.name!r}: {'; '.join(f'stage {s} failed ({e})' for s, e in run.failed.items())}"
                         f"{where}; fix the cause and rerun the same command to resume")
    _say(f"run {config.name!r} finished in {total:.1f} s: {layout.root}")
    if report:
        _say(f"report: {report}")
    return record


def _cached(config: PipelineConfig, record: dict[str, Any], stage: str) -> bool:
    done = record["stages"].get(stage, {})
    return done.get("hash") == stage_hash(config, stage) and done.get("status") == "done"


def _to_run(config: PipelineConfig, layout: RunLayout, chosen: list[str]) -> list[str]:
    """The stages of ``chosen`` that ``run.json`` does not record as done for this config (what preflight checks)."""
    record = _load_record(layout)
    return [stage for stage in chosen if not _cached(config, record, stage)]


def _failure(exc: Exception) -> str:
    """A stage's error as the run records it: a damaged chunk, a full disk … named as the command line names them."""
    return one_line(damage_error(exc) or environment_failure(exc) or exc)


def _more(problems: list[str]) -> str:
    return f"{problems[0]}{f' (and {len(problems) - 1} more)' if len(problems) > 1 else ''}"


def _run_stage(run: Run, record: dict[str, Any], stage: str, step: str, overwrite: bool) -> None:
    """Run one stage of ``run`` (or reuse it when cached and whole), recording it in ``record`` (``run.json``)."""
    config, layout = run.config, run.layout
    if run.failed and stage != "report":
        _say(f"{step}: not run ({', '.join(run.failed)} failed)")
        return
    digest = stage_hash(config, stage)
    if not overwrite and not run.failed and _cached(config, record, stage):
        unfinished = STAGES[stage].unfinished(config, layout)
        if not unfinished:
            _say(f"{step}: cached (config hash {digest})")
            return
        _say(f"{step}: recorded as done for this config, but {_more(unfinished)}: running it again")
    _say(f"{step} …" if not run.failed else f"{step} of what exists (incomplete) …")
    record["stages"][stage] = {"hash": digest, "status": "running", "started": _now()}
    _save_record(layout, record)
    t0 = time.perf_counter()
    try:
        outputs = STAGES[stage].run(run, (0, 1))
        unfinished = [] if run.failed else STAGES[stage].unfinished(config, layout)
        if unfinished:
            raise StageError(f"the stage ended but its outputs are not whole: {_more(unfinished)}")
    except Exception as exc:  # the report of what exists still gets written; the run ends non-zero
        error = _failure(exc)
        log.error("stage %s failed: %s", stage, error, exc_info=not isinstance(exc, FnetError) and error == one_line(exc))
        run.failed[stage] = error
        record["stages"][stage].update(status="failed", finished=_now(), error=error)
        _save_record(layout, record)
        _say(f"{step}: failed ({error})")
        return
    seconds = time.perf_counter() - t0
    record["stages"][stage] = {"hash": digest, "status": "incomplete" if run.failed else "done",
                               "started": record["stages"][stage]["started"], "finished": _now(),
                               "seconds": round(seconds, 2), "outputs": outputs}
    _save_record(layout, record)
    _say(f"{step}: {record['stages'][stage]['status']} in {seconds:.1f} s")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
