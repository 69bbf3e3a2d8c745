"""Run lm-eval for each condition (normal model, networks inhibited, baselines) and keep a tidy table.

- ``evaluate_conditions(model, conditions, tasks, out, *, limit, backend, batch_size, seed, ...) -> DataFrame``:
  tidy rows ``condition × task × metric`` with ``value``, ``stderr``, ``filter``, ``n_samples``, ``neurons`` and the
  condition's fields (``conditions.FIELD_COLUMNS``: kind, edit, factor, corpus, template, …) to group by.
- ``BACKENDS`` (``backends.ENGINES``, one engine per ``evaluate.backend``): ``hf`` (``hf_backend.HFEngine``: one
  loaded model, one ``hflm.LeanHFLM``: lm-eval's ``HFLM`` with the LM head only at scored positions; requests
  built once by ``scoring.Scorer``, scored for each condition inside ``fnet_dist.model.edit.edited``) and
  ``vllm`` (``vllm_backend.VLLMRunner``: lm-eval's ``vllm`` model on one engine in its own process, in the
  interpreter of ``evaluate.vllm.python``; each condition's edit written into the engine's weights and undone after).
- ``read_rows(out)``, ``read_samples(out, condition, task)``: what a finished run left on disk;
  ``condition_rows(out, slugs)``: the rows of some finished conditions (to merge shards); ``write_rows``.

Layout of ``out``: ``tasks/`` (offline task data and YAMLs), ``conditions/<slug>/`` with ``results.json``
(lm-eval's own JSON), ``samples_<task>.jsonl`` (its logged samples), ``rows.csv`` and ``condition.json``
(the condition's fingerprint and run config), and ``results.csv`` (all rows). A condition's folder is
written as ``<slug>.partial`` and renamed when complete: only complete folders whose recorded config
equals the current one are skipped on a rerun; anything else is run again.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from .. import __version__
from ..core.conditions import FIELD_COLUMNS, Condition, check_conditions, slug_of
from ..core.config import EvaluateSection
from ..core.errors import InputError
from ..core.layout import ConditionFiles, EvaluationFiles
from ..store.outputs import open_output
from .backends import BACKENDS, get_backend
from .tasks import TaskOptions, prepare_tasks, resolve_tasks

__all__ = ["BACKENDS", "ROW_COLUMNS", "condition_rows", "evaluate_conditions", "read_rows", "read_samples",
           "tidy_rows", "write_rows"]

ROW_COLUMNS = ["condition", "task", "metric", "value", "stderr", "filter", "n_samples", "neurons", *FIELD_COLUMNS]
_EVALUATE = EvaluateSection()  # backend, batch size and seed default to the evaluate section's
_SAMPLE_DROP = ("arguments", "resps")  # the prompts and raw responses: large, and kept by lm-eval's hashes
log = logging.getLogger(__name__)


def _check_limit(limit):
    """A number of documents (or a fraction) for every task, or a mapping task → limit (others: no limit)."""
    if isinstance(limit, dict):
        return {str(task): _check_limit(value) for task, value in limit.items()}
    if limit is None:
        return None
    value = float(limit)
    if value.is_integer() and value >= 1:
        return int(value)
    if 0 < value < 1:
        return value
    raise InputError(f"--limit {limit!r} must be a whole number of documents (>= 1) or a fraction in (0, 1)")


def _task_limits(tasks: list[str], limit) -> dict[str, object]:
    """Each task's own limit (``None``: all documents), whether ``limit`` is one value or a mapping."""
    return {task: limit.get(task) if isinstance(limit, dict) else limit for task in tasks}


def _limit_groups(tasks: list[str], limit) -> list[tuple[object, list[str]]]:
    """Tasks grouped by their limit, in task order: one lm-eval call per group."""
    groups: dict[object, list[str]] = {}
    for task, task_limit in _task_limits(tasks, limit).items():
        groups.setdefault(task_limit, []).append(task)
    return list(groups.items())


def _merge_results(parts: list[dict]) -> dict:
    """lm-eval results of several calls as one: their per-task mappings united, the rest from the first."""
    merged = dict(parts[0])
    for part in parts[1:]:
        for key, value in part.items():
            if isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key] = {**merged[key], **value}
    return merged


def _check_options(backend: str, batch_size: int | str, vllm: Any) -> None:
    entry = get_backend(backend)
    if batch_size != "auto" and int(batch_size) < 1:
        raise InputError(f"--batch-size {batch_size!r} must be at least 1 (or auto)")
    entry.require(vllm.engine.python if vllm is not None else None)


def tidy_rows(result: dict, condition: Condition) -> pd.DataFrame:
    """lm-eval's ``result["results"]`` as tidy rows for ``condition``."""
    rows = []
    for task, metrics in result["results"].items():
        n_samples = result.get("n-samples", {}).get(task, {}).get("effective")
        for key, value in metrics.items():
            metric, _, filter_name = key.partition(",")
            if not filter_name or metric.endswith("_stderr") or not isinstance(value, (int, float)):
                continue
            stderr = metrics.get(f"{metric}_stderr,{filter_name}")
            rows.append({
                "condition": condition.name, "task": task, "metric": metric, "value": float(value),
                "stderr": float(stderr) if isinstance(stderr, (int, float)) else math.nan,
                "filter": filter_name, "n_samples": n_samples, "neurons": condition.neurons, **condition.fields(),
            })
    return pd.DataFrame(rows, columns=ROW_COLUMNS)


def _write_condition(folder: Path, result: dict, rows: pd.DataFrame, record: dict) -> None:
    """Write a finished condition as ``folder`` atomically (a ``.partial`` folder renamed at the end)."""
    from lm_eval.utils import handle_non_serializable

    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    files = ConditionFiles(partial)
    samples = result.get("samples", {})
    for task, items in samples.items():
        with open(files.samples(task), "w", encoding="utf-8") as handle:
            for item in items:
                kept = {k: v for k, v in item.items() if k not in _SAMPLE_DROP}
                handle.write(json.dumps(kept, default=handle_non_serializable, ensure_ascii=False) + "\n")
    summary = {k: v for k, v in result.items() if k != "samples"}
    files.lm_eval.write_text(json.dumps(summary, default=handle_non_serializable, indent=2))
    rows.to_csv(files.rows, index=False)
    files.record.write_text(json.dumps(record, indent=2))  # last: the condition is finished
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(partial, folder)


def _finished(folder: Path, key: str) -> pd.DataFrame | None:
    """The rows of a complete earlier run of the same condition and config, else None."""
    try:
        files = ConditionFiles(folder)
        record = json.loads(files.record.read_text())
        if record.get("key") != key:
            return None
        return pd.read_csv(files.rows)
    except (OSError, ValueError):
        return None


def _run_config(loaded: Any, spec: str, tasks: list[str], limit, backend: str, batch_size: int | str, seed: int,
                bootstrap_iters: int, options: TaskOptions) -> dict[str, Any]:
    import lm_eval


    model_info = dict(loaded.info) if loaded is not None else {"model_id": spec}
    # each evaluated task's own limit: another task's limit, or writing 3 as {task: 3}, changes no result here
    return {"model": model_info, "tasks": tasks, "limit": _task_limits(list(tasks), limit), "backend": backend,
            "batch_size": batch_size if batch_size == "auto" else int(batch_size),
            **({"task_options": vars(options)} if options != TaskOptions.of(_EVALUATE) else {}),  # earlier keys kept
            "seed": int(seed), "bootstrap_iters": int(bootstrap_iters), "lm_eval_version": lm_eval.__version__,
            "fnet_version": __version__}


def _key(config: dict, condition: Condition) -> str:
    text = json.dumps({"config": config, "condition": condition.fingerprint()}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _simple_evaluate(lm, tasks, manager, limit, seed, bootstrap_iters, model_args=None) -> dict:
    from lm_eval import simple_evaluate

    return simple_evaluate(
        model=lm, model_args=model_args, tasks=list(tasks), task_manager=manager, limit=limit, log_samples=True,
        bootstrap_iters=bootstrap_iters, random_seed=seed, numpy_random_seed=seed, torch_random_seed=seed,
        fewshot_random_seed=seed, verbosity="WARNING",
    )


def _say(progress: bool, text: str) -> None:
    if progress:
        print(text, file=sys.stderr, flush=True)


def _condition_rows(engine, condition: Condition, position: str, files: EvaluationFiles, config: dict, tasks: list[str],
                    manager, limit, seed: int, bootstrap_iters: int, progress: bool) -> pd.DataFrame:
    """``condition``'s rows: read back when finished earlier with the same config, else evaluated and written."""
    folder, key = files.condition(condition.slug).folder, _key(config, condition)
    head = f"{position} {condition.name} ({condition.neurons} neurons)"
    rows = _finished(folder, key)
    if rows is not None:
        _say(progress, f"{head}: finished earlier, kept")
        return rows
    _say(progress, f"{head}: running {', '.join(tasks)}")
    start = time.perf_counter()
    result = _merge_results([engine.run(condition, group, manager, group_limit, seed, bootstrap_iters)
                             for group_limit, group in _limit_groups(list(tasks), limit)])
    rows = tidy_rows(result, condition)
    record = {"key": key, "condition": condition.fingerprint(), "config": config,
              "seconds": round(time.perf_counter() - start, 3)}
    _write_condition(folder, result, rows, record)
    _say(progress, f"{head}: done in {record['seconds']:.1f} s")
    return rows


def evaluate_conditions(
    model,
    conditions: Sequence[Condition],
    tasks: Sequence[str] | None,
    out: str | os.PathLike,
    *,
    limit: float | dict | None = None,
    backend: str = _EVALUATE.backend,
    batch_size: int | str = _EVALUATE.batch_size,
    seed: int = _EVALUATE.seed,
    progress: bool = True,
    bootstrap_iters: int = 1000,
    hook_module: str | None = None,
    keep_checkpoints: bool = False,
    vllm: Any = None,
    table: bool = True,
    task_options: TaskOptions | None = None,
) -> pd.DataFrame:
    """Evaluate each condition on ``tasks`` with lm-eval; return (and write to ``out/results.csv``) tidy rows.

    model : a model spec (hub id, folder, ``.gguf``, ``smollm2-135m-instruct``) or a ``LoadedModel``.
    limit : documents per task (an int, or a fraction in (0, 1)), or a mapping task → limit; ``None`` for all.
    vllm : ``vllm_backend.VLLMSettings`` of the vllm backend (default: its defaults).
    task_options : ``tasks.TaskOptions`` (your own task YAMLs, few-shot examples, the chat template; both backends).
    Finished conditions with the same config are read back, not rerun. ``table=False``: write only each
    condition's own folder, not ``results.csv`` (a shard of a stage; the report stage merges).
    """
    _check_options(backend, batch_size, vllm)
    limit = _check_limit(limit)
    conditions = check_conditions(conditions)
    task_options = task_options or TaskOptions.of(_EVALUATE)
    tasks = resolve_tasks(tasks, task_options.include_path)
    out = Path(open_output(out, "evaluation"))  # a folder of other files is refused; results resume
    files = EvaluationFiles(out)
    files.conditions.mkdir(parents=True, exist_ok=True)
    manager = prepare_tasks(tasks, files.task_definitions, include_path=task_options.include_path)
    engine = get_backend(backend).open(model, out, batch_size=batch_size, hook_module=hook_module,
                                         keep_checkpoints=keep_checkpoints, vllm=vllm, task_options=task_options)
    try:  # the engine is closed (a vLLM engine process ended) also when a condition fails
        for condition in conditions:
            engine.check(condition)
        config = _run_config(engine.loaded, engine.spec, tasks, limit, backend, batch_size, seed, bootstrap_iters,
                             task_options)
        frames = [_condition_rows(engine, condition, f"[{index}/{len(conditions)}]", files, config, tasks, manager,
                                  limit, seed, bootstrap_iters, progress)
                  for index, condition in enumerate(conditions, 1)]
    finally:
        engine.close()
    rows = pd.concat(frames, ignore_index=True)[ROW_COLUMNS]
    if not table:
        return rows
    write_rows(rows, out)
    return read_rows(out)  # as read back: absent fields are NaN whether a condition ran now or earlier


def write_rows(rows: pd.DataFrame, out: str | os.PathLike) -> Path:
    """The evaluation folder ``out``'s results table (``EvaluationFiles.results``), written atomically."""
    path = EvaluationFiles(Path(out)).results
    partial = path.with_name(path.name + ".partial")
    rows[ROW_COLUMNS].to_csv(partial, index=False)
    os.replace(partial, path)
    return path


def condition_rows(out: str | os.PathLike, slugs: Sequence[str]) -> pd.DataFrame:
    """The rows of the finished conditions ``slugs`` under ``out``, in that order; a missing one is an error."""
    files = EvaluationFiles(Path(out))
    missing = [s for s in slugs if not files.condition(s).record.is_file()]
    if missing:
        raise InputError(f"{len(missing)} conditions under {out} are not evaluated yet (e.g. {missing[0]}); "
                         f"run every shard of the stage first")
    return pd.concat([pd.read_csv(files.condition(s).rows) for s in slugs], ignore_index=True)


def read_rows(out: str | os.PathLike) -> pd.DataFrame:
    """The tidy table of a finished ``evaluate_conditions`` run."""
    path = EvaluationFiles(Path(out)).results
    if not path.is_file():
        raise InputError(f"no results table at {path}; run fnet evaluate with --out {out} first")
    return pd.read_csv(path)


def read_samples(out: str | os.PathLike, condition: Condition | str, task: str) -> list[dict]:
    """lm-eval's logged samples of ``task`` under ``condition`` (a Condition or its display name)."""
    slug = condition.slug if isinstance(condition, Condition) else slug_of(condition)
    path = EvaluationFiles(Path(out)).condition(slug).samples(task)
    if not path.is_file():
        raise InputError(f"no samples for task {task!r} under condition {condition!r} at {path}; was it evaluated?")
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]
