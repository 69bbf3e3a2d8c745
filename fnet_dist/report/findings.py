"""The paper's claims, each tested on a run's own numbers against its own null (``fnet_dist.core.stats``).

``compute_findings(match, evaluation, controls, settings) -> list[Finding]`` (a run's ``MatchFiles`` and
``EvaluationFiles``; corrected, with verdicts);
``write_findings(findings, path, settings)`` writes ``findings.json``, which the report page renders as it is.

Claims (ids are stable; ``<task>`` as in the run, ``<suffix>`` = ``@<corpus>`` of the top neurons, e.g. ``@news``):
- ``counterparts`` (Tables 1, 6-8): each template's counterparts against layer-matched random networks; holds
  when more than half of the templates are significant.
- ``recurrence`` (Table 2): cross-corpus template pairs against the exact layer-matched null, without
  massive-channel neurons; pairs with a first-token-dominated template never count.
- ``small-networks/<task>``: each network (< 2 % of neurons) evaluated against controls beats the random 15 %
  draws and the count-matched draws; holds when most networks do.
- ``survives-without-massive/<task>``: networks with massive-channel neurons, without them, against draws
  avoiding massive channels; not applicable when no evaluated network has such neurons.
- ``amplification<suffix>``: the amplified top neurons improve some task (paired over examples).
- ``ica-vs-localization<suffix>``: inhibiting the ICA top neurons hurts more than as many LLM-Localization
  neurons on most tasks (paired over examples; Table 9); ``ica-localization-overlap<suffix>``: the two sets
  overlap less than chance (Table 5).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.conditions import matching
from ..core.config import EvaluateSection, ReportSection
from ..core.layout import EvaluationFiles, MatchFiles, RunLayout
from ..core.names import network_name
from ..core.networks import SMALL_SHARE
from ..core.stats import (
    CORRECTIONS,
    VERDICT_RULE,
    Estimate,
    Finding,
    against_draws,
    conclude,
    draws_needed,
    examples_needed,
    most,
    overlap_test,
    paired_effect,
)
from .evidence import Evidence

_RUN = RunLayout(Path())  # paths relative to a run folder, as findings.json links its tables

__all__ = ["FindingSettings", "compute_findings", "counterparts", "recurrence", "small_networks", "survives",
           "amplification", "localization", "write_findings"]

DRAW_KINDS = ("fraction", "matched_count", "matched_per_layer")  # nulls of "hurts more than random"


@dataclass(frozen=True)
class FindingSettings:
    """What the checks read from the config: the ``report`` section (alpha, level, bootstrap, correction) and the
    ``evaluate`` section (seed, random_fraction, top_percent, amplify_factor)."""

    report: ReportSection = ReportSection()
    evaluate: EvaluateSection = EvaluateSection()

    alpha = property(lambda self: self.report.alpha)
    level = property(lambda self: self.report.level)
    bootstrap = property(lambda self: self.report.bootstrap)
    correction = property(lambda self: self.report.correction)
    seed = property(lambda self: self.evaluate.seed)
    random_fraction = property(lambda self: self.evaluate.random_fraction)
    top_percent = property(lambda self: self.evaluate.top_percent)
    amplify_factor = property(lambda self: self.evaluate.amplify_factor)


def _share_ci(k: int, m: int, level: float) -> tuple[float, float]:
    from scipy import stats

    ci = stats.binomtest(k, m).proportion_ci(level, method="exact")
    return float(ci.low), float(ci.high)


def counterparts(table: pd.DataFrame, s: FindingSettings) -> Finding:
    """Most group templates have counterparts among the individual maps (more than random networks do)."""
    m = len(table)
    u = m // 2 + 1
    threshold = s.alpha / (m - u + 1)
    significant = table["p_value"].to_numpy() <= threshold
    permutations = int(table["permutations"].min())
    estimate = Estimate(float(significant.mean()), _share_ci(int(significant.sum()), m, s.level),
                        most(table["p_value"]),
                        f"Monte Carlo test of each template's counterparts against {permutations} size- and "
                        f"layer-matched random networks; 'more than half of {m}' by partial conjunction "
                        f"(Bonferroni over {m - u + 1}); exact binomial interval of the share",
                        n_draws=permutations, needed=draws_needed(s.alpha, m - u + 1))
    details = [{"corpus": r.corpus, "template": int(r.template), "counterparts": int(r.counterparts),
                "null_mean": float(r.null_mean), "null_high": float(r.null_high), "p_value": float(r.p_value),
                "significant": bool(sig)} for r, sig in zip(table.itertuples(), significant)]
    return Finding.of("counterparts", "Most group-level templates have counterparts among the individual-level maps "
                      "(Tables 1, 6-8).", estimate, "share of templates with more counterparts than random networks",
                      needed=0.5, tables=[str(_RUN.match.consistency), str(_RUN.match.counterparts_null)],
                      anchors=["finding-counterparts", "table-counterparts_null"], details=details)


def recurrence(table: pd.DataFrame, s: FindingSettings) -> Finding | None:
    """Some templates recur across corpora (Table 2), judged without massive channels and first-token templates."""
    if table.empty:
        return None
    claim = "Templates recur across corpora (Table 2), beyond layer-matched chance and not through massive channels."
    tables, anchors = [str(_RUN.match.recurrence)], ["finding-recurrence", "table-recurrence"]
    top = table.sort_values("iou", ascending=False).head(5)
    details = [{"pair": f"{network_name(r.corpus_1, r.template_1)} / {network_name(r.corpus_2, r.template_2)}", "iou": float(r.iou),
                "iou_without_massive": float(r.iou_without_massive), "p_without_massive": float(r.p_without_massive),
                "massive": bool(r.massive_1 or r.massive_2), "first_token": bool(r.first_token_1 or r.first_token_2)}
               for r in top.itertuples()]
    eligible = table[table["eligible"]]
    if eligible.empty:
        return Finding.of("recurrence", claim, None, "IoU above chance", tables=tables, anchors=anchors, details=details,
                          reason="every pair involves a first-token-dominated template, which never counts on its own")
    best = eligible.sort_values(["p_without_massive", "iou_without_massive"], ascending=[True, False]).iloc[0]
    iou = float(best.iou_without_massive)
    estimate = Estimate(iou - float(best.chance_iou_without_massive),
                        (iou - float(best.chance_high_without_massive), iou - float(best.chance_low_without_massive)),
                        most(eligible["p_without_massive"], share=0.0),
                        f"exact test of each pair's overlap against layer-matched random networks of the same sizes "
                        f"(hypergeometric per layer), massive-channel neurons removed; Bonferroni over {len(eligible)} "
                        f"pairs without a first-token-dominated template; the closest such pair: "
                        f"{network_name(best.corpus_1, best.template_1)} / {network_name(best.corpus_2, best.template_2)}",
                        n_examples=len(eligible), needed=1, unit="pairs")
    return Finding.of("recurrence", claim, estimate, "IoU above layer-matched chance (closest pair, without massive channels)",
                      tables=tables, anchors=anchors, details=details)


def _decide(units: list[tuple[str, Estimate]], share: float, alpha: float,
            label=str) -> tuple[Estimate, list[dict], str]:
    """The claim's estimate over per-unit tests: p by ``most``; effect and interval of the deciding unit (the
    one at the rank the partial conjunction reads); ``needed`` for the Bonferroni factor. ``label``: a unit's
    display name (a network condition's, from its fields; a task as it is)."""
    p = [e.p for _, e in units]
    m = len(units)
    u = int(math.floor(share * m)) + 1
    order = np.argsort(np.nan_to_num(p, nan=1.0), kind="stable")
    name, deciding = units[order[u - 1]]
    factor = m - u + 1
    needed = draws_needed(alpha, factor) if deciding.unit == "draws" else examples_needed(alpha, factor)
    details = [{"unit": n, "effect": e.effect, "low": e.interval[0], "high": e.interval[1], "p": e.p,
                "n_draws": e.n_draws, "n_examples": e.n_examples} for n, e in units]
    test = f"{deciding.test}; {'most' if share else 'any'} of {m} by partial conjunction (Bonferroni over {factor}); deciding: {label(name)}"
    return replace(deciding, p=most(p, share), needed=needed, test=test), details, name


def _worst_kind(network: str, task: str, ev: Evidence, s: FindingSettings, kinds) -> tuple[Estimate | None, list[str]]:
    """The network against each kind of draw; the intersection-union p is the largest (all kinds must be beaten)."""
    subject = ev.damage(network, task)
    found, names = [], []
    for kind in kinds:
        draw_names, frame = ev.draws(kind, network, task, s.random_fraction)
        if frame.empty or subject.empty:
            continue
        common = subject.index.intersection(frame.columns)
        found.append(against_draws(subject[common].to_numpy(), frame[common].to_numpy(), level=s.level,
                                   n_resamples=s.bootstrap, seed=s.seed, alpha=s.alpha, what=f"{kind} draws"))
        names += draw_names
    if not found:
        return None, names
    return max(found, key=lambda e: np.nan_to_num(e.p, nan=2.0)), names


def _controlled(ev: Evidence) -> list[str]:
    chosen = ev.selection.get("networks")
    return [n for n in (chosen or ev.networks()) if n in ev.names]


def _unscored(ev: Evidence, task: str, s: FindingSettings) -> bool:
    """Draws were run but none scored on ``task`` (``evaluate.controls.tasks`` left it out)."""
    drawn = [ev.draws(k, n, task, s.random_fraction)[1] for n in _controlled(ev) for k in (*DRAW_KINDS, "matched_avoid_massive")]
    return any(len(frame) for frame in drawn) and all(frame.empty for frame in drawn)


def _unscored_reason(task: str) -> str:
    return f"the random draws were not scored on {task} (evaluate.controls.tasks): no null to test against"


def small_networks(ev: Evidence, total_neurons: int, s: FindingSettings) -> list[Finding]:
    """Per task: inhibiting a network of < 2 % of neurons hurts more than random 15 % and count-matched draws."""
    found = []
    rule = ev.selection.get("rule", "all evaluated networks")
    for task in ev.tasks:
        claim = (f"Inhibiting a network of < {SMALL_SHARE:.0%} of neurons hurts {task} more than random draws "
                 f"({100 * s.random_fraction:g} % of neurons, and as many neurons).")
        units, conditions = [], []
        for network in _controlled(ev):
            if ev.neurons(network) >= SMALL_SHARE * total_neurons:
                continue
            estimate, names = _worst_kind(network, task, ev, s, DRAW_KINDS)
            if estimate is not None:
                units.append((network, estimate))
                conditions += [network, *names]
        common = dict(tables=[str(_RUN.controls.table("controls"))], anchors=[f"finding-small-networks-{task}", "table-controls"])
        if not units:
            if _unscored(ev, task, s):
                found.append(Finding.of(f"small-networks/{task}", claim, None, "", reason=_unscored_reason(task), **common))
            elif any(ev.draws(k, n, task, s.random_fraction)[0] for n in _controlled(ev) for k in DRAW_KINDS):
                found.append(Finding.of(f"small-networks/{task}", claim, None, "", applicable=False,
                                        reason="no network evaluated against controls is that small", **common))
            continue
        estimate, details, _ = _decide(units, 0.5, s.alpha, ev.label)
        found.append(Finding.of(f"small-networks/{task}", claim, replace(estimate, test=f"{estimate.test}; networks chosen by: {rule}"),
                                ev.units(task) + ", beyond the mean random draw", conditions=conditions, details=details, **common))
    return found


def survives(ev: Evidence, massive: np.ndarray | None, s: FindingSettings) -> list[Finding]:
    """Per task: a network's effect survives without its massive-channel neurons (asked only of networks that have some)."""
    found = []
    for task in ev.tasks:
        claim = f"Networks' effects on {task} survive without their massive-channel neurons."
        common = dict(tables=[str(_RUN.controls.table("separated"))], anchors=[f"finding-survives-{task}", "table-separated"])
        units, conditions, having = [], [], []
        for network in _controlled(ev):
            mask = ev.mask(network)
            if massive is None or mask is None or not (mask.values & massive).any():
                continue
            having.append(network)
            part = ev.part("minus_massive", network)
            rest = int((mask.values & ~massive).sum())  # an empty part is the normal model, a whole one the network
            subject = (ev.damage(network, task) if rest == mask.count else ev.damage(part, task) if part
                       else pd.Series(dtype=float)) if rest else ev.damage("normal", task)
            names, frame = ev.draws("matched_avoid_massive", network, task, s.random_fraction)
            if frame.empty or subject.empty:
                continue
            common_ids = subject.index.intersection(frame.columns)
            units.append((network, against_draws(subject[common_ids].to_numpy(), frame[common_ids].to_numpy(), level=s.level,
                                                 n_resamples=s.bootstrap, seed=s.seed, alpha=s.alpha,
                                                 what="count-matched draws avoiding massive channels")))
            conditions += [*([part] if part else []), *names]
        if not having:
            found.append(Finding.of(f"survives-without-massive/{task}", claim, None, "", applicable=False,
                                    reason="no network evaluated against controls has a neuron on a massive channel", **common))
        elif not units:
            found.append(Finding.of(f"survives-without-massive/{task}", claim, None, "", reason=_unscored_reason(task) if _unscored(ev, task, s) else (
                "no draws avoiding massive channels were evaluated (add matched_avoid_massive to evaluate.controls.kinds)"), **common))
        else:
            estimate, details, _ = _decide(units, 0.5, s.alpha, ev.label)
            found.append(Finding.of(f"survives-without-massive/{task}", claim, estimate,
                                    ev.units(task) + " without massive channels, beyond the mean draw",
                                    conditions=conditions, details=details, **common))
    return found


def _of(suffix: str) -> str:
    """A corpus suffix as claim text: ``@news`` → `` of news`` (``""`` for a single corpus)."""
    return f" of {suffix[1:]}" if suffix else ""


def _corpus(suffix: str) -> str | None:
    """The corpus of a corpus suffix: ``@news`` → ``news`` (None for a single corpus)."""
    return suffix.removeprefix("@") or None


def _paired(ev: Evidence, task: str, s: FindingSettings, diff: pd.Series) -> Estimate:
    return paired_effect(diff.to_numpy(), level=s.level, n_resamples=s.bootstrap, seed=s.seed, alpha=s.alpha)


def amplification(ev: Evidence, s: FindingSettings) -> list[Finding]:
    """Amplifying the top neurons improves the model on some task (one finding per corpus's top neurons)."""
    found = []
    for suffix, condition in ev.top(s.top_percent, "multiply", s.amplify_factor).items():
        units = [(task, _paired(ev, task, s, -ev.damage(condition, task))) for task in ev.tasks]
        estimate, details, task = _decide(units, 0.0, s.alpha)
        found.append(Finding.of(f"amplification{suffix}", f"Amplifying the top {s.top_percent:g} % ICA neurons{_of(suffix)} "
                                f"(× {s.amplify_factor:g}) improves the model on some task (Table 4).", estimate,
                                "gain against normal: " + ev.units(task).replace(" lost ", " gained "),
                                conditions=["normal", condition], details=details,
                                tables=[str(_RUN.evaluate.table("top_amplify", _corpus(suffix)))],
                                anchors=[f"finding-amplification{suffix}", f"table-{_RUN.evaluate.table_name('top_amplify', _corpus(suffix))}"]))
    return found


def localization(ev: Evidence, s: FindingSettings) -> list[Finding]:
    """ICA's top neurons hurt more than LLM Localization's (Table 9) and overlap them less than chance (Table 5)."""
    found = []
    for suffix, ica in ev.top(s.top_percent, "inhibit").items():
        loc = ev.localization(suffix, "inhibit")
        if loc is None:
            continue
        units = [(task, _paired(ev, task, s, (ev.damage(ica, task) - ev.damage(loc, task)).dropna())) for task in ev.tasks]
        estimate, details, task = _decide(units, 0.5, s.alpha)
        found.append(Finding.of(f"ica-vs-localization{suffix}", f"Inhibiting the top {s.top_percent:g} % ICA neurons{_of(suffix)} "
                                "hurts more than inhibiting as many LLM-Localization neurons, on most tasks (Table 9).",
                                estimate, "extra damage of ICA over Localization: " + ev.units(task),
                                conditions=["normal", ica, loc], details=details,
                                tables=[str(_RUN.evaluate.table("top_inhibit", _corpus(suffix)))],
                                anchors=[f"finding-ica-vs-localization{suffix}", f"table-{_RUN.evaluate.table_name('top_inhibit', _corpus(suffix))}"]))
        a, b = ev.mask(ica), ev.mask(loc)
        if a is not None and b is not None:
            overlap = int((a.values & b.values).sum())
            found.append(Finding.of(f"ica-localization-overlap{suffix}", f"The top {s.top_percent:g} % ICA neurons{_of(suffix)} and "
                                    "LLM Localization's pick different neurons: their overlap is below chance (Table 5).",
                                    overlap_test(overlap, a.count, b.count, a.values.size, level=s.level),
                                    "neurons fewer in common than chance", conditions=[ica, loc],
                                    tables=[str(_RUN.evaluate.table("iou"))],
                                    anchors=[f"finding-ica-localization-overlap{suffix}", f"table-{_RUN.evaluate.table_name('iou')}"]))
    return found


def compute_findings(match: MatchFiles, evaluation: EvaluationFiles, controls: EvaluationFiles, settings: FindingSettings, *,
                     total_neurons: int | None) -> list[Finding]:
    """Every check whose inputs the run produced, corrected as ``settings.correction`` says, with verdicts."""
    found: list[Finding | None] = []
    if match.counterparts_null.exists():
        found.append(counterparts(pd.read_csv(match.counterparts_null), settings))
    if match.recurrence.exists() and match.recurrence.stat().st_size > 1:
        found.append(recurrence(pd.read_csv(match.recurrence), settings))
    ev = Evidence(evaluation, controls)
    if not ev.rows.empty:
        massive = np.load(match.massive_mask, allow_pickle=False) if match.massive_mask.exists() else None
        if total_neurons:
            found += small_networks(ev, total_neurons, settings)
        found += survives(ev, massive, settings) if ev.selection or not matching(ev.conditions, kind="control").empty else []
        found += amplification(ev, settings)
        found += localization(ev, settings)
    found = [replace(f, conditions=ev.records(f.conditions), level=settings.level)  # names to records
             for f in found if f is not None]
    return conclude(found, settings.alpha, settings.correction)


def write_findings(findings: list[Finding], path: Path, settings: FindingSettings, selection: dict | None = None) -> Path:
    """``findings.json``: the rule, alpha, correction, how networks were chosen, and every finding."""
    data = {"alpha": settings.alpha, "level": settings.level, "correction": CORRECTIONS[settings.correction], "verdict_rule": VERDICT_RULE,
            "selection_rule": (selection or {}).get("rule", "all evaluated networks"),
            "findings": [f.to_dict() for f in findings]}
    Path(path).write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return Path(path)
