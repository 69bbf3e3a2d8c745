"""Random controls as distributions, empirical p-values and effects separated from massive channels."""
from __future__ import annotations

import numpy as np
import pytest

from fnet_dist.controls import (
    empirical_p_value,
    interval,
    metric_direction,
    random_controls,
    separated_masks,
)
from fnet_dist.errors import InputError
from fnet_dist.masks import NeuronMask

SHAPE = (4, 50)


def _network():
    values = np.zeros(SHAPE, dtype=bool)
    values[1, [3, 4, 5]] = True
    values[2, [10, 11]] = True
    return NeuronMask(values, name="news/3")


def test_fraction_controls_are_distinct_seeded_draws_of_the_right_size():
    draws = random_controls("fraction", SHAPE, n_draws=5, seed=1, fraction=0.15)
    assert [m.count for m in draws] == [30] * 5
    assert len({m.values.tobytes() for m in draws}) == 5
    again = random_controls("fraction", SHAPE, n_draws=5, seed=1, fraction=0.15)
    assert all((a.values == b.values).all() for a, b in zip(draws, again))
    assert draws[0].meta["control"] == "fraction" and "draw_seed" in draws[0].meta


def test_matched_controls_match_count_per_layer_and_avoid_massive_channels():
    network = _network()
    massive = np.zeros(SHAPE, dtype=bool)
    massive[:, 7] = True
    per_layer = random_controls("matched_per_layer", SHAPE, n_draws=4, seed=0, reference=network)
    assert all((m.values.sum(axis=1) == [0, 3, 2, 0]).all() for m in per_layer)
    avoid = random_controls("matched_avoid_massive", SHAPE, n_draws=20, seed=0, reference=network, massive=massive)
    assert all(m.count == 5 and not (m.values & massive).any() for m in avoid)
    assert all(m.count == 5 for m in random_controls("matched_count", SHAPE, n_draws=3, reference=network))


@pytest.mark.parametrize("kwargs, message", [
    (dict(kind="nope"), "unknown random control 'nope'"),
    (dict(kind="fraction", n_draws=0), "n_draws 0 must be ≥ 1"),
    (dict(kind="matched_count"), "pass reference="),
    (dict(kind="matched_avoid_massive", reference=_network()), "needs the massive-channel mask"),
])
def test_bad_control_requests(kwargs, message):
    with pytest.raises(InputError, match=message):
        random_controls(shape=SHAPE, **kwargs)


def test_interval_and_p_value_on_known_draws():
    draws = np.arange(1, 11, dtype=float)       # accuracies 1..10 of random masks
    mean, low, high = interval(draws)
    assert mean == 5.5 and low == pytest.approx(1.225) and high == pytest.approx(9.775)
    assert empirical_p_value(0.5, draws, worse="lower") == pytest.approx(1 / 11)   # worse than every draw
    assert empirical_p_value(5.0, draws, worse="lower") == pytest.approx(6 / 11)
    assert empirical_p_value(100.0, draws, worse="higher") == pytest.approx(1 / 11)
    with pytest.raises(InputError, match="worse='up'"):
        empirical_p_value(1.0, draws, worse="up")


def test_metric_direction():
    assert metric_direction("word_perplexity,none") == "lower"
    assert metric_direction("acc,none") == "higher" and metric_direction("mcc") == "higher"


def test_separated_masks_split_a_network_at_massive_channels():
    network = _network()
    massive = np.zeros(SHAPE, dtype=bool)
    massive[1, 4] = True
    whole, without, alone = separated_masks(network, massive)
    assert (whole.count, without.count, alone.count) == (5, 4, 1)
    assert alone.values[1, 4] and not without.values[1, 4]
    assert (without.values | alone.values == whole.values).all()
    with pytest.raises(InputError):
        separated_masks(network, np.zeros((3, 50), dtype=bool))
