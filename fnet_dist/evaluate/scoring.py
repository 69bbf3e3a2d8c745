"""Score many conditions on one loaded model: lm-eval requests built once, scored per condition.

- ``Scorer(lm, manager, tasks, *, limit, seed, bootstrap_iters, options=None)``: the tasks loaded by ``manager``
  (a ``TaskManager``) once, their requests built once (``task.build_all_requests``; ``options``, a
  ``tasks.TaskOptions``: few-shot examples and the chat template as ``simple_evaluate`` applies them), the run's
  environment info gathered once per process, tokenizer info once.
- ``Scorer.score(context) -> dict``: every request scored by ``lm``'s ``loglikelihood`` /
  ``loglikelihood_rolling`` inside ``context`` (e.g. ``fnet_dist.model.edit.edited(...)``, or ``nullcontext()``
  for the normal model), then filtered, scored per document (``task.process_results``) and aggregated with
  the tasks' own metric functions and bootstrap stderrs. Returns what ``lm_eval.simple_evaluate`` returns
  for the same tasks, limit and seeds (``results``, ``n-samples``, ``configs``, ``samples`` with one
  logged example per document and filter, ``config`` …); the numbers are equal (tested).
- ``Scorer.tokens``: tokens one condition scores (context + continuation of each distinct forward row;
  rolling windows counted once), for throughput figures.

What ``simple_evaluate`` repeats on every call and this does once: task loading (dataset reads), request
building, environment info (``pip list``, ``git``), tokenizer info. What stays per condition is the
model's forward passes and the per-document metrics. Several conditions in one batch (one mask per row)
does not pay on CPU: SmolLM2-135M's bare forward on the default's sentiment snippets ran ~350-400 tokens per
CPU-second at 8 rows, ~300 at 32, ~210-240 at 64 (one thread; ``benchmarks/evaluate.py`` prints these).
"""
from __future__ import annotations

import json
import random
import time
from collections import defaultdict
from contextlib import AbstractContextManager
from functools import lru_cache
from typing import Any, Sequence

import numpy as np

__all__ = ["Scorer"]


@lru_cache(maxsize=1)
def _environment() -> dict[str, Any]:
    """lm-eval's environment info (torch's ``collect_env``: ``pip list``, ``git`` …) and git hash, once per process."""
    from lm_eval.loggers.utils import add_env_info, get_git_commit_hash

    info: dict[str, Any] = {"git_hash": get_git_commit_hash()}
    add_env_info(info)
    return info


class Scorer:
    """lm-eval requests of ``tasks`` (at ``limit`` documents each) built once, scored under any edit."""

    def __init__(self, lm, manager, tasks: Sequence[str], *, limit: int | float | None, seed: int,
                 bootstrap_iters: int, options: Any = None) -> None:
        from lm_eval.evaluator_utils import get_sample_size
        from lm_eval.loggers.utils import add_tokenizer_info
        from lm_eval.utils import set_torch_seed

        self.lm, self.limit, self.seed, self.bootstrap_iters = lm, limit, int(seed), int(bootstrap_iters)
        self._seed_all = lambda: (random.seed(self.seed), np.random.seed(self.seed), set_torch_seed(self.seed))
        self._seed_all()
        loaded = manager.load(list(tasks))
        self.groups, self.tasks = loaded.get("groups", {}), loaded["tasks"]
        self.limits = {}
        fewshot = getattr(options, "num_fewshot", None)
        chat = bool(getattr(options, "apply_chat_template", False))
        for name, task in self.tasks.items():  # simple_evaluate's defaults for tasks run as they are
            if fewshot is not None:
                task.set_config(key="num_fewshot", value=int(fewshot))
            elif task.get_config("num_fewshot") is None:
                task.set_config(key="num_fewshot", value=0)
            task.set_fewshot_seed(seed=self.seed)
            self.limits[name] = get_sample_size(task, limit)
            task.build_all_requests(limit=self.limits[name], rank=lm.rank, world_size=lm.world_size,
                                    apply_chat_template=chat, fewshot_as_multiturn=chat,  # lm-eval's default with it
                                    chat_template=lm.apply_chat_template if chat else None,
                                    tokenizer_name=getattr(lm, "tokenizer_name", "") if chat else "")
        self.requests: dict[str, list] = defaultdict(list)
        for task in self.tasks.values():
            for instance in task.instances:
                self.requests[instance.request_type].append(instance)
        self.environment: dict[str, Any] = dict(_environment())
        add_tokenizer_info(self.environment, lm)
        self.tokens = self._count_tokens()

    def _count_tokens(self) -> int:
        """Tokens in one condition's forward rows: each distinct ``(context + continuation)[:-1]`` (lm-eval
        scores one-token choices of one context in one row), plus each rolling text."""
        rows = set()
        for instance in self.requests.get("loglikelihood", []):
            context, continuation = self.lm._encode_pair(*instance.args)
            rows.add(tuple(context + continuation[:-1]))
        rolling = sum(len(self.lm.tok_encode(i.args[0])) for i in self.requests.get("loglikelihood_rolling", []))
        return sum(map(len, rows)) + rolling

    def score(self, context: AbstractContextManager) -> dict:
        """All requests scored inside ``context``; lm-eval's result dict (as ``simple_evaluate`` returns it)."""
        from lm_eval.evaluator_utils import _process_results
        from lm_eval.utils import handle_non_serializable, hash_string

        start = time.time()
        self._seed_all()
        for instances in self.requests.values():
            for instance in instances:
                instance.resps, instance.filtered_resps = [], {}
        with context:
            for request_type, instances in self.requests.items():
                cloned = [instance for instance in instances for _ in range(instance.repeats)]
                for response, instance in zip(getattr(self.lm, request_type)(cloned), cloned, strict=True):
                    instance.resps.append(response)
        accumulated = {}
        for name, task in self.tasks.items():
            task.apply_filters()
            by_doc = defaultdict(list)
            for instance in task.instances:
                by_doc[instance.doc_id].append(instance)
            for instances in by_doc.values():
                instances.sort(key=lambda x: x.idx)
            raw, logged = defaultdict(list), []
            for filter_key in task.instances[0].filtered_resps:
                for doc_id, doc in task.doc_iterator(rank=self.lm.rank, limit=self.limits[name],
                                                     world_size=self.lm.world_size):
                    requests = by_doc[doc_id]
                    metrics = task.process_results(doc, [r.filtered_resps[filter_key] for r in requests])
                    target = task.doc_to_target(doc)
                    example = {
                        "doc_id": doc_id, "doc": doc, "target": target,
                        "arguments": [r.args for r in requests], "resps": [r.resps for r in requests],
                        "filtered_resps": [r.filtered_resps[filter_key] for r in requests],
                        "filter": filter_key, "metrics": list(metrics.keys()),
                        "doc_hash": hash_string(json.dumps(requests[0].doc, indent=2,
                                                           default=handle_non_serializable, ensure_ascii=False)),
                        "prompt_hash": hash_string(requests[0].arguments[0]),
                        "target_hash": hash_string(str(target)),
                    }
                    example.update(metrics)
                    logged.append(example)
                    for metric, value in metrics.items():
                        raw[(metric, filter_key)].append(value)
            accumulated[name] = {"task": task, "raw_metrics": raw, "logged_samples": logged}
        processed = _process_results(accumulated, self.groups, self.bootstrap_iters)
        result = dict(processed._to_eval_results(samples=processed.samples))
        result["config"] = self._config()
        result["date"] = start
        result.update(self.environment)
        return result

    def _config(self) -> dict:
        """``simple_evaluate``'s ``config`` block for an ``LM`` object passed in (no ``git_hash`` of a cwd)."""
        lm = self.lm
        config = {"model": getattr(getattr(lm, "config", None), "_name_or_path", type(lm).__name__), "model_args": None}
        if hasattr(lm, "get_model_info"):
            config.update(lm.get_model_info())
        config.update({
            "batch_size": None, "batch_sizes": list(lm.batch_sizes.values()) if hasattr(lm, "batch_sizes") else [],
            "device": None, "use_cache": None, "limit": self.limit, "bootstrap_iters": self.bootstrap_iters,
            "gen_kwargs": None, "random_seed": self.seed, "numpy_seed": self.seed, "torch_seed": self.seed,
            "fewshot_seed": self.seed,
        })
        return config
