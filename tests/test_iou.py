"""All-pairs IoU: the blocked bit-packed product (numpy, Dask, sparse) equals the per-pair definition exactly."""
from __future__ import annotations

import warnings

import dask.array as da
import numpy as np
import pytest
import scipy.sparse as sp

from fnet_dist.errors import InputError
from fnet_dist.iou import iou_from_counts, lazy_iou, pack_bits, pairwise_iou, reference_iou


def masks(seed, n_a=7, n_b=45, n=1000, density=0.03):
    rng = np.random.default_rng(seed)
    a, b = rng.random((n_a, n)) < density, rng.random((n_b, n)) < density
    a[1] = False          # an empty network on each side
    b[4] = False
    b[7] = a[0]           # an identical pair
    b[9, a[2].nonzero()[0][:3]] = True  # a partial overlap
    return a, b


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("n", [1000, 64, 63, 1])
def test_numpy_equals_reference(seed, n):
    a, b = masks(seed, n=n, density=0.3 if n < 100 else 0.03)
    expected = reference_iou(a, b)
    assert np.array_equal(pairwise_iou(a, b), expected)
    assert np.array_equal(pairwise_iou(b, a), expected.T)


@pytest.mark.parametrize("chunks_a,chunks_b", [((-1, -1), (10, -1)), ((3, 300), (10, 170)), ((2, 64), (45, 1000))])
def test_dask_blocked_equals_reference(chunks_a, chunks_b):
    a, b = masks(2)
    iou, size_a, size_b = lazy_iou(da.from_array(a, chunks=chunks_a), da.from_array(b, chunks=chunks_b))
    assert iou.shape == (7, 45)
    assert np.array_equal(iou.compute(), reference_iou(a, b))
    assert size_a.compute().tolist() == a.sum(axis=1).tolist()
    assert size_b.compute().tolist() == b.sum(axis=1).tolist()


def test_on_a_distributed_cluster(dask_cluster_address):
    from distributed import Client

    a, b = masks(3, n_b=300, n=5000)
    with Client(dask_cluster_address):
        result = pairwise_iou(da.from_array(a, chunks=(4, 2000)), da.from_array(b, chunks=(50, 1500)))
    assert isinstance(result, np.ndarray)
    assert np.array_equal(result, reference_iou(a, b))


def test_sparse_templates_take_the_word_gather_path():
    rng = np.random.default_rng(7)
    a = rng.random((6, 5000)) < 0.002      # few non-zero words: matched on those words only
    a[0] = rng.random(5000) < 0.05         # many: the dense path
    b = rng.random((80, 5000)) < 0.05
    b[3] = a[1]
    result = pairwise_iou(a, b)
    assert np.array_equal(result, reference_iou(a, b)) and result[1, 3] == 1.0
    assert np.array_equal(pairwise_iou(b, a), reference_iou(b, a))


def test_sparse_equals_reference():
    a, b = masks(4)
    assert np.array_equal(pairwise_iou(sp.csr_matrix(a), sp.csc_matrix(b)), reference_iou(a, b))


def test_empty_networks_have_iou_zero_without_warnings():
    a, b = masks(5)
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        iou = pairwise_iou(a, b)
        both_empty = pairwise_iou(np.zeros((2, 10), bool), np.zeros((3, 10), bool))
    assert not iou[1].any() and not iou[:, 4].any()
    assert iou[0, 7] == 1.0
    in_a, in_b = set(a[2].nonzero()[0]), set(b[9].nonzero()[0])
    assert len(in_a & in_b) >= 3
    assert iou[2, 9] == len(in_a & in_b) / len(in_a | in_b)
    assert not both_empty.any()


def test_byte_table_popcount_for_old_numpy(monkeypatch):
    import fnet_dist.iou as iou_module

    monkeypatch.setattr(iou_module, "_bitcount", iou_module._bitcount_table)
    a, b = masks(6)
    assert np.array_equal(pairwise_iou(a, b), reference_iou(a, b))


def test_pack_bits_and_counts():
    mask = np.zeros((2, 70), bool)
    mask[0, [0, 63, 64, 69]] = True
    words = pack_bits(mask)
    assert words.shape == (2, 2) and words.dtype == np.uint64
    assert np.bitwise_count(words).sum(axis=1).tolist() == [4, 0]
    assert iou_from_counts([[1, 0]], [2], [3, 0]).tolist() == [[0.25, 0.0]]


def test_bad_input():
    with pytest.raises(InputError, match="networks over 10 and 12 neurons cannot be compared"):
        pairwise_iou(np.zeros((2, 10), bool), np.zeros((2, 12), bool))
    with pytest.raises(InputError, match=r"networks a of shape \(10,\): expected \(n_networks, n_neurons\)"):
        pairwise_iou(np.zeros(10, bool), np.zeros((2, 10), bool))
    with pytest.raises(InputError, match="cannot be compared"):
        lazy_iou(da.zeros((2, 10), dtype=bool), da.zeros((2, 11), dtype=bool))
