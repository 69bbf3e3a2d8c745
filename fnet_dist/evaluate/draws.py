"""Random controls: masks drawn many times, matched to a network or not, and networks split at massive channels.

One random mask is not a control on a real model: a draw that hits a massive-activation channel (see
``fnet_dist.match.anatomy``) breaks the model whatever it means. So every random control is a distribution.

What drives damage on a real model is which layers a mask sits in and whether it touches channels with outsized
activations; the matched kinds hold each fixed in turn, and the claims are tested against the strictest.

- ``CONTROL_KINDS``: ``fraction`` (a share of all neurons, ``evaluate.random_fraction``), ``matched_count`` (as
  many neurons as the network), ``matched_per_layer`` (the network's count in every layer),
  ``matched_activation`` (the network's count in every layer and activation stratum: neurons of similar mean
  |activation| and kurtosis in the recording), ``matched_avoid_massive`` (matched count, never on a massive channel).
- ``activation_strata(mean_abs, kurtosis, bins)`` → int (n_layers, d_model): each channel's stratum within its layer.
- ``random_controls(kind, shape, n_draws, seed, reference=, fraction=, massive=, strata=)`` → list of NeuronMask.
- ``separated_masks(network, massive)``: the network, the network minus massive channels, and its
  massive-channel neurons alone.
- ``control_conditions(networks, massive, section, strata=None)``: every control of some networks as evaluation
  conditions (``section``: the ``evaluate`` section; ``controls.draws`` fraction draws shared by all networks,
  ``controls.matched_draws`` of each matched kind per network).
"""
from __future__ import annotations

import numpy as np

from ..core.conditions import Condition
from ..core.config import EvaluateSection
from ..core.errors import InputError
from ..model.edit import Edit
from ..model.masks import NeuronMask

__all__ = ["CONTROL_KINDS", "MATCHED_KINDS", "activation_strata", "control_conditions", "random_controls", "separated_masks"]

CONTROL_KINDS = ("fraction", "matched_count", "matched_per_layer", "matched_activation", "matched_avoid_massive")
MATCHED_KINDS = ("matched_count", "matched_per_layer", "matched_activation")  # the nulls of "hurts more than random"


def activation_strata(mean_abs: np.ndarray, kurtosis: np.ndarray, bins: int) -> np.ndarray:
    """Each channel's stratum within its layer, int of shape (n_layers, d_model): the quantile bin (of ``bins``) of its
    mean |activation| times ``bins`` plus that of its kurtosis (NaN kurtosis: the lowest bin). Inputs: the match
    stage's ``channel_stats.npz`` of the evaluated corpus."""
    def ranks(values):
        values = np.nan_to_num(np.asarray(values, dtype=float), nan=-np.inf)
        order = values.argsort(axis=1, kind="stable").argsort(axis=1, kind="stable")
        return order * bins // values.shape[1]
    return ranks(mean_abs) * bins + ranks(kurtosis)


def _stratified(shape, reference: np.ndarray, strata: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """As many neurons as ``reference`` in every (layer, stratum), drawn from that layer and stratum."""
    values = np.zeros(shape, dtype=bool)
    for layer in range(shape[0]):
        wanted = strata[layer][reference[layer]]
        for stratum, count in zip(*np.unique(wanted, return_counts=True)):
            pool = np.flatnonzero(strata[layer] == stratum)
            values[layer, rng.choice(pool, size=count, replace=False)] = True
    return values


def _draw_seeds(seed: int, n_draws: int) -> list[int]:
    return [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(n_draws)]


def random_controls(kind: str, shape: tuple[int, int], n_draws: int, seed: int, *,
                    reference: NeuronMask | None = None, fraction: float | None = None,
                    massive: np.ndarray | None = None, strata: np.ndarray | None = None) -> list[NeuronMask]:
    """``n_draws`` seeded random masks of one ``kind`` (see ``CONTROL_KINDS``), named ``<kind>/<i>``.

    ``fraction`` (kind ``fraction``): the share of all neurons, ``evaluate.random_fraction``; ``reference`` (the
    matched kinds): the network's mask; ``massive`` (``matched_avoid_massive``): the massive-channel mask;
    ``strata`` (``matched_activation``): ``activation_strata`` of the channels.
    """
    if kind not in CONTROL_KINDS:
        raise InputError(f"unknown random control {kind!r}; expected one of {', '.join(CONTROL_KINDS)}")
    if n_draws < 1:
        raise InputError(f"n_draws {n_draws!r} must be ≥ 1 (evaluate.controls.draws: 19 lets a p-value reach 0.05)")
    if kind == "fraction" and fraction is None:
        raise InputError("random control 'fraction' is a share of all neurons: pass fraction=<evaluate.random_fraction>")
    if kind != "fraction" and reference is None:
        raise InputError(f"random control {kind!r} is matched to a network: pass reference=<its NeuronMask>")
    if kind == "matched_activation" and (strata is None or np.shape(strata) != tuple(shape)):
        raise InputError("matched_activation needs the channels' activation strata of the mask's shape (the match "
                         "stage's channel_stats.npz: rerun the match stage)")
    exclude = None
    if kind == "matched_avoid_massive":
        if massive is None:
            raise InputError("matched_avoid_massive needs the massive-channel mask (fnet_dist.match.anatomy.massive_mask)")
        exclude = NeuronMask(np.asarray(massive, dtype=bool), name="massive")
    base = reference.name if reference is not None else f"{fraction:.0%}"
    masks = []
    for i, draw_seed in enumerate(_draw_seeds(seed, n_draws)):
        if kind == "fraction":
            mask = NeuronMask.random(shape, fraction=fraction, seed=draw_seed)
        elif kind == "matched_per_layer":
            mask = NeuronMask.random(shape, per_layer=reference.values.sum(axis=1), seed=draw_seed)
        elif kind == "matched_activation":
            values = _stratified(shape, reference.values, np.asarray(strata), np.random.default_rng(draw_seed))
            mask = NeuronMask(values, name="activation-matched", meta={"strata": int(np.asarray(strata).max()) + 1})
        else:
            mask = NeuronMask.random(shape, count=reference.count, exclude=exclude, seed=draw_seed)
        meta = dict(mask.meta, control=kind, draw=i, draw_seed=draw_seed, base_seed=seed, matched_to=base)
        masks.append(NeuronMask(mask.values, name=f"{kind}:{base}/{i}", meta=meta))
    return masks


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


def control_conditions(networks, massive: np.ndarray, section: EvaluateSection, strata: np.ndarray | None = None) -> list:
    """Conditions for every control of ``networks`` (network ``Condition``s, kind ``network``).

    ``section``: the ``evaluate`` section (its ``controls.kinds``, ``controls.draws``, ``controls.matched_draws``,
    ``controls.top_draws``, ``seed``, ``random_fraction`` and ``top_percent``); ``strata``: ``activation_strata``
    (needed by ``matched_activation``). ``controls.top_draws`` random draws of ``top_percent`` % of neurons are the
    null of the top neurons' damage (``fraction`` draws of that share).

    ``fraction`` draws are shared by all networks; the matched kinds carry the corpus and template of the
    network they are matched to; ``minus_massive`` / ``massive_only`` split each network at the massive
    channels (an empty part is left out: it would be the normal model; so is a part that is the whole
    network). ``matched_avoid_massive`` draws are made only for networks with a neuron on a massive channel
    (the only ones asked whether their effect survives without).
    """
    kinds, n_draws, seed, fraction = section.controls.kinds, section.controls.draws, section.seed, section.random_fraction
    matched_draws = section.controls.matched_draws
    inhibit = Edit("inhibit")
    unknown = [k for k in kinds if k not in CONTROL_KINDS]
    if unknown:
        raise InputError(f"unknown random control {unknown[0]!r}; expected some of {', '.join(CONTROL_KINDS)}")
    shape = np.asarray(massive).shape
    conditions = []
    shares = [(fraction, n_draws)] if "fraction" in kinds else []
    if section.controls.top_draws and section.top_percent / 100 != fraction:  # the null of the top neurons' damage
        shares.append((section.top_percent / 100, section.controls.top_draws))
    for share, count in shares:
        for mask in random_controls("fraction", shape, count, seed, fraction=share):
            conditions.append(Condition("control", mask, inhibit, control="fraction", draw=mask.meta["draw"],
                                        percent=round(100 * share, 9), seed=mask.meta["draw_seed"]))
    for network in networks:
        where = {"corpus": network.corpus, "template": network.template}
        on_massive = bool((network.mask.values & np.asarray(massive, dtype=bool)).any())
        # draws avoiding massive channels are the null of a network's part without them: only asked of networks having some
        # activation-matched draws need the recording's strata (a match stage older than channel_stats.npz has none)
        for kind in (k for k in kinds if k != "fraction" and (k != "matched_avoid_massive" or on_massive)
                     and (k != "matched_activation" or strata is not None)):
            for mask in random_controls(kind, shape, matched_draws, seed, reference=network.mask, massive=massive,
                                        strata=strata):
                conditions.append(Condition("control", mask, inhibit, control=kind, draw=mask.meta["draw"],
                                            seed=mask.meta["draw_seed"], **where))
        _, without, alone = separated_masks(network.mask, massive)
        for kind, part in (("minus_massive", without), ("massive_only", alone)):
            if 0 < part.count < network.mask.count:  # an empty part is the normal model, a whole one the network itself
                conditions.append(Condition(kind, part, inhibit, **where))
    return conditions
