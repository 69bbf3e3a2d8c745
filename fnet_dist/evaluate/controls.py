"""Honest controls: random masks drawn many times, empirical p-values, effects without massive channels.

One random mask is not a control on a real model: a draw that hits a massive-activation channel (see
``fnet_dist.match.anatomy``) breaks the model whatever it means. So every random control is a distribution.

- ``CONTROL_KINDS``: ``fraction`` (a share of all neurons, the paper's 15 %), ``matched_count`` (as many
  neurons as the network), ``matched_per_layer`` (the network's count in every layer),
  ``matched_avoid_massive`` (matched count, never on a massive channel).
- ``random_controls(kind, shape, n_draws, seed, reference=, fraction=, massive=)`` → list of NeuronMask.
- ``interval(values, level=0.95)`` → (mean, low, high) of a set of draws.
- p-values: ``fnet_dist.core.stats.monte_carlo_p`` (1 + #draws at least as bad) / (1 + n); none for a non-finite value.
- ``separated_masks(network, massive)``: the network, the network minus massive channels, and its
  massive-channel neurons alone.
- ``metric_direction(metric)``: "higher" or "lower" is better.
- ``choose_networks(consistency, corpora, count, anatomy)``: the networks tested against controls, chosen by a
  rule that uses no evaluation example (the templates with the most counterparts in the match stage, small ones
  that are not first-token artefacts first).
- ``controls_stage(loaded, config, layout, index, count)``: the ``controls`` stage of ``fnet run`` (or one shard),
  per-condition results only; ``merge_controls(config, layout)``: the report stage's tables from them.
- ``evaluate_controls(model, networks, out, *, tasks, massive, ...)``: evaluate all of the above for the
  given networks on one loaded model (hooks; cost = evaluation only) and write ``tables/controls.csv``
  (each network against each kind of random draw: mean, 95 % interval, empirical p-value) and
  ``tables/separated.csv`` (whole network, without its massive channels, those channels alone).
- ``write_control_reports(rows, networks, out)``: those two tables and a figure per task from tidy rows.
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..core.errors import InputError
from ..model.masks import NeuronMask
from ..store.outputs import open_output
from ..core.metrics import PERPLEXITY_METRICS

__all__ = [
    "CONTROL_KINDS",
    "control_conditions",
    "control_tables",
    "choose_networks",
    "controls_stage",
    "evaluate_controls",
    "interval",
    "merge_controls",
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
            raise InputError("matched_avoid_massive needs the massive-channel mask (fnet_dist.match.anatomy.massive_mask)")
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


def control_conditions(networks, massive: np.ndarray, *, kinds=CONTROL_KINDS, n_draws: int = 10, seed: int = 0,
                       fraction: float = 0.15) -> list:
    """Conditions for every control of ``networks`` (network ``Condition``s, kind ``network``).

    ``fraction`` draws are shared by all networks; the matched kinds carry the corpus and template of the
    network they are matched to; ``minus_massive`` / ``massive_only`` split each network at the massive
    channels (an empty part is left out: it would be the normal model; so is a part that is the whole
    network). ``matched_avoid_massive`` draws are made only for networks with a neuron on a massive channel
    (the only ones asked whether their effect survives without).
    """
    from ..model.edit import Edit
    from ..core.conditions import Condition

    inhibit = Edit("inhibit")
    unknown = [k for k in kinds if k not in CONTROL_KINDS]
    if unknown:
        raise InputError(f"unknown random control {unknown[0]!r}; expected some of {', '.join(CONTROL_KINDS)}")
    shape = np.asarray(massive).shape
    conditions = []
    if "fraction" in kinds:
        for mask in random_controls("fraction", shape, n_draws, seed, fraction=fraction):
            conditions.append(Condition("control", mask, inhibit, control="fraction", draw=mask.meta["draw"],
                                        percent=round(100 * fraction, 9), seed=mask.meta["draw_seed"]))
    for network in networks:
        where = {"corpus": network.corpus, "template": network.template}
        on_massive = bool((network.mask.values & np.asarray(massive, dtype=bool)).any())
        # draws avoiding massive channels are the null of a network's part without them: only asked of networks having some
        for kind in (k for k in kinds if k != "fraction" and (k != "matched_avoid_massive" or on_massive)):
            for mask in random_controls(kind, shape, n_draws, seed, reference=network.mask, massive=massive):
                conditions.append(Condition("control", mask, inhibit, control=kind, draw=mask.meta["draw"],
                                            seed=mask.meta["draw_seed"], **where))
        _, without, alone = separated_masks(network.mask, massive)
        for kind, part in (("minus_massive", without), ("massive_only", alone)):
            if 0 < part.count < network.mask.count:  # an empty part is the normal model, a whole one the network itself
                conditions.append(Condition(kind, part, inhibit, **where))
    return conditions


def on_massive(network, massive: np.ndarray | None) -> int:
    """Neurons of ``network`` (a ``Condition`` with a mask, or a ``NetworkRef``) on massive channels."""
    if getattr(network, "on_massive", None) is not None:
        return int(network.on_massive)
    if massive is None or getattr(network, "mask", None) is None:
        return 0
    _, _, alone = separated_masks(network.mask, massive)
    return int(alone.count)


def control_tables(rows, networks, massive: np.ndarray | None = None, *, fraction: float = 0.15, level: float = 0.95):
    """From tidy rows (normal, the networks and their controls): the controls and separated tables.

    ``networks``: the network ``Condition``s (or ``NetworkRef``s) the controls were drawn for; rows are matched
    by their fields. A part of a network that is empty (no neuron on a massive channel, or none off them) is
    the normal model (damage 0), a part that is all of it the network; a part that should have been evaluated
    and was not is missing (NaN), never the whole network. ``massive`` None (and no ``on_massive`` count): no
    massive channels known (the whole network is its part without them).
    """
    import pandas as pd

    from ..core.stats import monte_carlo_p
    from ..core.conditions import matching
    from ..core.metrics import primary_rows

    primary = primary_rows(rows)
    controls, separated = [], []
    for task in dict.fromkeys(primary["task"]):
        here = primary[primary["task"] == task]
        normal_rows = matching(here, kind="normal")
        if normal_rows.empty:
            continue
        normal, metric = float(normal_rows["value"].iloc[0]), normal_rows["metric"].iloc[0]
        worse = "less" if metric_direction(metric) == "higher" else "greater"
        for network in networks:
            where = {"corpus": network.corpus, "template": network.template}
            own = matching(here, kind="network", edit="inhibit", **where)
            if own.empty:
                continue
            observed = float(own["value"].iloc[0])
            for kind in CONTROL_KINDS:
                if kind == "fraction":
                    draws = matching(here, kind="control", control=kind, percent=round(100 * fraction, 9))["value"].tolist()
                else:
                    draws = matching(here, kind="control", control=kind, **where)["value"].tolist()
                if not draws:
                    continue
                mean, low, high = interval(draws, level)
                controls.append({
                    "network": network.name, "neurons": network.neurons, "task": task, "metric": metric, "normal": normal,
                    "network_value": observed, "control": kind, "draws": len(draws), "mean": mean, "low": low,
                    "high": high, "p_value": monte_carlo_p(observed, draws, worse),
                })
            alone = on_massive(network, massive)
            counts = {"minus_massive": network.neurons - alone, "massive_only": alone}
            parts = {}
            for kind in ("minus_massive", "massive_only"):
                found = matching(here, kind=kind, **where)["value"]
                parts[kind] = (normal if not counts[kind] else observed if counts[kind] == network.neurons
                               else float(found.iloc[0]) if len(found) else np.nan)
            separated.append({
                "network": network.name, "task": task, "metric": metric, "normal": normal, "whole": observed,
                "on_massive": alone, "minus_massive": parts["minus_massive"], "massive_only": parts["massive_only"],
                "damage_whole": _damage(observed, normal, metric),
                "damage_minus_massive": _damage(parts["minus_massive"], normal, metric),
                "damage_massive_only": _damage(parts["massive_only"], normal, metric),
            })
    return pd.DataFrame(controls), pd.DataFrame(separated)


def evaluate_controls(model, networks, out, *, tasks, massive: np.ndarray,
                      kinds=CONTROL_KINDS, n_draws: int = 10, seed: int = 0, fraction: float = 0.15,
                      normal_rows=None, **options):
    """Evaluate the controls of ``networks`` (network ``Condition``s) into ``out`` (resumable); write the two tables.

    ``normal_rows``: tidy rows that already hold ``normal`` and the networks (the paper's evaluation);
    without them, those conditions are evaluated here too. Returns (controls, separated) DataFrames.
    """
    import pandas as pd

    from ..core.conditions import NORMAL
    from .runner import evaluate_conditions

    conditions = control_conditions(networks, massive, kinds=kinds, n_draws=n_draws, seed=seed, fraction=fraction)
    if normal_rows is None:
        conditions = [NORMAL, *networks, *conditions]
    rows = evaluate_conditions(model, conditions, tasks, out, seed=seed, **options)
    if normal_rows is not None:
        rows = pd.concat([normal_rows, rows], ignore_index=True)
    return write_control_reports(rows, networks, out, massive=massive, fraction=fraction)


def write_control_reports(rows, networks, out, *, massive: np.ndarray | None = None, fraction: float = 0.15):
    """``out/tables/controls`` and ``separated`` (CSV + Markdown) and a figure per task from tidy rows
    (normal, the networks and their controls); returns (controls, separated) DataFrames."""
    from .figures import control_plot
    from .tables import save_table

    out = Path(out)
    controls, separated = control_tables(rows, networks, massive, fraction=fraction)
    save_table(controls, out / "tables", "controls")
    save_table(separated, out / "tables", "separated")
    for task in dict.fromkeys(separated["task"] if len(separated) else []):
        control_plot(controls, separated, out / "figures" / f"controls_{task}.png", task)
    return controls, separated




SMALL_SHARE = 0.02  # the paper's "fewer than 2 % of the model's neurons": the networks its claims are about
SELECTION_RULE = (f"per evaluated corpus, the templates with the most counterparts among the individual maps (match "
                  f"stage), first those of < {SMALL_SHARE:.0%} of neurons that are not first-token artefacts (the "
                  "networks the claims are about): a rule that uses no evaluation example")


def choose_networks(consistency, corpora, count: int, anatomy=None, first_token_share: float = 0.5) -> list[tuple[str, int]]:
    """``(corpus, template)`` (1-based, as in ``consistency``) of the ``count`` non-empty templates of each of
    ``corpora`` with the most counterparts (ties: the lower number), those the claims are about first: under
    ``SMALL_SHARE`` of all neurons (``share``) and not first-token dominated (``anatomy``'s
    ``first_token_peak_share`` below ``first_token_share``; the first-token template has counterparts in every
    sample, so by counterparts alone it is always chosen, and it is neither small nor a network).
    ``consistency`` / ``anatomy``: the match stage's ``consistency.csv`` / ``network_anatomy.csv``."""
    chosen = []
    for corpus in corpora:
        rows = consistency[(consistency["corpus"] == corpus) & (consistency["size"] > 0)]  # an empty template edits nothing
        eligible = rows["share"] < SMALL_SHARE if "share" in rows else np.ones(len(rows), dtype=bool)
        if anatomy is not None and "first_token_peak_share" in anatomy:
            mine = anatomy[anatomy["corpus"] == corpus].set_index("template")["first_token_peak_share"]
            eligible &= ~(rows["template"].map(mine).fillna(0.0) >= first_token_share).to_numpy()
        rows = rows.assign(_eligible=eligible).sort_values(["_eligible", "counterparts", "template"],
                                                           ascending=[False, False, True])
        chosen += [(corpus, int(t)) for t in rows["template"].head(count)]
    return chosen


class NetworkRef(NamedTuple):
    """A network the controls were drawn for, as the tables need it (a network ``Condition`` also fits)."""

    name: str
    neurons: int
    corpus: str
    template: int
    on_massive: int | None = None


def controls_stage(loaded, config, layout, index: int = 0, count: int = 1) -> list[str]:
    """The controls of the networks ``choose_networks`` picks (``config.evaluate.controls``), or shard ``index``
    of ``count`` of them, into ``layout.controls``: per-condition results only; shard 0 writes the
    plan and ``selection.json`` (the rule and the networks). Reads the match stage's consistency table and
    massive mask."""
    import json

    import pandas as pd

    from .conditions import network_conditions
    from .runner import evaluate_conditions
    from .tasks import resolve_tasks

    e, c = config.evaluate, config.evaluate.controls
    anatomy = layout.match.network_anatomy
    chosen = choose_networks(pd.read_csv(layout.match.consistency), config.evaluation_corpora(), c.networks,
                             pd.read_csv(anatomy) if anatomy.exists() else None, config.match.first_token_share)
    found = {(n.corpus, n.template): n for corpus in dict.fromkeys(corpus for corpus, _ in chosen)
             for n in network_conditions(layout.networks(corpus), threshold=config.match.threshold,
                                         two_sided=config.match.two_sided, union=False)}
    networks = [found[key] for key in chosen if key in found]
    massive = np.load(layout.match.massive_mask, allow_pickle=False)
    conditions = control_conditions(networks, massive, kinds=c.kinds, n_draws=c.draws, seed=e.seed,
                                    fraction=e.random_fraction)
    out = Path(open_output(str(layout.controls.folder), "evaluation"))  # marked as evaluation results
    mine = conditions[index::count]
    if mine:
        evaluate_conditions(loaded, mine, resolve_tasks(list(e.control_tasks())), out, limit=e.limit, batch_size=e.batch_size,
                            seed=e.seed, hook_module=config.model.hook_module, table=False)
    if index == 0:
        refs = [NetworkRef(n.name, n.neurons, n.corpus, n.template, on_massive(n, massive)) for n in networks]
        layout.controls.plan.write_text(json.dumps({
            "networks": [r._asdict() for r in refs],
            "conditions": [{"name": x.name, "slug": x.slug, **x.fields()} for x in conditions]}, indent=2, default=str))
        layout.controls.selection.write_text(json.dumps({"rule": SELECTION_RULE, "networks": [n.name for n in networks]},
                                                indent=2) + "\n")
    return [x.name for x in mine]


def merge_controls(config, layout):
    """The report stage's controls tables and figures from the controls shards (with the evaluate stage's normal
    and network rows); (controls, separated) DataFrames, or None when no controls were run."""
    import json

    import pandas as pd

    from .runner import condition_rows, write_rows

    out = layout.controls.folder
    if not layout.controls.plan.is_file():
        return None
    plan = json.loads(layout.controls.plan.read_text())
    networks = [NetworkRef(**n) for n in plan["networks"]]
    evaluated = json.loads(layout.evaluate.plan.read_text())["conditions"]
    names = {n.name for n in networks}
    keep = [p["slug"] for p in evaluated if p["kind"] == "normal" or p["name"] in names]
    controls = condition_rows(out, [p["slug"] for p in plan["conditions"]])
    write_rows(controls, out)  # the controls' rows beside their conditions (the findings read them)
    rows = pd.concat([condition_rows(layout.evaluate.folder, keep), controls], ignore_index=True)
    return write_control_reports(rows, networks, out, fraction=config.evaluate.random_fraction)
