"""The evaluation engines behind one protocol, chosen from one table keyed by the config's ``evaluate.backend``.

- ``Engine``: what ``runner.evaluate_conditions`` asks of an engine: the model it evaluates (``loaded``, ``spec``),
  ``check(condition)`` before any work, ``run(condition, tasks, manager, limit, seed, bootstrap_iters) -> dict``
  (lm-eval's result of one condition) and ``close()`` after the last condition.
- ``Backend(require, engine)``: ``require(python=None)`` raises a clear error when the engine cannot run here
  (``python``: ``evaluate.vllm.python``, the vllm engine's interpreter); ``engine``
  names the engine class (``module:Class``), imported by ``open(model, out, *, batch_size, hook_module,
  keep_checkpoints, vllm) -> Engine`` (the class's ``open``) only when a run opens it.
- ``ENGINES``: ``hf`` (hooks on the loaded model, ``fnet_dist.evaluate.hf_backend.HFEngine``) and ``vllm`` (one
  vLLM engine in its own process, edits written into its weights, ``fnet_dist.evaluate.vllm_backend.VLLMRunner``);
  each entry imports its engine (lm-eval, vLLM, torch) only when opened. ``BACKENDS``: their names.
- ``get_backend(name) -> Backend``: the entry, or an ``InputError`` naming the choices.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from ..core.errors import InputError
from .vllm_backend import require_vllm

__all__ = ["BACKENDS", "ENGINES", "Backend", "Engine", "get_backend"]


class Engine(Protocol):
    """One evaluation engine for a run of conditions (see the module docstring)."""

    loaded: Any  # the LoadedModel evaluated (or whose GPU memory is lent), None when only a spec was given
    spec: str  # the model's id, as the run config records it

    def check(self, condition: Any) -> None: ...

    def run(self, condition: Any, tasks: list[str], manager: Any, limit: Any, seed: int, bootstrap_iters: int) -> dict: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Backend:
    """An entry of ``ENGINES``: the check that the engine can run here, and where its class lives."""

    require: Callable[..., None]  # require(python=None)
    engine: str  # "package.module:Class"; the module imports lm-eval / vLLM / torch, so it is loaded when opened

    def open(self, model, out, **options: Any) -> Engine:
        """The engine for ``model`` (a ``LoadedModel`` or a model spec), writing under ``out``."""
        module, name = self.engine.split(":")
        return getattr(importlib.import_module(module), name).open(model, out, **options)


ENGINES: dict[str, Backend] = {
    "hf": Backend(require=lambda python=None: None, engine="fnet_dist.evaluate.hf_backend:HFEngine"),
    "vllm": Backend(require=require_vllm, engine="fnet_dist.evaluate.vllm_backend:VLLMRunner"),
}
BACKENDS = tuple(ENGINES)


def get_backend(name: str) -> Backend:
    """The table's entry for ``name`` (the ``evaluate.backend`` literal)."""
    if name not in ENGINES:
        raise InputError(f"unknown backend {name!r}; expected one of {', '.join(ENGINES)}")
    return ENGINES[name]
