"""Binary networks from z-maps and their statistics (sizes, shares, per-layer counts, empty networks)."""
from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import scipy.sparse as sp

from fnet_dist.core.errors import InputError
from fnet_dist.core.networks import (binarize, csr_networks, describe_networks, empty_networks, flatten_networks,
                                layer_counts, network_shares, network_sizes, sparse_networks)


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
    frame = describe_networks(binarize(planted), {"corpus": "news"})
    assert list(frame.columns) == ["corpus", "template", "size", "share", "empty", "layer_0", "layer_1"]
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


def random_maps(seed, shape=(4, 6, 3, 50)):
    """z-maps with NaN, ±inf and values exactly at ±threshold sprinkled in."""
    rng = np.random.default_rng(seed)
    maps = rng.normal(0, 1.5, shape).astype(np.float32)
    flat = maps.reshape(-1)
    for value in (np.nan, np.inf, -np.inf, 3.6, -3.6):
        flat[rng.choice(flat.size, 20, replace=False)] = value
    return maps


def assert_csr_equal(csr, dense):
    assert isinstance(csr, sp.csr_array) and csr.dtype == bool and csr.shape == dense.shape
    assert csr.has_canonical_format and csr.data.all()
    assert np.array_equal(csr.toarray(), dense)


@pytest.mark.parametrize("two_sided", [True, False])
@pytest.mark.parametrize("step_bytes", [1 << 20, 100, 1])  # all rows in one step, 2 rows, 1 row per step
def test_sparse_networks_equal_binarize(two_sided, step_bytes, monkeypatch):
    import fnet_dist.core.networks as networks

    monkeypatch.setattr(networks, "_STEP_BYTES", step_bytes)
    maps = random_maps(1)
    expected = flatten_networks(binarize(maps, 3.6, two_sided))
    assert expected.any() and not expected.all()
    csr = sparse_networks(maps, 3.6, two_sided)
    assert_csr_equal(csr, expected)
    assert np.isinf(maps).any() and np.isnan(maps).any()
    hits = maps.reshape(expected.shape)[expected]
    assert not np.isnan(hits).any() and (abs(hits) > 3.6).all()  # NaN and |z| = 3.6 never selected
    assert (hits > 0).all() if not two_sided else (hits < 0).any()


@pytest.mark.parametrize("two_sided", [True, False])
def test_sparse_networks_on_dask_are_csr_blocks(two_sided):
    maps = random_maps(2)
    lazy = sparse_networks(da.from_array(maps, chunks=(1, 6, 2, 50)), 3.0, two_sided)
    assert lazy.shape == (24, 150) and lazy.chunks == ((6, 6, 6, 6), (150,))
    assert isinstance(lazy._meta, sp.csr_array)
    blocks = [block.compute() for block in lazy.blocks]
    assert all(isinstance(block, sp.csr_array) for block in blocks)
    expected = flatten_networks(binarize(maps, 3.0, two_sided))
    assert_csr_equal(sp.vstack(blocks, format="csr"), expected)
    assert np.array_equal(lazy.compute().toarray(), expected)


def test_sparse_networks_of_planted_maps(planted):
    csr = sparse_networks(planted)
    assert csr.shape == (3, 10)
    assert csr[[0]].indices.tolist() == [1, 3, 9] and csr[[1]].indices.tolist() == [5, 6, 7, 8, 9]
    assert np.diff(csr.indptr).tolist() == [3, 5, 0]
    assert sparse_networks(planted, two_sided=False)[[0]].indices.tolist() == [1, 3]
    assert sparse_networks(planted[:0]).shape == (0, 10)


def test_csr_networks():
    rng = np.random.default_rng(3)
    masks = rng.random((9, 70)) < 0.2
    masks[4] = False
    assert_csr_equal(csr_networks(masks), masks)
    assert_csr_equal(csr_networks(masks.astype(np.int8) * 3), masks)
    assert csr_networks(masks).indices.dtype == np.int32
    with pytest.raises(InputError, match=r"networks of shape \(70,\): expected \(n_networks, n_neurons\)"):
        csr_networks(masks[0])


@pytest.mark.parametrize("threshold", [0, float("nan")])
def test_sparse_networks_bad_threshold(planted, threshold):
    with pytest.raises(InputError, match="must be a positive finite z-value"):
        sparse_networks(planted, threshold=threshold)
    with pytest.raises(InputError, match=r"expected \(\.\.\., n_layers, d_model\)"):
        sparse_networks(np.zeros(4, dtype=np.float32))
