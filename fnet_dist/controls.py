"""Honest controls: random masks drawn many times, empirical p-values, effects without massive channels.

One random mask is not a control on a real model: a draw that hits a massive-activation channel (see
``fnet_dist.anatomy``) breaks the model whatever it means. So every random control is a distribution.

- ``CONTROL_KINDS``: ``fraction`` (a share of all neurons, the paper's 15 %), ``matched_count`` (as many
  neurons as the network), ``matched_per_layer`` (the network's count in every layer),
  ``matched_avoid_massive`` (matched count, never on a massive channel).
- ``random_controls(kind, shape, n_draws, seed, reference=, fraction=, massive=)`` → list of NeuronMask.
- ``interval(values, level=0.95)`` → (mean, low, high) of a set of draws.
- ``empirical_p_value(observed, draws, worse="lower")``: (1 + #draws at least as bad) / (1 + n).
- ``separated_masks(network, massive)``: the network, the network minus massive channels, and its
  massive-channel neurons alone.
- ``metric_direction(metric)``: "higher" or "lower" is better.
"""
from __future__ import annotations

import numpy as np

from .errors import InputError
from .masks import NeuronMask

__all__ = [
    "CONTROL_KINDS",
    "empirical_p_value",
    "interval",
    "metric_direction",
    "random_controls",
    "separated_masks",
]

CONTROL_KINDS = ("fraction", "matched_count", "matched_per_layer", "matched_avoid_massive")
_LOWER_IS_BETTER = ("perplexity", "bits_per_byte", "loss")


def metric_direction(metric: str) -> str:
    """"lower" for perplexities, bits per byte and losses; "higher" for accuracies, F1, MCC, exact match."""
    name = metric.split(",")[0].lower()
    return "lower" if any(key in name for key in _LOWER_IS_BETTER) else "higher"


def _draw_seeds(seed: int, n_draws: int) -> list[int]:
    return [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(n_draws)]


def random_controls(kind: str, shape: tuple[int, int], n_draws: int = 10, seed: int = 0, *,
                    reference: NeuronMask | None = None, fraction: float = 0.15,
                    massive: np.ndarray | None = None) -> list[NeuronMask]:
    """``n_draws`` seeded random masks of one ``kind`` (see ``CONTROL_KINDS``), named ``<kind>/<i>``."""
    if kind not in CONTROL_KINDS:
        raise InputError(f"unknown random control {kind!r}; expected one of {', '.join(CONTROL_KINDS)}")
    if n_draws < 1:
        raise InputError(f"n_draws {n_draws!r} must be ≥ 1 (10 gives a usable interval)")
    if kind != "fraction" and reference is None:
        raise InputError(f"random control {kind!r} is matched to a network: pass reference=<its NeuronMask>")
    exclude = None
    if kind == "matched_avoid_massive":
        if massive is None:
            raise InputError("matched_avoid_massive needs the massive-channel mask (fnet_dist.anatomy.massive_mask)")
        exclude = NeuronMask(np.asarray(massive, dtype=bool), name="massive")
    base = reference.name if reference is not None else f"{fraction:.0%}"
    masks = []
    for i, draw_seed in enumerate(_draw_seeds(seed, n_draws)):
        if kind == "fraction":
            mask = NeuronMask.random(shape, fraction=fraction, seed=draw_seed)
        elif kind == "matched_per_layer":
            mask = NeuronMask.random(shape, per_layer=reference.values.sum(axis=1), seed=draw_seed)
        else:
            mask = NeuronMask.random(shape, count=reference.count, exclude=exclude, seed=draw_seed)
        meta = dict(mask.meta, control=kind, draw=i, draw_seed=draw_seed, base_seed=seed, matched_to=base)
        masks.append(NeuronMask(mask.values, name=f"{kind}:{base}/{i}", meta=meta))
    return masks


def interval(values, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and the central ``level`` interval (percentiles) of a set of random draws."""
    data = np.asarray(values, dtype=float)
    data = data[np.isfinite(data)]
    if data.size == 0:
        return (float("nan"),) * 3
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(data, [tail, 100 - tail])
    return float(data.mean()), float(low), float(high)


def empirical_p_value(observed: float, draws, worse: str = "lower") -> float:
    """Chance that a random draw hurts at least as much as ``observed``: (1 + #as bad) / (1 + n).

    ``worse="lower"`` for accuracies (lower is worse), ``"higher"`` for perplexities.
    """
    if worse not in ("lower", "higher"):
        raise InputError(f"worse={worse!r} must be 'lower' or 'higher'")
    data = np.asarray(draws, dtype=float)
    data = data[np.isfinite(data) | np.isinf(data)]
    if data.size == 0:
        return float("nan")
    as_bad = (data <= observed) if worse == "lower" else (data >= observed)
    return float((1 + as_bad.sum()) / (1 + data.size))


def separated_masks(network: NeuronMask, massive: np.ndarray) -> list[NeuronMask]:
    """The network, the network without its massive-channel neurons, and those neurons alone."""
    massive_mask = NeuronMask(np.asarray(massive, dtype=bool), name="massive")
    network.check_shape(*massive_mask.values.shape)
    without = network.difference(massive_mask)
    alone = network.intersection(massive_mask)
    return [
        network,
        NeuronMask(without.values, name=f"{network.name}-minus-massive", meta=dict(network.meta, part="without massive channels")),
        NeuronMask(alone.values, name=f"{network.name}-massive-only", meta=dict(network.meta, part="massive channels only")),
    ]
