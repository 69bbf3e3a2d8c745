"""All-pairs IoU: the blocked bit-packed product (numpy, Dask, sparse) equals the per-pair definition exactly."""
from __future__ import annotations

import warnings

import dask.array as da
import numpy as np
import pytest
import scipy.sparse as sp

from fnet_dist.core.errors import InputError
from fnet_dist.match.iou import (iou_from_counts, lazy_iou, pack_bits, pairwise_iou, reference_iou, sparse_counts,
                            template_table)


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
    import fnet_dist.match.iou as iou_module

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


# The sparse path: the smaller side as a neuron -> networks bit table, gathered at the other side's CSR entries.

@pytest.mark.parametrize("n_a", [1, 7, 9, 17, 64, 65, 130])  # uint8 … uint64 tables, then 2 and 3 words per neuron
@pytest.mark.parametrize("n", [1000, 63, 1])
def test_sparse_equals_reference(n_a, n):
    a, b = masks(n_a % 5, n_a=max(n_a, 10), n=n, density=0.3 if n < 100 else 0.03)
    a = a[:n_a]
    expected = reference_iou(a, b)
    assert np.array_equal(pairwise_iou(sp.csr_array(a), sp.csc_matrix(b)), expected)
    assert np.array_equal(pairwise_iou(a, sp.csr_array(b)), expected)        # dense table side
    assert np.array_equal(pairwise_iou(sp.coo_array(b), a), expected.T)      # the smaller side is the table


def test_template_table_bits():
    a = np.zeros((70, 5), bool)
    a[0, 1] = a[2, 1] = a[63, 4] = a[64, 4] = a[69, 0] = True
    wide = template_table(a)
    assert wide.dtype == np.uint64 and wide.shape == (2, 5)
    wide = wide.T
    assert wide[1].tolist() == [0b101, 0] and wide[4].tolist() == [1 << 63, 1] and wide[0].tolist() == [0, 1 << 5]
    for n_a, dtype in [(1, np.uint8), (8, np.uint8), (9, np.uint16), (16, np.uint16), (17, np.uint32), (33, np.uint64)]:
        table = template_table(a[:n_a])
        assert table.dtype == dtype and table.shape == (5,)
        assert table[1] == (0b101 if n_a > 2 else 1)


@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
def test_sparse_counts_are_the_intersections_and_sizes(index_dtype):
    a, b = masks(8, n_a=70, n_b=40, n=300, density=0.1)
    csr = sp.csr_array(b)
    csr = sp.csr_array((csr.data, csr.indices.astype(index_dtype), csr.indptr.astype(index_dtype)), shape=b.shape)
    counts = sparse_counts(template_table(a), 70, csr)
    assert counts.shape == (71, 40) and counts.dtype == np.int64
    assert np.array_equal(counts[:70], a.astype(np.int64) @ b.T.astype(np.int64))
    assert counts[70].tolist() == b.sum(axis=1).tolist()
    assert np.array_equal(sparse_counts(template_table(a[:0]), 0, csr), counts[70:])  # no templates: sizes only


def test_sparse_input_is_made_canonical():
    """Duplicate entries count once and stored zeros not at all (CSR built by hand, COO with repeats)."""
    a, b = masks(9)
    csr = sp.csr_array(b)
    absent = np.flatnonzero(~b[0])[:2]
    first = csr.indptr[1]
    indices = np.r_[csr.indices[:first], csr.indices[:2], absent, csr.indices[first:]]  # row 0: 2 repeats, 2 zeros
    data = np.r_[np.ones(first + 2, np.int8), np.zeros(2, np.int8), np.ones(len(csr.indices) - first, np.int8)]
    indptr = np.r_[0, csr.indptr[1:] + 4]
    messy = sp.csr_array((data, indices, indptr), shape=b.shape)
    assert messy.nnz == csr.nnz + 4
    assert np.array_equal(pairwise_iou(a, messy), reference_iou(a, b))
    assert np.array_equal(pairwise_iou(messy, a), reference_iou(b, a))  # the messy side as the table
    rows, cols = np.nonzero(b)
    coo = sp.coo_array((np.ones(len(rows) + 1, np.int8), (np.r_[rows, rows[0]], np.r_[cols, cols[0]])), shape=b.shape)
    assert np.array_equal(pairwise_iou(a, coo), reference_iou(a, b))


def test_empty_networks_on_the_sparse_path_without_warnings():
    a, b = masks(10)
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        iou = pairwise_iou(sp.csr_array(a), sp.csr_array(b))
        nothing = pairwise_iou(sp.csr_array((2, 10), dtype=bool), sp.csr_array((3, 10), dtype=bool))
        no_rows = pairwise_iou(a, sp.csr_array((0, a.shape[1]), dtype=bool))
    assert not iou[1].any() and not iou[:, 4].any() and iou[0, 7] == 1.0
    assert nothing.shape == (2, 3) and not nothing.any() and no_rows.shape == (7, 0)


@pytest.mark.parametrize("two_sided", [True, False])
def test_dask_sparse_blocks_equal_numpy_and_reference(two_sided, dask_cluster_address):
    """z-maps on Dask -> CSR row blocks (thresholded in their tasks) -> IoU on a real cluster, equal to the
    dense numpy and in-memory sparse paths and to the per-pair definition."""
    from distributed import Client

    from fnet_dist.core.networks import binarize, flatten_networks, sparse_networks

    rng = np.random.default_rng(11)
    maps = rng.normal(0, 1.3, (12, 5, 3, 37)).astype(np.float32)      # 60 networks over 111 neurons
    templates = flatten_networks(binarize(maps[0, :4], 2.5, two_sided)) | (rng.random((4, 111)) < 0.05)
    dense = flatten_networks(binarize(maps, 2.5, two_sided))
    lazy = sparse_networks(da.from_array(maps, chunks=(2, 5, 3, 37)), 2.5, two_sided)
    expected = reference_iou(templates, dense)
    with Client(dask_cluster_address):
        iou, size_a, size_b = lazy_iou(templates, lazy)
        iou, size_a, size_b = da.compute(iou, size_a, size_b)
        from_sparse_templates = pairwise_iou(sp.csr_array(templates), lazy)
    assert np.array_equal(iou, expected) and np.array_equal(from_sparse_templates, expected)
    assert np.array_equal(pairwise_iou(templates, dense), expected)
    assert np.array_equal(pairwise_iou(templates, sparse_networks(maps, 2.5, two_sided)), expected)
    assert size_a.tolist() == templates.sum(axis=1).tolist() and size_b.tolist() == dense.sum(axis=1).tolist()


def test_dask_dense_masks_with_sparse_templates():
    a, b = masks(12)
    iou, _, size_b = lazy_iou(sp.csr_array(a), da.from_array(b, chunks=(10, -1)))
    assert np.array_equal(iou.compute(), reference_iou(a, b)) and size_b.compute().tolist() == b.sum(axis=1).tolist()
    iou, size_a, _ = lazy_iou(a, sp.csr_array(b))  # in-memory CSR: one block
    assert np.array_equal(iou.compute(), reference_iou(a, b)) and size_a.compute().tolist() == a.sum(axis=1).tolist()


def test_sparse_bad_input():
    with pytest.raises(InputError, match="networks over 10 and 12 neurons cannot be compared"):
        pairwise_iou(sp.csr_array((2, 10), dtype=bool), np.zeros((2, 12), bool))
    with pytest.raises(InputError, match="networks over 10 and 11 neurons cannot be compared"):
        lazy_iou(np.zeros((2, 10), bool), da.from_array(sp.csr_array((3, 11), dtype=bool), asarray=False))
