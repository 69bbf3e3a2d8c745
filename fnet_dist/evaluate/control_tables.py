"""The controls' tables: each network against its random draws, and its effect split at massive channels.

- ``metric_direction(metric)``: "higher" or "lower" is better.
- ``on_massive(network, massive)``: a network's neurons on massive channels.
- ``control_tables(rows, networks, massive, fraction=, level=)`` → (controls, separated) DataFrames: each network
  against each kind of random draw (mean, central interval, empirical p-value:
  ``fnet_dist.core.stats.monte_carlo_p``) and the whole network, without its massive channels, those alone.
- ``write_control_reports(rows, networks, out, ...)``: those two tables and a figure per task
  (``fnet_dist.evaluate.figures.control_plot``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.conditions import matching
from ..core.metrics import PERPLEXITY_METRICS, primary_rows
from ..core.layout import EvaluationFiles
from ..core.names import network_name
from ..core.stats import interval, monte_carlo_p
from .draws import CONTROL_KINDS, separated_masks
from .figures import control_plot
from .tables import save_table

__all__ = ["control_tables", "metric_direction", "on_massive", "write_control_reports"]


def metric_direction(metric: str) -> str:
    """"lower" for perplexities and bits per byte; "higher" for accuracies, F1, MCC, exact match."""
    return "lower" if metric.split(",")[0] in PERPLEXITY_METRICS else "higher"


def _damage(value: float, normal: float, metric: str) -> float:
    """How much worse than normal, in the metric's units (positive = worse)."""
    return normal - value if metric_direction(metric) == "higher" else value - normal


def on_massive(network, massive: np.ndarray | None) -> int:
    """Neurons of ``network`` (a ``Condition`` with a mask, or a ``NetworkRef``) on massive channels."""
    if getattr(network, "on_massive", None) is not None:
        return int(network.on_massive)
    if massive is None or getattr(network, "mask", None) is None:
        return 0
    _, _, alone = separated_masks(network.mask, massive)
    return int(alone.count)


def control_tables(rows, networks, massive: np.ndarray | None = None, *, fraction: float, level: float):
    """From tidy rows (normal, the networks and their controls): the controls and separated tables.

    ``fraction``: the share of the ``fraction`` draws (``evaluate.random_fraction``); ``level``: of the draws'
    central interval (``report.level``).

    ``networks``: the network ``Condition``s (or ``NetworkRef``s) the controls were drawn for; rows are matched
    by their fields. A part of a network that is empty (no neuron on a massive channel, or none off them) is
    the normal model (damage 0), a part that is all of it the network; a part that should have been evaluated
    and was not is missing (NaN), never the whole network. ``massive`` None (and no ``on_massive`` count): no
    massive channels known (the whole network is its part without them).
    """
    import pandas as pd


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


def write_control_reports(rows, networks, out, *, massive: np.ndarray | None = None, fraction: float, level: float):
    """``out/tables/controls`` and ``separated`` (CSV + Markdown) and a figure per task from tidy rows
    (normal, the networks and their controls); returns (controls, separated) DataFrames. ``fraction``, ``level``:
    as in ``control_tables``."""
    files = EvaluationFiles(Path(out))
    controls, separated = control_tables(rows, networks, massive, fraction=fraction, level=level)
    labels = {n.name: network_name(n.corpus, n.template) for n in networks}
    save_table(controls, files.tables, files.table_name("controls"))
    save_table(separated, files.tables, files.table_name("separated"))
    for task in dict.fromkeys(separated["task"] if len(separated) else []):
        control_plot(controls, separated, files.figure("controls", task), task, labels)
    return controls, separated
