"""Evaluate edited models: lm-eval over conditions, the paper's baselines, probing, sweeps, tables, figures.

- ``Condition``, ``NORMAL`` (records: ``fnet_dist.core.conditions``): structured fields (kind, corpus, template, …)
  + a ``NeuronMask`` + an ``Edit``; the name is derived for display. ``network_conditions``, ``random_condition``,
  ``top_conditions`` build them from stores (conditions).
- ``evaluate_conditions(model, conditions, tasks, out, ...)``: lm-eval (HF hooks or vLLM on baked
  checkpoints: one engine per backend, ``backends``), resumable, tidy rows (runner).
- ``evaluate_networks(model, networks_urls, out, ...)``: the paper's conditions from networks stores, with
  tables and figures (experiment).
- ``resolve_tasks``, ``OFFLINE_TASKS``, ``PAPER_TASKS`` (tasks); ``localize``, ``localizer_stimuli``,
  ``mask_iou`` (baselines); ``probe``, ``probe_conditions`` (probing); ``sweep`` (sweeps); tables and
  figures in ``tables`` and ``figures``.
"""
from ..core.conditions import NORMAL, Condition, select_conditions
from .baselines import Localization, localize, localizer_stimuli, mask_iou
from .conditions import network_conditions, random_condition, top_conditions
from .experiment import evaluate_networks, evaluate_pipeline, paper_conditions, write_reports
from .probing import labelled_texts, probe, probe_conditions
from .runner import BACKENDS, evaluate_conditions, read_rows, read_samples
from .sweeps import sweep, sweep_conditions
from .tasks import DEFAULT_TASKS, OFFLINE_TASKS, PAPER_TASKS, resolve_tasks

__all__ = [
    "BACKENDS", "DEFAULT_TASKS", "NORMAL", "OFFLINE_TASKS", "PAPER_TASKS", "Condition",
    "Localization", "evaluate_conditions", "evaluate_networks", "evaluate_pipeline", "labelled_texts", "localize", "localizer_stimuli",
    "mask_iou", "network_conditions", "paper_conditions", "probe", "probe_conditions", "random_condition",
    "read_rows", "read_samples", "resolve_tasks", "select_conditions", "sweep", "sweep_conditions",
    "top_conditions", "write_reports",
]
