"""What ``fnet run`` checks before its first stage, before any model loads: everything a moment's look can see
wrong with the config and the machine, all of it at once, one line per problem.

- ``preflight(config, layout, stages)``: for the ``stages`` that will run, raise ``PreflightFailed`` listing
  every problem: lm-eval task names (evaluate, controls), each corpus (record: the spec, an offline name, a file
  readable, non-empty and holding its text field), the model spec, the run folder and a local stores folder
  writable, object storage reachable with the credentials at hand, and enough free disk for the stores the
  run will write (estimated from the model's size, read without loading it, and the record section).
- ``planned_bytes(config, dimensions) -> {kind: bytes per corpus}``: that estimate.

Exit status: 2 when a problem is bad input (a task, a corpus, a credential), else 1 (the machine: a read-only
folder, a full disk).
"""
from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .core.config import PipelineConfig
from .core.corpora import check_corpus
from .core.errors import EnvironmentFailure, FnetError, StoreError, one_line
from .core.layout import RunLayout
from .evaluate.tasks import TaskOptions, resolve_tasks
from .model.dimensions import model_dimensions
from .store.locations import filesystem, normalize_url
from .store.storage import access_error, store_bytes

__all__ = ["PreflightFailed", "planned_bytes", "preflight"]

MODEL_STAGES = ("record", "evaluate", "controls")
NETWORKS_ITEMSIZE = np.dtype("float32").itemsize


class PreflightFailed(FnetError):
    """Problems found before a run: one line each; exit 2 when any is bad input, else 1."""

    def __init__(self, problems: list[FnetError]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems
        self.exit_code = 2 if any(p.exit_code == 2 for p in problems) else 1


def _writable(folder: Path, what: str) -> None:
    """Raise unless ``folder`` (or its nearest existing parent, where it will be created) may be written."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise StoreError(f"{what} {str(folder)!r}: {str(existing)!r} is a file, not a folder; choose another path")
    if os.statvfs(existing).f_flag & os.ST_RDONLY:
        raise EnvironmentFailure(f"cannot write {what} {str(folder)!r}: {str(existing)!r} is on a read-only file "
                                 f"system; choose a writable --out (or stores)")
    try:
        handle, probe = tempfile.mkstemp(prefix=".fnet-probe-", dir=existing)
    except OSError as exc:
        raise EnvironmentFailure(f"cannot write {what} {str(folder)!r}: {exc.strerror} in {str(existing)!r}; "
                                 f"choose a writable --out (or stores), or fix its permissions") from None
    os.close(handle)
    os.unlink(probe)


def _reachable(url: str) -> None:
    """Raise unless the object storage of ``url`` answers with the credentials at hand."""
    fs, path = filesystem(url)
    try:
        fs.exists(path)
    except Exception as exc:  # noqa: BLE001 - any refusal of the storage service is reported in one line
        raise access_error(exc) or StoreError(f"object storage at {url!r} cannot be used ({one_line(exc)}); check "
                                              f"the URL, the credentials and the endpoint") from None


def planned_bytes(config: PipelineConfig, dimensions: tuple[int, int]) -> dict[str, int]:
    """Upper bounds of one corpus's stores in bytes: ``activations`` (every sample padded to ``max_tokens``)
    and ``networks`` (individual maps and sources uncompressed, and the group templates)."""
    layers, width = dimensions
    r, d = config.record, config.decompose
    neurons = layers * width
    samples = r.group_samples + r.individual_samples
    return {
        "activations": samples * r.max_tokens * neurons * np.dtype(r.store_dtype).itemsize,
        "networks": (r.individual_samples * d.components * (neurons + r.max_tokens) + d.group_components * neurons)
                    * NETWORKS_ITEMSIZE,
    }


def _mount(path: Path) -> Path:
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    return existing


def _enough_disk(config: PipelineConfig, layout: RunLayout, stages: list[str]) -> None:
    """Raise when the stores the run will write do not fit the free space of their (local) file systems."""
    kinds = [kind for stage, kind in (("record", "activations"), ("decompose", "networks")) if stage in stages]
    base = layout.stores or str(layout.root)
    if not kinds or "://" in normalize_url(base):
        return
    dimensions = model_dimensions(config.model)
    if dimensions is None:
        return  # a hub model not in the cache: its size is unknown before it loads
    sizes = planned_bytes(config, dimensions)
    needed: dict[int, list] = {}
    for kind in kinds:
        for corpus in config.corpora:
            url = getattr(layout, kind)(corpus)
            missing = max(0, sizes[kind] - store_bytes(url))  # a resumed store holds part of it
            mount = _mount(Path(url))
            entry = needed.setdefault(os.stat(mount).st_dev, [mount, 0])
            entry[1] += missing
    for mount, total in needed.values():
        free = shutil.disk_usage(mount).free
        if total > free:
            raise EnvironmentFailure(
                f"not enough free disk for the stores this run writes: about {total / 2**30:,.2f} GiB under "
                f"{str(mount)!r} ({', '.join(kinds)} of {len(config.corpora)} corpora, {dimensions[0]} layers × "
                f"{dimensions[1]} neurons), {free / 2**30:,.2f} GiB free; free space, lower record.group_samples / "
                f"individual_samples / max_tokens, or put the stores elsewhere (stores: s3://…)")


def preflight(config: PipelineConfig, layout: RunLayout, stages: list[str]) -> None:
    """Check what ``stages`` of ``config`` need before any of them runs; raise ``PreflightFailed`` listing every
    problem (see the module docstring)."""
    problems: list[FnetError] = []

    def attempt(check: Callable[..., object], *args, **kwargs) -> None:
        try:
            check(*args, **kwargs)
        except FnetError as exc:
            problems.append(exc)

    if config.evaluate.enabled and {"evaluate", "controls"} & set(stages):
        attempt(resolve_tasks, list(config.evaluate.tasks), TaskOptions.of(config.evaluate).include_path)
    if "record" in stages:
        for entry in config.corpora.values():
            attempt(check_corpus, entry.spec, text_field=entry.text_field or config.record.text_field)
    if set(MODEL_STAGES) & set(stages):
        attempt(model_dimensions, config.model)
    attempt(_writable, layout.root, "the run folder")
    if layout.stores and "://" in normalize_url(layout.stores):
        attempt(_reachable, layout.stores)
    elif layout.stores:
        attempt(_writable, Path(normalize_url(layout.stores)), "the stores folder")
    if not problems:
        attempt(_enough_disk, config, layout, stages)
    if problems:
        raise PreflightFailed(problems)
