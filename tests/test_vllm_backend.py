"""The vllm backend against a real vLLM: vLLM's CPU build (``make vllm-env``: ``.venv-vllm``) serving the packaged
SmolLM2-135M, one engine for the module, equal to the hf backend's hooks on the same documents.

Tolerance (both float32 on the CPU): each document's log-likelihood (a choice's summed log-probability; a whole
passage's for the perplexity task) within ``ATOL + RTOL·|value|`` of HF's; accuracies and every per-document
correctness identical. Without the CPU vLLM the engine tests are skipped, saying how to get it.
"""
from __future__ import annotations

import numpy as np
import pytest

from fnet_dist.core.conditions import NORMAL, custom
from fnet_dist.core.config import EvaluateSection, ModelSection, VLLMSection, load_config
from fnet_dist.core.errors import InputError
from fnet_dist.evaluate import backends, read_samples, runner, vllm_backend
from fnet_dist.evaluate.conditions import top_conditions
from fnet_dist.evaluate.tasks import TaskOptions, prepare_tasks
from fnet_dist.evaluate.vllm_backend import VLLMSettings, model_args, vllm_python
from fnet_dist.model import testing
from fnet_dist.model.architectures import REGISTRY
from fnet_dist.model.bake import bake_checkpoint
from fnet_dist.model.bake_stream import read_bake_weights
from fnet_dist.model.edit import Edit
from fnet_dist.model.loading import load_model
from fnet_dist.model.masks import NeuronMask

TASKS = {"sentiment_rt": 12, "wiki_ppl": 1}  # multiple choice (acc) and perplexity, documents each
ATOL, RTOL = 1e-4, 1e-6  # per-document log-likelihood, float32 engines (measured: 2e-5 on a choice of ~-6 nats,
# 4e-4 on a passage of ~-3000 nats; the edits here move them by 0.1-40 nats)
SHAPE = (30, 576)  # SmolLM2-135M: layers × hidden size
ENGINE_PYTHON = vllm_python()


def _engine_imports(python: str) -> bool:
    """Whether ``python`` imports what the engine process does (vLLM, lm-eval's vLLM model, this fnet_dist)."""
    import os
    import subprocess

    env = {**os.environ, "PYTHONPATH": str(vllm_backend.PACKAGE_ROOT)}
    code = "import vllm, lm_eval.models.vllm_causallms, fnet_dist.evaluate.vllm_engine"
    try:
        return subprocess.run([python, "-c", code], env=env, capture_output=True, timeout=300, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


HAS_VLLM = vllm_backend._has_vllm(ENGINE_PYTHON) and _engine_imports(ENGINE_PYTHON)
needs_vllm = pytest.mark.skipif(not HAS_VLLM, reason=f"no working CPU vLLM in {ENGINE_PYTHON}: make vllm-env builds "
                                                     f".venv-vllm (make test does)")


def test_one_engine_per_configured_backend():
    from typing import get_args

    assert set(backends.ENGINES) == set(get_args(EvaluateSection.model_fields["backend"].annotation))
    with pytest.raises(InputError, match="unknown backend 'tgi'; expected one of hf, vllm"):
        backends.get_backend("tgi")


def test_model_args_carry_the_engine_settings():
    settings = VLLMSettings(VLLMSection(tensor_parallel_size=4, gpu_memory_utilization=0.85, max_model_len=4096,
                                        dtype="bfloat16"), ModelSection(revision="abc123", trust_remote_code=True))
    assert model_args("Qwen/Qwen2.5-72B-Instruct", settings, 7, dtype="float32") == {
        "pretrained": "Qwen/Qwen2.5-72B-Instruct", "tensor_parallel_size": 4, "dtype": "bfloat16",
        "gpu_memory_utilization": 0.85, "batch_size": "auto", "trust_remote_code": True, "seed": 7,
        "max_model_len": 4096, "revision": "abc123"}
    baked = model_args("/scratch/inhibit", settings, 7, hub=False)
    assert "revision" not in baked and baked["pretrained"] == "/scratch/inhibit"
    defaults = model_args("m", VLLMSettings(), 0)
    assert defaults["dtype"] == "auto" and "max_model_len" not in defaults
    assert model_args("m", VLLMSettings(), 0, dtype="float32")["dtype"] == "float32", "auto: the HF model's dtype"


def test_settings_from_the_pipeline_config(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("model: {id: x/y, revision: r1}\nevaluate: {backend: vllm, localization_site: mlp, scratch: /scratch, "
                    "vllm: {tensor_parallel_size: 8, python: /venv/bin/python, in_place: false}}\n")
    config = load_config(path)
    settings = VLLMSettings.from_sections(config.evaluate, config.model)
    assert (settings.engine.tensor_parallel_size, settings.scratch, settings.model.revision) == (8, "/scratch", "r1")
    assert (settings.engine.python, settings.engine.in_place) == ("/venv/bin/python", False)
    with pytest.raises(InputError, match="gpu_memory_utilization"):
        load_config(path, ["evaluate.vllm.gpu_memory_utilization=1.5"])


def test_the_engine_interpreter_comes_from_the_setting_then_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(vllm_backend.VLLM_PYTHON_ENV, "/from/env/python")
    assert vllm_python("/configured/python") == "/configured/python"
    assert vllm_python() == "/from/env/python"
    with pytest.raises(InputError, match=r"needs vLLM, which is not installed in /from/env/python; .*make vllm-env"):
        vllm_backend.require_vllm()
    monkeypatch.delenv(vllm_backend.VLLM_PYTHON_ENV)
    assert vllm_python() in (vllm_backend.sys.executable, str(vllm_backend.CHECKOUT_VENV_PYTHON))


def test_a_gguf_source_is_refused_in_one_line(tmp_path):
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")
    with pytest.raises(InputError, match=r"serves safetensors checkpoints, and .*model.gguf' is a GGUF file"):
        vllm_backend.VLLMRunner.open(str(gguf), tmp_path, batch_size=1, keep_checkpoints=False)


def test_bake_undoable_equals_bake_and_unbake_restores_bit_for_bit(tiny_llama):
    import torch

    from fnet_dist.model.bake import bake, bake_undoable, unbake

    edited, baked = load_model(tiny_llama), load_model(tiny_llama)
    arch = REGISTRY["llama"]
    original = {k: v.clone() for k, v in edited.model.state_dict().items()}
    mask = NeuronMask.random((2, 32), count=9, seed=1)
    saved = bake_undoable(edited.model, arch, mask, Edit("multiply", 1.7))
    bake(baked.model, arch, mask, Edit("multiply", 1.7))
    for name, tensor in edited.model.state_dict().items():
        assert torch.equal(tensor, baked.model.state_dict()[name]), name
    assert any(not torch.equal(edited.model.state_dict()[k], original[k]) for k in original)
    unbake(saved)
    for name, tensor in edited.model.state_dict().items():
        assert torch.equal(tensor, original[name]), name


def _conditions():
    """The unedited model, a planted network inhibited, and the top 5 % amplified (a synthetic networks store)."""
    rng = np.random.default_rng(0)
    maps = rng.uniform(-2, 2, (2, *SHAPE)).astype(np.float32)
    planted = rng.choice(SHAPE[0] * SHAPE[1], size=170, replace=False)
    maps[0].flat[planted] = 6.0
    networks = testing.networks_dataset(maps, corpus="synthetic", model_id="smollm2-135m-instruct")
    network = custom("network-1", NeuronMask.from_networks(networks, 0, threshold=3.6), Edit("inhibit"))
    factor = EvaluateSection().amplify_factor
    amplified = top_conditions(networks, percent=5.0, factor=factor)[1]
    assert network.mask.count == 170 and amplified.edit == Edit("multiply", factor)
    return [NORMAL, network, amplified]


@pytest.fixture(scope="module")
def packaged():
    return load_model("smollm2-135m-instruct")


@pytest.fixture(scope="module")
def both_runs(packaged, tmp_path_factory):
    """The three conditions through ``evaluate_conditions`` with each backend; the vLLM runner (its engine kept
    open for the module: ``close`` deferred) and the HF rows/folders."""
    conditions = _conditions()
    hf_out, vllm_out = tmp_path_factory.mktemp("hf"), tmp_path_factory.mktemp("vllm")
    hf = runner.evaluate_conditions(packaged, conditions, list(TASKS), hf_out, limit=TASKS, backend="hf",
                                    batch_size=8, progress=False)
    opened, real_close = [], vllm_backend.VLLMRunner.close
    patch = pytest.MonkeyPatch()
    patch.setattr(vllm_backend.VLLMRunner, "close", lambda self: opened.append(self))
    settings = VLLMSettings(VLLMSection(python=ENGINE_PYTHON))  # the defaults a run has
    try:
        vllm = runner.evaluate_conditions(packaged, conditions, list(TASKS), vllm_out, limit=TASKS, backend="vllm",
                                          vllm=settings, progress=False)
    finally:
        patch.undo()
    yield {"conditions": conditions, "hf": (hf, hf_out), "vllm": (vllm, vllm_out), "runner": opened[0]}
    real_close(opened[0])


def _loglikelihoods(out, condition, task) -> tuple[np.ndarray, list]:
    """Each document's log-likelihoods (one per choice, or the passage's) and its metrics, in document order."""
    samples = sorted(read_samples(out, condition, task), key=lambda s: s["doc_id"])
    values = [[float(r[0]) if isinstance(r, list) else float(r) for r in s["filtered_resps"]] for s in samples]
    metrics = [{m: s[m] for m in s["metrics"] if m == "acc"} for s in samples]
    return np.array(values), metrics


@needs_vllm
def test_vllm_equals_hf_hooks_on_every_condition(both_runs):
    (hf, hf_out), (vllm, vllm_out) = both_runs["hf"], both_runs["vllm"]
    normal = {}
    for condition in both_runs["conditions"]:
        for task, limit in TASKS.items():
            expected, expected_metrics = _loglikelihoods(hf_out, condition, task)
            found, found_metrics = _loglikelihoods(vllm_out, condition, task)
            assert expected.shape == found.shape and len(expected) == limit
            np.testing.assert_allclose(found, expected, atol=ATOL, rtol=RTOL, err_msg=f"{condition.name} {task}")
            assert found_metrics == expected_metrics, f"{condition.name} {task}: per-document correctness"
            if condition.mask is None:
                normal[task] = expected
            else:  # the edit changed what the model says by far more than the tolerance: equality means it was applied
                assert np.abs(expected - normal[task]).max() > 100 * ATOL, f"{condition.name} {task} is not an edit"
    accuracy = lambda rows: rows[rows.metric == "acc"].set_index("condition")["value"]
    assert accuracy(vllm).to_dict() == accuracy(hf).to_dict()
    assert set(vllm.task) == set(TASKS) and len(vllm) == len(hf)


@needs_vllm
def test_one_engine_serves_every_condition_edited_in_place(both_runs):
    engine = both_runs["runner"]
    assert engine.in_place and len(engine.starts) == 1, "one engine start for the run"
    assert [s["baked"] for s in engine.stats] == [False] * len(both_runs["conditions"]) * 2  # two task groups
    assert all(s["tokens"] > 0 for s in engine.stats)


@needs_vllm
def test_in_place_edit_equals_the_baked_checkpoint_and_is_undone_exactly(both_runs, tmp_path):
    engine, source = both_runs["runner"], both_runs["runner"].source.path
    for condition in both_runs["conditions"][1:]:
        layers = sorted({int(i) for i in np.flatnonzero(condition.mask.values.any(axis=1))})[:4]
        weights = np.load(engine.edited_weights(condition, layers, tmp_path / f"{condition.slug}.npz"))
        baked = bake_checkpoint(engine.spec, condition.mask, condition.edit, tmp_path / condition.slug)
        expected = read_bake_weights(baked, REGISTRY["llama"], layers)
        original = read_bake_weights(source, REGISTRY["llama"], layers)
        for layer in layers:
            np.testing.assert_array_equal(weights[f"edited_{layer}"], expected[layer].float().numpy())
            np.testing.assert_array_equal(weights[f"restored_{layer}"], original[layer].float().numpy())
            assert not np.array_equal(weights[f"edited_{layer}"], weights[f"restored_{layer}"])


@needs_vllm
def test_a_refused_edit_is_one_line_and_the_engine_serves_on(both_runs, tmp_path):
    engine = both_runs["runner"]
    add = custom("add", NeuronMask.random(SHAPE, count=5, seed=0), Edit("add", 0.5))
    manager = prepare_tasks(["sentiment_rt"], tmp_path / "tasks")
    with pytest.raises(InputError, match=r"cannot bake 'add' exactly: mlp.down_proj .* has no bias"):
        engine.run(add, ["sentiment_rt"], manager, 2, 0, 10)
    result = engine.run(NORMAL, ["sentiment_rt"], manager, 2, 0, 10)
    assert result["n-samples"]["sentiment_rt"]["effective"] == 2 and len(engine.starts) == 1


def test_an_engine_that_fails_or_dies_is_one_line_naming_its_log(tmp_path):
    import sys

    start = {"model_args": {"pretrained": str(tmp_path)}, "checkpoint": str(tmp_path), "in_place": True,
             "log_path": tmp_path / "engine.log", "cpu_kv_cache_gib": 1.0}
    with pytest.raises(vllm_backend.EngineError, match=r"failed while starting an engine on .*: ModuleNotFoundError: "
                                                       r"No module named 'vllm' \(log: .*engine.log\)$"):
        vllm_backend.EngineProcess(sys.executable, start.pop("model_args"), **start)  # this interpreter: no vLLM
    with pytest.raises(vllm_backend.EngineError, match=r"process ended \(exit status 1\) while starting"):
        vllm_backend.EngineProcess("/bin/false", {}, **start)


@needs_vllm
def test_few_shot_examples_and_the_chat_template_reach_the_engine(both_runs, packaged, tmp_path, monkeypatch):
    """``evaluate.num_fewshot`` and ``apply_chat_template`` build the engine's requests as they build hf's: the same
    log-likelihoods per document, and not the zero-shot ones (the module's engine, reopened with the options)."""
    options, limit = TaskOptions((), 2, True), {"sentiment_rt": 4}
    runner.evaluate_conditions(packaged, [NORMAL], ["sentiment_rt"], tmp_path / "hf", limit=limit, backend="hf",
                               batch_size=8, progress=False, task_options=options)
    engine = both_runs["runner"]

    def reopen(cls, *_, task_options=None, **__):
        engine.task_options = task_options
        return engine

    monkeypatch.setattr(vllm_backend.VLLMRunner, "open", classmethod(reopen))
    monkeypatch.setattr(vllm_backend.VLLMRunner, "close", lambda self: None)
    runner.evaluate_conditions(packaged, [NORMAL], ["sentiment_rt"], tmp_path / "vllm", limit=limit, backend="vllm",
                               progress=False, task_options=options)
    expected, _ = _loglikelihoods(tmp_path / "hf", NORMAL, "sentiment_rt")
    found, _ = _loglikelihoods(tmp_path / "vllm", NORMAL, "sentiment_rt")
    np.testing.assert_allclose(found, expected, atol=ATOL, rtol=RTOL)
    zero_shot, _ = _loglikelihoods(both_runs["hf"][1], NORMAL, "sentiment_rt")
    assert len(found) == 4 and np.abs(found - zero_shot[:4]).max() > 100 * ATOL, "the options changed the prompts"
    engine.task_options = None
