"""The ``fnet`` command line: every subcommand has --help; user errors are one line with exit status 2."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fnet_dist.cli import COMMANDS, main

ROOT = Path(__file__).parents[1]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert f"usage: fnet {command}" in capsys.readouterr().out


def test_console_entry_point_runs_as_a_module():
    result = subprocess.run([sys.executable, "-m", "fnet_dist", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    for command in COMMANDS:
        assert command in result.stdout


def test_a_user_error_is_one_line_with_exit_status_2(tmp_path, capsys):
    code = main(["run", str(tmp_path / "missing.yaml")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: no pipeline config at") and err.count("\n") == 1


@pytest.mark.parametrize("args, message", [
    (["--stages", "decompose", "--index", "0", "--count", "2"], r"--index/--count run one stage that shards \(record, evaluate, controls\)"),
    (["--stages", "record", "--index", "2", "--count", "2"], r"shard --index 2 --count 2: expected 0 ≤ index < count"),
    (["--stages", "record", "--index", "0"], "--index and --count go together"),
    (["--stages", "record,nope"], r"unknown stage\(s\) \['nope'\]"),
])
def test_fnet_run_refuses_bad_stages_and_shards_in_one_line(args, message, tmp_path, capsys):
    import re

    code = main(["run", str(ROOT / "pipeline" / "smoke.yaml"), "--out", str(tmp_path / "run"), *args])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and re.search(message, err), err
    assert not (tmp_path / "run").exists()  # refused before anything was written
