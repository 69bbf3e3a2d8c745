"""Every failure class a user met is one line, without a traceback: exit 2 for bad input, 1 for the environment.

``fnet run`` checks what it can before its first stage and before any model loads, and reports every problem
at once (an unknown lm-eval task, corpus files missing, empty or corrupt, object storage refusing the
credentials, not enough disk for the planned stores); ``fnet record`` reads its corpus before the model. A
read-only ``--out`` and a full disk (a real tmpfs of a few KiB in a private mount namespace, and a file size
limit) are one line (exit 1) for each command that writes; ``gs://`` without gcsfs or without any Google
credentials is one line at once, not a minute of retries.
"""
from __future__ import annotations

import os
import resource
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from networks_fixtures import networks_dataset, planted_networks, write_networks
from s3_server import s3_endpoint  # noqa: F401  (the fixture)

from fnet_dist import cli
from fnet_dist.store import locations

ROOT = Path(__file__).resolve().parents[1]
SMOKE = str(ROOT / "pipeline" / "smoke.yaml")
PYTHONPATH = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])


def one_error(err: str) -> str:
    """The single ``error:`` line of a command's stderr (a progress bar may share stderr); never a traceback."""
    assert "Traceback" not in err, err[-3000:]
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err[-3000:]
    return lines[0]


@pytest.fixture(scope="module")
def networks(tmp_path_factory) -> str:
    truth = planted_networks(seed=0)
    return write_networks(networks_dataset(truth.group_map, truth.individual_map), tmp_path_factory.mktemp("n") / "n.zarr")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("corpus") / "texts.txt"
    path.write_text("\n".join(f"Text number {i} talks about the weather, the market and the game." for i in range(12)))
    return str(path)


# --- fnet run: everything checked before the first stage -----------------------------------------------------

def test_run_reports_every_bad_input_at_once_before_any_stage(tmp_path, capsys):
    empty, corrupt = tmp_path / "empty.jsonl", tmp_path / "corrupt.parquet"
    empty.write_text("")
    corrupt.write_bytes(b"PAR1 this is not a parquet file")
    corpora = f"corpora={{news: '{empty}', code: '{corrupt}', wiki: '{tmp_path / 'missing.csv'}'}}"
    code = cli.main(["run", SMOKE, "--out", str(tmp_path / "run"), "--set", "evaluate.tasks=[sentiment_rt, bogus_task]",
                     "--set", corpora])
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 2 and "[1/" not in out and not (tmp_path / "run").exists()  # no stage ran, nothing was written
    assert lines == [
        "error: unknown task 'bogus_task': not an fnet task nor one lm-eval knows; did you mean sib_tasks, salt_tasks?",
        f"error: corpus file '{empty}' is empty; check the path",
        (f"error: corpus '{corrupt}' is not a readable Parquet file (Parquet magic bytes not found in footer. Either the "
         f"file is corrupted or this is not a parquet file.); check the file, or give the texts as .jsonl, .csv or .txt"),
        f"error: corpus file '{tmp_path / 'missing.csv'}' not found; check the path"]


def test_run_refuses_a_run_that_cannot_fit_the_disk_before_any_stage(tmp_path, capsys):
    code = cli.main(["run", SMOKE, "--out", str(tmp_path / "run"), "--set", "record.group_samples=100000000"])
    out, err = capsys.readouterr()
    line = one_error(err)
    assert code == 1 and "[1/" not in out and not (tmp_path / "run").exists()
    assert "not enough free disk for the stores this run writes: about" in line
    assert "activations, networks of 2 corpora, 30 layers × 576 neurons" in line


def test_run_checks_object_storage_credentials_before_any_stage(s3_endpoint, tmp_path, monkeypatch, capsys):  # noqa: F811
    import moto.settings
    import s3fs

    monkeypatch.setattr(moto.settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)  # the server checks keys: ours are fake
    s3fs.S3FileSystem.clear_instance_cache()
    code = cli.main(["run", SMOKE, "--out", str(tmp_path / "run"), "--set", f"stores={s3_endpoint.url('stores')}"])
    out, err = capsys.readouterr()
    assert code == 2 and one_error(err).startswith("error: object storage refused the credentials")
    assert "[1/" not in out and not (tmp_path / "run").exists()
    s3fs.S3FileSystem.clear_instance_cache()


def test_a_huge_bad_value_is_named_in_a_bounded_line(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(f"model: {{dtype: {'x' * 100_000}}}\n")
    assert cli.main(["run", str(config)]) == 2
    line = one_error(capsys.readouterr().err)
    assert len(line) < 400 and "model.dtype 'xxxxxxxxx" in line and "..." in line


# --- corpora --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, content, expected", [
    ("corrupt.parquet", b"PAR1 not a parquet file", "is not a readable Parquet file"),
    ("nofield.csv", b"body\nsome text\n", "has no field 'text' (its fields: body); pass --text-field"),
    ("broken.jsonl", b'{"text": "a"}\n{"text": \n', "line 2 is not JSON"),
    ("missing.txt", None, "not found; check the path"),
])
def test_record_reads_its_corpus_before_the_model(name, content, expected, tmp_path, capsys):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    no_model = str(tmp_path / "not-a-model-folder")  # loading it first would fail with a model error instead
    code = cli.main(["record", "--model", no_model, "--corpus", str(path), "--out", str(tmp_path / "a.zarr")])
    line = one_error(capsys.readouterr().err)
    assert code == 2 and expected in line and not (tmp_path / "a.zarr").exists()


# --- the environment: read-only folders, full disks -----------------------------------------------------------

def _mounts_work(folder: Path) -> bool:
    """Whether this process may mount a tmpfs in a private mount namespace (root with unshare, as in CI here)."""
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o size=64k tmpfs {shlex.quote(str(folder))}"],
                           capture_output=True, timeout=60, check=False)
    return probe.returncode == 0


def _fnet_in_tmpfs(mount: Path, options: str, argv: list[str], **popen) -> subprocess.CompletedProcess:
    """``fnet argv`` in a private mount namespace where ``mount`` is a fresh tmpfs mounted with ``options``."""
    command = shlex.join([sys.executable, "-m", "fnet_dist", *argv])
    script = f"mount -t tmpfs -o {options} tmpfs {shlex.quote(str(mount))} && exec {command}"
    return subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": PYTHONPATH}, cwd=ROOT, **popen, check=False)


def _commands(target: Path, networks: str, tiny_llama: str, corpus: str) -> dict[str, list[str]]:
    return {"match": ["match", networks, "--out", str(target / "m"), "--no-anatomy"],
            "record": ["record", "--model", tiny_llama, "--corpus", corpus, "--out", str(target / "a.zarr"),
                       "--group-samples", "3", "--individual-samples", "3", "--no-progress"],
            "run": ["run", SMOKE, "--out", str(target / "run")]}


@pytest.mark.parametrize("command", ["match", "record", "run"])
def test_a_read_only_out_is_one_line_exit_1(command, networks, tiny_llama, corpus, tmp_path):
    mount = tmp_path / "ro"
    mount.mkdir()
    argv = _commands(mount, networks, tiny_llama, corpus)[command]
    if _mounts_work(mount):
        done = _fnet_in_tmpfs(mount, "ro,size=64k", argv)
        expected = "read-only file system"
    else:  # a folder this process may not write (root without its override of file permissions)
        mount.chmod(0o555)
        setpriv = ["setpriv", "--inh-caps=-dac_override", "--bounding-set=-dac_override"] if os.geteuid() == 0 else []
        if setpriv and shutil.which("setpriv") is None:
            pytest.skip("root without unshare or setpriv: no folder here is read-only to this process")
        done = subprocess.run([*setpriv, sys.executable, "-m", "fnet_dist", *argv], capture_output=True, text=True,
                              timeout=600, env={**os.environ, "PYTHONPATH": PYTHONPATH}, cwd=ROOT, check=False)
        expected = "Permission denied"
    line = one_error(done.stderr)
    assert done.returncode == 1 and expected.lower() in line.lower(), line
    assert "choose" in line  # how to fix it


def test_a_full_disk_is_one_line_exit_1(networks, tiny_llama, corpus, tmp_path):
    mount = tmp_path / "tiny"
    mount.mkdir()
    if not _mounts_work(mount):
        pytest.skip("no private mount namespace here; the file size limit below covers a write that fails")
    for argv in _commands(mount, networks, tiny_llama, corpus).values():
        done = _fnet_in_tmpfs(mount, "size=12k", argv)
        line = one_error(done.stderr)
        assert done.returncode == 1, done.stderr[-3000:]
        assert ("the disk is full (No space left on device)" in line or "not enough free disk" in line), line


def _file_size_limit(limit: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG) instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_a_write_past_the_file_size_limit_is_one_line_exit_1_and_a_rerun_resumes(tiny_llama, corpus, tmp_path):
    argv = _commands(tmp_path, "unused", tiny_llama, corpus)["record"]
    env = {**os.environ, "PYTHONPATH": PYTHONPATH}
    done = subprocess.run([sys.executable, "-m", "fnet_dist", *argv], capture_output=True, text=True, timeout=600,
                          env=env, cwd=ROOT, preexec_fn=_file_size_limit(2048), check=False)
    line = one_error(done.stderr)
    assert done.returncode == 1 and "a file grew past the file size limit (File too large)" in line, line
    again = subprocess.run([sys.executable, "-m", "fnet_dist", *argv], capture_output=True, text=True, timeout=600,
                           env=env, cwd=ROOT, check=False)  # the limit lifted: the same command finishes the store
    assert again.returncode == 0, again.stderr[-3000:]
    assert "complete: 6 of 6 samples" in again.stdout


# --- object storage -------------------------------------------------------------------------------------------

def test_gs_without_gcsfs_or_credentials_is_one_line_at_once(networks, tmp_path, monkeypatch, capsys):
    import importlib.util

    from fsspec.implementations.memory import MemoryFileSystem

    if importlib.util.find_spec("gcsfs") is None:
        assert cli.main(["match", networks, "--out", "gs://fnet-bucket/m"]) == 1
        assert one_error(capsys.readouterr().err) == ("error: 'gs://fnet-bucket': gs:// needs a package that is not "
                                                      "installed: pip install gcsfs (or fnet-dist[gcs])")

    class FakeGCS(MemoryFileSystem):  # gcsfs's place, without its network: what matters is asked before any request
        protocol = ("gs", "gcs")
        root_marker = ""

    registry = sys.modules["fsspec.registry"]._registry  # what fsspec.register_implementation fills
    for protocol in FakeGCS.protocol:
        monkeypatch.setitem(registry, protocol, FakeGCS)
    locations._check_protocol.cache_clear()
    for name in ("GOOGLE_APPLICATION_CREDENTIALS", "FSSPEC_GCS_TOKEN", "FSSPEC_GS_TOKEN", "GCE_METADATA_HOST"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "no-gcloud"))
    if "Google" in (Path("/sys/class/dmi/id/product_name").read_text() if Path("/sys/class/dmi/id/product_name").exists()
                    else ""):
        pytest.skip("a Google Compute Engine machine: its metadata server holds credentials")
    assert cli.main(["match", networks, "--out", "gs://fnet-bucket/m", "--no-anatomy"]) == 2
    assert "no Google Cloud Storage credentials for 'gs://fnet-bucket'" in one_error(capsys.readouterr().err)
    key = tmp_path / "key.json"
    key.write_text("{}")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key))
    locations._check_protocol.cache_clear()
    assert locations._gcs_credentials() == "GOOGLE_APPLICATION_CREDENTIALS"
    locations._check_protocol.cache_clear()
