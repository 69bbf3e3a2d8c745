"""No command deletes what it did not write, replacements are atomic, and bad inputs are one-line errors.

Every command with an ``--out`` is pointed at a folder of a user's files and at an fnet output of another
kind, with and without ``--overwrite``: each answers in one line (exit status 2) before doing any work, and
the files are byte-identical afterwards. A replacement killed midway leaves the old output whole.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fnet_dist import cli
from fnet_dist.model import testing
from fnet_dist.core.errors import InputError, StoreError
from fnet_dist.store.locks import output_lock
from fnet_dist.store.outputs import MARKER_FILE, html_marker, output_kind, prepare_output, replacing
from fnet_dist.store.storage import open_store, write_store
from s3_server import s3_endpoint  # noqa: F401  (the fixture)
from storage_schemas import ACTIVATIONS, NETWORKS

ROOT = Path(__file__).resolve().parents[1]


def _snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (or ``root`` itself) by relative path, with its bytes."""
    if root.is_file():
        return {".": root.read_bytes()}
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _user_folder(path: Path) -> Path:
    path.mkdir()
    (path / "thesis.tex").write_text("\\section{Years of work}\n")
    (path / "data").mkdir()
    (path / "data" / "run.bin").write_bytes(os.urandom(64))
    return path


def _activations(url) -> str:
    return write_store(testing.activation_dataset(np.zeros((2, 4, 2, 8), np.float32), [4, 3]), str(url), ACTIVATIONS)


def _networks(url, model_id="synthetic", revision="") -> str:
    ds = testing.networks_dataset(np.zeros((2, 2, 8), np.float32), model_id=model_id).assign_attrs(model_revision=revision)
    return write_store(ds, str(url), NETWORKS)


def _commands(out: Path, tiny_llama: str) -> dict[str, tuple[list[str], bool]]:
    """command -> (argv writing to ``out``, whether it has --overwrite)."""
    out = str(out)
    return {
        "record": (["record", "--model", tiny_llama, "--corpus", "offline:news", "--out", out], True),
        "decompose": (["decompose", str(out) + "-acts", "--out", out], True),
        "match": (["match", "no-networks.zarr", "--out", out], True),
        "evaluate": (["evaluate", "--model", tiny_llama, "--networks", "no-networks.zarr", "--out", out], False),
        "bake": (["bake", "--model", tiny_llama, "--mask", "no-mask.npz", "--out", out], True),
        "explain": (["explain", "--model", tiny_llama, "--networks", "no-networks.zarr", "--text", "hi", "--out", out], True),
        "run": (["run", str(ROOT / "pipeline" / "default.yaml"), "--out", out], False),
    }


def test_every_command_leaves_a_users_files_and_other_outputs_byte_identical(tiny_llama, tmp_path, capsys):
    targets = {
        "user folder": _user_folder(tmp_path / "precious"),
        "activations store": Path(_activations(tmp_path / "acts.zarr")),
        "networks store": Path(_networks(tmp_path / "nets.zarr")),
    }
    page = tmp_path / "page.html"
    page.write_text("<html>the user's own page</html>")
    seen = set()
    for name, target in targets.items():
        for command, (argv, has_overwrite) in _commands(target, tiny_llama).items():
            if (name, command) in {("activations store", "record"), ("networks store", "decompose")}:
                continue  # its own kind: resumed or replaced, tested with each stage
            if name == "networks store" and command != "record":
                continue  # one other-kind store per command is enough
            for flags in ([], ["--overwrite"]) if has_overwrite else ([],):
                before = _snapshot(target)
                assert cli.main(argv + flags) == 2, (name, command, flags)
                err = capsys.readouterr().err
                assert err.count("\n") == 1 and err.startswith(f"error: --out '{target}' holds "), (command, err)
                assert "fnet replaces only its own outputs" in err and "Traceback" not in err
                assert _snapshot(target) == before, (name, command, flags)
                seen.add(command)
    assert seen == set(_commands(tmp_path, tiny_llama))
    for flags in ([], ["--overwrite"]):  # a single file that fnet did not write
        assert cli.main(_commands(page, tiny_llama)["explain"][0] + flags) == 2
        assert "holds a file that fnet did not write, not an explain page" in capsys.readouterr().err
        assert page.read_text() == "<html>the user's own page</html>"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["acts.zarr", "nets.zarr", "page.html", "precious"]


def test_kinds_are_recognized_and_an_empty_folder_is_free(tmp_path):
    assert output_kind(str(tmp_path / "nothing")) is None
    (tmp_path / "empty").mkdir()
    assert output_kind(str(tmp_path / "empty")) is None and not prepare_output(str(tmp_path / "empty"), "match")
    assert output_kind(_activations(tmp_path / "a.zarr")) == "activations"
    assert output_kind(_networks(tmp_path / "n.zarr")) == "networks"
    page = tmp_path / "p.html"
    page.write_text(f"<!DOCTYPE html><html><head>{html_marker('explain')}</head></html>")
    assert output_kind(str(page)) == "explain"
    with replacing(str(tmp_path / "m"), "match") as staged:
        Path(staged, "results.json").write_text("{}")
    assert output_kind(str(tmp_path / "m")) == "match" and (tmp_path / "m" / MARKER_FILE).is_file()
    with pytest.raises(StoreError, match=r"already holds match results \(fnet match\); pass --overwrite"):
        prepare_output(str(tmp_path / "m"), "match")
    assert prepare_output(str(tmp_path / "m"), "match", overwrite=True)
    with pytest.raises(StoreError, match="holds an activations store .*, not match results"):
        prepare_output(str(tmp_path / "a.zarr"), "match", overwrite=True)


def test_a_replace_that_fails_midway_leaves_the_old_store_whole(tmp_path, monkeypatch):
    import xarray as xr

    url = _activations(tmp_path / "acts.zarr")
    before = _snapshot(Path(url))
    real = xr.Dataset.to_zarr

    def half_then_crash(self, store, *args, **kwargs):
        real(self, store, *args, **kwargs)  # the whole new store is written beside …
        raise OSError("disk full")  # … and the process fails before the swap

    monkeypatch.setattr(xr.Dataset, "to_zarr", half_then_crash)
    new = testing.activation_dataset(np.ones((3, 4, 2, 8), np.float32), [4, 4, 4])
    with pytest.raises(OSError, match="disk full"):
        write_store(new, url, ACTIVATIONS, overwrite=True)
    assert _snapshot(Path(url)) == before and sorted(p.name for p in tmp_path.iterdir()) == ["acts.zarr"]
    monkeypatch.undo()
    write_store(new, url, ACTIVATIONS, overwrite=True)
    assert open_store(url, ACTIVATIONS).sizes["sample"] == 3


_KILLED = """
import os, signal, sys
from pathlib import Path
from fnet_dist.store.outputs import replacing
with replacing(sys.argv[1], "match", overwrite=True) as staged:
    Path(staged, "consistency.csv").write_text("new")
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_replace_killed_midway_leaves_the_old_output_whole_and_a_rerun_finishes(tmp_path):
    out = str(tmp_path / "match")
    with replacing(out, "match") as staged:
        Path(staged, "consistency.csv").write_text("old")
    before = _snapshot(Path(out))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", _KILLED, out], env=env, capture_output=True, timeout=120)
    assert done.returncode == -signal.SIGKILL
    left = sorted(p.name for p in tmp_path.iterdir())  # the half-written copy (named for its process) and the lock
    assert _snapshot(Path(out)) == before and len(left) == 3 and left[0] == ".match.fnet-lock"
    assert left[1].startswith(".match.fnet-new-") and left[2] == "match"
    with replacing(out, "match", overwrite=True) as staged:
        Path(staged, "consistency.csv").write_text("new")
    assert Path(out, "consistency.csv").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["match"]  # the killed writer's staging and lock: gone


def test_a_swap_interrupted_between_its_renames_is_repaired_by_the_next_writer_only(tmp_path):
    out = tmp_path / "match"
    with replacing(str(out), "match") as staged:
        Path(staged, "consistency.csv").write_text("old")
    os.rename(out, tmp_path / ".match.fnet-old")  # killed after moving the old output aside
    assert output_kind(str(out)) is None and (tmp_path / ".match.fnet-old").is_dir()  # a reader moves nothing: the
    with output_lock(str(out)):  # swap may be a live writer's; the writer holding the lock finishes it
        assert output_kind(str(out)) == "match" and (out / "consistency.csv").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["match"]


def test_decompose_never_replaces_another_kind_of_store(tmp_path):
    from fnet_dist.decompose import decompose

    acts = _activations(tmp_path / "acts.zarr")
    other = _activations(tmp_path / "other.zarr")
    before = _snapshot(Path(other))
    for overwrite in (False, True):
        with pytest.raises(StoreError, match="holds an activations store .*, not a networks store"):
            decompose(acts, other, components=2, group_components=1, overwrite=overwrite)
    assert _snapshot(Path(other)) == before


def test_s3_foreign_objects_are_kept_and_credentials_are_one_line(s3_endpoint, monkeypatch, capsys):
    import boto3
    import s3fs

    client = boto3.client("s3", endpoint_url=s3_endpoint.endpoint_url)
    client.put_object(Bucket=s3_endpoint.bucket, Key="mine/notes.txt", Body=b"keep me")
    url = s3_endpoint.url("mine")
    for overwrite in (False, True):
        with pytest.raises(StoreError, match="holds a folder of files that fnet did not write"):
            _ = write_store(testing.activation_dataset(np.zeros((2, 4, 2, 8), np.float32), [4, 3]), url, ACTIVATIONS,
                            overwrite=overwrite)
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=s3_endpoint.bucket)["Contents"]]
    assert keys == ["mine/notes.txt"]
    assert client.get_object(Bucket=s3_endpoint.bucket, Key="mine/notes.txt")["Body"].read() == b"keep me"
    argv = ["match", "no-networks.zarr", "--out", s3_endpoint.url("results")]
    import moto.settings

    monkeypatch.setattr(moto.settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)  # the server now checks keys: ours are fake
    s3fs.S3FileSystem.clear_instance_cache()
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: object storage refused the credentials") and err.count("\n") == 1
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    s3fs.S3FileSystem.clear_instance_cache()
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no object-storage credentials were found") and "AWS_ACCESS_KEY_ID" in err
    assert err.count("\n") == 1
    s3fs.S3FileSystem.clear_instance_cache()


# --- bad inputs: one line, exit status 2 ------------------------------------------------------------------

def test_a_hub_id_with_the_hub_offline_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert cli.main(["record", "--model", "no/such-model", "--corpus", "offline:news", "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: model 'no/such-model' is not a local folder or .gguf file") and err.count("\n") == 1
    assert "the hub is offline (HF_HUB_OFFLINE is set)" in err
    assert not (tmp_path / "a").exists()


def test_an_unreachable_hub_is_told_apart(monkeypatch):
    from huggingface_hub import constants

    from fnet_dist.model.loading import load_error, resolve_source

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    source = resolve_source("no/such-model")
    refused = OSError("We couldn't connect to 'https://huggingface.co' to load the files, and couldn't find them in "
                      "the cached files.\nCheck your internet connection")
    message = str(load_error("no/such-model", source, None, refused))
    assert "could not be reached and it is not in the local cache" in message and "\n" not in message
    missing = OSError("no/such-model is not a local folder and is not a valid model identifier listed on 'https://huggingface.co/models'")
    assert "no such model there" in str(load_error("no/such-model", source, None, missing))


def test_a_model_folder_without_config_or_weights(tiny_llama, tmp_path, capsys):
    import shutil

    bare = tmp_path / "bare"
    bare.mkdir()
    assert cli.main(["record", "--model", str(bare), "--corpus", "offline:news", "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "has no config.json" in err and err.count("\n") == 1
    shutil.copy(Path(tiny_llama) / "config.json", bare / "config.json")
    assert cli.main(["record", "--model", str(bare), "--corpus", "offline:news", "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "has a config.json but no weights" in err and err.count("\n") == 1


@pytest.mark.parametrize("argv", [
    ["record", "--model", "x", "--corpus", "offline:news", "--max-tokens", "0"],
    ["record", "--model", "x", "--corpus", "offline:news", "--max-tokens", "-5"],
    ["explain", "--networks", "x", "--text", "hi", "--max-tokens", "0"],
    ["explain", "--networks", "x", "--text", "hi", "--max-tokens", "-1"],
])
def test_zero_or_negative_max_tokens(argv, tmp_path, capsys):
    assert cli.main(argv + ["--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --max-tokens") and err.count("\n") == 1 and not (tmp_path / "out").exists()


def test_networks_of_another_model_are_refused_by_match_evaluate_and_bake(tiny_llama, tmp_path):
    from fnet_dist.model.bake import bake_checkpoint
    from fnet_dist.model.edit import Edit
    from fnet_dist.core.config import EvaluateSection
    from fnet_dist.evaluate.experiment import paper_conditions
    from fnet_dist.model.masks import NeuronMask
    from fnet_dist.match.matching import match_networks
    from fnet_dist.model.loading import load_model

    a, b = _networks(tmp_path / "a", "org/model"), _networks(tmp_path / "b", "org/other")
    with pytest.raises(InputError, match=r"networks of different models: .* 'org/model' .* 'org/other'"):
        match_networks([a, b], str(tmp_path / "m"))
    c = _networks(tmp_path / "c", "org/model", "rev2")
    d = _networks(tmp_path / "d", "org/model", "rev1")
    with pytest.raises(InputError, match=r"different models: .* \(revision rev2\), .* \(revision rev1\)"):
        match_networks([c, d], str(tmp_path / "m"))
    assert not (tmp_path / "m").exists()
    loaded = load_model(tiny_llama)
    planted = testing.networks_dataset(np.full((1, 2, 32), 5.0, np.float32), model_id="org/model")
    url = write_store(planted, str(tmp_path / "n"), NETWORKS)
    with pytest.raises(InputError, match=r"the networks store .* was made from model 'org/model'.*pass --model"):
        paper_conditions(loaded, [url], EvaluateSection(localization=False))
    mask = NeuronMask.from_networks(url, 0)
    with pytest.raises(InputError, match=r"the mask template-1 .* was made from model 'org/model'"):
        bake_checkpoint(tiny_llama, mask, Edit(), tmp_path / "ckpt")
    assert not (tmp_path / "ckpt").exists()
