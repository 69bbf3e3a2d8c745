"""Token attribution: which tokens of a text drive each group template (the paper's Figures 9-18).

- ``explain_text(loaded_model, networks_url, text, components=None) -> TokenAttribution``: record the text's
  block outputs, z-score each neuron over the tokens (as the decomposition does) and estimate each
  template's source signal by least squares (dual regression: ``S = X · pinv(maps)``).
- ``source_signals(activations, maps)``: that regression on plain arrays.
- ``attribution_fragment(attribution)``: the same as an embeddable HTML fragment (used by the report).
- ``render_attribution_html(attribution) -> str``: a self-contained page, the tokenizer's own pieces shaded
  by weight (red positive, blue negative), every piece of text HTML-escaped.

Template numbers are 1-based, as in the match tables.
"""
from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..core.errors import InputError
from ..core.networks import DEFAULT_THRESHOLD
from ..core.names import network_name
from ..store.outputs import html_marker

__all__ = [
    "TokenAttribution", "attribution_fragment", "explain_text", "render_attribution_html", "source_signals",
    "standardize_tokens",
]


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


def standardize_tokens(activations: np.ndarray) -> np.ndarray:
    """Z-score each neuron over tokens: ``(n_tokens, n_neurons)`` -> same; constant neurons become 0."""
    x = np.asarray(activations, dtype=np.float64)
    std = x.std(axis=0)
    return (x - x.mean(axis=0)) / np.where(std > 0, std, 1.0)


def source_signals(activations: np.ndarray, maps: np.ndarray) -> np.ndarray:
    """Dual regression: least-squares ``S`` with ``X ≈ S · maps``.

    activations : (n_tokens, n_neurons), standardized; maps : (n_components, n_neurons).
    Returns S of shape (n_tokens, n_components) = X · pinv(maps).
    """
    maps = np.nan_to_num(np.asarray(maps, dtype=np.float64))
    return np.linalg.lstsq(maps.T, np.asarray(activations, dtype=np.float64).T, rcond=None)[0].T


def _tokenize(tokenizer, text: str, max_tokens: int):
    """Token ids, pieces and spans, from the tokenizer's offsets where it has them."""
    fast = bool(getattr(tokenizer, "is_fast", False))
    encoded = tokenizer(text, truncation=True, max_length=max_tokens, return_offsets_mapping=fast)
    ids = list(encoded["input_ids"])
    special = set(getattr(tokenizer, "all_special_ids", []))
    pieces, spans = [], []
    for index, token_id in enumerate(ids):
        if fast and token_id not in special:
            start, end = (int(v) for v in encoded["offset_mapping"][index])
            spans.append((start, end))
            pieces.append(text[start:end])
        else:
            spans.append(None)
            pieces.append(tokenizer.convert_ids_to_tokens(token_id) if token_id in special else tokenizer.decode([token_id]))
    return ids, pieces, spans


def _record(loaded_model, ids: list[int], hook_module: str | None = None) -> np.ndarray:
    """Block outputs of one forward pass: ``(n_tokens, n_layers, d_model)`` float32."""
    import torch

    from ..model.architectures import resolve_architecture
    from ..model.hooks import capture_block_outputs

    model = loaded_model.model
    arch = resolve_architecture(model, hook_module)
    with torch.no_grad(), capture_block_outputs(model, arch) as capture:
        model(input_ids=torch.tensor([ids], device=loaded_model.device))
        return capture.stacked()[0].float().cpu().numpy()


def _choose(components: Sequence[int] | None, n_templates: int, url: str) -> list[int]:
    chosen = list(range(1, n_templates + 1)) if components is None else [int(c) for c in components]
    bad = [c for c in chosen if not 1 <= c <= n_templates]
    if bad or not chosen:
        raise InputError(f"components {bad or chosen} are not templates of {url}: expected numbers 1..{n_templates}")
    return chosen


def explain_text(loaded_model, networks_url: str, text: str, components: Sequence[int] | None = None,
                 *, max_tokens: int = 1024, hook_module: str | None = None) -> TokenAttribution:
    """Each chosen template's source signal over the tokens of ``text`` (1-based ``components``, default all).

    ``hook_module``: the block-output pattern (``"model.layers.{i}.mlp"``) for a family not in the registry;
    use the one the activations were recorded with.
    """
    from storage_schemas import NETWORKS

    from ..model.loading import check_same_model
    from ..core.networks import DEFAULT_THRESHOLD, binarize, network_sizes
    from ..store.storage import normalize_url, open_store

    url = normalize_url(networks_url)
    ds = open_store(url, NETWORKS)
    if not text.strip():
        raise InputError("the text to explain is empty: pass --text with at least two tokens of text")
    maps = np.asarray(ds["group_map"].values, dtype=np.float32)
    chosen = _choose(components, len(maps), url)
    ids, pieces, spans = _tokenize(loaded_model.tokenizer, text, max_tokens)
    if len(ids) < 2:
        raise InputError(f"the text {text!r} is {len(ids)} token: a source signal over tokens needs at least two")
    recorded = _record(loaded_model, ids, hook_module)
    if recorded.shape[1:] != maps.shape[1:]:
        raise InputError(
            f"model {loaded_model.info.get('model_id', '?')} has (n_layers, d_model) = {recorded.shape[1:]}, "
            f"but {url} holds networks of shape {maps.shape[1:]} ({ds.attrs['model_id']}); explain with the model that made them"
        )
    check_same_model(ds.attrs, loaded_model.info, f"the networks store {url}")
    selected = maps[[c - 1 for c in chosen]].reshape(len(chosen), -1)
    x = standardize_tokens(recorded.reshape(len(ids), -1))
    weights = source_signals(x, maps.reshape(len(maps), -1))[:, [c - 1 for c in chosen]].T
    sizes = network_sizes(binarize(selected.reshape(len(chosen), *maps.shape[1:]), DEFAULT_THRESHOLD))
    return TokenAttribution(text, ids, pieces, spans, chosen, weights, [int(s) for s in sizes],
                            str(ds.attrs["corpus"]), str(loaded_model.info.get("model_id", "")), url)


def _shade(weight: float, scale: float) -> str:
    alpha = 0.0 if scale <= 0 else min(1.0, abs(weight) / scale)
    rgb = "214,39,40" if weight >= 0 else "31,119,180"
    return f"background-color: rgba({rgb},{alpha:.3f})"


def _token_html(piece: str, index: int, weight: float, scale: float, special: bool) -> str:
    title = f"token {index}: {piece!r}, weight {weight:+.4f}"
    classes = "tok special" if special else ("tok" if piece else "tok part")
    return (f'<span class="{classes}" style="{_shade(weight, scale)}" '
            f'title="{html.escape(title, quote=True)}">{html.escape(piece)}</span>')


def _text_html(attribution: TokenAttribution, weights: np.ndarray) -> str:
    """The text with every token shaded; gaps between token spans kept unshaded; a token whose span another
    token already showed (one character split into several byte tokens) is a small shaded box."""
    scale = float(np.max(np.abs(weights))) if weights.size else 0.0
    parts, cursor = [], 0
    for index, (piece, span) in enumerate(zip(attribution.pieces, attribution.spans)):
        if span is None:
            parts.append(_token_html(piece, index, weights[index], scale, special=True))
            continue
        start, end = max(span[0], cursor), max(span[1], cursor)
        if start > cursor:
            parts.append(html.escape(attribution.text[cursor:start]))
        parts.append(_token_html(attribution.text[start:end], index, weights[index], scale, special=False))
        cursor = end
    return "".join(parts)


ATTRIBUTION_STYLE = """
.attr .meta { color: #555; font-size: 0.9em; }
.attr .text { white-space: pre-wrap; line-height: 1.9; font-family: ui-monospace, monospace; font-size: 0.95em;
        border: 1px solid #ddd; padding: 0.8em; border-radius: 4px; background: #fff; }
.attr .tok { border-radius: 2px; padding: 0.05em 0; }
.attr .special { color: #777; font-size: 0.8em; }
.attr .part { display: inline-block; width: 0.35em; height: 1em; vertical-align: middle; }
.attr .legend span { padding: 0.1em 0.5em; margin-right: 0.5em; }
"""


def attribution_fragment(attribution: TokenAttribution, heading: str = "h3") -> str:
    """The attribution as an HTML fragment (a ``<div class="attr">`` with inline styles), for embedding."""
    esc = html.escape
    sections = []
    for row, component in enumerate(attribution.components):
        weights = attribution.weights[row]
        size = attribution.template_sizes[row] if row < len(attribution.template_sizes) else None
        about = f" ({size} neurons at |z| &gt; {DEFAULT_THRESHOLD:g})" if size is not None else ""
        sections.append(
            f"<section><{heading}>Template {esc(network_name(attribution.corpus, component))}{about}</{heading}>"
            f'<p class="meta">weights from {weights.min():+.3f} to {weights.max():+.3f}</p>'
            f'<div class="text">{_text_html(attribution, weights)}</div></section>'
        )
    return (
        f'<div class="attr"><style>{ATTRIBUTION_STYLE}</style>'
        f'<p class="meta">model {esc(attribution.model_id)} · networks {esc(attribution.networks_url)} · '
        f"{len(attribution.token_ids)} tokens · source signals by dual regression on the text's z-scored "
        "block outputs</p>"
        '<p class="legend"><span style="background-color: rgba(214,39,40,0.8)">positive</span>'
        '<span style="background-color: rgba(31,119,180,0.8)">negative</span>shade: |weight| / max |weight| per template</p>'
        + "".join(sections) + "</div>"
    )


def render_attribution_html(attribution: TokenAttribution) -> str:
    """A self-contained HTML page: per template, the text's tokens shaded by its source signal."""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">" + html_marker("explain") +
        f"<title>Token attribution: {html.escape(attribution.corpus)}</title>"
        "<style>body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 60em; }"
        "h1 { font-size: 1.3em; } h2 { font-size: 1.05em; margin-top: 1.6em; }</style></head><body>"
        "<h1>Token attribution of functional-network templates</h1>"
        + attribution_fragment(attribution, heading="h2") + "</body></html>\n"
    )
