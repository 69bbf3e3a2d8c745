"""The controls stage: which networks are tested against random draws, their draws evaluated, their tables merged.

The draws themselves are ``fnet_dist.evaluate.draws``; the tables and figure ``fnet_dist.evaluate.control_tables``.

- ``selection_rule(count)``; ``choose_networks(consistency, corpora, count, anatomy, first_token_share=)``: the
  networks tested against controls, declared in the config (``evaluate.controls.networks``: ``all``, every non-empty
  template of each evaluated corpus, or N, the templates with the most counterparts in the match stage, small
  ones (``fnet_dist.core.networks.SMALL_SHARE``) that are not first-token artefacts first) and fixed before any
  evaluation in ``selection.json``.
- ``channel_strata(match_files, corpus, bins)``: the activation strata of the evaluated corpus's channels.
- ``controls_stage(loaded, config, layout, index, count)``: the ``controls`` stage of ``fnet run`` (or one shard),
  per-condition results only; ``merge_controls(config, layout)``: the report stage's tables from them.
- ``evaluate_controls(model, networks, out, section, *, tasks, massive, level, ...)``: evaluate the controls of
  the given networks on one loaded model (hooks; cost = evaluation only) and write ``tables/controls.csv`` (each
  network against each kind of random draw: mean, interval, empirical p-value) and ``tables/separated.csv``
  (whole network, without its massive channels, those channels alone).
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..core.conditions import NORMAL
from ..core.config import EvaluateSection
from ..core.networks import SMALL_SHARE
from ..store.outputs import open_output
from .conditions import network_conditions
from .control_tables import on_massive, write_control_reports
from .draws import activation_strata, control_conditions
from .runner import condition_rows, evaluate_conditions, write_rows
from .tasks import TaskOptions, resolve_tasks
from .vllm_backend import vllm_options

__all__ = [
    "NetworkRef",
    "channel_strata",
    "choose_networks",
    "controls_stage",
    "evaluate_controls",
    "merge_controls",
    "selection_rule",
]


def evaluate_controls(model, networks, out, section: EvaluateSection, *, tasks, massive: np.ndarray, level: float,
                      normal_rows=None, **options):
    """Evaluate the controls of ``networks`` (network ``Condition``s) into ``out`` (resumable); write the two tables.

    ``section``: the ``evaluate`` section (the controls' kinds and draws, the seed, the random fraction);
    ``level``: of the draws' intervals (``report.level``); ``options``: ``evaluate_conditions``'s.
    ``normal_rows``: tidy rows that already hold ``normal`` and the networks (the paper's evaluation);
    without them, those conditions are evaluated here too. Returns (controls, separated) DataFrames.
    """
    import pandas as pd


    conditions = control_conditions(networks, massive, section)
    if normal_rows is None:
        conditions = [NORMAL, *networks, *conditions]
    rows = evaluate_conditions(model, conditions, tasks, out, seed=section.seed, **options)
    if normal_rows is not None:
        rows = pd.concat([normal_rows, rows], ignore_index=True)
    return write_control_reports(rows, networks, out, massive=massive, fraction=section.random_fraction, level=level)


def selection_rule(count: int | str) -> str:
    """The rule ``evaluate.controls.networks`` declares, in words (``selection.json`` and the findings quote it)."""
    if count == "all":
        return ("every non-empty template of each evaluated corpus (evaluate.controls.networks: all), declared in the "
                "config and fixed before any evaluation")
    return (f"per evaluated corpus, the {count} templates with the most counterparts among the individual maps (match "
            f"stage), first those of < {SMALL_SHARE:.0%} of neurons that are not first-token artefacts "
            f"(evaluate.controls.networks: {count}): a rule that uses no evaluation example")


def choose_networks(consistency, corpora, count: int | str, anatomy=None, *, first_token_share: float) -> list[tuple[str, int]]:
    """``(corpus, template)`` (1-based, as in ``consistency``) of every non-empty template of each of ``corpora``
    (``count`` ``all``, in template order), or of the ``count`` with the most counterparts (ties: the lower number),
    those the claims are about first: under
    ``SMALL_SHARE`` of all neurons (``share``) and not first-token dominated (``anatomy``'s
    ``first_token_peak_share`` below ``first_token_share``; the first-token template has counterparts in every
    sample, so by counterparts alone it is always chosen, and it is neither small nor a network).
    ``consistency`` / ``anatomy``: the match stage's ``consistency.csv`` / ``network_anatomy.csv``;
    ``first_token_share``: ``match.first_token_share``."""
    chosen = []
    for corpus in corpora:
        rows = consistency[(consistency["corpus"] == corpus) & (consistency["size"] > 0)]  # an empty template edits nothing
        if count == "all":
            chosen += [(corpus, int(t)) for t in sorted(rows["template"])]
            continue
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


    e, c = config.evaluate, config.evaluate.controls
    anatomy = layout.match.network_anatomy
    chosen = choose_networks(pd.read_csv(layout.match.consistency), config.evaluation_corpora(), c.networks,
                             pd.read_csv(anatomy) if anatomy.exists() else None,
                             first_token_share=config.match.first_token_share)
    found = {(n.corpus, n.template): n for corpus in dict.fromkeys(corpus for corpus, _ in chosen)
             for n in network_conditions(layout.networks(corpus), threshold=config.match.threshold,
                                         two_sided=config.match.two_sided, union=False)}
    networks = [found[key] for key in chosen if key in found]
    massive = np.load(layout.match.massive_mask, allow_pickle=False)
    strata = {corpus: channel_strata(layout.match, corpus, c.activation_strata) for corpus in dict.fromkeys(n.corpus for n in networks)}
    conditions = [x for corpus, found_strata in strata.items()
                  for x in control_conditions([n for n in networks if n.corpus == corpus], massive, e, found_strata)]
    conditions = _shared_fraction_once(conditions)
    out = Path(open_output(str(layout.controls.folder), "evaluation"))  # marked as evaluation results
    mine = conditions[index::count]
    if mine:
        options = TaskOptions.of(e)
        evaluate_conditions(loaded, mine, resolve_tasks(list(e.control_tasks()), options.include_path), out,
                            limit=e.limit, batch_size=e.batch_size, seed=e.seed, hook_module=config.model.hook_module,
                            table=False, task_options=options, backend=e.backend, **vllm_options(e, config.model))
    if index == 0:
        refs = [NetworkRef(n.name, n.neurons, n.corpus, n.template, on_massive(n, massive)) for n in networks]
        layout.controls.plan.write_text(json.dumps({
            "networks": [r._asdict() for r in refs],
            "conditions": [{"name": x.name, "slug": x.slug, **x.fields()} for x in conditions]}, indent=2, default=str))
        layout.controls.selection.write_text(json.dumps({
            "rule": selection_rule(c.networks), "declared": {"networks": c.networks, "kinds": list(c.kinds),
                                                             "draws": c.draws, "matched_draws": c.matched_draws},
            "networks": [n.name for n in networks]}, indent=2) + "\n")
    return [x.name for x in mine]


def channel_strata(match_files, corpus: str, bins: int) -> np.ndarray | None:
    """``activation_strata`` of ``corpus``'s channels from the match stage's ``channel_stats.npz`` (``match_files``:
    ``MatchFiles``), or None when the run's match stage predates it (then no activation-matched draws)."""
    if not match_files.channel_stats.is_file():
        return None
    with np.load(match_files.channel_stats, allow_pickle=False) as stats:
        if f"mean_abs/{corpus}" not in stats:
            return None
        return activation_strata(stats[f"mean_abs/{corpus}"], stats[f"kurtosis/{corpus}"], bins)


def _shared_fraction_once(conditions: list) -> list:
    """The fraction draws are shared by every network: one copy of each when several corpora were drawn for."""
    return list({x.name: x for x in conditions}.values())


def merge_controls(config, layout):
    """The report stage's controls tables and figures from the controls shards (with the evaluate stage's normal
    and network rows); (controls, separated) DataFrames, or None when no controls were run."""
    import json

    import pandas as pd


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
    return write_control_reports(rows, networks, out, fraction=config.evaluate.random_fraction, level=config.report.level)
