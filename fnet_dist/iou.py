"""All-pairs IoU (Jaccard index) between two sets of binary networks, as a blocked boolean product.

- ``pairwise_iou(a, b)``: ``(n_a, n_neurons)`` and ``(n_b, n_neurons)`` masks -> ``(n_a, n_b)`` float64.
  numpy and dask masks go through bit-packed blocks (AND + popcount), scipy.sparse masks through a
  sparse product; an empty network has IoU 0 with everything.
- ``lazy_iou(a, b)``: the same on Dask, lazily, with both sides' network sizes: ``(iou, size_a, size_b)``.
- ``pack_bits(mask)``: rows of booleans -> rows of uint64 words (zero padded).
- ``reference_iou(a, b)``: the plain per-pair loop, for tests and benchmarks.

IoU = |a ∩ b| / |a ∪ b| with |a ∪ b| = |a| + |b| - |a ∩ b|; every count is an exact integer and the
one division is the same float64 division as in the reference, so the two agree exactly.
"""
from __future__ import annotations

import numpy as np

from .errors import InputError

__all__ = ["iou_from_counts", "lazy_iou", "pack_bits", "pairwise_iou", "reference_iou"]

_CACHE_WORDS = 1 << 15  # words of one block of the larger side (256 KiB): stays in cache across the other side's rows
_SPARSE_WORDS = 0.25  # a row with at most this share of non-zero words is matched on those words only
_BYTE_COUNTS = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def _bitcount_table(words: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Set bits of each uint64 by a byte table: numpy < 2.0 has no ``np.bitwise_count``."""
    counts = _BYTE_COUNTS[words.view(np.uint8)].reshape(*words.shape, 8).sum(axis=-1, dtype=np.uint8)
    if out is None:
        return counts
    out[...] = counts
    return out


_bitcount = getattr(np, "bitwise_count", _bitcount_table)


def _check_pair(a, b) -> None:
    for name, mask in (("a", a), ("b", b)):
        if len(mask.shape) != 2:
            raise InputError(f"networks {name} of shape {tuple(mask.shape)}: expected (n_networks, n_neurons)")
    if a.shape[1] != b.shape[1]:
        raise InputError(
            f"networks over {a.shape[1]} and {b.shape[1]} neurons cannot be compared: "
            f"both sets must come from the same model layout (n_layers * d_model)"
        )


def pack_bits(mask: np.ndarray) -> np.ndarray:
    """``(n, n_neurons)`` bool -> ``(n, ceil(n_neurons / 64))`` uint64, eight packed bytes per word."""
    packed = np.packbits(np.asarray(mask, dtype=bool), axis=1)
    pad = (-packed.shape[1]) % 8
    if pad:
        packed = np.pad(packed, ((0, 0), (0, pad)))
    return np.ascontiguousarray(packed).view(np.uint64)


def _popcount_rows(words: np.ndarray) -> np.ndarray:
    """Set bits per row of ``(n, w)`` uint64 -> ``(n,)`` int64."""
    return _bitcount(words).sum(axis=1, dtype=np.int64)


def _and_counts(pa: np.ndarray, pb: np.ndarray) -> np.ndarray:
    """|a_i ∩ b_j| of packed rows: ``(n_a, w)``, ``(n_b, w)`` -> ``(n_a, n_b)`` int64.

    Rows of the smaller side with few non-zero words (sparse templates) are matched on those words
    only, since a zero word intersects nothing; the other rows go through ``_dense_and_counts``.
    """
    if pa.shape[0] > pb.shape[0]:
        return _and_counts(pb, pa).T
    out = np.empty((pa.shape[0], pb.shape[0]), dtype=np.int64)
    dense = []
    for i, row in enumerate(pa):
        words = np.flatnonzero(row)
        if len(words) > _SPARSE_WORDS * pa.shape[1]:
            dense.append(i)
            continue
        gathered = np.take(pb, words, axis=1)
        np.bitwise_and(gathered, row[words], out=gathered)
        out[i] = _popcount_rows(gathered)
    if dense:
        out[dense] = _dense_and_counts(pa[dense], pb)
    return out


def _dense_and_counts(pa: np.ndarray, pb: np.ndarray) -> np.ndarray:
    """For each row of ``pa``, one AND + popcount over a cache-sized block of rows of ``pb`` (vectorised
    over its rows and words), written into preallocated buffers: ``(n_a, n_b)`` int64."""
    n_a, n_b, width = pa.shape[0], pb.shape[0], max(pa.shape[1], 1)
    out = np.empty((n_a, n_b), dtype=np.int64)
    rows = max(1, _CACHE_WORDS // width)
    both = np.empty((min(rows, n_b), pa.shape[1]), dtype=np.uint64)
    bits = np.empty(both.shape, dtype=np.uint8)
    for j in range(0, n_b, rows):
        block = pb[j:j + rows]
        m = len(block)
        for i in range(n_a):
            np.bitwise_and(block, pa[i], out=both[:m])
            _bitcount(both[:m], out=bits[:m])
            out[i, j:j + m] = bits[:m].sum(axis=1, dtype=np.uint32)
    return out


def iou_from_counts(intersection, size_a, size_b):
    """IoU from exact counts: ``(n_a, n_b)`` intersections and both sides' sizes -> float64; 0 where the union is empty."""
    intersection = np.asarray(intersection, dtype=np.int64)
    union = np.asarray(size_a, dtype=np.int64)[:, None] + np.asarray(size_b, dtype=np.int64)[None, :] - intersection
    out = np.zeros(intersection.shape, dtype=np.float64)
    np.divide(intersection, union, out=out, where=union > 0)
    return out


def _pack_block(block: np.ndarray) -> np.ndarray:
    return pack_bits(block)


def _listed(blocks) -> list:
    return blocks if isinstance(blocks, list) else [blocks]


def _block_sizes(blocks) -> np.ndarray:
    """Set bits per row, summed over the neuron chunks of one row block."""
    return sum(_popcount_rows(words) for words in _listed(blocks))


def _block_counts(packed_a, masks_b) -> np.ndarray:
    """One row block of b against all of a, summed over neuron chunks: ``(n_a + 1, rows)`` int64.

    Rows 0..n_a-1 are |a_i ∩ b_j|, the last row |b_j|; b is packed here, inside the task that holds it,
    so no packed copy of b ever travels between workers.
    """
    total = 0
    for words_a, mask_b in zip(_listed(packed_a), _listed(masks_b)):
        words_b = pack_bits(mask_b)
        total = total + np.vstack([_and_counts(words_a, words_b), _popcount_rows(words_b)[None, :]])
    return total


def _as_dask(mask):
    import dask.array as da

    if isinstance(mask, da.Array):
        return mask.astype(bool, copy=False)
    return da.from_array(np.asarray(mask, dtype=bool), chunks=(-1, -1))


def lazy_iou(a, b):
    """Lazy all-pairs IoU on Dask: ``(iou (n_a, n_b) float64, size_a (n_a,), size_b (n_b,))``.

    a, b : bool numpy or dask arrays of shape (n, n_neurons); ``a`` is the smaller set (the templates),
    held as one row block and bit-packed once per neuron chunk. Each task takes one row block of ``b``,
    packs it and sums AND-popcounts with ``a`` over the neuron chunks (a blocked matrix product), so a
    task holds one row block of ``b`` and the work stays where the block is.
    """
    import dask.array as da

    _check_pair(a, b)
    a, b = _as_dask(a), _as_dask(b)
    a = a.rechunk({0: -1, 1: b.chunks[1]})
    words = tuple(-(-c // 64) for c in a.chunks[1])
    pa = a.map_blocks(_pack_block, chunks=(a.chunks[0], words), dtype=np.uint64)
    size_a = da.blockwise(_block_sizes, "i", pa, "ik", dtype=np.int64, concatenate=False)
    n_a = a.shape[0]
    counts = da.blockwise(_block_counts, "ij", pa, "ik", b, "jk", dtype=np.int64, concatenate=False,
                          align_arrays=False, adjust_chunks={"i": lambda _: n_a + 1})  # k: words of a, neurons of b
    intersection, size_b = counts[:n_a], counts[n_a]
    iou = da.blockwise(iou_from_counts, "ij", intersection, "ij", size_a, "i", size_b, "j", dtype=np.float64)
    return iou, size_a, size_b


def _sparse_iou(a, b) -> np.ndarray:
    import scipy.sparse as sp

    a = sp.csr_matrix(a, dtype=bool).astype(np.int64)
    b = sp.csr_matrix(b, dtype=bool).astype(np.int64)
    intersection = (b @ a.T).T.toarray()
    return iou_from_counts(intersection, np.asarray(a.sum(axis=1)).ravel(), np.asarray(b.sum(axis=1)).ravel())


def pairwise_iou(a, b) -> np.ndarray:
    """All-pairs IoU of two sets of binary networks: ``(n_a, n_neurons)``, ``(n_b, n_neurons)`` -> ``(n_a, n_b)``.

    numpy masks are bit-packed in memory; dask masks run as the blocked product of ``lazy_iou`` (on the
    current Dask client, if any); scipy.sparse masks use a sparse product. Empty networks give 0.
    """
    import scipy.sparse as sp

    _check_pair(a, b)
    if sp.issparse(a) or sp.issparse(b):
        return _sparse_iou(a, b)
    if hasattr(a, "dask") or hasattr(b, "dask"):
        iou, _, _ = lazy_iou(a, b)
        return np.asarray(iou.compute())
    pa, pb = pack_bits(a), pack_bits(b)
    return iou_from_counts(_and_counts(pa, pb), _popcount_rows(pa), _popcount_rows(pb))


def reference_iou(a, b) -> np.ndarray:
    """The plain definition, one pair at a time: ``count(a & b) / count(a | b)`` (0 for two empty networks)."""
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    _check_pair(a, b)
    out = np.zeros((a.shape[0], b.shape[0]), dtype=np.float64)
    for i in range(a.shape[0]):
        for j in range(b.shape[0]):
            union = np.count_nonzero(a[i] | b[j])
            if union:
                out[i, j] = np.count_nonzero(a[i] & b[j]) / union
    return out
