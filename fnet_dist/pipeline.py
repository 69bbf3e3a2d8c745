"""``fnet run CONFIG``: record → decompose → match → evaluate → report, resumable and cached.

- ``RunLayout(out)``: where each stage writes inside a run folder.
- ``run_pipeline(config, stages=None, force=False) -> dict``: run the stages in order. A stage whose
  outputs exist for the same config hash (``run.json``) is skipped; a crashed stage is rerun and, since
  every stage resumes its own partial work, finishes what is missing. Returns the run record.
  A stage that raises is recorded as ``failed`` with its error; the stages after it do not run, except the
  report, which shows what exists marked incomplete (status ``incomplete``); then ``StageError`` (exit 1).
"""
from __future__ import annotations

import json
import logging
import os
import time
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import yaml

from . import __version__
from .config import STAGES, PipelineConfig, stage_hash
from .errors import FnetError, InputError, StageError, one_line
from .outputs import open_output

__all__ = ["RunLayout", "run_pipeline"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunLayout:
    """Paths of one run folder."""

    root: Path

    def activations(self, corpus: str) -> str:
        return str(self.root / "activations" / f"{corpus}.zarr")

    def networks(self, corpus: str) -> str:
        return str(self.root / "networks" / f"{corpus}.zarr")

    @property
    def match(self) -> Path:
        return self.root / "match"

    @property
    def evaluate(self) -> Path:
        return self.root / "evaluate"

    @property
    def report(self) -> Path:
        return self.root / "report"

    @property
    def record_file(self) -> Path:
        return self.root / "run.json"


class _Run:
    """State shared by the stages of one run: config, layout, the loaded model and the Dask scheduler."""

    def __init__(self, config: PipelineConfig, layout: RunLayout, stack: ExitStack) -> None:
        self.config = config
        self.layout = layout
        self._stack = stack
        self._model = None
        self._scheduler: str | None = None
        self.failed: dict[str, str] = {}  # stage -> its error, for the report of an incomplete run

    @property
    def model(self):
        if self._model is None:
            from .models import load_model

            m = self.config.model
            self._model = load_model(m.id, **m.placement())
        return self._model

    @property
    def scheduler(self) -> str:
        if self._scheduler is None:
            from .cluster import dask_client

            client = self._stack.enter_context(dask_client(self.config.dask.scheduler, n_workers=self.config.dask.n_workers))
            self._scheduler = client.scheduler.address
        return self._scheduler


def _record(run: _Run) -> dict[str, Any]:
    from .record import record_activations

    cfg, rec = run.config, run.config.record
    stores = {}
    for corpus, entry in cfg.corpora.items():
        _say(f"  record {corpus} ({entry.spec})")
        stores[corpus] = record_activations(
            run.model, entry.spec, run.layout.activations(corpus), group_samples=rec.group_samples,
            individual_samples=rec.individual_samples, max_tokens=rec.max_tokens, min_tokens=rec.min_tokens,
            batch_size=rec.batch_size, batch_tokens=rec.batch_tokens, seed=rec.seed, store_dtype=rec.store_dtype,
            text_field=entry.text_field or rec.text_field, pack_to_tokens=cfg.pack_to_tokens(),
            hook_module=cfg.model.hook_module, overwrite=True,
        )
    return {"stores": stores}


def _decompose(run: _Run) -> dict[str, Any]:
    from .decompose import decompose

    d = run.config.decompose
    stores = {}
    for corpus in run.config.corpora:
        _say(f"  decompose {corpus}")
        stores[corpus] = decompose(
            run.layout.activations(corpus), run.layout.networks(corpus), components=d.components,
            group_components=d.group_components, n_init=d.n_init, seed=d.seed, scheduler=run.scheduler,
            exclude_first_tokens=d.exclude_first_tokens, stability_runs=d.stability_runs, levels=d.levels,
            dataset=corpus, overwrite=True,
        )
    return {"stores": stores}


def _match(run: _Run) -> dict[str, Any]:
    from .match import match_networks

    m = run.config.match
    networks = [run.layout.networks(c) for c in run.config.corpora]
    match_networks(networks, str(run.layout.match), threshold=m.threshold, two_sided=m.two_sided, iou=m.iou,
                   similar_iou=m.similar_iou, scheduler=run.scheduler, overwrite=True)
    _anatomy(run)
    _nulls(run)
    return {"folder": str(run.layout.match)}


def _nulls(run: _Run) -> None:
    """Layer-matched nulls of the counterparts and of cross-corpus recurrence (fnet_dist/nulls.py)."""
    import numpy as np
    import pandas as pd

    from .nulls import match_nulls

    m, folder = run.config.match, run.layout.match
    match_nulls([run.layout.networks(c) for c in run.config.corpora], folder,
                massive=np.load(folder / "massive_mask.npy", allow_pickle=False),
                anatomy=pd.read_csv(folder / "network_anatomy.csv"), threshold=m.threshold, two_sided=m.two_sided,
                iou=m.iou, permutations=m.permutations, seed=run.config.decompose.seed,
                first_token_share=m.first_token_share)
    _say(f"  nulls: {m.permutations} layer-matched random networks per template; exact nulls of cross-corpus IoU")


def _anatomy(run: _Run) -> None:
    """Massive channels over all corpora's stores, and each corpus's templates against them."""
    import numpy as np
    import pandas as pd

    from .anatomy import MassiveRule, massive_channels, massive_mask, network_anatomy

    m = run.config.match
    rule = MassiveRule(ratio=m.massive_ratio, min_value=m.massive_min_value, seed=run.config.record.seed)
    channels = []
    for corpus in run.config.corpora:
        table = massive_channels(run.layout.activations(corpus), rule)
        channels.append(table.assign(corpus=corpus))
        shape = (table.attrs["n_layers"], table.attrs["d_model"])
    merged = pd.concat(channels, ignore_index=True)
    union = massive_mask(merged, shape)
    merged.to_csv(run.layout.match / "massive_channels.csv", index=False)
    anatomy = [network_anatomy(run.layout.networks(c), union, activations=run.layout.activations(c),
                               threshold=m.threshold, two_sided=m.two_sided).assign(corpus=c)
               for c in run.config.corpora]
    pd.concat(anatomy, ignore_index=True).to_csv(run.layout.match / "network_anatomy.csv", index=False)
    np.save(run.layout.match / "massive_mask.npy", union, allow_pickle=False)
    _say(f"  anatomy: {int(union.sum())} massive channels (rule: peak ≥ {m.massive_ratio:g} × layer median and ≥ {m.massive_min_value:g})")


def _evaluate(run: _Run) -> dict[str, Any]:
    if not run.config.evaluate.enabled:
        _say("  evaluation disabled in the config")
        return {"folder": None}
    from .evaluate import evaluate_pipeline
    from .evaluate.controls import controls_pipeline

    evaluate_pipeline(run.model, run.config, run.layout)
    if run.config.evaluate.controls.draws:
        _say(f"  controls: {run.config.evaluate.controls.draws} random draws per kind")
        controls_pipeline(run.model, run.config, run.layout)
    return {"folder": str(run.layout.evaluate)}


def _report(run: _Run) -> dict[str, Any]:
    from .report import build_report

    explain = run.config.report.explain_texts and not run.failed
    page = build_report(run.config, run.layout, model=run.model if explain else None, failed=run.failed)
    return {"page": str(page)}


_STAGE_FUNCTIONS: dict[str, Callable[[_Run], dict[str, Any]]] = {
    "record": _record,
    "decompose": _decompose,
    "match": _match,
    "evaluate": _evaluate,
    "report": _report,
}


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


def run_pipeline(config: PipelineConfig, *, stages: list[str] | None = None, force: bool = False) -> dict[str, Any]:
    """Run ``stages`` (default all) of ``config``; skip those already done for the same config hash."""
    chosen = list(stages or STAGES)
    unknown = [s for s in chosen if s not in STAGES]
    if unknown:
        raise InputError(f"unknown stage(s) {unknown}; expected some of {', '.join(STAGES)}")
    layout = RunLayout(Path(config.out).expanduser().resolve())
    open_output(str(layout.root), "run")  # a folder of other files is refused before any work; a run resumes
    (layout.root / "config.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
    record = _load_record(layout)
    record.update(name=config.name, package_version=__version__, config=config.model_dump(mode="json"))
    started = time.perf_counter()
    with ExitStack() as stack:
        run = _Run(config, layout, stack)
        for number, stage in enumerate(chosen, start=1):
            step = f"[{number}/{len(chosen)}] {stage}"
            if run.failed and stage != "report":
                _say(f"{step}: not run ({', '.join(run.failed)} failed)")
                continue
            digest = stage_hash(config, stage)
            done = record["stages"].get(stage, {})
            if not force and not run.failed and done.get("hash") == digest and done.get("status") == "done":
                _say(f"{step}: cached (config hash {digest})")
                continue
            _say(f"{step} …" if not run.failed else f"{step} of what exists (incomplete) …")
            record["stages"][stage] = {"hash": digest, "status": "running", "started": _now()}
            _save_record(layout, record)
            t0 = time.perf_counter()
            try:
                outputs = _STAGE_FUNCTIONS[stage](run)
            except Exception as exc:  # the report of what exists still gets written; the run ends non-zero
                error = one_line(exc)
                log.error("stage %s failed: %s", stage, error, exc_info=not isinstance(exc, FnetError))
                run.failed[stage] = error
                record["stages"][stage].update(status="failed", finished=_now(), error=error)
                _save_record(layout, record)
                _say(f"{step}: failed ({error})")
                continue
            seconds = time.perf_counter() - t0
            record["stages"][stage] = {"hash": digest, "status": "incomplete" if run.failed else "done",
                                       "started": record["stages"][stage]["started"], "finished": _now(),
                                       "seconds": round(seconds, 2), "outputs": outputs}
            _save_record(layout, record)
            _say(f"{step}: {record['stages'][stage]['status']} in {seconds:.1f} s")
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


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
