"""A synthetic run folder for the report tests: every table and figure the report shows, from made-up numbers
shaped like a default run's (no model, no stores), built in a second.

``synthetic_run(root) -> (config, layout)``: two corpora of ten templates; match tables and figures; the
anatomy tables; evaluation rows whose perplexities span 73 to 2.1e8 (the case of issue 18), the paper's
tables and figures written by ``write_reports``; controls of three networks on three tasks (36 rows);
flips with long texts.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from fnet_dist.config import CorpusEntry, PipelineConfig
from fnet_dist.evaluate.controls import CONTROL_KINDS
from fnet_dist.evaluate.experiment import write_reports
from fnet_dist.evaluate.figures import control_plot
from fnet_dist.evaluate.tables import save_table
from fnet_dist.figures import match_figures
from fnet_dist.pipeline import RunLayout

CORPORA, TEMPLATES, LAYERS, WIDTH = ("news", "wiki"), 10, 12, 768
TASKS = {"sentiment_rt": "acc", "polarity_pl": "acc", "wiki_ppl": "word_perplexity"}


def _match(folder: Path, rng) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    templates = {c: rng.random((TEMPLATES, LAYERS, WIDTH)) < np.geomspace(0.001, 0.05, TEMPLATES)[:, None, None]
                 for c in CORPORA}
    consistency = pd.concat([pd.DataFrame({
        "dataset": c, "template": np.arange(1, TEMPLATES + 1), "size": t.sum(axis=(1, 2)),
        "share": t.sum(axis=(1, 2)) / (LAYERS * WIDTH), "counterparts": rng.integers(0, 30, TEMPLATES),
        "samples_with_counterpart": rng.integers(0, 10, TEMPLATES), "individual_maps": 200, "samples": 10,
        "best_iou": rng.random(TEMPLATES)}) for c, t in templates.items()], ignore_index=True)
    t1, t2 = np.meshgrid(np.arange(1, TEMPLATES + 1), np.arange(1, TEMPLATES + 1), indexing="ij")
    iou = rng.random(TEMPLATES * TEMPLATES) ** 4
    cross = pd.DataFrame({"dataset_1": "news", "template_1": t1.ravel(), "dataset_2": "wiki",
                          "template_2": t2.ravel(), "iou": iou, "similar": iou > 0.2})
    sizes = pd.concat([pd.DataFrame(t.sum(axis=2), columns=[f"layer_{i}" for i in range(LAYERS)]).assign(dataset=c)
                       for c, t in templates.items()], ignore_index=True)
    consistency.to_csv(folder / "consistency.csv", index=False)
    cross.to_csv(folder / "cross_corpus.csv", index=False)
    for name, png in match_figures(consistency, sizes, cross, templates).items():
        (folder / name).write_bytes(png)
    pd.DataFrame({"layer": [2, 2, 5], "neuron": [138, 447, 138], "peak": [2900.0, 610.0, 1800.0],
                  "layer_median": [0.6, 0.6, 0.7], "ratio": [4800.0, 1000.0, 2600.0],
                  "first_token_share": [0.99, 0.97, 1.0], "carrier_tokens": ["0:812", "0:812", "0:600"]}
                 ).to_csv(folder / "massive_channels.csv", index=False)
    pd.concat([pd.DataFrame({"component": np.arange(TEMPLATES), "size": t.sum(axis=(1, 2)),
                             "share": t.sum(axis=(1, 2)) / (LAYERS * WIDTH), "on_massive": rng.integers(0, 3, TEMPLATES),
                             "massive_share": rng.random(TEMPLATES) / 10, "layers_spanned": LAYERS,
                             "top_layer": rng.integers(0, LAYERS, TEMPLATES), "top_layer_share": rng.random(TEMPLATES),
                             "first_token_share": rng.random(TEMPLATES), "corpus": c})
               for c, t in templates.items()], ignore_index=True).to_csv(folder / "network_anatomy.csv", index=False)


def _rows(rng) -> pd.DataFrame:
    values = {"normal": (0, 0.78, 0.74, 41.0), "random15:seed0": (1382, 0.62, 0.6, 5.2e3),
              "top5:inhibit": (461, 0.5, 0.52, 900.0), "top5:multiply1.02": (461, 0.8, 0.74, 41.5),
              "localization:inhibit": (461, 0.6, 0.66, 300.0), "localization:multiply1.02": (461, 0.77, 0.75, 41.2),
              "inhibit:news/all": (1800, 0.5, 0.5, 2.1e8)}
    for k, ppl in enumerate(np.geomspace(73, 61_700, TEMPLATES), 1):
        values[f"inhibit:news/{k}"] = (int(10 * k ** 1.5), 0.78 - 0.02 * k, 0.74 - 0.01 * k, float(ppl))
        values[f"multiply1.02:news/{k}"] = (int(10 * k ** 1.5), 0.78 + 0.001 * k, 0.74, 41.0 + k / 10)
    rows = [{"condition": c, "task": task, "metric": metric, "value": value, "stderr": 0.01, "filter": "none",
             "n_samples": 60, "neurons": neurons}
            for c, (neurons, *scores) in values.items() for (task, metric), value in zip(TASKS.items(), scores)]
    return pd.DataFrame(rows)


def _controls(folder: Path, rows: pd.DataFrame, rng) -> None:
    normal = rows[rows.condition == "normal"].set_index("task")["value"]
    controls, separated = [], []
    for k in (1, 4, 10):
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
    _match(layout.match, rng)
    rows = _rows(rng)
    layout.evaluate.mkdir(parents=True, exist_ok=True)
    rows.to_csv(layout.evaluate / "results.csv", index=False)
    write_reports(rows, layout.evaluate)
    _controls(layout.evaluate / "controls", rows, rng)
    text = "an unexpectedly moving portrait of a family that refuses to fall apart, " * 3
    pd.DataFrame({"condition": ["inhibit:news/3"] * 3 + ["multiply1.02:news/2"] * 2, "task": "sentiment_rt",
                  "doc_id": range(5), "effect": ["fixed", "broken", "broken", "fixed", "changed"], "target": 1,
                  "before": 0, "after": 1, "text": [text] * 5}).to_csv(layout.evaluate / "flips.csv", index=False)
    config = PipelineConfig(name="synthetic", out=str(root),
                            corpora={c: CorpusEntry(spec=f"offline:{c}") for c in CORPORA})
    return config, layout
