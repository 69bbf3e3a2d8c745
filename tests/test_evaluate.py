"""Evaluation with lm-eval on a tiny model: condition rows, edits, resume, the paper's conditions, the CLI, errors."""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from fnet_dist.model import testing

from fnet_dist.model.edit import Edit
from fnet_dist.core.errors import InputError
from fnet_dist.core.config import EvaluateSection
from fnet_dist.evaluate import (NORMAL, Condition, evaluate_conditions, paper_conditions,
                                read_samples, select_conditions)
from fnet_dist.core.conditions import custom
from fnet_dist.evaluate.figures import prediction_flips
from fnet_dist.evaluate.tasks import prepare_tasks
from fnet_dist.model.masks import NeuronMask
from fnet_dist.model.loading import load_model
from fnet_dist.store.storage import open_store, write_store
from storage_schemas import NETWORKS

ROOT = Path(__file__).resolve().parents[1]
SHAPE = (2, 32)  # tiny llama: 2 layers × hidden 32
TASKS = ["polarity_pl", "wiki_ppl"]
LIMIT = 3
PLANTED = {0: [(0, 1), (1, 2)], 1: [(1, 2), (1, 9), (0, 30)], 2: [(0, 7)]}


def networks_dataset(planted=PLANTED, shape=SHAPE, seed=0, model_id="tiny") -> xr.Dataset:
    """A networks store for the tiny llama: template c has z = 6 at its planted neurons, |z| < 1 elsewhere."""
    rng = np.random.default_rng(seed)
    maps = rng.uniform(-0.9, 0.9, (len(planted), *shape)).astype(np.float32)
    for c, cells in planted.items():
        for layer, neuron in cells:
            maps[c, layer, neuron] = 6.0 - 0.05 * neuron  # distinct values: a unique top-5 % order
    return testing.networks_dataset(maps, corpus="toy", model_id=model_id, seed=seed)


@pytest.fixture(scope="module")
def networks_url(tmp_path_factory, loaded) -> str:
    return write_store(networks_dataset(model_id=loaded.info["model_id"]), str(tmp_path_factory.mktemp("nets") / "toy.zarr"),
                       NETWORKS)


@pytest.fixture(scope="module")
def loaded(tiny_llama):
    return load_model(tiny_llama)


@pytest.fixture(scope="module")
def half_mask():
    return NeuronMask.random(SHAPE, fraction=0.5, seed=1)


@pytest.fixture(scope="module")
def conditions(half_mask):
    return [NORMAL, custom("half", half_mask, Edit("inhibit")), custom("half", half_mask, Edit("multiply", 3.0))]


@pytest.fixture(scope="module")
def evaluated(loaded, conditions, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval")
    rows = evaluate_conditions(loaded, conditions, TASKS, out, limit=LIMIT, progress=False)
    return out, rows


def _value(rows: pd.DataFrame, condition: str, task: str, metric: str) -> float:
    hit = rows[(rows.condition == condition) & (rows.task == task) & (rows.metric == metric)]
    assert len(hit) == 1, (condition, task, metric)
    return float(hit.value.iloc[0])


def test_condition_rows_are_tidy_and_complete(evaluated, half_mask):
    out, rows = evaluated
    expected = {(c, "polarity_pl", "acc") for c in ("normal", "inhibit:half", "multiply3:half")}
    expected |= {(c, "wiki_ppl", m) for c in ("normal", "inhibit:half", "multiply3:half")
                 for m in ("word_perplexity", "byte_perplexity", "bits_per_byte")}
    assert set(zip(rows.condition, rows.task, rows.metric)) == expected
    assert (rows.n_samples == LIMIT).all()
    assert set(rows[rows.condition != "normal"].neurons) == {half_mask.count}
    assert (rows[rows.condition == "normal"].neurons == 0).all()
    assert rows[rows.metric == "acc"].stderr.notna().all()
    on_disk = pd.read_csv(out / "results.csv")
    pd.testing.assert_frame_equal(on_disk, rows, check_dtype=False)
    lm_eval_json = json.loads((out / "conditions" / "inhibit-half" / "results.json").read_text())
    assert set(lm_eval_json["results"]) == set(TASKS) and "configs" in lm_eval_json
    assert len(read_samples(out, "inhibit:half", "polarity_pl")) == LIMIT


def test_edited_conditions_differ_from_normal(evaluated):
    _, rows = evaluated
    normal = _value(rows, "normal", "wiki_ppl", "word_perplexity")
    for name in ("inhibit:half", "multiply3:half"):
        assert _value(rows, name, "wiki_ppl", "word_perplexity") != pytest.approx(normal, rel=1e-6)


def test_normal_condition_equals_a_plain_lm_eval_run(evaluated, tiny_llama, tmp_path):
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM

    _, rows = evaluated
    plain = load_model(tiny_llama)
    result = simple_evaluate(model=HFLM(pretrained=plain.model, tokenizer=plain.tokenizer, batch_size=8), tasks=TASKS,
                             task_manager=prepare_tasks(TASKS, tmp_path), limit=LIMIT, bootstrap_iters=0)
    assert _value(rows, "normal", "polarity_pl", "acc") == pytest.approx(result["results"]["polarity_pl"]["acc,none"])
    ppl = result["results"]["wiki_ppl"]["word_perplexity,none"]
    assert _value(rows, "normal", "wiki_ppl", "word_perplexity") == pytest.approx(ppl, rel=1e-9)


def test_flipped_predictions_are_the_documents_whose_correctness_changed(evaluated):
    out, _ = evaluated
    flips = prediction_flips(out, "polarity_pl", "multiply3:half")
    before = {s["doc_id"]: s["acc"] for s in read_samples(out, "normal", "polarity_pl")}
    after = {s["doc_id"]: s["acc"] for s in read_samples(out, "multiply3:half", "polarity_pl")}
    assert set(flips.doc_id) == {d for d in before if before[d] != after[d]}  # two choices: a flip changes correctness
    assert set(flips.effect) <= {"fixed", "broken"}


def test_resume_keeps_finished_conditions_and_redoes_half_written_ones(evaluated, loaded, conditions, capsys):
    out, rows = evaluated
    capsys.readouterr()
    again = evaluate_conditions(loaded, conditions, TASKS, out, limit=LIMIT)
    assert capsys.readouterr().err.count("finished earlier, kept") == 3
    pd.testing.assert_frame_equal(again, rows)
    (out / "conditions" / "inhibit-half" / "condition.json").unlink()  # as if killed before the folder was complete
    (out / "conditions" / "normal.partial").mkdir()  # a stray partial folder never counts
    again = evaluate_conditions(loaded, conditions, TASKS, out, limit=LIMIT)
    log = capsys.readouterr().err
    assert "inhibit:half (32 neurons): done in" in log and log.count("finished earlier, kept") == 2
    pd.testing.assert_frame_equal(again, rows)
    assert (out / "conditions" / "inhibit-half" / "condition.json").is_file()


def test_changed_config_reruns(evaluated, loaded, conditions, capsys, tmp_path):
    out, _ = evaluated
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    capsys.readouterr()
    rows = evaluate_conditions(loaded, conditions[:1], ["polarity_pl"], copy, limit=2)
    assert "finished earlier" not in capsys.readouterr().err and (rows.n_samples == 2).all()


def test_a_limit_of_a_task_not_evaluated_keeps_the_results(evaluated, loaded, conditions, capsys, tmp_path):
    """The random draws are scored on some tasks (evaluate.controls.tasks): changing another task's limit in
    the config must not throw their finished results away; changing an evaluated task's limit must."""
    out, rows = evaluated
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    capsys.readouterr()
    again = evaluate_conditions(loaded, conditions, TASKS, copy, limit={t: LIMIT for t in TASKS} | {"news_ppl": 8})
    assert capsys.readouterr().err.count("finished earlier, kept") == 3
    pd.testing.assert_frame_equal(again, rows)
    evaluate_conditions(loaded, conditions[:1], TASKS, copy, limit={"polarity_pl": LIMIT, "wiki_ppl": 1})
    assert "finished earlier" not in capsys.readouterr().err


def test_paper_conditions_from_a_networks_store(loaded, networks_url):
    chosen, extras = paper_conditions(loaded, [networks_url], EvaluateSection(localizer_stimuli=8))
    names = [c.name for c in chosen]
    assert names == ["normal", "inhibit:toy/1", "inhibit:toy/2", "inhibit:toy/3", "inhibit:toy/all", "random15:seed0",
                     "top5:inhibit@toy", "top5:multiply1.02@toy", "localization:inhibit@toy",
                     "localization:multiply1.02@toy"]
    assert [(c.kind, c.corpus, c.template) for c in chosen[1:5]] == [("network", "toy", t) for t in (1, 2, 3, None)]
    by_name = {c.name: c for c in chosen}
    assert {tuple(i) for i in by_name["inhibit:toy/2"].mask.indices()} == set(PLANTED[1])
    assert by_name["inhibit:toy/all"].neurons == len({cell for cells in PLANTED.values() for cell in cells})
    assert by_name["random15:seed0"].neurons == round(0.15 * 64)
    top = by_name["top5:inhibit@toy"].mask
    assert top.count == round(0.05 * 64) == by_name["localization:inhibit@toy"].neurons
    assert by_name["top5:multiply1.02@toy"].edit == Edit("multiply", 1.02)
    assert 0 <= extras["iou"]["ICA vs LLM Localization@toy"] <= 1
    assert by_name["localization:inhibit@toy"].edit == Edit("inhibit", site="residual")  # the method's own ablation
    kept, _ = paper_conditions(loaded, [networks_url], EvaluateSection(conditions=("normal", "inhibit:*/1")))
    assert [c.name for c in kept] == ["normal", "inhibit:toy/1"]


def test_the_top_percent_without_the_first_token_templates(loaded, networks_url):
    """With the match stage's anatomy, the top 5 % is also taken over the templates that are not first-token
    artefacts: exactly ``NeuronMask.top_percent`` of the others; none when no template is flagged."""
    ds = open_store(networks_url, NETWORKS)
    peaks = np.nan_to_num(np.abs(ds["group_map"].values)).reshape(ds.sizes["component"], -1).max(axis=1)
    first = int(np.argmax(peaks))                       # the template holding the largest |z|: flagged, it changes the top
    shares = np.where(np.arange(len(peaks)) == first, 0.9, 0.1)
    anatomy = pd.DataFrame({"corpus": "toy", "template": np.arange(1, len(peaks) + 1), "first_token_peak_share": shares})
    chosen, _ = paper_conditions(loaded, [networks_url], EvaluateSection(localization=False), anatomy=anatomy)
    by_name = {c.name: c for c in chosen}
    without = by_name["top5-nofirst:inhibit@toy"]
    assert (without.kind, without.corpus, without.percent, without.edit) == ("top_no_first_token", "toy", 5.0, Edit())
    expected = NeuronMask.top_percent(ds, 5, components=[k for k in range(len(peaks)) if k != first])
    assert np.array_equal(without.mask.values, expected.values) and without.neurons == by_name["top5:inhibit@toy"].neurons
    assert not np.array_equal(without.mask.values, by_name["top5:inhibit@toy"].mask.values)
    unflagged = anatomy.assign(first_token_peak_share=0.0)
    chosen, _ = paper_conditions(loaded, [networks_url], EvaluateSection(localization=False), anatomy=unflagged)
    assert not [c for c in chosen if c.kind == "top_no_first_token"]


def test_cli_evaluate_writes_tables_and_figures(tiny_llama, networks_url, tmp_path):
    out = tmp_path / "results"
    command = [sys.executable, "-m", "fnet_dist", "evaluate", "--model", tiny_llama, "--networks", networks_url,
               "--out", str(out), "--tasks", "wiki_ppl", "--limit", "1", "--no-probing", "--conditions", "normal",
               "inhibit:toy/1", "top5:inhibit*", "localization:inhibit*"]
    done = subprocess.run(command, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "[4/4] localization:inhibit@toy" in done.stderr
    for name in ("table3_networks_toy", "table9_top_inhibit_toy", "table5_iou"):
        assert (out / "tables" / f"{name}.md").is_file() and (out / "tables" / f"{name}.csv").is_file()
    table9 = pd.read_csv(out / "tables" / "table9_top_inhibit_toy.csv", index_col=0)
    assert list(table9.columns) == ["Normal", "ICA", "LLM Localization"] and "Wiki (PPL)" in table9.index
    assert (out / "figures" / "figure2_perplexity_toy_wiki_ppl.png").stat().st_size > 1000
    assert NeuronMask.load(str(out / "masks" / "inhibit-toy_1.npz")).count == len(PLANTED[0])
    assert pd.read_csv(out / "flips.csv").empty  # perplexity only: no choices to flip


# --- bad input -------------------------------------------------------------------------------


def test_unknown_task_suggests_close_matches():
    from fnet_dist.evaluate.tasks import resolve_tasks

    with pytest.raises(InputError, match=r"unknown task 'sentiment_tr'.*did you mean .*sentiment_rt"):
        resolve_tasks(["sentiment_tr"])
    with pytest.raises(InputError, match="no tasks given"):
        resolve_tasks([])


def test_vllm_backend_without_vllm_says_how_to_install(loaded, tmp_path, monkeypatch):
    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vLLM is installed here")
    monkeypatch.setenv("FNET_VLLM_PYTHON", sys.executable)  # the engine's interpreter: this one, without vLLM
    with pytest.raises(InputError, match=r"vLLM, which is not installed.*pip install 'fnet-dist\[vllm\]'"):
        evaluate_conditions(loaded, [NORMAL], ["polarity_pl"], tmp_path, backend="vllm")


def test_bad_options_and_conditions(loaded, tmp_path):
    half, inhibit = NeuronMask.random(SHAPE, count=4, seed=0), Edit("inhibit")
    other = custom("other", NeuronMask.random((3, 32), count=2, seed=0), Edit("inhibit"))
    with pytest.raises(InputError, match=r"mask .* has shape \(3, 32\) .* model has \(2, 32\)"):
        evaluate_conditions(loaded, [NORMAL, other], ["polarity_pl"], tmp_path, limit=2)
    assert not (tmp_path / "conditions" / "normal").exists()  # nothing ran before the check
    with pytest.raises(InputError, match="unknown backend 'tgi'"):
        evaluate_conditions(loaded, [NORMAL], ["polarity_pl"], tmp_path, backend="tgi")
    with pytest.raises(InputError, match=r"--limit -3"):
        evaluate_conditions(loaded, [NORMAL], ["polarity_pl"], tmp_path, limit=-3)
    with pytest.raises(InputError, match="same name"):
        evaluate_conditions(loaded, [NORMAL, NORMAL], ["polarity_pl"], tmp_path)
    with pytest.raises(InputError, match="same slug"):
        evaluate_conditions(loaded, [custom("a:b", half, inhibit), custom("a-b", half, inhibit)], ["polarity_pl"], tmp_path)
    with pytest.raises(InputError, match="needs both a mask and an edit"):
        Condition("custom", NeuronMask.random(SHAPE, count=1, seed=0), label="x")
    with pytest.raises(InputError, match="a network condition needs corpus"):
        Condition("network", half, inhibit, template=1)
    with pytest.raises(InputError, match="condition kind 'inhibit' is unknown"):
        Condition("inhibit")
    with pytest.raises(InputError, match="condition name"):
        custom("has space", half, inhibit)
    with pytest.raises(InputError, match=r"--conditions 'nothing\*' matches no condition; there are: normal"):
        select_conditions([NORMAL], ["nothing*"])


def test_cli_errors_are_one_line(tmp_path, networks_url, capsys):
    from fnet_dist.cli import main

    assert main(["evaluate", "--networks", networks_url, "--out", str(tmp_path), "--tasks", "wiki_pll"]) == 2
    assert "error: unknown task 'wiki_pll'" in capsys.readouterr().err
    assert main(["evaluate", "--networks", networks_url, "--out", str(tmp_path), "--amplify-factor", "nan"]) == 2
    assert "error: --amplify-factor 'nan': input should be a finite number" in capsys.readouterr().err
    assert main(["evaluate", "--networks", networks_url, "--out", str(tmp_path), "--random-fraction", "15"]) == 2
    assert "error: --random-fraction 15: input should be less than 1" in capsys.readouterr().err


def test_pipeline_stage_runs_the_configured_evaluation_with_probes(loaded, tmp_path):
    from fnet_dist.core.config import PipelineConfig
    from fnet_dist.evaluate import evaluate_pipeline
    from fnet_dist.core.layout import RunLayout

    layout = RunLayout(tmp_path)
    write_store(networks_dataset(planted={0: PLANTED[0]}, model_id=loaded.info["model_id"]), layout.networks("toy"), NETWORKS)
    config = PipelineConfig(corpora={"toy": "offline:news"}, evaluate={
        "tasks": ["polarity_pl"], "limit": 2, "localization": False, "probing": True, "seed": 3})
    rows = evaluate_pipeline(loaded, config, layout)
    assert list(dict.fromkeys(rows.condition)) == ["normal", "inhibit:toy/1", "random15:seed3", "top5:inhibit@toy",
                                                   "top5:multiply1.02@toy"]
    assert list(dict.fromkeys(rows.kind)) == ["normal", "network", "random", "top"]
    assert set(rows.loc[rows.kind == "top", "factor"].dropna()) == {1.02}
    probes = pd.read_csv(layout.evaluate.folder / "probing.csv")
    assert set(probes.condition) == {"normal", "random15:seed3", "inhibit:toy/1"}  # one template: no union
    assert probes.accuracy.between(0, 1).all()
    assert (layout.evaluate.folder / "tables" / "table12_probing.md").is_file()
    assert (layout.evaluate.folder / "tables" / "table3_networks_toy.csv").is_file()  # no localization: no Table 9
    assert not (layout.evaluate.folder / "tables" / "table9_top_inhibit_toy.csv").exists()
    flips = pd.read_csv(layout.evaluate.folder / "flips.csv")
    assert list(flips.columns[:4]) == ["condition", "task", "doc_id", "effect"]
    assert set(flips.task) <= {"polarity_pl"} and set(flips.effect) <= {"fixed", "broken"}


def test_sweeps_from_the_networks(loaded, networks_url, tmp_path):
    from fnet_dist.evaluate import evaluate_networks

    settings = EvaluateSection(localization=False, probing=False, sweeps=True, sweep_factors=(2.0,), sweep_values=(1.0,),
                               tasks=("wiki_ppl",), conditions=("normal", "inhibit:toy/all"), limit=1)
    evaluate_networks(loaded, [networks_url], tmp_path, settings, progress=False)
    swept = pd.read_csv(tmp_path / "sweeps" / "results.csv")
    assert list(dict.fromkeys(swept.condition)) == ["normal", "multiply2:toy/all", "add1:toy/all"]
    assert (tmp_path / "figures" / "figure5_7_sweep_wiki_ppl.png").stat().st_size > 1000


@pytest.mark.slow
def test_smollm2_end_to_end(tmp_path):
    """The packaged SmolLM2: zero-shot sentiment near its known ~0.65, and losing every MLP output hurts perplexity."""
    smollm = load_model("smollm2-135m-instruct")
    everything = custom("every-mlp", NeuronMask(np.ones((30, 576), bool), "all"), Edit("inhibit"))
    rows = evaluate_conditions(smollm, [NORMAL], ["sentiment_rt"], tmp_path / "rt", limit=100, progress=False)
    assert 0.55 < _value(rows, "normal", "sentiment_rt", "acc") < 0.85
    rows = evaluate_conditions(smollm, [NORMAL, everything], ["wiki_ppl"], tmp_path / "ppl", limit=3, progress=False)
    normal_ppl = _value(rows, "normal", "wiki_ppl", "word_perplexity")
    assert 5 < normal_ppl < 200
    assert _value(rows, "inhibit:every-mlp", "wiki_ppl", "word_perplexity") > 10 * normal_ppl


def test_limits_per_task_run_each_task_at_its_own_size(tiny_llama, tmp_path):
    from fnet_dist.core.conditions import NORMAL
    from fnet_dist.evaluate.runner import evaluate_conditions

    rows = evaluate_conditions(tiny_llama, [NORMAL], TASKS, tmp_path / "out", limit={"polarity_pl": 4, "wiki_ppl": 1},
                               progress=False)
    sizes = rows.drop_duplicates("task").set_index("task")["n_samples"].to_dict()
    assert sizes == {"polarity_pl": 4, "wiki_ppl": 1}
    saved = json.loads((tmp_path / "out" / "conditions" / "normal" / "results.json").read_text())
    assert set(saved["results"]) == set(TASKS)
    with pytest.raises(InputError, match="--limit 0"):
        evaluate_conditions(tiny_llama, [NORMAL], TASKS, tmp_path / "bad", limit={"wiki_ppl": 0})


def test_cli_evaluates_your_own_masks_on_your_own_task(tiny_llama, tmp_path, capsys):
    """``fnet evaluate --mask FILE`` (no networks store) on a task YAML of your own (``--include-path``), few-shot:
    the normal model and each mask inhibited, named by its file, with the mask's neuron count."""
    import json as _json

    import pandas as _pd

    from fnet_dist.cli import main as fnet_main
    from fnet_dist.model.masks import NeuronMask as _Mask

    tasks = tmp_path / "my_tasks"
    tasks.mkdir()
    rows = [{"text": f"a {'good' if i % 2 else 'bad'} film number {i}", "label": i % 2} for i in range(8)]
    (tasks / "reviews.jsonl").write_text("".join(_json.dumps(r) + "\n" for r in rows))
    (tasks / "my_reviews.yaml").write_text(
        "task: my_reviews\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
        f"    test: {tasks / 'reviews.jsonl'}\ntest_split: test\noutput_type: multiple_choice\n"
        "doc_to_text: \"Review: {{text}}\\nSentiment:\"\ndoc_to_choice: [\"negative\", \"positive\"]\n"
        "doc_to_target: label\nmetric_list:\n  - metric: acc\nmetadata:\n  version: 1.0\n")
    half = _Mask.random((2, 32), fraction=0.5, seed=0).save(str(tmp_path / "half.npz"))
    code = fnet_main(["evaluate", "--model", tiny_llama, "--device", "cpu", "--mask", half, "--tasks", "my_reviews",
                      "--include-path", str(tasks), "--num-fewshot", "1", "--limit", "3", "--out", str(tmp_path / "out"),
                      "--quiet"])
    assert code == 0, capsys.readouterr().err
    results = _pd.read_csv(tmp_path / "out" / "results.csv")
    assert list(dict.fromkeys(results["condition"])) == ["normal", "inhibit:half"]
    assert set(results["task"]) == {"my_reviews"} and set(results["n_samples"]) == {3}
    assert results.loc[results["condition"] == "inhibit:half", "neurons"].iloc[0] == 32
    recorded_files = sorted((tmp_path / "out" / "conditions").glob("*/results.json"))
    assert len(recorded_files) == 2
    for recorded in recorded_files:  # lm-eval's own record: one shot
        lm_eval = _json.loads(recorded.read_text())
        assert lm_eval["configs"]["my_reviews"]["num_fewshot"] == 1 and lm_eval["n-shot"]["my_reviews"] == 1
    assert fnet_main(["evaluate", "--model", tiny_llama, "--out", str(tmp_path / "none")]) == 2
    assert "nothing to evaluate" in capsys.readouterr().err
