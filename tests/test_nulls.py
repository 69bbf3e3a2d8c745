"""Layer-matched null models of the match stage: exact where they can be, equal to the plain definition."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from scipy import stats

from fnet_dist.core.errors import InputError
from fnet_dist.match.iou import reference_iou
from fnet_dist.match.halves import SplitTemplates, halves_tables, reproducibility
from fnet_dist.match.nulls import (
    CHANCE_LEVEL,
    counterpart_null,
    counterpart_table,
    frequency_strata,
    layer_permutations,
    neuron_frequency,
    overlap_null,
    uniform_strata,
    recurrence_summary,
    recurrence_table,
)

SHAPE = (3, 40)


def _network(rng, per_layer):
    values = np.zeros(SHAPE, dtype=bool)
    for layer, count in enumerate(per_layer):
        values[layer, rng.choice(SHAPE[1], count, replace=False)] = True
    return values


def test_layer_permutations_are_seeded_permutations_within_strata():
    chunks = list(layer_permutations(SHAPE, 5, seed=3, chunk=2))
    assert [len(c) for c in chunks] == [2, 2, 1]
    whole = np.concatenate(chunks)
    assert (np.sort(whole, axis=2) == np.arange(SHAPE[1])).all()
    assert (np.concatenate(list(layer_permutations(SHAPE, 5, seed=3, chunk=5))) == whole).all()
    strata = np.random.default_rng(0).integers(-1, 4, SHAPE)
    moved = np.concatenate(list(layer_permutations(SHAPE, 200, seed=3, strata=strata)))
    assert (np.sort(moved, axis=2) == np.arange(SHAPE[1])).all()                       # still permutations
    layer = np.arange(SHAPE[0])[None, :, None]
    assert (strata[layer, moved] == strata[None]).all()                                # every neuron stays in its stratum
    for stratum in range(-1, 4):                                                        # and goes anywhere in it
        members = strata[0] == stratum
        assert set(moved[:, 0, np.flatnonzero(members)[0]].tolist()) == set(np.flatnonzero(members).tolist())
    with pytest.raises(InputError, match="n_draws 0 must be ≥ 1"):
        next(layer_permutations(SHAPE, 0, seed=0))
    with pytest.raises(InputError, match="strata of shape"):
        next(layer_permutations(SHAPE, 2, seed=0, strata=np.zeros((2, 2))))


def test_frequency_strata_are_log2_classes_with_massive_apart():
    counts = np.array([[0, 1, 2, 3, 4, 100]])
    assert frequency_strata(counts).tolist() == [[0, 1, 1, 2, 2, 6]]
    massive = np.array([[False, False, False, False, False, True]])
    assert frequency_strata(counts, massive).tolist() == [[0, 1, 1, 2, 2, -1]]
    assert uniform_strata((1, 6), massive).tolist() == [[0, 0, 0, 0, 0, -1]]


def test_counterpart_null_equals_the_definition_on_the_same_draws():
    rng = np.random.default_rng(0)
    templates = np.stack([_network(rng, [4, 0, 2]), _network(rng, [0, 6, 1])])
    maps = np.stack([_network(rng, [3, 2, 2]) for _ in range(30)] + [templates[0], templates[1] | _network(rng, [1, 0, 0])])
    flat = maps.reshape(len(maps), -1)                       # 16 samples of 2 components
    strata = frequency_strata(neuron_frequency(sp.csr_array(flat), SHAPE))
    for kind_strata in (None, strata):
        null = counterpart_null(templates, sp.csr_array(flat), (0.2, 0.5), n_draws=7, seed=5, n_components=2,
                                strata=kind_strata)
        permutations = np.concatenate(list(layer_permutations(SHAPE, 7, seed=5, strata=kind_strata)))
        for t, template in enumerate(templates):
            layers, neurons = np.nonzero(template)
            for r in range(7):
                drawn = np.zeros(SHAPE, dtype=bool)
                drawn[layers, permutations[r, layers, neurons]] = True
                assert drawn.sum(axis=1).tolist() == template.sum(axis=1).tolist()       # size and layers kept
                iou = reference_iou(drawn.reshape(1, -1), flat)[0]
                for c, cut in enumerate((0.2, 0.5)):
                    assert null.counterparts[c, t, r] == (iou > cut).sum()
                    assert null.samples[c, t, r] == (iou > cut).reshape(16, 2).any(axis=1).sum()
    nulls = {"toy": {kind: counterpart_null(templates, sp.csr_array(flat), 0.2, 9, 5, n_components=2, strata=w)
                     for kind, w in (("uniform", None), ("frequency", strata))}}
    consistency = pd.DataFrame({"corpus": "toy", "template": [1, 2], "counterparts": [30, 0],
                                "samples_with_counterpart": [16, 0]})
    table = counterpart_table(consistency, nulls, seed=5)
    assert table["permutations"].tolist() == [9, 9] and table["p_value"].tolist()[1] == 1.0
    for kind in ("uniform", "frequency"):
        samples = nulls["toy"][kind].samples[0][0]
        assert table[f"{kind}_samples_p"].iloc[0] == pytest.approx((1 + (samples >= 16).sum()) / 10)
    assert table["p_value"].iloc[0] == max(table["uniform_samples_p"].iloc[0], table["frequency_samples_p"].iloc[0])


def _hub_weights(shape, hubs: int = 6, weight: float = 40.0) -> np.ndarray:
    """Within each layer, ``hubs`` neurons ``weight`` times as likely as the others (high-variance, sink neurons)."""
    weights = np.ones(shape)
    weights[:, :hubs] = weight
    return weights


def _drawn(shape, per_layer: int, count: int, seed: int, weights) -> np.ndarray:
    """``count`` networks of ``per_layer`` neurons per layer, each layer's drawn without replacement in proportion to
    ``weights``: bool (count, *shape)."""
    rng = np.random.default_rng(seed)
    nets = np.zeros((count, *shape), dtype=bool)
    for net in nets:
        for layer in range(shape[0]):
            net[layer, rng.choice(shape[1], per_layer, replace=False, p=weights[layer] / weights[layer].sum())] = True
    return nets


def test_frequency_null_is_calibrated_where_the_uniform_one_is_not():
    """Templates and maps drawn independently, both favouring the same hub neurons: no template is a network of the
    maps, yet the uniform null rejects most of them; the frequency-preserving null rejects about alpha of them. A
    template planted in half the samples' maps is still found by the frequency-preserving null."""
    shape, n_samples, n_components = (2, 60), 20, 3
    weights = _hub_weights(shape)
    rejected = {"uniform": 0, "frequency": 0}
    datasets = 40
    for seed in range(datasets):
        maps = _drawn(shape, 5, n_samples * n_components, 1000 + seed, weights).reshape(n_samples * n_components, -1)
        template = _drawn(shape, 5, 1, 5000 + seed, weights)
        observed = (reference_iou(template.reshape(1, -1), maps)[0] > 0.2).reshape(n_samples, n_components).any(axis=1).sum()
        csr = sp.csr_array(maps)
        for kind, w in (("uniform", None), ("frequency", frequency_strata(neuron_frequency(csr, shape)))):
            null = counterpart_null(template, csr, 0.2, 99, seed, n_components=n_components, strata=w)
            rejected[kind] += stats_p(observed, null.samples[0, 0]) <= 0.05
    assert rejected["uniform"] >= datasets // 2, rejected
    assert rejected["frequency"] <= 6, rejected            # ≤ 0.15: alpha 0.05 with binomial room over 40 datasets
    # found where it should be: 5 ordinary neurons per layer fire together in 5 of 20 samples, every other ordinary
    # neuron about as often but scattered over the other maps (round robin), two hubs in every map
    n_maps, planted_neurons = n_samples * n_components, np.arange(30, 35)
    others = np.setdiff1d(np.arange(6, 60), planted_neurons)
    maps = np.zeros((n_maps, *shape), dtype=bool)
    maps[:, :, :2] = True
    planted_maps = np.arange(0, 5 * n_components, n_components)                       # one map in each of 5 samples
    maps[planted_maps[:, None, None], np.arange(2)[None, :, None], planted_neurons[None, None, :]] = True
    rest = np.setdiff1d(np.arange(n_maps), planted_maps)
    for i, m in enumerate(rest):
        maps[m, :, others[(5 * i + np.arange(5)) % len(others)]] = True
    planted = np.zeros(shape, dtype=bool)
    planted[:, planted_neurons] = True
    maps = maps.reshape(n_maps, -1)
    csr = sp.csr_array(maps)
    observed = (reference_iou(planted.reshape(1, -1), maps)[0] > 0.2).reshape(n_samples, n_components).any(axis=1).sum()
    assert observed == 5
    null = counterpart_null(planted[None], csr, 0.2, 199, 0, n_components=n_components,
                            strata=frequency_strata(neuron_frequency(csr, shape)))
    assert stats_p(observed, null.samples[0, 0]) <= 0.01


def stats_p(observed, draws) -> float:
    from fnet_dist.core.stats import monte_carlo_p

    return monte_carlo_p(observed, draws)


def test_recurrence_summary_counts_every_pair_and_is_calibrated_by_the_frequency_null():
    shape = (2, 60)
    weights = _hub_weights(shape)
    massive = np.zeros(shape, dtype=bool)
    rejected = {"uniform": 0, "frequency": 0}
    datasets = 30
    for seed in range(datasets):   # two corpora's templates drawn independently, favouring the same hubs
        templates = {c: _drawn(shape, 5, 4, 300 * seed + i, weights) for i, c in enumerate(("news", "code"))}
        frequency = {c: np.where(weights > 1, 50, 3) for c in templates}   # maps hold the hubs far more often
        first = {c: np.zeros(4, dtype=bool) for c in templates}
        _, null = recurrence_summary(templates, massive, first, frequency, 99, seed, CHANCE_LEVEL)
        for row in null.itertuples():
            rejected[row.null] += row.p_value <= 0.05
    assert rejected["uniform"] >= datasets // 2, rejected
    assert rejected["frequency"] <= 5, rejected
    rng = np.random.default_rng(3)
    shared = _network(rng, [5, 5, 0])
    templates = {"news": np.stack([shared, _network(rng, [4, 0, 4])]), "code": np.stack([shared, _network(rng, [0, 4, 4])]),
                 "math": np.stack([_network(rng, [3, 3, 3]), _network(rng, [2, 2, 2])])}
    first = {"news": np.array([False, True]), "code": np.array([False, False]), "math": np.array([False, False])}
    frequency = {c: np.zeros(SHAPE, dtype=int) for c in templates}
    rows, null = recurrence_summary(templates, np.zeros(SHAPE, dtype=bool), first, frequency, 99, 0, CHANCE_LEVEL)
    assert len(rows) == 5 * 2                                # 5 templates that count (news/2 is first-token), 2 other corpora
    best = rows.set_index(["corpus", "template", "other_corpus"])
    assert best.loc[("news", 1, "code"), "best_iou_without_massive"] == 1.0 and best.loc[("news", 1, "code"), "best_template"] == 1
    assert null["observed"].iloc[0] == pytest.approx(rows["best_iou_without_massive"].mean())
    assert set(null["null"]) == {"uniform", "frequency"} and (null["p_value"] < 0.05).all()


def test_split_halves_reproduce_planted_templates_and_not_random_ones():
    rng = np.random.default_rng(5)
    planted = np.stack([_network(rng, [4, 4, 0]), _network(rng, [0, 4, 4])])
    noise = lambda: np.stack([_network(rng, [4, 4, 0]), _network(rng, [0, 4, 4])])  # noqa: E731
    same = np.stack([np.stack([planted, planted]) for _ in range(3)])                 # (split, half, template, ...)
    other = np.stack([np.stack([noise(), noise()]) for _ in range(3)])
    ok = np.ones((3, 2, 2), dtype=bool)
    frequency = {"news": np.zeros(SHAPE, dtype=int), "code": np.zeros(SHAPE, dtype=int)}
    rows, null = halves_tables([SplitTemplates("news", same, ok), SplitTemplates("code", other, ok)], frequency,
                               np.zeros(SHAPE, dtype=bool), 99, 0, CHANCE_LEVEL)
    reproduced = rows[rows["kind"] == "reproducibility"].groupby("corpus")["value"].mean()
    assert reproduced["news"] == 1.0 and reproduced["code"] < 0.5
    assert len(rows[rows["kind"] == "recurrence"]) == 6      # every split and half
    assert null["observed"].iloc[0] == pytest.approx(reproduced.mean())
    assert reproducibility(planted.reshape(2, -1), planted.reshape(2, -1)) == 1.0
    assert np.isnan(reproducibility(planted.reshape(2, -1)[:0], planted.reshape(2, -1)))


def test_overlap_null_is_exact():
    rng = np.random.default_rng(1)
    a, b = _network(rng, [10, 0, 5]), _network(rng, [8, 3, 6])
    one_layer = overlap_null(a[:1], b[:1], CHANCE_LEVEL)
    assert one_layer.p == pytest.approx(stats.hypergeom(40, 10, 8).sf(one_layer.overlap - 1))
    assert one_layer.mean == pytest.approx(10 * 8 / 40)
    null = overlap_null(a, b, CHANCE_LEVEL)
    draws = np.concatenate(list(layer_permutations(SHAPE, 20000, seed=2, chunk=5000)))
    layers, neurons = np.nonzero(b)
    moved = np.zeros((len(draws),) + SHAPE, dtype=bool)
    moved[np.arange(len(draws))[:, None], layers, draws[:, layers, neurons]] = True   # a permutation moves b
    simulated = (moved & a).sum(axis=(1, 2))
    assert null.mean == pytest.approx(simulated.mean(), abs=0.05)
    assert null.p == pytest.approx((simulated >= null.overlap).mean(), abs=0.01)
    assert overlap_null(a, a, CHANCE_LEVEL).p < 1e-6 and overlap_null(a, a, CHANCE_LEVEL).overlap == 15


def test_recurrence_flags_massive_and_first_token_templates():
    rng = np.random.default_rng(4)
    shared = _network(rng, [6, 6, 0])
    massive = np.zeros(SHAPE, dtype=bool)
    massive[2, :3] = True
    only_massive = massive.copy()
    templates = {"news": np.stack([shared, only_massive | _network(rng, [0, 0, 1])]),
                 "code": np.stack([shared | _network(rng, [0, 0, 2]), only_massive])}
    table = recurrence_table(["news", "code"], templates, massive,
                             {"news": np.array([False, True]), "code": np.array([False, False])}, level=CHANCE_LEVEL)
    pair = table.set_index(["template_1", "template_2"])
    assert pair.loc[(1, 1), "p_without_massive"] < 1e-6 and pair.loc[(1, 1), "eligible"]
    assert pair.loc[(2, 2), "massive_1"] and pair.loc[(2, 2), "massive_2"]
    assert pair.loc[(2, 2), "iou"] > 0.5 and pair.loc[(2, 2), "p_without_massive"] == 1.0   # massive channels only
    assert not pair.loc[(2, 2), "eligible"]                                                  # first-token template
