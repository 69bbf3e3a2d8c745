"""The evaluation engines behind one protocol, chosen from one table keyed by the config's ``evaluate.backend``.

- ``Engine``: what ``runner.evaluate_conditions`` asks of an engine: the model it evaluates (``loaded``, ``spec``),
  ``check(condition)`` before any work, ``run(condition, tasks, manager, limit, seed, bootstrap_iters) -> dict``
  (lm-eval's result of one condition) and ``close()`` after the last condition.
- ``Backend(require, open)``: ``require()`` raises a clear error when the engine cannot run here;
  ``open(model, out, *, batch_size, hook_module, keep_checkpoints, vllm) -> Engine``.
- ``ENGINES``: ``hf`` (hooks on the loaded model, ``fnet_dist.evaluate.hf_backend.HFEngine``) and ``vllm`` (baked
  checkpoints in fresh processes, ``fnet_dist.evaluate.vllm_backend.VLLMRunner``); each entry imports its
  engine (lm-eval, vLLM, torch) only when opened. ``BACKENDS``: their names.
- ``get_backend(name) -> Backend``: the entry, or an ``InputError`` naming the choices; ``require_vllm()``.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from ..core.errors import InputError

__all__ = ["BACKENDS", "ENGINES", "Backend", "Engine", "get_backend", "require_vllm"]


class Engine(Protocol):
    """One evaluation engine for a run of conditions (see the module docstring)."""

    loaded: Any  # the LoadedModel evaluated (or whose GPU memory is lent), None when only a spec was given
    spec: str  # the model's id, as the run config records it

    def check(self, condition: Any) -> None: ...

    def run(self, condition: Any, tasks: list[str], manager: Any, limit: Any, seed: int, bootstrap_iters: int) -> dict: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Backend:
    require: Callable[[], None]
    open: Callable[..., Engine]


def require_vllm() -> None:
    """Raise a clear error unless vLLM can be imported here."""
    if importlib.util.find_spec("vllm") is None:
        raise InputError(
            "--backend vllm needs vLLM, which is not installed here; on a CUDA machine run "
            "pip install 'fnet-dist[vllm]', or use --backend hf"
        )


def _open_hf(model, out, *, batch_size: int, hook_module: str | None, **_: Any) -> Engine:
    from ..model.loading import LoadedModel, load_model
    from .hf_backend import HFEngine

    loaded = model if isinstance(model, LoadedModel) else load_model(model)
    return HFEngine(loaded, batch_size, hook_module)


def _open_vllm(model, out, *, batch_size: int, keep_checkpoints: bool, vllm: Any, **_: Any) -> Engine:
    from ..model.loading import LoadedModel
    from .vllm_backend import VLLMRunner

    loaded, spec = (model, model.source.model_id) if isinstance(model, LoadedModel) else (None, str(model))
    return VLLMRunner(spec, out, batch_size, keep_checkpoints, vllm, loaded)


ENGINES: dict[str, Backend] = {
    "hf": Backend(require=lambda: None, open=_open_hf),
    "vllm": Backend(require=lambda: require_vllm(), open=_open_vllm),  # looked up when called (tests replace it)
}
BACKENDS = tuple(ENGINES)


def get_backend(name: str) -> Backend:
    """The table's entry for ``name`` (the ``evaluate.backend`` literal)."""
    if name not in ENGINES:
        raise InputError(f"unknown backend {name!r}; expected one of {', '.join(ENGINES)}")
    return ENGINES[name]
