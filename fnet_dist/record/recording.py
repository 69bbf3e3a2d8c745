"""The recording stage: every layer's MLP-block output, for every real token of a corpus sample, into a Zarr store.

- ``record_activations(model, corpus, out, ...) -> str``: record (or resume, or one shard of) a store;
  returns its URL. ``model`` is the ``model`` config section (``ModelSection``: what to load, how to place it, its
  hook module), a spec string (see ``fnet_dist.model.loading``) or a ``LoadedModel``.
- Parameters: the ``record`` config section (``fnet_dist.core.config.RecordSection``); ``content()`` is what the
  store's config hash covers.
- ``parse_shard("I/N") -> (I, N)``; ``token_budget(loaded, n_layers, d_model, store_dtype)``: padded tokens
  per batch that fit the free GPU memory.
- ``summarize_store(url) -> str`` (from ``fnet_dist.store.activations``).

Forward passes run the decoder only (no LM head), in batches of similar length with right padding;
only real tokens are written. Values that are not finite in the store dtype stop the run.
Batches hold ``batch_size`` texts, or as many as fit ``batch_tokens`` padded tokens (on CUDA by default
sized to the free GPU memory). On CUDA each batch's activations are copied to pinned host memory on a
side stream while the next batch runs, and a writer thread writes them meanwhile; on the CPU a batch is
copied and written in between forward passes (a thread would only take cores from the forward pass).
A model split by ``device_map`` records as the unsplit one: each layer's output is gathered from its device.
"""
from __future__ import annotations

import logging
from typing import Any, Iterator, Sequence

import numpy as np

from .. import __version__
from ..core.config import ModelSection, RecordSection, with_overrides
from ..core.corpora import Sample, load_corpus
from ..core.errors import InputError
from ..model.architectures import resolve_architecture
from ..model.hooks import capture_block_outputs
from ..model.loading import LoadedModel, load_model
from ..model.trace import layer_outputs
from ..store.activations import (
    ActivationArray,
    SampleWriter,
    config_hash,
    open_for_samples,
    refuse_foreign,
    summarize_store,
)
from ..store.locks import output_lock
from ..store.outputs import swap_in
from ..store.storage import normalize_url
from .sampling import select_samples, shuffle_tokens

__all__ = ["parse_shard", "record_activations", "summarize_store", "token_budget"]

log = logging.getLogger(__name__)


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` -> ``(I, N)`` with ``0 ≤ I < N``; a clear error otherwise."""
    index, slash, count = str(text).partition("/")
    if not slash or not index.strip().isdigit() or not count.strip().isdigit():
        raise InputError(f"malformed --shard {text!r}: expected I/N with whole numbers, e.g. 0/4 (shard 0 of 4)")
    return _check_shard((int(index), int(count)))


def _check_shard(shard: Any) -> tuple[int, int]:
    if not (isinstance(shard, (tuple, list)) and len(shard) == 2 and all(isinstance(v, (int, np.integer)) for v in shard)):
        raise InputError(f"malformed shard {shard!r}: expected (index, count), e.g. (0, 4)")
    index, count = int(shard[0]), int(shard[1])
    if count < 1 or not 0 <= index < count:
        raise InputError(f"bad shard {index}/{count}: expected I/N with N ≥ 1 and 0 ≤ I < N (shards are numbered from 0)")
    return index, count


def _batches(samples: Sequence[Sample], batch_size: int, batch_tokens: int) -> Iterator[list[Sample]]:
    """Samples sorted by length (longest first, then store position), cut into batches of ``batch_size``
    samples, or (``batch_tokens`` > 0) of as many as keep ``samples × longest ≤ batch_tokens`` (at least one)."""
    ordered = sorted(samples, key=lambda s: (-s.n_tokens, s.position))
    if batch_tokens <= 0:
        for start in range(0, len(ordered), batch_size):
            yield ordered[start:start + batch_size]
        return
    start = 0
    while start < len(ordered):
        rows = max(1, batch_tokens // ordered[start].n_tokens)  # sorted: the first sample is the widest
        yield ordered[start:start + rows]
        start += rows


def token_budget(loaded: LoadedModel, n_layers: int, d_model: int, store_dtype: str, limit: int = 16384) -> int:
    """Padded tokens per batch that fit half the free memory of the input GPU: per token, every layer's
    output in the model's dtype plus the stacked copy in the store dtype, plus ~16 × d_model of forward
    workspace; at most ``limit`` (one batch also lives in pinned host memory)."""
    import torch

    free, _ = torch.cuda.mem_get_info(loaded.device)
    model_bytes = next(loaded.model.parameters()).element_size()
    store_bytes = np.dtype(store_dtype).itemsize
    per_token = n_layers * d_model * (model_bytes + store_bytes) + 16 * d_model * model_bytes
    return int(max(1, min(limit, free // 2 // per_token)))


def _padded(batch: Sequence[Sample], pad_id: int, device: Any) -> tuple[Any, Any]:
    import torch

    width = max(s.n_tokens for s in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, s in enumerate(batch):
        ids[row, : s.n_tokens] = torch.from_numpy(s.token_ids.astype(np.int64))
        mask[row, : s.n_tokens] = 1
    if torch.device(device).type == "cuda":
        return ids.pin_memory().to(device, non_blocking=True), mask.pin_memory().to(device, non_blocking=True)
    return ids.to(device), mask.to(device)


def _stage(outputs: list[Any], batch: Sequence[Sample], store_dtype: str) -> tuple[Any, Any]:
    """The batch as one ``(batch, tokens, n_layers, d_model)`` tensor in ``store_dtype`` and its
    ``(batch, n_layers)`` float32 peak |activation| over real tokens (taken before the cast), from per-layer
    ``(batch, tokens, d_model)`` outputs (on the first layer's device; nothing waits for the GPU here)."""
    import torch

    first = outputs[0]
    width, d_model = first.shape[1:]
    lengths = torch.tensor([s.n_tokens for s in batch], device=first.device)
    padding = torch.arange(width, device=first.device)[None, :] >= lengths[:, None]
    per_token = torch.stack([torch.maximum(x.amax(dim=2), -x.amin(dim=2)).to(first.device) for x in outputs], dim=2)
    peak = per_token.masked_fill_(padding[:, :, None], 0).amax(dim=1).float()  # NaN propagates
    stored = torch.empty((len(batch), width, len(outputs), d_model), dtype=getattr(torch, store_dtype), device=first.device)
    for index, x in enumerate(outputs):
        stored[:, :, index].copy_(x)  # one casting copy per layer, no float32 stack
    return stored, peak


class _HostCopy:
    """A staged batch on its way to host memory: on CUDA copied into pinned memory on a side stream
    (the next forward pass runs meanwhile), ``result()`` waits for that copy alone; elsewhere copied now."""

    _streams: dict[Any, Any] = {}

    def __init__(self, stored: Any, peak: Any) -> None:
        import torch

        if stored.device.type != "cuda":
            self._arrays, self._done = (stored.cpu().numpy(), peak.cpu().numpy()), None
            return
        stream = self._streams.get(stored.device)
        if stream is None:
            stream = self._streams[stored.device] = torch.cuda.Stream(device=stored.device)
        host = torch.empty(stored.shape, dtype=stored.dtype, pin_memory=True)
        host_peak = torch.empty(peak.shape, dtype=peak.dtype, pin_memory=True)
        stream.wait_stream(torch.cuda.current_stream(stored.device))
        with torch.cuda.stream(stream):
            host.copy_(stored, non_blocking=True)
            host_peak.copy_(peak, non_blocking=True)
            stored.record_stream(stream)  # the allocator keeps them until the copy is done
            peak.record_stream(stream)
            self._done = torch.cuda.Event()
            self._done.record(stream)
        self._arrays = (host.numpy(), host_peak.numpy())

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        if self._done is not None:
            self._done.synchronize()
        return self._arrays


def _stored_samples(copy: _HostCopy, batch: Sequence[Sample], store_dtype: str) -> Iterator[tuple[Sample, np.ndarray, np.ndarray]]:
    """Each sample of ``batch`` with its real tokens ``(n_tokens, n_layers, d_model)`` in ``store_dtype`` and its
    ``(n_layers,)`` float32 peak |activation|: views of the batch's host copy. A value of a real token that is not
    finite once stored (NaN, or beyond the store dtype) is a clear error.
    """
    stored, peak = copy.result()
    with np.errstate(over="ignore", invalid="ignore"):
        bad = ~np.isfinite(peak.astype(store_dtype))  # casting is monotonic: the peak overflows first
    if bad.any():
        row, layer = (int(v) for v in np.argwhere(bad)[0])
        raise _not_finite(batch[row], layer, float(peak[row, layer]), store_dtype)
    for row, sample in enumerate(batch):
        yield sample, stored[row, : sample.n_tokens], peak[row]


def _not_finite(sample: Sample, layer: int, value: float, store_dtype: str) -> InputError:
    import torch

    hint = (
        "the model itself gives non-finite values: try --dtype float32"
        if not np.isfinite(value)
        else f"this exceeds {store_dtype} (largest finite {float(torch.finfo(getattr(torch, store_dtype)).max):.6g}): "
             f"re-run with --store-dtype float32"
    )
    return InputError(
        f"sample {sample.position} (corpus text {sample.source_index}) layer {layer}: peak |activation| {value:.6g} "
        f"is not finite once stored as {store_dtype}; {hint}"
    )


def _d_model(loaded: LoadedModel, arch: Any) -> tuple[int, int]:
    """(n_layers, d_model) from a one-token forward pass; each hooked output must be ``(batch, tokens, d_model)``."""
    import torch

    token = torch.tensor([[loaded.tokenizer.pad_token_id or 0]], device=loaded.device)
    with torch.inference_mode(), capture_block_outputs(loaded.model, arch) as capture:
        getattr(loaded.model, "base_model", loaded.model)(input_ids=token, attention_mask=torch.ones_like(token), use_cache=False)
    shapes = {i: tuple(t.shape) for i, t in capture.outputs.items()}
    if len(shapes) != len(capture.layers) or any(len(v) != 3 or v[:2] != (1, 1) for v in shapes.values()):
        raise InputError(
            f"the hooked modules ({arch.hook_pattern()}) give outputs of shapes {sorted(set(shapes.values()))} for one "
            f"token, expected (1, 1, d_model) from every layer; pass --hook-module with the MLP block of each layer"
        )
    return len(shapes), shapes[capture.layers[0]][2]


def _attrs(loaded: LoadedModel, arch: Any, section: RecordSection, corpus: str, selection: Any,
           n_layers: int) -> dict[str, Any]:
    hook_points = [arch.hook_pattern().replace("{i}", str(i)) for i in range(n_layers)]
    content = {
        "corpus": corpus,
        **section.content(),
        "model_id": loaded.info["model_id"],
        "model_revision": loaded.info["model_revision"],
        "model_dtype": loaded.info["model_dtype"],
        "hook_points": hook_points,
    }
    init = {"model_init": loaded.info["model_init"]} if "model_init" in loaded.info else {}  # a random twin only
    content |= init
    return {**init,
        "model_id": loaded.info["model_id"],
        "model_revision": loaded.info["model_revision"],
        "architecture": loaded.info["architecture"],
        "model_dtype": loaded.info["model_dtype"],
        "hook_points": hook_points,
        "corpus": corpus,
        "seed": int(section.seed),
        "max_tokens": int(section.max_tokens),
        "min_tokens": int(section.min_tokens),
        "n_skipped_short": int(selection.n_skipped_short),
        "pack_to_tokens": int(selection.pack_to_tokens),
        "n_packed_samples": int(selection.n_packed),
        "n_corpus_texts": int(selection.n_corpus_texts),
        "group_samples": int(section.group_samples),
        "individual_samples": int(section.individual_samples),
        "store_dtype": section.store_dtype,
        "text_field": section.text_field,
        "package_version": __version__,
        "record_config": content,
        "config_hash": config_hash(content),
    }


def _record_samples(loaded: LoadedModel, arch: Any, batches: list[list[Sample]], done: np.ndarray, writer: SampleWriter,
                    section: RecordSection, shard: tuple[int, int], progress: bool) -> None:
    """Run ``batches`` and hand each sample not ``done`` to ``writer``; a batch is handed over while the
    next one runs (on CUDA its host copy overlaps that forward pass)."""
    from tqdm.auto import tqdm

    pad_id = loaded.tokenizer.pad_token_id if loaded.tokenizer.pad_token_id is not None else 0
    total = sum(s.n_tokens for batch in batches for s in batch if not done[s.position])
    shard = f"{shard[0]}/{shard[1]}"
    with tqdm(total=total, unit="tok", desc=f"record {shard}", disable=not progress) as bar:
        def hand_over(batch: list[Sample], copy: _HostCopy) -> None:
            for sample, stored, peak in _stored_samples(copy, batch, section.store_dtype):
                if not done[sample.position]:
                    writer.put(sample.position, stored, peak)
                    bar.update(sample.n_tokens)

        pending = None
        for batch in batches:
            ids, mask = _padded(batch, pad_id, loaded.device)
            outputs = layer_outputs(loaded, arch, ids, mask)
            current = (batch, _HostCopy(*_stage(outputs, batch, section.store_dtype)))
            del outputs
            if pending is not None:
                hand_over(*pending)
            pending = current
        if pending is not None:
            hand_over(*pending)


def record_activations(
    model: ModelSection | str | LoadedModel,
    corpus: str,
    out: str,
    section: RecordSection | None = None,
    *,
    loaded: LoadedModel | None = None,
    shard: tuple[int, int] = (0, 1),
    overwrite: bool = False,
    progress: bool = True,
    wait_timeout: float = 600.0,
    **overrides: Any,
) -> str:
    """Record the MLP-block outputs of ``model`` on ``corpus`` into the activations store ``out``.

    model : the ``model`` config section (loaded with its ``placement()``; its ``hook_module`` names the hooked
        blocks), a spec string (``ModelSection(id=model)``) or a ``LoadedModel`` (no hook module).
    section : the ``record`` config section (default: its defaults); ``overrides`` replace some of its fields
        (``group_samples=20``) and the result is validated by the section.
    loaded : ``model`` already loaded (the pipeline loads it once for every stage); not loaded again.
    The corpus is read before the model is loaded (a bad corpus fails in seconds); ``out`` is locked while it is
    written (``fnet_dist.store.locks``; a shard takes its shard's lock, so shards write together). Resumes a store
    of the same config (complete samples are skipped; complete samples with a missing or truncated chunk are
    recorded again); a store of another config is an error unless ``overwrite``, which records the new store beside it and swaps it in when complete
    (``fnet_dist.store.outputs``); anything else at ``out`` is refused. With ``shard=(I, N)`` this process writes
    the samples whose store position p has ``p % N == I``; whichever shard comes first creates the store
    (shards do not wait for each other). ``pack_to_tokens`` > 0 packs short texts with the ones after them
    into samples of at least that many tokens (``fnet_dist.record.sampling.select_samples``). ``batch_tokens`` > 0
    caps each batch's padded tokens (on CUDA 0 means ``token_budget``). Returns the store URL.
    """

    section = with_overrides(section or RecordSection(), overrides)
    shard = _check_shard(tuple(shard) if isinstance(shard, list) else shard)
    if isinstance(model, LoadedModel):
        model, loaded = None, model
    model_section = ModelSection(id=model) if isinstance(model, str) else model
    if section.pack_to_tokens == "auto":  # resolved by the pipeline (PipelineConfig.pack_to_tokens); alone: no packing
        section = section.model_copy(update={"pack_to_tokens": 0})
    url = normalize_url(out)
    with output_lock(url, part=None if shard[1] == 1 else f"record-{shard[0]}-of-{shard[1]}"):
        refuse_foreign(url)  # a user's files or another store: refused before any work
        texts = load_corpus(corpus, text_field=section.text_field)  # a bad corpus is refused before the model loads
        if loaded is None:
            loaded = load_model(model_section.id, **model_section.placement())
        _record_store(loaded, model_section, corpus, texts, url, section, shard, overwrite, progress, wait_timeout)
    return url


def _record_store(loaded: LoadedModel, model_section: ModelSection | None, corpus: str, texts: list[str], url: str,
                  section: RecordSection, shard: tuple[int, int], overwrite: bool, progress: bool,
                  wait_timeout: float) -> None:
    """``record_activations`` once its output is locked, its corpus read and its model loaded."""
    arch = resolve_architecture(loaded.model, model_section.hook_module if model_section is not None else None)
    n_layers, d_model = _d_model(loaded, arch)
    selection = select_samples(texts, loaded.tokenizer, group=section.group_samples, individual=section.individual_samples,
                               max_tokens=section.max_tokens, min_tokens=section.min_tokens, seed=section.seed, corpus=corpus,
                               pack_to_tokens=section.pack_to_tokens)
    if section.shuffle == "tokens_within_sample":
        selection = shuffle_tokens(selection, section.seed)
    array = ActivationArray(len(selection.samples), selection.max_tokens, n_layers, d_model, section.store_dtype)
    attrs = _attrs(loaded, arch, section, corpus, selection, n_layers)
    target, done = open_for_samples(url, selection, array, attrs, shard=shard, overwrite=overwrite,
                                    wait_timeout=wait_timeout)
    index, count = shard
    mine = [s for s in selection.samples if s.position % count == index]
    # the batch plan depends on the shard and batch size only, so a resumed run pads each sample as the
    # uninterrupted run would (bitwise-equal results); batches whose samples are all complete are skipped
    budget = section.batch_tokens or (
        token_budget(loaded, n_layers, d_model, section.store_dtype) if loaded.device.type == "cuda" else 0)
    batches = [b for b in _batches(mine, section.batch_size, budget) if not all(done[s.position] for s in b)]
    log.info("shard %d/%d: %d of its %d samples to record (%d of %d in the store complete), batches of %s",
             index, count, sum(not done[s.position] for s in mine), len(mine), int(done.sum()), len(done),
             f"≤ {budget} padded tokens" if budget else f"{section.batch_size} texts")
    # on a GPU a writer thread overlaps the writes with the forward passes (two batches may wait); on the CPU
    # the forward pass uses every core, so a thread would only take cores from it (stalling torch's threads)
    background = loaded.device.type != "cpu"
    widest = max((len(b) for b in batches), default=1)
    writer = SampleWriter(target, array, max_pending=max(4, 2 * widest), background=background)
    try:
        _record_samples(loaded, arch, batches, done, writer, section, shard, progress)
    finally:
        writer.close()
    if target != url:  # a replacement (one shard) is complete: swap it in for the store of another config
        swap_in(target, url)
