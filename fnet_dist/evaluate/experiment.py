"""The paper's editing experiment from networks stores: conditions, lm-eval runs, tables and figures.

Parameters: the ``evaluate`` and ``match`` config sections (``fnet_dist.core.config``).

- ``paper_conditions(loaded, networks_urls, evaluate, match) -> (conditions, extras)``: ``normal``;
  each template inhibited and all of them (``inhibit:<corpus>/<k>``, ``inhibit:<corpus>/all``), with
  ``amplify_networks`` each template amplified too (``multiply1.02:<corpus>/<k>``, Figure 3);
  ``random15:seed<S>``; ``top5:inhibit@<corpus>`` / ``top5:multiply1.02@<corpus>``; with the match stage's
  anatomy, ``top5-nofirst:inhibit@<corpus>`` (the top 5 % over the templates that are not first-token artefacts);
  ``localization:inhibit@<corpus>`` / ``localization:multiply1.02@<corpus>`` with as many units as the top
  5 %, selected and edited at ``evaluate.localization_site`` (the residual stream by default, as the method
  does). ``extras``: the IoU of ICA top 5 % vs Localization (Table 5; units indexed alike, (layer, channel)).
- ``evaluate_networks(model, networks_urls, out, evaluate, match, ...) -> DataFrame``:
  runs them with ``evaluate_conditions`` and writes ``tables/`` (Tables 3, 4, 5, 9, 10/11, and 12 with
  ``probing``, as CSV + Markdown), ``figures/`` (Figures 2, 3, and 5-7 with ``sweeps``), ``flips.csv``
  (Figure 8: multiple-choice predictions that change under each condition), ``masks/`` (each
  condition's mask, ``.npz``), ``probing.csv`` and ``sweeps/`` (its own results folder).
- ``evaluate_stage(loaded, config, layout, index, count)``: the ``evaluate`` stage of ``fnet run`` (or one shard):
  per-condition results only; ``merge_evaluation(config, layout)``: the report stage's tables from them;
  ``evaluate_pipeline``: both in one process.
"""
from __future__ import annotations

import fnmatch
import json
import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from storage_schemas import NETWORKS

from ..core.conditions import NORMAL, Condition, check_conditions, edit_label, pick, select_conditions
from ..core.config import EvaluateSection, MatchSection
from ..core.errors import InputError
from ..core.layout import EvaluationFiles
from ..core.networks import first_token_flags
from ..core.metrics import PERPLEXITY_METRICS, primary_metric, primary_rows
from ..model.architectures import resolve_architecture
from ..model.edit import Edit, model_shape
from ..model.loading import LoadedModel, check_same_model, load_model
from ..store.locks import output_lock
from ..store.outputs import open_output, prepare_output
from ..store.storage import open_store
from .backends import get_backend
from .baselines import localize, localizer_stimuli, mask_iou
from .conditions import network_conditions, random_condition, top_conditions, top_without_first_token
from .figures import perplexity_bars, prediction_flips, score_changes, sweep_plot
from .probing import labelled_texts, probe_conditions
from .runner import condition_rows, evaluate_conditions, write_rows
from .sweeps import sweep
from .tables import condition_table, iou_table, network_rows, network_table, save_table
from .tasks import TaskOptions, resolve_tasks
from .vllm_backend import vllm_options

__all__ = ["evaluate_networks", "evaluate_pipeline", "evaluate_stage", "merge_evaluation", "paper_conditions", "write_flips", "write_reports"]

log = logging.getLogger(__name__)


def _localization(loaded, arch, count: int, section: EvaluateSection):
    sentences, nonwords = localizer_stimuli(section.localizer_stimuli, seed=section.seed)
    return localize(loaded.model, loaded.tokenizer, arch, sentences, nonwords, count=count, site=section.localization_site)


def paper_conditions(loaded, networks_urls: Sequence[str], evaluate: EvaluateSection = EvaluateSection(),
                     match: MatchSection = MatchSection(), hook_module: str | None = None,
                     anatomy: pd.DataFrame | None = None):
    """The paper's conditions for ``loaded`` from ``networks_urls`` (see the module docstring); networks are
    thresholded as ``match`` says, and ``evaluate.conditions`` (shell patterns) keep some of them. With the match
    stage's ``anatomy`` (``network_anatomy.csv``), also the top percent without the first-token templates."""
    patterns = list(evaluate.conditions) or None
    if not networks_urls:
        raise InputError("no networks store given; pass --networks with the output of fnet decompose")
    arch = resolve_architecture(loaded.model, hook_module)
    shape = model_shape(loaded.model, arch)
    stores = [open_store(url, NETWORKS) for url in networks_urls]
    for url, ds in zip(networks_urls, stores):
        check_same_model(ds.attrs, loaded.info, f"the networks store {url}")
    conditions, extras = [NORMAL], {"iou": {}}
    for ds in stores:
        conditions += network_conditions(ds, threshold=match.threshold, two_sided=match.two_sided)
        if evaluate.amplify_networks:
            conditions += network_conditions(ds, edit=Edit("multiply", evaluate.amplify_factor), threshold=match.threshold,
                                             two_sided=match.two_sided, union=False)
    conditions.append(random_condition(shape, percent=100 * evaluate.random_fraction, seed=evaluate.seed))
    for ds in stores:
        tops = top_conditions(ds, percent=evaluate.top_percent, factor=evaluate.amplify_factor)
        conditions += tops
        corpus = tops[0].corpus
        if anatomy is not None:
            first = first_token_flags(anatomy, corpus, ds.sizes["component"], match.first_token_share)
            conditions += [c for c in [top_without_first_token(ds, first, percent=evaluate.top_percent, corpus=corpus)] if c]
        wanted = [replace(c, kind="localization", percent=None) for c in tops]
        if evaluate.localization and any(_matches(c, patterns) for c in wanted):
            found = _localization(loaded, arch, tops[0].neurons, evaluate)
            conditions += [replace(c, mask=found.mask, edit=found.edit(c.edit)) for c in wanted]
            extras["iou"][f"ICA vs LLM Localization@{corpus}"] = mask_iou(tops[0].mask, found.mask)
            extras.setdefault("localization", {})[corpus] = found.settings
    return select_conditions(conditions, patterns), extras


def _matches(condition: Condition, patterns: Sequence[str] | None) -> bool:
    return not patterns or any(fnmatch.fnmatchcase(condition.name, p) for p in patterns)


def _try_table(build, folder: Path, name: str) -> None:
    try:
        save_table(build(), folder, name)
    except InputError as exc:
        log.info("table %s not written: %s", name, exc)


def _try_figure(draw) -> None:
    try:
        draw()
    except InputError as exc:
        log.info("figure not drawn: %s", exc)


def write_reports(rows: pd.DataFrame, out: str | os.PathLike, *, iou: dict | None = None) -> Path:
    """Tables 3, 4, 5, 9, 10 and Figures 2, 3 from ``rows``, as far as the evaluated conditions allow.

    Conditions are chosen by their field columns (``conditions.FIELD_COLUMNS``), never by their names.
    """
    out = Path(out)
    files = EvaluationFiles(out)
    tables = files.tables
    perplexity_tasks = [t for t in dict.fromkeys(primary_rows(rows)["task"]) if primary_metric(t) in PERPLEXITY_METRICS]
    for corpus in dict.fromkeys(rows.loc[rows["kind"] == "network", "corpus"]):
        _try_table(lambda: network_table(rows, corpus), tables, files.table_name("networks", corpus))
        columns = {"Normal": pick(rows, kind="normal")}
        for random in pick(rows, kind="random"):
            percent = rows.loc[rows["condition"] == random, "percent"].iloc[0]
            columns[f"Masked {percent:g}%"] = [random]
        columns["Masked all networks"] = pick(rows, kind="network", corpus=corpus, edit="inhibit", template=None)
        if all(len(v) == 1 for v in columns.values()):
            _try_table(lambda: condition_table(rows, {k: v[0] for k, v in columns.items()}), tables,
                       files.table_name("masked", corpus))
        for edit in dict.fromkeys(rows.loc[(rows["kind"] == "network") & (rows["corpus"] == corpus), "edit"]):
            group = list(dict.fromkeys(network_rows(rows, corpus, edit)["condition"]))
            verb = edit_label_of(rows, group[0]) if group else edit
            if group:
                _try_figure(lambda: score_changes(rows, files.figure("changes", verb, corpus), group))
        for task in perplexity_tasks:
            _try_figure(lambda: perplexity_bars(rows, files.figure("perplexity", corpus, task), task=task,
                                                corpus=corpus))
    for corpus in dict.fromkeys(rows.loc[rows["kind"] == "top", "corpus"]):
        amplified = []
        for edit, kind in (("inhibit", "top_inhibit"), ("multiply", "top_amplify")):
            ica = pick(rows, kind="top", corpus=corpus, edit=edit)
            loc = pick(rows, kind="localization", corpus=corpus, edit=edit)
            columns = {"Normal": "normal", "ICA": ica[0] if ica else "top", "LLM Localization": loc[0] if loc else "localization"}
            _try_table(lambda: condition_table(rows, columns), tables, files.table_name(kind, corpus))
            amplified += (ica + loc) if edit == "multiply" else []
        if amplified:
            _try_figure(lambda: score_changes(rows, files.figure("changes", "top_amplified", corpus), amplified))
    if iou:
        _try_table(lambda: iou_table(iou), tables, files.table_name("iou"))
    return out


def edit_label_of(rows: pd.DataFrame, condition: str) -> str:
    """The edit of ``condition``'s rows as a label (``inhibit``, ``multiply1.02``)."""
    row = rows.loc[rows["condition"] == condition].iloc[0]
    return edit_label(Edit(row["edit"], 1.0 if pd.isna(row["factor"]) else float(row["factor"])))


def write_flips(rows: pd.DataFrame, out: str | os.PathLike) -> Path:
    """``out/flips.csv``: every multiple-choice prediction that changes between normal and a condition (Figure 8)."""
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
    path = EvaluationFiles(Path(out)).flips
    table.to_csv(path, index=False)
    return path


def _probing(loaded, chosen: Sequence[Condition], out: Path, section: EvaluateSection, hook_module) -> pd.DataFrame:
    """Tables 12-13: probes under normal, random and all-networks-inhibited conditions."""
    networks = [c for c in chosen if c.kind == "network" and c.edit.kind == "inhibit"]
    unions = [c for c in networks if c.template is None]
    keep = [c for c in chosen if c.kind in ("normal", "random")] + (unions or networks)
    texts, labels = labelled_texts("sentiment_rt", section.probe_texts, seed=section.seed)
    rows = probe_conditions(loaded, keep, texts, labels, seed=section.seed, hook_module=hook_module)
    files = EvaluationFiles(out)
    rows.to_csv(files.probing, index=False)
    table = rows.pivot(index="pooling", columns="condition", values="accuracy")[[c.name for c in keep]]
    table.index = [f"Rotten Tomatoes ({p} token{'s' if p == 'mean' else ''})" for p in table.index]
    save_table(table, files.tables, files.table_name("probing"))
    return rows


def _sweeps(loaded, chosen: Sequence[Condition], out: Path, tasks: Sequence[str], section: EvaluateSection,
            hook_module, options: dict) -> pd.DataFrame:
    """Figures 5-7: the top-percent mask and each union of networks at several factors and values."""

    bases = [c for c in chosen if c.edit is not None and c.edit.kind == "inhibit"
             and ((c.kind == "network" and c.template is None) or c.kind == "top")]
    ppl = [t for t in tasks if primary_metric(t) in PERPLEXITY_METRICS] or ["wiki_ppl"]
    rows = sweep(loaded, bases, EvaluationFiles(out).sweeps, factors=section.sweep_factors, values=section.sweep_values, tasks=ppl,
                 seed=section.seed, hook_module=hook_module, **options)
    for task in ppl:
        sweep_plot(rows, EvaluationFiles(out).figure("sweep", task), task=task)
    return rows


def evaluate_networks(model, networks_urls: Sequence[str], out: str | os.PathLike,
                      evaluate: EvaluateSection = EvaluateSection(), match: MatchSection = MatchSection(), *,
                      hook_module: str | None = None, extra: Sequence[Condition] = (), **options: Any) -> pd.DataFrame:
    """Build the paper's conditions from ``networks_urls``, evaluate them, write tables, figures and masks.

    evaluate : the ``evaluate`` config section (tasks, limit, backend, which conditions, probing, sweeps …).
    match : the ``match`` config section (the networks' threshold).
    extra : conditions of your own evaluated after the paper's (``fnet evaluate --mask``).
    options : go to ``evaluate_conditions`` (``progress`` …).
    """

    options = {"limit": evaluate.limit, "backend": evaluate.backend, "batch_size": evaluate.batch_size,
               "task_options": TaskOptions.of(evaluate), **options}
    get_backend(evaluate.backend).require(evaluate.vllm.python)
    tasks = resolve_tasks(list(evaluate.tasks), options["task_options"].include_path)
    with output_lock(str(out)):  # one writer: a second is refused before the model loads
        prepare_output(out, "evaluation", resume=True)  # a folder of other files: refused before any work
        loaded = model if isinstance(model, LoadedModel) else load_model(model)
        chosen, extras = paper_conditions(loaded, networks_urls, evaluate, match, hook_module)
        chosen = check_conditions([*chosen, *extra])
        out = Path(open_output(out, "evaluation"))
        files = EvaluationFiles(out)
        _save_masks(chosen, out)
        files.experiment.write_text(json.dumps(
            {"settings": evaluate.model_dump(mode="json"), "match": match.model_dump(mode="json"),
             "networks": list(networks_urls), "conditions": [c.fields() for c in chosen],
             "iou": extras["iou"], "localization": extras.get("localization")}, indent=2, default=str))
        rows = evaluate_conditions(loaded, chosen, tasks, out, seed=evaluate.seed, hook_module=hook_module, **options)
        write_reports(rows, out, iou=extras["iou"])
        write_flips(rows, out)
        if evaluate.probing:
            _probing(loaded, chosen, out, evaluate, hook_module)
        if evaluate.sweeps:
            _sweeps(loaded, chosen, out, tasks, evaluate, hook_module, {**options, "backend": "hf"})
    return rows


def _save_masks(conditions: Sequence[Condition], out: Path) -> None:
    """Each masked condition's mask in the evaluation folder ``out`` (``EvaluationFiles.mask``)."""
    files = EvaluationFiles(out)
    files.masks.mkdir(parents=True, exist_ok=True)
    for condition in conditions:
        if condition.mask is not None:
            condition.mask.save(str(files.mask(condition.slug)))


def _plan(chosen: Sequence[Condition], extras: dict) -> dict:
    return {"conditions": [{"name": c.name, "slug": c.slug, **c.fields()} for c in chosen], "iou": extras["iou"],
            "localization": extras.get("localization")}


def evaluate_stage(loaded, config, layout, index: int = 0, count: int = 1) -> list[str]:
    """The ``evaluate`` stage, or its shard ``index`` of ``count``: the paper's conditions from the networks of
    ``config.evaluation_corpora()``, those at positions ``index``, ``index + count`` … evaluated into
    ``layout.evaluate`` (each condition's own folder and mask). Shard 0 also writes the plan (every
    condition, in order) and runs the probes and sweeps. No shard writes another's files: ``merge_evaluation``
    (the report stage) builds ``results.csv``, the tables and figures. Returns the names evaluated here."""
    e, out = config.evaluate, Path(open_output(str(layout.evaluate.folder), "evaluation"))  # refuses a folder of other files
    urls = [layout.networks(corpus) for corpus in config.evaluation_corpora()]
    anatomy = pd.read_csv(layout.match.network_anatomy) if layout.match.network_anatomy.exists() else None
    chosen, extras = paper_conditions(loaded, urls, e, config.match, config.model.hook_module, anatomy)
    mine = list(chosen[index::count])
    _save_masks(mine, out)
    task_options = TaskOptions.of(e)
    tasks = resolve_tasks(list(e.tasks), task_options.include_path)
    options = {"limit": e.limit, "backend": e.backend, "batch_size": e.batch_size, "seed": e.seed,
               "hook_module": config.model.hook_module, "task_options": task_options}
    if mine:
        evaluate_conditions(loaded, mine, tasks, out, table=False, **options, **vllm_options(e, config.model))
    if index == 0:
        layout.evaluate.plan.write_text(json.dumps(_plan(chosen, extras), indent=2, default=str))
        if e.probing:
            _probing(loaded, chosen, out, e, config.model.hook_module)
        if e.sweeps:
            _sweeps(loaded, chosen, out, tasks, e, config.model.hook_module, {**options, "backend": "hf"})
    return [c.name for c in mine]


def merge_evaluation(config, layout) -> pd.DataFrame | None:
    """What the report stage makes of the evaluate shards: ``results.csv`` in plan order, the paper's tables
    and figures, ``flips.csv`` and ``experiment.json``; None when nothing was evaluated."""
    files = layout.evaluate
    out = files.folder
    if not files.plan.is_file():
        return None
    plan = json.loads(files.plan.read_text())
    rows = condition_rows(out, [c["slug"] for c in plan["conditions"]])
    write_rows(rows, out)
    write_reports(rows, out, iou=plan["iou"])
    write_flips(rows, out)
    files.experiment.write_text(json.dumps(
        {"settings": config.evaluate.model_dump(mode="json"), "match": config.match.model_dump(mode="json"),
         "networks": [layout.networks(c) for c in config.evaluation_corpora()], **plan}, indent=2, default=str))
    return rows


def evaluate_pipeline(loaded, config, layout) -> pd.DataFrame:
    """The ``evaluate`` stage and its merge in one process (``fnet run`` without shards)."""
    evaluate_stage(loaded, config, layout)
    return merge_evaluation(config, layout)
