"""The ``vllm`` evaluation backend: one vLLM engine per run, each condition's edit written into its weights.

- ``VLLMSettings``: the engine's settings (the ``evaluate.vllm`` section), the ``model`` section (its revision and
  ``trust_remote_code``) and where checkpoints are baked (``evaluate.scratch``); ``VLLMSettings.from_sections(evaluate,
  model)``; ``vllm_options(evaluate, model)``: the ``vllm=`` keyword of ``runner.evaluate_conditions`` (empty for ``hf``).
- ``vllm_python(configured)``: the interpreter that runs the engine: ``evaluate.vllm.python``, else
  ``$FNET_VLLM_PYTHON``, else this one if it has vLLM, else the checkout's ``.venv-vllm`` (``make vllm-env``);
  ``require_vllm(configured)``: a clear error when that interpreter has no vLLM.
- ``model_args(pretrained, settings, seed, dtype=None, hub=True) -> dict``: lm-eval's ``model_args`` of its ``vllm``
  model: ``tensor_parallel_size``, ``dtype``, ``gpu_memory_utilization``, ``max_model_len``, ``batch_size="auto"``
  (vLLM schedules its own batches), ``trust_remote_code``, ``revision`` (hub ids only).
- ``EngineProcess``: one ``vllm_engine`` process (one engine) in that interpreter, asked JSON lines; its output
  goes to the evaluation folder's ``vllm-engine.log``, and a failure is one line naming it (``EngineError``, exit
  status 1).
- ``VLLMRunner``: ``check`` / ``run(condition, …)`` / ``close()`` for ``runner.evaluate_conditions``. One engine on the
  source serves every condition: the edit written into its weights before the condition's requests and undone
  exactly after (``vllm_engine``). Where that cannot work (quantized weights, a family without a bake place, CPU
  tensor parallelism, or ``evaluate.vllm.in_place: false``) each masked condition is baked
  (``fnet_dist.model.bake.bake_checkpoint``: streamed, the checkpoint's dtype kept) into ``scratch/<slug>`` and
  served by a fresh engine; the choice is logged. Before an engine starts, the HF model's CUDA tensors go to host
  memory and the CUDA cache is emptied (``close`` puts them back).
"""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.config import ModelSection, VLLMSection
from ..core.errors import FnetError, InputError
from ..core.layout import EvaluationFiles
from ..model.architectures import resolve_architecture
from ..model.bake import bake_checkpoint
from ..model.edit import model_shape, require_weight_site
from ..model.loading import LoadedModel, resolve_source
from .tasks import needs_lm_eval_index

__all__ = ["EngineError", "EngineProcess", "VLLMRunner", "VLLMSettings", "model_args", "release_gpu", "require_vllm",
           "restore_gpu", "vllm_options", "vllm_python"]

VLLM_PYTHON_ENV = "FNET_VLLM_PYTHON"
PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the engine process imports this same fnet_dist
CHECKOUT_VENV_PYTHON = PACKAGE_ROOT / ".venv-vllm" / "bin" / "python"  # make vllm-env
log = logging.getLogger(__name__)


class EngineError(FnetError):
    """The vLLM engine process failed (an environment failure: exit status 1)."""

    exit_code = 1


@dataclass(frozen=True)
class VLLMSettings:
    """The vLLM backend's settings: ``engine``, the ``evaluate.vllm`` section; ``model``, the ``model`` section (its
    revision and remote-code permission reach the bake and the engine); ``scratch``: where masks, results and baked
    checkpoints go (``evaluate.scratch``; None: a temporary folder)."""

    engine: VLLMSection = VLLMSection()
    model: ModelSection = ModelSection()
    scratch: str | None = None

    @classmethod
    def from_sections(cls, evaluate: Any, model: Any) -> "VLLMSettings":
        """From the config's ``evaluate`` and ``model`` sections: ``evaluate.vllm``, ``evaluate.scratch``, the
        model's revision and remote-code permission."""
        return cls(evaluate.vllm, model, scratch=evaluate.scratch)


def vllm_options(evaluate: Any, model: Any) -> dict[str, Any]:
    """``{"vllm": VLLMSettings}`` for ``runner.evaluate_conditions`` when ``evaluate.backend`` is vllm, else ``{}``."""
    return {"vllm": VLLMSettings.from_sections(evaluate, model)} if evaluate.backend == "vllm" else {}


def _has_vllm(python: str) -> bool:
    if os.path.abspath(python) == os.path.abspath(sys.executable):  # not realpath: a venv links to its base
        return importlib.util.find_spec("vllm") is not None
    probe = "import importlib.util, sys; sys.exit(importlib.util.find_spec('vllm') is None)"
    try:
        return subprocess.run([python, "-c", probe], capture_output=True, timeout=120, check=False).returncode == 0
    except OSError:
        return False


def vllm_python(configured: str | None = None) -> str:
    """The Python interpreter that runs the engine (see the module docstring for the order)."""
    chosen = configured or os.environ.get(VLLM_PYTHON_ENV)
    if chosen:
        return os.path.expanduser(chosen)
    if importlib.util.find_spec("vllm") is None and CHECKOUT_VENV_PYTHON.is_file():
        return str(CHECKOUT_VENV_PYTHON)
    return sys.executable


def require_vllm(configured: str | None = None) -> None:
    """Raise a clear error unless the engine's interpreter (``vllm_python(configured)``) has vLLM."""
    python = vllm_python(configured)
    if not _has_vllm(python):
        raise InputError(
            f"--backend vllm needs vLLM, which is not installed in {python}; on the CPU run make vllm-env (it makes "
            f".venv-vllm), on a CUDA machine pip install 'fnet-dist[vllm]'; name another interpreter with "
            f"evaluate.vllm.python or ${VLLM_PYTHON_ENV}; or use --backend hf"
        )


def model_args(pretrained: str, settings: VLLMSettings, seed: int, *, dtype: str | None = None,
               hub: bool = True) -> dict[str, Any]:
    """lm-eval's ``model_args`` for its ``vllm`` model (``lm_eval/models/vllm_causallms.py``); ``dtype`` stands
    for ``evaluate.vllm.dtype``'s ``auto`` (the dtype the HF model was loaded in)."""
    engine, model = settings.engine, settings.model
    args: dict[str, Any] = {
        "pretrained": pretrained, "tensor_parallel_size": engine.tensor_parallel_size,
        "dtype": dtype if engine.dtype == "auto" and dtype else engine.dtype,
        "gpu_memory_utilization": engine.gpu_memory_utilization, "batch_size": "auto",
        "trust_remote_code": model.trust_remote_code, "seed": seed,
    }
    if engine.max_model_len is not None:
        args["max_model_len"] = engine.max_model_len
    if engine.enforce_eager:
        args["enforce_eager"] = True
    if hub and model.revision:
        args["revision"] = model.revision
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


class EngineProcess:
    """``fnet_dist.evaluate.vllm_engine.main()`` in the engine's interpreter, serving ``checkpoint``: opened at
    once (``start_seconds``, ``in_place``, ``reason``), then ``ask(request)`` per request, ``close()``."""

    def __init__(self, python: str, args: dict[str, Any], *, checkpoint: str, in_place: bool, log_path: Path,
                 cpu_kv_cache_gib: float) -> None:
        self.checkpoint, self.log_path = checkpoint, Path(log_path)
        path = os.pathsep.join(p for p in (str(PACKAGE_ROOT), os.environ.get("PYTHONPATH")) if p)
        env = {**os.environ, "PYTHONPATH": path, "VLLM_ALLOW_INSECURE_SERIALIZATION": "1",  # apply_model's function
               "VLLM_WORKER_MULTIPROC_METHOD": "spawn", "TOKENIZERS_PARALLELISM": "false"}
        start = time.perf_counter()
        with open(self.log_path, "ab") as handle:
            # not "-m": functions sent to vLLM's workers are pickled by reference, so they must not live in __main__
            self.process = subprocess.Popen([python, "-c", "from fnet_dist.evaluate.vllm_engine import main; main()"],
                                            stdin=subprocess.PIPE,
                                            stdout=subprocess.PIPE, stderr=handle, text=True, env=env)
        opened = self.ask({"op": "open", "model_args": args, "in_place": in_place, "checkpoint": checkpoint,
                           "cpu_kv_cache_bytes": int(cpu_kv_cache_gib * 2**30)},
                          f"starting an engine on {checkpoint}")
        self.start_seconds = time.perf_counter() - start
        self.in_place, self.reason = bool(opened["in_place"]) and in_place, opened.get("reason")

    def _last_log_line(self) -> str:
        try:
            lines = [line for line in self.log_path.read_text(errors="replace").splitlines() if line.strip()]
        except OSError:
            lines = []
        return lines[-1].strip() if lines else "no output"

    def ask(self, request: dict, what: str) -> dict:
        """Send ``request``; its answer. A failed request or a dead process raises one line."""
        try:
            self.process.stdin.write(json.dumps(request) + "\n")
            self.process.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # the process is gone: reading says why
        line = self.process.stdout.readline()
        if not line:
            code = self.process.wait()
            raise EngineError(f"the vLLM engine process ended (exit status {code}) while {what}: "
                              f"{self._last_log_line()} (log: {self.log_path})")
        answer = json.loads(line)
        if answer.get("input"):
            raise InputError(f"the vLLM engine refused {what}: {answer['error']}")
        if "error" in answer:
            raise EngineError(f"the vLLM engine failed while {what}: {answer['error']} (log: {self.log_path})")
        return answer

    def close(self) -> None:
        """End the process (its engine shuts down when its input closes)."""
        if self.process.poll() is None:
            try:
                self.process.stdin.close()
                self.process.wait(timeout=120)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()


class VLLMRunner:
    """One engine on the source; each condition's edit written into its weights (or, where that cannot work, baked
    into ``scratch/<slug>`` and served by a fresh engine). ``starts``: each engine start's seconds; ``stats``: per
    condition and task group, its seconds, tokens and whether a baked checkpoint served it."""

    @classmethod
    def open(cls, model, out, *, batch_size: int, keep_checkpoints: bool, vllm: Any = None, task_options: Any = None,
             **_: Any) -> "VLLMRunner":
        """The runner for ``model`` (a ``LoadedModel``, whose dtype the engine takes, or a model spec);
        ``task_options``: a ``tasks.TaskOptions`` (few-shot examples, chat template), applied in the engine."""
        loaded, spec = (model, model.source.model_id) if isinstance(model, LoadedModel) else (None, str(model))
        runner = cls(spec, out, batch_size, keep_checkpoints, vllm, loaded)
        runner.task_options = task_options
        return runner

    def __init__(self, spec: str, out: Path, batch_size: int, keep_checkpoints: bool,
                 settings: VLLMSettings | None = None, loaded: Any = None) -> None:
        self.spec, self.source, self.out, self.keep = spec, resolve_source(spec), Path(out), keep_checkpoints
        if self.source.gguf_file:
            raise InputError(f"the vllm backend serves safetensors checkpoints, and {spec!r} is a GGUF file; "
                             f"give the model's folder or hub id, or use --backend hf")
        self.settings = settings or VLLMSettings()
        self.python = vllm_python(self.settings.engine.python)
        self._own_scratch = not self.settings.scratch
        self.task_options = None  # set by open(): few-shot examples and chat template for the engine's scorer
        self.scratch = Path(self.settings.scratch or tempfile.mkdtemp(prefix="fnet-vllm-"))
        self.scratch.mkdir(parents=True, exist_ok=True)
        self.loaded, self._moved = loaded, None
        self.batch_size = batch_size  # vLLM batches by itself ("auto"); kept for the run config's key
        self.engine: EngineProcess | None = None
        self.in_place: bool | None = None  # decided when the source engine first opens
        self._baked: Path | None = None  # the checkpoint of the last baked condition
        self.starts: list[float] = []  # seconds of each engine start
        self.stats: list[dict[str, Any]] = []  # per condition: name, seconds, tokens, engine

    def check(self, condition) -> None:
        """The edit's site (vLLM's edits are written into weights: MLP outputs only) and the mask's shape against
        the loaded model (the bake checks it where there is none)."""
        if condition.edit is not None:
            require_weight_site(condition.edit)
        if condition.mask is not None and self.loaded is not None:
            condition.mask.check_shape(*model_shape(self.loaded.model, resolve_architecture(self.loaded.model)))

    def _release(self) -> None:
        if self._moved is None and self.loaded is not None:
            self._moved = release_gpu(self.loaded.model)

    def _engine(self, checkpoint: str, seed: int, *, source: bool) -> EngineProcess:
        """The engine serving ``checkpoint``: the running one, or a fresh one (the previous one closed first)."""
        if self.engine is not None and self.engine.checkpoint == checkpoint:
            return self.engine
        if self.engine is not None:
            self.engine.close()
            self.engine = None
        self._release()
        dtype = self.loaded.dtype if self.loaded is not None else None
        args = model_args(checkpoint, self.settings, seed, dtype=dtype, hub=source and not self.source.local)
        in_place = source and self.settings.engine.in_place
        self.engine = EngineProcess(self.python, args, checkpoint=checkpoint, in_place=in_place,
                                    log_path=EvaluationFiles(self.out).engine_log,
                                    cpu_kv_cache_gib=self.settings.engine.cpu_kv_cache_gib)
        self.starts.append(self.engine.start_seconds)
        if source and self.in_place is None:
            self.in_place = self.engine.in_place
            if self.in_place:
                log.info("vllm: one engine for the run; each condition's edit is written into its weights and undone "
                         "after (engine started in %.1f s)", self.engine.start_seconds)
            else:
                why = self.engine.reason or "evaluate.vllm.in_place is false"
                log.warning("vllm: each edited condition is baked into a checkpoint served by a fresh engine: %s", why)
        return self.engine

    def run(self, condition, tasks, manager, limit, seed, bootstrap_iters) -> dict:
        request = {"op": "run", "tasks": list(tasks), "limit": limit, "seed": seed, "bootstrap_iters": bootstrap_iters,
                   "include_path": [str(p) for p in getattr(manager, "include_path", None) or []],
                   "include_defaults": needs_lm_eval_index(tasks), "result": str(self.scratch / f"{condition.slug}.json"),
                   "mask": None, "edit": None, "num_fewshot": getattr(self.task_options, "num_fewshot", None),
                   "apply_chat_template": bool(getattr(self.task_options, "apply_chat_template", False))}
        if condition.mask is None or self.in_place is not False:
            engine = self._engine(self.source.path, seed, source=True)
        if condition.mask is not None and self.in_place:
            request["mask"] = condition.mask.save(str(self.scratch / f"{condition.slug}.mask.npz"))
            request["edit"] = dataclasses.asdict(condition.edit)
        elif condition.mask is not None:
            engine = self._engine(self._bake(condition), seed, source=False)
        try:
            answer = engine.ask(request, f"evaluating {condition.name}")
            result = json.loads(Path(answer["result"]).read_text())
        finally:
            for path in (Path(request["result"]), self.scratch / f"{condition.slug}.mask.npz"):
                path.unlink(missing_ok=True)
        self.stats.append({"condition": condition.name, "seconds": answer["seconds"], "tokens": answer["tokens"],
                           "baked": engine.checkpoint != self.source.path})
        return result

    def _bake(self, condition) -> str:
        """``condition``'s baked checkpoint (baked once for all its task groups; the previous one removed first)."""
        folder = self.scratch / condition.slug
        if self._baked != folder:
            self._drop_baked()
            self._baked = Path(bake_checkpoint(self.spec, condition.mask, condition.edit, folder, overwrite=True,
                                               revision=self.settings.model.revision,
                                               trust_remote_code=self.settings.model.trust_remote_code, device="cpu"))
        return str(self._baked)

    def _drop_baked(self) -> None:
        """Close the engine serving the last baked checkpoint and remove it (unless kept)."""
        if self._baked is None:
            return
        if self.engine is not None and self.engine.checkpoint == str(self._baked):
            self._close_engine()
        if not self.keep:
            shutil.rmtree(self._baked, ignore_errors=True)
        self._baked = None

    def edited_weights(self, condition, layers: list[int], out: str | os.PathLike) -> str:
        """The source engine's bake-module weights of ``layers`` under ``condition``'s edit and after the restore,
        saved to ``out`` (``.npz``: ``edited_<i>``, ``restored_<i>``) — to compare with a baked checkpoint."""
        engine = self._engine(self.source.path, 0, source=True)
        if not self.in_place:
            raise InputError(f"the engine cannot be edited in place here: {engine.reason}")
        mask = condition.mask.save(str(self.scratch / f"{condition.slug}.mask.npz"))
        engine.ask({"op": "weights", "mask": mask, "edit": dataclasses.asdict(condition.edit),
                    "layers": list(layers), "out": str(out)}, f"reading the weights under {condition.name}")
        return str(out)

    def _close_engine(self) -> None:
        if self.engine is not None:
            self.engine.close()
            self.engine = None

    def close(self) -> None:
        """End the engine, give the HF model its GPU tensors back, remove a temporary scratch folder."""
        self._close_engine()
        self._drop_baked()
        if self._moved:
            restore_gpu(self.loaded.model, self._moved)
        self._moved = None
        if self._own_scratch:
            shutil.rmtree(self.scratch, ignore_errors=True)
