"""Pipeline configs: every shipped config validates; bad keys and values are clear errors; hashes are per stage."""
from __future__ import annotations

from pathlib import Path

import pytest

from fnet_dist.core.config import PipelineConfig, load_config
from fnet_dist.stages import STAGES, stage_hash
from fnet_dist.core.errors import InputError

PIPELINES = sorted((Path(__file__).parents[1] / "pipeline").glob("*.yaml"))


@pytest.mark.parametrize("path", PIPELINES, ids=lambda p: p.name)
def test_every_shipped_config_validates(path):
    config = load_config(path)
    assert config.corpora and config.version == 1
    assert set(config.evaluation_corpora()) <= set(config.corpora)


def test_the_shipped_set_has_the_default_and_the_paper_experiments():
    names = {p.stem for p in PIPELINES}
    assert {"default", "paper-gpt2", "paper-qwen2.5-3b", "paper-qwen2.5-7b", "paper-chatglm3-6b"} <= names


def _write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "text, message",
    [
        ("version: 1\nrecord:\n  group_sample: 3\n", r"unknown key 'record.group_sample'"),
        ("version: 1\nrecord:\n  batch_size: zero\n", r"record.batch_size 'zero': .*integer"),
        ("version: 2\n", r"config version 2 is not supported"),
        ("version: 1\ncorpora: {}\n", r"at least one corpus"),
        ("version: 1\ncorpora: {'bad name': offline:news}\n", r"corpus name 'bad name'"),
        ("version: 1\nmatch:\n  threshold: -1\n", r"match.threshold"),
        ("version: 1\nevaluate:\n  tasks: [sentiment_rt]\n  controls: {tasks: [wiki_ppl]}\n",
         r"evaluate.controls.tasks \['wiki_ppl'\] are not among evaluate.tasks \['sentiment_rt'\]"),
        ("version: 1\nevaluate: {backend: vllm}\n",
         r"evaluate.localization_site=residual needs evaluate.backend=hf.*set evaluate.localization_site=mlp"),
        ("version: 1\nevaluate: {localization_site: attention}\n", r"evaluate.localization_site 'attention'"),
        ("- a list\n", r"a mapping of sections"),
        ("version: [1\n", r"not valid YAML"),
    ],
)
def test_bad_configs_name_the_key_and_the_problem(tmp_path, text, message):
    with pytest.raises(InputError, match=message):
        load_config(_write(tmp_path, text))


def test_missing_config_file(tmp_path):
    with pytest.raises(InputError, match=r"no pipeline config at .*nope.yaml"):
        load_config(tmp_path / "nope.yaml")


def test_overrides_apply_and_are_validated(tmp_path):
    path = _write(tmp_path, "version: 1\n")
    config = load_config(path, ["record.group_samples=7", "corpora={a: offline:news}"])
    assert config.record.group_samples == 7 and config.corpora["a"].spec == "offline:news"
    with pytest.raises(InputError, match="section.key=value"):
        load_config(path, ["record.group_samples"])
    with pytest.raises(InputError, match="unknown key 'record.nope'"):
        load_config(path, ["record.nope=1"])


def test_corpus_entries_take_a_spec_string_or_a_mapping(tmp_path):
    config = load_config(_write(tmp_path, "version: 1\ncorpora:\n  a: offline:news\n  b: {spec: 'hf:x@train', text_field: body}\n"))
    assert config.corpora["a"].text_field is None and config.corpora["b"].text_field == "body"


def test_stage_hash_changes_only_downstream_of_a_change():
    base = PipelineConfig()
    changed = base.model_copy(update={"match": base.match.model_copy(update={"iou": 0.3})})
    same = [s for s in STAGES if stage_hash(base, s) == stage_hash(changed, s)]
    assert same == ["record", "decompose"]
    scheduler = base.model_copy(update={"dask": base.dask.model_copy(update={"scheduler": "tcp://x:8786"})})
    assert all(stage_hash(base, s) == stage_hash(scheduler, s) for s in STAGES)


def test_evaluation_corpora_must_exist_when_the_config_loads(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("evaluate: {networks_of: [nope]}\n")
    with pytest.raises(InputError, match=r"networks_of names corpora \['nope'\] that are not in corpora"):
        load_config(path)
    with pytest.raises(InputError, match=r"networks_of names corpora \['wiki'\]"):
        load_config(path, ["corpora={news: offline:news}", "evaluate.networks_of=[wiki]"])


def test_pack_to_tokens_auto_is_what_an_individual_ica_needs(tmp_path):
    from fnet_dist.core.config import PipelineConfig

    assert PipelineConfig().pack_to_tokens() == 65
    assert PipelineConfig(decompose={"components": 8, "exclude_first_tokens": 1}).pack_to_tokens() == 10
    assert PipelineConfig(record={"pack_to_tokens": 0}).pack_to_tokens() == 0
    assert PipelineConfig(record={"pack_to_tokens": 90}).pack_to_tokens() == 90
    path = tmp_path / "c.yaml"
    path.write_text("version: 1\n")
    with pytest.raises(InputError, match=r"record.pack_to_tokens"):
        load_config(path, ["record.pack_to_tokens=-3"])


@pytest.mark.parametrize("value, expected", [
    ("group,individual", ("group", "individual")), (["individual", "group"], ("group", "individual")),
    ("individual", ("individual",)), (" group ", ("group",)),
])
def test_decompose_levels_are_parsed_once_in_their_section(value, expected):
    from fnet_dist.core.config import DecomposeSection

    assert DecomposeSection(levels=value).levels == expected


def test_an_unknown_decompose_level_is_one_clear_line(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("decompose: {levels: [group, subject]}\n")
    with pytest.raises(InputError, match=r"levels 'group,subject' names an unknown level \['subject'\]: expected a "
                                         "comma-separated subset of group,individual"):
        load_config(path)


def _alias_bomb(levels: int = 9, width: int = 9) -> str:
    """A few hundred bytes of nested YAML aliases that expand to width ** levels values, on a known key."""
    lines = ["a0: &a0 [" + ",".join(['"lol"'] * width) + "]"]
    lines += [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * width) + "]" for i in range(1, levels)]
    return "\n".join(lines + [f"evaluate: {{tasks: *a{levels - 1}}}"]) + "\n"


def test_a_nested_alias_bomb_is_refused_without_expanding_it(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(_alias_bomb())
    assert len(path.read_bytes()) < 500  # 9 ** 9 = 387 million values
    with pytest.raises(InputError, match=r"bomb.yaml: its aliases \(\*name\) expand to more than 100,000 values"):
        load_config(path)
    inline = ("[&a [x,x,x,x,x,x,x,x,x,x], &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a], &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b], "
              "&d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c], &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d], [*e,*e]]")  # 200,000 values
    with pytest.raises(InputError, match=r"--set evaluate.tasks: its aliases"):
        load_config(Path(__file__).parents[1] / "pipeline" / "smoke.yaml", [f"evaluate.tasks={inline}"])


def test_the_alias_bomb_is_refused_within_a_small_memory_limit(tmp_path):
    """Bounded, not just caught: under a 1 GiB address-space limit (the unbounded load took 2.2 GB)."""
    import resource
    import subprocess
    import sys

    path = tmp_path / "bomb.yaml"
    path.write_text(_alias_bomb())

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (2**30, 2**30))

    code = f"from fnet_dist.core.config import load_config; load_config({str(path)!r})"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, preexec_fn=limit,
                          check=False)
    assert done.returncode == 1 and done.stderr.strip().splitlines()[-1].startswith(
        "fnet_dist.core.errors.InputError: " + str(path) + ": its aliases"), done.stderr[-2000:]


def test_shared_anchors_within_the_limit_and_safe_yaml_only(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("common: &tasks [sentiment_rt, wiki_ppl]\nevaluate: {tasks: *tasks}\n")
    with pytest.raises(InputError, match="unknown key 'common'"):  # the anchors load; the key is not the config's
        load_config(path)
    path.write_text("evaluate: {tasks: &t [sentiment_rt]}\nreport: {title: x}\n")
    assert load_config(path).evaluate.tasks == ("sentiment_rt",)
    path.write_text("evaluate: !!python/object/apply:os.system [echo hacked]\n")
    with pytest.raises(InputError, match=r"c.yaml: not valid YAML: could not determine a constructor for the tag "
                                         r"'tag:yaml.org,2002:python/object/apply:os.system' \(line 1, column 11\)"):
        load_config(path)
    path.write_text("a: &a [*a]\n")
    with pytest.raises(InputError, match="not valid YAML: found undefined alias|recursive alias"):
        load_config(path)


@pytest.mark.parametrize("override, message", [
    ("evaluate.tasks=[sentiment_rt, wiki_ppl", (r"--set evaluate.tasks: not valid YAML: expected ',' or ']', but got "
                                                r"'<stream end>' \(line 1, column 24\)")),
    ("evaluate.tasks=!!python/name:os.system", r"--set evaluate.tasks: not valid YAML: could not determine a constructor"),
    ("record.group_samples={a: 1", r"--set record.group_samples: not valid YAML"),
    ("evaluate.tasks=" + "x" * 5000 + ": [", r"--set evaluate.tasks: not valid YAML"),
])
def test_a_bad_set_value_is_one_line(override, message, tmp_path, capsys):
    from fnet_dist import cli

    with pytest.raises(InputError, match=message):
        load_config(Path(__file__).parents[1] / "pipeline" / "smoke.yaml", [override])
    assert cli.main(["run", str(Path(__file__).parents[1] / "pipeline" / "smoke.yaml"), "--out", str(tmp_path / "r"),
                     "--set", override]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: --set ") and len(err) < 1100
