"""The engine side of the ``vllm`` backend: one vLLM engine in its own process, conditions scored one after another.

Runs in the interpreter that has vLLM (``evaluate.vllm.python``, e.g. ``.venv-vllm/bin/python``; see
``vllm_backend``) as ``python -c "from fnet_dist.evaluate.vllm_engine import main; main()"`` (not ``-m``: the
functions sent to vLLM's workers are pickled by reference to this module), driven by JSON lines on stdin, one answer line
each on stdout (vLLM's own output goes to stderr):

- ``{"op": "open", "model_args", "in_place", "checkpoint", "cpu_kv_cache_bytes"}``: lm-eval's ``vllm`` model
  (``VLLM(**model_args)``: one ``vllm.LLM``; on vLLM's CPU build with ``kv_cache_memory_bytes`` and eager: its
  torch.compile'd forward keeps the packed weights ``editable`` replaces, and fails after). With
  ``in_place``, each worker checks that it can edit its model's weights (``editable``); answers ``{"in_place": bool, "reason": str | None, "seconds"}``.
- ``{"op": "run", "mask", "edit", "tasks", …, "num_fewshot", "apply_chat_template", "result"}``: the condition's edit written into the weights of every
  worker's model (``LLM.apply_model``: ``fnet_dist.model.bake.bake_undoable`` on each layer's bake module, e.g.
  ``mlp.down_proj``), every request scored by ``scoring.Scorer`` (requests built once per task group, as the
  ``hf`` backend does), the weights put back exactly (``unbake``); the prefix cache emptied after each change of
  weights (log-likelihoods ask for prompt log-probabilities, which never read it; generation would). lm-eval's
  result dict written to ``result``.
  Answers ``{"result": path, "seconds", "tokens"}``.
- ``{"op": "weights", "mask", "edit", "layers", "out"}``: the bake modules' weights of ``layers`` while edited and
  after the restore, saved to ``out`` (``.npz``: ``edited_<i>``, ``restored_<i>``), to check them against a baked
  checkpoint.
A failed request answers ``{"error": "Type: first line", "input": bool}`` (``input``: a refused edit, such as
``add`` where the bake module has no bias); the process keeps serving.

``editable(model, checkpoint)`` (in each worker): vLLM's CPU build packs each linear layer's weight for its GEMM
kernel and drops the tensor (``dispatch_cpu_unquantized_gemm``); the bake modules get their weights back from
the checkpoint and a plain ``F.linear``, so that edits of the tensor reach the forward pass. On a GPU the
weights are used as they are. Quantized weights, a family without a bake place, or CPU tensor parallelism
answer a reason: the backend then bakes checkpoints instead.
"""
from __future__ import annotations

import functools
import json
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from ..core.errors import InputError, one_line
from ..model.architectures import decoder_layers, get_module, resolve_architecture
from ..model.bake import bake_undoable, unbake
from ..model.bake_stream import read_bake_weights
from ..model.edit import Edit, model_shape
from ..model.masks import NeuronMask
from .scoring import Scorer

__all__ = ["EngineSide", "apply_edit", "editable", "main", "read_weights", "restore"]

_SAVED = "_fnet_overwritten"  # attribute of a worker's model: what the current edit overwrote


def _plain_linear(x, weight, bias):
    import torch

    return torch.nn.functional.linear(x, weight, bias)


def editable(model, checkpoint: str) -> str | None:
    """In a vLLM worker: make each layer's bake module editable in place; None, or why it cannot be."""
    import torch

    try:
        arch = resolve_architecture(model)
        modules = [get_module(layer, arch.bake_module) for layer in decoder_layers(model, arch)]
    except (LookupError, ValueError) as exc:
        return one_line(exc)
    packed = []
    for index, module in enumerate(modules):
        method = getattr(module, "quant_method", None)
        if method is not None and type(method).__name__ != "UnquantizedLinearMethod":
            return f"layer {index}: {arch.bake_module} is quantized ({type(method).__name__})"
        weight = getattr(module, "weight", None)
        if weight is not None and weight.numel() == 0 and hasattr(module, "cpu_linear"):
            if getattr(module, "input_size_per_partition", None) != getattr(module, "input_size", None):
                return f"{arch.bake_module} is split over CPU workers (tensor parallel); its packed weights cannot be edited"
            packed.append(index)
    if packed:
        stored = read_bake_weights(checkpoint, arch, packed)
        for index in packed:
            module = modules[index]
            module.weight = torch.nn.Parameter(stored[index].to(module.weight.dtype), requires_grad=False)
            module.cpu_linear = _plain_linear
    try:  # every check of an edit, with nothing to edit
        n_layers, d_model = model_shape(model, arch)
        unbake(bake_undoable(model, arch, NeuronMask(np.zeros((n_layers, d_model), dtype=bool), "none"), Edit()))
    except ValueError as exc:
        return one_line(exc)
    return None


def apply_edit(model, mask_path: str, edit: dict) -> str | None:
    """In a vLLM worker: write the edit of the mask at ``mask_path`` into the weights; None, or why it is refused
    (nothing changed then)."""
    if getattr(model, _SAVED, None) is not None:
        raise RuntimeError("an edit is already applied; restore it first")
    try:
        saved = bake_undoable(model, resolve_architecture(model), NeuronMask.load(mask_path),
                              Edit(**edit))
    except InputError as exc:
        return str(exc)
    setattr(model, _SAVED, saved)
    return None


def restore(model) -> None:
    """In a vLLM worker: put back what ``apply_edit`` overwrote."""
    unbake(getattr(model, _SAVED, None) or [])
    setattr(model, _SAVED, None)


def read_weights(model, layers: list[int]) -> dict[int, Any]:
    """In a vLLM worker: copies of the bake modules' weights of ``layers`` (host memory)."""
    arch = resolve_architecture(model)
    found = decoder_layers(model, arch)
    return {i: get_module(found[i], arch.bake_module).weight.detach().to("cpu", copy=True) for i in layers}


class EngineSide:
    """The process's one engine (lm-eval's ``VLLM`` model) and the requests it has built per task group."""

    def __init__(self, request: dict) -> None:
        from lm_eval.models.vllm_causallms import VLLM
        from vllm.platforms import current_platform

        start = time.perf_counter()
        args = dict(request["model_args"])
        if current_platform.is_cpu():
            args.setdefault("kv_cache_memory_bytes", request["cpu_kv_cache_bytes"])  # not a share of host memory
            args["enforce_eager"] = True  # a compiled forward keeps the packed weights that ``editable`` replaces
        self.lm = VLLM(**args)
        self.reason = None
        if request["in_place"]:
            reasons = self.lm.model.apply_model(functools.partial(editable, checkpoint=request["checkpoint"]))
            self.reason = next((r for r in reasons if r), None)
        self.seconds = time.perf_counter() - start
        self.scorers: dict[str, Scorer] = {}

    def opened(self) -> dict:
        return {"in_place": self.reason is None, "reason": self.reason, "seconds": round(self.seconds, 3)}

    def _edited(self, request: dict):
        """A context in which the request's edit is in the weights of every worker (none without a mask)."""
        from contextlib import contextmanager

        llm = self.lm.model

        @contextmanager
        def context():
            if request.get("mask") is None:
                yield
                return
            refused = llm.apply_model(functools.partial(apply_edit, mask_path=request["mask"], edit=request["edit"]))
            if any(refused):
                llm.apply_model(restore)  # workers that did edit
                raise InputError(next(r for r in refused if r))
            llm.reset_prefix_cache()  # keys and values cached under other weights must not be read (generation)
            try:
                yield
            finally:
                llm.apply_model(restore)
                llm.reset_prefix_cache()

        return context()

    def run(self, request: dict) -> dict:
        from lm_eval.tasks import TaskManager
        from lm_eval.utils import handle_non_serializable

        options = ("num_fewshot", "apply_chat_template")
        key = json.dumps([request.get(k) for k in ("tasks", "limit", "seed", "bootstrap_iters", "include_path", *options)])
        if key not in self.scorers:
            manager = TaskManager(include_path=request["include_path"], include_defaults=request["include_defaults"])
            self.scorers[key] = Scorer(self.lm, manager, request["tasks"], limit=request["limit"], seed=request["seed"],
                                       bootstrap_iters=request["bootstrap_iters"],
                                       options=SimpleNamespace(**{k: request.get(k) for k in options}))
        scorer = self.scorers[key]
        start = time.perf_counter()
        result = scorer.score(self._edited(request))
        seconds = time.perf_counter() - start
        partial = Path(request["result"] + ".partial")
        partial.write_text(json.dumps(result, default=handle_non_serializable))
        os.replace(partial, request["result"])
        return {"result": request["result"], "seconds": round(seconds, 3), "tokens": scorer.tokens}

    def weights(self, request: dict) -> dict:
        llm, layers = self.lm.model, [int(i) for i in request["layers"]]
        with self._edited(request):
            edited = llm.apply_model(functools.partial(read_weights, layers=layers))[0]
        restored = llm.apply_model(functools.partial(read_weights, layers=layers))[0]
        arrays = {**{f"edited_{i}": t.float().numpy() for i, t in edited.items()},
                  **{f"restored_{i}": t.float().numpy() for i, t in restored.items()}}
        np.savez(request["out"], **arrays)
        return {"weights": request["out"]}


def main() -> int:
    """Serve requests from stdin until it closes (see the module docstring)."""
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # vLLM, lm-eval and the engine's own processes print to stdout: send all that to stderr
    engine: EngineSide | None = None
    for line in sys.stdin:
        request = json.loads(line)
        try:
            if request["op"] == "open":
                engine = EngineSide(request)
                answer = engine.opened()
            elif engine is None:
                raise RuntimeError("no engine: the first request must open one")
            else:
                answer = getattr(engine, request["op"])(request)
        except Exception as exc:  # noqa: BLE001 - the parent reports it in one line
            refused = isinstance(exc, InputError)
            answer = {"error": str(exc).splitlines()[0] if refused else one_line(exc), "input": refused}
        protocol.write(json.dumps(answer) + "\n")
    return 0

