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
