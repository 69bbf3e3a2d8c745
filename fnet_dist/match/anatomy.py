"""Massive-activation channels of a model, and how much of each network sits on them.

A few residual dimensions carry activations that dwarf the rest (Sun et al. 2024, "Massive activations in
large language models"): SmolLM2's layer-11 MLP output reaches ~2.3e4 in dimension 507 at the first token,
where the layer's median |activation| is ~0.8. Masks that hit such channels break the model whatever they mean.

Rule (configurable): channel (layer, neuron) is *massive* when its peak |activation| over all real tokens is
at least ``min_value`` (``match.massive_min_value``) and at least ``ratio`` (``match.massive_ratio``) times the
median |activation| of its layer (median over real tokens and channels of a token subsample).

- ``MassiveRule(ratio, min_value, seed, median_tokens)``: the rule's parameters; ``MassiveRule.of(match, seed)``:
  the ``match`` section's rule for an activations store recorded with ``seed``.
- ``scan_channels(ds, rule, client=None, url=None) -> ChannelScan``: one read of each sample's real tokens gives every channel's peak
  |activation|, the layer medians, where the channels peak and the tokens that carry them, and every channel's
  mean |activation| and kurtosis (the activation-matched draws' statistics, ``fnet_dist.evaluate.draws``).
- ``massive_channels(activations, rule) -> DataFrame``: one row per massive channel, with where it peaks
  (share of samples peaking at token 0, the token ids that carry it).
- ``massive_mask(table, shape) -> ndarray bool (n_layers, d_model)``.
- ``network_anatomy(networks, massive, threshold=, two_sided=, activations=) -> DataFrame``: per template, its neurons on massive
  channels, layer spread and how concentrated its source signal is on one token
  (``fnet_dist.core.signals``: ``token_sources``, ``peak_token_share``).
- ``source_concentration(maps, activations, samples)``: that concentration for any group z-maps (the split halves').
- ``write_anatomy(networks, out, params)``: the match stage's anatomy files (massive channels of every corpus,
  their union as one mask, each template against it, each corpus's channel statistics).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd

from storage_schemas import ACTIVATIONS, NETWORKS

from ..core.config import MatchSection
from ..core.errors import InputError
from ..core.networks import binarize
from ..core.signals import peak_token_share, token_sources
from ..store.storage import open_store
from .io import FILES, write_file

__all__ = [
    "ChannelScan", "MassiveRule", "massive_channels", "massive_mask", "network_anatomy", "scan_channels", "source_concentration",
    "write_anatomy",
]


@dataclass(frozen=True)
class MassiveRule:
    """peak ≥ min_value and peak ≥ ratio × median |activation| of the layer (median from ``median_tokens`` tokens
    drawn with ``seed``, the activations store's)."""

    ratio: float
    min_value: float
    seed: int
    median_tokens: int = 1024

    @classmethod
    def of(cls, match: MatchSection, seed: int) -> MassiveRule:
        """The ``match`` section's rule (``massive_ratio``, ``massive_min_value``) for a store recorded with ``seed``."""
        return cls(ratio=match.massive_ratio, min_value=match.massive_min_value, seed=seed)

    def check(self) -> MassiveRule:
        for name, field in (("ratio", "massive_ratio"), ("min_value", "massive_min_value")):
            value = getattr(self, name)
            if not np.isfinite(value) or value <= 0:
                raise InputError(f"massive-channel {name} {value!r} must be a positive number (match.{field})")
        if self.median_tokens < 1:
            raise InputError(f"median_tokens {self.median_tokens!r} must be ≥ 1")
        return self


def _open(activations):
    if isinstance(activations, str):


        return open_store(activations, ACTIVATIONS)
    return activations


class ChannelScan(NamedTuple):
    """What one pass over an activations store's real tokens gives (see ``scan_channels``)."""

    peak: np.ndarray               # (n_layers, d_model) float32: peak |activation| over every real token
    layer_median: np.ndarray       # (n_layers,) float32: median |activation| of a token subsample
    first_token_share: np.ndarray  # (n_layers, d_model): share of samples whose peak |activation| is at token 0
    hits: tuple[np.ndarray, np.ndarray, np.ndarray]  # layer, neuron, token id of every |activation| ≥ min_value
    mean_abs: np.ndarray           # (n_layers, d_model) float64: mean |activation| over every real token
    kurtosis: np.ndarray           # (n_layers, d_model) float64: kurtosis (not excess) over every real token


def _median_tokens(n_tokens: np.ndarray, n_tokens_wanted: int, seed: int) -> dict[int, np.ndarray]:
    """Up to ``n_tokens_wanted`` random real tokens for the layer medians: {sample: token positions}."""
    pairs = np.array([(s, t) for s in range(len(n_tokens)) for t in range(int(n_tokens[s]))])
    if len(pairs) == 0:
        raise InputError("the activations store has no real tokens; record a corpus first")
    rng = np.random.default_rng(seed)
    chosen = pairs[np.sort(rng.choice(len(pairs), size=min(n_tokens_wanted, len(pairs)), replace=False))]
    return {int(sample): chosen[chosen[:, 0] == sample, 1] for sample in np.unique(chosen[:, 0])}


def _scan_sample(values, token_ids: np.ndarray, rows: np.ndarray, min_value: float) -> tuple:
    """One sample's part of the scan, from its real tokens ``values`` (n, n_layers, d_model): the sums of |a|, a … a⁴
    (5, n_layers, d_model) float64, its peak |a| (n_layers, d_model) float32, whether that peak is at token 0, its
    ``rows`` of the median's subsample, and its (layer, neuron, token id) entries ≥ ``min_value``."""
    values = np.asarray(values)
    moments = np.zeros((5, *values.shape[1:]))
    _add_moments(moments, values)
    block = np.abs(values.astype(np.float32))
    top = block.max(axis=0)
    layer, neuron = np.nonzero(top >= min_value)  # the few channels that reach min_value at all
    row, channel = np.nonzero(block[:, layer, neuron] >= min_value)  # in token, then channel order
    return moments, top, block.argmax(axis=0) == 0, block[rows], (layer[channel], neuron[channel], token_ids[row])


def _scan_stored(url: str, sample: int, n: int, token_ids: np.ndarray, rows: np.ndarray, min_value: float) -> tuple:
    """``_scan_sample`` of sample ``sample``'s ``n`` real tokens, read here from the activations store at ``url`` (a Dask
    task reads its own sample: no sample travels through the process that submits the tasks)."""
    import zarr

    return _scan_sample(zarr.open_group(url, mode="r")["activation"][sample, :n], token_ids, rows, min_value)


def scan_channels(ds, rule: MassiveRule, client=None, url: str | None = None) -> ChannelScan:
    """One pass over the real tokens of every sample (padding is never read): each sample's (tokens, n_layers,
    d_model) block is read once and gives its peaks, its argmax-at-token-0 flags, its share of the median's
    token subsample and its entries ≥ ``rule.min_value`` (``_scan_sample``). With a Dask ``client`` each sample is
    a task on the workers that reads its sample from the store at ``url`` (``ds``'s) and its part is added here as it
    completes (memory: a sample per worker, the sums here); without one, the samples are read here one after another."""
    n_tokens, token_ids = ds["n_tokens"].values.astype(int), ds["token_id"].values
    wanted = _median_tokens(n_tokens, rule.median_tokens, rule.seed)
    shape = (ds.sizes["layer"], ds.sizes["neuron"])
    peak, first = np.zeros(shape, np.float32), np.zeros(shape, np.int64)
    moments = np.zeros((5, *shape))  # sums of |a|, a, a², a³, a⁴
    samples = [(sample, n) for sample, n in enumerate(n_tokens.tolist()) if n]
    args = {sample: (token_ids[sample, :n], wanted.get(sample, np.zeros(0, np.int64)), rule.min_value)
            for sample, n in samples}
    if client is None or url is None:
        parts = ((s, _scan_sample(ds["activation"][s, :n].values, *args[s])) for s, n in samples)
    else:
        from distributed import as_completed

        futures = {client.submit(_scan_stored, url, s, n, *args[s], pure=False): s for s, n in samples}
        parts = ((futures.pop(f), part) for f, part in as_completed(list(futures), with_results=True))
    subsample, hits = {}, {}
    for sample, (sums, top, at_first, rows, found) in parts:
        moments += sums
        np.maximum(peak, top, out=peak)
        first += at_first
        subsample[sample], hits[sample] = rows, found
    order = sorted(hits)  # hits in sample, then token order (the carriers' counts keep it)
    stacked = np.concatenate([subsample[s] for s in order], axis=0)  # (≤ median_tokens, n_layers, d_model)
    median = np.array([np.median(stacked[:, layer]) for layer in range(shape[0])], dtype=np.float32)  # a layer's copy at a time
    hits = tuple(np.concatenate([hits[s][part] for s in order]).astype(np.int64) for part in range(3))
    mean_abs, kurtosis = _moment_statistics(moments, int(n_tokens.sum()))
    return ChannelScan(peak, median, first / max(len(n_tokens), 1), hits, mean_abs, kurtosis)


def _add_moments(moments: np.ndarray, values: np.ndarray, rows: int = 64) -> None:
    """Add the sums over tokens of |a|, a, a², a³, a⁴ of ``values`` (n_tokens, ...) to ``moments`` (5, ...), in float64,
    ``rows`` tokens at a time (memory: a block, not the sample, in float64) and by products (``x ** 4`` on float64 is
    ~30 times slower: at a 7B model's 100,352 neurons it made the scan 11 s per sample of 768 tokens)."""
    for first in range(0, len(values), rows):
        x = values[first:first + rows].astype(np.float64)
        square = x * x
        moments[0] += np.abs(x).sum(axis=0)
        moments[1] += x.sum(axis=0)
        moments[2] += square.sum(axis=0)
        moments[3] += (square * x).sum(axis=0)
        moments[4] += (square * square).sum(axis=0)


def _moment_statistics(moments: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean |a| and kurtosis E[(a - μ)⁴] / σ⁴ from the sums of |a|, a, a², a³, a⁴ (shape (5, ...)) of ``count``
    values; a constant channel has kurtosis NaN."""
    m_abs, m1, m2, m3, m4 = moments / max(count, 1)
    variance = m2 - m1 ** 2
    central4 = m4 - 4 * m1 * m3 + 6 * m1 ** 2 * m2 - 3 * m1 ** 4
    with np.errstate(divide="ignore", invalid="ignore"):
        kurtosis = np.where(variance > 0, central4 / variance ** 2, np.nan)
    return m_abs, kurtosis


def massive_channels(activations, rule: MassiveRule, top_tokens: int = 5, scan: ChannelScan | None = None) -> pd.DataFrame:
    """Massive channels of an activations store (URL or opened Dataset), strongest first.

    Columns: layer, neuron, peak, layer_median, ratio, first_token_share (share of samples whose peak |a|
    in this channel is at token 0), carrier_tokens (the most frequent token ids where |a| ≥ min_value, as
    "id:count" text), plus the rule's parameters in ``DataFrame.attrs``. ``scan``: the store's ``scan_channels``
    when already made.
    """
    rule.check()
    scan = scan if scan is not None else scan_channels(_open(activations), rule)
    peak, median = scan.peak, scan.layer_median
    ratio = peak / np.maximum(median[:, None], np.finfo(np.float32).tiny)
    layers, neurons = np.nonzero((peak >= rule.min_value) & (ratio >= rule.ratio))
    index = {(int(layer), int(neuron)): i for i, (layer, neuron) in enumerate(zip(layers, neurons))}
    carriers = [Counter() for _ in index]
    for layer, neuron, token in zip(*(part.tolist() for part in scan.hits)):  # in sample, then token order
        if (i := index.get((layer, neuron))) is not None:
            carriers[i][token] += 1
    rows = [{
        "layer": int(layer), "neuron": int(neuron), "peak": float(peak[layer, neuron]),
        "layer_median": float(median[layer]), "ratio": float(ratio[layer, neuron]),
        "first_token_share": float(scan.first_token_share[layer, neuron]),
        "carrier_tokens": " ".join(f"{tid}:{count}" for tid, count in carriers[i].most_common(top_tokens)),
    } for i, (layer, neuron) in enumerate(zip(layers, neurons))]
    table = pd.DataFrame(rows, columns=["layer", "neuron", "peak", "layer_median", "ratio", "first_token_share", "carrier_tokens"])
    table = table.sort_values("peak", ascending=False, ignore_index=True)
    table.attrs.update(asdict(rule), n_layers=int(peak.shape[0]), d_model=int(peak.shape[1]))
    return table


def massive_mask(table: pd.DataFrame, shape: tuple[int, int]) -> np.ndarray:
    """Boolean (n_layers, d_model) array, True on the channels listed in a ``massive_channels`` table."""
    mask = np.zeros(shape, dtype=bool)
    if len(table):
        layers, neurons = table["layer"].to_numpy(), table["neuron"].to_numpy()
        if layers.max() >= shape[0] or neurons.max() >= shape[1]:
            raise InputError(f"massive-channel table reaches ({layers.max()}, {neurons.max()}), outside the mask shape {shape}")
        mask[layers, neurons] = True
    return mask


def network_anatomy(networks, massive: np.ndarray, *, threshold: float, two_sided: bool, activations=None,
                    samples: int = 20) -> pd.DataFrame:
    """Per group template (``template``, numbered from 1 as in every other table): size, neurons on massive
    channels, layer spread, source concentration.

    networks : a networks store (URL or Dataset) with ``group_map(component, layer, neuron)``.
    massive : bool (n_layers, d_model) from ``massive_mask``.
    threshold, two_sided : the ``match`` section's network rule.
    activations : optional activations store; with it, each template's source over the tokens of up to
    ``samples`` group-split samples gives ``peak_token_share`` (mean share of energy on one token) and
    ``first_token_peak_share`` (share of samples whose source peaks at token 0).
    """

    if isinstance(networks, str):


        networks = open_store(networks, NETWORKS)
    maps = networks["group_map"].values  # (component, layer, neuron)
    if maps.shape[1:] != massive.shape:
        raise InputError(f"networks of shape {maps.shape[1:]} and a massive-channel mask of shape {massive.shape} "
                         f"come from different models; use stores of the same model")
    nets = binarize(maps, threshold, two_sided)
    sizes = nets.sum(axis=(1, 2))
    per_layer = nets.sum(axis=2)
    on_massive = (nets & massive[None]).sum(axis=(1, 2))
    table = pd.DataFrame({
        "template": np.arange(1, len(maps) + 1),  # numbered from 1, as in the match tables and conditions
        "size": sizes,
        "share": sizes / nets[0].size,
        "on_massive": on_massive,
        "massive_share": np.where(sizes > 0, on_massive / np.maximum(sizes, 1), 0.0),
        "layers_spanned": (per_layer > 0).sum(axis=1),
        "top_layer": per_layer.argmax(axis=1),
        "top_layer_share": np.where(sizes > 0, per_layer.max(axis=1) / np.maximum(sizes, 1), 0.0),
    })
    if activations is not None:
        table["peak_token_share"], table["first_token_peak_share"] = source_concentration(maps, activations, samples)
    return table


def source_concentration(maps: np.ndarray, activations, samples: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Where group z-maps ``maps`` (k, n_layers, d_model) put their sources over the tokens of up to ``samples``
    group-split samples of ``activations`` (a store URL or Dataset): per map, the mean share of its source's energy
    on one token and the share of samples whose source peaks at token 0; (k,) each, NaN without samples."""
    ds = _open(activations)
    group = np.nonzero(ds["split"].values == "group")[0][:samples]
    flat = np.nan_to_num(np.asarray(maps, dtype=np.float64).reshape(len(maps), -1))
    shares, firsts = [], []
    for sample in group.tolist():
        n = int(ds["n_tokens"].values[sample])
        x = ds["activation"][sample, :n].values.reshape(n, -1)
        sources = token_sources(x, flat, "spatial", dtype=np.float64).T  # group templates: CanICA is spatial
        shares.append(peak_token_share(sources))
        firsts.append(np.abs(sources).argmax(axis=1) == 0)
    if not shares:
        return np.full(len(maps), np.nan), np.full(len(maps), np.nan)
    return np.mean(shares, axis=0), np.mean(firsts, axis=0)


def write_anatomy(networks: list[str], out: str, params, client=None) -> np.ndarray:
    """Massive channels over the activations stores behind ``networks`` (their union, one mask for all corpora)
    and each corpus's templates against them; writes ``massive_channels.csv``, ``network_anatomy.csv`` and
    ``massive_mask.npy`` under ``out`` (the match results folder), and ``channel_stats.npz`` (each corpus's
    ``mean_abs/<corpus>`` and ``kurtosis/<corpus>``). ``params``: the ``match`` config section; ``client``: the
    Dask client the scans run on (one task per sample), else they run here.
    Returns the mask, bool of shape (n_layers, d_model)."""
    import io



    stores = [open_store(url, NETWORKS) for url in networks]
    sources = [str(ds.attrs["activations"]) for ds in stores]
    channels, statistics = [], {}
    for ds, activations in zip(stores, sources):
        seed = int(_open(activations).attrs.get("seed", 0))
        rule = MassiveRule.of(params, seed)
        scan = scan_channels(_open(activations), rule.check(), client, url=activations)
        table = massive_channels(activations, rule, scan=scan)
        statistics |= {f"mean_abs/{ds.attrs['corpus']}": scan.mean_abs, f"kurtosis/{ds.attrs['corpus']}": scan.kurtosis}
        channels.append(table.assign(corpus=str(ds.attrs["corpus"])))
        shape = (table.attrs["n_layers"], table.attrs["d_model"])
    merged = pd.concat(channels, ignore_index=True)
    union = massive_mask(merged, shape)
    anatomy = [network_anatomy(ds, union, activations=activations, threshold=params.threshold,
                               two_sided=params.two_sided).assign(corpus=str(ds.attrs["corpus"]))
               for ds, activations in zip(stores, sources)]
    write_file(out, FILES.massive_channels.name, merged.to_csv(index=False))
    write_file(out, FILES.network_anatomy.name, pd.concat(anatomy, ignore_index=True).to_csv(index=False))
    buffer = io.BytesIO()
    np.save(buffer, union, allow_pickle=False)
    write_file(out, FILES.massive_mask.name, buffer.getvalue())
    buffer = io.BytesIO()
    np.savez(buffer, **statistics)
    write_file(out, FILES.channel_stats.name, buffer.getvalue())
    return union
