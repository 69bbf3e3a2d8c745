"""Binary networks from z-maps and their statistics (sizes, shares, per-layer counts, empty networks)."""
from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

from fnet_dist.errors import InputError
from fnet_dist.networks import (binarize, describe_networks, empty_networks, flatten_networks, layer_counts,
                                network_shares, network_sizes)


@pytest.fixture
def planted():
    """3 networks over 2 layers × 5 neurons with known members; noise stays below the threshold."""
    rng = np.random.default_rng(0)
    maps = rng.uniform(-3, 3, (3, 2, 5)).astype(np.float32)
    maps[0, 0, [1, 3]] = 4.0
    maps[0, 1, 4] = -4.0
    maps[1, 1, :] = 3.61
    maps[2, 0, 0] = np.nan
    return maps


def test_binarize_two_and_one_sided(planted):
    two = binarize(planted)
    assert np.argwhere(two[0]).tolist() == [[0, 1], [0, 3], [1, 4]]
    one = binarize(planted, two_sided=False)
    assert np.argwhere(one[0]).tolist() == [[0, 1], [0, 3]]
    assert not two[2].any()  # NaN never selected
    assert not binarize(planted, threshold=3.7)[1].any()


def test_statistics(planted):
    networks = binarize(planted)
    assert network_sizes(networks).tolist() == [3, 5, 0]
    assert layer_counts(networks).tolist() == [[2, 1], [0, 5], [0, 0]]
    np.testing.assert_allclose(network_shares(networks), [0.3, 0.5, 0.0])
    assert empty_networks(networks).tolist() == [False, False, True]
    assert flatten_networks(networks).shape == (3, 10)
    assert flatten_networks(networks)[0].nonzero()[0].tolist() == [1, 3, 9]


def test_dask_gives_the_same(planted):
    lazy = binarize(da.from_array(planted, chunks=(1, 2, 5)))
    assert isinstance(network_sizes(lazy), da.Array)
    assert network_sizes(lazy).compute().tolist() == [3, 5, 0]
    assert layer_counts(lazy).compute().tolist() == [[2, 1], [0, 5], [0, 0]]


def test_describe_networks(planted):
    frame = describe_networks(binarize(planted), {"dataset": "news"})
    assert list(frame.columns) == ["dataset", "template", "size", "share", "empty", "layer_0", "layer_1"]
    assert frame["template"].tolist() == [1, 2, 3]
    assert frame["empty"].tolist() == [False, False, True]
    assert frame[["layer_0", "layer_1"]].to_numpy().tolist() == [[2, 1], [0, 5], [0, 0]]


@pytest.mark.parametrize("threshold", [0, -1, float("nan"), float("inf")])
def test_bad_threshold(planted, threshold):
    with pytest.raises(InputError, match="must be a positive finite z-value"):
        binarize(planted, threshold=threshold)


def test_bad_shapes():
    with pytest.raises(InputError, match=r"expected \(\.\.\., n_layers, d_model\)"):
        network_sizes(np.zeros(4, dtype=bool))
    with pytest.raises(InputError, match=r"expected \(n_networks, n_layers, d_model\)"):
        describe_networks(np.zeros((2, 3), dtype=bool))
