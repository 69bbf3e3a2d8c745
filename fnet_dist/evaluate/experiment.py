"""The paper's editing experiment from networks stores: conditions, lm-eval runs, tables and figures.

- ``ExperimentSettings``: the knobs (seed, factor, random / top percent, threshold, localizer), validated once.
- ``paper_conditions(loaded, networks_urls, settings, patterns=None) -> (conditions, extras)``: ``normal``;
  each template inhibited and all of them (``inhibit:<dataset>/<k>``, ``inhibit:<dataset>/all``), with
  ``amplify_networks`` each template amplified too (``multiply1.02:<dataset>/<k>``, Figure 3);
  ``random15:seed<S>``; ``top5:inhibit`` / ``top5:multiply1.02``; ``localization:inhibit`` /
  ``localization:multiply1.02`` with as many units as the top 5 %. ``extras``: masks by condition and
  the IoU of ICA top 5 % vs Localization (Table 5).
- ``evaluate_networks(model, networks_urls, out, *, tasks, conditions, probing, sweeps, ...) -> DataFrame``:
  runs them with ``evaluate_conditions`` and writes ``tables/`` (Tables 3, 4, 5, 9, 10/11, and 12 with
  ``probing``, as CSV + Markdown), ``figures/`` (Figures 2, 3, and 5-7 with ``sweeps``), ``flips.csv``
  (Figure 8: multiple-choice predictions that change under each condition), ``masks/`` (each
  condition's mask, ``.npz``), ``probing.csv`` and ``sweeps/`` (its own results folder).
- ``evaluate_pipeline(loaded, config, layout)``: the ``evaluate`` stage of ``fnet run``.
"""
from __future__ import annotations

import fnmatch
import json
import logging
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from ..errors import InputError
from ..outputs import open_output, prepare_output
from .conditions import NORMAL, Condition, network_conditions, random_condition, select_conditions, top_conditions
from .runner import evaluate_conditions
from .sweeps import DEFAULT_FACTORS, DEFAULT_VALUES

__all__ = ["ExperimentSettings", "evaluate_networks", "evaluate_pipeline", "paper_conditions", "write_flips", "write_reports"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExperimentSettings:
    """Settings of the paper's experiment (defaults: the paper's)."""

    seed: int = 0
    factor: float = 1.02
    random_percent: float = 15.0
    top_percent: float = 5.0
    threshold: float = 3.6
    two_sided: bool = True
    localization: bool = True
    localizer_stimuli: int = 240
    probe_texts: int = 400
    amplify_networks: bool = False
    sweep_factors: tuple[float, ...] = DEFAULT_FACTORS
    sweep_values: tuple[float, ...] = DEFAULT_VALUES

    def validated(self) -> "ExperimentSettings":
        """Self, or a clear error naming the bad setting."""
        for name in ("factor", "random_percent", "top_percent", "threshold"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise InputError(f"{name} {value!r} is not a finite number")
        if not 0 < self.random_percent < 100 or not 0 < self.top_percent <= 100:
            raise InputError(f"percentages must lie in (0, 100); got random {self.random_percent}, top {self.top_percent}")
        if self.localizer_stimuli < 2 or self.probe_texts < 10:
            raise InputError(f"localizer_stimuli ({self.localizer_stimuli!r}) must be >= 2 and probe_texts "
                             f"({self.probe_texts!r}) >= 10")
        return self


def _wanted(patterns: Sequence[str] | None, name: str) -> bool:
    return not patterns or any(fnmatch.fnmatchcase(name, p) for p in patterns)


def _localization(loaded, arch, count: int, settings: ExperimentSettings):
    from .baselines import localize, localizer_stimuli

    sentences, nonwords = localizer_stimuli(settings.localizer_stimuli, seed=settings.seed)
    return localize(loaded.model, loaded.tokenizer, arch, sentences, nonwords, count=count)


def paper_conditions(loaded, networks_urls: Sequence[str], settings: ExperimentSettings = ExperimentSettings(),
                     patterns: Sequence[str] | None = None, hook_module: str | None = None):
    """The paper's conditions for ``loaded`` from ``networks_urls`` (see the module docstring)."""
    from ..architectures import resolve_architecture
    from ..edit import Edit, model_shape
    from ..models import check_same_model
    from ..storage import open_store
    from storage_schemas import NETWORKS
    from .baselines import mask_iou
    from .conditions import edit_label

    settings = settings.validated()
    if not networks_urls:
        raise InputError("no networks store given; pass --networks with the output of fnet decompose")
    arch = resolve_architecture(loaded.model, hook_module)
    shape = model_shape(loaded.model, arch)
    stores = [open_store(url, NETWORKS) for url in networks_urls]
    for url, ds in zip(networks_urls, stores):
        check_same_model(ds.attrs, loaded.info, f"the networks store {url}")
    conditions, extras = [NORMAL], {"iou": {}}
    for ds in stores:
        conditions += network_conditions(ds, threshold=settings.threshold, two_sided=settings.two_sided)
        if settings.amplify_networks:
            conditions += network_conditions(ds, edit=Edit("multiply", settings.factor), threshold=settings.threshold,
                                             two_sided=settings.two_sided, union=False)
    conditions.append(random_condition(shape, percent=settings.random_percent, seed=settings.seed))
    for ds in stores:
        suffix = "" if len(stores) == 1 else f"@{ds.attrs.get('dataset', 'networks')}"
        tops = top_conditions(ds, percent=settings.top_percent, factor=settings.factor, suffix=suffix)
        conditions += tops
        names = [(f"localization:{edit_label(c.edit)}{suffix}", c.edit) for c in tops]
        if settings.localization and any(_wanted(patterns, n) for n, _ in names):
            found = _localization(loaded, arch, tops[0].neurons, settings)
            conditions += [Condition(n, found.mask, e) for n, e in names]
            extras["iou"][f"ICA vs LLM Localization{suffix}"] = mask_iou(tops[0].mask, found.mask)
            extras.setdefault("localization", {})[suffix or "default"] = found.settings
    return select_conditions(conditions, patterns), extras


def _try_table(build, folder: Path, name: str) -> None:
    from .tables import save_table

    try:
        save_table(build(), folder, name)
    except InputError as exc:
        log.info("table %s not written: %s", name, exc)


def _try_figure(draw) -> None:
    try:
        draw()
    except InputError as exc:
        log.info("figure not drawn: %s", exc)


def write_reports(rows: pd.DataFrame, out: str | os.PathLike, *, settings: ExperimentSettings = ExperimentSettings(),
                  iou: dict | None = None) -> Path:
    """Tables 3, 4, 5, 9, 10 and Figures 2, 3 from ``rows``, as far as the evaluated conditions allow."""
    from .figures import perplexity_bars, score_changes
    from .tables import condition_table, iou_table, network_table, primary_rows
    from .tasks import PERPLEXITY_METRICS, primary_metric

    out = Path(out)
    tables, figures = out / "tables", out / "figures"
    names = list(dict.fromkeys(rows["condition"]))
    datasets = sorted({n.split(":", 1)[1].rsplit("/", 1)[0] for n in names if n.startswith("inhibit:")})
    top, loc, mult = f"top{settings.top_percent:g}", "localization", f"multiply{settings.factor:g}"
    for dataset in datasets:
        prefix = f"inhibit:{dataset}/"
        _try_table(lambda: network_table(rows, prefix), tables, f"table3_networks_{dataset}")
        columns = {"Normal": "normal", f"Masked {settings.random_percent:g}%": f"random{settings.random_percent:g}:seed{settings.seed}",
                   "Masked all networks": f"inhibit:{dataset}/all"}
        _try_table(lambda: condition_table(rows, columns), tables, f"table10_masked_{dataset}")
        for verb in ("inhibit", mult):
            group = [n for n in names if n.startswith(f"{verb}:{dataset}/") and not n.endswith("/all")]
            if group:
                _try_figure(lambda: score_changes(rows, figures / f"figure3_changes_{verb}_{dataset}.png", group))
        perplexity_tasks = [t for t in dict.fromkeys(primary_rows(rows)["task"]) if primary_metric(t) in PERPLEXITY_METRICS]
        for task in perplexity_tasks:
            _try_figure(lambda: perplexity_bars(rows, figures / f"figure2_perplexity_{dataset}_{task}.png", task=task,
                                                prefix=prefix))
    suffixes = sorted({n.split("@", 1)[1] for n in names if n.startswith(f"{top}:") and "@" in n})
    for suffix in [""] + [f"@{s}" for s in suffixes]:
        tail = suffix.replace("@", "_")
        for verb, name in (("inhibit", "table9_top_inhibit"), (mult, "table4_top_amplify")):
            columns = {"Normal": "normal", "ICA": f"{top}:{verb}{suffix}", "LLM Localization": f"{loc}:{verb}{suffix}"}
            _try_table(lambda: condition_table(rows, columns), tables, f"{name}{tail}")
        amplified = [n for n in (f"{top}:{mult}{suffix}", f"{loc}:{mult}{suffix}") if n in names]
        if amplified:
            _try_figure(lambda: score_changes(rows, figures / f"figure3_changes_top_amplified{tail}.png", amplified))
    if iou:
        _try_table(lambda: iou_table(iou), tables, "table5_iou")
    return out


def write_flips(rows: pd.DataFrame, out: str | os.PathLike) -> Path:
    """``out/flips.csv``: every multiple-choice prediction that changes between normal and a condition (Figure 8)."""
    from .figures import prediction_flips

    frames = []
    for task in dict.fromkeys(rows["task"]):
        for condition in (c for c in dict.fromkeys(rows["condition"]) if c != "normal"):
            try:
                flips = prediction_flips(out, task, condition)
            except InputError:  # not a multiple-choice task, or not evaluated under both
                break
            frames.append(flips.assign(condition=condition, task=task))
    columns = ["condition", "task", "doc_id", "effect", "target", "before", "after", "text"]
    table = pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)
    rank = table["effect"].map({"fixed": 0, "broken": 1, "changed": 2})
    table = table.assign(_rank=rank).sort_values(["_rank", "condition", "task", "doc_id"], kind="stable")
    table = table.drop(columns="_rank")
    path = Path(out) / "flips.csv"
    table.to_csv(path, index=False)
    return path


def _probing(loaded, chosen: Sequence[Condition], out: Path, settings: ExperimentSettings, hook_module) -> pd.DataFrame:
    """Tables 12-13: probes under normal, random and all-networks-inhibited conditions."""
    from .probing import labelled_texts, probe_conditions
    from .tables import save_table

    networks = [c for c in chosen if c.name.startswith("inhibit:")]
    unions = [c for c in networks if c.name.endswith("/all")]
    keep = [c for c in chosen if c.name == "normal" or c.name.startswith("random")] + (unions or networks)
    texts, labels = labelled_texts("sentiment_rt", settings.probe_texts, seed=settings.seed)
    rows = probe_conditions(loaded, keep, texts, labels, seed=settings.seed, hook_module=hook_module)
    rows.to_csv(out / "probing.csv", index=False)
    table = rows.pivot(index="pooling", columns="condition", values="accuracy")[[c.name for c in keep]]
    table.index = [f"Rotten Tomatoes ({p} token{'s' if p == 'mean' else ''})" for p in table.index]
    save_table(table, out / "tables", "table12_probing")
    return rows


def _sweeps(loaded, chosen: Sequence[Condition], out: Path, tasks: Sequence[str], settings: ExperimentSettings,
            hook_module, options: dict) -> pd.DataFrame:
    """Figures 5-7: the top-percent mask and each union of networks at several factors and values."""
    from .figures import sweep_plot
    from .sweeps import sweep
    from .tasks import PERPLEXITY_METRICS, primary_metric

    masks = {}
    for c in chosen:
        if c.mask is not None and (c.name.endswith("/all") or c.name.startswith(f"top{settings.top_percent:g}:inhibit")):
            masks.setdefault(c.name.split(":", 1)[1] if c.name.endswith("/all") else c.name.split(":")[0], c.mask)
    ppl = [t for t in tasks if primary_metric(t) in PERPLEXITY_METRICS] or ["wiki_ppl"]
    rows = sweep(loaded, masks, out / "sweeps", factors=settings.sweep_factors, values=settings.sweep_values, tasks=ppl,
                 seed=settings.seed, hook_module=hook_module, **options)
    for task in ppl:
        sweep_plot(rows, out / "figures" / f"figure5_7_sweep_{task}.png", task=task)
    return rows


def evaluate_networks(model, networks_urls: Sequence[str], out: str | os.PathLike, *, tasks: Sequence[str] | None = None,
                      conditions: Sequence[str] | None = None, settings: ExperimentSettings = ExperimentSettings(),
                      probing: bool = False, sweeps: bool = False, hook_module: str | None = None,
                      **options: Any) -> pd.DataFrame:
    """Build the paper's conditions from ``networks_urls``, evaluate them, write tables, figures and masks.

    ``conditions``: shell patterns of condition names to keep (default all); ``probing`` / ``sweeps`` add
    Tables 12-13 / Figures 5-7 (HF backend); ``options`` go to ``evaluate_conditions`` (``limit``,
    ``backend``, ``batch_size``, ``progress`` …).
    """
    from ..models import LoadedModel, load_model
    from .runner import require_vllm
    from .tasks import resolve_tasks

    if options.get("backend", "hf") == "vllm":
        require_vllm()
    tasks = resolve_tasks(tasks)
    prepare_output(out, "evaluation", resume=True)  # a folder of other files: refused before any work
    loaded = model if isinstance(model, LoadedModel) else load_model(model)
    chosen, extras = paper_conditions(loaded, networks_urls, settings, conditions, hook_module)
    out = Path(open_output(out, "evaluation"))
    (out / "masks").mkdir(parents=True, exist_ok=True)
    for condition in chosen:
        if condition.mask is not None:
            condition.mask.save(str(out / "masks" / f"{condition.slug}.npz"))
    (out / "experiment.json").write_text(json.dumps(
        {"settings": asdict(settings), "networks": list(networks_urls), "conditions": [c.name for c in chosen],
         "iou": extras["iou"], "localization": extras.get("localization")}, indent=2, default=str))
    rows = evaluate_conditions(loaded, chosen, tasks, out, seed=settings.seed, hook_module=hook_module, **options)
    write_reports(rows, out, settings=settings, iou=extras["iou"])
    write_flips(rows, out)
    if probing:
        _probing(loaded, chosen, out, settings, hook_module)
    if sweeps:
        _sweeps(loaded, chosen, out, tasks, settings, hook_module, {**options, "backend": "hf"})
    return rows


def evaluate_pipeline(loaded, config, layout) -> pd.DataFrame:
    """The ``evaluate`` stage of ``fnet run``: ``config.evaluate`` on the networks of its corpora."""
    from .vllm_backend import VLLMSettings

    e = config.evaluate
    settings = ExperimentSettings(seed=e.seed, factor=e.amplify_factor, random_percent=100 * e.random_fraction,
                                  top_percent=e.top_percent, threshold=config.match.threshold,
                                  two_sided=config.match.two_sided, localization=e.localization,
                                  localizer_stimuli=e.localizer_stimuli, probe_texts=e.probe_texts)
    urls = [layout.networks(corpus) for corpus in config.evaluation_corpora()]
    return evaluate_networks(loaded, urls, layout.evaluate, tasks=list(e.tasks), settings=settings,
                             probing=e.probing, sweeps=e.sweeps, hook_module=config.model.hook_module,
                             limit=e.limit, backend=e.backend, batch_size=e.batch_size,
                             **({"vllm": VLLMSettings.from_config(config)} if e.backend == "vllm" else {}))
