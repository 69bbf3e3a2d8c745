"""The findings' statistics: equal to scipy.stats on known cases, calibrated under the null, powerful on a
planted effect, and the verdict rule branch by branch."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from fnet_dist.core.config import ReportSection
from fnet_dist.core.errors import InputError
from fnet_dist.core.stats import (
    Estimate,
    Finding,
    against_draws,
    conclude,
    draws_needed,
    examples_needed,
    holm,
    judge,
    monte_carlo_p,
    most,
    networks_against_draws,
    overlap_test,
    paired_effect,
    strictest,
)

SEEDS = 200
REPORT = ReportSection()  # the run's defaults: level, bootstrap, alpha
ALPHA = REPORT.alpha
RUN = dict(level=REPORT.level, n_resamples=REPORT.bootstrap, seed=0, alpha=ALPHA)
# the share of 200 null seeds that may come out "holds" by chance: alpha plus a one-sided 99.9 % binomial margin
SLACK = sps.binom.ppf(0.999, SEEDS, ALPHA) / SEEDS


def test_monte_carlo_p_is_the_rank_of_the_observed_value_among_the_draws():
    rng = np.random.default_rng(0)
    draws = rng.normal(size=9)
    for observed in (-3.0, 0.1, draws[4], 5.0):
        below = sps.percentileofscore(draws, observed, kind="strict") / 100 * len(draws)
        assert monte_carlo_p(observed, draws) == pytest.approx((1 + len(draws) - below) / (1 + len(draws)))
    assert monte_carlo_p(-3.0, draws, "less") == pytest.approx(0.1)
    batch = monte_carlo_p(np.array([5.0, -5.0]), np.stack([draws, draws]))
    assert batch.tolist() == pytest.approx([0.1, 1.0])


def test_a_non_finite_observed_value_is_no_test_and_nan_draws_do_not_count():
    draws = np.arange(10.0)
    assert np.isnan(monte_carlo_p(np.nan, draws))        # was the smallest p, 1 / 11
    assert np.isnan(monte_carlo_p(np.inf, draws))
    assert monte_carlo_p(20.0, np.r_[draws, np.nan]) == pytest.approx(1 / 11)
    with pytest.raises(InputError, match="alternative 'up' must be"):
        monte_carlo_p(1.0, draws, "up")


def test_draws_and_examples_needed():
    assert draws_needed(0.05) == 19 and draws_needed(0.01) == 99 and draws_needed(0.05, tests=4) == 79
    assert monte_carlo_p(1.0, np.zeros(draws_needed(0.05))) <= 0.05 < monte_carlo_p(1.0, np.zeros(18))
    assert examples_needed(0.05) == 5 and 2.0 ** -examples_needed(0.05) <= 0.05 < 2.0 ** -4


def test_holm_on_a_known_case_and_against_bonferroni_and_bh():
    p = np.array([0.01, 0.04, 0.03, 0.005])
    assert holm(p).tolist() == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.01, np.nan, 0.02]).tolist()[::2] == pytest.approx([0.02, 0.02]) and np.isnan(holm([np.nan])[0])
    rng = np.random.default_rng(1)
    for _ in range(20):
        q = rng.uniform(size=8) ** 3
        adjusted = holm(q)
        assert (adjusted >= q).all() and (adjusted <= np.minimum(1, 8 * q) + 1e-12).all()
        assert (sps.false_discovery_control(q) <= adjusted + 1e-12).all()


def test_most_is_the_partial_conjunction_p_value():
    assert most([0.01]) == pytest.approx(0.01)
    assert most([0.01, 0.02, 0.5]) == pytest.approx(2 * 0.02)       # u = 2 of 3: (3 - 2 + 1) × p_(2)
    assert most([0.001] * 4 + [0.9] * 4) == 1.0                     # half is not "more than half"


def test_paired_effect_equals_the_sign_test_on_accuracy_differences():
    diff = np.array([1, 1, 1, 1, 1, 1, 1, -1, 0, 0], dtype=float)   # 10 examples: exact enumeration
    estimate = paired_effect(diff, **RUN)
    assert estimate.p == pytest.approx(sps.binomtest(7, 8, 0.5, alternative="greater").pvalue)
    assert estimate.effect == pytest.approx(0.6) and estimate.n_examples == 10
    assert estimate.interval[0] < 0.6 < estimate.interval[1]
    flat = paired_effect(np.zeros(60), **RUN)
    assert flat.p == 1.0 and flat.interval == (0.0, 0.0)


def test_overlap_test_against_the_hypergeometric_distribution():
    estimate = overlap_test(0, 50, 50, 1000, level=REPORT.level)
    assert estimate.effect == pytest.approx(2.5)
    assert estimate.p == pytest.approx(sps.hypergeom(1000, 50, 50).cdf(0))
    above = overlap_test(25, 50, 50, 1000, level=REPORT.level)
    assert above.interval[1] < 0                                                        # far above chance: the interval says so
    assert above.n == 1000 and judge(above, above.p, REPORT.alpha)[0] == "fails"           # the neurons are its units
    assert judge(estimate, estimate.p, REPORT.alpha)[0] == "unclear"                    # 0 vs 2.5 expected: p 0.07
    below = overlap_test(0, 100, 100, 1000, level=REPORT.level)                         # 0 vs 10 expected
    assert judge(below, below.p, REPORT.alpha)[0] == "holds"


def _estimate(p=0.01, interval=(0.1, 0.3), n=19, needed=19):
    return Estimate(0.2, interval, p, "test", n_draws=n, needed=needed)


@pytest.mark.parametrize("estimate, p, verdict, reason", [
    (_estimate(), 0.01, "holds", "corrected p 0.01 ≤ 0.05"),
    (_estimate(n=4), 0.01, "unclear", "4 draws cannot reach p ≤ 0.05: needs ≥ 19"),
    (_estimate(interval=(-0.3, -0.1)), 0.9, "fails", "excludes the effect the claim needs"),
    (_estimate(), 0.2, "unclear", "corrected p 0.2 > 0.05"),
    (_estimate(interval=(-0.1, 0.3)), 0.01, "unclear", "includes no effect"),
    (_estimate(p=np.nan), np.nan, "unclear", "no finite value"),
])
def test_verdict_rule(estimate, p, verdict, reason):
    got, why = judge(estimate, p, ALPHA)
    assert got == verdict and reason in why
    assert judge(estimate, p, ALPHA, applicable=False, why_not="no massive neurons") == ("not applicable", "no massive neurons")


def _null_world(rng, seeds, effect=0.0, draws=19, examples=60):
    """Per-example damage of a 'network' and of random draws: each mask shifts all examples by a random
    amount (masks differ), examples add noise; the network's shift is drawn like the draws' plus ``effect``."""
    mask_shift = rng.normal(0.0, 0.05, size=(seeds, draws + 1, 1))
    values = mask_shift + rng.normal(0.0, 0.2, size=(seeds, draws + 1, examples))
    values[:, 0] += effect
    return values[:, 0], values[:, 1:]


def test_network_against_draws_is_calibrated_and_finds_a_planted_effect():
    rng = np.random.default_rng(7)
    null_subject, null_draws = _null_world(rng, SEEDS)
    holds = [judge(e := against_draws(s, d, **dict(RUN, n_resamples=300, seed=i)), e.p, ALPHA)[0] == "holds"
             for i, (s, d) in enumerate(zip(null_subject, null_draws))]
    assert np.mean(holds) <= SLACK
    p = monte_carlo_p(null_subject.mean(axis=1), null_draws.mean(axis=2))   # the 200 seeds at once
    assert abs(np.mean(p <= ALPHA) - ALPHA) <= SLACK - ALPHA               # p is uniform: calibrated, not timid
    planted_subject, planted_draws = _null_world(rng, SEEDS // 4, effect=0.4)
    found = [judge(e := against_draws(s, d, **dict(RUN, n_resamples=300, seed=i)), e.p, ALPHA)[0] == "holds"
             for i, (s, d) in enumerate(zip(planted_subject, planted_draws))]
    assert np.mean(found) >= 0.9


def test_against_draws_interval_carries_the_spread_between_draws_and_names_its_floor():
    """Examples that agree exactly still leave the draws' own spread: an interval over examples alone would be a
    point; the hierarchical one is about the t interval of the draws' mean. A subject beyond every draw gets the
    rank test's smallest p, 1 / (k + 1), and the verdict says so."""
    rng = np.random.default_rng(5)
    levels = rng.normal(0.0, 0.1, size=19)
    draws = np.repeat(levels[:, None], 40, axis=1)           # each draw shifts every example alike
    estimate = against_draws(np.full(40, 1.0), draws, **RUN)
    low, high = estimate.interval
    t_half = sps.t.ppf(0.975, 18) * levels.std(ddof=1) / np.sqrt(19)
    assert low < 1.0 - levels.mean() < high and 0.6 < (high - low) / (2 * t_half) < 1.4
    assert estimate.p == pytest.approx(1 / 20) and estimate.floor == pytest.approx(1 / 20) and "1/20" in estimate.test
    verdict, reason = judge(estimate, estimate.p, ALPHA)
    assert verdict == "holds" and "floor: beyond every one of its 19 draws" in reason
    inside = against_draws(np.full(40, levels.max() - 1e-3), draws, **RUN)  # below the largest draw
    assert inside.p == pytest.approx(2 / 20) and "floor" not in judge(inside, inside.p, ALPHA)[1]


def test_one_example_gives_the_exact_sign_flip_p_and_an_unclear_verdict():
    """A task limited to one document (the default run's wiki passage) once stopped the report: scipy's
    permutation test needs two observations."""
    up, down = paired_effect(np.array([0.3]), **RUN), paired_effect(np.array([-0.3]), **RUN)
    assert (up.p, down.p) == (0.5, 1.0) and up.interval == (0.3, 0.3) and up.n_examples == 1
    verdict, reason = judge(up, up.p, ALPHA)
    assert verdict == "unclear" and reason == "1 example cannot reach p ≤ 0.05: needs ≥ 5"


def test_paired_effect_is_calibrated_and_finds_a_planted_gain():
    rng = np.random.default_rng(3)
    null = rng.choice([-1.0, 0.0, 0.0, 1.0], size=(SEEDS, 60))               # accuracy changes, no gain
    holds = [judge(e := paired_effect(d, **dict(RUN, n_resamples=300, seed=i), n_permutations=499), e.p, ALPHA)[0] == "holds" for i, d in enumerate(null)]
    assert np.mean(holds) <= SLACK
    gain = rng.choice([-1.0, 0.0, 0.0, 1.0, 1.0, 1.0], size=(SEEDS // 4, 60))
    assert np.mean([judge(e := paired_effect(d, **dict(RUN, n_resamples=300, seed=i), n_permutations=499), e.p, ALPHA)[0] == "holds"
                    for i, d in enumerate(gain)]) >= 0.9


def test_conclude_corrects_across_findings_and_keeps_the_family_wise_rate():
    rng = np.random.default_rng(11)
    subjects, draws = _null_world(rng, SEEDS * 3, draws=59, examples=20)
    any_holds, each_holds = [], []
    for seed in range(SEEDS):
        found = [Finding.of(f"f{k}", "claim", against_draws(subjects[3 * seed + k], draws[3 * seed + k],
                                                            **dict(RUN, n_resamples=200, seed=seed)), "units") for k in range(3)]
        any_holds.append(any(f.verdict == "holds" for f in conclude(found, ALPHA, "run")))
        each_holds.append([f.verdict == "holds" for f in conclude(found, ALPHA, "finding")])
    assert np.mean(any_holds) <= SLACK  # run: family-wise over the findings
    assert (np.mean(each_holds, axis=0) <= SLACK).all()  # finding: each finding's own rate stays within alpha
    strong = Finding.of("a", "claim", _estimate(p=0.001), "units")
    weak = Finding.of("b", "claim", _estimate(p=0.04), "units")
    a, b = conclude([strong, weak], ALPHA, "run")
    assert (a.verdict, a.p_value, b.p_value) == ("holds", pytest.approx(0.002), pytest.approx(0.04))
    assert "Holm across the run's findings" in a.correction
    a, b = conclude([strong, weak], ALPHA, "finding")
    assert (a.p_value, b.p_value) == (pytest.approx(0.001), pytest.approx(0.04)) and "separate claim" in b.correction
    with pytest.raises(InputError, match="correction 'bonferroni' must be one of finding, run"):
        conclude([strong], ALPHA, "bonferroni")
    assert Finding.from_dict(a.to_dict()).to_dict() == a.to_dict()
    with pytest.raises(InputError, match="alpha 2 must lie in"):
        conclude([strong], 2, REPORT.correction)


MINIMUM = 0.05  # a claim's declared minimum effect in the simulated worlds below


def _networks_world(rng, effect=0.0, networks=10, draws=4, examples=60, shift=0.0):
    """``networks`` networks, each with its own ``draws`` matched draws, on the same examples: every mask shifts all
    examples by its own random amount (masks differ, as draws on a real model do), examples add noise. The networks'
    shifts are drawn like their draws' plus ``effect``; ``shift``: what every network and its draws share beyond a
    coarser null's (the layers they sit in, say): added to both."""
    masks = rng.normal(0.0, 0.05, size=(networks, draws + 1, 1)) + shift
    masks[:, 0] += effect
    values = masks + rng.normal(0.0, 0.2, size=(networks, draws + 1, examples))
    return values[:, 0], list(values[:, 1:])


def _network_verdicts(worlds, **kwargs):
    verdicts = []
    for i, (subjects, draws) in enumerate(worlds):
        e = networks_against_draws(subjects, draws, **dict(RUN, n_resamples=500, seed=i, minimum=MINIMUM),
                                   n_permutations=999, **kwargs)
        verdicts.append(judge(e, e.p, ALPHA, MINIMUM, p_fail_corrected=e.p_fail)[0])
    return np.array(verdicts)


def test_networks_against_their_draws_control_false_holds_and_false_fails():
    """Networks as the unit, few draws each: no effect gives 'holds' at most alpha of the time; an effect exactly at
    the declared minimum gives 'fails' at most alpha of the time (the equivalence side is controlled too); an
    effect far beyond it holds, and no effect at all is shown below the minimum in most worlds."""
    rng = np.random.default_rng(5)
    null = _network_verdicts(_networks_world(rng) for _ in range(SEEDS))
    assert np.mean(null == "holds") <= SLACK and np.mean(null == "fails") >= 0.5
    boundary = _network_verdicts(_networks_world(rng, effect=MINIMUM) for _ in range(SEEDS))
    assert np.mean(boundary == "fails") <= SLACK
    planted = _network_verdicts(_networks_world(rng, effect=0.2) for _ in range(SEEDS // 4))
    assert np.mean(planted == "holds") >= 0.9


def test_networks_against_draws_equal_the_exact_permutation_p_on_a_small_case():
    subjects = np.array([[3.0, 3.0], [1.0, 1.0]])
    draws = [np.array([[1.0, 1.0], [2.0, 2.0]]), np.array([[0.0, 0.0], [2.0, 2.0]])]
    # mask means 3 | 1, 2 and 1 | 0, 2: calling mask j the network gives its mean - the others' mean, so network 1's
    # statistic takes 1.5, -1.5, 0 (the network first, then each draw) and network 2's 0, -1.5, 1.5
    values = np.add.outer([1.5, -1.5, 0.0], [0.0, -1.5, 1.5]).ravel() / 2
    exact = np.mean(values >= 0.75 - 1e-12)
    e = networks_against_draws(subjects, draws, **dict(RUN, n_resamples=200))
    assert e.effect == pytest.approx(0.75) and e.p == pytest.approx(exact)   # 9 relabellings: enumerated
    assert (e.n_units, e.n_draws, e.n_examples, e.unit, e.needed) == (2, 2, 2, "networks", 3)
    verdict, reason = judge(e, e.p, ALPHA)
    assert verdict == "unclear" and reason == "2 networks cannot reach p ≤ 0.05: needs ≥ 3"


def test_the_strictest_null_keeps_false_holds_within_alpha_where_a_coarser_null_does_not():
    """Networks and count-matched draws differ systematically (the networks sit in the layers that do damage; the
    layer-matched draws share those layers): against count-matched draws alone the claim would hold most of the
    time; the intersection-union over the kinds of draw keeps false 'holds' within alpha."""
    rng = np.random.default_rng(9)
    coarse, strict = [], []
    for i in range(SEEDS):
        subjects, layer_matched = _networks_world(rng, shift=0.3)
        count_matched = list(rng.normal(0.0, 0.05, size=(10, 4, 1)) + rng.normal(0.0, 0.2, size=(10, 4, 60)))
        options = dict(RUN, n_resamples=300, seed=i, minimum=MINIMUM)
        kinds = [networks_against_draws(subjects, d, n_permutations=999, **options) for d in (count_matched, layer_matched)]
        coarse.append(judge(kinds[0], kinds[0].p, ALPHA)[0] == "holds")
        both = strictest(kinds)
        strict.append(judge(both, both.p, ALPHA, MINIMUM, p_fail_corrected=both.p_fail)[0] == "holds")
    assert np.mean(coarse) >= 0.9 and np.mean(strict) <= SLACK


def test_a_claim_with_a_minimum_effect_fails_only_by_its_equivalence_test():
    small = Estimate(0.01, (-0.005, 0.03), 0.2, "test", n_examples=60, needed=5, unit="examples", p_fail=0.01, minimum=0.02)
    assert judge(small, small.p, ALPHA, 0.02, p_fail_corrected=0.01)[0] == "fails"
    assert judge(small, small.p, ALPHA, 0.02, p_fail_corrected=0.2) == (
        "unclear", "corrected p 0.2 > 0.05; nor is it shown below the minimum effect 0.02")
    any_effect = Estimate(0.01, (-0.005, 0.03), 0.2, "test", n_examples=60, needed=5, unit="examples")
    assert judge(any_effect, 0.2, ALPHA)[0] == "unclear"          # minimum 0: fails needs the interval below 0
    found = conclude([Finding.of("a", "claim", small, "units"), Finding.of("b", "claim", small, "units")], ALPHA, "run")
    assert [f.p_fail for f in found] == [pytest.approx(0.02)] * 2 and found[0].minimum == 0.02
    assert found[0].verdict == "fails" and Finding.from_dict(found[0].to_dict()).to_dict() == found[0].to_dict()
