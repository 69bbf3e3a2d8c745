"""Token attribution: which tokens of a text drive each group template (the paper's Figures 9-18).

- ``explain_text(loaded_model, networks_url, text, components=None, *, match) -> TokenAttribution``: record the text's
  block outputs (``fnet_dist.model.trace``), z-score each neuron over the tokens (as the decomposition does)
  and estimate each template's source signal by least squares (dual regression: ``S = X · pinv(maps)``,
  ``fnet_dist.core.signals.token_sources``). Each template's size is its network at the run's rule (the ``match``
  section's ``threshold`` and ``two_sided``).
- ``TokenAttribution``: what it returns; ``fnet_dist.report.explain_page`` renders it as HTML.

Template numbers are 1-based, as in the match tables.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from storage_schemas import NETWORKS

from ..core.config import MatchSection
from ..core.errors import InputError
from ..core.networks import binarize, network_sizes
from ..core.signals import token_sources
from ..model.loading import check_same_model
from ..model.trace import tokenize_text, trace_text
from ..store.storage import normalize_url, open_store

__all__ = ["TokenAttribution", "explain_text"]


@dataclass
class TokenAttribution:
    """Source signals of templates over the tokens of one text.

    pieces : the tokenizer's piece of each token (its span of ``text``, or the token itself for special
    tokens); spans : (start, end) in ``text`` or None; weights : (n_components, n_tokens) float64.
    """

    text: str
    token_ids: list[int]
    pieces: list[str]
    spans: list[tuple[int, int] | None]
    components: list[int]
    weights: np.ndarray
    template_sizes: list[int] = field(default_factory=list)
    corpus: str = ""
    model_id: str = ""
    networks_url: str = ""
    threshold: float | None = None
    two_sided: bool | None = None


def _choose(components: Sequence[int] | None, n_templates: int, url: str) -> list[int]:
    chosen = list(range(1, n_templates + 1)) if components is None else [int(c) for c in components]
    bad = [c for c in chosen if not 1 <= c <= n_templates]
    if bad or not chosen:
        raise InputError(f"components {bad or chosen} are not templates of {url}: expected numbers 1..{n_templates}")
    return chosen


def explain_text(loaded_model, networks_url: str, text: str, components: Sequence[int] | None = None,
                 *, match: MatchSection, max_tokens: int = 1024, hook_module: str | None = None) -> TokenAttribution:
    """Each chosen template's source signal over the tokens of ``text`` (1-based ``components``, default all).

    ``match``: the run's ``match`` section, whose ``threshold`` and ``two_sided`` size each template's network.

    ``hook_module``: the block-output pattern (``"model.layers.{i}.mlp"``) for a family not in the registry;
    use the one the activations were recorded with.
    """
    url = normalize_url(networks_url)
    ds = open_store(url, NETWORKS)
    if not text.strip():
        raise InputError("the text to explain is empty: pass --text with at least two tokens of text")
    maps = np.asarray(ds["group_map"].values, dtype=np.float32)
    chosen = _choose(components, len(maps), url)
    ids, pieces, spans = tokenize_text(loaded_model.tokenizer, text, max_tokens)
    if len(ids) < 2:
        raise InputError(f"the text {text!r} is {len(ids)} token: a source signal over tokens needs at least two")
    recorded = trace_text(loaded_model, ids, hook_module)
    if recorded.shape[1:] != maps.shape[1:]:
        raise InputError(
            f"model {loaded_model.info.get('model_id', '?')} has (n_layers, d_model) = {recorded.shape[1:]}, "
            f"but {url} holds networks of shape {maps.shape[1:]} ({ds.attrs['model_id']}); explain with the model that made them"
        )
    check_same_model(ds.attrs, loaded_model.info, f"the networks store {url}")
    selected = maps[[c - 1 for c in chosen]].reshape(len(chosen), -1)
    sources = token_sources(recorded.reshape(len(ids), -1), maps.reshape(len(maps), -1), "spatial",  # CanICA templates
                            dtype=np.float64)
    weights = sources[:, [c - 1 for c in chosen]].T
    sizes = network_sizes(binarize(selected.reshape(len(chosen), *maps.shape[1:]), match.threshold, match.two_sided))
    return TokenAttribution(text, ids, pieces, spans, chosen, weights, [int(s) for s in sizes],
                            str(ds.attrs["corpus"]), str(loaded_model.info.get("model_id", "")), url,
                            float(match.threshold), bool(match.two_sided))
