"""The token-attribution page: a ``TokenAttribution`` (``fnet_dist.report.explain``) as HTML.

- ``attribution_fragment(attribution)``: an embeddable HTML fragment (used by the report).
- ``render_attribution_html(attribution) -> str``: a self-contained page, the tokenizer's own pieces shaded
  by weight (red positive, blue negative), every piece of text HTML-escaped.
"""
from __future__ import annotations

import html

import numpy as np

from ..core.names import network_name
from ..store.outputs import html_marker
from .explain import TokenAttribution

__all__ = ["attribution_fragment", "render_attribution_html"]


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


def _rule(attribution: TokenAttribution) -> str:
    """The network rule the template sizes were counted at: ``|z| &gt; 3.6`` (or ``z &gt; …`` one-sided)."""
    return f"{'|z|' if attribution.two_sided else 'z'} &gt; {attribution.threshold:g}"


def attribution_fragment(attribution: TokenAttribution, heading: str = "h3") -> str:
    """The attribution as an HTML fragment (a ``<div class="attr">`` with inline styles), for embedding."""
    esc = html.escape
    sections = []
    for row, component in enumerate(attribution.components):
        weights = attribution.weights[row]
        size = attribution.template_sizes[row] if row < len(attribution.template_sizes) else None
        about = f" ({size} neurons at {_rule(attribution)})" if size is not None and attribution.threshold else ""
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
