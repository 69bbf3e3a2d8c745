"""The ``hf`` evaluation backend: every condition scored on one loaded model, its edit applied by hooks.

- ``HFEngine(loaded, batch_size, hook_module)``: an ``Engine`` (``fnet_dist.evaluate.backends``): one
  ``hflm.LeanHFLM`` (lm-eval's ``HFLM`` with the LM head only at scored positions) around the loaded model;
  requests built once per task group by ``scoring.Scorer`` and scored for each condition inside
  ``fnet_dist.model.edit.edited``.
"""
from __future__ import annotations

from contextlib import nullcontext
from typing import Any

from ..model.architectures import resolve_architecture
from ..model.edit import edited, model_shape
from ..model.loading import LoadedModel, load_model
from .hflm import LeanHFLM
from .scoring import Scorer

__all__ = ["HFEngine"]


class HFEngine:
    """One ``LeanHFLM`` around the loaded model; each condition runs inside ``edited(...)``."""

    @classmethod
    def open(cls, model, out, *, batch_size: int | str, hook_module: str | None, task_options: Any = None,
             **_: Any) -> "HFEngine":
        """The engine on ``model`` (a ``LoadedModel``, or a spec loaded here); ``out`` is not used;
        ``task_options``: a ``tasks.TaskOptions`` (few-shot examples, chat template)."""
        engine = cls(model if isinstance(model, LoadedModel) else load_model(model), batch_size, hook_module)
        engine.task_options = task_options
        return engine

    def __init__(self, loaded, batch_size: int | str, hook_module: str | None) -> None:
        self.loaded = loaded
        self.spec = loaded.source.model_id
        self.arch = resolve_architecture(loaded.model, hook_module)
        self.shape = model_shape(loaded.model, self.arch)
        self.lm = LeanHFLM(pretrained=loaded.model, tokenizer=loaded.tokenizer,
                           batch_size=batch_size if batch_size == "auto" else int(batch_size))
        self.task_options = None
        self.scorers: dict[tuple, Scorer] = {}  # requests built once per task group, scored per condition

    def check(self, condition) -> None:
        if condition.mask is not None:
            condition.mask.check_shape(*self.shape)

    def run(self, condition, tasks, manager, limit, seed, bootstrap_iters) -> dict:
        key = (tuple(tasks), limit, seed, bootstrap_iters)
        if key not in self.scorers:
            self.scorers[key] = Scorer(self.lm, manager, tasks, limit=limit, seed=seed, bootstrap_iters=bootstrap_iters,
                                       options=self.task_options)
        context = nullcontext() if condition.mask is None else edited(self.loaded.model, self.arch, condition.mask, condition.edit)
        return self.scorers[key].score(context)

    def close(self) -> None:
        """Nothing to give back: the loaded model stays the caller's."""
