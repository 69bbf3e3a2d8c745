"""Score a model with lm-eval, unedited and with masks edited: ``fnet.score(model, tasks, masks) -> DataFrame``.

- ``score(model, tasks, masks=None, *, edit=None, limit=None, out=None)``: the normal model and each mask (a
  ``NeuronMask``, a list of them, or ``{label: mask}``) edited by ``edit`` (default: inhibit) on lm-eval
  ``tasks`` (``sentiment_rt``, ``wiki_ppl``, … offline; any lm-eval task name where the hub is reachable), through
  the same engine as the evaluate stage (``fnet_dist.evaluate.runner.evaluate_conditions``, HF backend).
  Returns the tidy rows: ``condition``, ``task``, ``metric``, ``value``, ``stderr``, ``n_samples``, ``neurons``.
  Each condition's lm-eval JSON and logged samples stay under ``out`` (default: a new temporary folder).
"""
from __future__ import annotations

import re
import tempfile
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..core.conditions import NORMAL, custom
from ..evaluate.runner import evaluate_conditions
from ..model.edit import Edit
from ..model.masks import NeuronMask
from ..store.locks import output_lock

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["score"]

_COLUMNS = ["condition", "task", "metric", "value", "stderr", "n_samples", "neurons"]


def _labelled(masks: Any) -> dict[str, NeuronMask]:
    if masks is None:
        return {}
    if isinstance(masks, NeuronMask):
        masks = [masks]
    if not isinstance(masks, dict):
        masks = {m.name: m for m in masks}
    return {re.sub(r"[^A-Za-z0-9_.:/@=+-]+", "-", str(label)).strip("-") or "mask": m for label, m in masks.items()}


def score(model: Any, tasks: Sequence[str], masks: Any = None, *, edit: Edit | None = None,
          limit: int | dict | None = None, out: str | None = None, progress: bool = False) -> pd.DataFrame:
    """lm-eval scores of the normal model and of each of ``masks`` edited (see the module docstring).

    model : a ``LoadedModel`` (``fnet.load_model``) or a model spec (hub id, folder, ``smollm2-135m-instruct``).
    limit : documents per task (as ``evaluate.limit``); ``None``: all of them.
    """
    edit = edit or Edit("inhibit")
    conditions = [NORMAL, *(custom(label, mask, edit) for label, mask in _labelled(masks).items())]
    out = out or tempfile.mkdtemp(prefix="fnet-score-")
    with output_lock(out):  # one writer of an evaluation folder (fnet_dist.store.locks)
        rows = evaluate_conditions(model, conditions, list(tasks), out, limit=limit, progress=progress)
    return rows[_COLUMNS]
