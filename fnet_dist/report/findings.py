"""The paper's claims, each tested on a run's own numbers against its own null (``fnet_dist.core.stats``).

``compute_findings(match, evaluation, controls, settings, total_neurons=, null_runs=) -> list[Finding]`` (a run's ``MatchFiles`` and
``EvaluationFiles``; corrected, with verdicts);
``write_findings(findings, path, settings)`` writes ``findings.json``, which the report page renders as it is.

Claims (ids are stable; ``<task>`` as in the run, ``<suffix>`` = ``@<corpus>`` of the top neurons, e.g. ``@news``):
- ``counterparts`` (Tables 1, 6-8): each template's samples with a counterpart against random networks of its size
  and layer profile, the stricter of the uniform and the frequency-preserving null (``fnet_dist.match.nulls``);
  most templates by partial conjunction over the templates; interval over samples.
- ``recurrence`` (Table 2): the mean best-match IoU across corpora of every template that may count (massive-channel
  neurons out, first-token-dominated templates out) against the stricter null; interval from split halves.
- ``reproducibility``: templates of disjoint halves of the samples match each other beyond the stricter null.
- ``counterparts-vs-<null>``, ``recurrence-vs-<null>``, ``reproducibility-vs-<null>``: the trained model against each
  null-model run of the config (``nulls``: its random-initialised twin, shuffled text …), two-sample tests over
  samples, split halves and corpus splits.
- ``small-networks/<task>``: the networks (< 2 % of neurons) declared for the controls (``selection.json``) hurt more
  than their own matched draws (same count; same count per layer; same layer and activation strata): networks as
  the unit, a stratified permutation test over them for each matched kind and the strictest kind deciding
  (intersection-union), a hierarchical bootstrap interval; each network's own result against each kind and against
  the shared random 15 % draws in ``details``.
- ``survives-without-massive/<task>``: networks with massive-channel neurons, without them, against draws
  avoiding massive channels (networks as the unit as above); not applicable when no evaluated network has such neurons.
- ``amplification<suffix>``: the amplified top neurons improve some task (paired over examples).
Every claim declares its minimum effect (``report.min_accuracy``, ``report.min_perplexity`` for the editing claims,
``report.min_structure`` for the structure claims); ``fails`` needs the effect shown below it.
- ``top-vs-random<suffix>/<task>``: inhibiting the top neurons hurts more than random draws of as many neurons
  (``evaluate.controls.top_draws``, Monte Carlo over the draws, bootstrap interval over examples);
  ``top-without-first-token-vs-random<suffix>/<task>``: the same for the top neurons of the templates that are not
  first-token artefacts.
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
    bootstrap_mean,
    conclude,
    draws_needed,
    examples_needed,
    most,
    networks_against_draws,
    overlap_test,
    paired_effect,
    partial_conjunction,
    replicate_interval,
    strictest,
    two_sample_effect,
)
from .evidence import Evidence

_RUN = RunLayout(Path())  # paths relative to a run folder, as findings.json links its tables

__all__ = ["FindingSettings", "NullRun", "against_null_model", "read_table", "reproducibility", "compute_findings", "counterparts", "recurrence", "small_networks", "survives",
           "amplification", "localization", "top_vs_random", "write_findings"]

MATCHED_KINDS = ("matched_count", "matched_per_layer", "matched_activation")  # nulls of "hurts more than random"
DRAW_KINDS = ("fraction", *MATCHED_KINDS)
PERPLEXITY_SCORES = ("word_perplexity", "byte_perplexity")  # damage in nats per unit (``Evidence.units``)


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
    min_structure = property(lambda self: self.report.min_structure)
    random_fraction = property(lambda self: self.evaluate.random_fraction)
    top_percent = property(lambda self: self.evaluate.top_percent)
    amplify_factor = property(lambda self: self.evaluate.amplify_factor)

    def minimum(self, metric: str) -> float:
        """An editing claim's declared minimum effect on a task scored by ``metric``, in the damage's units: the
        accuracy share ``report.min_accuracy``, or ``report.min_perplexity`` as nats per word, log(1 + share)."""
        return math.log1p(self.report.min_perplexity) if metric in PERPLEXITY_SCORES else self.report.min_accuracy


def counterparts(table: pd.DataFrame, samples: pd.DataFrame | None, s: FindingSettings) -> Finding:
    """Most group templates have counterparts in more samples than random networks of the stricter null have.

    table : ``counterparts_null.csv`` (per template: samples with a counterpart, both nulls, ``p_value`` the stricter);
    samples : ``counterpart_samples.csv`` (per template and sample: its counterparts), for the interval over samples."""
    claim = "Most group-level templates have counterparts among the individual-level maps (Tables 1, 6-8)."
    common = dict(tables=[str(_RUN.match.consistency), str(_RUN.match.counterparts_null), str(_RUN.match.counterpart_samples)],
                  anchors=["finding-counterparts", "table-counterparts_null"])
    if samples is None or "p_value" not in table or "null" not in table:
        return Finding.of("counterparts", claim, None, "", reason="the run's match tables predate samples as the unit "
                          "and the frequency-preserving null: rerun the match stage", **common)
    permutations = int(table["permutations"].min())
    units, details = [], []
    for r in table.itertuples():
        rows = samples[(samples["corpus"] == r.corpus) & (samples["template"] == r.template)]
        has = (rows["counterparts"].to_numpy() > 0).astype(float)
        chance = getattr(r, f"{r.null}_samples_mean") / max(len(has), 1)
        low, high = bootstrap_mean(has - chance, s.level, s.bootstrap, s.seed)
        units.append((network_name(r.corpus, r.template), Estimate(
            float(has.mean() - chance) if len(has) else float("nan"), (low, high), float(r.p_value),
            f"Monte Carlo test of each template's samples with a counterpart against {permutations} random networks "
            f"of each null (uniform within layers; frequency-preserving), the stricter p; bootstrap interval over "
            f"{len(has)} samples", n_draws=permutations, n_examples=len(has))))
        details.append({"corpus": r.corpus, "template": int(r.template), "samples_with_counterpart": int(r.samples_with_counterpart),
                        "samples": len(has), "uniform_samples_mean": float(r.uniform_samples_mean),
                        "frequency_samples_mean": float(r.frequency_samples_mean),
                        "p_uniform": float(r.uniform_samples_p), "p_frequency": float(r.frequency_samples_p),
                        "p_value": float(r.p_value), "stricter_null": r.null})
    estimate, _, deciding = _decide(units, 0.5, s.alpha)
    return Finding.of("counterparts", claim, estimate,
                      f"share of samples with a counterpart beyond the stricter null (deciding template: {deciding})",
                      details=details, **common)


def _stricter(nulls: pd.DataFrame) -> pd.Series:
    """The row of the null kind with the larger p-value, on a tie the larger chance level (the verdict and the
    effect use the stricter null)."""
    return nulls.assign(_p=nulls["p_value"].fillna(1.0)).sort_values(["_p", "null_mean"], ascending=False).iloc[0]


def _replicates(halves: pd.DataFrame | None, kind: str) -> pd.DataFrame:
    if halves is None or halves.empty:
        return pd.DataFrame(columns=["kind", "corpus", "split", "half", "value"])
    return halves[halves["kind"] == kind]


def _half_recurrence(halves: pd.DataFrame | None, corpora: set[str]) -> pd.DataFrame:
    """Each split half's recurrence (``recurrence_statistic``: the mean best IoU over every template and every other
    corpus) over ``corpora`` only, from the ``recurrence_pair`` rows: (split, half, value) rows; none for fewer than
    two corpora."""
    pairs = _replicates(halves, "recurrence_pair")
    if len(corpora) < 2 or pairs.empty:
        return pd.DataFrame(columns=["split", "half", "value"])
    pairs = pairs[pairs["corpus"].isin(corpora) & pairs["other"].isin(corpora)]
    weighted = pairs.assign(total=pairs["value"] * pairs["templates"]).groupby(["split", "half"])[["total", "templates"]].sum()
    return (weighted["total"] / weighted["templates"]).rename("value").reset_index()


def recurrence(table: pd.DataFrame, summary_null: pd.DataFrame | None, halves: pd.DataFrame | None,
               s: FindingSettings) -> Finding | None:
    """Templates recur across corpora (Table 2): the mean best-match IoU over every template that may count (first-token
    templates out, massive channels out) against the stricter null, with an interval from the split halves."""
    if table.empty:
        return None
    claim = "Templates recur across corpora (Table 2), beyond chance and not through massive channels."
    tables = [str(_RUN.match.recurrence), str(_RUN.match.recurrence_summary), str(_RUN.match.recurrence_null),
              str(_RUN.match.split_halves)]
    anchors = ["finding-recurrence", "table-recurrence"]
    top = table.sort_values("iou", ascending=False).head(5)
    details = [{"pair": f"{network_name(r.corpus_1, r.template_1)} / {network_name(r.corpus_2, r.template_2)}", "iou": float(r.iou),
                "iou_without_massive": float(r.iou_without_massive), "p_without_massive": float(r.p_without_massive),
                "massive": bool(r.massive_1 or r.massive_2), "first_token": bool(r.first_token_1 or r.first_token_2)}
               for r in top.itertuples()]
    if summary_null is None or summary_null.empty:
        reason = ("the run's match tables predate the recurrence summary: rerun the match stage" if summary_null is None
                  else "fewer than two corpora have a template that may count (first-token-dominated templates never "
                       "count, nor templates left empty without massive-channel neurons)")
        return Finding.of("recurrence", claim, None, "IoU above chance", tables=tables, anchors=anchors, details=details,
                          reason=reason)
    strict = _stricter(summary_null)
    details += [{"null": r.null, "observed": float(r.observed), "null_mean": float(r.null_mean),
                 "null_low": float(r.null_low), "null_high": float(r.null_high), "p_value": float(r.p_value)}
                for r in summary_null.itertuples()]
    replicates = _replicates(halves, "recurrence").pivot(index="split", columns="half", values="value")
    effect = float(strict.observed - strict.null_mean)
    estimate = Estimate(effect, replicate_interval(effect, replicates.to_numpy(), float(strict.observed), s.level),
                        float(strict.p_value),
                        f"Monte Carlo test of the mean best-match IoU over {int(strict.templates)} templates of "
                        f"{int(strict.corpora)} corpora (every template that may count against every other corpus; "
                        f"first-token templates and massive-channel neurons out) against {int(strict.draws)} draws of "
                        f"each null (uniform; frequency-preserving), the stricter p ({strict.null}); interval from "
                        f"{len(replicates)} split-half replicates (random half-sample replication, t with "
                        f"{len(replicates)} df)", n_draws=int(strict.draws), needed=draws_needed(s.alpha))
    return Finding.of("recurrence", claim, estimate, "mean best-match IoU across corpora beyond the stricter null",
                      tables=tables, anchors=anchors, details=details)


def reproducibility(split_null: pd.DataFrame | None, halves: pd.DataFrame | None, s: FindingSettings) -> Finding | None:
    """Templates reproduce across disjoint halves of the data (the ceiling beside which recurrence is read)."""
    if split_null is None or split_null.empty:
        return None
    claim = "Group templates reproduce across disjoint halves of the samples (split-half reproducibility)."
    strict = _stricter(split_null)
    per_split = _replicates(halves, "reproducibility").groupby("split")["value"].mean().to_numpy()
    effect = float(strict.observed - strict.null_mean)
    if np.isfinite(per_split).sum() >= 2:
        from scipy import stats

        finite = per_split[np.isfinite(per_split)]
        spread = float(stats.sem(finite))
        low, high = stats.t.interval(s.level, len(finite) - 1, loc=effect, scale=spread) if spread > 0 else (effect, effect)
    else:
        low = high = float("nan")
    estimate = Estimate(effect, (float(low), float(high)), float(strict.p_value),
                        f"Monte Carlo test of the mean best-match IoU between the templates of the two halves of "
                        f"{int(strict.splits)} random splits of each of {int(strict.corpora)} corpora against "
                        f"{int(strict.draws)} draws of each null (uniform; frequency-preserving), the stricter p "
                        f"({strict.null}); t interval over the splits", n_draws=int(strict.draws),
                        needed=draws_needed(s.alpha))
    details = [{"null": r.null, "observed": float(r.observed), "null_mean": float(r.null_mean), "p_value": float(r.p_value)}
               for r in split_null.itertuples()]
    details += [{"corpus": c, "reproducibility": float(v)} for c, v in
                _replicates(halves, "reproducibility").groupby("corpus")["value"].mean().items()]
    return Finding.of("reproducibility", claim, estimate, "mean best-match IoU between halves beyond the stricter null",
                      tables=[str(_RUN.match.split_halves), str(_RUN.match.split_null)],
                      anchors=["finding-reproducibility"], details=details)


@dataclass(frozen=True)
class NullRun:
    """A null variant's match files beside the trained run's: ``name`` (``nulls.<name>`` of the config) and what
    the variant keeps and destroys (``what``, words for the claim)."""

    name: str
    match: MatchFiles
    what: str


def _samples_share(samples: pd.DataFrame, corpora) -> np.ndarray:
    """Per usable sample of ``corpora``: the share of its corpus's templates with a counterpart in it."""
    rows = samples[samples["corpus"].isin(list(corpora))]
    return rows.assign(has=rows["counterparts"] > 0).groupby(["corpus", "sample"])["has"].mean().to_numpy(dtype=float)


def against_null_model(trained: MatchFiles, null: NullRun, s: FindingSettings) -> list[Finding]:
    """The structure findings of the trained model against those of a null-model run (its untrained twin, shuffled
    text …): is the structure a property of the trained computation, beyond what ICA finds in any activations of
    this architecture? Units: samples (counterparts), split halves (recurrence), corpus splits (reproducibility)."""
    what = f"its null model {null.name!r}" + (f" ({null.what})" if null.what else "")
    found = []
    mine, theirs = read_table(trained.counterpart_samples), read_table(null.match.counterpart_samples)
    common = dict(tables=[str(_RUN.match.counterpart_samples)], anchors=[f"finding-counterparts-vs-{null.name}"])
    claim = f"The trained model's templates have counterparts in more samples than those of {what}."
    if mine is None or theirs is None or mine.empty or theirs.empty:
        found.append(Finding.of(f"counterparts-vs-{null.name}", claim, None, "",
                                reason="the null-model run has no counterpart table (run its match stage)", **common))
    else:
        corpora = sorted(set(mine["corpus"]) & set(theirs["corpus"]))
        estimate = two_sample_effect(_samples_share(mine, corpora), _samples_share(theirs, corpora), level=s.level,
                                     n_resamples=s.bootstrap, seed=s.seed, alpha=s.alpha, unit="samples")
        found.append(Finding.of(f"counterparts-vs-{null.name}", claim, replace(
            estimate, test=f"{estimate.test}; per sample the share of its corpus's templates with a counterpart, "
                           f"corpora {', '.join(corpora)}"), "share of templates with a counterpart per sample, "
                           "trained minus null model", **common))
    for kind, statistic, unit in (("recurrence", "mean best-match IoU across corpora of a half's templates", "split halves"),
                                  ("reproducibility", "mean best-match IoU between the halves of a corpus", "corpus splits")):
        mine, theirs = read_table(trained.split_halves), read_table(null.match.split_halves)
        if kind == "reproducibility":
            a, b = _replicates(mine, kind), _replicates(theirs, kind)
            corpora = set(a["corpus"]) & set(b["corpus"])
            a, b = a[a["corpus"].isin(corpora)], b[b["corpus"].isin(corpora)]
        else:  # like for like: each half's recurrence over the corpora both runs have
            corpora = set(_replicates(mine, "recurrence_pair")["corpus"]) & set(_replicates(theirs, "recurrence_pair")["corpus"])
            a, b = _half_recurrence(mine, corpora), _half_recurrence(theirs, corpora)
        claim = {"recurrence": f"Templates recur across corpora more in the trained model than in {what}.",
                 "reproducibility": f"Templates reproduce across halves of the samples more in the trained model "
                                    f"than in {what}."}[kind]
        common = dict(tables=[str(_RUN.match.split_halves)], anchors=[f"finding-{kind}-vs-{null.name}"])
        if a.empty or b.empty:
            found.append(Finding.of(f"{kind}-vs-{null.name}", claim, None, "", reason=(
                "no split halves in one of the runs (decompose.splits 0" + (", or fewer than two corpora in common)"
                                                                           if kind == "recurrence" else ")")), **common))
            continue
        estimate = two_sample_effect(a["value"].to_numpy(), b["value"].to_numpy(), level=s.level, n_resamples=s.bootstrap,
                                     seed=s.seed, alpha=s.alpha, unit=unit)
        test = f"{estimate.test}; {statistic}, corpora {', '.join(sorted(corpora))}"
        found.append(Finding.of(f"{kind}-vs-{null.name}", claim, replace(estimate, test=test),
                                f"{statistic}, trained minus null model", **common))
    return found


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
    # fails: fewer than u units reach their minimum, i.e. at least m - u + 1 are shown below it
    p_fail = [e.p_fail for _, e in units]
    combined = None if any(x is None for x in p_fail) else partial_conjunction(p_fail, m - u + 1)
    return replace(deciding, p=most(p, share), needed=needed, test=test, p_fail=combined), details, name


def _controlled(ev: Evidence) -> list[str]:
    chosen = ev.selection.get("networks")
    return [n for n in (chosen or ev.networks()) if n in ev.names]


def _unscored(ev: Evidence, task: str, s: FindingSettings) -> bool:
    """Draws were run but none scored on ``task`` (``evaluate.controls.tasks`` left it out)."""
    drawn = [ev.draws(k, n, task, s.random_fraction)[1] for n in _controlled(ev) for k in (*DRAW_KINDS, "matched_avoid_massive")]
    return any(len(frame) for frame in drawn) and all(frame.empty for frame in drawn)


def _unscored_reason(task: str) -> str:
    return f"the random draws were not scored on {task} (evaluate.controls.tasks): no null to test against"


def _over_networks(ev: Evidence, subjects: dict[str, pd.Series], kind: str, task: str, s: FindingSettings,
                   what: str) -> tuple[Estimate | None, list[dict], list[str]]:
    """The networks ``subjects`` ({network: per-example damage}) each against its own draws of ``kind``, on the
    examples all of them share: the estimate over networks, each network's own result, the draws' names."""
    frames = {n: ev.draws(kind, n, task, s.random_fraction) for n in subjects}
    frames = {n: f for n, f in frames.items() if not f[1].empty and not subjects[n].empty}
    if not frames:
        return None, [], []
    common = None
    for n, (_, frame) in frames.items():
        index = subjects[n].index.intersection(frame.columns)
        common = index if common is None else common.intersection(index)
    minimum = s.minimum(ev.metric(task))
    options = {"level": s.level, "n_resamples": s.bootstrap, "seed": s.seed, "alpha": s.alpha, "minimum": minimum}
    estimate = networks_against_draws([subjects[n][common].to_numpy() for n in frames],
                                      [f[common].to_numpy() for _, f in frames.values()], what=what, **options)
    details, names = [], []
    for n, (draw_names, frame) in frames.items():
        own = against_draws(subjects[n][common].to_numpy(), frame[common].to_numpy(), what=what, **options)
        details.append({"network": ev.label(n), "draws": kind, "effect": own.effect, "low": own.interval[0],
                        "high": own.interval[1], "p": own.p, "n_draws": own.n_draws, "n_examples": own.n_examples})
        names += draw_names
    return estimate, details, names


def small_networks(ev: Evidence, total_neurons: int, s: FindingSettings) -> list[Finding]:
    """Per task: inhibiting a network of < 2 % of neurons hurts more than its matched random draws (see the module)."""
    found = []
    rule = ev.selection.get("rule", "all evaluated networks")
    for task in ev.tasks:
        claim = (f"Inhibiting a network of < {SMALL_SHARE:.0%} of neurons hurts {task} more than random draws matched to "
                 f"it (as many neurons; as many per layer; per layer and activation stratum), by at least the declared "
                 f"minimum effect.")
        small = [n for n in _controlled(ev) if ev.neurons(n) < SMALL_SHARE * total_neurons]
        subjects = {n: ev.damage(n, task) for n in small}
        kinds, details, conditions = [], [], list(small)
        for kind in MATCHED_KINDS:
            estimate, rows, names = _over_networks(ev, subjects, kind, task, s, f"{kind} draws")
            if estimate is not None:
                kinds.append((kind, estimate))
                details += rows
                conditions += names
        if kinds:  # context: each network against the shared random 15 % draws
            details += _over_networks(ev, subjects, "fraction", task, s,
                                      f"random {100 * s.random_fraction:g} % draws")[1]
        common = dict(tables=[str(_RUN.controls.table("controls"))], anchors=[f"finding-small-networks-{task}", "table-controls"])
        if not kinds:
            if _unscored(ev, task, s):
                found.append(Finding.of(f"small-networks/{task}", claim, None, "", reason=_unscored_reason(task), **common))
            elif any(ev.draws(k, n, task, s.random_fraction)[0] for n in _controlled(ev) for k in DRAW_KINDS):
                found.append(Finding.of(f"small-networks/{task}", claim, None, "", applicable=False,
                                        reason="no network evaluated against controls is that small, or none has "
                                               "matched draws", **common))
            continue
        estimate = strictest([e for _, e in kinds])
        deciding = next(k for k, e in kinds if e.p == estimate.p and e.effect == estimate.effect)
        test = (f"{estimate.test}; the strictest of {', '.join(k for k, _ in kinds)} decides (intersection-union: the "
                f"largest p; fails: the smallest equivalence p × {len(kinds)}): {deciding}; networks chosen by: {rule}")
        found.append(Finding.of(f"small-networks/{task}", claim, replace(estimate, test=test),
                                ev.units(task) + ", mean over networks beyond their own matched draws",
                                conditions=conditions, details=details, **common))
    return found


def survives(ev: Evidence, massive: np.ndarray | None, s: FindingSettings) -> list[Finding]:
    """Per task: a network's effect survives without its massive-channel neurons (asked only of networks that have
    some): the parts without them against draws avoiding massive channels, networks as the unit."""
    found = []
    for task in ev.tasks:
        claim = f"Networks' effects on {task} survive without their massive-channel neurons."
        common = dict(tables=[str(_RUN.controls.table("separated"))], anchors=[f"finding-survives-{task}", "table-separated"])
        subjects, conditions, having = {}, [], []
        for network in _controlled(ev):
            mask = ev.mask(network)
            if massive is None or mask is None or not (mask.values & massive).any():
                continue
            having.append(network)
            part = ev.part("minus_massive", network)
            rest = int((mask.values & ~massive).sum())  # an empty part is the normal model, a whole one the network
            subjects[network] = (ev.damage(network, task) if rest == mask.count else ev.damage(part, task) if part
                                 else pd.Series(dtype=float)) if rest else ev.damage("normal", task)
            conditions += [part] if part else []
        estimate, details, names = _over_networks(ev, subjects, "matched_avoid_massive", task, s,
                                                  "count-matched draws avoiding massive channels")
        if not having:
            found.append(Finding.of(f"survives-without-massive/{task}", claim, None, "", applicable=False,
                                    reason="no network evaluated against controls has a neuron on a massive channel", **common))
        elif estimate is None:
            found.append(Finding.of(f"survives-without-massive/{task}", claim, None, "", reason=_unscored_reason(task) if _unscored(ev, task, s) else (
                "no draws avoiding massive channels were evaluated (add matched_avoid_massive to evaluate.controls.kinds)"), **common))
        else:
            found.append(Finding.of(f"survives-without-massive/{task}", claim, estimate,
                                    ev.units(task) + " without massive channels, mean over networks beyond their own draws",
                                    conditions=conditions + names, details=details, **common))
    return found


def _of(suffix: str) -> str:
    """A corpus suffix as claim text: ``@news`` → `` of news`` (``""`` for a single corpus)."""
    return f" of {suffix[1:]}" if suffix else ""


def _corpus(suffix: str) -> str | None:
    """The corpus of a corpus suffix: ``@news`` → ``news`` (None for a single corpus)."""
    return suffix.removeprefix("@") or None


def _paired(ev: Evidence, task: str, s: FindingSettings, diff: pd.Series) -> Estimate:
    return paired_effect(diff.to_numpy(), level=s.level, n_resamples=s.bootstrap, seed=s.seed, alpha=s.alpha,
                         minimum=s.minimum(ev.metric(task)))


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


def top_vs_random(ev: Evidence, s: FindingSettings) -> list[Finding]:
    """Inhibiting the top percent ICA neurons hurts more than random draws of as many neurons (the null the top
    neurons' damage needs: a random 5 % of a model is not harmless), per corpus and task the draws were scored on;
    the same for the top percent without the first-token templates (whose damage is the first token's)."""
    found = []
    for kind, key, which in (("top", "top-vs-random", ""),
                             ("top_no_first_token", "top-without-first-token-vs-random", " without the first-token templates")):
        for suffix, top in ev.top(s.top_percent, "inhibit", kind=kind).items():
            for task in ev.tasks:
                names, frame = ev.draws("fraction", top, task, s.top_percent / 100)
                subject = ev.damage(top, task)
                if frame.empty or subject.empty:
                    continue
                common = subject.index.intersection(frame.columns)
                estimate = against_draws(subject[common].to_numpy(), frame[common].to_numpy(), level=s.level,
                                         n_resamples=s.bootstrap, seed=s.seed, alpha=s.alpha,
                                         minimum=s.minimum(ev.metric(task)), what=f"random {s.top_percent:g} % draws")
                found.append(Finding.of(f"{key}{suffix}/{task}", f"Inhibiting the top {s.top_percent:g} % ICA neurons"
                                        f"{_of(suffix)}{which} hurts {task} more than inhibiting random {s.top_percent:g} % "
                                        "of neurons.", estimate, ev.units(task) + ", beyond the mean random draw",
                                        conditions=[top, *names],
                                        tables=[str(_RUN.evaluate.table("top_inhibit", _corpus(suffix)))],
                                        anchors=[f"finding-{key}{suffix}-{task}"]))
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
                                "hurts more than ablating as many LLM-Localization units where that method selects them "
                                "(evaluate.localization_site), on most tasks (Table 9).",
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
                                    "neurons fewer in common than chance", conditions=[ica, loc], minimum=s.min_structure,
                                    tables=[str(_RUN.evaluate.table("iou"))],
                                    anchors=[f"finding-ica-localization-overlap{suffix}", f"table-{_RUN.evaluate.table_name('iou')}"]))
    return found


def read_table(path: Path) -> pd.DataFrame | None:
    """A table of the run, or None when the run has none (an empty file is an empty table)."""
    if not path.exists():
        return None
    return pd.read_csv(path) if path.stat().st_size > 1 else pd.DataFrame()


def compute_findings(match: MatchFiles, evaluation: EvaluationFiles, controls: EvaluationFiles, settings: FindingSettings, *,
                     total_neurons: int | None, null_runs: list[NullRun]) -> list[Finding]:
    """Every check whose inputs the run produced, corrected as ``settings.correction`` says, with verdicts;
    ``null_runs``: the run's null-model variants, each compared with the trained model's structure."""
    found: list[Finding | None] = []
    if match.counterparts_null.exists():
        found.append(counterparts(pd.read_csv(match.counterparts_null), read_table(match.counterpart_samples), settings))
    halves = read_table(match.split_halves)
    if match.recurrence.exists() and match.recurrence.stat().st_size > 1:
        found.append(recurrence(pd.read_csv(match.recurrence), read_table(match.recurrence_null), halves, settings))
    found.append(reproducibility(read_table(match.split_null), halves, settings))
    for null in null_runs:
        found += against_null_model(match, null, settings)
    found = [f if f is None else replace(f, minimum=settings.min_structure) for f in found]  # the structure claims' minimum
    ev = Evidence(evaluation, controls)
    if not ev.rows.empty:
        massive = np.load(match.massive_mask, allow_pickle=False) if match.massive_mask.exists() else None
        if total_neurons:
            found += small_networks(ev, total_neurons, settings)
        found += survives(ev, massive, settings) if ev.selection or not matching(ev.conditions, kind="control").empty else []
        found += amplification(ev, settings)
        found += top_vs_random(ev, settings)
        found += localization(ev, settings)
    found = [replace(f, conditions=ev.records(f.conditions), level=settings.level)  # names to records
             for f in found if f is not None]
    return conclude(found, settings.alpha, settings.correction)


def write_findings(findings: list[Finding], path: Path, settings: FindingSettings, selection: dict | None = None) -> Path:
    """``findings.json``: the rule, alpha, correction, how networks were chosen, and every finding."""
    data = {"alpha": settings.alpha, "level": settings.level, "correction": CORRECTIONS[settings.correction], "verdict_rule": VERDICT_RULE,
            "minimum_effects": {"accuracy": settings.report.min_accuracy, "perplexity": settings.report.min_perplexity,
                                "structure": settings.report.min_structure},
            "selection_rule": (selection or {}).get("rule", "all evaluated networks"),
            "findings": [f.to_dict() for f in findings]}
    Path(path).write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return Path(path)
