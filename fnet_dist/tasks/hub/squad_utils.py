"""SQuAD v1.1 scoring for ``squad_fnet.yaml``: exact match and token F1, best over the gold answers.

- ``normalize_answer(text)``: lower case, no punctuation, no articles, single spaces (the official script).
- ``exact_match(prediction, gold)``, ``token_f1(prediction, gold)``.
- ``process_results(doc, results)``: lm-eval's hook, ``{"exact_match": 0|1, "f1": float}``.
"""
from __future__ import annotations

import re
import string
from collections import Counter

__all__ = ["exact_match", "normalize_answer", "process_results", "token_f1"]

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def token_f1(prediction: str, gold: str) -> float:
    predicted, expected = normalize_answer(prediction).split(), normalize_answer(gold).split()
    common = sum((Counter(predicted) & Counter(expected)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(expected)
    return 2 * precision * recall / (precision + recall)


def process_results(doc: dict, results: list[str]) -> dict[str, float]:
    prediction = results[0].strip()
    golds = list(doc["answers"]["text"]) or [""]
    return {
        "exact_match": max(exact_match(prediction, g) for g in golds),
        "f1": max(token_f1(prediction, g) for g in golds),
    }
