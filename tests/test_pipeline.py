"""End to end: ``fnet run pipeline/default.yaml`` at a reduced size, on the real packaged SmolLM2 and text.

The run goes record → decompose → match (+ anatomy) → evaluate (+ controls) → report; the report opens in
a real headless browser with every image loaded and no console error; a second run is all cached; a
changed match setting reruns only match and what follows.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from browser import inspect_page

ROOT = Path(__file__).parents[1]
REDUCED = [
    "corpora={news: offline:news, code: offline:code}",
    "record.group_samples=5", "record.individual_samples=5", "record.max_tokens=48", "record.min_tokens=8",
    "decompose.components=6", "decompose.group_components=4", "decompose.n_init=2",
    "evaluate.tasks=[sentiment_rt, wiki_ppl]", "evaluate.limit=6", "evaluate.localizer_stimuli=16",
    "evaluate.probe_texts=20", "evaluate.controls.draws=2", "evaluate.controls.networks=1",
    "evaluate.controls.kinds=[fraction, matched_avoid_massive]", "report.explain_texts=1",
]


def _run(out: Path, *extra: str) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "fnet_dist", "run", str(ROOT / "pipeline" / "default.yaml"), "--out", str(out)]
    for override in [*REDUCED, *extra]:
        args += ["--set", override]
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=1500)


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    done = _run(out)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out, done.stdout


@pytest.mark.slow
def test_every_stage_runs_and_the_report_renders(run_folder):
    out, stdout = run_folder
    record = json.loads((out / "run.json").read_text())
    assert [s for s, v in record["stages"].items() if v["status"] == "done"] == ["record", "decompose", "match", "evaluate", "report"]
    consistency = pd.read_csv(out / "match" / "consistency.csv")
    assert set(consistency["dataset"]) == {"news", "code"} and len(consistency) == 8
    assert (out / "match" / "massive_channels.csv").is_file()
    results = pd.read_csv(out / "evaluate" / "results.csv")
    assert {"normal", "inhibit:news/1", "random15:seed0", "top5:inhibit", "localization:inhibit"} <= set(results["condition"])
    assert (out / "evaluate" / "controls" / "tables" / "controls.csv").is_file()
    page = inspect_page(out / "report" / "index.html")
    assert page.console_errors == []
    assert page.images >= 3 and page.images_loaded == page.images
    for heading in ("Findings", "Consistency", "Anatomy", "Editing", "Token attribution"):
        assert heading in page.text, heading
    assert "HOLDS" in page.text or "FAILS" in page.text or "UNCLEAR" in page.text
    assert "report:" in stdout
    assert (out / "match" / "counterparts_null.csv").is_file() and (out / "match" / "recurrence.csv").is_file()
    assert json.loads((out / "evaluate" / "controls" / "selection.json").read_text())["networks"]
    recorded = json.loads((out / "report" / "findings.json").read_text())
    html = (out / "report" / "index.html").read_text()
    assert {"counterparts", "recurrence", "amplification"} <= {f["id"] for f in recorded["findings"]}
    for finding in recorded["findings"]:
        assert f'id="finding-{finding["id"].replace("/", "-")}"' in html and finding["claim"] in page.text
        if finding["verdict"] == "holds":   # the rule, on the real run
            assert finding["p_value"] <= finding["alpha"] and finding["interval"][0] > 0, finding


@pytest.mark.slow
def test_a_rerun_is_cached_and_a_change_reruns_only_downstream(run_folder):
    out, _ = run_folder
    again = _run(out)
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.count(": cached") == 5
    changed = _run(out, "match.iou=0.3", "evaluate.enabled=false")
    assert changed.returncode == 0, changed.stderr[-2000:]
    assert "record: cached" in changed.stdout and "decompose: cached" in changed.stdout
    assert "match: done" in changed.stdout and "report: done" in changed.stdout
