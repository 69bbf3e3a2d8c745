"""The ``vllm`` evaluation backend: lm-eval's ``vllm`` model on baked checkpoints, one fresh process per condition.

- ``VLLMSettings``: the engine's arguments (the ``evaluate.vllm`` section), the ``model`` section (its revision and
  ``trust_remote_code``) and where checkpoints are baked (``evaluate.scratch``); ``VLLMSettings.from_sections(evaluate, model)``;
  ``vllm_options(evaluate, model)``: the ``vllm=`` keyword of ``runner.evaluate_conditions`` (empty for ``hf``).
- ``model_args(pretrained, settings, seed, tokenizer=None, hub=True) -> dict``: lm-eval's ``model_args`` of
  its ``vllm`` model: ``tensor_parallel_size``, ``dtype``, ``gpu_memory_utilization``, ``max_model_len``,
  ``batch_size="auto"`` (vLLM schedules its own batches), ``trust_remote_code``, ``revision`` (hub ids only).
- ``VLLMRunner``: ``check`` / ``run(condition, …)`` / ``close()`` for ``runner.evaluate_conditions``. Before the
  first engine starts, the HF model's CUDA tensors go to host memory and the CUDA cache is emptied (``close``
  puts them back). Each condition's edit is baked (``fnet_dist.model.bake.bake_checkpoint``: streamed, the
  checkpoint's dtype kept, so every condition runs the same dtype) into ``scratch/<slug>``, evaluated by an
  engine in a fresh Python process (engines do not reliably give GPU memory back in-process), then deleted.
- ``run_in_process(request, folder) -> dict``: that process protocol: ``request.json`` in, ``result.json``
  out, ``python -m fnet_dist.evaluate.vllm_backend REQUEST RESULT``; a failed child is a one-line error.

The tests drive the protocol with a fake evaluator module (``request["evaluator"]``) because vLLM cannot be
installed on the project's CPU machines: none of this module has run against a real vLLM engine here.
"""
from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.config import ModelSection, VLLMSection
from ..core.errors import InputError
from ..model.bake import bake_checkpoint
from ..model.loading import LoadedModel, resolve_source
from .tasks import needs_lm_eval_index

__all__ = ["VLLMRunner", "VLLMSettings", "model_args", "vllm_options", "release_gpu", "restore_gpu", "run_in_process"]

DEFAULT_EVALUATOR = "fnet_dist.evaluate.vllm_backend:evaluate_request"


@dataclass(frozen=True)
class VLLMSettings:
    """The vLLM backend's settings: ``engine``, the ``evaluate.vllm`` section; ``model``, the ``model`` section (its
    revision and remote-code permission reach the bake and the engine); ``scratch``: where baked checkpoints go
    (``evaluate.scratch``; None: a temporary folder); ``evaluator``: the child's ``module:function``."""

    engine: VLLMSection = VLLMSection()
    model: ModelSection = ModelSection()
    scratch: str | None = None
    evaluator: str = DEFAULT_EVALUATOR

    @classmethod
    def from_sections(cls, evaluate: Any, model: Any) -> "VLLMSettings":
        """From the config's ``evaluate`` and ``model`` sections: ``evaluate.vllm``, ``evaluate.scratch``, the
        model's revision and remote-code permission."""
        return cls(evaluate.vllm, model, scratch=evaluate.scratch)


def vllm_options(evaluate: Any, model: Any) -> dict[str, Any]:
    """``{"vllm": VLLMSettings}`` for ``runner.evaluate_conditions`` when ``evaluate.backend`` is vllm, else ``{}``."""
    return {"vllm": VLLMSettings.from_sections(evaluate, model)} if evaluate.backend == "vllm" else {}


def model_args(pretrained: str, settings: VLLMSettings, seed: int, *, tokenizer: str | None = None,
               hub: bool = True) -> dict[str, Any]:
    """lm-eval's ``model_args`` for its ``vllm`` model (``lm_eval/models/vllm_causallms.py``)."""
    engine, model = settings.engine, settings.model
    args: dict[str, Any] = {
        "pretrained": pretrained, "tensor_parallel_size": engine.tensor_parallel_size, "dtype": engine.dtype,
        "gpu_memory_utilization": engine.gpu_memory_utilization, "batch_size": "auto",
        "trust_remote_code": model.trust_remote_code, "seed": seed,
    }
    if engine.max_model_len is not None:
        args["max_model_len"] = engine.max_model_len
    if engine.enforce_eager:
        args["enforce_eager"] = True
    if hub and model.revision:
        args["revision"] = model.revision
    if tokenizer is not None:
        args["tokenizer"] = tokenizer
    return args


def release_gpu(model: Any) -> dict[str, Any]:
    """Move ``model``'s CUDA parameters and buffers to host memory and empty the CUDA cache, so that vLLM
    sees the GPU free; returns where each tensor was, for ``restore_gpu``."""
    import gc

    import torch

    moved: dict[str, Any] = {}
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if tensor.device.type == "cuda":
            moved[name] = tensor.device
            tensor.data = tensor.data.to("cpu")
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return moved


def restore_gpu(model: Any, moved: dict[str, Any]) -> None:
    """Put the tensors ``release_gpu`` moved back on their devices."""
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if name in moved:
            tensor.data = tensor.data.to(moved[name])


def run_in_process(request: dict[str, Any], folder: str | os.PathLike, timeout: float | None = None) -> dict:
    """Run one evaluation ``request`` in a fresh Python process; its result (lm-eval's result dict)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    request_file, result_file = folder / "request.json", folder / "result.json"
    request_file.write_text(json.dumps(request, default=str))
    result_file.unlink(missing_ok=True)
    env = {**os.environ, "VLLM_WORKER_MULTIPROC_METHOD": "spawn"}
    done = subprocess.run([sys.executable, "-m", "fnet_dist.evaluate.vllm_backend", str(request_file), str(result_file)],
                          env=env, stdout=sys.stderr, stderr=subprocess.PIPE, text=True, timeout=timeout)
    if done.returncode != 0 or not result_file.is_file():
        last = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        raise InputError(f"the vLLM evaluation process for {request.get('condition', '?')!r} failed: {last}")
    return json.loads(result_file.read_text())


def evaluate_request(request: dict[str, Any]) -> dict:
    """The child's work: lm-eval's ``simple_evaluate`` with its ``vllm`` model on ``request``."""
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=request["include_path"], include_defaults=request["include_defaults"])
    seed = request["seed"]
    return simple_evaluate(
        model="vllm", model_args=request["model_args"], tasks=request["tasks"], task_manager=manager,
        limit=request["limit"], log_samples=True, bootstrap_iters=request["bootstrap_iters"], random_seed=seed,
        numpy_random_seed=seed, torch_random_seed=seed, fewshot_random_seed=seed, verbosity="WARNING",
    )


def main(argv: list[str]) -> int:
    """``python -m fnet_dist.evaluate.vllm_backend REQUEST RESULT``: evaluate, write the result as JSON."""
    from lm_eval.utils import handle_non_serializable

    request = json.loads(Path(argv[0]).read_text())
    module, _, function = request.get("evaluator", DEFAULT_EVALUATOR).partition(":")
    result = getattr(importlib.import_module(module), function)(request)
    partial = Path(argv[1] + ".partial")
    partial.write_text(json.dumps(result, default=handle_non_serializable))
    os.replace(partial, argv[1])
    return 0


class VLLMRunner:
    """Each condition baked into ``scratch/<slug>`` (the unedited one: the source itself) and evaluated by
    lm-eval's ``vllm`` model in a fresh process."""

    @classmethod
    def open(cls, model, out, *, batch_size: int, keep_checkpoints: bool, vllm: Any, **_: Any) -> "VLLMRunner":
        """The engine for ``model`` (a ``LoadedModel`` whose weights are baked, or a model spec)."""
        loaded, spec = (model, model.source.model_id) if isinstance(model, LoadedModel) else (None, str(model))
        return cls(spec, out, batch_size, keep_checkpoints, vllm, loaded)

    def __init__(self, spec: str, out: Path, batch_size: int, keep_checkpoints: bool,
                 settings: VLLMSettings | None = None, loaded: Any = None) -> None:

        self.spec, self.source, self.out, self.keep = spec, resolve_source(spec), Path(out), keep_checkpoints
        self.settings = settings or VLLMSettings()
        self.scratch = Path(self.settings.scratch) if self.settings.scratch else Path(tempfile.mkdtemp(prefix="fnet-bake-"))
        self.loaded, self._moved = loaded, None
        self.batch_size = batch_size  # vLLM batches by itself ("auto"); kept for the run config's key

    def check(self, condition) -> None:  # the bake checks the mask against the checkpoint
        return None

    def _release(self) -> None:
        if self._moved is None and self.loaded is not None:
            self._moved = release_gpu(self.loaded.model)

    def close(self) -> None:
        """Give the HF model its GPU tensors back."""
        if self._moved:
            restore_gpu(self.loaded.model, self._moved)
        self._moved = None

    def request(self, condition, tasks, manager, limit, seed, bootstrap_iters) -> tuple[dict, Path | None]:
        """The child's request for ``condition`` (baking its checkpoint first) and the checkpoint to delete."""
        checkpoint = None
        if condition.mask is None and self.source.gguf_file:
            args = model_args(str(Path(self.source.path) / self.source.gguf_file), self.settings, seed,
                              tokenizer=self.source.path, hub=False)
        elif condition.mask is None:
            args = model_args(self.source.path, self.settings, seed, hub=not self.source.local)
        else:
            checkpoint = self.scratch / condition.slug
            baked = bake_checkpoint(self.spec, condition.mask, condition.edit, checkpoint, overwrite=True,
                                    revision=self.settings.model.revision,
                                    trust_remote_code=self.settings.model.trust_remote_code,
                                    device="cpu")
            args = model_args(str(baked), self.settings, seed, hub=False)

        include = [str(p) for p in getattr(manager, "include_path", None) or []]
        request = {"condition": condition.name, "model_args": args, "tasks": list(tasks), "limit": limit, "seed": seed,
                   "bootstrap_iters": bootstrap_iters, "include_path": include,
                   "include_defaults": needs_lm_eval_index(tasks),
                   "evaluator": self.settings.evaluator}
        return request, checkpoint

    def run(self, condition, tasks, manager, limit, seed, bootstrap_iters) -> dict:
        self._release()
        request, checkpoint = self.request(condition, tasks, manager, limit, seed, bootstrap_iters)
        try:
            return run_in_process(request, self.scratch / f"{condition.slug}.process")
        finally:
            shutil.rmtree(self.scratch / f"{condition.slug}.process", ignore_errors=True)
            if checkpoint is not None and not self.keep:
                shutil.rmtree(checkpoint, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
