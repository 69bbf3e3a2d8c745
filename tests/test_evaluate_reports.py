"""Task files, paper-shaped tables, figures and sweeps (tables and figures from known rows; one tiny sweep)."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import yaml

from fnet_dist.core.offline import rotten_tomatoes

from fnet_dist.model.edit import Edit
from fnet_dist.core.errors import InputError
from fnet_dist.core.conditions import NORMAL, Condition, custom
from fnet_dist.evaluate.experiment import write_reports
from fnet_dist.evaluate.figures import format_flip, perplexity_bars, score_changes, sweep_plot
from fnet_dist.evaluate.sweeps import sweep, sweep_conditions
from fnet_dist.evaluate.tables import condition_table, iou_table, network_table, save_table, to_markdown
from fnet_dist.evaluate.tasks import OFFLINE_DIR, OUR_HUB_TASKS, prepare_tasks, resolve_tasks, validate_hub_yamls
from fnet_dist.core.metrics import primary_metric
from fnet_dist.model.masks import NeuronMask
from fnet_dist.model.loading import load_model


def _rows() -> pd.DataFrame:
    """Rows as evaluate_conditions writes them, with known values."""
    values = {  # condition fields: (neurons, cola mcc, sst2 acc, mrpc f1, wikitext word_perplexity)
        ("normal", None, None): (0, 0.15, 0.95, 0.84, 10.0),
        ("network", "sst2", 1): (41, 0.10, 0.09, 0.02, 40.0),
        ("network", "sst2", 2): (336, 0.69, 0.80, 0.38, 12.0),
        ("network", "sst2", None): (400, 0.0, 0.0, 0.0, 900.0),
        ("random", None, None): (15053, 0.71, 0.91, 0.39, 11.0),
        ("top", "sst2", None): (5000, -0.02, 0.60, 0.07, 40.4),
        ("localization", "sst2", None): (5000, 0.07, 0.78, 0.75, 14.6),
    }
    mask, inhibit = NeuronMask.random((2, 8), count=1, seed=0), Edit("inhibit")
    rows = []
    for (kind, corpus, template), (neurons, mcc, acc, f1, ppl) in values.items():
        extra = {"percent": 15.0, "seed": 0} if kind == "random" else {"percent": 5.0} if kind == "top" else {}
        condition = NORMAL if kind == "normal" else Condition(kind, mask, inhibit, corpus=corpus, template=template, **extra)
        for task, metric, value in (("cola", "mcc", mcc), ("cola", "acc", 0.5), ("sst2", "acc", acc),
                                    ("mrpc", "f1", f1), ("mrpc", "acc", 0.6), ("wikitext", "word_perplexity", ppl),
                                    ("wikitext", "bits_per_byte", 1.0)):
            rows.append({"condition": condition.name, "task": task, "metric": metric, "value": value, "stderr": 0.01,
                         "filter": "none", "n_samples": 10, "neurons": neurons, **condition.fields()})
    return pd.DataFrame(rows)


def test_network_table_is_table_3():
    table = network_table(_rows(), "sst2")
    assert list(table.index) == ["sst2/1", "sst2/2"]
    assert list(table.columns) == ["neurons", "CoLA (MCC)", "SST-2", "MRPC (F1)", "WikiText (PPL)"]
    assert table.loc["sst2/1", "SST-2"] == 0.09 and table.loc["sst2/2", "WikiText (PPL)"] == 12.0
    assert list(table["neurons"]) == [41, 336]
    with pytest.raises(InputError, match="no network of corpus 'news' inhibited"):
        network_table(_rows(), "news")


def test_condition_names_derive_from_fields_and_reports_group_by_them(tmp_path):
    rows = _rows()
    assert list(dict.fromkeys(rows.condition)) == ["normal", "inhibit:sst2/1", "inhibit:sst2/2", "inhibit:sst2/all",
                                                   "random15:seed0", "top5:inhibit@sst2", "localization:inhibit@sst2"]
    write_reports(rows, tmp_path)
    masked = pd.read_csv(tmp_path / "tables" / "table10_masked_sst2.csv", index_col=0)
    assert list(masked.columns) == ["Normal", "Masked 15%", "Masked all networks"]
    assert masked.loc["SST-2", "Masked all networks"] == 0.0
    top = pd.read_csv(tmp_path / "tables" / "table9_top_inhibit_sst2.csv", index_col=0)
    assert top.loc["SST-2", "ICA"] == 0.60 and top.loc["SST-2", "LLM Localization"] == 0.78
    assert (tmp_path / "figures" / "figure2_perplexity_sst2_wikitext.png").is_file()


def test_condition_table_is_tables_9_and_10_with_an_average():
    table = condition_table(_rows(), {"Normal": "normal", "ICA": "top5:inhibit@sst2",
                                      "LLM Localization": "localization:inhibit@sst2"})
    assert list(table.index) == ["CoLA (MCC)", "SST-2", "MRPC (F1)", "Average", "WikiText (PPL)"]
    assert table.loc["Average", "ICA"] == pytest.approx((-0.02 + 0.60 + 0.07) / 3)
    assert table.loc["WikiText (PPL)", "LLM Localization"] == 14.6
    with pytest.raises(InputError, match=r"conditions \['top9:inhibit'\] are not in the results"):
        condition_table(_rows(), ["normal", "top9:inhibit"])


def test_markdown_and_csv(tmp_path):
    table = iou_table({"ICA vs LLM Localization": 0.022})
    assert to_markdown(table).splitlines() == ["|  | ICA vs LLM Localization |", "|---|---|",
                                               "| Spatial Similarity (IoU) | 0.0220 |"]
    csv_path, md_path = save_table(table, tmp_path, "table5")
    assert pd.read_csv(csv_path, index_col=0).iloc[0, 0] == 0.022 and md_path.read_text().startswith("|")


def test_figures_are_drawn(tmp_path):
    rows = _rows()
    assert perplexity_bars(rows, tmp_path / "f2.png", task="wikitext", corpus="sst2").stat().st_size > 1000
    assert score_changes(rows, tmp_path / "f3.png", "top5:inhibit@sst2").stat().st_size > 1000
    assert score_changes(rows, tmp_path / "f3b.png", ["inhibit:sst2/1", "inhibit:sst2/2"]).stat().st_size > 1000
    with pytest.raises(InputError, match="no network of 'news' inhibited and evaluated on 'wikitext'"):
        perplexity_bars(rows, tmp_path / "x.png", task="wikitext", corpus="news")
    with pytest.raises(InputError, match="no result for condition 'top1:inhibit'"):
        score_changes(rows, tmp_path / "x.png", "top1:inhibit")
    flip = pd.Series({"text": "but it still jingles in the pocket", "target": 1, "before": 0, "after": 1})
    assert format_flip(flip, condition="net:multiply1.02").splitlines() == [
        "Sample: but it still jingles in the pocket", "Label: positive", "Before (normal): negative",
        "After (net:multiply1.02): positive"]


def test_sweep_conditions_and_a_tiny_sweep(tiny_llama, tmp_path):
    net = custom("net", NeuronMask.random((2, 32), count=8, seed=0), Edit("inhibit"))
    names = [c.name for c in sweep_conditions([net], factors=[1.5, 3], values=[0.5])]
    assert names == ["multiply1.5:net", "multiply3:net", "add0.5:net"]
    rows = sweep(load_model(tiny_llama), [net], tmp_path, factors=[3.0], values=[2.0], tasks=["wiki_ppl"],
                 limit=1, progress=False)
    ppl = rows[rows.metric == "word_perplexity"].set_index("condition")
    assert list(ppl.index) == ["normal", "multiply3:net", "add2:net"]
    assert list(ppl.edit.fillna("")) == ["", "multiply", "add"] and ppl.loc["add2:net", "amount"] == 2.0
    assert list(ppl["mask"]) == ["", "net", "net"]
    assert ppl.loc["multiply3:net", "value"] != pytest.approx(ppl.loc["normal", "value"], rel=1e-6)
    assert sweep_plot(rows, tmp_path / "f5.png", task="wiki_ppl").stat().st_size > 1000
    with pytest.raises(InputError, match="sweep factor inf is not a finite number"):
        sweep_conditions([net], factors=[math.inf])
    with pytest.raises(InputError, match="at least one masked condition"):
        sweep_conditions([])


def test_offline_tasks_are_materialised(tmp_path):
    prepare_tasks(["sentiment_rt", "polarity_pl"], tmp_path / "yaml", cache=tmp_path / "cache")
    config = yaml.safe_load((tmp_path / "yaml" / "sentiment_rt.yaml").read_text())
    data = config["dataset_kwargs"]["data_files"]["test"]
    assert data.startswith(str(tmp_path / "cache"))
    rows = [json.loads(line) for line in open(data)]
    assert len(rows) == len(rotten_tomatoes("evaluated")) > 9000 and set(rows[0]) == {"text", "label"}  # recorded ones out
    first = [r["label"] for r in rows[:200]]
    assert 0.4 < np.mean(first) < 0.75  # shuffled: --limit takes both labels
    original = yaml.safe_load((OFFLINE_DIR / "sentiment_rt.yaml").read_text())
    assert {k: v for k, v in config.items() if k != "dataset_kwargs"} == {k: v for k, v in original.items()
                                                                          if k != "dataset_kwargs"}


def test_hub_yamls_load_in_lm_eval_and_squad_scoring():
    configs = validate_hub_yamls()
    assert set(configs) == set(OUR_HUB_TASKS)
    assert configs["ag_news_fnet"]["doc_to_choice"] == ["World", "Sports", "Business", "Science/Technology"]
    process = configs["squad_fnet"]["process_results"]
    doc = {"answers": {"text": ["Denver Broncos", "The Denver Broncos"]}}
    assert process(doc, ["the Denver Broncos."]) == {"exact_match": 1.0, "f1": 1.0}
    assert process(doc, ["Broncos won"])["f1"] == pytest.approx(2 * 0.5 * 0.5 / 1.0)
    assert process(doc, ["Carolina"]) == {"exact_match": 0.0, "f1": 0.0}
    assert primary_metric("cola") == "mcc" and primary_metric("sst2") == "acc"
    assert resolve_tasks(["wiki_ppl", "ag_news_fnet", "wiki_ppl"]) == ["wiki_ppl", "ag_news_fnet"]
