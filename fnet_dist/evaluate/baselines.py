"""Baselines the paper compares ICA networks with: LLM Localization (AlKhamissi et al. 2024) and IoU.

- ``localizer_stimuli(n, seed=, words=12, texts=None)``: ``(sentences, nonwords)``, both lists of ``n``
  lower-cased ``words``-word strings. Offline stand-in for the Fedorenko localizer set: the sentences
  are real ones from the packaged news text (``offline:news``, ABC articles); each non-word list is the same
  sentence with the letters of every word shuffled (seeded), so length and letter statistics match
  while the words and the syntax are gone.
- ``localize(model, tokenizer, arch, sentences, nonwords, *, percent=, count=, pooling=, site=) -> Localization``:
  units = each decoder layer's output (residual stream: the method's own; ``site="mlp"``: each MLP-block output),
  Welch t-test per unit on |activation| of sentences vs non-words, the top units over all layers at once; the
  units are ablated where they were selected (``Localization.edit``: ``hidden *= 1 - mask[layer]`` after each layer
  for the residual stream, as the method's code does).
- ``Localization``: ``t_values`` / ``p_values`` of shape (n_layers, d_model), the ``mask``
  (a ``NeuronMask`` of the same shape as the MLP-neuron masks), and the settings used.
- ``mask_iou(a, b)``: IoU (Jaccard) of two masks or boolean arrays (the paper's Table 5).
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..core.errors import InputError
from ..core.offline import domain_texts
from ..model.edit import EDIT_SITES, Edit
from ..model.masks import NeuronMask
from .features import residual_features

__all__ = ["Localization", "localize", "localizer_stimuli", "mask_iou", "pseudowords", "top_units"]

_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")


def pseudowords(sentence: str, rng: np.random.Generator) -> str:
    """``sentence`` with the letters inside each word shuffled (words of one letter stay)."""
    return " ".join("".join(rng.permutation(list(word))) for word in sentence.split())


def _sentences(texts: Sequence[str], words: int) -> list[str]:
    """Lower-cased ``words``-word openings of the sentences in ``texts`` that have at least that many words."""
    found = []
    for text in texts:
        for sentence in re.split(r"(?<=[.!?])\s+", text):
            tokens = _WORD.findall(sentence.lower())
            if len(tokens) >= words and len(sentence.split()) < 3 * words:
                found.append(" ".join(tokens[:words]))
    return list(dict.fromkeys(found))


def localizer_stimuli(n: int, *, seed: int, words: int = 12,
                      texts: Sequence[str] | None = None) -> tuple[list[str], list[str]]:
    """``n`` real sentences (from ``texts``, default ``offline:news``) and ``n`` matched non-word lists, drawn with
    ``seed`` (the run's: ``evaluate.localizer_stimuli``, ``evaluate.seed``)."""
    if n < 2 or words < 1:
        raise InputError(f"localizer stimuli need n >= 2 and words >= 1; got n={n!r}, words={words!r}")
    if texts is None:
        texts = domain_texts("news")
    pool = _sentences(texts, words)
    if len(pool) < n:
        raise InputError(f"only {len(pool)} sentences of {words}+ words in the stimulus text; ask for n <= {len(pool)}")
    rng = np.random.default_rng(seed)
    sentences = [pool[i] for i in sorted(rng.choice(len(pool), size=n, replace=False))]
    return sentences, [pseudowords(s, rng) for s in sentences]


def top_units(scores: np.ndarray, count: int) -> np.ndarray:
    """Boolean array shaped like ``scores``: its ``count`` largest values over all entries (NaN never chosen)."""
    flat = np.nan_to_num(np.asarray(scores, dtype=np.float64).ravel(), nan=-np.inf)
    if not 0 < count <= flat.size:
        raise InputError(f"cannot select {count} units out of {flat.size}; choose between 1 and {flat.size}")
    chosen = np.zeros(flat.size, dtype=bool)
    chosen[np.argsort(-flat, kind="stable")[:count]] = True
    return chosen.reshape(np.shape(scores))


@dataclass(frozen=True)
class Localization:
    """Result of the localizer: per-unit statistics and the selected units."""

    t_values: np.ndarray
    p_values: np.ndarray
    mask: Any
    settings: dict[str, Any] = field(default_factory=dict)

    def edit(self, edit: Edit) -> Edit:
        """``edit`` applied where the units were selected (``settings["site"]``)."""
        return dataclasses.replace(edit, site=self.settings["site"])


def _unit_count(shape: tuple[int, int], percent: float | None, count: int | None) -> int:
    if (percent is None) == (count is None):
        raise InputError("give the localizer either percent= or count= (the number of units to select)")
    if count is not None:
        return int(count)
    if not 0 < percent <= 100:
        raise InputError(f"localizer percent {percent!r} must lie in (0, 100]")
    return max(1, int(round(percent / 100 * shape[0] * shape[1])))


def localize(model, tokenizer, arch, sentences: Sequence[str], nonwords: Sequence[str], *,
             percent: float | None = None, count: int | None = None, pooling: str = "last",
             max_tokens: int = 12, batch_size: int = 16, site: str = "residual") -> Localization:
    """The top units by Welch t-value of |decoder-layer output| (``site="mlp"``: |MLP-block output|), sentences >
    non-words.

    Returns a ``Localization`` whose ``mask`` is a ``NeuronMask`` of shape (n_layers, d_model).
    """
    from scipy.stats import ttest_ind


    if len(sentences) < 2 or len(nonwords) < 2:
        raise InputError("the localizer needs at least 2 sentences and 2 non-word lists for a t-test")
    if site not in EDIT_SITES:
        raise InputError(f"localizer site {site!r} is unknown; expected one of {', '.join(EDIT_SITES)}")
    kwargs = dict(pooling=pooling, max_tokens=max_tokens, batch_size=batch_size, site=site)
    positive = np.abs(residual_features(model, tokenizer, arch, sentences, **kwargs))
    negative = np.abs(residual_features(model, tokenizer, arch, nonwords, **kwargs))
    t_values, p_values = ttest_ind(positive, negative, axis=0, equal_var=False)
    shape = t_values.shape
    n_units = _unit_count(shape, percent, count)
    settings = {"method": "llm-localization", "percent": percent, "count": n_units, "pooling": pooling,
                "max_tokens": max_tokens, "n_sentences": len(sentences), "n_nonwords": len(nonwords), "site": site}
    mask = NeuronMask(values=top_units(t_values, n_units), name="localization", meta=settings)
    return Localization(np.asarray(t_values), np.asarray(p_values), mask, settings)


def mask_iou(a, b) -> float:
    """Intersection over union of two masks (``NeuronMask`` or boolean arrays of one shape); 0 if both empty."""
    a = np.asarray(getattr(a, "values", a), dtype=bool)
    b = np.asarray(getattr(b, "values", b), dtype=bool)
    if a.shape != b.shape:
        raise InputError(f"cannot compare masks of shapes {a.shape} and {b.shape}; both must be (n_layers, d_model)")
    union = np.count_nonzero(a | b)
    return float(np.count_nonzero(a & b) / union) if union else 0.0
