"""Layer-matched null models of the match stage: exact where they can be, equal to the plain definition."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from scipy import stats

from fnet_dist.core.errors import InputError
from fnet_dist.match.iou import reference_iou
from fnet_dist.match.nulls import CHANCE_LEVEL, counterpart_null, counterpart_table, layer_permutations, overlap_null, recurrence_table

SHAPE = (3, 40)


def _network(rng, per_layer):
    values = np.zeros(SHAPE, dtype=bool)
    for layer, count in enumerate(per_layer):
        values[layer, rng.choice(SHAPE[1], count, replace=False)] = True
    return values


def test_layer_permutations_are_seeded_permutations_of_each_layer():
    chunks = list(layer_permutations(SHAPE, 5, seed=3, chunk=2))
    assert [len(c) for c in chunks] == [2, 2, 1]
    whole = np.concatenate(chunks)
    assert (np.sort(whole, axis=2) == np.arange(SHAPE[1])).all()
    assert (np.concatenate(list(layer_permutations(SHAPE, 5, seed=3, chunk=5))) == whole).all()
    with pytest.raises(InputError, match="n_draws 0 must be ≥ 1"):
        next(layer_permutations(SHAPE, 0, seed=0))


def test_counterpart_null_equals_the_definition_on_the_same_draws():
    rng = np.random.default_rng(0)
    templates = np.stack([_network(rng, [4, 0, 2]), _network(rng, [0, 6, 1])])
    maps = np.stack([_network(rng, [3, 2, 2]) for _ in range(30)] + [templates[0], templates[1] | _network(rng, [1, 0, 0])])
    flat = maps.reshape(len(maps), -1)
    null = counterpart_null(templates, sp.csr_array(flat), 0.2, n_draws=7, seed=5)
    permutations = np.concatenate(list(layer_permutations(SHAPE, 7, seed=5)))
    for t, template in enumerate(templates):
        layers, neurons = np.nonzero(template)
        for r in range(7):
            moved = np.zeros(SHAPE, dtype=bool)
            moved[layers, permutations[r, layers, neurons]] = True
            assert moved.sum(axis=1).tolist() == template.sum(axis=1).tolist()       # size and layers kept
            assert null[t, r] == (reference_iou(moved.reshape(1, -1), flat) > 0.2).sum()
    consistency = pd.DataFrame({"corpus": "toy", "template": [1, 2], "counterparts": [30, 0]})
    table = counterpart_table(consistency, {"toy": null}, seed=5)
    assert table["p_value"].tolist()[1] == 1.0 and table["permutations"].tolist() == [7, 7]
    assert table["p_value"].iloc[0] == pytest.approx((1 + (null[0] >= 30).sum()) / 8)


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
    moved[np.arange(len(draws))[:, None], layers, draws[:, layers, neurons]] = True
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
