"""A synthetic run folder for the report tests: every table and figure the report shows, from made-up numbers
shaped like a default run's (no model, no stores), built in a second.

``synthetic_run(root) -> (config, layout)``: two corpora of ten templates; match tables and figures, with
issue 13's nulls (``counterparts_null.csv``, ``recurrence.csv``, ``massive_mask.npy``); the anatomy tables
(templates numbered from 1); a one-sample activations store header (so the report knows the neuron count);
evaluation rows whose perplexities span 73 to 2.1e8 (the case of issue 18), the paper's tables and figures
written by ``write_reports``; lm-eval-shaped per-example samples and masks behind every condition and control
draw (19 draws of each kind for three networks, chosen in ``selection.json``), so that every finding of
``report/findings.py`` has an effect, a p-value and its draws or examples; controls tables of three networks
on three tasks (36 rows); flips with long texts.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from fnet_dist.core.config import CorpusEntry, PipelineConfig
from fnet_dist.model.edit import Edit
from fnet_dist.core.conditions import NORMAL, Condition, slug_of
from fnet_dist.evaluate.draws import CONTROL_KINDS
from fnet_dist.evaluate.experiment import write_reports
from fnet_dist.evaluate.figures import control_plot
from fnet_dist.evaluate.tables import save_table
from fnet_dist.match.figures import match_figures
from fnet_dist.model.masks import NeuronMask
from fnet_dist.match.halves import SplitTemplates, halves_tables
from fnet_dist.match.nulls import (
    CHANCE_LEVEL,
    NULL_KINDS,
    CounterpartNull,
    counterpart_table,
    recurrence_summary,
    recurrence_table,
)
from fnet_dist.core.layout import RunLayout

CORPORA, TEMPLATES, LAYERS, WIDTH = ("news", "wiki"), 10, 12, 768
TASKS = {"sentiment_rt": "acc", "polarity_pl": "acc", "wiki_ppl": "word_perplexity"}
CONTROLLED, DRAWS, DOCS, WORDS = (1, 4, 10), 19, 60, 100
MASSIVE = [(2, 138), (2, 447), (5, 138)]


def _match(folder: Path, rng) -> dict:
    """Match and anatomy outputs; returns the templates ``{corpus: bool (templates, layers, width)}``."""
    folder.mkdir(parents=True, exist_ok=True)
    templates = {c: rng.random((TEMPLATES, LAYERS, WIDTH)) < np.geomspace(0.001, 0.05, TEMPLATES)[:, None, None]
                 for c in CORPORA}
    consistency = pd.concat([pd.DataFrame({
        "corpus": c, "template": np.arange(1, TEMPLATES + 1), "size": t.sum(axis=(1, 2)),
        "share": t.sum(axis=(1, 2)) / (LAYERS * WIDTH), "counterparts": rng.integers(0, 30, TEMPLATES),
        "samples_with_counterpart": rng.integers(0, 10, TEMPLATES), "individual_maps": 200, "samples": 10,
        "best_iou": rng.random(TEMPLATES)}) for c, t in templates.items()], ignore_index=True)
    t1, t2 = np.meshgrid(np.arange(1, TEMPLATES + 1), np.arange(1, TEMPLATES + 1), indexing="ij")
    iou = rng.random(TEMPLATES * TEMPLATES) ** 4
    cross = pd.DataFrame({"corpus_1": "news", "template_1": t1.ravel(), "corpus_2": "wiki",
                          "template_2": t2.ravel(), "iou": iou, "similar": iou > 0.2})
    sizes = pd.concat([pd.DataFrame(t.sum(axis=2), columns=[f"layer_{i}" for i in range(LAYERS)]).assign(corpus=c)
                       for c, t in templates.items()], ignore_index=True)
    consistency.to_csv(folder / "consistency.csv", index=False)
    cross.to_csv(folder / "cross_corpus.csv", index=False)
    for name, png in match_figures(consistency, sizes, cross, templates).items():
        (folder / name).write_bytes(png)
    pd.DataFrame({"layer": [2, 2, 5], "neuron": [138, 447, 138], "peak": [2900.0, 610.0, 1800.0],
                  "layer_median": [0.6, 0.6, 0.7], "ratio": [4800.0, 1000.0, 2600.0],
                  "first_token_share": [0.99, 0.97, 1.0], "carrier_tokens": ["0:812", "0:812", "0:600"]}
                 ).to_csv(folder / "massive_channels.csv", index=False)
    null = {c: {kind: CounterpartNull(rng.poisson(1, (1, TEMPLATES, 999)), rng.poisson(1, (1, TEMPLATES, 999)))
                for kind in NULL_KINDS} for c in CORPORA}
    counterpart_table(consistency, null, seed=0).to_csv(folder / "counterparts_null.csv", index=False)
    pd.DataFrame([{"corpus": r.corpus, "template": r.template, "sample": i, "counterparts": int(i < r.samples_with_counterpart)}
                  for r in consistency.itertuples() for i in range(10)]).to_csv(folder / "counterpart_samples.csv", index=False)
    massive = np.zeros((LAYERS, WIDTH), dtype=bool)
    massive[tuple(np.array(MASSIVE).T)] = True
    for k in CONTROLLED[:2]:  # two controlled networks have a neuron on a massive channel
        layer, neuron = np.argwhere(templates["news"][k - 1])[0]
        massive[layer, neuron] = True
    np.save(folder / "massive_mask.npy", massive)
    first_token = {c: np.arange(TEMPLATES) == 0 for c in CORPORA}  # template 1 of each corpus peaks at token 0
    recurrence_table(list(CORPORA), templates, massive, first_token, level=CHANCE_LEVEL).to_csv(folder / "recurrence.csv", index=False)
    frequency = {c: rng.poisson(3, (LAYERS, WIDTH)) for c in CORPORA}
    summary, summary_null = recurrence_summary(templates, massive, first_token, frequency, 99, 0, CHANCE_LEVEL)
    summary.to_csv(folder / "recurrence_summary.csv", index=False)
    summary_null.to_csv(folder / "recurrence_null.csv", index=False)
    splits = [SplitTemplates(c, np.stack([np.stack([t, t]) for _ in range(3)]) & ~massive, np.ones((3, 2, TEMPLATES), bool))
              for c, t in templates.items()]
    halves, halves_null = halves_tables(splits, frequency, massive, 99, 0, CHANCE_LEVEL)
    halves.to_csv(folder / "split_halves.csv", index=False)
    halves_null.to_csv(folder / "split_null.csv", index=False)
    pd.concat([pd.DataFrame({"template": np.arange(1, TEMPLATES + 1), "size": t.sum(axis=(1, 2)),
                             "share": t.sum(axis=(1, 2)) / (LAYERS * WIDTH), "on_massive": rng.integers(0, 3, TEMPLATES),
                             "massive_share": rng.random(TEMPLATES) / 10, "layers_spanned": LAYERS,
                             "top_layer": rng.integers(0, LAYERS, TEMPLATES), "top_layer_share": rng.random(TEMPLATES),
                             "peak_token_share": rng.random(TEMPLATES),
                             "first_token_peak_share": np.where(first_token[c], 0.95, rng.random(TEMPLATES) / 2), "corpus": c})
               for c, t in templates.items()], ignore_index=True).to_csv(folder / "network_anatomy.csv", index=False)
    return templates


INHIBIT, AMPLIFY = Edit("inhibit"), Edit("multiply", 1.02)
_PLACEHOLDER = NeuronMask(np.ones((1, 1), dtype=bool), name="placeholder")  # rows are chosen by fields, not masks


def condition(kind: str, edit: Edit = INHIBIT, **fields) -> Condition:
    """A condition of ``kind`` with ``fields`` (its mask a placeholder)."""
    return NORMAL if kind == "normal" else Condition(kind, _PLACEHOLDER, edit, **fields)


TOP = condition("top", percent=5.0, corpus="news")
LOCALIZATION = condition("localization", corpus="news")


def _rows(rng) -> pd.DataFrame:
    values = [(NORMAL, (0, 0.78, 0.74, 41.0)), (condition("random", percent=15.0, seed=0), (1382, 0.62, 0.6, 5.2e3)),
              (TOP, (461, 0.5, 0.52, 900.0)), (condition("top", AMPLIFY, percent=5.0, corpus="news"), (461, 0.8, 0.74, 41.5)),
              (LOCALIZATION, (461, 0.6, 0.66, 300.0)),
              (condition("localization", AMPLIFY, corpus="news"), (461, 0.77, 0.75, 41.2)),
              (condition("network", corpus="news"), (1800, 0.5, 0.5, 2.1e8))]
    for k, ppl in enumerate(np.geomspace(73, 61_700, TEMPLATES), 1):
        values.append((condition("network", corpus="news", template=k),
                       (int(10 * k ** 1.5), 0.78 - 0.02 * k, 0.74 - 0.01 * k, float(ppl))))
        values.append((condition("network", AMPLIFY, corpus="news", template=k),
                       (int(10 * k ** 1.5), 0.78 + 0.001 * k, 0.74, 41.0 + k / 10)))
    rows = [{"condition": c.name, "task": task, "metric": metric, "value": value, "stderr": 0.01, "filter": "none",
             "n_samples": 60, "neurons": neurons, **c.fields()}
            for c, (neurons, *scores) in values for (task, metric), value in zip(TASKS.items(), scores)]
    return pd.DataFrame(rows)


def _samples(folder: Path, condition: str, value: float, task: str, metric: str, u: np.ndarray) -> None:
    """lm-eval's samples file of ``condition`` on ``task`` whose mean is about ``value``: per document, 0/1
    accuracy ``u < value`` (one ``u`` per task, so conditions are paired as real ones are), or word perplexity
    as [log-likelihood, words]."""
    path = folder / "conditions" / slug_of(condition) / f"samples_{task}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    if metric == "acc":
        items = [{"doc_id": i, "acc": float(x < value)} for i, x in enumerate(u)]
    else:
        items = [{"doc_id": i, "word_perplexity": [-WORDS * np.log(value) * (0.8 + 0.4 * x), WORDS]} for i, x in enumerate(u)]
    path.write_text("".join(json.dumps(item) + "\n" for item in items))


def _evidence(folder: Path, rows: pd.DataFrame, templates: dict, rng) -> dict:
    """Per-example samples of every evaluated condition, the masks of the networks and top neurons, and 19
    draws of each control kind per controlled network (with ``controls/results.csv`` and ``selection.json``);
    returns Table 5's IoU of the top neurons' masks."""
    u = {task: rng.uniform(size=DOCS) for task in TASKS}
    for row in rows.itertuples():
        _samples(folder, row.condition, row.value, row.task, row.metric, u[row.task])
    masks = {f"inhibit:news/{k}": templates["news"][k - 1] for k in range(1, TEMPLATES + 1)}
    top = rng.random((LAYERS, WIDTH)) < 0.05
    masks |= {TOP.name: top, LOCALIZATION.name: top & (rng.random((LAYERS, WIDTH)) < 0.2)}
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    for name, values in masks.items():
        NeuronMask(values, name=name).save(str(folder / "masks" / f"{slug_of(name)}.npz"))
    normal = rows[rows.condition == "normal"].set_index("task")["value"]
    controls = folder / "controls"
    draws = []
    for task, metric in TASKS.items():
        worse = 0.98 if metric == "acc" else 1.02  # a network without its massive neurons: a little worse than normal
        conditions = [condition("control", control="fraction", percent=15.0, draw=i) for i in range(DRAWS)]
        conditions += [condition("control", control=kind, corpus="news", template=k, draw=i)
                       for k in CONTROLLED for kind in CONTROL_KINDS[1:] for i in range(DRAWS)]
        conditions += [condition("minus_massive", corpus="news", template=k) for k in CONTROLLED]
        for c in conditions:
            value = normal[task] * (rng.uniform(0.98, 1.02) if c.kind == "control" else worse)  # draws: either side
            _samples(controls, c.name, value, task, metric, u[task])
            draws.append({"condition": c.name, "task": task, "metric": metric, "value": value, "stderr": 0.01,
                          "filter": "none", "n_samples": DOCS, "neurons": 0, **c.fields()})
    pd.DataFrame(draws).to_csv(controls / "results.csv", index=False)
    (controls / "selection.json").write_text(json.dumps({"rule": "the templates with the most counterparts",
                                                         "networks": [f"inhibit:news/{k}" for k in CONTROLLED]}))
    ica, loc = masks[TOP.name], masks[LOCALIZATION.name]
    return {"ICA vs LLM Localization": float((ica & loc).sum() / (ica | loc).sum())}


def _store(path: Path) -> None:
    """An activations store of one sample: enough for the report's store summary and neuron count."""
    with warnings.catch_warnings():  # zarr: fixed-length strings have no Zarr v3 specification yet
        warnings.simplefilter("ignore")
        _header_only(path)


def _header_only(path: Path) -> None:
    xr.Dataset({"split": ("sample", np.array(["group"])), "n_tokens": ("sample", np.array([8])),
                "peak": ("sample", np.array([2900.0]))},
               coords={"layer": np.arange(LAYERS), "neuron": np.arange(WIDTH)}).to_zarr(path, consolidated=False)


def _controls(folder: Path, rows: pd.DataFrame, rng) -> None:
    normal = rows[rows.condition == "normal"].set_index("task")["value"]
    controls, separated = [], []
    for k in CONTROLLED:
        network = f"inhibit:news/{k}"
        observed = rows[rows.condition == network].set_index("task")
        for task, metric in TASKS.items():
            value = float(observed.loc[task, "value"])
            for kind in CONTROL_KINDS:
                draws = normal[task] * (1 + rng.normal(0, 0.05, 19)) * (50 if metric != "acc" and kind == "fraction" else 1)
                controls.append({"network": network, "neurons": int(observed.loc[task, "neurons"]), "task": task,
                                 "metric": metric, "normal": normal[task], "network_value": value, "control": kind,
                                 "draws": 19, "mean": draws.mean(), "low": np.percentile(draws, 2.5),
                                 "high": np.percentile(draws, 97.5), "p_value": 0.05})
            sign = 1 if metric == "acc" else -1
            damage = sign * (normal[task] - value)
            separated.append({"network": network, "task": task, "metric": metric, "normal": normal[task], "whole": value,
                              "minus_massive": value, "massive_only": normal[task], "damage_whole": damage,
                              "damage_minus_massive": damage * 0.9, "damage_massive_only": damage * 0.05})
    controls, separated = pd.DataFrame(controls), pd.DataFrame(separated)
    save_table(controls, folder / "tables", "controls")
    save_table(separated, folder / "tables", "separated")
    for task in TASKS:
        control_plot(controls, separated, folder / "figures" / f"controls_{task}.png", task)


def synthetic_run(root: str | Path):
    """Write a run folder under ``root`` with everything the report reads; returns ``(config, layout)``."""
    rng = np.random.default_rng(0)
    layout = RunLayout(Path(root))
    templates = _match(layout.match.folder, rng)
    rows = _rows(rng)
    layout.evaluate.folder.mkdir(parents=True, exist_ok=True)
    rows.to_csv(layout.evaluate.folder / "results.csv", index=False)
    _controls(layout.evaluate.folder / "controls", rows, rng)
    write_reports(rows, layout.evaluate.folder, iou=_evidence(layout.evaluate.folder, rows, templates, rng))
    text = "an unexpectedly moving portrait of a family that refuses to fall apart, " * 3
    pd.DataFrame({"condition": ["inhibit:news/3"] * 3 + ["multiply1.02:news/2"] * 2, "task": "sentiment_rt",
                  "doc_id": range(5), "effect": ["fixed", "broken", "broken", "fixed", "changed"], "target": 1,
                  "before": 0, "after": 1, "text": [text] * 5}).to_csv(layout.evaluate.folder / "flips.csv", index=False)
    config = PipelineConfig(name="synthetic", out=str(root),
                            corpora={c: CorpusEntry(spec=f"offline:{c}") for c in CORPORA})
    _store(Path(layout.activations(CORPORA[0])))
    return config, layout
