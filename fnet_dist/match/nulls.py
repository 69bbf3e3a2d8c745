"""Null models for the match stage's claims: how random networks of the same size and layer spread would fare.

A random network keeps a template's neuron count in every layer and moves each neuron within its layer (a random
permutation of the layer's neurons). Two kinds (``NULL_KINDS``), both in every table; the verdicts use the stricter:

- ``uniform``: anywhere in the layer. Neurons that any ICA picks (high-variance, outlier, sink neurons) are then no
  likelier in a random network than any other, so a template made of them beats it whatever the model computes.
- ``frequency``: only among the neurons of its layer that about as many individual maps hold (strata
  ⌊log2(1 + count)⌋, ``frequency_strata``): a template's hubs stay hubs, and what is left to beat chance is how
  its neurons occur *together*.

- ``neuron_frequency(maps, shape)``, ``frequency_strata(frequency, massive)``, ``uniform_strata(shape, massive)``.
- ``layer_permutations(shape, n_draws, seed, strata, chunk)``: seeded permutations within strata, chunk by chunk:
  arrays of shape (≤ chunk, n_layers, d_model); one draw serves every template. ``moved_networks``: templates moved.
- ``counterpart_null(templates, maps, cuts, n_draws, seed, n_components=, strata=) -> CounterpartNull``:
  counterparts (maps with IoU > cut) and samples with one, of the random networks (sparse kernel of
  ``fnet_dist.match.iou``).
- ``counterpart_table(consistency, nulls, seed)``: each template against both nulls, samples as the unit (Tables 1, 6-8).
- ``overlap_null(a, b, level) -> OverlapNull``: the exact uniform null of |a ∩ b| (a sum over layers of
  hypergeometric counts), with the p-value of the observed overlap.
- ``recurrence_table(names, templates, massive, first_token, level)``: every cross-corpus template pair's IoU and
  exact p-value, with and without massive-channel neurons, flags for massive-channel and first-token-dominated
  templates, and ``eligible`` (neither template first-token-dominated).
- ``recurrence_statistic(networks, corpus_of)``, ``recurrence_summary(...)``: recurrence as an estimate — the mean,
  over every template that may count and every other corpus, of its best IoU there (massive channels left out) —
  against both nulls (``recurrence_null``).
- ``match_nulls(urls, out, section, *, massive, anatomy, seed)``: the tables into ``out`` (the run's match folder).
"""
from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..core.config import MatchSection
from ..core.errors import InputError
from ..core.networks import first_token_flags, flatten_networks
from ..core.stats import monte_carlo_p
from ..store.storage import filesystem
from .io import FILES, load_networks, write_file
from .iou import iou_from_counts, sparse_counts, template_table

__all__ = [
    "CHANCE_LEVEL",
    "NULL_KINDS",
    "CounterpartNull",
    "OverlapNull",
    "best_matches",
    "counterpart_null",
    "counterpart_table",
    "frequency_strata",
    "iou_matrix",
    "corpus_maps",
    "paired_intersections",
    "layer_permutations",
    "match_nulls",
    "moved_networks",
    "neuron_frequency",
    "overlap_null",
    "recurrence_null",
    "recurrence_statistic",
    "recurrence_summary",
    "recurrence_table",
    "uniform_strata",
]

# the central range of chance the recurrence table shows (``chance_low/high_without_massive``); the match stage
# reads only the match section, so this is not report.level (the recurrence finding's interval is this range)
CHANCE_LEVEL = 0.95
NULL_KINDS = {
    "uniform": "random networks of the template's size and layer profile, neurons uniform within each layer",
    "frequency": "random networks of the template's size and layer profile in which each neuron is swapped for one "
                 "of its layer with about as many individual maps holding it (⌊log2(1 + count)⌋ strata): the hub, "
                 "outlier and sink neurons any ICA picks stay as common as in the template",
}


def neuron_frequency(maps, shape: tuple[int, int]) -> np.ndarray:
    """How many of the binary ``maps`` (CSR (n_maps, n_layers * d_model)) hold each neuron: (n_layers, d_model) int64."""
    import scipy.sparse as sp

    counts = np.asarray(sp.csr_array(maps).sum(axis=0)).ravel() if maps.shape[0] else np.zeros(int(np.prod(shape)))
    return counts.astype(np.int64).reshape(shape)


def frequency_strata(frequency: np.ndarray, massive: np.ndarray | None = None) -> np.ndarray:
    """Strata of the frequency-preserving null: ⌊log2(1 + map count)⌋ per neuron, (n_layers, d_model) int — neurons no
    map holds, rare ones, common ones and hubs (the sink and outlier neurons any ICA picks) apart, scale-free;
    ``massive`` neurons (bool, same shape) get a stratum of their own (-1)."""
    strata = np.floor(np.log2(1.0 + np.asarray(frequency, dtype=np.float64))).astype(np.int64)
    return np.where(massive, -1, strata) if massive is not None else strata


def uniform_strata(shape: tuple[int, int], massive: np.ndarray | None = None) -> np.ndarray:
    """One stratum per layer (the uniform null), ``massive`` neurons apart (-1): (n_layers, d_model) int."""
    strata = np.zeros(shape, dtype=np.int64)
    return np.where(massive, -1, strata) if massive is not None else strata


def layer_permutations(shape: tuple[int, int], n_draws: int, seed: int, strata: np.ndarray | None = None,
                       chunk: int = 256):
    """Yield arrays (≤ ``chunk``, n_layers, d_model): for each draw, a random permutation of each layer's neuron
    indices that maps every neuron to one of its own stratum (``strata`` (n_layers, d_model) int labels; None: one
    stratum per layer), ``n_draws`` in all, from ``seed``. A network moved through it keeps its size, its count
    per layer and per stratum, and is otherwise uniformly random."""
    if n_draws < 1:
        raise InputError(f"n_draws {n_draws!r} must be ≥ 1 (99 or more for a usable p-value)")
    rng = np.random.default_rng(seed)
    n_layers, d_model = shape
    dtype = np.int16 if d_model < 2 ** 15 else np.int32
    base = np.arange(d_model, dtype=dtype)
    if strata is not None:
        strata = np.asarray(strata, dtype=np.int64)
        if strata.shape != tuple(shape):
            raise InputError(f"strata of shape {strata.shape} must have the networks' shape {tuple(shape)}")
        ranked = np.argsort(strata, axis=1, kind="stable")          # each layer's neurons, stratum by stratum
        offset = (strata - strata.min()).astype(np.float64)[np.arange(n_layers)[:, None], ranked]
    for start in range(0, n_draws, chunk):
        count = min(chunk, n_draws - start)
        if strata is None:
            yield rng.permuted(np.broadcast_to(base, (count * n_layers, d_model)), axis=1).reshape(count, n_layers, d_model)
            continue
        keys = offset + rng.random((count, n_layers, d_model))      # sorts stratum by stratum, shuffled within
        shuffled = np.take_along_axis(np.broadcast_to(ranked, keys.shape), np.argsort(keys, axis=2), axis=2)
        permutation = np.empty((count, n_layers, d_model), dtype=dtype)
        np.put_along_axis(permutation, np.broadcast_to(ranked, keys.shape), shuffled.astype(dtype), axis=2)
        yield permutation


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


def moved_networks(templates: np.ndarray, permutations: np.ndarray):
    """CSR (n_draws * n_templates, n_layers * d_model), draw-major: rows ``r * n_templates`` to
    ``(r + 1) * n_templates - 1`` are the templates moved by permutation ``r`` (``paired_intersections`` reads
    them draw by draw)."""
    n_templates, n_draws = len(templates), len(permutations)
    order = (np.arange(n_templates)[None, :] * n_draws + np.arange(n_draws)[:, None]).ravel()
    return _permuted_networks(templates, permutations)[order]


def paired_intersections(a, n_a: int, b, n_b: int, count: int) -> np.ndarray:
    """|a_i ∩ b_j| of the same draw, for ``count`` draws at once: (count, n_a, n_b) int. ``a``, ``b``: draw-major CSR
    of ``moved_networks`` (count * n_a and count * n_b rows). Each draw's neurons are offset into a column range of
    their own, so one sparse product holds only the same-draw blocks."""
    import scipy.sparse as sp

    def spread(moved, n: int):
        moved = sp.csr_array(moved)
        n_neurons = moved.shape[1]
        rows = np.repeat(np.arange(moved.shape[0]), np.diff(moved.indptr))
        columns = moved.indices.astype(np.int64) + (rows // max(n, 1)) * n_neurons
        return sp.csr_array((np.ones(len(columns), np.float32), (rows, columns)), shape=(moved.shape[0], count * n_neurons))

    product = (spread(a, n_a) @ spread(b, n_b).T).tocoo()
    out = np.zeros((count, n_a, n_b))
    out[product.row // n_a, product.row % n_a, product.col % n_b] = product.data
    return out


@dataclass(frozen=True)
class CounterpartNull:
    """Random networks' counterparts: ``counterparts`` (n_cuts, n_templates, n_draws) maps with IoU above each cut,
    ``samples`` (n_cuts, n_templates, n_draws) samples with at least one such map."""

    counterparts: np.ndarray
    samples: np.ndarray


def counterpart_null(templates: np.ndarray, maps, cuts, n_draws: int, seed: int, *, n_components: int,
                     strata: np.ndarray | None = None) -> CounterpartNull:
    """Counterparts of random networks of each template's size and layer profile (``layer_permutations``: uniform
    within layers, or within ``strata`` — ``frequency_strata`` for the frequency-preserving null).

    templates : bool (n_templates, n_layers, d_model); maps : the individual networks, (n_samples * n_components,
    n_layers * d_model) CSR, sample-major (or anything ``fnet_dist.match.iou.sparse_counts`` takes); cuts : one
    IoU cut-off or several (a counterpart has IoU > cut); n_draws: ``match.permutations``.
    """
    templates = np.asarray(templates, dtype=bool)
    cuts = np.atleast_1d(np.asarray(cuts, dtype=float))
    n_maps = maps.shape[0]
    if n_components < 1 or n_maps % n_components:
        raise InputError(f"{n_maps} individual maps are not whole samples of {n_components} components")
    shape = (len(cuts), len(templates), n_draws)
    counterparts, samples = np.empty(shape, dtype=np.int64), np.empty(shape, dtype=np.int64)
    sizes = flatten_networks(templates).sum(axis=1)
    done = 0
    for permutations in layer_permutations(templates.shape[1:], n_draws, seed, strata):
        count = len(permutations)
        networks = _permuted_networks(templates, permutations)
        counts = sparse_counts(template_table(networks), networks.shape[0], maps)
        iou = iou_from_counts(counts[:-1], np.repeat(sizes, count), counts[-1])
        for c, cut in enumerate(cuts):
            hits = iou > cut                                                  # (n_templates * count, n_maps)
            per_sample = hits.reshape(len(hits), n_maps // n_components, n_components).any(axis=2)
            counterparts[c, :, done:done + count] = hits.sum(axis=1).reshape(len(templates), count)
            samples[c, :, done:done + count] = per_sample.sum(axis=1).reshape(len(templates), count)
        done += count
    return CounterpartNull(counterparts, samples)


def counterpart_table(consistency: pd.DataFrame, nulls: dict[str, dict[str, CounterpartNull]], seed: int) -> pd.DataFrame:
    """``consistency`` (one row per corpus and template) with each template's nulls (``nulls[corpus][kind]``, kinds
    of ``NULL_KINDS``, at the stage's one IoU cut): per kind, the random networks' counterparts (``<kind>_mean``,
    97.5th percentile ``<kind>_high``, Monte Carlo ``<kind>_p``) and samples with a counterpart (``<kind>_samples_mean``,
    ``<kind>_samples_high``, ``<kind>_samples_p``); ``p_value``: the stricter (larger) of the kinds' p-values on
    samples with a counterpart — samples, not maps, are the unit; ``null``: the kind that gave it."""
    frames = []
    for corpus, rows in consistency.groupby("corpus", sort=False):
        index = rows["template"].to_numpy() - 1
        columns: dict[str, np.ndarray] = {}
        for kind, null in nulls[corpus].items():
            counts, samples = null.counterparts[0][index], null.samples[0][index]
            columns |= {f"{kind}_mean": counts.mean(axis=1), f"{kind}_high": np.percentile(counts, 97.5, axis=1),
                        f"{kind}_p": monte_carlo_p(rows["counterparts"].to_numpy(), counts),
                        f"{kind}_samples_mean": samples.mean(axis=1),
                        f"{kind}_samples_high": np.percentile(samples, 97.5, axis=1),
                        f"{kind}_samples_p": monte_carlo_p(rows["samples_with_counterpart"].to_numpy(), samples)}
        kinds = list(nulls[corpus])
        p = np.stack([columns[f"{k}_samples_p"] for k in kinds])
        frames.append(rows.assign(**columns, permutations=samples.shape[1], seed=seed, p_value=p.max(axis=0),
                                  null=[kinds[i] for i in np.argmax(p, axis=0)]))
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


def iou_matrix(networks) -> np.ndarray:
    """(n, n) IoU between the rows of ``networks`` (n, n_neurons) bool, dense or scipy.sparse (0 where both are empty)."""
    import scipy.sparse as sp

    if sp.issparse(networks):
        rows = sp.csr_array(networks).astype(np.float32)
        inter = (rows @ rows.T).toarray()
    else:
        dense = np.asarray(networks).astype(np.float32)
        inter = dense @ dense.T
    sizes = np.diag(inter)
    union = sizes[:, None] + sizes[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def best_matches(networks: np.ndarray, corpus_of: np.ndarray) -> np.ndarray:
    """For each network and each *other* corpus, the best IoU with that corpus's networks: (n, n_corpora) with NaN
    on a network's own corpus. networks: bool (n, n_neurons); corpus_of: (n,) corpus index of each row."""
    iou = iou_matrix(networks)
    corpora = np.unique(corpus_of)
    best = np.full((networks.shape[0], int(corpus_of.max()) + 1 if len(corpus_of) else 0), np.nan)
    for c in corpora:
        columns = corpus_of == c
        best[:, c] = np.where(corpus_of != c, iou[:, columns].max(axis=1, initial=0.0), np.nan)
    return best


def recurrence_statistic(networks: np.ndarray, corpus_of: np.ndarray) -> float:
    """The recurrence summary: the mean, over every template and every other corpus, of the template's best IoU
    with that corpus's templates (all pairs count, none is picked by its p-value)."""
    best = best_matches(networks, corpus_of)
    return float(np.nanmean(best)) if np.isfinite(best).any() else float("nan")


def recurrence_null(templates: dict[str, np.ndarray], strata: dict[str, np.ndarray], n_draws: int, seed: int
                    ) -> np.ndarray:
    """The recurrence summary of random networks: every template of every corpus (bool (n_t, n_layers, d_model),
    already restricted to the neurons that count) moved within that corpus's ``strata`` (``layer_permutations``);
    (n_draws,) float — ``recurrence_statistic`` of each draw, computed for a chunk of draws at once."""
    names = list(templates)
    sizes = {n: flatten_networks(templates[n]).sum(axis=1).astype(float) for n in names}
    streams = [layer_permutations(templates[n].shape[1:], n_draws, seed + i, strata[n]) for i, n in enumerate(names)]
    out = np.empty(n_draws)
    done = 0
    for chunks in zip(*streams):
        count = len(chunks[0])
        moved = {n: moved_networks(templates[n], permutations) for n, permutations in zip(names, chunks)}
        best = []                                              # per (template, other corpus): (count,) best IoU
        for x in names:
            for y in names:
                if x == y:
                    continue
                inter = paired_intersections(moved[x], len(templates[x]), moved[y], len(templates[y]), count)
                union = sizes[x][None, :, None] + sizes[y][None, None, :] - inter
                iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
                best.append(iou.max(axis=2))                   # (count, n_x)
        out[done:done + count] = np.concatenate(best, axis=1).mean(axis=1)
        done += count
    return out


def recurrence_summary(templates: dict[str, np.ndarray], massive: np.ndarray, first_token: dict[str, np.ndarray],
                       frequency: dict[str, np.ndarray], n_draws: int, seed: int, level: float
                       ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Recurrence as an estimate (Table 2 summarised): every template that may count (not first-token-dominated,
    not empty without massive-channel neurons) against every other corpus's such templates, massive channels left
    out. Returns (per-template rows: corpus, template, other corpus, best IoU and its template; the null rows:
    per kind of ``NULL_KINDS`` the observed summary, the null's mean and central ``level`` range, the Monte Carlo p
    and the draws). frequency: {corpus: (n_layers, d_model) map counts}."""
    keep = ~np.asarray(massive, dtype=bool)
    names = list(templates)
    kept = {n: templates[n] & keep for n in names}
    use = {n: ~np.asarray(first_token[n], dtype=bool) & flatten_networks(kept[n]).any(axis=1) for n in names}
    counted = {n: kept[n][use[n]] for n in names if use[n].any()}
    if len(counted) < 2:
        return pd.DataFrame(), pd.DataFrame()
    order = list(counted)
    corpus_of = np.concatenate([np.full(len(counted[n]), i) for i, n in enumerate(order)])
    flat = np.concatenate([flatten_networks(counted[n]) for n in order])
    best = best_matches(flat, corpus_of)
    iou = iou_matrix(flat)
    numbers = np.concatenate([np.flatnonzero(use[n]) + 1 for n in order])
    rows = []
    for i in range(len(flat)):
        for c, other in enumerate(order):
            if c != corpus_of[i]:
                columns = np.flatnonzero(corpus_of == c)
                j = columns[np.argmax(iou[i, columns])]
                rows.append({"corpus": order[corpus_of[i]], "template": int(numbers[i]), "other_corpus": other,
                             "best_template": int(numbers[j]), "best_iou_without_massive": float(best[i, c])})
    observed = float(np.nanmean(best))
    tail = (1 - level) / 2 * 100
    nulls = []
    for kind in NULL_KINDS:  # massive-channel neurons are a stratum of their own: never drawn
        strata = {n: uniform_strata(keep.shape, ~keep) if kind == "uniform" else frequency_strata(frequency[n], ~keep)
                  for n in order}
        draws = recurrence_null(counted, strata, n_draws, seed)
        low, high = np.percentile(draws, [tail, 100 - tail])
        nulls.append({"null": kind, "observed": observed, "null_mean": float(draws.mean()), "null_low": float(low),
                      "null_high": float(high), "p_value": monte_carlo_p(observed, draws), "draws": n_draws,
                      "templates": len(flat), "corpora": len(order), "seed": seed})
    return pd.DataFrame(rows), pd.DataFrame(nulls)


def corpus_maps(corpus):
    """A corpus's individual maps (``CorpusNetworks.individual``) computed into one CSR array, sample-major."""
    import dask
    import scipy.sparse as sp

    blocks = dask.compute(*corpus.individual.to_delayed().ravel())
    n_neurons = corpus.n_layers * corpus.d_model
    return sp.vstack([sp.csr_array(b) for b in blocks], format="csr") if blocks else sp.csr_array((0, n_neurons))


def match_nulls(urls: list[str], out, section: MatchSection, *, massive: np.ndarray, anatomy: pd.DataFrame, seed: int,
                consistency: pd.DataFrame | None = None) -> dict:
    """Write the nulls of the structure claims into ``out`` (the run's match folder): ``counterparts_null.csv``
    (each template against the uniform and the frequency-preserving null, samples as the unit),
    ``recurrence.csv`` (every cross-corpus pair, exact uniform null), ``recurrence_summary.csv`` and
    ``recurrence_null.csv`` (the recurrence summary against both nulls).

    section : the ``match`` section (its threshold, sidedness, ``iou``, ``permutations`` and ``first_token_share``).
    anatomy : ``network_anatomy`` rows with a ``corpus`` column (``first_token_peak_share`` ≥
    ``section.first_token_share`` flags a template as first-token-dominated); consistency: the match stage's
    consistency rows (default: ``consistency.csv`` read from ``out``, a folder or URL)."""
    out = str(out)
    if consistency is None:
        fs, folder = filesystem(out)
        with fs.open(f"{folder}/consistency.csv", "rb") as handle:
            consistency = pd.read_csv(handle)
    corpora = {c.name: c for c in (load_networks(url, section) for url in urls)}
    nulls, frequency = {}, {}
    for name, corpus in corpora.items():
        maps = corpus_maps(corpus)
        frequency[name] = neuron_frequency(maps, corpus.shape)
        strata = {"uniform": None, "frequency": frequency_strata(frequency[name])}
        nulls[name] = {kind: counterpart_null(corpus.templates, maps, section.iou, section.permutations, seed,
                                              n_components=corpus.n_components, strata=strata[kind])
                       for kind in NULL_KINDS}
    counterparts = counterpart_table(consistency[consistency["corpus"].isin(list(nulls))], nulls, seed)
    write_file(out, FILES.counterparts_null.name, counterparts.to_csv(index=False))
    first = {name: first_token_flags(anatomy, name, len(c.templates), section.first_token_share)
             for name, c in corpora.items()}
    templates = {n: c.templates for n, c in corpora.items()}
    recurrence = recurrence_table(list(corpora), templates, massive, first, level=CHANCE_LEVEL)
    write_file(out, FILES.recurrence.name, recurrence.to_csv(index=False))
    summary, summary_null = recurrence_summary(templates, massive, first, frequency, section.summary_permutations,
                                               seed, CHANCE_LEVEL)
    write_file(out, FILES.recurrence_summary.name, summary.to_csv(index=False))
    write_file(out, FILES.recurrence_null.name, summary_null.to_csv(index=False))
    return {"counterparts_null": counterparts, "recurrence": recurrence, "recurrence_summary": summary,
            "recurrence_null": summary_null, "frequency": frequency, "first_token": first}
