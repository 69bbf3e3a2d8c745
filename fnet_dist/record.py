"""The recording stage: every layer's MLP-block output, for every real token of a corpus sample, into a Zarr store.

- ``record_activations(model, corpus, out, ...) -> str``: record (or resume, or one shard of) a store;
  returns its URL. ``model`` is a spec string (see ``fnet_dist.models``) or a ``LoadedModel``.
- ``RecordConfig``: the validated parameters; ``RecordConfig.content()`` is what the config hash covers.
- ``parse_shard("I/N") -> (I, N)``.
- ``summarize_store(url) -> str`` (from ``fnet_dist.activation_store``).

Forward passes run the decoder only (no LM head), in batches of similar length with right padding;
only real tokens are written. Values that are not finite in the store dtype stop the run.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any, Iterator, Sequence

import numpy as np

from . import __version__
from .activation_store import STORE_DTYPES, SampleWriter, StoreLayout, complete_mask, config_hash, prepare_store, summarize_store
from .corpora import Sample, load_corpus, select_samples
from .errors import InputError
from .hooks import capture_block_outputs
from .models import DTYPES, LoadedModel

__all__ = ["RecordConfig", "parse_shard", "record_activations", "summarize_store"]

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


@dataclass(frozen=True)
class RecordConfig:
    """Recording parameters; ``check()`` validates them all (the one place)."""

    corpus: str
    group_samples: int = 100
    individual_samples: int = 100
    max_tokens: int = 256
    min_tokens: int = 16
    batch_size: int = 8
    seed: int = 0
    shard: tuple[int, int] = (0, 1)
    dtype: str = "float32"
    store_dtype: str = "float16"
    text_field: str = "text"
    pack_to_tokens: int = 0

    def check(self) -> "RecordConfig":
        for name in ("group_samples", "individual_samples", "max_tokens", "min_tokens", "batch_size", "seed"):
            value = getattr(self, name)
            low = 0 if name in ("group_samples", "individual_samples", "seed") else 1
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
                raise InputError(f"--{name.replace('_', '-')} {value!r}: expected a whole number ≥ {low}")
        if self.group_samples + self.individual_samples == 0:
            raise InputError("--group-samples and --individual-samples are both 0: nothing to record; ask for at least one sample")
        if self.max_tokens < self.min_tokens:
            raise InputError(f"--max-tokens {self.max_tokens} < --min-tokens {self.min_tokens}: raise --max-tokens or lower --min-tokens")
        if self.dtype not in DTYPES:
            raise InputError(f"unknown dtype {self.dtype!r}; expected one of {', '.join(DTYPES)}")
        if self.store_dtype not in STORE_DTYPES:
            raise InputError(f"unknown store dtype {self.store_dtype!r}; expected one of {', '.join(STORE_DTYPES)}")
        if not self.text_field:
            raise InputError("empty --text-field: name the column that holds the text (e.g. text)")
        _check_shard(self.shard)
        return self

    def content(self) -> dict[str, Any]:
        """The parameters that determine the store's content (not batch size or shard)."""
        keep = ("corpus", "group_samples", "individual_samples", "max_tokens", "min_tokens", "seed", "store_dtype", "text_field")
        content = {k: v for k, v in asdict(self).items() if k in keep}
        if self.pack_to_tokens:  # stores of one text per sample keep the hash they had before packing existed
            content["pack_to_tokens"] = int(self.pack_to_tokens)
        return content


def _layer_outputs(loaded: LoadedModel, arch: Any, ids: Any, mask: Any) -> list[Any]:
    """Run the decoder (no LM head) on a padded batch; returns each layer's ``(batch, tokens, d_model)`` output."""
    import torch

    decoder = getattr(loaded.model, "base_model", loaded.model)
    with torch.inference_mode(), capture_block_outputs(loaded.model, arch) as capture:
        decoder(input_ids=ids, attention_mask=mask, use_cache=False)
        return [capture.outputs[i] for i in capture.layers]


def _batches(samples: Sequence[Sample], batch_size: int) -> Iterator[list[Sample]]:
    """Samples sorted by length (longest first, then store position), cut into batches."""
    ordered = sorted(samples, key=lambda s: (-s.n_tokens, s.position))
    for start in range(0, len(ordered), batch_size):
        yield ordered[start:start + batch_size]


def _padded(batch: Sequence[Sample], pad_id: int, device: Any) -> tuple[Any, Any]:
    import torch

    width = max(s.n_tokens for s in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, s in enumerate(batch):
        ids[row, : s.n_tokens] = torch.from_numpy(s.token_ids.astype(np.int64))
        mask[row, : s.n_tokens] = 1
    return ids.to(device), mask.to(device)


def _stored_samples(outputs: list[Any], batch: Sequence[Sample], store_dtype: str) -> Iterator[tuple[Sample, np.ndarray, np.ndarray]]:
    """Each sample of ``batch`` with its real tokens ``(n_tokens, n_layers, d_model)`` in ``store_dtype`` and its
    ``(n_layers,)`` float32 peak |activation| (taken before the cast), from per-layer ``(batch, tokens, d_model)``
    outputs. The whole batch is checked and cast in a few passes; the samples are views of one CPU tensor.
    A value of a real token that is not finite once stored (NaN, or beyond the store dtype) is a clear error.
    """
    import torch

    first = outputs[0]
    width, d_model = first.shape[1:]
    lengths = torch.tensor([s.n_tokens for s in batch], device=first.device)
    padding = torch.arange(width, device=first.device)[None, :] >= lengths[:, None]
    per_token = torch.stack([torch.maximum(x.amax(dim=2), -x.amin(dim=2)) for x in outputs], dim=2)  # NaN propagates
    peak = per_token.masked_fill_(padding[:, :, None], 0).amax(dim=1).float()  # (batch, n_layers)
    target = getattr(torch, store_dtype)
    bad = ~torch.isfinite(peak.to(target))  # casting is monotonic: the peak overflows first
    if bad.any():
        row, layer = (int(v) for v in bad.nonzero()[0])
        raise _not_finite(batch[row], layer, float(peak[row, layer]), store_dtype)
    stored = torch.empty((len(batch), width, len(outputs), d_model), dtype=target, device=first.device)
    for index, x in enumerate(outputs):
        stored[:, :, index].copy_(x)  # one casting copy per layer, no float32 stack
    stored, peak = stored.cpu().numpy(), peak.cpu().numpy()
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


def _attrs(loaded: LoadedModel, arch: Any, config: RecordConfig, selection: Any, n_layers: int) -> dict[str, Any]:
    hook_points = [arch.hook_pattern().replace("{i}", str(i)) for i in range(n_layers)]
    content = {
        **config.content(),
        "model_id": loaded.info["model_id"],
        "model_revision": loaded.info["model_revision"],
        "model_dtype": loaded.info["model_dtype"],
        "hook_points": hook_points,
    }
    return {
        "model_id": loaded.info["model_id"],
        "model_revision": loaded.info["model_revision"],
        "architecture": loaded.info["architecture"],
        "model_dtype": loaded.info["model_dtype"],
        "hook_points": hook_points,
        "corpus": config.corpus,
        "seed": int(config.seed),
        "max_tokens": int(config.max_tokens),
        "min_tokens": int(config.min_tokens),
        "n_skipped_short": int(selection.n_skipped_short),
        "pack_to_tokens": int(selection.pack_to_tokens),
        "n_packed_samples": int(selection.n_packed),
        "n_corpus_texts": int(selection.n_corpus_texts),
        "group_samples": int(config.group_samples),
        "individual_samples": int(config.individual_samples),
        "store_dtype": config.store_dtype,
        "text_field": config.text_field,
        "package_version": __version__,
        "record_config": content,
        "config_hash": config_hash(content),
    }


def _record_samples(loaded: LoadedModel, arch: Any, batches: list[list[Sample]], done: np.ndarray, writer: SampleWriter,
                    config: RecordConfig, progress: bool) -> None:
    """Run ``batches`` and hand each sample not ``done`` to ``writer``."""
    from tqdm.auto import tqdm

    pad_id = loaded.tokenizer.pad_token_id if loaded.tokenizer.pad_token_id is not None else 0
    total = sum(s.n_tokens for batch in batches for s in batch if not done[s.position])
    shard = f"{config.shard[0]}/{config.shard[1]}"
    with tqdm(total=total, unit="tok", desc=f"record {shard}", disable=not progress) as bar:
        for batch in batches:
            ids, mask = _padded(batch, pad_id, loaded.device)
            outputs = _layer_outputs(loaded, arch, ids, mask)
            for sample, stored, peak in _stored_samples(outputs, batch, config.store_dtype):
                if not done[sample.position]:
                    writer.put(sample.position, stored, peak)
                    bar.update(sample.n_tokens)


def record_activations(
    model: str | LoadedModel,
    corpus: str,
    out: str,
    *,
    group_samples: int = 100,
    individual_samples: int = 100,
    max_tokens: int = 256,
    min_tokens: int = 16,
    batch_size: int = 8,
    seed: int = 0,
    shard: tuple[int, int] = (0, 1),
    overwrite: bool = False,
    dtype: str = "float32",
    device: str | None = None,
    revision: str | None = None,
    trust_remote_code: bool = False,
    hook_module: str | None = None,
    store_dtype: str = "float16",
    text_field: str = "text",
    pack_to_tokens: int = 0,
    progress: bool = True,
    wait_timeout: float = 600.0,
) -> str:
    """Record the MLP-block outputs of ``model`` on ``corpus`` into the activations store ``out``.

    Resumes a store of the same config (complete samples are skipped); a store of another config is
    an error unless ``overwrite``. With ``shard=(I, N)`` this process writes the samples whose store
    position p has ``p % N == I``; shard 0 creates the store, the others wait up to ``wait_timeout`` s
    for it. ``pack_to_tokens`` > 0 packs short texts with the ones after them into samples of at least that
    many tokens (``fnet_dist.corpora.select_samples``). Returns the store URL.
    """
    from .architectures import resolve_architecture
    from .models import load_model
    from .storage import normalize_url

    config = RecordConfig(corpus, group_samples, individual_samples, max_tokens, min_tokens, batch_size, seed,
                          tuple(shard) if isinstance(shard, (list, tuple)) else shard, dtype, store_dtype, text_field,
                          pack_to_tokens).check()
    url = normalize_url(out)
    loaded = model if isinstance(model, LoadedModel) else load_model(
        model, revision=revision, dtype=dtype, device=device, trust_remote_code=trust_remote_code)
    arch = resolve_architecture(loaded.model, hook_module)
    n_layers, d_model = _d_model(loaded, arch)
    texts = load_corpus(corpus, text_field)
    selection = select_samples(texts, loaded.tokenizer, group=group_samples, individual=individual_samples,
                               max_tokens=max_tokens, min_tokens=min_tokens, seed=seed, corpus=corpus,
                               pack_to_tokens=config.pack_to_tokens)
    layout = StoreLayout(len(selection.samples), selection.max_tokens, n_layers, d_model, store_dtype)
    attrs = _attrs(loaded, arch, config, selection, n_layers)
    prepare_store(url, selection, layout, attrs, shard=config.shard, overwrite=overwrite, wait_timeout=wait_timeout)
    done = complete_mask(url)
    index, count = config.shard
    mine = [s for s in selection.samples if s.position % count == index]
    # the batch plan depends on the shard and batch size only, so a resumed run pads each sample as the
    # uninterrupted run would (bitwise-equal results); batches whose samples are all complete are skipped
    batches = [b for b in _batches(mine, batch_size) if not all(done[s.position] for s in b)]
    log.info("shard %d/%d: %d of its %d samples to record (%d of %d in the store complete), batches of %d",
             index, count, sum(not done[s.position] for s in mine), len(mine), int(done.sum()), len(done), batch_size)
    # on a GPU a writer thread overlaps the writes with the forward passes; on the CPU the forward pass uses
    # every core, so a thread would only take cores from it (stalling torch's threads): write in between
    writer = SampleWriter(url, layout, background=loaded.device.type != "cpu")
    try:
        _record_samples(loaded, arch, batches, done, writer, config, progress)
    finally:
        writer.close()
    return url
