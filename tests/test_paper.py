"""The paper's numbers as data (fnet_dist/paper/tables.csv) and ``fnet compare-paper`` on synthetic runs."""
from __future__ import annotations

import pytest

from fnet_dist.core.conditions import FIELD_COLUMNS
from fnet_dist.paper import TABLE_ROWS, paper_tables


def _value(table: int, dataset: str, item: str, condition: str) -> float:
    rows = paper_tables()
    hit = rows[(rows["table"] == table) & (rows["dataset"] == dataset) & (rows["item"] == item)
               & (rows["condition"] == condition)]
    assert len(hit) == 1, (table, dataset, item, condition)
    return float(hit["value"].iloc[0])


def test_tables_have_every_published_number_once():
    rows = paper_tables()
    assert rows.groupby("table").size().to_dict() == TABLE_ROWS
    assert (rows["source"] == "Table " + rows["table"].astype(str)).all()
    assert rows["value"].notna().all()
    assert not rows.duplicated(["table", "model", "dataset", "item", "condition", "metric"]).any()
    counts = rows[rows["table"].isin([1, 6, 7, 8])]
    assert set(counts["dataset"]) == {"news", "wiki", "math", "code"}
    assert counts.groupby(["table", "dataset"]).size().eq(10).all()
    assert counts["value"].between(0, 6400).all() and (counts["value"] % 1 == 0).all()


def test_known_values():
    assert _value(1, "code", "template 7", "match") == 1473
    assert _value(6, "wiki", "template 7", "match") == 89 and _value(7, "math", "template 10", "match") == 191
    assert _value(8, "code", "template 6", "match") == 202
    assert _value(3, "sst2", "normal", "normal") == 0.9358
    assert _value(3, "sst2", "network 6", "inhibit network 6") == 0.0401
    assert _value(2, "wiki/math", "wiki template 7 / math template 10", "group templates") == 0.9302
    assert _value(5, "", "ICA top 5% vs LLM Localization", "top 5% neurons") == 0.022
    assert _value(9, "wikitext", "WIKITEXT (PPL)", "ICA inhibit top 5%") == 40.4245
    assert _value(13, "mnli", "MNLI", "inhibit 10 networks") == 0.4425
    rows = paper_tables()
    assert rows.loc[(rows["table"] == 3) & (rows["item"] == "network 2"), "neurons"].unique().tolist() == ["336"]


def test_tables_agree_with_each_other():
    """Numbers the paper prints twice agree, and the printed averages are the means of their columns."""
    rows = paper_tables()
    for task in ("sst2", "mrpc", "rte"):
        assert _value(3, task, "normal", "normal") == float(rows[(rows["table"] == 10) & (rows["dataset"] == task)
                                                               & (rows["condition"] == "normal")]["value"].iloc[0])
    for table in (4, 9):
        part = rows[(rows["table"] == table)]
        normal = part[part["condition"] == "normal"].set_index("dataset")["value"]
        assert normal.equals(rows[(rows["table"] == 9) & (rows["condition"] == "normal")].set_index("dataset")["value"])
        for condition, group in part.groupby("condition"):
            tasks = group[~group["dataset"].isin(["average", "wikitext"])]
            assert len(tasks) == 8
            assert tasks["value"].mean() == pytest.approx(group[group["dataset"] == "average"]["value"].iloc[0], abs=6e-4)


def _run_folder(root, *, name="run", exclude_first=0, findings=True):
    """A synthetic run folder as the stages leave it, with known figures."""
    import json

    import pandas as pd
    import yaml

    from fnet_dist.core.config import PipelineConfig

    (root / "match").mkdir(parents=True)
    (root / "evaluate" / "tables").mkdir(parents=True)
    config = PipelineConfig(name=name, out=str(root), decompose={"exclude_first_tokens": exclude_first})
    (root / "config.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json")))
    (root / "run.json").write_text(json.dumps({"stages": {"match": {"finished": "2026-12-02T10:00:00"}}}))
    counts = {"news": [0, 3, 8, 0], "wiki": [1, 0, 0, 0]}  # 3 of 8 templates with counterparts; largest 8
    samples = {"news": 4, "wiki": 2}
    pd.DataFrame([{"corpus": d, "template": t + 1, "counterparts": c, "samples": samples[d],
                   "individual_maps": samples[d] * 5, "samples_with_counterpart": min(c, samples[d])}
                  for d, cs in counts.items() for t, c in enumerate(cs)]).to_csv(root / "match" / "consistency.csv", index=False)
    (root / "match" / "results.json").write_text(json.dumps({"corpora": [
        {"corpus": "news", "samples": 4, "skipped_samples": {"7": "reduced"}},
        {"corpus": "wiki", "samples": 2, "skipped_samples": {}}]}))
    # news's networks store: 4 usable samples of 5, 3 of them converged, sample 0's 2 maps of 8 on one token
    import numpy as np

    from fnet_dist.model.testing import networks_dataset
    from fnet_dist.store.storage import write_store
    from storage_schemas import NETWORKS

    ds = networks_dataset(np.zeros((4, 2, 3)), np.zeros((5, 2, 2, 3)), status=["ok"] * 4 + ["reduced: 1 token"],
                          corpus="news")
    ds["individual_converged"][:] = [True, False, True, True, False]
    ds["individual_single_token"][0] = True
    write_store(ds, str(root / "networks" / "news.zarr"), NETWORKS)
    pd.DataFrame({"corpus_1": ["news", "news"], "template_1": [1, 2], "corpus_2": ["wiki", "wiki"],
                  "template_2": [1, 1], "iou": [0.05, 0.31], "similar": [False, True]}).to_csv(
        root / "match" / "cross_corpus.csv", index=False)
    values = {"normal": (0.8, 0.6), "inhibit:news/1": (0.4, 0.6), "inhibit:news/2": (0.8, 0.5),
              "inhibit:news/3": (0.7, 0.6), "inhibit:news/all": (0.2, 0.3), "random15:seed0": (0.7, 0.6),
              "top5:inhibit": (0.5, 0.5), "localization:inhibit": (0.7, 0.6),
              "top5:multiply1.02": (0.82, 0.6), "localization:multiply1.02": (0.8, 0.58)}
    fields = {  # every result row carries its condition's fields; compare-paper picks conditions by them
        "normal": {"kind": "normal"}, "inhibit:news/all": {"kind": "network", "edit": "inhibit", "corpus": "news"},
        **{f"inhibit:news/{t}": {"kind": "network", "edit": "inhibit", "corpus": "news", "template": t} for t in (1, 2, 3)},
        "random15:seed0": {"kind": "random", "edit": "inhibit", "percent": 15.0, "seed": 0},
        **{f"{k}:{e}": {"kind": "top" if k == "top5" else "localization", "edit": e.rstrip("1.02"), "corpus": "news"}
           for k in ("top5", "localization") for e in ("inhibit", "multiply1.02")}}
    empty = dict.fromkeys(FIELD_COLUMNS)
    rows = [{"condition": c, "task": t, "metric": "acc", "value": v, "filter": "none", "n_samples": n, "neurons": 1,
             **empty, **fields[c]} for c, vs in values.items() for t, v, n in zip(("sst2", "rte"), vs, (5, 4))]
    rows += [{"condition": c, "task": "wikitext", "metric": "word_perplexity", "value": 99.0, "filter": "none",
              "n_samples": 1, "neurons": 1, **empty, **fields[c]} for c in values]
    pd.DataFrame(rows).to_csv(root / "evaluate" / "results.csv", index=False)
    (root / "evaluate" / "controls").mkdir()
    pd.DataFrame({"condition": ["ctl-fraction15/0", "ctl-fraction15/1", "ctl-fraction5/0", "ctl-matched_count:news/1/0",
                                "massive-only:news/1"],
                  "task": "sst2", "metric": "acc", "value": [0.7, 0.8, 0.75, 0.7, 0.6],
                  "kind": ["control", "control", "control", "control", "massive_only"],
                  "control": ["fraction", "fraction", "fraction", "matched_count", None],
                  "percent": [15.0, 15.0, 5.0, None, None], "corpus": [None, None, None, "news", "news"],
                  "template": [None, None, None, 1, 1], "draw": [0, 1, 0, 0, None]}).to_csv(
        root / "evaluate" / "controls" / "results.csv", index=False)
    pd.DataFrame({"ICA vs LLM Localization": [0.125]}, index=["Spatial Similarity (IoU)"]).to_csv(
        root / "evaluate" / "tables" / "table5_iou.csv")
    pd.DataFrame({"condition": ["normal", "random15:seed0", "inhibit:news/all"] * 2,
                  "pooling": ["last"] * 3 + ["mean"] * 3, "accuracy": [0.9, 0.85, 0.6, 0.1, 0.1, 0.1]}).to_csv(
        root / "evaluate" / "probing.csv", index=False)
    if findings:
        (root / "report").mkdir()
        (root / "report" / "findings.json").write_text(json.dumps({"findings": [
            {"id": "counterparts", "claim": "Most templates have counterparts.", "verdict": "fails", "reason": "3 of 8"},
            {"id": "amplification", "claim": "Amplifying helps.", "verdict": "unclear"}]}))
    return root


def test_compare_paper_figures_from_a_synthetic_run(tmp_path):
    from fnet_dist.paper.compare import paper_figures, run_figures

    frame, info = run_figures(_run_folder(tmp_path / "a"))
    got = frame.set_index("figure")["value"]
    assert got["share_with"] == 3 / 8 and got["median"] == 0 and got["largest"] == 8
    assert got["largest_per_sample"] == 2.0 and got["maps"] == 15  # news 8/4; median of 20 and 10 maps
    assert got["best_iou"] == 0.31 and got["pairs"] == 1
    assert got["median_drop"] == pytest.approx(0.125) and got["largest_drop"] == pytest.approx(0.5)
    assert got["halving"] == pytest.approx(1 / 3)
    assert got["random_drop"] == pytest.approx(0.05) and got["networks_drop"] == pytest.approx(0.45)
    assert got["ica_drop"] == pytest.approx(0.2) and got["loc_drop"] == pytest.approx(0.05)
    assert got["ica_gain"] == pytest.approx(0.01) and got["loc_gain"] == pytest.approx(-0.01)
    assert got["overlap"] == 0.125
    assert (got["probe_normal"], got["probe_random"], got["probe_networks"]) == (0.9, 0.85, 0.6)
    assert info.samples.set_index("corpus").loc["news"].tolist() == [4, 5, 2.75, "75%", "25%"]
    assert info.samples.set_index("corpus").loc["wiki"].tolist()[3:] == ["—", "—"]  # its store is gone
    assert info.evaluation == ("10 conditions on sst2 5, rte 4, wikitext 1 examples; 4 random control draws "
                               "(fraction 15 % 2, fraction 5 % 1, matched_count 1) scored on sst2")
    paper = paper_figures().set_index(["figure", "source"])["value"]
    assert paper[("largest", "GPT-2 (Table 1)")] == 1848 and paper[("best_iou", "Qwen2.5-7B-Instruct (Table 2)")] == 0.9302
    assert paper[("halving", "Qwen2.5-7B-Instruct (Table 3)")] == 0.4
    assert paper[("ica_drop", "ChatGLM3-6B-base (Table 9)")] == pytest.approx(0.6931 - 0.3864, abs=1e-3)


def test_compare_paper_page_with_several_runs(tmp_path):
    from fnet_dist.cli import main

    a = _run_folder(tmp_path / "spatial")
    b = _run_folder(tmp_path / "no-first", exclude_first=1, findings=False)
    (b / "evaluate" / "results.csv").unlink()
    out = tmp_path / "docs" / "replication.md"
    assert main(["compare-paper", str(a), str(b), "--out", str(out)]) == 0
    page = out.read_text()
    assert page.startswith("<!-- generated by fnet compare-paper")
    assert "| share of templates with ≥ 1 counterpart | 1.000 | 0.800 | 0.925 | 0.700 | 0.375 | 0.375 |" in page
    assert ("- spatial: below the paper's range: IoU of the closest template pair of two corpora, template pairs of "
            "different corpora listed as similar.") in page
    assert "- no-first: produced none of the tables these figures come from." in page
    assert "first tokens excluded: 1" in page and "Run no-first has no evaluate/results.csv" in page
    assert "cube | none |" in page and "scored on sst2 |" in page  # the runs table's evaluation column
    assert "- spatial, finding `counterparts`: **fails** — Most templates have counterparts." in page
    assert "- no-first: no report/findings.json" in page
    assert "| news | 4 | 5 | 2.75 | 75% | 25% |" in page
    numbers = out.with_suffix(".csv").read_text()
    assert numbers.startswith("section,figure,source,value\n") and "no-first" in numbers
    assert main(["compare-paper", str(a), "--out", str(out)]) == 0  # its own output is replaced


def test_compare_paper_puts_each_null_model_beside_its_run(tmp_path):
    import json

    from fnet_dist.paper.compare import compare_paper

    run = _run_folder(tmp_path / "spatial")
    twin = _run_folder(run / "nulls" / "random-init", name="twin", findings=False)
    for folder in ("evaluate", "networks"):  # a null variant runs the structure stages only
        __import__("shutil").rmtree(twin / folder)
    consistency = twin / "match" / "consistency.csv"
    consistency.write_text(consistency.read_text().replace(",3,4,", ",0,4,").replace(",8,4,", ",0,4,"))  # 1 of 8
    findings = json.loads((run / "report" / "findings.json").read_text())
    findings["findings"].append({"id": "counterparts-vs-random-init", "claim": "More than the twin.", "verdict": "holds",
                                 "effect": 0.25, "interval": [0.125, 0.375], "p_value": 0.0001, "n_examples": 6,
                                 "units": "share of templates with a counterpart per sample, trained minus null model"})
    (run / "report" / "findings.json").write_text(json.dumps(findings))
    page = compare_paper([run], tmp_path / "page.md").read_text()
    assert "| share of templates with ≥ 1 counterpart | 1.000 | 0.800 | 0.925 | 0.700 | 0.375 | 0.125 |" in page
    assert "| IoU of the ICA top 5 % and LLM Localization's neurons | 0.0220 | 0.1250 |" in page  # no null column
    assert "spatial · random-init null model" in page and "Run spatial · random-init null model has no" not in page
    assert ("| spatial | `counterparts-vs-random-init` | 0.250 | [0.125, 0.375] | 1.0e-04 | 6 | **holds** | "
            "share of templates with a counterpart per sample, trained minus null model |") in page
    assert "- spatial · random-init null model:" not in page.split("## Findings")[1]  # findings are the trained run's
    numbers = (tmp_path / "page.csv").read_text()
    assert "spatial · random-init null model" in numbers


def test_compare_paper_refuses_what_it_did_not_write(tmp_path, capsys):
    from fnet_dist.cli import main

    run = _run_folder(tmp_path / "run")
    mine = tmp_path / "notes.md"
    mine.write_text("# my notes\n")
    assert main(["compare-paper", str(run), "--out", str(mine)]) == 2
    assert mine.read_text() == "# my notes\n"
    assert "was not written by fnet compare-paper" in capsys.readouterr().err
    (tmp_path / "page.csv").write_text("a,b\n")
    assert main(["compare-paper", str(run), "--out", str(tmp_path / "page.md")]) == 2
    assert not (tmp_path / "page.md").exists() and "page.csv exists" in capsys.readouterr().err
    assert main(["compare-paper", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x.md")]) == 2
    assert main(["compare-paper", str(run), "--out", str(tmp_path / "x.txt")]) == 2
    assert main(["compare-paper", str(run), str(run), "--out", str(tmp_path / "x.md")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and "no run folder" in err[0] and "Markdown" in err[1] and "share the label" in err[2]


@pytest.mark.parametrize("overrides", [[], ["decompose.exclude_first_tokens=1", "out=runs/paper-smollm2-nofirst"]])
def test_paper_smollm2_config_is_the_papers_sizes(overrides):
    from pathlib import Path

    from fnet_dist.core.config import load_config
    from fnet_dist.stages import stage_hash
    from fnet_dist.evaluate.tasks import OFFLINE_TASKS
    from fnet_dist.core.offline import domain_texts

    config = load_config(Path(__file__).parents[1] / "pipeline" / "paper-smollm2.yaml", overrides)
    r, d, m, e = config.record, config.decompose, config.match, config.evaluate
    assert (r.group_samples, r.individual_samples, r.max_tokens) == (100, 100, 1024)
    assert (d.components, d.group_components, d.n_init) == (64, 10, 10)
    assert (m.threshold, m.two_sided, m.iou) == (3.6, True, 0.2)
    assert set(e.tasks) == set(OFFLINE_TASKS) and e.controls.top_draws >= 39 and e.controls.networks == "all"
    assert config.pack_to_tokens() >= d.components + 1 + d.exclude_first_tokens
    assert all(c.spec.startswith("offline:") for c in config.corpora.values())
    base = load_config(Path(__file__).parents[1] / "pipeline" / "paper-smollm2.yaml")
    assert stage_hash(config, "record") == stage_hash(base, "record")  # variants record the same samples
    if not overrides:  # enough paragraphs for 100 + 100 samples of ≥ 66 tokens, packed
        assert len(domain_texts("wiki-paragraphs")) >= 10 * (r.group_samples + r.individual_samples)
