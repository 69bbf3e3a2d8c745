"""Honest controls: random masks drawn many times, empirical p-values, effects without massive channels.

One random mask is not a control on a real model: a draw that hits a massive-activation channel (see
``fnet_dist.anatomy``) breaks the model whatever it means. So every random control is a distribution.

- ``CONTROL_KINDS``: ``fraction`` (a share of all neurons, the paper's 15 %), ``matched_count`` (as many
  neurons as the network), ``matched_per_layer`` (the network's count in every layer),
  ``matched_avoid_massive`` (matched count, never on a massive channel).
- ``random_controls(kind, shape, n_draws, seed, reference=, fraction=, massive=)`` → list of NeuronMask.
- ``interval(values, level=0.95)`` → (mean, low, high) of a set of draws.
- p-values: ``fnet_dist.stats.monte_carlo_p`` (1 + #draws at least as bad) / (1 + n); none for a non-finite value.
- ``separated_masks(network, massive)``: the network, the network minus massive channels, and its
  massive-channel neurons alone.
- ``metric_direction(metric)``: "higher" or "lower" is better.
- ``choose_networks(consistency, corpora, count)``: the networks tested against controls, chosen by a rule
  that uses no evaluation example (the templates with the most counterparts in the match stage).
- ``controls_pipeline(loaded, config, layout)``: the controls part of ``fnet run``'s evaluate stage.
- ``evaluate_controls(model, networks, out, *, tasks, massive, ...)``: evaluate all of the above for the
  given networks on one loaded model (hooks; cost = evaluation only) and write ``tables/controls.csv``
  (each network against each kind of random draw: mean, 95 % interval, empirical p-value) and
  ``tables/separated.csv`` (whole network, without its massive channels, those channels alone).
- ``write_control_reports(rows, networks, out)``: those two tables and a figure per task from tidy rows.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError
from ..masks import NeuronMask
from .tasks import PERPLEXITY_METRICS

__all__ = [
    "CONTROL_KINDS",
    "control_conditions",
    "control_tables",
    "controls_pipeline",
    "choose_networks",
    "evaluate_controls",
    "interval",
    "metric_direction",
    "random_controls",
    "separated_masks",
    "write_control_reports",
]

CONTROL_KINDS = ("fraction", "matched_count", "matched_per_layer", "matched_avoid_massive")
def metric_direction(metric: str) -> str:
    """"lower" for perplexities and bits per byte; "higher" for accuracies, F1, MCC, exact match."""
    return "lower" if metric.split(",")[0] in PERPLEXITY_METRICS else "higher"


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
    """Mean and the central ``level`` interval (percentiles) of a set of random draws.

    The mean is kept within the draws' range, where it lies mathematically: summing identical draws in
    floating point can land one unit in the last place outside it (three draws of 0.7 -> 0.6999999999999998).
    It need not lie inside the interval (a skewed set of draws).
    """
    data = np.asarray(values, dtype=float)
    data = data[np.isfinite(data)]
    if data.size == 0:
        return (float("nan"),) * 3
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(data, [tail, 100 - tail])
    return float(np.clip(data.mean(), data.min(), data.max())), float(low), float(high)


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


def _damage(value: float, normal: float, metric: str) -> float:
    """How much worse than normal, in the metric's units (positive = worse)."""
    return normal - value if metric_direction(metric) == "higher" else value - normal


def control_conditions(networks: dict[str, NeuronMask], massive: np.ndarray, *, kinds=CONTROL_KINDS,
                       n_draws: int = 10, seed: int = 0, fraction: float = 0.15) -> list:
    """Conditions for every control of ``networks`` (name → mask, named like ``inhibit:news/3``).

    ``ctl-fraction<p>/<i>`` are shared by all networks; ``ctl-<kind>:<network>/<i>`` are matched to one;
    ``minus-massive:<network>`` and ``massive-only:<network>`` split it at the massive channels (an empty
    part is left out: it would be the normal model; so is a part that is the whole network). ``matched_avoid_massive`` draws are made only for
    networks with a neuron on a massive channel (the only ones asked whether their effect survives without).
    """
    from ..edit import Edit
    from .conditions import Condition

    inhibit = Edit("inhibit")
    unknown = [k for k in kinds if k not in CONTROL_KINDS]
    if unknown:
        raise InputError(f"unknown random control {unknown[0]!r}; expected some of {', '.join(CONTROL_KINDS)}")
    shape = np.asarray(massive).shape
    conditions = []
    if "fraction" in kinds:
        for mask in random_controls("fraction", shape, n_draws, seed, fraction=fraction):
            conditions.append(Condition(f"ctl-fraction{100 * fraction:g}/{mask.meta['draw']}", mask, inhibit))
    for name, network in networks.items():
        target = name.split(":", 1)[-1]
        on_massive = bool((network.values & np.asarray(massive, dtype=bool)).any())
        # draws avoiding massive channels are the null of a network's part without them: only asked of networks having some
        for kind in (k for k in kinds if k != "fraction" and (k != "matched_avoid_massive" or on_massive)):
            for mask in random_controls(kind, shape, n_draws, seed, reference=network, massive=massive):
                conditions.append(Condition(f"ctl-{kind}:{target}/{mask.meta['draw']}", mask, inhibit))
        _, without, alone = separated_masks(network, massive)
        for label, part in (("minus-massive", without), ("massive-only", alone)):
            if 0 < part.count < network.count:  # an empty part is the normal model, a whole one the network itself
                conditions.append(Condition(f"{label}:{target}", part, inhibit))
    return conditions


def control_tables(rows, networks: dict[str, NeuronMask], massive: np.ndarray | None = None, *, fraction: float = 0.15,
                   level: float = 0.95):
    """From tidy rows (normal, the networks and their controls): the controls and separated tables.

    A part of a network that is empty (no neuron on a massive channel, or none off them) is the normal model
    (damage 0), a part that is all of it the network; a part that should have been evaluated and was not is
    missing (NaN), never the whole network. ``massive`` None: no massive channels known (the whole network
    is its part without them).
    """
    import pandas as pd

    from ..stats import monte_carlo_p
    from .tables import primary_rows

    primary = primary_rows(rows)
    value = {(r.condition, r.task): (r.value, r.metric) for r in primary.itertuples()}
    controls, separated = [], []
    for task in dict.fromkeys(primary["task"]):
        if ("normal", task) not in value:
            continue
        normal, metric = value[("normal", task)]
        worse = "less" if metric_direction(metric) == "higher" else "greater"
        for name, network in networks.items():
            if (name, task) not in value:
                continue
            target = name.split(":", 1)[-1]
            observed = value[(name, task)][0]
            for kind in CONTROL_KINDS:
                prefix = f"ctl-fraction{100 * fraction:g}/" if kind == "fraction" else f"ctl-{kind}:{target}/"
                draws = [v[0] for (c, t), v in value.items() if t == task and c.startswith(prefix)]
                if not draws:
                    continue
                mean, low, high = interval(draws, level)
                controls.append({
                    "network": name, "neurons": network.count, "task": task, "metric": metric, "normal": normal,
                    "network_value": observed, "control": kind, "draws": len(draws), "mean": mean, "low": low,
                    "high": high, "p_value": monte_carlo_p(observed, draws, worse),
                })
            _, without, alone = separated_masks(network, np.zeros(network.values.shape, bool) if massive is None else massive)
            parts = {label: normal if not part.count else observed if part.count == network.count
                     else value.get((f"{label}:{target}", task), (np.nan,))[0]
                     for label, part in (("minus-massive", without), ("massive-only", alone))}
            separated.append({
                "network": name, "task": task, "metric": metric, "normal": normal, "whole": observed,
                "on_massive": alone.count, "minus_massive": parts["minus-massive"], "massive_only": parts["massive-only"],
                "damage_whole": _damage(observed, normal, metric),
                "damage_minus_massive": _damage(parts["minus-massive"], normal, metric),
                "damage_massive_only": _damage(parts["massive-only"], normal, metric),
            })
    return pd.DataFrame(controls), pd.DataFrame(separated)


def evaluate_controls(model, networks: dict[str, NeuronMask], out, *, tasks, massive: np.ndarray,
                      kinds=CONTROL_KINDS, n_draws: int = 10, seed: int = 0, fraction: float = 0.15,
                      normal_rows=None, **options):
    """Evaluate the controls of ``networks`` into ``out`` (resumable) and write the two tables there.

    ``normal_rows``: tidy rows that already hold ``normal`` and the networks (the paper's evaluation);
    without them, those conditions are evaluated here too. Returns (controls, separated) DataFrames.
    """
    import pandas as pd

    from ..edit import Edit
    from .conditions import NORMAL, Condition
    from .runner import evaluate_conditions

    conditions = control_conditions(networks, massive, kinds=kinds, n_draws=n_draws, seed=seed, fraction=fraction)
    if normal_rows is None:
        conditions = [NORMAL, *(Condition(n, m, Edit("inhibit")) for n, m in networks.items()), *conditions]
    rows = evaluate_conditions(model, conditions, tasks, out, seed=seed, **options)
    if normal_rows is not None:
        rows = pd.concat([normal_rows, rows], ignore_index=True)
    return write_control_reports(rows, networks, out, massive=massive, fraction=fraction)


def write_control_reports(rows, networks: dict[str, NeuronMask], out, *, massive: np.ndarray | None = None,
                          fraction: float = 0.15):
    """``out/tables/controls`` and ``separated`` (CSV + Markdown) and a figure per task from tidy rows
    (normal, the networks and their controls); returns (controls, separated) DataFrames."""
    from .figures import control_plot
    from .tables import save_table

    controls, separated = control_tables(rows, networks, massive, fraction=fraction)
    folder = Path(out) / "tables"
    save_table(controls, folder, "controls")
    save_table(separated, folder, "separated")
    for task in dict.fromkeys(separated["task"] if len(separated) else []):
        control_plot(controls, separated, Path(out) / "figures" / f"controls_{task}.png", task)
    return controls, separated


SELECTION_RULE = ("the templates with the most counterparts among the individual maps (match stage), per evaluated "
                  "corpus: a rule that uses no evaluation example")


def choose_networks(consistency, corpora, count: int) -> list[str]:
    """The ``count`` non-empty templates of each of ``corpora`` with the most counterparts (ties: the lower number),
    as condition names ``inhibit:<corpus>/<k>``; ``consistency``: the match stage's ``consistency.csv``."""
    from .conditions import network_condition_name

    names = []
    for corpus in corpora:
        rows = consistency[(consistency["dataset"] == corpus) & (consistency["size"] > 0)]  # an empty template edits nothing
        rows = rows.sort_values(["counterparts", "template"], ascending=[False, True])
        names += [network_condition_name("inhibit", corpus, int(t) - 1) for t in rows["template"].head(count)]
    return names


def controls_pipeline(loaded, config, layout):
    """Controls of the networks ``choose_networks`` picks from ``config.evaluate.networks_of`` into ``evaluate/controls``."""
    import json

    import pandas as pd

    from .conditions import Condition
    from .runner import read_rows

    e, c = config.evaluate, config.evaluate.controls
    rows = read_rows(layout.evaluate)
    names = choose_networks(pd.read_csv(layout.match / "consistency.csv"), config.evaluation_corpora(), c.networks)
    networks = {n: NeuronMask.load(str(layout.evaluate / "masks" / f"{Condition(n).slug}.npz")) for n in names}
    massive = np.load(layout.match / "massive_mask.npy", allow_pickle=False)
    keep = rows[rows["condition"].isin(["normal", *names])]
    folder = layout.evaluate / "controls"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "selection.json").write_text(json.dumps({"rule": SELECTION_RULE, "networks": names}, indent=2) + "\n")
    return evaluate_controls(loaded, networks, folder, tasks=list(e.tasks), massive=massive,
                             kinds=c.kinds, n_draws=c.draws, seed=e.seed, fraction=e.random_fraction,
                             normal_rows=keep, limit=e.limit, batch_size=e.batch_size,
                             hook_module=config.model.hook_module)
