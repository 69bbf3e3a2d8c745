"""Planted activations stores: a recorded store's schema, chunking and resume markers, with known networks inside.

- ``plant_store(out, section, record, *, scheduler=, n_workers=, shard=, overwrite=, progress=) -> str``: write
  (or resume, or one shard of) an activations store for a model shape (``PlantSection.shape``: a known
  architecture, ``LAYERSxWIDTH`` or a transformers config) holding ``record.group_samples`` +
  ``record.individual_samples`` samples of lengths drawn between ``record.min_tokens`` and ``record.max_tokens``,
  each drawn by ``fnet_dist.core.planted.PlantedModel`` and written alone (memory: one sample), on Dask workers
  (one task per sample) unless one worker and no scheduler are asked for. The stages cannot tell it from a
  recorded store but by its attrs: ``synthetic`` (True), ``planted`` (what was planted, the networks' neurons
  included); the same ground truth lies beside the store (``truth_url``), for tools that do not read Zarr.
Recovery is scored by ``fnet_dist.match.planted`` (the truth read back from the attrs).
"""
from __future__ import annotations

import functools
import io
import logging
from typing import Any

import numpy as np

from .. import __version__
from ..core.cluster import dask_client, gather, scheduler_address
from ..core.config import PlantSection, RecordSection
from ..core.corpora import Sample, Selection
from ..core.errors import InputError
from ..core.planted import PlantedModel
from ..model.dimensions import parse_shape
from ..store.activations import ActivationArray, SampleWriter, config_hash, open_for_samples, refuse_foreign
from ..store.locks import output_lock
from ..store.outputs import swap_in
from ..store.storage import filesystem, normalize_url

__all__ = ["plant_store", "truth_url"]

log = logging.getLogger(__name__)

_CORPUS = "planted"


def truth_url(url: str) -> str:
    """Where the ground truth of the store at ``url`` lies: ``<url>.truth.npz`` beside it."""
    return f"{normalize_url(url)}.truth.npz"


@functools.cache
def _model(n_layers: int, d_model: int, section: PlantSection, seed: int) -> PlantedModel:
    """The planted model, drawn once per process (each Dask worker draws its own, identical one)."""
    return PlantedModel.draw(n_layers, d_model, section, seed)


def _selection(model: PlantedModel, record: RecordSection) -> Selection:
    """Group samples first, then individual ones; lengths uniform in [min_tokens, max_tokens] from the seed."""
    n = record.group_samples + record.individual_samples
    lengths = np.random.default_rng([record.seed, 5003]).integers(record.min_tokens, record.max_tokens + 1, size=n)
    samples = tuple(Sample(position=p, source_index=p, split="group" if p < record.group_samples else "individual",
                           token_ids=model.token_ids(p, int(lengths[p])), text=f"planted sample {p}")
                    for p in range(n))
    return Selection(samples, n_skipped_short=0, n_corpus_texts=n, pack_to_tokens=0)


def _attrs(model: PlantedModel, record: RecordSection, shape: str) -> dict[str, Any]:
    kept = ("group_samples", "individual_samples", "max_tokens", "min_tokens", "seed", "store_dtype")
    content = {"corpus": _CORPUS, "planted": model.section.model_dump(), "n_layers": model.n_layers,
               "d_model": model.d_model, **{k: v for k, v in record.content().items() if k in kept}}
    hook_points = [f"planted.layers.{i}" for i in range(model.n_layers)]
    return {"model_id": f"planted-{model.n_layers}x{model.d_model}", "model_revision": "", "architecture": "planted",
            "model_dtype": "float32", "hook_points": hook_points, "corpus": _CORPUS, "seed": int(record.seed),
            "max_tokens": int(record.max_tokens), "min_tokens": int(record.min_tokens), "n_skipped_short": 0,
            "pack_to_tokens": 0, "n_packed_samples": 0,
            "n_corpus_texts": int(record.group_samples + record.individual_samples),
            "group_samples": int(record.group_samples), "individual_samples": int(record.individual_samples),
            "store_dtype": record.store_dtype, "text_field": "text", "package_version": __version__,
            "shape": shape, "synthetic": True, "planted": model.description(),
            "record_config": content, "config_hash": config_hash(content)}


def _write_samples(target: str, array: ActivationArray, n_layers: int, d_model: int, section: PlantSection,
                   seed: int, samples: list[tuple[int, int]]) -> int:
    """Draw and write ``samples`` ((position, n_tokens) pairs) one at a time; returns their tokens."""
    model = _model(n_layers, d_model, section, seed)
    writer = SampleWriter(target, array, background=False)
    buffer = np.empty((array.n_tokens, n_layers, d_model), dtype=array.dtype)  # one sample, reused
    for position, n_tokens in samples:
        activation, peak = model.sample(position, n_tokens, out=buffer[:n_tokens])
        writer.put(position, activation, peak)
    writer.close()
    return sum(n for _, n in samples)


def _write_truth(url: str, model: PlantedModel, digest: str) -> None:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, networks=model.networks, spike_neurons=model.spike_neurons,
                        massive_neurons=model.massive, config_hash=np.array(digest))
    fs, path = filesystem(truth_url(url))
    with fs.open(path, "wb") as handle:
        handle.write(buffer.getvalue())


def plant_store(out: str, section: PlantSection | None = None, record: RecordSection | None = None, *,
                scheduler: str | None = None, n_workers: int | None = None, shard: tuple[int, int] = (0, 1),
                overwrite: bool = False, progress: bool = True) -> str:
    """Write the planted activations store ``out`` (see the module docstring); returns its URL.

    Resumes a store of the same config (complete, whole samples are skipped); a store of another config is an error
    unless ``overwrite`` (the new one is written beside and swapped in when complete); anything else at ``out`` is
    refused. ``shard=(I, N)``: only the samples whose position p has p % N == I (shards may run together).
    """
    section, record = section or PlantSection(), record or RecordSection()
    n_layers, d_model = parse_shape(section.shape)
    url = normalize_url(out)
    try:
        model = _model(n_layers, d_model, section, record.seed)
    except ValueError as exc:
        raise InputError(f"plant: {exc}; lower --networks or --network-share, or choose a wider shape") from None
    with output_lock(url, part=None if shard[1] == 1 else f"plant-{shard[0]}-of-{shard[1]}"):
        refuse_foreign(url)
        selection = _selection(model, record)
        array = ActivationArray(len(selection.samples), selection.max_tokens, n_layers, d_model, record.store_dtype)
        attrs = _attrs(model, record, section.shape)
        target, done = open_for_samples(url, selection, array, attrs, shard=shard, overwrite=overwrite)
        todo = [(s.position, s.n_tokens) for s in selection.samples
                if s.position % shard[1] == shard[0] and not done[s.position]]
        log.info("plant %s: %d layers × %d neurons, %d of %d samples to write", url, n_layers, d_model, len(todo),
                 len(selection.samples))
        args = (target, array, n_layers, d_model, section, record.seed)
        if scheduler_address(scheduler) is None and n_workers == 1:
            from tqdm.auto import tqdm

            for item in tqdm(todo, desc="plant", unit="sample", disable=not progress):
                _write_samples(*args, [item])
        elif todo:
            import dask

            with dask_client(scheduler, n_workers=n_workers) as client:
                gather(client, [dask.delayed(_write_samples, pure=False)(*args, [item]) for item in todo], "plant")
        if target != url:
            swap_in(target, url)
        if shard[0] == 0:
            _write_truth(url, model, attrs["config_hash"])
    return url

