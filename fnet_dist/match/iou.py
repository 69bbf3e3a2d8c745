"""All-pairs IoU (Jaccard index) between two sets of binary networks, as a blocked boolean product.

- ``pairwise_iou(a, b)``: ``(n_a, n_neurons)`` and ``(n_b, n_neurons)`` masks -> ``(n_a, n_b)`` float64.
  Dense numpy and dask masks go through bit-packed blocks (AND + popcount); if either side is sparse
  (scipy.sparse, or CSR blocks on Dask from ``networks.sparse_networks``), the smaller side becomes a
  bit table gathered at the other side's non-zero entries. An empty network has IoU 0 with everything.
- ``lazy_iou(a, b)``: the same on Dask, lazily, with both sides' network sizes: ``(iou, size_a, size_b)``.
- ``template_table(a)``, ``sparse_counts(table, n_a, b)``: the sparse kernel (a neuron -> networks bit
  table of a few networks; their intersections with every CSR row of b, and b's sizes), one pass over
  b's entries compiled with numba, so the work grows with b's entries only.
- ``pack_bits(mask)``: rows of booleans -> rows of uint64 words (zero padded).
- ``reference_iou(a, b)``: the plain per-pair loop, for tests and benchmarks.

IoU = |a ∩ b| / |a ∪ b| with |a ∪ b| = |a| + |b| - |a ∩ b|; every count is an exact integer and the
one division is the same float64 division as in the reference, so the two agree exactly.
"""
from __future__ import annotations

import functools

import numpy as np

from ..core.errors import InputError
from ..core.networks import csr_networks

__all__ = ["iou_from_counts", "lazy_iou", "pack_bits", "pairwise_iou", "reference_iou", "sparse_counts", "template_table"]

_CACHE_WORDS = 1 << 15  # words of one block of the larger side (256 KiB): stays in cache across the other side's rows
_SPARSE_WORDS = 0.25  # a row with at most this share of non-zero words is matched on those words only
_WORD_BITS = 64  # networks per word of a bit table
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


def _is_sparse(mask) -> bool:
    """scipy.sparse masks, or a dask array whose blocks are scipy.sparse (``sparse_networks`` on Dask)."""
    import scipy.sparse as sp

    return sp.issparse(mask) or sp.issparse(getattr(mask, "_meta", None))


def _as_dask(mask):
    import dask.array as da

    if isinstance(mask, da.Array):
        return mask.astype(bool, copy=False)
    return da.from_array(np.asarray(mask, dtype=bool), chunks=(-1, -1))


def lazy_iou(a, b):
    """Lazy all-pairs IoU on Dask: ``(iou (n_a, n_b) float64, size_a (n_a,), size_b (n_b,))``.

    a, b : masks of shape (n, n_neurons), numpy, scipy.sparse or dask (dense, or CSR blocks from
    ``sparse_networks``); ``a`` is the smaller set (the templates), held whole. If either side is sparse,
    ``a`` becomes one bit table and each task gathers it at the non-zero entries of one row block of ``b``
    (``sparse_counts``). Otherwise ``a`` is bit-packed once per neuron chunk and each task packs one row
    block of ``b`` and sums AND-popcounts over the neuron chunks (a blocked matrix product). Either way a
    task holds one row block of ``b`` and the work stays where the block is.
    """
    import dask.array as da

    _check_pair(a, b)
    if _is_sparse(a) or _is_sparse(b):
        return _lazy_sparse_iou(a, b)
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


def _templates(a) -> tuple[np.ndarray, np.ndarray]:
    """The table side of the sparse path: ``(template_table(a), sizes (n_a,) int64)``."""
    a = _as_csr(a)
    return template_table(a), np.diff(a.indptr).astype(np.int64)


def _block_iou(block, templates: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """One row block of b (CSR, or dense masks made CSR here) -> its IoU with the templates: ``(n_a, rows)``."""
    table, size_a = templates
    counts = sparse_counts(table, len(size_a), block)
    return iou_from_counts(counts[:-1], size_a, counts[-1])


def _row_sizes(block) -> np.ndarray:
    """Networks' sizes of one row block: ``(rows,)`` int64."""
    return np.diff(_as_csr(block).indptr).astype(np.int64)


def _lazy_sparse_iou(a, b):
    """``lazy_iou`` with a bit table: one task builds it, then one task per row block of b gives that block's
    IoU (and one its sizes), so the graph stays small where tasks are cheap."""
    import dask
    import dask.array as da
    import scipy.sparse as sp

    n_a = a.shape[0]
    if not isinstance(b, da.Array):
        b = da.from_array(sp.csr_array(b) if sp.issparse(b) else np.asarray(b), chunks=(-1, -1), asarray=False)
    b = b.rechunk({1: -1})
    templates = dask.delayed(_templates, pure=True)(a)
    iou = da.blockwise(_block_iou, "ij", b, "jk", templates, None, new_axes={"i": n_a}, concatenate=True,
                       dtype=np.float64, meta=np.empty((0, 0), dtype=np.float64))
    size_b = b.map_blocks(_row_sizes, drop_axis=1, dtype=np.int64, meta=np.empty(0, dtype=np.int64))
    size_a = da.from_delayed(templates[1], shape=(n_a,), dtype=np.int64)
    return iou, size_a, size_b


def _as_csr(mask):
    """numpy or scipy.sparse masks -> canonical CSR (sorted, no duplicates, only non-zero entries); a canonical
    CSR input is returned as it is."""
    import scipy.sparse as sp


    if not sp.issparse(mask):
        return csr_networks(mask)
    csr = mask if mask.format == "csr" else sp.csr_array(mask)  # the same object keeps scipy's cached checks
    if not csr.has_canonical_format or not csr.data.all():
        csr = csr.copy()
        csr.sum_duplicates()
        csr.eliminate_zeros()
    return csr


def template_table(a) -> np.ndarray:
    """Bit table of a few networks: ``(n_a, n_neurons)`` masks -> ``(n_neurons,)`` unsigned words whose bit t
    is set where network t holds the neuron (uint8 … uint64, the narrowest that holds ``n_a`` bits), or
    ``(ceil(n_a / 64), n_neurons)`` uint64 for more than 64 networks (network t: word t // 64, bit t % 64)."""
    a = _as_csr(a)
    n_a, n_neurons = a.shape
    words = -(-n_a // _WORD_BITS)
    bits = min(max(n_a, 1), _WORD_BITS)
    dtype = np.dtype(f"uint{max(8, 1 << (bits - 1).bit_length())}")
    table = np.zeros((max(words, 1), n_neurons), dtype=dtype)
    network = np.repeat(np.arange(n_a), np.diff(a.indptr))
    bit = np.left_shift(dtype.type(1), (network % _WORD_BITS).astype(dtype))
    np.bitwise_or.at(table, (network // _WORD_BITS, a.indices), bit)
    return table[0] if words == 1 else table


def _count_hits(table: np.ndarray, indptr: np.ndarray, indices: np.ndarray, out: np.ndarray) -> np.ndarray:
    """For each CSR row j of b and each of its neurons n, one count in ``out[j, t]`` per bit t set in the
    table at n (word w's bit i is network 64 w + i; the bit's index found by a de Bruijn multiply).

    table : (n_words, n_neurons) unsigned; out : (n_rows, n_a) int64, zeroed. Compiled by numba. Each row's
    non-zero table words are first gathered without a branch (most are zero), then their bits counted.
    """
    longest = 0
    for j in range(len(indptr) - 1):
        longest = max(longest, indptr[j + 1] - indptr[j])
    hits = np.empty(longest, dtype=table.dtype)
    for w in range(table.shape[0]):
        words, first = table[w], w * _WORD_BITS
        for j in range(len(indptr) - 1):
            n = 0
            for p in range(indptr[j], indptr[j + 1]):
                hits[n] = words[indices[p]]
                n += hits[n] != 0
            for q in range(n):
                word = np.uint64(hits[q])
                while word:
                    lowest = word & (~word + np.uint64(1))
                    out[j, first + _DE_BRUIJN_BIT[(lowest * _DE_BRUIJN) >> np.uint64(58)]] += 1
                    word ^= lowest
    return out


_DE_BRUIJN = np.uint64(0x022FDD63CC95386D)  # (1 << i) * this >> 58 is distinct for each i < 64
with np.errstate(over="ignore"):
    _DE_BRUIJN_BIT = np.zeros(64, dtype=np.int64)
    _DE_BRUIJN_BIT[(np.left_shift(np.uint64(1), np.arange(64, dtype=np.uint64)) * _DE_BRUIJN) >> np.uint64(58)] = np.arange(64)


@functools.cache
def _compiled_count_hits():
    """``_count_hits`` compiled once per process (and cached on disk): releases the GIL for Dask's threads."""
    import numba

    return numba.njit(cache=True, nogil=True)(_count_hits)


def sparse_counts(table: np.ndarray, n_a: int, b) -> np.ndarray:
    """Intersections of the ``n_a`` networks of ``table`` (``template_table``) with the rows of ``b``, and b's
    sizes: ``(n_a + 1, n_b)`` int64, rows 0..n_a-1 |a_t ∩ b_j|, the last row |b_j|.

    b : masks (n_b, n_neurons), CSR or made CSR. One pass over b's non-zero entries: the table is read at
    each, and each set bit counts one, so the work grows with b's entries, not with its dense size.
    """
    b = _as_csr(b)
    out = np.empty((n_a + 1, b.shape[0]), dtype=np.int64)
    out[n_a] = np.diff(b.indptr)
    words = table.reshape(-1, table.shape[-1])
    counts = np.zeros((b.shape[0], max(n_a, 1)), dtype=np.int64)
    out[:n_a] = _compiled_count_hits()(words, b.indptr, b.indices, counts)[:, :n_a].T
    return out


def _sparse_iou(a, b) -> np.ndarray:
    """IoU with b held sparse: the smaller side becomes the bit table, the other is gathered through it."""
    if a.shape[0] > b.shape[0]:
        return _sparse_iou(b, a).T
    a = _as_csr(a)
    counts = sparse_counts(template_table(a), a.shape[0], b)
    return iou_from_counts(counts[:-1], np.diff(a.indptr), counts[-1])


def pairwise_iou(a, b) -> np.ndarray:
    """All-pairs IoU of two sets of binary networks: ``(n_a, n_neurons)``, ``(n_b, n_neurons)`` -> ``(n_a, n_b)``.

    numpy masks are bit-packed in memory; dask masks run as the blocked product of ``lazy_iou`` (on the
    current Dask client, if any); if either side is scipy.sparse, the smaller side becomes a bit table
    gathered at the other's non-zero entries (``sparse_counts``). Empty networks give 0.
    """
    import scipy.sparse as sp

    _check_pair(a, b)
    if hasattr(a, "dask") or hasattr(b, "dask"):
        iou, _, _ = lazy_iou(a, b)
        return np.asarray(iou.compute())
    if sp.issparse(a) or sp.issparse(b):
        return _sparse_iou(a, b)
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
