"""Massive-activation channels: a planted channel is found, ordinary ones are not, and the rule is validated."""
from __future__ import annotations

import numpy as np
import pytest

from dataclasses import replace

from fnet_dist.core.config import MatchSection
from fnet_dist.core.errors import InputError
from fnet_dist.match.anatomy import MassiveRule, massive_channels, massive_mask, scan_channels
from fnet_dist.model.testing import activation_dataset


MATCH = MatchSection()  # the run's defaults
RULE = MassiveRule.of(MATCH, seed=0)
NETWORK_RULE = dict(threshold=MATCH.threshold, two_sided=MATCH.two_sided)


def _planted(seed=0):
    rng = np.random.default_rng(seed)
    n_samples, max_tokens, n_layers, d_model = 6, 20, 3, 40
    act = rng.normal(0, 1, (n_samples, max_tokens, n_layers, d_model)).astype(np.float32)
    n_tokens = np.array([20, 18, 15, 20, 12, 19])
    act[:, 0, 1, 7] = 3000.0          # layer 1, channel 7: huge at the first token of every sample
    act[2, 5, 2, 30] = 900.0          # layer 2, channel 30: one huge value mid-text in one sample
    act[:, :, 0, 3] *= 20.0           # large but ordinary spread: not massive under the default rule
    for s, n in enumerate(n_tokens):
        act[s, n:] = 0.0
    return activation_dataset(act.astype(np.float16), n_tokens), (n_layers, d_model)


def test_planted_massive_channels_are_found_with_where_they_peak():
    ds, shape = _planted()
    table = massive_channels(ds, RULE)
    assert list(zip(table.layer, table.neuron)) == [(1, 7), (2, 30)]
    first = table.iloc[0]
    assert first.peak == pytest.approx(3000.0) and first.first_token_share == 1.0
    assert first.carrier_tokens == "0:6"          # synthetic token id of position 0, in all 6 samples
    assert table.iloc[1].carrier_tokens == "5:1"  # only position 5 of sample 2 carries channel 30
    mask = massive_mask(table, shape)
    assert mask.sum() == 2 and mask[1, 7] and mask[2, 30]


def test_channel_statistics_equal_scipy_over_the_real_tokens():
    """The activation-matched draws' statistics: mean |activation| and kurtosis over every real token (padding never)."""
    from scipy import stats

    ds, shape = _planted()
    scan = scan_channels(ds, RULE)
    values = np.concatenate([ds["activation"][s, :n].values.astype(np.float64)
                             for s, n in enumerate(ds["n_tokens"].values)])          # (real tokens, layers, channels)
    assert scan.mean_abs.shape == shape and np.allclose(scan.mean_abs, np.abs(values).mean(axis=0))
    assert np.allclose(scan.kurtosis, stats.kurtosis(values, axis=0, fisher=False), rtol=1e-6)
    assert scan.kurtosis[1, 7] > 10 > scan.kurtosis[0, 3]          # the first-token channel is heavy-tailed; a wide one not


def test_the_rule_is_configurable():
    ds, _ = _planted()
    assert len(massive_channels(ds, MassiveRule.of(MatchSection(massive_min_value=1000), seed=0))) == 1
    strict = massive_channels(ds, MassiveRule.of(MatchSection(massive_ratio=5, massive_min_value=20), seed=0))
    assert (0, 3) in set(zip(strict.layer, strict.neuron))


@pytest.mark.parametrize("rule, message", [
    (replace(RULE, ratio=0), r"ratio 0 must be a positive number \(match.massive_ratio\)"),
    (replace(RULE, min_value=float("nan")), "min_value nan must be a positive number"),
    (replace(RULE, median_tokens=0), "median_tokens 0"),
])
def test_bad_rules_are_refused(rule, message):
    ds, _ = _planted()
    with pytest.raises(InputError, match=message):
        massive_channels(ds, rule)


def test_mask_outside_shape_is_refused():
    ds, _ = _planted()
    with pytest.raises(InputError, match="outside the mask shape"):
        massive_mask(massive_channels(ds, RULE), (2, 40))


def _maps_dataset(maps):
    import xarray as xr

    return xr.Dataset({"group_map": (("component", "layer", "neuron"), maps.astype(np.float32))})


def test_network_anatomy_counts_neurons_on_massive_channels_and_layer_spread():
    from fnet_dist.match.anatomy import network_anatomy

    maps = np.zeros((2, 3, 40), dtype=np.float32)
    maps[0, 1, [7, 8, 9, 10]] = 10.0      # 4 neurons in layer 1, one on the massive channel (1, 7)
    maps[1, 0, [1, 2]] = -8.0             # 2 neurons (negative z counts two-sided), layer 0
    maps[1, 2, 5] = 9.0                   # and 1 in layer 2
    massive = np.zeros((3, 40), dtype=bool)
    massive[1, 7] = True
    table = network_anatomy(_maps_dataset(maps), massive, **NETWORK_RULE)
    assert table["template"].tolist() == [1, 2]      # numbered as in consistency.csv (was 0, 1)
    assert table["size"].tolist() == [4, 3]
    assert table["on_massive"].tolist() == [1, 0]
    assert table["massive_share"].tolist() == [0.25, 0.0]
    assert table["layers_spanned"].tolist() == [1, 2]
    assert table["top_layer"].tolist() == [1, 0]


def test_a_template_driven_by_the_first_token_has_a_concentrated_source():
    from fnet_dist.core.signals import peak_token_share, token_sources
    from fnet_dist.match.anatomy import network_anatomy

    rng = np.random.default_rng(1)
    n_tokens, n_layers, d_model = 30, 2, 50
    maps = np.zeros((2, n_layers * d_model))
    maps[0, :10] = 5.0
    maps[1, 60:70] = 5.0
    sources = rng.normal(0, 1, (2, n_tokens))
    sources[0] = 0.05 * rng.normal(0, 1, n_tokens)
    sources[0, 0] = 40.0                            # template 0 fires on token 0 only
    sources[1, 0] = 0.0                             # template 1 is quiet there
    x = sources.T @ maps + 0.1 * rng.normal(0, 1, (n_tokens, n_layers * d_model))
    recovered = token_sources(x, maps, "spatial", dtype=np.float64).T
    assert abs(np.corrcoef(recovered[1], sources[1])[0, 1]) > 0.95
    shares = peak_token_share(recovered)
    assert shares[0] > 0.9 and shares[1] < 0.3
    act = x.reshape(1, n_tokens, n_layers, d_model).repeat(2, axis=0)
    store = activation_dataset(act.astype(np.float32), [n_tokens, n_tokens], split=["group", "individual"])
    table = network_anatomy(_maps_dataset(maps.reshape(2, n_layers, d_model)), np.zeros((n_layers, d_model), bool),
                            activations=store, **NETWORK_RULE)
    assert table["first_token_peak_share"].tolist() == [1.0, 0.0]
    assert table["peak_token_share"].iloc[0] > 0.9


def test_network_anatomy_refuses_another_models_mask():
    from fnet_dist.match.anatomy import network_anatomy

    with pytest.raises(InputError, match=r"networks of shape \(3, 40\) and a massive-channel mask of shape \(2, 40\)"):
        network_anatomy(_maps_dataset(np.zeros((1, 3, 40))), np.zeros((2, 40), bool), **NETWORK_RULE)
