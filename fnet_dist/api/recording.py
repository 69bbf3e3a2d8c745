"""A small recording in memory: ``fnet.record(model, texts) -> xarray.Dataset``, for notebooks and the estimators.

- ``record(model, texts, *, max_tokens=None, tokenizer=None, hook_module=None)``: each text's MLP-block outputs,
  one forward pass per text, as ``activation(sample, token, layer, neuron)`` float32 (0 past ``n_tokens``),
  ``n_tokens(sample)``, ``token_id(sample, token)`` (-1 past ``n_tokens``) and ``text(sample)``, each variable
  described as in the activations store (``storage_schemas/activations.json``), the model in ``attrs``.

- ``load_corpus(spec, text_field=None) -> list[str]``: the texts of a corpus spec as ``fnet record`` and pipeline
  configs read it (``offline:news``, a local ``.txt`` / ``.jsonl`` / ``.csv`` / ``.parquet`` file or glob, ``hf:NAME``).

What the stages write to Zarr for a corpus (``fnet record``) is the same tensor; this one stays in memory, so keep
it small (texts × tokens × layers × d_model float32 values). It feeds ``IndividualICA`` (one sample:
``ds.activation[0, :ds.n_tokens[0]]``) and ``CanICA`` (``fit(ds.activation, n_tokens=ds.n_tokens)``) directly.
"""
from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np

from storage_schemas import ACTIVATIONS

from ..core.config import RecordSection
from ..core.corpora import load_corpus as _load_corpus
from ..core.errors import InputError
from ..model.trace import tokenize_text, trace_text

if TYPE_CHECKING:
    import xarray as xr

__all__ = ["load_corpus", "record"]


def load_corpus(spec: str, text_field: str | None = None) -> list[str]:
    """The texts of corpus ``spec`` in corpus order; ``text_field``: the column of a field file or dataset
    (default: the ``record`` section's ``text_field``)."""
    return _load_corpus(spec, text_field=text_field or RecordSection().text_field)


def _loaded(model: Any, tokenizer: Any) -> Any:
    """A ``LoadedModel`` as it is, or a Hugging Face model with its ``tokenizer`` in the same shape."""
    if hasattr(model, "tokenizer") and hasattr(model, "model"):
        return model
    if tokenizer is None:
        raise InputError("record(model, texts) of a Hugging Face model needs its tokenizer: pass tokenizer=")
    device = next(model.parameters()).device
    config = getattr(model, "config", None)
    return SimpleNamespace(model=model, tokenizer=tokenizer, device=device,
                           info={"model_id": str(getattr(config, "name_or_path", "") or type(model).__name__)})


def record(model: Any, texts: Sequence[str], *, max_tokens: int | None = None, tokenizer: Any = None,
           hook_module: str | None = None) -> xr.Dataset:
    """Record ``texts`` on ``model`` (a ``LoadedModel``, or a HF model with ``tokenizer=``); see the module docstring.

    max_tokens : cut each text to this many tokens (default: the ``record`` section's ``max_tokens``).
    Returns a Dataset with dims (sample, token, layer, neuron), sized by the longest text.
    """
    import xarray as xr

    if isinstance(texts, str) or not len(texts):
        raise InputError("texts must be a non-empty list of strings (one sample each)")
    loaded = _loaded(model, tokenizer)
    cut = RecordSection().max_tokens if max_tokens is None else int(max_tokens)
    traces, ids = [], []
    for text in texts:
        token_ids, _, _ = tokenize_text(loaded.tokenizer, str(text), cut)
        if not token_ids:
            raise InputError(f"text {text!r} has no tokens; drop it")
        ids.append(token_ids)
        traces.append(trace_text(loaded, token_ids, hook_module))  # (n_tokens, n_layers, d_model) float32
    width, (n_layers, d_model) = max(len(t) for t in ids), traces[0].shape[1:]
    activation = np.zeros((len(texts), width, n_layers, d_model), dtype=np.float32)
    token_id = np.full((len(texts), width), -1, dtype=np.int64)
    for i, (trace, token_ids) in enumerate(zip(traces, ids)):
        activation[i, : len(token_ids)] = trace
        token_id[i, : len(token_ids)] = token_ids
    ds = xr.Dataset(
        {"activation": (("sample", "token", "layer", "neuron"), activation),
         "n_tokens": ("sample", np.array([len(t) for t in ids], dtype=np.int64)),
         "token_id": (("sample", "token"), token_id),
         "text": ("sample", np.array([str(t) for t in texts], dtype=object))},
        coords={"sample": np.arange(len(texts)), "layer": np.arange(n_layers), "neuron": np.arange(d_model)},
        attrs={"model_id": str(loaded.info.get("model_id", "")), "max_tokens": cut},
    )
    for name in ds.data_vars:
        ds[name].attrs["description"] = ACTIVATIONS.variables[name].doc
    return ds
