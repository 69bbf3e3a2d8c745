"""The report page renders in a real browser: images load, text is escaped, no console errors."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import pytest

from fnet_dist.report.page import Page, anchor_id
from fnet_dist.stats import Finding

from browser import inspect_page


@pytest.fixture()
def png(tmp_path):
    path = tmp_path / "figure.png"
    fig, ax = plt.subplots(figsize=(2, 1.5))
    ax.plot([0, 1], [1, 0])
    fig.savefig(path)
    plt.close(fig)
    return path


def test_page_renders_with_images_tables_and_escaped_text(tmp_path, png):
    page = Page("Run <default>")
    page.section("Tables").table(pd.DataFrame({"task": ["a<b"], "acc": [0.5]}), caption="caption & more")
    page.section("Figures").image(png, caption="a line")
    page.findings([Finding("a/b", "claim <x>", "holds", reason="because 1 < 2").to_dict(),
                   Finding("other", "other", "not applicable", reason="no").to_dict()])
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
    from fnet_dist.errors import InputError

    with pytest.raises(InputError, match="verdict 'maybe' must be one of"):
        Finding.from_dict({"id": "c", "claim": "c", "verdict": "maybe"})


def test_provenance_shows_each_stage_time_and_their_total():
    from fnet_dist.config import load_config
    from fnet_dist.report.build import _provenance

    page = Page("run")
    record = {"stages": {"record": {"status": "done", "seconds": 100.0, "hash": "a"},
                         "decompose": {"status": "done", "seconds": 50.5, "hash": "b"},
                         "match": {"status": "running", "hash": "c"}}}
    _provenance(page, load_config("pipeline/default.yaml"), None, record)
    text = page.render()
    assert "stage record" in text and "100.0 s" in text and "50.5 s" in text and "stage match" not in text
    assert "150.5 s (2.5 min)" in text
