"""Split-half reproducibility of the group templates, and the recurrence summary of each half.

Decompose fits the group level again on the two halves of ``decompose.splits`` seeded random splits of the group
samples (``split_map`` of the networks store). Here each half's templates are thresholded by the match stage's
rule, massive-channel neurons left out and first-token-dominated templates set aside (as for recurrence):

- *reproducibility* of a corpus in one split: the mean, over the usable templates of each half, of the best IoU
  with the other half's usable templates (both directions). Its ceiling role: two halves of one corpus share
  samples' distribution, so cross-corpus recurrence is read beside it.
- *recurrence of a half*: ``fnet_dist.match.nulls.recurrence_statistic`` over every corpus's templates of that half
  of that split — replicates whose spread around the whole-data summary estimates its standard error (random
  half-sample replication, McCarthy 1969: E[(θ_half - θ_whole)²] ≈ Var(θ_whole) for a mean; larger, so
  conservative, where halves are noisier than the whole).

- ``split_maps(url)``: a networks store's half z-maps and their first-token peak shares (read once);
  ``split_templates(url, section, massive, maps=None) -> SplitTemplates``: thresholded by the section's rule.
- ``halves_tables(splits, frequency, section, n_draws, seed, level) -> (rows, null_rows)``: ``split_halves.csv``
  (kind ``reproducibility`` per corpus and split; kind ``recurrence`` per split and half, and ``recurrence_pair`` per
  split, half and ordered corpus pair: the mean best IoU of ``corpus``'s templates with ``other``'s and their count
  ``templates``, so that a run can be compared with one of fewer corpora on the corpora they share) and ``split_null.csv``
  (the pooled reproducibility against each null kind of ``fnet_dist.match.nulls.NULL_KINDS``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from storage_schemas import NETWORKS

from ..core.config import MatchSection
from ..core.networks import binarize, flatten_networks
from ..core.stats import monte_carlo_p
from ..store.storage import open_store
from .anatomy import source_concentration
from .nulls import (
    NULL_KINDS,
    best_matches,
    frequency_strata,
    iou_matrix,
    layer_permutations,
    moved_networks,
    recurrence_statistic,
    uniform_strata,
)

__all__ = ["SplitTemplates", "halves_tables", "reproducibility", "split_maps", "split_templates"]

_SPLIT_SEED = 104729  # keeps the halves' null draws apart from the whole-data nulls of the same seed


@dataclass
class SplitTemplates:
    """One corpus's half templates: ``networks`` bool (n_splits, 2, n_templates, n_layers, d_model), massive-channel
    neurons removed; ``usable`` bool (n_splits, 2, n_templates): non-empty and not first-token-dominated."""

    corpus: str
    networks: np.ndarray
    usable: np.ndarray

    @property
    def n_splits(self) -> int:
        return int(self.networks.shape[0])


def split_maps(url: str) -> tuple[str, np.ndarray, np.ndarray]:
    """(corpus, z-maps (n_done_splits, 2, n_templates, n_layers, d_model), first-token peak share of each map
    (n_done_splits, 2, n_templates), judged on the sources over the store's activations as for whole templates)."""
    ds = open_store(url, NETWORKS)
    maps = np.asarray(ds["split_map"].values, dtype=np.float32)[np.asarray(ds["split_done"].values, dtype=bool)]
    first = np.zeros(maps.shape[:3])
    if maps.size:
        flat = maps.reshape(-1, *maps.shape[3:])
        first = np.nan_to_num(source_concentration(flat, str(ds.attrs["activations"]))[1]).reshape(maps.shape[:3])
    return str(ds.attrs["corpus"]), maps, first


def split_templates(url: str, section: MatchSection, massive: np.ndarray, maps=None) -> SplitTemplates:
    """The half templates of the networks store at ``url``, by the ``match`` section's rule (threshold, sidedness,
    ``first_token_share``); ``maps``: ``split_maps(url)`` when already read."""
    corpus, maps, first = maps if maps is not None else split_maps(url)
    networks = binarize(maps, section.threshold, section.two_sided) & ~np.asarray(massive, dtype=bool)
    usable = networks.reshape(*networks.shape[:3], int(np.prod(networks.shape[3:]))).any(axis=3)
    usable &= ~(first >= section.first_token_share)
    return SplitTemplates(corpus, networks, usable)


def reproducibility(a, b) -> float:
    """Mean best IoU of each network of ``a`` with ``b`` and of ``b`` with ``a`` (bool (n, n_neurons) each, dense or
    scipy.sparse); NaN when either is empty."""
    import scipy.sparse as sp

    n_a, n_b = a.shape[0], b.shape[0]
    if not n_a or not n_b:
        return float("nan")
    both = sp.vstack([a, b], format="csr") if sp.issparse(a) else np.concatenate([a, b])
    iou = iou_matrix(both)[:n_a, n_a:]
    return float(np.concatenate([iou.max(axis=1), iou.max(axis=0)]).mean())


def _flat(networks: np.ndarray) -> np.ndarray:
    return flatten_networks(networks)


def _pooled(halves: dict[str, list[tuple[np.ndarray, np.ndarray]]]) -> float:
    values = [reproducibility(_flat(a), _flat(b)) for pairs in halves.values() for a, b in pairs]
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


def _usable_halves(split: SplitTemplates) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(split.networks[s, 0][split.usable[s, 0]], split.networks[s, 1][split.usable[s, 1]])
            for s in range(split.n_splits)]


def _reproducibility_null(halves: dict[str, list[tuple[np.ndarray, np.ndarray]]], strata: dict[str, np.ndarray],
                          n_draws: int, seed: int) -> np.ndarray:
    """The pooled reproducibility when the half templates are moved within their corpus's ``strata``
    (``layer_permutations``): (n_draws,). Only the second half of each split is moved: both halves of a corpus share
    its strata, so for independent uniform stratified permutations σ, π the pair (σA, πB) has the IoUs of (A, σ⁻¹πB),
    and σ⁻¹π is again uniform over the same permutations — the null is the same, at half the draws' cost."""
    sets = [(name, s, pair) for name, pairs in halves.items() for s, pair in enumerate(pairs)
            if len(pair[0]) and len(pair[1])]
    if not sets:
        return np.full(n_draws, np.nan)
    shape = sets[0][2][1].shape[1:]
    streams = [layer_permutations(shape, n_draws, seed + i, strata[name]) for i, (name, *_rest) in enumerate(sets)]
    out = np.empty(n_draws)
    done = 0
    fixed = [_flat(a).astype(np.float32) for _, _, (a, _) in sets]
    sizes = [(f.sum(axis=1), flatten_networks(b).sum(axis=1).astype(np.float32)) for f, (_, _, (_, b)) in zip(fixed, sets)]
    for chunks in zip(*streams):
        count = len(chunks[0])
        values = []                                            # per corpus split: (count,) reproducibility
        for (_, _, (_, b)), a, (size_a, size_b), permutations in zip(sets, fixed, sizes, chunks):
            moved = moved_networks(b, permutations)              # CSR (count * n_b, n_neurons), draw-major
            inter = np.asarray(moved @ a.T).reshape(count, len(b), len(a)).transpose(0, 2, 1)  # (count, n_a, n_b)
            union = size_a[None, :, None] + size_b[None, None, :] - inter
            iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
            values.append(np.concatenate([iou.max(axis=2), iou.max(axis=1)], axis=1).mean(axis=1))
        out[done:done + count] = np.mean(values, axis=0)
        done += count
    return out


def halves_tables(splits: list[SplitTemplates], frequency: dict[str, np.ndarray], massive: np.ndarray, n_draws: int,
                  seed: int, level: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``split_halves.csv`` rows (kind, corpus, split, half, value) and ``split_null.csv`` rows (per null kind: the
    pooled reproducibility observed, the null's mean and central ``level`` range, the Monte Carlo p, draws,
    splits, corpora). frequency: {corpus: (n_layers, d_model) map counts}; massive: (n_layers, d_model) bool."""
    splits = [s for s in splits if s.n_splits]
    if not splits:
        return pd.DataFrame(), pd.DataFrame()
    halves = {s.corpus: _usable_halves(s) for s in splits}
    rows = [{"kind": "reproducibility", "corpus": name, "split": i, "half": "", "value": reproducibility(_flat(a), _flat(b))}
            for name, pairs in halves.items() for i, (a, b) in enumerate(pairs)]
    n_common = min(s.n_splits for s in splits)
    if len(splits) > 1:
        for i in range(n_common):
            for h in (0, 1):
                nets = [s.networks[i, h][s.usable[i, h]] for s in splits]
                corpus_of = np.concatenate([np.full(len(n), c) for c, n in enumerate(nets)])
                present = len({int(c) for c in corpus_of}) > 1
                flat = _flat(np.concatenate(nets))
                value = recurrence_statistic(flat, corpus_of) if present else float("nan")
                rows.append({"kind": "recurrence", "corpus": "all", "split": i, "half": "AB"[h], "value": value})
                best = best_matches(flat, corpus_of) if present else np.empty((0, 0))
                rows += [{"kind": "recurrence_pair", "corpus": s.corpus, "other": o.corpus, "split": i, "half": "AB"[h],
                          "value": float(best[corpus_of == x, y].mean()), "templates": int((corpus_of == x).sum())}
                         for x, s in enumerate(splits) for y, o in enumerate(splits)
                         if x != y and (corpus_of == x).any() and (corpus_of == y).any()]
    observed = _pooled(halves)
    massive = np.asarray(massive, dtype=bool)  # a stratum of its own: never drawn
    tail = (1 - level) / 2 * 100
    nulls = []
    for kind in NULL_KINDS:
        strata = {s.corpus: uniform_strata(massive.shape, massive) if kind == "uniform"
                  else frequency_strata(frequency[s.corpus], massive) for s in splits}
        draws = _reproducibility_null(halves, strata, n_draws, seed + _SPLIT_SEED)
        finite = draws[np.isfinite(draws)]
        low, high = np.percentile(finite, [tail, 100 - tail]) if finite.size else (np.nan, np.nan)
        nulls.append({"null": kind, "observed": observed, "null_mean": float(finite.mean()) if finite.size else np.nan,
                      "null_low": float(low), "null_high": float(high), "p_value": monte_carlo_p(observed, draws),
                      "draws": int(finite.size), "splits": n_common, "corpora": len(splits), "seed": seed})
    return pd.DataFrame(rows), pd.DataFrame(nulls)
