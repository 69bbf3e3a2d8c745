"""The report page: tables that fit 1,280 px, findings linked to their evidence, figure scales chosen from
the data, one name per network; checked in a real browser on a synthetic run (tests/report_fixtures.py)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from fnet_dist.core.errors import InputError
from fnet_dist.core.display import value_axis
from fnet_dist.core.conditions import FIELD_COLUMNS
from fnet_dist.core.names import condition_names, display_name, network_name
from fnet_dist.report.build import build_report
from fnet_dist.report.findings_view import findings_html, read_findings
from fnet_dist.report.page import MAX_ROWS, Page, anchor_id, table_html
from fnet_dist.core.stats import Finding

from browser import inspect_layout, inspect_page
from report_fixtures import synthetic_run

_FULL = {  # a finding with every field of findings.json (issue 13's schema)
    "id": "controls-news-1", "claim": "Inhibiting news/1 hurts sentiment_rt more than matched random networks.",
    "verdict": "holds", "test": "permutation test against 19 layer-matched random networks",
    "effect": {"value": -0.18, "units": "accuracy"}, "interval": [-0.25, -0.11], "p_value": 0.004, "alpha": 0.05,
    "n_draws": 19, "n_examples": 60, "correction": "Holm across the run's findings", "reason": "",
    "conditions": ["inhibit:news/1"], "tables": ["evaluate/controls/tables/controls.csv", "table3_networks"],
    "figures": ["controls_sentiment_rt"], "anchors": ["finding-controls-news-1", "table-controls"],
}


@pytest.fixture()
def png(tmp_path):
    path = tmp_path / "figure.png"
    fig, ax = plt.subplots(figsize=(2, 1.5))
    ax.plot([0, 1], [1, 0])
    fig.savefig(path)
    plt.close(fig)
    return path


def _record(name, **fields):
    return {"condition": name, **dict.fromkeys(FIELD_COLUMNS), **fields}


def test_one_display_name_per_network():
    """Names are formatted from the fields, never read back from a name."""
    news5 = {"corpus": "news", "template": 5}
    assert network_name("news", 5) == display_name(_record("inhibit:news/5", kind="network", edit="inhibit", **news5)) == "news/5"
    assert display_name(_record("inhibit:news/all", kind="network", edit="inhibit", corpus="news")) == "news/all"
    assert display_name(_record("multiply1.02:news/5", kind="network", edit="multiply", factor=1.02, **news5)) == "news/5 × 1.02"
    assert display_name(_record("m", kind="minus_massive", edit="inhibit", **news5)) == "news/5 without massive channels"
    assert display_name(_record("top5:multiply1.02@news", kind="top", edit="multiply", corpus="news")) == "top5:multiply1.02@news"
    assert display_name(_record("normal", kind="normal")) == "normal"
    assert display_name(_record("x", kind="control", control="matched_count", draw=3, **news5)) == "news/5 matched_count draw 3"
    assert display_name(_record("y", kind="control", control="fraction", percent=15.0, draw=3)) == "random 15 % draw 3"
    draws = [_record(f"f{i}", kind="control", control="fraction", percent=15.0, draw=i) for i in range(3)] * 2
    draws += [_record(f"m{i}", kind="control", control="matched_count", draw=i, **news5) for i in range(2)]
    network = _record("inhibit:news/5", kind="network", edit="inhibit", **news5)
    assert condition_names([network, *draws, _record("p", kind="minus_massive", **news5), network]) == [
        "news/5", "random 15 % draws (3)", "news/5 matched_count draws (2)", "news/5 without massive channels"]
    assert condition_names(["inhibit:news/5"]) == ["inhibit:news/5"]  # an older findings.json: names as they are


def test_display_names_come_from_the_conditions_fields():
    """A Condition, or a result row of its fields, is named from the fields; its name read back agrees."""
    from fnet_dist.model.edit import Edit
    from fnet_dist.core.conditions import NORMAL, Condition
    from fnet_dist.model.masks import NeuronMask

    mask, inhibit = NeuronMask(np.ones((1, 1), dtype=bool), name="m"), Edit("inhibit")
    expected = [(NORMAL, "normal"), (Condition("network", mask, inhibit, corpus="news", template=5), "news/5"),
                (Condition("network", mask, Edit("add", 0.5), corpus="wiki", template=2), "wiki/2 + 0.5"),
                (Condition("massive_only", mask, inhibit, corpus="news", template=5), "news/5 massive channels only"),
                (Condition("control", mask, inhibit, control="matched_per_layer", corpus="news", template=5, draw=0),
                 "news/5 matched_per_layer draw 0"),
                (Condition("control", mask, inhibit, control="fraction", percent=15.0, draw=7), "random 15 % draw 7")]
    for condition, name in expected:
        row = pd.Series({**condition.fields(), "condition": condition.name})
        assert display_name(condition) == display_name(row) == name
    # a row's fields decide, not its name (a custom label that looks like a network is shown as it is)
    assert display_name({"condition": "inhibit:news/5", "kind": "custom", "corpus": "inhibit:news/5"}) == "inhibit:news/5"


def test_value_axis_goes_log_beyond_two_orders_of_magnitude():
    fig, axes = plt.subplots(1, 4)
    ppl = [73, 150, 1_400, 61_700, 2.1e8]  # issue 18's Figure 2: linear hid every single network
    assert value_axis(axes[0], ppl, "y", "word perplexity") == "log"
    low, high = axes[0].get_ylim()
    assert low < 73 and high > 2.1e8 and axes[0].get_ylabel() == "word perplexity (log scale)"
    assert value_axis(axes[1], [-3.0, 0.0, 0.01, 5.0], "x", "damage") == "symlog"
    assert axes[1].get_xscale() == "symlog" and axes[1].get_xlabel() == "damage (symmetric log scale)"
    assert value_axis(axes[1], [-2e-16, 0.05, 0.2], "x", "d") == "symlog"
    assert axes[1].xaxis.get_transform().linthresh == pytest.approx(0.2 / 1e4)  # rounding noise stays linear
    assert value_axis(axes[2], [0.5, 0.7, 49.0, np.nan, np.inf], "y", "acc") == "linear" and axes[2].get_yscale() == "linear"
    assert value_axis(axes[3], [], "y", "empty") == "linear"
    assert value_axis(axes[3], [5e-324, 1.0, 1.7e308], "y", "float range") == "log"
    assert axes[3].get_ylim() == pytest.approx((0.5e-100, 2e100))  # wider spans overflow the log tick locator
    plt.close(fig)


def test_every_bar_and_point_figure_chooses_its_scale_from_its_data(tmp_path, monkeypatch):
    from fnet_dist.evaluate import figures
    from report_fixtures import _rows

    scales = []
    monkeypatch.setattr(figures, "value_axis", lambda *a: scales.append((a[3], value_axis(*a))) or scales[-1][1])
    rows = _rows(np.random.default_rng(0))
    figures.perplexity_bars(rows, tmp_path / "f2.png", task="wiki_ppl", corpus="news")
    figures.score_changes(rows, tmp_path / "f3.png", ["inhibit:news/1", "inhibit:news/10"])
    assert scales == [("Wiki: word perplexity", "log"), ("score − normal\n(accuracy, MCC or F1)", "linear")]


def test_wide_tables_fold_their_less_needed_columns_and_long_ones_collapse():
    wide = pd.DataFrame({f"column_{i:02d}": np.arange(30.0) * 1e6 + i for i in range(24)})
    wide.insert(3, "p_value", 0.01)
    text = table_html(wide, "wide", "t-wide", key=["p_value", "column_20"])
    head = text[text.index("<thead>"):text.index("</thead>")]
    assert head.index("p value") < head.index("column 20") < head.index("column 00")  # key columns first
    assert "other columns" in head and "column 23" not in head  # the rest fold into a details cell
    assert text.count("<details>") == 30 and "<dt>column 23</dt>" in text
    assert text.count('<tr class=more>') == 30 - MAX_ROWS and 'Show all 30 rows' in text
    short = table_html(wide.head(3).iloc[:, :4], None, "t-short")
    assert "<details>" not in short and "<input" not in short
    with pytest.raises(ValueError, match=r"key columns \['p'\] are not in the table 'wide'"):
        table_html(wide, "wide", "t", key=["p"])


def test_findings_json_is_read_and_rendered_with_links(tmp_path):
    path = tmp_path / "findings.json"
    path.write_text(json.dumps({"findings": [_FULL, {"claim": "Templates recur.", "verdict": "not_applicable"}]}))
    findings = read_findings(path)
    assert [f["id"] for f in findings] == ["controls-news-1", "2"] and findings[1]["verdict"] == "not applicable"
    fragment = findings_html(findings, lambda f: [("controls", "table-controls")] if f.get("tables") else [])
    assert '<tr id="finding-controls-news-1">' in fragment and '<a href="#table-controls">controls</a>' in fragment
    assert "-0.18 [-0.25, -0.11] accuracy" in fragment and "0.004 (α 0.05)" in fragment
    assert "19 draws, 60 examples" in fragment and "Holm across" in fragment
    path.write_text(json.dumps([{"claim": "c", "verdict": "maybe"}]))
    with pytest.raises(InputError, match="finding 1 of .* has verdict 'maybe'; expected one of holds, fails"):
        read_findings(path)
    path.write_text("{")
    with pytest.raises(InputError, match="is not a readable findings JSON file"):
        read_findings(path)


def test_findings_link_to_the_tables_and_figures_the_page_shows(tmp_path, png):
    from fnet_dist.report.build import _Files

    files, page = _Files(tmp_path / "report", {"inhibit:news/1": "news/1"}), Page("links")  # labels: from result rows
    files.table(page, pd.DataFrame({"network": ["inhibit:news/1"], "task": ["sentiment_rt"], "p_value": [0.01]}), "controls")
    files.table(page, pd.DataFrame({"network": ["inhibit:news/1"], "neurons": [10]}).set_index("network"),
                "table3_networks", "table3_networks_news")
    for stem in ("controls_sentiment_rt", "controls_wiki_ppl", "figure2_perplexity_news_wiki_ppl"):
        files.figure(page, png.rename(tmp_path / f"{stem}.png"), "evaluate_")
        png = tmp_path / f"{stem}.png"
    assert files.links(_FULL) == [("controls", "table-controls"), ("Table 3 (news)", "table-table3_networks_news"),
                                  ("controls figure (sentiment_rt)", "figure-controls_sentiment_rt")]
    no_figures = {k: v for k, v in _FULL.items() if k not in ("figures", "anchors")}  # figures drawn from its tables
    assert [label for label, _ in files.links(no_figures)] == [
        "controls", "Table 3 (news)", "controls figure (sentiment_rt)", "controls figure (wiki_ppl)",
        "Figure 2 (news_wiki_ppl)"]
    of_task = {"id": "small-networks/wiki_ppl", "tables": ["evaluate/controls/tables/controls.csv"]}  # issue 13's record
    assert files.links(of_task) == [("controls", "table-controls"), ("controls figure (wiki_ppl)", "figure-controls_wiki_ppl")]
    html_text = page.render()
    assert '<div class="tbl" id="table-controls">' in html_text and '<figure id="figure-controls_wiki_ppl">' in html_text
    assert "<td class=t>news/1</td>" in html_text and "inhibit:news/1" not in html_text


def test_page_renders_with_images_tables_and_escaped_text(tmp_path, png):
    page = Page("Run <default>")
    page.section("Tables").table(pd.DataFrame({"task": ["a<b"], "acc": [0.5]}), caption="caption & more")
    page.section("Figures").image(png, caption="a line")
    records = [Finding("a/b", "claim <x>", "holds", reason="because 1 < 2").to_dict(),
               Finding("other", "other", "not applicable", reason="no").to_dict()]
    (tmp_path / "findings.json").write_text(json.dumps({"findings": records}))
    page.section("Findings", anchor="findings").raw(findings_html(read_findings(tmp_path / "findings.json"), lambda f: []))
    out = tmp_path / "index.html"
    out.write_text(page.render())
    check = inspect_page(out)
    assert check.title == "Run <default>"
    assert check.images == 1 and check.images_loaded == 1
    assert check.console_errors == []
    assert "a<b" in check.text and "claim <x>" in check.text and "HOLDS" in check.text and "NOT APPLICABLE" in check.text
    assert 'id="finding-a-b"' in out.read_text() and anchor_id("finding-a/b") == "finding-a-b"


def test_a_broken_image_is_seen_by_the_browser_check(tmp_path):
    out = tmp_path / "broken.html"
    out.write_text('<html><head><title>t</title></head><body><img src="missing.png"><script>console.error("boom")</script></body></html>')
    check = inspect_page(out)
    assert check.images == 1 and check.images_loaded == 0
    assert any("boom" in e for e in check.console_errors)


def test_finding_verdicts_are_checked():
    with pytest.raises(InputError, match="verdict 'maybe' must be one of"):
        Finding.from_dict({"id": "c", "claim": "c", "verdict": "maybe"})


def test_provenance_shows_each_stage_time_and_their_total():
    from fnet_dist.core.config import load_config
    from fnet_dist.report.build import _provenance

    page = Page("run")
    record = {"stages": {"record": {"status": "done", "seconds": 100.0, "hash": "a"},
                         "decompose": {"status": "done", "seconds": 50.5, "hash": "b"},
                         "match": {"status": "running", "hash": "c"}}}
    _provenance(page, load_config("pipeline/default.yaml"), None, record)
    text = page.render()
    assert "stage record" in text and "100.0 s" in text and "50.5 s" in text and "stage match" not in text
    assert "150.5 s (2.5 min)" in text


def test_report_fits_1280_px_and_links_its_findings(tmp_path):
    """A synthetic run's report at 1,280 × 800: nothing in Findings, Editing and Controls is cut off (details
    closed and open), every image loads, every finding links to an element, show-all controls work.
    Screenshots of the three sections go to $FNET_TEST_ARTIFACTS (else the test's tmp folder)."""
    config, layout = synthetic_run(tmp_path / "run")
    index = build_report(config, layout)
    page = Page("wide tables")  # a page of the tables the synthetic run does not have: very wide, very long
    wide = pd.DataFrame({f"a_long_column_name_{i}": np.linspace(1, 2e7, 45) for i in range(20)})
    page.section("Wide", anchor="wide").table(wide, "wide and long", anchor="table-wide", key=["a_long_column_name_19"])
    (tmp_path / "wide.html").write_text(page.render())
    shots = Path(os.environ.get("FNET_TEST_ARTIFACTS", tmp_path / "screenshots"))
    check = inspect_layout(index, ["findings", "editing", "controls"], shots)
    assert check.missing_sections == [] and check.overflows == [] and check.console_errors == []
    assert check.broken_images == [] and check.broken_links == []
    assert check.finding_links and all(n >= 1 for n in check.finding_links.values())
    assert check.expanders and all(before == MAX_ROWS and after == total for before, after, total in check.expanders)
    for section, path in check.screenshots.items():
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        print(f"screenshot of {section}: {path}")
    assert set(check.screenshots) == {"findings", "editing", "controls"}
    html = index.read_text()
    assert "inhibit:news/" not in html and "→" not in html  # one name per network: news/5
    assert 'id="table-counterparts_null"' in html and 'id="table-recurrence"' in html
    assert "<td class=t>news/1</td>" in html and "news/0" not in html  # anatomy numbers templates from 1, too
    recorded = json.loads((layout.report.folder / "findings.json").read_text())["findings"]
    tested = [f for f in recorded if f["effect"] is not None and f["p_value"] is not None]
    assert len(tested) >= 8 and {f["verdict"] for f in recorded} >= {"fails", "unclear"}
    for f in tested:  # the effect, p-value and draws or examples of findings.json, in the finding's row
        row = html.split(f'<tr id="{anchor_id("finding-" + f["id"])}">', 1)[1].split("</tr>", 1)[0]
        low, high = ("–" if v is None else f"{v:.3g}" for v in f["interval"])   # no interval: a dash
        assert f"{f['effect']:.3g} [95 %: {low}, {high}]" in row
        fail = f"; equivalence p {f['p_fail']:.3g}" if f.get("p_fail") is not None else ""
        assert f"<td>{f['p_value']:.3g} (uncorrected {f['p_raw']:.3g}; α 0.05{fail})</td>" in row
        assert f"{f['n_draws'] or f['n_examples']} {'draws' if f['n_draws'] else 'examples'}" in row
    wide_check = inspect_layout(tmp_path / "wide.html", ["wide"], shots / "wide")
    assert wide_check.overflows == [] and wide_check.expanders == [(MAX_ROWS, 45, 45)]
