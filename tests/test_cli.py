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


# --- one vocabulary ---------------------------------------------------------------------------------------

MODEL_COMMANDS = ("record", "evaluate", "explain", "bake")


def _option_strings(command: str) -> dict[str, object]:
    from fnet_dist.cli import build_parser

    sub = next(a for a in build_parser()._actions if hasattr(a, "choices") and isinstance(a.choices, dict))
    return {s: action for action in sub.choices[command]._actions for s in action.option_strings}


def test_every_command_that_loads_a_model_has_the_model_sections_flags_and_defaults():
    from fnet_dist.core.config import ModelSection

    flags = {f"--{('model' if name == 'id' else name).replace('_', '-')}" for name in ModelSection.model_fields}
    for command in MODEL_COMMANDS:
        options = _option_strings(command)
        assert flags <= set(options), (command, flags - set(options))
        assert "auto" in options["--device"].help  # the section's default (bake and explain said cpu / auto apart)


@pytest.mark.parametrize("command, old, new, args", [
    ("explain", "--components", "--templates", ["--networks", "n", "--text", "t", "--out", "o.html"]),
    ("bake", "--template", "--templates", ["--networks", "n", "--out", "o"]),
])
def test_old_template_spellings_still_work_with_a_warning(command, old, new, args, capsys):
    from fnet_dist.cli import build_parser

    parsed = build_parser().parse_args([command, *args, old, "2", "3"])
    assert parsed.templates == [2, 3]
    assert capsys.readouterr().err.strip() == f"warning: {old} is deprecated and will be removed; use {new}"
    assert build_parser().parse_args([command, *args, new, "4"]).templates == [4]
    assert capsys.readouterr().err == ""


def test_config_show_prints_the_resolved_config(capsys):
    import yaml

    from fnet_dist.core.config import load_config

    smoke = str(ROOT / "pipeline" / "smoke.yaml")
    assert main(["config", "show", smoke, "--set", "match.iou=0.3", "--out", "elsewhere"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown == load_config(smoke, ["match.iou=0.3", "out=elsewhere"]).model_dump(mode="json")
    assert shown["match"]["iou"] == 0.3 and shown["decompose"]["tol"] == 1e-4  # a default the file leaves out
    assert main(["config", "show", smoke, "--set", "match.iou=2"]) == 2
    assert "match.iou" in capsys.readouterr().err


def test_dry_run_plans_from_run_json_and_writes_nothing(tmp_path, capsys):
    import json

    from fnet_dist.core.config import load_config
    from fnet_dist.stages import stage_hash

    smoke, out = str(ROOT / "pipeline" / "smoke.yaml"), tmp_path / "run"
    assert main(["run", smoke, "--out", str(out), "--dry-run", "--force"]) == 0
    printed = capsys.readouterr()
    assert "warning: --force is deprecated and will be removed; use --overwrite" in printed.err
    assert printed.out.count(" run ") >= 6 and "never run" in printed.out and not out.exists()
    config = load_config(smoke, [f"out={out}"])
    out.mkdir()  # an earlier run: record and decompose done for this config, match for another one
    stages = {"record": {"hash": stage_hash(config, "record"), "status": "done", "seconds": 40.0},
              "decompose": {"hash": stage_hash(config, "decompose"), "status": "done", "seconds": 8.0},
              "match": {"hash": "another", "status": "done", "seconds": 30.0}}
    (out / "run.json").write_text(json.dumps({"stages": stages}))
    assert main(["run", smoke, "--out", str(out), "--dry-run"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[2:-1]}
    assert lines["record"].split()[1] == "reuse" and "cached for this config" in lines["record"]
    assert "12 samples × 2 corpora" not in lines["record"] and "6 samples × 2 corpora" in lines["record"]
    assert "30 layers × 576 neurons" in lines["record"]
    assert lines["match"].split()[1] == "run" and "for another config" in lines["match"]
    assert lines["evaluate"].split()[1] == "run" and "never run" in lines["evaluate"]
    assert main(["run", smoke, "--out", str(out), "--dry-run", "--stages", "match"]) == 0
    assert "time: about 0.5 min from the last run's run.json" in capsys.readouterr().out  # match's 30 s
    assert json.loads((out / "run.json").read_text()) == {"stages": stages}  # untouched
