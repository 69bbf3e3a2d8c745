"""Degenerate numbers never end a run (issue 19): every figure and table function of match, evaluate, controls
and report is fed identical draws, single draws, infinite / NaN values, empty networks, templates without
counterparts and one-example tasks, and must finish and write its file."""
from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fnet_dist.core.config import EvaluateSection, ReportSection
from fnet_dist.model.edit import Edit
from fnet_dist.core.conditions import NORMAL, Condition
from fnet_dist.core.layout import EvaluationFiles, MatchFiles
from fnet_dist.model.masks import NeuronMask

# a value that reaches a matplotlib transform or a log axis it cannot take is a bug, not noise
pytestmark = pytest.mark.filterwarnings("error:invalid value:RuntimeWarning:matplotlib",
                                        "error:Data has no positive values:UserWarning")
# few examples each (drawing is the cost): the strategies put their weight on the degenerate values
FAST = settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
FEW = settings(FAST, max_examples=6)
SPECIAL = [0.0, 0.7, 1.0, -1.0, 1e-300, 1e300, math.inf, -math.inf, math.nan]
number = st.one_of(st.sampled_from(SPECIAL), st.floats(-10.0, 1e4, allow_nan=False))
TASKS = {"sentiment_rt": "acc", "wiki_ppl": "word_perplexity"}
SHAPE = (2, 8)
LEVEL = ReportSection().level
CONTROL_TABLES = dict(fraction=EvaluateSection().random_fraction, level=LEVEL)  # the run's defaults


def _c(kind, edit=Edit("inhibit"), **fields):
    """A condition of ``kind`` with ``fields`` (its mask is a placeholder: rows are chosen by fields)."""
    return NORMAL if kind == "normal" else Condition(kind, _network(1), edit, **fields)


NEWS1 = {"corpus": "news", "template": 1}
AMPLIFY = Edit("multiply", 1.02)


def _row(condition, task, value, neurons=0, n_samples=1):
    return {"condition": condition.name, "task": task, "metric": TASKS[task], "value": value, "stderr": math.nan,
            "filter": "none", "n_samples": n_samples, "neurons": neurons, **condition.fields()}


def _news1(count):
    """The network the controls are drawn for, ``count`` neurons."""
    return Condition("network", _network(count), Edit("inhibit"), **NEWS1)


@st.composite
def tasks(draw):
    return draw(st.sampled_from([["sentiment_rt", "wiki_ppl"], ["sentiment_rt"], ["wiki_ppl"]]))


@st.composite
def values(draw, n: int):
    """``n`` numbers: all identical (a common outcome of small example counts) or each drawn."""
    if draw(st.booleans()):
        return [draw(number)] * n
    return draw(st.lists(number, min_size=n, max_size=n))


@st.composite
def evaluate_rows(draw):
    """Tidy rows of the paper's conditions (one to three networks, possibly empty ones)."""
    n_networks = draw(st.integers(1, 3))
    conditions = [NORMAL, *(_c("network", corpus="news", template=k) for k in range(1, n_networks + 1)),
                  _c("network", corpus="news"), _c("random", percent=15.0, seed=0), _c("top", percent=5.0, corpus="news"),
                  _c("localization", corpus="news"), _c("top", AMPLIFY, percent=5.0, corpus="news"),
                  _c("localization", AMPLIFY, corpus="news"), _c("network", AMPLIFY, **NEWS1)]
    chosen = draw(tasks())
    numbers = draw(values(len(conditions) * len(chosen)))
    neurons = draw(st.lists(st.integers(0, 16), min_size=len(conditions), max_size=len(conditions)))
    n_samples = draw(st.integers(1, 3))
    it = iter(numbers)
    return pd.DataFrame([_row(c, t, next(it), 0 if c.kind == "normal" else k, n_samples)
                         for c, k in zip(conditions, neurons) for t in chosen])


@st.composite
def control_rows(draw):
    """Rows of normal, one network and its controls: 1-3 draws per kind, identical or not, maybe infinite."""
    chosen = draw(tasks())
    n_draws = draw(st.integers(1, 3))
    rows = []
    for task in chosen:
        rows.append(_row(NORMAL, task, draw(number)))
        rows.append(_row(_c("network", **NEWS1), task, draw(number), neurons=3))
        for kind, where in (("fraction", {"percent": 15.0}), ("matched_count", NEWS1), ("matched_avoid_massive", NEWS1)):
            rows += [_row(_c("control", control=kind, draw=i, **where), task, v) for i, v in enumerate(draw(values(n_draws)))]
        for part in sorted(draw(st.sets(st.sampled_from(["minus_massive", "massive_only"])))):
            rows.append(_row(_c(part, **NEWS1), task, draw(number)))
    return pd.DataFrame(rows)


def _network(count: int) -> NeuronMask:
    values = np.zeros(SHAPE, dtype=bool)
    values.flat[:count] = True
    return NeuronMask(values, name="template-1")


def test_what_a_figure_cannot_draw_is_named_and_a_table_says_what_inf_and_nan_mean():
    import matplotlib.pyplot as plt

    from fnet_dist.core.display import drawable, nonfinite_note, note_undrawn, undrawn

    assert drawable([1.0, 0.0, -1.0, math.inf, math.nan], log=True).tolist() == [True, False, False, False, False]
    assert drawable([0.0, -1.0, math.inf]).tolist() == [True, True, False]
    assert undrawn(["a", "b", "c"], [1.0, math.inf, 0.0], log=True) == ["b (inf)", "c (0)"]
    fig, ax = plt.subplots()
    ax.set_xlabel("damage")
    note_undrawn(ax, [])
    assert ax.get_xlabel() == "damage"
    note_undrawn(ax, ["b (inf)", "b (inf)"])
    assert ax.get_xlabel() == "damage\nnot drawn (not finite): b (inf)"
    plt.close(fig)
    assert nonfinite_note(pd.DataFrame({"name": ["x"], "value": [1.0]})) == ""
    note = nonfinite_note(pd.DataFrame({"value": [math.inf, math.nan]}))
    assert "inf: the value overflowed" in note and "nan: not a number" in note


# --- evaluate ---------------------------------------------------------------------------------------------

@FAST
@given(rows=evaluate_rows())
def test_evaluate_tables_and_figures_finish(rows):
    from fnet_dist.evaluate.experiment import write_reports

    with tempfile.TemporaryDirectory() as folder:
        out = write_reports(rows, folder, iou={"ICA vs LLM Localization": math.nan})
        written = {p.name for p in Path(out).rglob("*") if p.is_file()}
        assert {"table3_networks_news.csv", "table3_networks_news.md", "table10_masked_news.csv",
                "table9_top_inhibit_news.csv", "table4_top_amplify_news.csv", "table5_iou.md"} <= written
        if "sentiment_rt" in set(rows["task"]):
            assert {"figure3_changes_inhibit_news.png", "figure3_changes_top_amplified_news.png"} <= written
        if "wiki_ppl" in set(rows["task"]):
            assert "figure2_perplexity_news_wiki_ppl.png" in written
        for md in Path(out).rglob("*.md"):
            text = md.read_text()
            assert "| nan" not in text or "not a number" in text


@FEW
@given(rows=evaluate_rows(), factors=st.lists(st.sampled_from([0.0, 0.5, 1.02, 2.0]), min_size=1, max_size=3, unique=True))
def test_sweep_plot_finishes(rows, factors):
    from fnet_dist.evaluate.figures import sweep_plot

    sweep_rows = []
    for i, row in enumerate(rows.to_dict("records")):
        if row["condition"] == "normal":
            sweep_rows.append(dict(row, kind="normal", mask="", amount=math.nan))
        for kind in ("multiply", "add"):
            for amount in factors:
                sweep_rows.append(dict(row, condition=f"net:{kind}{amount}", kind="network", edit=kind, mask="net", amount=amount))
    frame = pd.DataFrame(sweep_rows).drop_duplicates(["condition", "task", "metric"])
    with tempfile.TemporaryDirectory() as folder:
        for task in dict.fromkeys(frame["task"]):
            assert sweep_plot(frame, Path(folder) / f"{task}.png", task=task).stat().st_size > 0


@settings(FAST, max_examples=20)
@given(n_docs=st.integers(1, 3), scores=st.lists(number, min_size=12, max_size=12))
def test_flips_finish_with_one_example_and_tied_or_infinite_scores(n_docs, scores):
    from fnet_dist.evaluate.experiment import write_flips
    from fnet_dist.evaluate.figures import format_flip

    it = iter(scores)
    rows = pd.DataFrame([_row(c, "sentiment_rt", 0.5) for c in (NORMAL, _c("network", **NEWS1))])
    with tempfile.TemporaryDirectory() as folder:
        for slug in ("normal", "inhibit-news_1"):
            path = Path(folder) / "conditions" / slug / "samples_sentiment_rt.jsonl"
            path.parent.mkdir(parents=True)
            samples = [{"doc_id": d, "doc": {"text": f"doc {d}"}, "target": d % 2,
                        "filtered_resps": [[next(it), False], [next(it), False]]} for d in range(n_docs)]
            path.write_text("".join(json.dumps(s) + "\n" for s in samples))
        flips = pd.read_csv(write_flips(rows, folder))
        assert list(flips.columns)[:3] == ["condition", "task", "doc_id"]
        for _, flip in flips.iterrows():
            assert format_flip(flip).startswith("Sample: doc ")


# --- controls ---------------------------------------------------------------------------------------------

@FAST
@given(rows=control_rows(), count=st.integers(0, 4))
def test_control_tables_and_plots_finish(rows, count):
    from fnet_dist.evaluate.control_tables import write_control_reports

    with tempfile.TemporaryDirectory() as folder:
        controls, separated = write_control_reports(rows, [_news1(count)], folder, **CONTROL_TABLES)
        assert (Path(folder) / "tables" / "controls.csv").is_file()
        assert (Path(folder) / "tables" / "separated.md").is_file()
        for task in dict.fromkeys(rows["task"]):
            assert (Path(folder) / "figures" / f"controls_{task}.png").stat().st_size > 0
        finite = controls.dropna(subset=["low", "high"])
        assert (finite["low"] <= finite["high"]).all()


@settings(FAST, max_examples=50)
@example(draws=[0.7, 0.7, 0.7], n=3, value=0.7)  # the draws: their float mean is 0.6999999999999998
@given(draws=values(3), n=st.integers(1, 5), value=number)
def test_interval_brackets_the_mean_of_identical_draws(draws, n, value):
    from fnet_dist.core.stats import interval

    mean, low, high = interval([value] * n, LEVEL)
    if math.isfinite(value):
        assert low <= mean <= high and mean == value
    mean, low, high = interval(draws, LEVEL)
    finite = [d for d in draws if math.isfinite(d)]
    if finite:
        assert min(finite) <= low <= high <= max(finite) and min(finite) <= mean <= max(finite)
    else:
        assert math.isnan(mean)


# --- match ------------------------------------------------------------------------------------------------

@st.composite
def match_results(draw):
    """Match results of 1-2 corpora: templates possibly without a neuron, no samples or no counterparts."""
    from fnet_dist.core.config import MatchSection
    from fnet_dist.match.io import CorpusNetworks
    from fnet_dist.match.matching import MatchResults, consistency_rows, cross_corpus_rows, sample_rows
    from fnet_dist.core.networks import describe_networks

    config = MatchSection()
    corpora, names, consistency = [], [], []
    for name in draw(st.sampled_from([["news"], ["news", "code"]])):
        n_templates, n_samples, n_components = draw(st.integers(1, 3)), draw(st.integers(0, 2)), 2
        empty = draw(st.booleans())
        templates = np.zeros((n_templates, *SHAPE), dtype=bool) if empty else \
            np.random.default_rng(draw(st.integers(0, 9))).random((n_templates, *SHAPE)) < 0.2
        corpus = CorpusNetworks(f"memory://{name}", name, "synthetic", *SHAPE, templates, None,
                                list(range(n_samples)), n_components)
        iou = np.full((n_templates, n_samples * n_components), draw(st.sampled_from([0.0, 0.5, 1.0])))
        corpora.append(corpus)
        names.append(name)
        consistency.append(consistency_rows(name, corpus, iou, config.iou))
    consistency = pd.concat(consistency, ignore_index=True)
    sizes = pd.concat([describe_networks(c.templates, {"corpus": n}) for n, c in zip(names, corpora)], ignore_index=True)
    samples = pd.concat([sample_rows(n, c, np.zeros((len(c.templates), len(c.samples) * c.n_components)), config.iou)
                         for n, c in zip(names, corpora)], ignore_index=True)
    results = MatchResults(config, consistency, cross_corpus_rows(names, corpora, config.similar_iou), sizes, samples,
                           [], {}, {})
    return results, {n: c.templates for n, c in zip(names, corpora)}


@FEW
@given(drawn=match_results())
def test_match_tables_and_figures_finish(drawn):
    from fnet_dist.match.matching import consistency_markdown, write_results

    results, templates = drawn
    results.markdown = consistency_markdown(results.consistency, results.section.iou)
    with tempfile.TemporaryDirectory() as folder:
        write_results(results, folder, templates)
        written = {p.name for p in Path(folder).iterdir()}
        assert {"consistency.csv", "consistency.md", "cross_corpus.md", "network_sizes.csv", "networks.png",
                "counterparts.png", "layer_distribution.png", "results.json"} <= written
        assert ("cross_corpus.png" in written) == (len(templates) > 1)


# --- report -----------------------------------------------------------------------------------------------

def _write_outputs(root: Path, matched, rows: pd.DataFrame, controls: pd.DataFrame, count: int) -> None:
    """A run folder's match and evaluate outputs, written by the stages' own table and figure functions."""
    from fnet_dist.evaluate.control_tables import write_control_reports
    from fnet_dist.evaluate.experiment import write_reports
    from fnet_dist.match.matching import consistency_markdown, write_results

    results, templates = matched
    results.markdown = consistency_markdown(results.consistency, results.section.iou)
    write_results(results, str(root / "match"), templates)
    evaluate = root / "evaluate"
    write_reports(rows, evaluate)
    rows.to_csv(evaluate / "results.csv", index=False)
    write_control_reports(pd.concat([rows, controls]).drop_duplicates(["condition", "task"], keep="last"),
                          [_news1(count)], evaluate / "controls", **CONTROL_TABLES)


def _config(out: Path):
    from fnet_dist.core.config import load_config

    return load_config(Path(__file__).parents[1] / "pipeline" / "default.yaml",
                       [f"out={out}", "corpora={news: offline:news, code: offline:code}", "report.explain_texts=0", "nulls={}"])


@settings(FEW, max_examples=4)  # the costliest: every stage's figures, then the page
@given(matched=match_results(), rows=evaluate_rows(), controls=control_rows(), count=st.integers(0, 4))
def test_report_of_degenerate_outputs_is_written(matched, rows, controls, count):
    from fnet_dist.core.layout import RunLayout
    from fnet_dist.report import build_report

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        _write_outputs(root, matched, rows, controls, count)
        page = build_report(_config(root), RunLayout(root)).read_text()
        assert "Findings" in page and "Incomplete" not in page and "could not be built" not in page


@settings(FAST, max_examples=25)
@given(drawn=match_results(), rows=evaluate_rows(), controls=control_rows(), count=st.integers(0, 4),
       total=st.sampled_from([1, 16, 10_000]))
def test_findings_of_degenerate_tables_finish(drawn, rows, controls, count, total):
    from fnet_dist.evaluate.control_tables import control_tables
    from fnet_dist.evaluate.tables import save_table
    from fnet_dist.core.config import ReportSection
    from fnet_dist.report.findings import FindingSettings, compute_findings
    from fnet_dist.core.stats import VERDICTS

    results, _ = drawn
    with tempfile.TemporaryDirectory() as folder:
        match, evaluate = Path(folder) / "match", Path(folder) / "evaluate"
        match.mkdir()
        results.consistency.to_csv(match / "consistency.csv", index=False)
        results.cross_corpus.to_csv(match / "cross_corpus.csv", index=False)
        tables = control_tables(pd.concat([rows, controls]), [_news1(count)], **CONTROL_TABLES)
        for table, name in zip(tables, ("controls", "separated")):
            save_table(table, evaluate / "controls" / "tables", name)
        rows.to_csv(evaluate / "results.csv", index=False)
        found = compute_findings(MatchFiles(match), EvaluationFiles(evaluate), EvaluationFiles(evaluate / "controls"), FindingSettings(ReportSection(bootstrap=200)), total_neurons=total, null_runs=[])
        assert found and all(f.verdict in VERDICTS for f in found)
        assert all(f.verdict != "holds" for f in found)   # no per-example samples here: nothing to test


# --- a whole run ------------------------------------------------------------------------------------------

def _stages(monkeypatch, evaluate):
    """Replace record, decompose, match and evaluate with writers of fixed outputs; the report stage is real."""
    import dataclasses

    from fnet_dist import stages
    from fnet_dist.core.config import MatchSection
    from fnet_dist.match.io import CorpusNetworks
    from fnet_dist.match.matching import (MatchResults, consistency_markdown, consistency_rows,
                                 cross_corpus_rows, sample_rows, write_results)
    from fnet_dist.core.networks import describe_networks

    def match(run):
        templates = np.zeros((2, *SHAPE), dtype=bool)  # no neuron above threshold, no counterparts
        corpora = [CorpusNetworks(f"memory://{n}", n, "synthetic", *SHAPE, templates, None, [0], 2) for n in ("news", "code")]
        results = MatchResults(MatchSection(), pd.concat([consistency_rows(c.name, c, np.zeros((2, 2)), 0.2) for c in corpora]),
                               cross_corpus_rows(["news", "code"], corpora, 0.2),
                               pd.concat([describe_networks(templates, {"corpus": c.name}) for c in corpora]),
                               pd.concat([sample_rows(c.name, c, np.zeros((2, 2)), 0.2) for c in corpora]), [], {}, {})
        results.markdown = consistency_markdown(results.consistency, 0.2)
        write_results(results, str(run.layout.match.folder), {c.name: templates for c in corpora})
        return {"folder": str(run.layout.match.folder)}

    for stage, function in (("record", lambda run: {}), ("decompose", lambda run: {}), ("match", match),
                            ("evaluate", evaluate), ("controls", lambda run: {})):
        monkeypatch.setitem(stages.STAGES, stage,   # fixed outputs: nothing for run.json's completeness check to find
                            dataclasses.replace(stages.STAGES[stage], run=lambda run, shard, f=function: f(run),
                                                unfinished=lambda config, layout: []))


def _degenerate_evaluation(run):
    """Controls of three identical draws (accuracy 0.7: the issue's crash) and infinite perplexities."""
    from fnet_dist.evaluate.control_tables import write_control_reports
    from fnet_dist.evaluate.experiment import write_reports

    network, union, random = _c("network", **NEWS1), _c("network", corpus="news"), _c("random", percent=15.0, seed=0)
    rows = [_row(NORMAL, "sentiment_rt", 0.7), _row(NORMAL, "wiki_ppl", 30.0),
            _row(network, "sentiment_rt", 0.7, 3), _row(network, "wiki_ppl", math.inf, 3),
            _row(union, "sentiment_rt", 0.5, 5), _row(union, "wiki_ppl", math.nan, 5),
            _row(random, "sentiment_rt", 0.7, 2), _row(random, "wiki_ppl", math.inf, 2)]
    evaluate = run.layout.evaluate.folder
    write_reports(pd.DataFrame(rows), evaluate)
    pd.DataFrame(rows).to_csv(evaluate / "results.csv", index=False)
    for kind, where in (("fraction", {"percent": 15.0}), ("matched_avoid_massive", NEWS1)):
        rows += [_row(_c("control", control=kind, draw=i, **where), "sentiment_rt", 0.7) for i in range(3)]
        rows += [_row(_c("control", control=kind, draw=i, **where), "wiki_ppl", math.inf) for i in range(3)]
    controls, _ = write_control_reports(pd.DataFrame(rows), [_news1(3)], evaluate / "controls", **CONTROL_TABLES)
    finite = controls.dropna(subset=["mean"])  # the accuracies; every perplexity draw is inf
    assert len(finite) == 2 and (finite["low"] <= finite["mean"]).all() and (finite["mean"] <= finite["high"]).all()
    return {"folder": str(evaluate)}


def _fnet_run(out: Path) -> int:
    from fnet_dist.cli import main

    return main(["run", str(Path(__file__).parents[1] / "pipeline" / "default.yaml"), "--out", str(out),
                 "--set", "report.explain_texts=0", "--set", "corpora={news: offline:news, code: offline:code}", "--set", "nulls={}"])


def test_a_run_with_identical_draws_and_infinite_perplexities_ends_with_a_report(tmp_path, monkeypatch, capsys):
    _stages(monkeypatch, _degenerate_evaluation)
    assert _fnet_run(tmp_path) == 0
    record = json.loads((tmp_path / "run.json").read_text())
    assert {s["status"] for s in record["stages"].values()} == {"done"}
    page = (tmp_path / "report" / "index.html").read_text()
    assert "Incomplete" not in page and "Random controls" in page and "Findings" in page
    assert ">inf<" in page and "inf: the value overflowed" in page
    assert 'id="figure-figure2_perplexity_news_wiki_ppl"' in page and 'id="figure-controls_sentiment_rt"' in page
    assert (tmp_path / "report" / "evaluate_controls_wiki_ppl.png").is_file()


def test_a_failing_stage_leaves_an_incomplete_report_and_exit_1(tmp_path, monkeypatch, capsys):
    def evaluate(run):
        raise RuntimeError("planted failure\nsecond line")

    _stages(monkeypatch, evaluate)
    assert _fnet_run(tmp_path) == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith(
        "error: run 'default': stage evaluate failed (RuntimeError: planted failure); the report of what exists")
    record = json.loads((tmp_path / "run.json").read_text())
    assert record["stages"]["evaluate"]["status"] == "failed"
    assert record["stages"]["evaluate"]["error"] == "RuntimeError: planted failure"
    assert record["stages"]["report"]["status"] == "incomplete"
    page = (tmp_path / "report" / "index.html").read_text()
    assert "Incomplete run: stage evaluate failed (RuntimeError: planted failure)" in page
    assert "Consistency across individual analyses" in page and "No evaluation in this run" in page
    # fixed, the same command resumes: the stages before are cached, evaluate and the report rerun
    _stages(monkeypatch, _degenerate_evaluation)
    assert _fnet_run(tmp_path) == 0
    out = capsys.readouterr().out
    assert "match: cached" in out and "evaluate: done" in out and "report: done" in out
    assert "Incomplete" not in (tmp_path / "report" / "index.html").read_text()


def test_a_section_that_cannot_be_read_is_named_and_the_rest_is_written(tmp_path, monkeypatch, capsys):
    def evaluate(run):  # a table left empty, as by a write cut short
        _degenerate_evaluation(run)
        (run.layout.evaluate.folder / "tables" / "table3_networks_news.csv").write_text("")
        return {"folder": str(run.layout.evaluate.folder)}

    _stages(monkeypatch, evaluate)
    assert _fnet_run(tmp_path) == 1
    assert "stage report failed (StageError: report sections Editing could not be built" in capsys.readouterr().err
    page = (tmp_path / "report" / "index.html").read_text()
    assert "Incomplete report: Editing could not be built (EmptyDataError" in page
    assert "Consistency across individual analyses" in page and "Findings" in page
