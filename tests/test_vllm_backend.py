"""The vllm backend without vLLM: lm-eval's model arguments, and the one-process-per-condition protocol driven
by a fake evaluator module (vLLM cannot be installed on these CPU machines; no real engine runs here)."""
from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest

from fnet_dist.core.config import ModelSection, VLLMSection, load_config
from fnet_dist.model.edit import Edit
from fnet_dist.core.errors import InputError
from fnet_dist.evaluate import backends, runner, vllm_backend
from fnet_dist.core.conditions import NORMAL, Condition
from fnet_dist.evaluate.vllm_backend import VLLMSettings, model_args
from fnet_dist.model.masks import NeuronMask
from fnet_dist.model.loading import load_model

ROOT = Path(__file__).resolve().parents[1]

FAKE = '''
import json, os
from pathlib import Path

def evaluate(request):
    """Stands in for lm-eval + vLLM: reports what the child saw."""
    pretrained = Path(request["model_args"]["pretrained"])
    if request["condition"] == "inhibit:boom":
        raise RuntimeError("engine failed to start")
    baked = (pretrained / "fnet_edit.json").is_file()
    task = request["tasks"][0]
    return {"results": {task: {"acc,none": 0.25 if baked else 0.75, "acc_stderr,none": 0.01}},
            "n-samples": {task: {"effective": 4}}, "pid": os.getpid(), "model_args": request["model_args"],
            "baked": baked, "include_path": request["include_path"]}
'''


def test_one_engine_per_configured_backend():
    from typing import get_args

    from fnet_dist.core.config import EvaluateSection

    assert set(backends.ENGINES) == set(get_args(EvaluateSection.model_fields["backend"].annotation))
    with pytest.raises(InputError, match="unknown backend 'tgi'; expected one of hf, vllm"):
        backends.get_backend("tgi")


def test_model_args_carry_the_engine_settings():
    settings = VLLMSettings(VLLMSection(tensor_parallel_size=4, gpu_memory_utilization=0.85, max_model_len=4096,
                                        dtype="bfloat16"), ModelSection(revision="abc123", trust_remote_code=True))
    assert model_args("Qwen/Qwen2.5-72B-Instruct", settings, 7) == {
        "pretrained": "Qwen/Qwen2.5-72B-Instruct", "tensor_parallel_size": 4, "dtype": "bfloat16",
        "gpu_memory_utilization": 0.85, "batch_size": "auto", "trust_remote_code": True, "seed": 7,
        "max_model_len": 4096, "revision": "abc123"}
    baked = model_args("/scratch/inhibit", settings, 7, hub=False)
    assert "revision" not in baked and baked["pretrained"] == "/scratch/inhibit"
    defaults = model_args("m", VLLMSettings(), 0, tokenizer="/tok")
    assert defaults["dtype"] == "auto" and "max_model_len" not in defaults and defaults["tokenizer"] == "/tok"


def test_settings_from_the_pipeline_config(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("model: {id: x/y, revision: r1}\nevaluate: {backend: vllm, scratch: /scratch, vllm: {tensor_parallel_size: 8}}\n")
    config = load_config(path)
    settings = VLLMSettings.from_sections(config.evaluate, config.model)
    assert (settings.engine.tensor_parallel_size, settings.scratch, settings.model.revision) == (8, "/scratch", "r1")
    with pytest.raises(InputError, match="gpu_memory_utilization"):
        load_config(path, ["evaluate.vllm.gpu_memory_utilization=1.5"])


@pytest.fixture()
def fake_engine(tmp_path, monkeypatch):
    (tmp_path / "fake_engine.py").write_text(textwrap.dedent(FAKE))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), str(ROOT)]))
    monkeypatch.setattr(backends, "require_vllm", lambda: None)
    calls = []
    monkeypatch.setattr(vllm_backend, "release_gpu", lambda model: calls.append("release") or {})
    real = vllm_backend.run_in_process
    monkeypatch.setattr(vllm_backend, "run_in_process", lambda *a, **k: calls.append("process") or real(*a, **k))
    return calls


def test_each_condition_runs_in_its_own_process_on_a_baked_checkpoint(fake_engine, tiny_llama, tmp_path):
    loaded = load_model(tiny_llama)
    mask = NeuronMask.random((2, 32), count=6, seed=0)
    conditions = [NORMAL, Condition("custom", mask, Edit("inhibit"), label="x")]
    settings = VLLMSettings(scratch=str(tmp_path / "scratch"), evaluator="fake_engine:evaluate")
    rows = runner.evaluate_conditions(loaded, conditions, ["sentiment_rt"], tmp_path / "out", backend="vllm",
                                      vllm=settings, progress=False)
    assert fake_engine == ["release", "process", "process"], "the HF model must be freed before the first engine"
    assert rows.set_index("condition")["value"].to_dict() == {"normal": 0.75, "inhibit:x": 0.25}
    seen = [json.loads((tmp_path / "out" / "conditions" / c.slug / "results.json").read_text()) for c in conditions]
    assert len({s["pid"] for s in seen} | {os.getpid()}) == 3
    assert seen[0]["model_args"]["pretrained"] == str(Path(tiny_llama).resolve()) and not seen[0]["baked"]
    assert seen[1]["model_args"]["pretrained"].startswith(str(tmp_path / "scratch")) and seen[1]["baked"]
    assert seen[1]["model_args"]["batch_size"] == "auto" and seen[1]["include_path"]
    assert list((tmp_path / "scratch").iterdir()) == [], "checkpoints and process files are removed after use"


def test_a_failed_engine_process_is_one_clear_error(fake_engine, tiny_llama, tmp_path):
    settings = VLLMSettings(scratch=str(tmp_path / "scratch"), evaluator="fake_engine:evaluate")
    with pytest.raises(InputError, match=r"the vLLM evaluation process for 'inhibit:boom' failed: RuntimeError: engine failed to start$"):
        boom = Condition("custom", NeuronMask.random((2, 32), count=6, seed=0), Edit("inhibit"), label="boom")
        runner.evaluate_conditions(load_model(tiny_llama), [boom], ["sentiment_rt"], tmp_path / "out",
                                   backend="vllm", vllm=settings, progress=False)
