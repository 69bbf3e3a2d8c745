"""End to end on ``pipeline/smoke.yaml`` (the packaged SmolLM2 and text at a toy size).

The run goes record → decompose → match (+ anatomy) → evaluate → controls → nulls (the random-initialised twin
through record, decompose and match) → report; the report opens in a
real headless browser; a second run is all cached; a changed match setting reruns only match and what
follows. And the same config run stage by stage the way Kubernetes runs it — record, evaluate and controls
as two concurrent shard processes, decompose and match on a cluster started with the ``dask scheduler`` /
``dask worker`` command-line tools, the stores on a loopback S3 server, then the report stage — gives the
same tables and findings as the single ``fnet run``.
"""
from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from browser import inspect_page
from runs import differences, run_results
from s3_server import s3_endpoint  # noqa: F401  (the fixture)

from fnet_dist.report.page import anchor_id

ROOT = Path(__file__).parents[1]
SMOKE = ROOT / "pipeline" / "smoke.yaml"
STAGES = ["record", "decompose", "match", "evaluate", "controls", "nulls", "report"]


def _fnet(*args: str) -> list[str]:
    return [sys.executable, "-m", "fnet_dist", *args]


def _run(out: Path, *extra: str) -> subprocess.CompletedProcess:
    args = _fnet("run", str(SMOKE), "--out", str(out))
    for override in extra:
        args += ["--set", override]
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def run_folder(smoke_run):
    return smoke_run  # one smoke run per session (tests/conftest.py), shared with the API, notebook and docs tests


@pytest.mark.slow
def test_every_stage_runs_and_the_report_renders(run_folder):
    out, done = run_folder
    record = json.loads((out / "run.json").read_text())
    assert [s for s, v in record["stages"].items() if v["status"] == "done"] == STAGES
    consistency = pd.read_csv(out / "match" / "consistency.csv")
    assert set(consistency["corpus"]) == {"news", "code"}
    assert (out / "match" / "massive_mask.npy").is_file()  # anatomy is the match stage's
    results = pd.read_csv(out / "evaluate" / "results.csv")
    assert {"kind", "corpus", "template", "edit", "factor"} <= set(results.columns)
    networks = results[results["kind"] == "network"]
    assert set(networks["corpus"]) == {"news"} and set(networks["template"].dropna()) == {1.0, 2.0}
    assert (out / "evaluate" / "controls" / "tables" / "controls.csv").is_file()
    assert "INFO distributed" not in done.stdout + done.stderr  # quiet unless -v
    page = inspect_page(out / "report" / "index.html")
    assert page.console_errors == []
    assert page.images >= 3 and page.images_loaded == page.images
    for heading in ("Findings", "Consistency", "Anatomy", "Editing"):
        assert heading in page.text, heading
    assert "HOLDS" in page.text or "FAILS" in page.text or "UNCLEAR" in page.text
    assert "report:" in done.stdout
    assert (out / "match" / "counterparts_null.csv").is_file() and (out / "match" / "recurrence.csv").is_file()
    selection = json.loads((out / "evaluate" / "controls" / "selection.json").read_text())
    assert selection["networks"] and selection["declared"]["networks"] == 1   # declared before any evaluation
    assert set(np.load(out / "match" / "channel_stats.npz")) == {f"{s}/{c}" for s in ("mean_abs", "kurtosis") for c in ("news", "code")}
    drawn = pd.read_csv(out / "evaluate" / "controls" / "results.csv")
    assert set(drawn["control"].dropna()) == {"fraction", "matched_activation", "matched_avoid_massive"} or \
        set(drawn["control"].dropna()) == {"fraction", "matched_activation"}     # avoid-massive: only with massive neurons
    recorded = json.loads((out / "report" / "findings.json").read_text())
    html = (out / "report" / "index.html").read_text()
    assert {"counterparts", "recurrence", "reproducibility", "amplification@news", "counterparts-vs-random-init",
            "recurrence-vs-random-init", "reproducibility-vs-random-init"} <= {f["id"] for f in recorded["findings"]}
    twin = json.loads((out / "nulls" / "random-init" / "run.json").read_text())   # the twin: the same registry's stages
    assert [s for s, v in twin["stages"].items() if v["status"] == "done"] == ["record", "decompose", "match"]
    assert (out / "nulls" / "random-init" / "match" / "counterpart_samples.csv").is_file()
    for name in ("split_halves.csv", "split_null.csv", "recurrence_null.csv"):
        assert (out / "match" / name).is_file(), name
    for finding in recorded["findings"]:
        assert f'id="{anchor_id("finding-" + finding["id"])}"' in html and finding["claim"] in page.text
        if finding["verdict"] == "holds":   # the rule, on the real run
            assert finding["p_value"] <= finding["alpha"] and finding["interval"][0] > 0, finding


@pytest.mark.slow
def test_a_rerun_is_cached_and_a_change_reruns_only_downstream(run_folder, tmp_path):
    out = tmp_path / "copy"  # the shared run folder stays as the smoke config made it
    shutil.copytree(run_folder[0], out)
    plan = subprocess.run(_fnet("run", str(SMOKE), "--out", str(out), "--dry-run"), cwd=ROOT, capture_output=True,
                          text=True, timeout=300, check=False)
    assert plan.returncode == 0 and plan.stdout.count(" reuse ") == len(STAGES), plan.stdout + plan.stderr
    assert "time: nothing to run" in plan.stdout
    again = _run(out)
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.count(": cached") == len(STAGES)
    changed = _run(out, "match.iou=0.3", "evaluate.enabled=false")
    assert changed.returncode == 0, changed.stderr[-2000:]
    assert "record: cached" in changed.stdout and "decompose: cached" in changed.stdout
    assert "match: done" in changed.stdout and "report: done" in changed.stdout


@pytest.mark.slow
def test_a_stage_recorded_as_done_whose_outputs_are_gone_runs_again(run_folder, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(run_folder[0], out)
    (out / "match" / "consistency.csv").unlink()  # what a second writer's cleanup left (issue 31)
    again = _run(out)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"match: recorded as done for this config, but {out / 'match' / 'consistency.csv'} is missing: running it " \
           f"again" in again.stdout
    assert again.stdout.count(": cached") == len(STAGES) - 1 and (out / "match" / "consistency.csv").is_file()
    assert differences(run_results(run_folder[0]), run_results(out)) == []


@pytest.mark.slow
def test_two_concurrent_runs_on_one_folder_one_runs_the_other_is_refused(run_folder, tmp_path):
    out = tmp_path / "run"
    first = subprocess.Popen(_fnet("run", str(SMOKE), "--out", str(out)), cwd=ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    lock = tmp_path / ".run.fnet-lock"
    while not (lock.exists() and f'"pid": {first.pid}' in lock.read_text()):  # until the first holds the folder
        assert first.poll() is None, first.communicate()[1][-3000:]
        time.sleep(0.05)
    first.send_signal(signal.SIGSTOP)  # frozen while holding it: the second surely starts while the first runs
    try:
        second = _run(out)
    finally:
        first.send_signal(signal.SIGCONT)
    errors = [line for line in second.stderr.splitlines() if line.startswith("error:")]
    assert second.returncode == 1 and len(errors) == 1 and "Traceback" not in second.stderr, second.stderr[-3000:]
    assert f"is being written by another fnet process (pid {first.pid} on host" in errors[0]
    assert "[1/" not in second.stdout
    stdout, stderr = first.communicate(timeout=900)
    assert first.returncode == 0, stdout[-2000:] + stderr[-2000:]
    assert differences(run_results(run_folder[0]), run_results(out)) == []  # the finished run equals a solo run


def _shards(stage: str, out: Path, stores: str, count: int = 2) -> None:
    """``count`` concurrent shard processes of ``stage``, as an Indexed Job's pods run them."""
    common = ["run", str(SMOKE), "--out", str(out), "--set", f"stores={stores}", "--stages", stage]
    procs = [subprocess.Popen(_fnet(*common, "--index", str(i), "--count", str(count)), cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(count)]
    for proc in procs:
        output, _ = proc.communicate(timeout=900)
        assert proc.returncode == 0, f"{stage} shard: {output[-3000:]}"


def _stage(stage: str, out: Path, stores: str, *extra: str) -> None:
    done = subprocess.run(_fnet("run", str(SMOKE), "--out", str(out), "--set", f"stores={stores}", "--stages", stage,
                                *extra), cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{stage}: {done.stdout[-2000:]}{done.stderr[-2000:]}"


def _dask_cluster(folder: Path):
    """A scheduler and one worker of two processes, started with Dask's own command-line tools."""
    bin_dir = Path(sys.executable).parent
    dask = str(bin_dir / "dask") if (bin_dir / "dask").exists() else "dask"
    scheduler_file = folder / "scheduler.json"
    scheduler = subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--dashboard-address", ":0",
                                  "--scheduler-file", str(scheduler_file)], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
    worker = subprocess.Popen([dask, "worker", "--scheduler-file", str(scheduler_file), "--nworkers", "2",
                               "--nthreads", "1", "--dashboard-address", ":0", "--local-directory", str(folder)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not scheduler_file.exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    address = json.loads(scheduler_file.read_text())["address"]
    from distributed import Client

    with Client(address, timeout=60) as client:
        client.wait_for_workers(2, timeout=120)
    return address, (worker, scheduler)


@pytest.mark.slow
@pytest.mark.timeout(1800)  # a whole second run in seven steps: ~4 minutes on 2 idle cores
def test_stage_by_stage_like_kubernetes_equals_one_fnet_run(run_folder, s3_endpoint, tmp_path):  # noqa: F811
    single, _ = run_folder
    out, stores = tmp_path / "k8s", s3_endpoint.url("run")
    _shards("record", out, stores)
    address, processes = _dask_cluster(tmp_path)
    try:
        for stage in ("decompose", "match", "nulls"):  # DaskJobs on the one cluster
            _stage(stage, out, stores, "--scheduler", address)
    finally:
        for proc in processes:
            proc.terminate()
            proc.wait(timeout=60)
    _shards("evaluate", out, stores)
    _shards("controls", out, stores)
    _stage("report", out, stores)
    mine, theirs = run_results(out), run_results(single)
    assert len(mine) > 15 and differences(theirs, mine) == []  # conditions as records on both sides
    assert not (out / "activations").exists() and not (out / "networks").exists()  # the stores went to S3
