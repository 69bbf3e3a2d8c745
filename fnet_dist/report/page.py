"""A self-contained HTML page: sections of text, tables and images (embedded as data URIs).

- ``Page(title)``: ``.section(title)``, ``.paragraph(text)``, ``.warning(text)``, ``.table(frame, caption)``,
  ``.image(path, caption)``, ``.raw(html)`` (trusted fragments only), ``.findings(list)``; ``.render() -> str``.
All text is HTML-escaped; images are embedded so the page opens on its own, and also kept beside it.
"""
from __future__ import annotations

import base64
import html
import itertools
from pathlib import Path
from typing import Iterable

__all__ = ["Finding", "Page"]

_ANCHORS = itertools.count(1)

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2330;background:#fafbfc}
main{max-width:1100px;margin:0 auto;padding:24px 32px 64px}
h1{font-size:1.7rem;margin:.2em 0}h2{font-size:1.3rem;margin-top:2.2em;border-bottom:1px solid #dde2ea;padding-bottom:.2em}
h3{font-size:1.05rem;margin-top:1.5em}
table{border-collapse:collapse;margin:.8em 0;font-size:.88rem;background:#fff}
th,td{border:1px solid #dde2ea;padding:3px 8px;text-align:right}th{background:#eef1f6}
td:first-child,th:first-child{text-align:left}
caption{caption-side:top;text-align:left;font-weight:600;padding:4px 0}
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #dde2ea;background:#fff}
figcaption{font-size:.85rem;color:#555}
nav a{margin-right:1em}
.finding{padding:8px 12px;margin:6px 0;border-left:5px solid #999;background:#fff}
.finding.holds{border-color:#2e8b57}.finding.fails{border-color:#c0392b}.finding.unclear{border-color:#d4a017}
.verdict{font-weight:700;margin-right:.5em}
.muted{color:#666;font-size:.85rem}
.warning{padding:8px 12px;margin:10px 0;border-left:5px solid #c0392b;background:#fdf0ee}
.wide{overflow-x:auto}
"""


class Finding:
    """A claim of the paper checked on this run's numbers: ``verdict`` is holds / fails / unclear."""

    def __init__(self, claim: str, verdict: str, evidence: str) -> None:
        if verdict not in ("holds", "fails", "unclear"):
            raise ValueError(f"verdict {verdict!r} must be holds, fails or unclear")
        self.claim, self.verdict, self.evidence = claim, verdict, evidence

    def __repr__(self) -> str:
        return f"Finding({self.verdict}: {self.claim})"


class Page:
    """Collects HTML parts in order; ``render()`` returns the whole document."""

    def __init__(self, title: str) -> None:
        self.title = title
        self._parts: list[str] = []
        self._toc: list[tuple[str, str]] = []

    def section(self, title: str, level: int = 2) -> "Page":
        anchor = f"s{next(_ANCHORS)}"
        if level == 2:
            self._toc.append((anchor, title))
        self._parts.append(f'<h{level} id="{anchor}">{html.escape(title)}</h{level}>')
        return self

    def paragraph(self, text: str, muted: bool = False) -> "Page":
        cls = ' class="muted"' if muted else ""
        self._parts.append(f"<p{cls}>{html.escape(text)}</p>")
        return self

    def table(self, frame, caption: str | None = None, float_format: str = "{:.4g}") -> "Page":
        """A pandas DataFrame as an HTML table (its index shown unless it is the default 0..n-1); ``inf`` and
        ``nan`` cells are shown as they are, and the caption says what they mean."""
        import pandas as pd

        from ..display import nonfinite_note

        body = frame.to_html(index=not isinstance(frame.index, pd.RangeIndex),
                             border=0, escape=True, na_rep="nan",
                             float_format=lambda v: float_format.format(v))
        caption = " ".join(part for part in (caption, nonfinite_note(frame)) if part)
        if caption:
            body = body.replace(">\n  <thead>", f">\n  <caption>{html.escape(caption)}</caption>\n  <thead>", 1)
        self._parts.append(f'<div class="wide">{body}</div>')
        return self

    def image(self, path: str | Path, caption: str | None = None) -> "Page":
        """Embed a PNG file as a data URI (the file itself stays beside the page)."""
        data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
        alt = html.escape(caption or Path(path).stem)
        cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
        self._parts.append(f'<figure><img alt="{alt}" src="data:image/png;base64,{data}">{cap}</figure>')
        return self

    def warning(self, text: str) -> "Page":
        """A paragraph set apart in red (an incomplete run, a section that could not be built)."""
        self._parts.append(f'<p class="warning">{html.escape(text)}</p>')
        return self

    def raw(self, fragment: str) -> "Page":
        """Append a trusted HTML fragment (built by fnet code with its own escaping)."""
        self._parts.append(fragment)
        return self

    def findings(self, items: Iterable[Finding]) -> "Page":
        for item in items:
            self._parts.append(
                f'<div class="finding {item.verdict}"><span class="verdict">{html.escape(item.verdict.upper())}</span>'
                f"{html.escape(item.claim)}<br><span class=\"muted\">{html.escape(item.evidence)}</span></div>"
            )
        return self

    def insert(self, position: int, other: "Page") -> "Page":
        """Insert ``other``'s sections and parts at ``position`` (an index into this page's parts)."""
        self._parts[position:position] = other._parts
        offset = sum(1 for part in self._parts[:position] if part.startswith("<h2"))
        self._toc[offset:offset] = other._toc
        return self

    @property
    def size(self) -> int:
        """Number of parts so far (a position for ``insert``)."""
        return len(self._parts)

    def render(self) -> str:
        toc = "".join(f'<a href="#{a}">{html.escape(t)}</a>' for a, t in self._toc)
        return (
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{html.escape(self.title)}</title>"
            f"<style>{_CSS}</style></head><body><main><h1>{html.escape(self.title)}</h1><nav>{toc}</nav>"
            + "\n".join(self._parts)
            + "</main></body></html>\n"
        )
