"""The statistics behind the report's findings: tests, nulls, intervals, correction and the verdict rule.

Pure functions on arrays; nothing here knows a run folder or a condition name.

- ``monte_carlo_p(observed, null, alternative)``: rank p-value of an observed statistic among draws of its
  null, (1 + #draws at least as extreme) / (1 + n), along the last axis; NaN where ``observed`` is not finite.
- ``draws_needed(alpha, tests=1)``: draws a Monte Carlo test needs before its smallest p reaches alpha / tests.
- ``examples_needed(alpha)``: paired examples a sign-flip test needs before its smallest p reaches alpha.
- ``interval(values, level)``: mean and central ``level`` percentile interval of a set of random draws.
- ``holm(p)``: Holm's step-down adjusted p-values (scipy.stats has BH / BY only); NaN kept as NaN.
- ``partial_conjunction(p, u)``: p-value of "at least u of these hypotheses are false".
- ``most(p, share=0.5)``: p-value of "more than ``share`` of these hypotheses are false" (Benjamini & Heller's
  partial conjunction with Bonferroni: (m - u + 1) * p_(u)).
- ``paired_effect(diff, ...) -> Estimate``: mean of per-example paired differences, its bootstrap interval
  (``scipy.stats.bootstrap``) and a sign-flip p-value (``scipy.stats.permutation_test``).
- ``against_draws(subject, draws, ...) -> Estimate``: a subject's per-example effect against random draws'
  per-example effects: Monte Carlo p over the draws, interval over the examples of subject - mean draw.
- ``networks_against_draws(subjects, draws, ...) -> Estimate``: networks as the unit, each against its own few
  matched draws: a stratified permutation test (which of a network's masks is the network, independently per
  network) and a hierarchical bootstrap interval (networks, then each network's draws, then examples).
- ``strictest(estimates) -> Estimate``: one claim against several nulls (kinds of draws), all of which it must
  beat: the intersection-union test (the largest p, with that null's effect and interval); fails by the smallest
  equivalence p times the number of nulls (Bonferroni).
- ``bootstrap_p_fail(replicates, minimum)``: the equivalence side of a bootstrap: p of "the effect reaches the
  claim's minimum" (small = the effect lies below it).
- ``two_sample_effect(subject, null, ...) -> Estimate``: difference in means of two independent sets of units
  (a trained model's samples against its null model's), permutation p and bootstrap interval.
- ``bootstrap_mean(values, level, n_resamples, seed)``: percentile bootstrap interval of a mean.
- ``replicate_interval(effect, replicates, whole, level)``: an interval from half-sample replicates (split halves).
- ``overlap_test(overlap, size_a, size_b, total) -> Estimate``: two neuron sets' overlap below chance
  (``scipy.stats.hypergeom``), effect = chance overlap - observed overlap, in neurons.
- ``judge(estimate, p_corrected, alpha, minimum=0, p_fail_corrected=None)``: the verdict and its one-sentence reason
  (``VERDICT_RULE``); ``minimum``: the claim's declared minimum effect.
- ``Finding``: one checked claim, ``to_dict()`` / ``from_dict()`` for ``findings.json``;
  ``conclude(findings, alpha, correction)``: the run's correction (``CORRECTIONS``: ``finding`` or ``run``, Holm
  across the findings, of the p-values of ``holds`` and, apart, of ``fails``), then each verdict.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from .errors import InputError

__all__ = [
    "CORRECTION",
    "CORRECTIONS",
    "Estimate",
    "Finding",
    "VERDICTS",
    "VERDICT_RULE",
    "against_draws",
    "bootstrap_mean",
    "bootstrap_p_fail",
    "conclude",
    "draws_needed",
    "examples_needed",
    "holm",
    "interval",
    "judge",
    "monte_carlo_p",
    "most",
    "networks_against_draws",
    "overlap_test",
    "paired_effect",
    "partial_conjunction",
    "replicate_interval",
    "strictest",
    "two_sample_effect",
]

VERDICTS = ("holds", "fails", "unclear", "not applicable")
CORRECTIONS = {
    "finding": "within each finding: its units (templates, pairs, networks, tasks) by partial conjunction with "
               "Bonferroni; each finding is a separate claim of the paper, tested at alpha on its own (across the "
               "report's F findings up to F × alpha of them may hold by chance when none is true)",
    "run": "within each finding as above, then Holm across the run's findings (family-wise over the report)",
}
CORRECTION = CORRECTIONS["finding"]
VERDICT_RULE = (
    "Every claim declares a minimum effect (report.minimum_*; 0 where the claim is any effect). A finding holds only "
    "when its p-value, after the stated correction, is at most alpha and its interval lies wholly beyond zero in the "
    "claim's direction; it fails only when the effect is shown to lie below the claim's minimum effect: an equivalence "
    "(one-sided) test of 'the effect reaches the minimum' rejected at alpha after the same correction, or, where a test "
    "has no such p-value, its interval wholly below the minimum (with minimum 0: wholly on the wrong side of zero); "
    "otherwise it is unclear, with the reason. No verdict is drawn from fewer draws, examples or networks than its "
    "p-value needs to reach alpha; a claim about something the run does not have is not applicable.")


def _alternative(alternative: str) -> str:
    if alternative not in ("greater", "less"):
        raise InputError(f"alternative {alternative!r} must be 'greater' or 'less' (the direction the claim needs)")
    return alternative


def monte_carlo_p(observed, null, alternative: str = "greater"):
    """Rank p-value of ``observed`` among ``null`` draws: (1 + #at least as extreme) / (1 + n).

    observed : scalar or array of shape (...); null : array of shape (..., n_draws). Draws that are NaN are
    left out (n counts the rest); a non-finite ``observed`` gives NaN (no test), never the smallest p.
    """
    alternative = _alternative(alternative)
    observed = np.asarray(observed, dtype=float)
    null = np.asarray(null, dtype=float)
    valid = ~np.isnan(null)
    extreme = (null >= observed[..., None]) if alternative == "greater" else (null <= observed[..., None])
    n = valid.sum(axis=-1)
    p = (1.0 + (extreme & valid).sum(axis=-1)) / (1.0 + n)
    p = np.where(np.isfinite(observed) & (n > 0), p, np.nan)
    return float(p) if p.ndim == 0 else p


def draws_needed(alpha: float, tests: int = 1) -> int:
    """Fewest draws whose smallest Monte Carlo p, 1 / (n + 1), is ≤ alpha / tests (19 for 0.05)."""
    return max(1, math.ceil(tests / alpha - 1 - 1e-9))


def examples_needed(alpha: float, tests: int = 1) -> int:
    """Fewest paired examples whose smallest one-sided sign-flip p, 2^-n, is ≤ alpha / tests (5 for 0.05)."""
    return max(1, math.ceil(math.log2(tests / alpha) - 1e-9))


def interval(values, level: float) -> tuple[float, float, float]:
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


def holm(p) -> np.ndarray:
    """Holm's step-down adjusted p-values of ``p`` (shape (m,)); NaN entries stay NaN and do not count in m."""
    p = np.asarray(p, dtype=float)
    out = np.full(p.shape, np.nan)
    index = np.flatnonzero(~np.isnan(p))
    m = len(index)
    if m == 0:
        return out
    order = index[np.argsort(p[index], kind="stable")]
    scaled = (m - np.arange(m)) * p[order]
    out[order] = np.minimum(1.0, np.maximum.accumulate(scaled))
    return out


def most(p, share: float = 0.5) -> float:
    """p-value of "more than ``share`` of the m hypotheses behind ``p`` are false": with u = floor(share m) + 1,
    (m - u + 1) × the u-th smallest p (Benjamini & Heller 2008, Bonferroni combination). NaN counts as 1."""
    m = len(np.atleast_1d(p))
    return partial_conjunction(p, int(math.floor(share * m)) + 1) if m else float("nan")


def partial_conjunction(p, u: int) -> float:
    """p-value of "at least ``u`` of the m hypotheses behind ``p`` are false": (m - u + 1) × the u-th smallest p.
    NaN counts as 1."""
    p = np.sort(np.nan_to_num(np.atleast_1d(np.asarray(p, dtype=float)), nan=1.0))
    m = len(p)
    if m == 0 or not 1 <= u <= m:
        return float("nan")
    return float(min(1.0, (m - u + 1) * p[u - 1]))


@dataclass(frozen=True)
class Estimate:
    """A test's result: ``effect`` (positive = the claim's direction) with its ``interval`` at ``level``, the
    uncorrected ``p``, the test's name, and the counts behind it (``n_draws`` / ``n_examples``) with the
    smallest count at which p can reach alpha (``needed``, of the unit ``unit``: draws, examples, networks …;
    ``n_units`` counts units other than draws and examples), and ``floor``, the smallest p the test can give.
    ``p_fail``: the equivalence side, p of "the effect reaches ``minimum``" (None: the test has none; the verdict
    then reads the interval against the minimum)."""

    effect: float
    interval: tuple[float, float]
    p: float
    test: str
    n_draws: int | None = None
    n_examples: int | None = None
    needed: int = 1
    unit: str = "draws"
    n_units: int | None = None
    p_fail: float | None = None
    minimum: float = 0.0
    floor: float | None = None  # the smallest p the test can give (a Monte Carlo test's 1 / (draws + 1)), if it has one

    @property
    def n(self) -> int:
        count = {"draws": self.n_draws, "examples": self.n_examples}.get(self.unit, self.n_units)
        return int(count or 0)


def bootstrap_mean(values: np.ndarray, level: float, n_resamples: int, seed: int) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (shape (n,)); a constant sample gives [v, v]."""
    low, high, _ = _bootstrap_replicates(values, level, n_resamples, seed)
    return low, high


def _bootstrap_replicates(values: np.ndarray, level: float, n_resamples: int, seed: int) -> tuple[float, float, np.ndarray]:
    """``bootstrap_mean``'s interval and its replicates of the mean (shape (n_resamples,); a constant sample: [v])."""
    from scipy import stats

    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        return float("nan"), float("nan"), np.array([])
    if np.ptp(values) == 0:
        return float(values[0]), float(values[0]), np.full(n_resamples, float(values[0]))
    result = stats.bootstrap((values,), np.mean, confidence_level=level, n_resamples=n_resamples,
                             method="percentile", vectorized=True, axis=-1, random_state=np.random.default_rng(seed))
    return (float(result.confidence_interval.low), float(result.confidence_interval.high),
            np.asarray(result.bootstrap_distribution))


def replicate_interval(effect: float, replicates, whole: float, level: float) -> tuple[float, float]:
    """Interval of ``effect`` (an estimate from the whole data, ``whole`` its statistic) from half-sample replicates of
    the statistic (shape (n_splits, 2): the two disjoint halves of each random split): standard error
    sqrt(mean((replicate - whole)^2)) (random half-sample replication, McCarthy 1969; conservative where halves are
    noisier than the whole), Student t with n_splits degrees of freedom. NaN without two finite replicates."""
    from scipy import stats

    values = np.asarray(replicates, dtype=float)
    values = values[np.isfinite(values).all(axis=-1)] if values.ndim == 2 else values[np.isfinite(values)]
    if values.size < 2 or not np.isfinite(whole):
        return (float("nan"), float("nan"))
    se = float(np.sqrt(np.mean((values - whole) ** 2)))
    half_width = float(stats.t.ppf(0.5 + level / 2, df=max(len(values), 1))) * se
    return (effect - half_width, effect + half_width)


def paired_effect(diff, *, level: float, n_resamples: int, seed: int, alpha: float, n_permutations: int = 9999,
                  unit: str = "examples", minimum: float = 0.0) -> Estimate:
    """Mean of per-example paired differences ``diff`` (shape (n,), positive = the claim's direction) with a
    bootstrap interval and a one-sided sign-flip permutation p-value (exact while 2^n ≤ ``n_permutations``).

    level, n_resamples, alpha: the ``report`` section's ``level``, ``bootstrap`` and ``alpha``; seed: of the
    bootstrap and the sign flips; minimum: the claim's minimum effect (``p_fail``: ``bootstrap_p_fail``)."""
    from scipy import stats

    diff = np.asarray(diff, dtype=float)
    diff = diff[np.isfinite(diff)]
    n = len(diff)
    test = f"paired sign-flip permutation test over {n} {unit} (bootstrap interval)"
    if n == 0:
        return Estimate(float("nan"), (float("nan"), float("nan")), float("nan"), test, n_examples=0,
                        needed=examples_needed(alpha), unit="examples", minimum=minimum)
    if np.all(diff == 0):
        p = 1.0
    elif n == 1:  # scipy needs two observations; the exact sign-flip null of one is {d, -d}
        p = 0.5 if diff[0] > 0 else 1.0
    else:
        p = float(stats.permutation_test((diff,), np.mean, permutation_type="samples", alternative="greater",
                                         vectorized=True, n_resamples=n_permutations, random_state=np.random.default_rng(seed)).pvalue)
    low, high, replicates = _bootstrap_replicates(diff, level, n_resamples, seed)
    return Estimate(float(diff.mean()), (low, high), p, test, n_examples=n, needed=examples_needed(alpha),
                    unit="examples", p_fail=bootstrap_p_fail(replicates, minimum) if n > 1 else None, minimum=minimum)


def two_sample_effect(subject, null, *, level: float, n_resamples: int, seed: int, alpha: float, unit: str,
                      n_permutations: int = 9999) -> Estimate:
    """mean(``subject``) - mean(``null``) of two independent sets of units (shapes (n,), (m,); positive = the claim's
    direction): one-sided permutation p (``scipy.stats.permutation_test``, units exchanged between the sets, exact
    while the relabellings are at most ``n_permutations``) and a percentile bootstrap interval resampling each set
    (``scipy.stats.bootstrap``). ``needed``: the fewest units per set whose smallest p can reach alpha."""
    from scipy import stats

    a, b = (np.asarray(v, dtype=float) for v in (subject, null))
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    test = (f"two-sample permutation test of the difference in means over {len(a)} + {len(b)} {unit} "
            f"(bootstrap interval resampling each set)")
    needed = next(n for n in range(1, 64) if 1 / math.comb(2 * n, n) <= alpha)
    if len(a) < 2 or len(b) < 2:
        return Estimate(float("nan"), (float("nan"), float("nan")), float("nan"), test,
                        n_examples=int(min(len(a), len(b))), needed=needed, unit=unit, n_units=int(min(len(a), len(b))))
    diff = lambda x, y, axis=-1: np.mean(x, axis=axis) - np.mean(y, axis=axis)
    p = float(stats.permutation_test((a, b), diff, permutation_type="independent", alternative="greater",
                                     vectorized=True, n_resamples=n_permutations,
                                     random_state=np.random.default_rng(seed)).pvalue)
    if np.ptp(np.concatenate([a, b])) == 0:
        low = high = 0.0
    else:
        ci = stats.bootstrap((a, b), diff, confidence_level=level, n_resamples=n_resamples, method="percentile",
                             vectorized=True, random_state=np.random.default_rng(seed)).confidence_interval
        low, high = float(ci.low), float(ci.high)
    return Estimate(float(diff(a, b)), (low, high), p, test, n_examples=int(min(len(a), len(b))), needed=needed,
                    unit=unit, n_units=int(min(len(a), len(b))))


def against_draws(subject, draws, *, level: float, n_resamples: int, seed: int, alpha: float,
                  what: str = "random draws", minimum: float = 0.0) -> Estimate:
    """A subject's effect against random draws of the same kind.

    subject : per-example effects, shape (n_examples,); draws : shape (n_draws, n_examples); positive = the
    claim's direction (more damage, say). Statistic: the mean over examples. p: Monte Carlo rank of the
    subject's mean among the k + 1 masks (the draws are the null; exact under exchangeability, so never below
    its floor 1 / (k + 1): no test that assumes only that can go lower). Effect: subject mean - mean of the
    draws' means, with a hierarchical bootstrap interval (the draws, then the examples, paired): it carries the
    spread between draws as well as between examples (``networks_against_draws`` with one subject).
    level, n_resamples, alpha: the ``report`` section's ``level``, ``bootstrap`` and ``alpha``; seed: of the bootstrap.
    """
    subject = np.asarray(subject, dtype=float)
    draws = np.atleast_2d(np.asarray(draws, dtype=float))
    if draws.shape[-1] != subject.shape[-1]:
        raise InputError(f"draws over {draws.shape[-1]} examples and a subject over {subject.shape[-1]} "
                         f"cannot be compared: evaluate them on the same examples")
    keep = np.isfinite(subject) & np.isfinite(draws).all(axis=0)
    subject, draws = subject[keep], draws[:, keep]
    n_draws = int(draws.shape[0]) if subject.size else 0
    test = (f"Monte Carlo test against {n_draws} {what} (rank of the mean effect among the {n_draws + 1} masks; "
            f"its smallest p is 1/{n_draws + 1}); hierarchical bootstrap interval (draws, then {subject.size} examples)")
    if subject.size == 0 or n_draws == 0:
        return Estimate(float("nan"), (float("nan"), float("nan")), float("nan"), test, n_draws=n_draws,
                        n_examples=int(subject.size), needed=draws_needed(alpha))
    one = networks_against_draws(subject[None], [draws], level=level, n_resamples=n_resamples, seed=seed,
                                 alpha=alpha, minimum=minimum, what=what)
    return replace(one, test=test, unit="draws", n_units=None, needed=draws_needed(alpha), floor=1 / (n_draws + 1))


def bootstrap_p_fail(replicates, minimum: float) -> float | None:
    """p of "the effect reaches ``minimum``" from bootstrap replicates of the effect (shape (B,)): (1 + #replicates
    ≥ minimum) / (1 + B), the percentile bootstrap's one-sided test; small when the effect lies below the minimum.
    None for ``minimum`` 0 (a claim of any effect fails by its interval alone); NaN without finite replicates."""
    if minimum <= 0:
        return None
    values = np.asarray(replicates, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return float("nan")
    return float((1 + np.count_nonzero(values >= minimum)) / (1 + values.size))


def _mean_weights(rng: np.random.Generator, n_resamples: int, n: int) -> np.ndarray:
    """Bootstrap weights of ``n`` examples, shape (n_resamples, n): multinomial counts / n (a mean is ``w @ x``)."""
    return rng.multinomial(n, np.full(n, 1.0 / n), size=n_resamples) / n


def networks_against_draws(subjects, draws, *, level: float, n_resamples: int, seed: int, alpha: float,
                           minimum: float = 0.0, n_permutations: int = 9999, what: str = "matched draws") -> Estimate:
    """Networks as the unit: each network's per-example effect against its own few matched draws.

    subjects : (m, n) per-example effects of m networks on the same n examples (positive = the claim's direction);
    draws : m arrays (k_i, n), network i's own draws on those examples. Effect: the mean over networks of (network
    mean - mean of its draws' means). p: stratified permutation test; under the null each network is exchangeable
    with its own draws, so which of its k_i + 1 masks is "the network" is uniform and independent across networks
    (exact over every relabelling while there are at most ``n_permutations``, else that many random ones,
    (1 + #≥) / (1 + n)). Interval: hierarchical percentile bootstrap:
    networks resampled, then each network's draws, then the examples (one resample of the examples per replicate,
    shared by every mask: they are paired). ``p_fail``: ``bootstrap_p_fail`` of those replicates against
    ``minimum``. ``needed``: the fewest networks whose smallest p, prod 1 / (k_i + 1), reaches alpha.
    """
    subjects = np.atleast_2d(np.asarray(subjects, dtype=float))
    draws = [np.atleast_2d(np.asarray(d, dtype=float)) for d in draws]
    if len(draws) != len(subjects) or any(d.shape[-1] != subjects.shape[-1] for d in draws):
        raise InputError("each network needs its own draws on the same examples as the network")
    keep = np.isfinite(subjects).all(axis=0)
    for d in draws:
        keep &= np.isfinite(d).all(axis=0) if d.size else keep
    pairs = [(s[keep], d[:, keep]) for s, d in zip(subjects, draws) if d.shape[0] > 0]
    m, n = len(pairs), int(keep.sum())
    k = int(np.median([d.shape[0] for _, d in pairs])) if pairs else 0
    needed = max(1, math.ceil(math.log(1 / alpha) / math.log(k + 1) - 1e-9)) if k else 1
    test = (f"stratified permutation test over {m} networks, each against its own {k} {what} (which of a network's "
            f"masks is the network, relabelled per network); hierarchical bootstrap interval (networks, then draws, "
            f"then {n} examples)")
    if m == 0 or n == 0:
        return Estimate(float("nan"), (float("nan"), float("nan")), float("nan"), test, n_draws=k, n_examples=n,
                        needed=needed, unit="networks", n_units=m, minimum=minimum)
    rng = np.random.default_rng(seed)
    # permutation: per network the k_i + 1 values the statistic takes when mask j is called the network
    candidates = []
    for s, d in pairs:
        means = np.concatenate([[s.mean()], d.mean(axis=1)])
        total = means.sum()
        candidates.append(means - (total - means) / (len(means) - 1))
    observed = float(np.mean([c[0] for c in candidates]))
    tolerance = 1e-12 * max(1.0, abs(observed))
    if math.prod(len(c) for c in candidates) <= n_permutations:  # every relabelling: the exact p
        sums = np.zeros(1)
        for c in candidates:
            sums = np.add.outer(sums, c).ravel()
        p = float(np.mean(sums / m >= observed - tolerance))
    else:
        null = np.mean([c[rng.integers(0, len(c), size=n_permutations)] for c in candidates], axis=0)
        p = float((1 + np.count_nonzero(null >= observed - tolerance)) / (1 + n_permutations))
    # hierarchical bootstrap
    weights = _mean_weights(rng, n_resamples, n)
    excess = np.empty((n_resamples, m))
    for i, (s, d) in enumerate(pairs):
        means = weights @ np.vstack([s, d]).T                       # (B, k_i + 1)
        chosen = rng.integers(1, d.shape[0] + 1, size=(n_resamples, d.shape[0]))
        excess[:, i] = means[:, 0] - np.take_along_axis(means, chosen, axis=1).mean(axis=1)
    networks = rng.integers(0, m, size=(n_resamples, m))
    replicates = np.take_along_axis(excess, networks, axis=1).mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(replicates, [tail, 100 - tail])
    return Estimate(observed, (float(low), float(high)), p, test, n_draws=k, n_examples=n, needed=needed,
                    unit="networks", n_units=m, p_fail=bootstrap_p_fail(replicates, minimum), minimum=minimum)


def strictest(estimates: list[Estimate]) -> Estimate | None:
    """The claim against several nulls at once (see the module): the estimate with the largest p (NaN counts as
    the largest), its ``p_fail`` replaced by min(1, K × the smallest ``p_fail``) over the K nulls."""
    if not estimates:
        return None
    worst = max(estimates, key=lambda e: np.nan_to_num(e.p, nan=2.0))
    fails = [e.p_fail for e in estimates if e.p_fail is not None and np.isfinite(e.p_fail)]
    p_fail = min(1.0, len(estimates) * min(fails)) if fails else worst.p_fail
    return replace(worst, p_fail=p_fail)


def overlap_test(overlap: int, size_a: int, size_b: int, total: int, *, level: float) -> Estimate:
    """Is the overlap of two neuron sets (sizes ``size_a``, ``size_b`` of ``total``) below chance?

    Null: the second set drawn at random (hypergeometric). Effect: chance overlap - observed overlap, in
    neurons (positive = below chance); interval: the observed overlap against the null's central ``level``
    range; p = P(overlap ≤ observed).
    """
    from scipy import stats

    null = stats.hypergeom(total, size_a, size_b)
    low, high = null.interval(level)
    chance = float(null.mean())
    return Estimate(chance - overlap, (float(low) - overlap, float(high) - overlap), float(null.cdf(overlap)),
                    f"hypergeometric test of the overlap against random sets of the same sizes in {total} neurons",
                    n_examples=int(total), n_units=int(total), needed=1, unit="neurons")


def judge(estimate: Estimate | None, p_corrected: float, alpha: float, minimum: float = 0.0,
          applicable: bool = True, why_not: str = "", p_fail_corrected: float | None = None) -> tuple[str, str]:
    """Verdict and reason by ``VERDICT_RULE``; ``minimum``: the claim's declared minimum effect (0: any effect);
    ``p_fail_corrected``: the corrected p of the equivalence side (None: the interval is read against ``minimum``)."""
    if not applicable:
        return "not applicable", why_not
    if estimate is None or np.isnan(estimate.p) or np.isnan(estimate.effect):
        return "unclear", why_not or "the run has no finite value to test"
    if estimate.n < estimate.needed:
        unit = estimate.unit[:-1] if estimate.n == 1 and estimate.unit.endswith("s") else estimate.unit
        return "unclear", (f"{estimate.n} {unit} cannot reach p ≤ {alpha:g}: needs ≥ {estimate.needed}")
    low, high = estimate.interval
    if p_corrected <= alpha and low > 0:
        at_floor = (f"; p {estimate.p:.3g} is its test's floor: beyond every one of its {estimate.n_draws} draws "
                    "(more draws lower the floor)") if estimate.floor and estimate.p <= estimate.floor * (1 + 1e-9) else ""
        return "holds", f"corrected p {p_corrected:.3g} ≤ {alpha:g} and the interval lies above 0{at_floor}"
    if minimum > 0 and p_fail_corrected is not None and np.isfinite(p_fail_corrected):
        if p_fail_corrected <= alpha:
            return "fails", (f"the effect lies below the minimum the claim needs ({minimum:g}): equivalence p "
                             f"{p_fail_corrected:.3g} ≤ {alpha:g}, interval [{low:.4g}, {high:.4g}]")
    elif (high < minimum) if minimum > 0 else (high <= 0):
        return "fails", (f"the interval [{low:.4g}, {high:.4g}] lies below the minimum effect the claim needs "
                         f"({minimum:g})" if minimum > 0 else
                         f"the interval [{low:.4g}, {high:.4g}] excludes the effect the claim needs (> 0)")
    if p_corrected > alpha:
        small = f"; nor is it shown below the minimum effect {minimum:g}" if minimum > 0 else ""
        return "unclear", f"corrected p {p_corrected:.3g} > {alpha:g}{small}"
    if not np.isfinite(low):
        return "unclear", "no interval: too few examples vary"
    return "unclear", f"the interval [{low:.4g}, {high:.4g}] includes no effect"


@dataclass
class Finding:
    """One claim of the paper checked on a run (the record ``findings.json`` holds).

    ``id``: stable, e.g. ``counterparts`` or ``network-controls/inhibit:news/5/sentiment_rt``; ``effect``
    in ``units``, ``interval`` [low, high] at ``level``; ``p_value`` after ``correction`` (``p_raw`` before);
    ``conditions`` / ``tables`` / ``anchors``: the evaluated conditions (records: ``condition`` and the field
    columns), the result tables and the report's anchors it used; ``details``: per-unit tests behind a claim (templates, networks, tasks).
    ``minimum``: the claim's declared minimum effect (in ``units``; 0: any effect); ``p_fail``: the corrected p of
    its equivalence side (None where its test has none). ``level`` and ``alpha`` are the run's (``report.level``, ``report.alpha``): None until the report sets the level and
    ``conclude`` the alpha."""

    id: str
    claim: str
    verdict: str = "unclear"
    test: str = ""
    effect: float | None = None
    units: str = ""
    interval: tuple[float, float] | None = None
    level: float | None = None
    p_raw: float | None = None
    p_value: float | None = None
    alpha: float | None = None
    n_draws: int | None = None
    n_examples: int | None = None
    correction: str = CORRECTION
    reason: str = ""
    minimum: float = 0.0
    p_fail: float | None = None
    applicable: bool = True
    conditions: list[dict] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)
    anchors: list[str] = field(default_factory=list)
    details: list[dict] = field(default_factory=list)
    estimate: Estimate | None = field(default=None, repr=False, compare=False)

    @classmethod
    def of(cls, id: str, claim: str, estimate: Estimate | None, units: str, **extra) -> "Finding":
        """A finding from a test's ``Estimate`` (verdict decided later by ``conclude``)."""
        if estimate is None:
            return cls(id, claim, units=units, estimate=None, **extra)
        extra.setdefault("minimum", estimate.minimum)
        return cls(id, claim, test=estimate.test, effect=estimate.effect, units=units, interval=estimate.interval,
                   p_raw=estimate.p, n_draws=estimate.n_draws, n_examples=estimate.n_examples, estimate=estimate, **extra)

    def to_dict(self) -> dict:
        data = {k: v for k, v in asdict(self).items() if k not in ("estimate", "applicable")}
        data["interval"] = None if self.interval is None else [_plain(v) for v in self.interval]
        for key in ("effect", "p_raw", "p_value", "p_fail"):
            data[key] = _plain(data[key])
        data["details"] = [{k: _plain(v) for k, v in d.items()} for d in self.details]
        data["conditions"] = [{k: _plain(v) for k, v in c.items()} for c in self.conditions]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "Finding":
        data = dict(data)
        data.pop("needed", None)  # findings.json of an older run
        if data.get("verdict") not in VERDICTS:
            raise InputError(f"finding verdict {data.get('verdict')!r} must be one of {', '.join(VERDICTS)}")
        data["interval"] = None if data.get("interval") is None else tuple(
            float("nan") if v is None else v for v in data["interval"])
        return cls(**data)


def _plain(value):
    """JSON-safe: numpy scalars to Python, NaN and infinities to None."""
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def conclude(findings: list[Finding], alpha: float, correction: str) -> list[Finding]:
    """Correct the testable findings' p-values as ``correction`` says (``finding``: as they are, each already
    corrected over its own units; ``run``: Holm across them, the p-values of ``holds`` and, as a family of their
    own, those of ``fails``), then give each its verdict and reason (``alpha``, ``correction``: the ``report``
    section's)."""
    if not 0 < alpha < 1:
        raise InputError(f"alpha {alpha!r} must lie in (0, 1); 0.05 is usual")
    if correction not in CORRECTIONS:
        raise InputError(f"correction {correction!r} must be one of {', '.join(CORRECTIONS)}")
    raw = np.array([f.p_raw if (f.applicable and f.p_raw is not None) else np.nan for f in findings], dtype=float)
    raw_fail = np.array([f.estimate.p_fail if (f.applicable and f.estimate is not None and f.estimate.p_fail is not None)
                         else np.nan for f in findings], dtype=float)
    corrected = holm(raw) if correction == "run" else raw
    corrected_fail = holm(raw_fail) if correction == "run" else raw_fail
    done = []
    for finding, p, p_fail in zip(findings, corrected, corrected_fail):
        p_fail = None if np.isnan(p_fail) else float(p_fail)
        verdict, reason = judge(finding.estimate, float(p), alpha, finding.minimum, finding.applicable, finding.reason,
                                p_fail_corrected=p_fail)
        done.append(replace(finding, verdict=verdict, reason=reason, alpha=alpha, correction=CORRECTIONS[correction],
                            p_value=None if np.isnan(p) else float(p), p_fail=p_fail))
    return done
