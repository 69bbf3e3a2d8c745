"""One writer per output, with real concurrent processes, on a local disk and on the loopback S3 server.

A holder process takes an output's lock and waits; every fnet command pointed at that output is refused in one
line (exit 1) naming the holder's pid, host and command, before any work, and the output is untouched. Two
real ``fnet match`` runs on one ``--out`` (the first frozen with SIGSTOP while it holds the lock, so the order is
certain): the second is refused, the first finishes whole. A holder killed with SIGKILL leaves a stale lock the
next writer takes over. Shards of one output share it; a whole writer and a shard exclude each other. On S3 the
lock is a conditional write: a fresh one of another host is respected, a stale one is taken over, and a holder
whose lock was taken over fails at the end instead of reporting success.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from networks_fixtures import networks_dataset, planted_networks, write_networks
from s3_server import s3_endpoint  # noqa: F401  (the fixture)

from fnet_dist.core.errors import EnvironmentFailure
from fnet_dist.store.locks import OutputBusy, holds_lock, lock_url, output_lock, stale_reason

ROOT = Path(__file__).resolve().parents[1]
PYTHONPATH = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])


def _env() -> dict[str, str]:
    """This process's environment (an S3 fixture's endpoint included) with this checkout first on the path."""
    return {**os.environ, "PYTHONPATH": PYTHONPATH}
HOLDER = """
import sys
from fnet_dist.store.locks import output_lock
with output_lock(sys.argv[1], part=sys.argv[2] or None):
    print("held", flush=True)
    sys.stdin.readline()
"""


def _hold(url: str, part: str = "") -> subprocess.Popen:
    """A process holding the lock of ``url`` (``part``: a shard's) until its stdin gets a line."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, url, part], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_env())
    line = proc.stdout.readline()
    assert line.strip() == "held", proc.stderr.read()
    return proc


def _release(proc: subprocess.Popen) -> None:
    proc.stdin.write("\n")
    proc.stdin.flush()
    assert proc.wait(timeout=60) == 0


def _fnet(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fnet_dist", *args], capture_output=True, text=True, timeout=600,
                          env={**_env(), **(env or {})}, cwd=ROOT, check=False)


@pytest.fixture(scope="module")
def networks(tmp_path_factory) -> list[str]:
    folder = tmp_path_factory.mktemp("networks")
    urls = []
    for corpus, seed in (("news", 0), ("code", 1)):
        planted = planted_networks(seed=seed)
        urls.append(write_networks(networks_dataset(planted.group_map, planted.individual_map, corpus=corpus),
                                   folder / f"{corpus}.zarr"))
    return urls


def _refused_by(done: subprocess.CompletedProcess, holder: subprocess.Popen) -> str:
    """The one error line of a command refused because ``holder`` holds the lock."""
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1 and len(lines) == 1, done.stderr[-3000:]
    assert f"pid {holder.pid} on host {socket.gethostname()}" in lines[0] and "being written" in lines[0]
    return lines[0]


def test_every_writer_is_refused_while_another_process_holds_the_output(networks, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "fnet-output.json").write_text('{"kind": "match"}\n')
    before = sorted(p.name for p in tmp_path.iterdir())
    holder = _hold(str(out))
    try:
        for args in (["match", *networks, "--out", str(out), "--no-anatomy", "--overwrite"],
                     ["decompose", networks[0], "--out", str(out)],
                     ["record", "--model", "smollm2-135m-instruct", "--corpus", "offline:news", "--out", str(out)],
                     ["run", str(ROOT / "pipeline" / "smoke.yaml"), "--out", str(out)]):
            line = _refused_by(_fnet(*args), holder)
            assert f"-c {out}" in line  # the holder's command
    finally:
        _release(holder)
    assert sorted(p.name for p in tmp_path.iterdir()) == before and (out / "fnet-output.json").exists()


def test_two_concurrent_fnet_match_on_one_out_one_finishes_whole_the_other_is_refused(networks, tmp_path):
    out = tmp_path / "m"
    first = subprocess.Popen([sys.executable, "-m", "fnet_dist", "match", *networks, "--out", str(out), "--no-anatomy",
                              "--overwrite", "--iou", "0.5"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=_env(), cwd=ROOT)
    lock = Path(lock_url(str(out)))
    while not (lock.exists() and f'"pid": {first.pid}' in lock.read_text()):  # until the first holds the lock
        assert first.poll() is None, first.stderr.read()
        time.sleep(0.05)
    first.send_signal(signal.SIGSTOP)  # frozen while it holds the lock: the order of the two is certain
    try:
        second = _fnet("match", *networks, "--out", str(out), "--no-anatomy", "--overwrite")
    finally:
        first.send_signal(signal.SIGCONT)
    _refused_by(second, first)
    _, stderr = first.communicate(timeout=600)
    assert first.returncode == 0, stderr[-3000:]
    written = json.loads((out / "results.json").read_text())["files"]
    assert len(written) >= 8 and all((out / name).is_file() for name in written.values())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no staging or lock left behind


def test_a_killed_holders_lock_is_taken_over_by_the_next_writer(networks, tmp_path, caplog):
    out = str(tmp_path / "m")
    holder = _hold(out)
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=60)
    assert Path(lock_url(out)).exists()  # the killed process's lock file is left …
    with output_lock(out) as held:  # … and taken: the system released the dead process's lock
        assert held.replaced["pid"] == holder.pid and holds_lock(out)
    assert "took over the lock" in caplog.text and not Path(lock_url(out)).exists()
    done = _fnet("match", *networks, "--out", out, "--no-anatomy")
    assert done.returncode == 0, done.stderr[-3000:]


def test_shards_share_an_output_and_exclude_a_whole_writer(tmp_path):
    out = str(tmp_path / "store")
    shards = [_hold(out, f"record-{i}-of-2") for i in range(2)]  # two shards hold it together
    try:
        with pytest.raises(OutputBusy, match=rf"being written in shards by another fnet process \(pid ({shards[0].pid}|"
                                             rf"{shards[1].pid}) on host"), output_lock(out):
            pass
    finally:
        for proc in shards:
            _release(proc)
    whole = _hold(out)
    try:
        with pytest.raises(OutputBusy, match=rf"being written whole by another fnet process \(pid {whole.pid}"), \
                output_lock(out, part="record-0-of-2"):
            pass
    finally:
        _release(whole)
    with output_lock(out), output_lock(out), output_lock(out, part="record-0-of-2"):  # re-entrant in a process; a
        assert holds_lock(out)  # shard's lock inside a whole writer's is covered by it
    assert not holds_lock(out) and sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_lock_beside_a_bucket_root_or_the_file_system_root_is_refused():
    from fnet_dist.core.errors import InputError

    for url in ("s3://bucket", "/"):
        with pytest.raises(InputError, match="is not a folder or store inside a folder"):
            lock_url(url)


def test_staleness_rule():
    here = {"host": socket.gethostname(), "pid": os.getpid()}
    assert stale_reason(here, age=10_000) == "not refreshed for 10000 s"
    assert stale_reason(here, age=1) is None  # this very process: alive
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    assert stale_reason({**here, "pid": int(dead.stdout)}, age=1) == f"its process (pid {int(dead.stdout)}) is gone"
    assert stale_reason({"host": "another-host", "pid": 1}, age=1) is None  # another host's process: by age only


# --- object storage ---------------------------------------------------------------------------------------

def test_s3_second_writer_refused_then_a_killed_holder_taken_over(s3_endpoint, networks, tmp_path):  # noqa: F811
    import s3fs

    out = s3_endpoint.url("runs/m")
    holder = _hold(out)
    try:
        line = _refused_by(_fnet("match", *networks, "--out", out, "--no-anatomy"), holder)
        assert out in line
    finally:
        holder.send_signal(signal.SIGKILL)  # killed holding it: its lock object stays
        holder.wait(timeout=60)
    fs = s3fs.S3FileSystem(endpoint_url=s3_endpoint.endpoint_url)
    assert fs.exists(lock_url(out).removeprefix("s3://"))
    done = _fnet("match", *networks, "--out", out, "--no-anatomy")  # same host, pid gone: stale, taken over
    assert done.returncode == 0, done.stderr[-3000:]
    assert "took over the lock" in done.stderr and f"pid {holder.pid}" in done.stderr
    fs.invalidate_cache()
    assert fs.exists(f"{s3_endpoint.bucket}/runs/m/results.json")
    assert not fs.exists(lock_url(out).removeprefix("s3://"))  # released: the conditional delete of our version


def test_s3_a_fresh_lock_of_another_host_is_respected_until_stale(s3_endpoint):  # noqa: F811
    import s3fs

    out = s3_endpoint.url("runs/other")
    fs = s3fs.S3FileSystem(endpoint_url=s3_endpoint.endpoint_url)
    record = {"pid": 1, "host": "pod-elsewhere", "started": "2026-01-01T00:00:00+00:00", "command": "fnet run x",
              "token": "theirs"}
    fs.pipe_file(lock_url(out).removeprefix("s3://"), json.dumps(record).encode(), mode="create")
    with pytest.raises(OutputBusy, match=r"pid 1 on host pod-elsewhere since 2026-01-01T00:00:00\+00:00: fnet run x"), \
            output_lock(out):
        pass
    time.sleep(1.5)  # no refresh from its holder for longer than the (shortened) staleness limit below
    with output_lock(out, stale_after=1.0) as held:
        assert held.replaced == record


def test_s3_a_holder_whose_lock_was_taken_over_fails_at_the_end(s3_endpoint):  # noqa: F811
    import boto3

    out = s3_endpoint.url("runs/lost")
    client = boto3.client("s3", endpoint_url=s3_endpoint.endpoint_url)
    key = lock_url(out).removeprefix(f"s3://{s3_endpoint.bucket}/")
    with pytest.raises(EnvironmentFailure, match="was taken over by pid 7 on host pod-b"), output_lock(out, refresh=0.2):
        # another process judged it stale and replaced it (as after a stall longer than STALE_SECONDS)
        client.put_object(Bucket=s3_endpoint.bucket, Key=key, Body=json.dumps(
            {"pid": 7, "host": "pod-b", "started": "2026-01-01T00:00:00+00:00", "token": "b"}).encode())
        time.sleep(1.0)  # the holder's next refresh finds another version
    body = json.loads(client.get_object(Bucket=s3_endpoint.bucket, Key=key)["Body"].read())
    assert body["pid"] == 7  # the new holder's lock is left alone


def test_processes_taking_one_lock_at_once_exactly_one_wins(tmp_path):
    out = str(tmp_path / "race")
    code = ("import sys, time\nfrom fnet_dist.store.locks import output_lock, OutputBusy\n"
            "time.sleep(max(0.0, float(sys.argv[2]) - time.time()))\n"
            "try:\n    with output_lock(sys.argv[1]):\n        print('won', flush=True); sys.stdin.readline()\n"
            "except OutputBusy:\n    print('refused', flush=True)\n")
    start = f"{time.time() + 3:.3f}"  # all try at about the same moment; the winner holds until told
    procs = [subprocess.Popen([sys.executable, "-c", code, out, start], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, env=_env()) for _ in range(4)]
    results = [p.stdout.readline().strip() for p in procs]
    for p in procs:
        p.communicate("\n", timeout=120)
    assert sorted(results) == ["refused", "refused", "refused", "won"]
    assert all(p.returncode == 0 for p in procs) and not Path(lock_url(out)).exists()
