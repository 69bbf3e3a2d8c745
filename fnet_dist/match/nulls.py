"""Null models for the match stage's claims: how a random network of the same size and layer spread would fare.

A random network *matched in size and layer* keeps a template's neuron count in every layer and places those
neurons uniformly at random within each layer (each layer's neuron indices permuted).

- ``layer_permutations(shape, n_draws, seed, chunk)``: random within-layer permutations, chunk by chunk:
  arrays of shape (≤ chunk, n_layers, d_model); one draw serves every template.
- ``counterpart_null(templates, maps, iou, n_draws, seed) -> (n_templates, n_draws)``: counterparts (maps with
  IoU > ``iou``) of layer-matched random networks, counted with the sparse kernel of ``fnet_dist.match.iou``.
- ``counterpart_table(consistency, null, seed)``: each template's counterparts against its null (Tables 1, 6-8).
- ``overlap_null(a, b, level) -> OverlapNull``: the exact null of |a ∩ b| when b's neurons are permuted within each
  layer (a sum over layers of hypergeometric counts), with the p-value of the observed overlap.
- ``recurrence_table(names, templates, massive, first_token, level)``: every cross-corpus template pair's IoU and
  exact p-value, with and without massive-channel neurons, flags for massive-channel and first-token-dominated
  templates, and ``eligible`` (a pair that may count as a recurrence, judged without massive channels:
  neither template first-token-dominated).
- ``match_nulls(urls, out, config, *, massive, anatomy, seed)``: both tables into ``out`` for the run's match folder
  (``config``: the ``match`` section, whole).
"""
from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..core.config import MatchSection
from ..core.errors import InputError
from ..core.stats import monte_carlo_p
from ..store.storage import filesystem
from .io import FILES, load_networks, write_file
from .iou import iou_from_counts, sparse_counts, template_table

__all__ = ["CHANCE_LEVEL", "OverlapNull", "counterpart_null", "counterpart_table", "layer_permutations", "match_nulls",
           "overlap_null", "recurrence_table"]

# the central range of chance the recurrence table shows (``chance_low/high_without_massive``); the match stage
# reads only the match section, so this is not report.level (the recurrence finding's interval is this range)
CHANCE_LEVEL = 0.95


def layer_permutations(shape: tuple[int, int], n_draws: int, seed: int, chunk: int = 256):
    """Yield arrays (≤ ``chunk``, n_layers, d_model) of independent random permutations of each layer's
    neuron indices, ``n_draws`` in all, from ``seed``."""
    if n_draws < 1:
        raise InputError(f"n_draws {n_draws!r} must be ≥ 1 (99 or more for a usable p-value)")
    rng = np.random.default_rng(seed)
    n_layers, d_model = shape
    dtype = np.int16 if d_model < 2 ** 15 else np.int32
    base = np.arange(d_model, dtype=dtype)
    for start in range(0, n_draws, chunk):
        count = min(chunk, n_draws - start)
        yield rng.permuted(np.broadcast_to(base, (count * n_layers, d_model)), axis=1).reshape(count, n_layers, d_model)


def _permuted_networks(templates: np.ndarray, permutations: np.ndarray):
    """CSR (n_templates * n_draws, n_layers * d_model) of each template moved by each permutation (template-major)."""
    import scipy.sparse as sp

    n_draws, n_layers, d_model = permutations.shape
    rows, columns = [], []
    for t, template in enumerate(templates):
        layers, neurons = np.nonzero(template)
        moved = permutations[:, layers, neurons].astype(np.int64) + layers * d_model   # (n_draws, size)
        rows.append(np.repeat(t * n_draws + np.arange(n_draws), len(layers)))
        columns.append(moved.ravel())
    data = np.ones(sum(len(c) for c in columns), dtype=bool)
    shape = (len(templates) * n_draws, n_layers * d_model)
    return sp.csr_array((data, (np.concatenate(rows), np.concatenate(columns))), shape=shape)


def counterpart_null(templates: np.ndarray, maps, iou: float, n_draws: int, seed: int) -> np.ndarray:
    """Counterparts of layer-matched random networks: (n_templates, n_draws) int64.

    templates : bool (n_templates, n_layers, d_model); maps : the individual networks, (n_maps, n_layers *
    d_model) CSR (or anything ``fnet_dist.match.iou.sparse_counts`` takes); a counterpart is a map with IoU > ``iou``;
    n_draws: ``match.permutations``.
    """
    templates = np.asarray(templates, dtype=bool)
    out = np.empty((len(templates), n_draws), dtype=np.int64)
    sizes = templates.reshape(len(templates), -1).sum(axis=1)
    done = 0
    for permutations in layer_permutations(templates.shape[1:], n_draws, seed):
        count = len(permutations)
        networks = _permuted_networks(templates, permutations)
        counts = sparse_counts(template_table(networks), networks.shape[0], maps)
        hits = (iou_from_counts(counts[:-1], np.repeat(sizes, count), counts[-1]) > iou).sum(axis=1)
        out[:, done:done + count] = hits.reshape(len(templates), count)
        done += count
    return out


def counterpart_table(consistency: pd.DataFrame, null: dict[str, np.ndarray], seed: int) -> pd.DataFrame:
    """``consistency`` (one row per corpus and template) with each template's null: mean and 97.5th percentile
    of the random networks' counterparts, their number, and the Monte Carlo p-value of the observed count."""
    frames = []
    for corpus, rows in consistency.groupby("corpus", sort=False):
        counts = null[corpus][rows["template"].to_numpy() - 1]
        frames.append(rows.assign(null_mean=counts.mean(axis=1), null_high=np.percentile(counts, 97.5, axis=1),
                                  permutations=counts.shape[1], seed=seed,
                                  p_value=monte_carlo_p(rows["counterparts"].to_numpy(), counts)))
    return pd.concat(frames, ignore_index=True)


@dataclass(frozen=True)
class OverlapNull:
    """|a ∩ b| observed, its exact null (b's neurons permuted within layers): mean, central range (``low``, ``high``)
    at the level asked, and p = P(null ≥ observed)."""

    overlap: int
    mean: float
    low: int
    high: int
    p: float


@functools.lru_cache(maxsize=65536)
def _layer_pmf(d_model: int, size_a: int, size_b: int) -> np.ndarray:
    """pmf of the overlap of two random sets of sizes ``size_a``, ``size_b`` among ``d_model`` neurons."""
    from scipy import stats

    return stats.hypergeom.pmf(np.arange(min(size_a, size_b) + 1), d_model, size_a, size_b)


def overlap_null(a: np.ndarray, b: np.ndarray, level: float) -> OverlapNull:
    """Exact null of the overlap of ``a`` with a layer-matched random ``b`` (both bool (n_layers, d_model))."""
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    d_model = a.shape[1]
    pmf = np.ones(1)
    for size_a, size_b in zip(a.sum(axis=1).tolist(), b.sum(axis=1).tolist()):
        if size_a and size_b:
            pmf = np.convolve(pmf, _layer_pmf(d_model, size_a, size_b))
    overlap = int((a & b).sum())
    cdf = np.cumsum(pmf)
    tail = (1 - level) / 2
    support = np.arange(len(pmf))
    return OverlapNull(overlap, float((support * pmf).sum()), int(np.searchsorted(cdf, tail)),
                       int(np.searchsorted(cdf, 1 - tail)), float(min(1.0, pmf[overlap:].sum())))


def _iou(overlap: float, a: np.ndarray, b: np.ndarray) -> float:
    union = int(a.sum()) + int(b.sum()) - overlap
    return overlap / union if union > 0 else 0.0


def recurrence_table(names: list[str], templates: dict[str, np.ndarray], massive: np.ndarray,
                     first_token: dict[str, np.ndarray], *, level: float) -> pd.DataFrame:
    """Every pair of templates of different corpora (Table 2) with its exact layer-matched null.

    templates : {corpus: bool (n_templates, n_layers, d_model)}; massive : bool (n_layers, d_model);
    first_token : {corpus: bool (n_templates,)}, True for templates whose source peaks at the first token.
    Columns: the pair (templates numbered from 1), ``iou``, ``chance_iou``, ``p_value``; the same without
    massive-channel neurons (``*_without_massive``, with the null's central ``level`` range ``chance_low/high_*``); flags ``massive_1/2``, ``first_token_1/2``; ``eligible``
    (neither template first-token-dominated: only such a pair, judged without massive channels, may count).
    """
    rows = []
    keep = ~np.asarray(massive, dtype=bool)
    for x, y in itertools.combinations(names, 2):
        for (i, a), (j, b) in itertools.product(enumerate(templates[x]), enumerate(templates[y])):
            whole, trimmed = overlap_null(a, b, level), overlap_null(a & keep, b & keep, level)
            rows.append({
                "corpus_1": x, "template_1": i + 1, "corpus_2": y, "template_2": j + 1,
                "iou": _iou(whole.overlap, a, b), "chance_iou": _iou(whole.mean, a, b), "p_value": whole.p,
                "iou_without_massive": _iou(trimmed.overlap, a & keep, b & keep),
                "chance_iou_without_massive": _iou(trimmed.mean, a & keep, b & keep),
                "chance_low_without_massive": _iou(trimmed.low, a & keep, b & keep),
                "chance_high_without_massive": _iou(trimmed.high, a & keep, b & keep),
                "p_without_massive": trimmed.p,
                "massive_1": bool((a & ~keep).any()), "massive_2": bool((b & ~keep).any()),
                "first_token_1": bool(first_token[x][i]), "first_token_2": bool(first_token[y][j]),
            })
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    table["eligible"] = ~table["first_token_1"] & ~table["first_token_2"]
    return table


def match_nulls(urls: list[str], out, section: MatchSection, *, massive: np.ndarray, anatomy: pd.DataFrame, seed: int,
                consistency: pd.DataFrame | None = None) -> dict:
    """Write ``counterparts_null.csv`` and ``recurrence.csv`` into ``out`` (the run's match folder).

    config : the ``match`` section (its threshold, sidedness, ``iou``, ``permutations`` and ``first_token_share``).
    anatomy : ``network_anatomy`` rows with a ``corpus`` column (``first_token_peak_share`` ≥
    ``config.first_token_share`` flags a template as first-token-dominated); consistency: the match stage's
    consistency rows (default: ``consistency.csv`` read from ``out``, a folder or URL)."""
    import dask
    import scipy.sparse as sp


    permutations, first_token_share = section.permutations, section.first_token_share
    out = str(out)
    if consistency is None:
        fs, folder = filesystem(out)
        with fs.open(f"{folder}/consistency.csv", "rb") as handle:
            consistency = pd.read_csv(handle)
    corpora = {c.name: c for c in (load_networks(url, section) for url in urls)}
    null = {}
    for name, corpus in corpora.items():
        blocks = dask.compute(*corpus.individual.to_delayed().ravel())
        maps = sp.vstack([sp.csr_array(b) for b in blocks], format="csr") if blocks else sp.csr_array((0, 1))
        null[name] = counterpart_null(corpus.templates, maps, section.iou, permutations, seed)
    counterparts = counterpart_table(consistency[consistency["corpus"].isin(list(null))], null, seed)
    write_file(out, FILES.counterparts_null.name, counterparts.to_csv(index=False))
    share = anatomy.get("first_token_peak_share")
    first = {name: (anatomy[anatomy["corpus"] == name].sort_values("template")["first_token_peak_share"]
                    .fillna(0).to_numpy() >= first_token_share) if share is not None
             else np.zeros(len(c.templates), dtype=bool) for name, c in corpora.items()}
    recurrence = recurrence_table(list(corpora), {n: c.templates for n, c in corpora.items()}, massive, first,
                                  level=CHANCE_LEVEL)
    write_file(out, FILES.recurrence.name, recurrence.to_csv(index=False))
    return {"counterparts_null": counterparts, "recurrence": recurrence}
