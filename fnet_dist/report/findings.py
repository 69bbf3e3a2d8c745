"""The paper's claims, checked on a run's own numbers (never written in advance).

``compute_findings(match_folder, evaluate_folder, total_neurons, ...) -> list[Finding]``; each check reads
the stage's own tables and returns a ``Finding`` (holds / fails / unclear) with the numbers behind it, or
nothing when the run did not produce what the check needs.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..evaluate.controls import metric_direction
from ..names import display_name, network_name
from .page import Finding

__all__ = ["amplification", "compute_findings", "counterparts", "cross_corpus", "network_controls", "small_networks_vs_random"]


def counterparts(consistency: pd.DataFrame, iou: float) -> Finding:
    """Paper: most group templates have counterparts among the individual-level maps (Tables 1, 6-8)."""
    per = consistency.groupby("dataset").apply(
        lambda g: pd.Series({"with": int((g["counterparts"] > 0).sum()), "all": len(g)}), include_groups=False)
    text = "; ".join(f"{d}: {int(r['with'])}/{int(r['all'])}" for d, r in per.iterrows())
    shares = per["with"] / per["all"].clip(lower=1)
    verdict = "holds" if (shares >= 0.5).all() else "fails" if (shares < 0.5).all() else "unclear"
    best = consistency.sort_values("counterparts", ascending=False).iloc[0]
    return Finding(
        "Most group-level templates have counterparts among the individual-level maps.", verdict,
        f"templates with ≥ 1 individual map at IoU > {iou:g}: {text}; most matched: "
        f"{network_name(best['dataset'], int(best['template']))} with {int(best['counterparts'])} counterparts in "
        f"{int(best['samples_with_counterpart'])} samples.", ("consistency",))


def cross_corpus(cross: pd.DataFrame, similar_iou: float) -> Finding | None:
    """Paper: some templates recur across corpora (Table 2)."""
    if cross.empty:
        return None
    similar = cross[cross["iou"] > similar_iou].sort_values("iou", ascending=False)
    pairs = {tuple(sorted((a, b))) for a, b in zip(cross["dataset_1"], cross["dataset_2"])}
    found = {tuple(sorted((a, b))) for a, b in zip(similar["dataset_1"], similar["dataset_2"])}
    if similar.empty:
        best = cross.sort_values("iou", ascending=False).iloc[0]
        return Finding("Templates recur across corpora.", "fails",
                       f"no template pair of different corpora has IoU > {similar_iou:g}; the best is "
                       f"{network_name(best['dataset_1'], int(best['template_1']))} / "
                       f"{network_name(best['dataset_2'], int(best['template_2']))} at {best['iou']:.3f}.", ("cross_corpus",))
    top = similar.iloc[0]
    return Finding("Templates recur across corpora.", "holds",
                   f"{len(similar)} template pairs with IoU > {similar_iou:g}, in {len(found)} of {len(pairs)} corpus "
                   f"pairs; the closest: {network_name(top['dataset_1'], int(top['template_1']))} / "
                   f"{network_name(top['dataset_2'], int(top['template_2']))} at {top['iou']:.3f}.", ("cross_corpus",))


def _delta(primary: pd.DataFrame, condition: str, task: str) -> float:
    """Damage of ``condition`` on ``task`` relative to normal: positive = worse, in the metric's units."""
    table = primary.set_index(["condition", "task"])
    if (condition, task) not in table.index or ("normal", task) not in table.index:
        return float("nan")
    value, normal = table.loc[(condition, task), "value"], table.loc[("normal", task), "value"]
    change = value - normal
    return float(-change if metric_direction(table.loc[(condition, task), "metric"]) == "higher" else change)


def small_networks_vs_random(primary: pd.DataFrame, total_neurons: int, random_condition: str) -> Finding | None:
    """Paper: inhibiting a network of < 2 % of neurons hurts more than a random 15 % mask."""
    networks = primary[primary["condition"].str.match(r"^inhibit:.*/\d+$")]
    if networks.empty or random_condition not in set(primary["condition"]):
        return None
    small = networks[networks["neurons"] < 0.02 * total_neurons]
    if small.empty:
        return Finding("Inhibiting a network of < 2 % of neurons hurts more than a random 15 % mask.", "unclear",
                       "no evaluated network is smaller than 2 % of the neurons.", ("table3_networks", "table10_masked"))
    per_task, parts = {}, []
    for task in sorted(set(small["task"])):
        random_damage = _delta(primary, random_condition, task)
        worse = [c for c in sorted(set(small["condition"])) if _delta(primary, c, task) > random_damage]
        per_task[task] = worse
        parts.append(f"{task}: {len(worse)} of {small['condition'].nunique()} small networks hurt more than "
                     f"{random_condition} (its damage {random_damage:+.4g})")
    verdict = "holds" if all(per_task.values()) else "fails" if not any(per_task.values()) else "unclear"
    return Finding("Inhibiting a network of < 2 % of neurons hurts more than a random 15 % mask.", verdict,
                   "; ".join(parts) + ".", ("table3_networks", "table10_masked"))


def amplification(primary: pd.DataFrame, condition: str) -> Finding | None:
    """Paper: amplifying key neurons (× 1.02) can improve the model."""
    tasks = sorted(set(primary.loc[primary["condition"] == condition, "task"]))
    if not tasks:
        return None
    changes = {t: -_delta(primary, condition, t) for t in tasks}
    better = [t for t, v in changes.items() if v > 0]
    verdict = "holds" if better else "fails"
    text = ", ".join(f"{t} {v:+.4g}" for t, v in changes.items())
    return Finding(f"Amplifying the top ICA neurons ({condition}) improves the model on some task.", verdict,
                   f"change against normal (positive = better): {text}.", ("table4_top_amplify",))


def network_controls(controls: pd.DataFrame, separated: pd.DataFrame) -> list[Finding]:
    """Per network and task: does its effect exceed every random draw, and does it survive without its
    massive-channel neurons (still worse than the random draws that avoid massive channels)?"""
    found = []
    for (network, task), group in controls.groupby(["network", "task"], sort=False):
        matched = group[group["control"] != "fraction"]  # the share-of-all-neurons draws are the paper's control, not a matched one
        matched = matched if len(matched) else group
        beaten = [row.control for row in matched.itertuples() if row.p_value <= 1.0 / (row.draws + 1) + 1e-12]
        text = ", ".join(f"{row.control} p={row.p_value:.2f} (mean {row.mean:.4g} [{row.low:.4g}, {row.high:.4g}])"
                         for row in group.itertuples())
        first = group.iloc[0]
        verdict = "holds" if len(beaten) == len(matched) else "fails" if not beaten else "unclear"
        found.append(Finding(
            f"Inhibiting {display_name(network)} ({int(first.neurons)} neurons) hurts {task} more than every matched random "
            f"draw.", verdict,
            f"{first.metric}: normal {first.normal:.4g}, network {first.network_value:.4g}; random draws: {text}.",
            ("controls",), (f"controls_{task}",)))
        split = separated[(separated["network"] == network) & (separated["task"] == task)]
        avoid = group[group["control"] == "matched_avoid_massive"]
        if split.empty or avoid.empty:
            continue
        row, ref = split.iloc[0], avoid.iloc[0]
        higher = metric_direction(ref.metric) == "higher"
        random_damage = (ref.normal - ref.low) if higher else (ref.high - ref.normal)  # the worst draws' damage
        survives = row.damage_minus_massive > random_damage
        found.append(Finding(
            f"{display_name(network)}'s effect on {task} survives without its massive-channel neurons.",
            "holds" if survives else "fails",
            f"damage (positive = worse): whole {row.damage_whole:+.4g}, without massive channels "
            f"{row.damage_minus_massive:+.4g}, massive channels alone {row.damage_massive_only:+.4g}; the largest "
            f"damage of random matched draws avoiding massive channels: {random_damage:.4g}.", ("separated", "controls"),
            (f"controls_{task}",)))
    return found


def compute_findings(match_folder: Path, evaluate_folder: Path, *, total_neurons: int | None, iou: float,
                     similar_iou: float, random_condition: str, amplify_condition: str) -> list[Finding]:
    """Every check whose inputs the run produced."""
    found: list[Finding | None] = []
    if (match_folder / "consistency.csv").exists():
        found.append(counterparts(pd.read_csv(match_folder / "consistency.csv"), iou))
    if (match_folder / "cross_corpus.csv").exists():
        found.append(cross_corpus(pd.read_csv(match_folder / "cross_corpus.csv"), similar_iou))
    results = evaluate_folder / "results.csv"
    if results.exists() and total_neurons:
        from ..evaluate.tables import primary_rows

        primary = primary_rows(pd.read_csv(results))
        found.append(small_networks_vs_random(primary, total_neurons, random_condition))
        found.append(amplification(primary, amplify_condition))
    tables = evaluate_folder / "controls" / "tables"
    if (tables / "controls.csv").exists() and (tables / "separated.csv").exists():
        found.extend(network_controls(pd.read_csv(tables / "controls.csv"), pd.read_csv(tables / "separated.csv")))
    return [f for f in found if f is not None and not (isinstance(f, float) and np.isnan(f))]
