"""A self-contained HTML page: sections of text, tables and images (embedded as data URIs).

- ``Page(title)``: ``.section(title, anchor=)``, ``.paragraph(text)``, ``.warning(text)``,
  ``.table(frame, caption, anchor=, key=)``, ``.image(path, caption, anchor=)``, ``.raw(html)`` (trusted
  fragments only); ``.render() -> str``. The findings (``findings.json``) are rendered by ``findings_view``.
- ``anchor_id(text)``: an HTML id from a finding id or table name (``small-networks/wiki_ppl`` → ``small-networks-wiki_ppl``).
- ``table_html(frame, caption, anchor, key)``: a table that fits the page at 1,280 px: the ``key`` columns
  (those a finding needs) first, the columns that would not fit folded into a details cell per row, rows
  past ``MAX_ROWS`` hidden behind a show-all control (HTML and CSS only, no script). ``inf`` and ``nan``
  cells are shown as they are, and the caption says what they mean.
All text is HTML-escaped; images are embedded so the page opens on its own, and also kept beside it.
"""
from __future__ import annotations

import base64
import html
import itertools
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..core.display import nonfinite_note

__all__ = ["MAX_ROWS", "Page", "anchor_id", "table_html"]

_ANCHORS = itertools.count(1)
MAX_ROWS = 20  # rows a table shows before its show-all control
_TABLE_PX = 1036  # the text column: main's 1,100 px less its padding
_CHAR_PX, _CELL_PX, _MORE_PX = 7.4, 20, 90  # one character at .88rem, a cell's padding and borders, the details cell

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2330;background:#fafbfc}
main{max-width:1100px;margin:0 auto;padding:24px 32px 64px}
h1{font-size:1.7rem;margin:.2em 0}h2{font-size:1.3rem;margin-top:2.2em;border-bottom:1px solid #dde2ea;padding-bottom:.2em}
h3{font-size:1.05rem;margin-top:1.5em}
table{border-collapse:collapse;margin:0;font-size:.88rem;background:#fff;max-width:100%}
th,td{border:1px solid #dde2ea;padding:3px 8px;text-align:right;vertical-align:top}th{background:#eef1f6}
td:first-child,th:first-child,td.t,th.t{text-align:left}td.t{overflow-wrap:break-word}
.tbl{margin:.8em 0}.tbl>input{display:none}
.tbl>input:not(:checked)~.wide tr.more{display:none}
.tbl>input:checked~label .show,.tbl>input:not(:checked)~label .hide{display:none}
.tbl>label{display:inline-block;margin-top:4px;font-size:.85rem;color:#1f5fa8;cursor:pointer;text-decoration:underline}
td details summary{cursor:pointer;color:#1f5fa8;white-space:nowrap}
td dl{display:grid;grid-template-columns:auto auto;gap:0 .8em;margin:.3em 0;text-align:left}td dd{margin:0;text-align:right}
table.findings{width:100%}table.findings td,table.findings th{text-align:left}table.findings th{white-space:nowrap}
.verdict{display:inline-block;font-weight:700;font-size:.8rem;padding:1px 6px;border-radius:3px;color:#fff;background:#777}
.verdict.holds{background:#2e8b57}.verdict.fails{background:#c0392b}.verdict.unclear{background:#b8860b}
.verdict.not-applicable{background:#999}
tr:target{outline:2px solid #1f5fa8}.tbl:target,figure:target{outline:2px solid #1f5fa8;outline-offset:4px}
caption{caption-side:top;text-align:left;font-weight:600;padding:4px 0}
figure{margin:1em 0}figure img{max-width:100%;box-sizing:border-box;border:1px solid #dde2ea;background:#fff}
figcaption{font-size:.85rem;color:#555}
nav a{margin-right:1em}
.muted{color:#666;font-size:.85rem}
.warning{padding:8px 12px;margin:10px 0;border-left:5px solid #c0392b;background:#fdf0ee}
.wide{overflow-x:auto}
"""


class Page:
    """Collects HTML parts in order; ``render()`` returns the whole document."""

    def __init__(self, title: str) -> None:
        self.title = title
        self._parts: list[str] = []
        self._toc: list[tuple[str, str]] = []

    def section(self, title: str, level: int = 2, anchor: str | None = None) -> "Page":
        anchor = anchor or f"s{next(_ANCHORS)}"
        if level == 2:
            self._toc.append((anchor, title))
        self._parts.append(f'<h{level} id="{anchor}">{html.escape(title)}</h{level}>')
        return self

    def paragraph(self, text: str, muted: bool = False) -> "Page":
        cls = ' class="muted"' if muted else ""
        self._parts.append(f"<p{cls}>{html.escape(text)}</p>")
        return self

    def table(self, frame, caption: str | None = None, float_format: str = "{:.4g}", *, anchor: str | None = None,
              key: Sequence[str] = ()) -> "Page":
        """A pandas DataFrame as an HTML table that fits the page (see ``table_html``)."""
        self._parts.append(table_html(frame, caption, anchor or f"t{next(_ANCHORS)}", key, float_format))
        return self

    def image(self, path: str | Path, caption: str | None = None, *, anchor: str | None = None) -> "Page":
        """Embed a PNG file as a data URI (the file itself stays beside the page)."""
        data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
        alt = html.escape(caption or Path(path).stem)
        cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
        ident = f' id="{html.escape(anchor)}"' if anchor else ""
        self._parts.append(f'<figure{ident}><img alt="{alt}" src="data:image/png;base64,{data}">{cap}</figure>')
        return self

    def warning(self, text: str) -> "Page":
        """A paragraph set apart in red (an incomplete run, a section that could not be built)."""
        self._parts.append(f'<p class="warning">{html.escape(text)}</p>')
        return self

    def raw(self, fragment: str) -> "Page":
        """Append a trusted HTML fragment (built by fnet code with its own escaping)."""
        self._parts.append(fragment)
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


def anchor_id(text: str) -> str:
    """An HTML id: letters, digits, ``-``, ``_`` and ``.`` kept, anything else ``-``."""
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in text)


def _cell(value, float_format: str) -> str:
    """A value as table text: floats with ``float_format`` (``inf``, ``nan`` as they are), None as an en dash."""
    if value is None:
        return "–"
    if isinstance(value, (float, np.floating)):
        return float_format.format(float(value))
    return str(value)


def _header(name) -> str:
    return str(name).replace("_", " ")


def _min_width(texts: Iterable[str], wraps: bool) -> float:
    """Narrowest a column can get, in px: its longest word when it wraps, its longest text when not."""
    longest = max((len(w) for t in texts for w in (t.split() if wraps else [t])), default=1)
    return longest * _CHAR_PX + _CELL_PX


def _fit(columns: list, widths: dict, key: Sequence[str], used: float, text: dict) -> tuple[list, list]:
    """Split ``columns`` (priority order) into those shown and those folded into the details cell, so that
    the shown ones plus the opened details cell fit ``_TABLE_PX``; key columns are never folded."""
    shown, folded = list(columns), []
    def details() -> float:  # an opened details cell: the longest folded name beside the longest value
        if not folded:
            return 0.0
        return (_min_width([_header(c) for c in folded], True) + _min_width([t for c in folded for t in text[c]], False)
                + _CELL_PX)
    while used + sum(widths[c] for c in shown) + max(details(), _MORE_PX if folded else 0) > _TABLE_PX:
        spare = [c for c in shown if c not in key]
        if not spare:
            break
        folded.insert(0, spare[-1])
        shown.remove(spare[-1])
    return shown, folded


def table_html(frame, caption: str | None, anchor: str, key: Sequence[str] = (), float_format: str = "{:.4g}") -> str:
    """``frame`` as a table that fits ``_TABLE_PX``: its index (unless 0..n-1) first, then the ``key`` columns,
    then the others; those that would not fit go into a details cell at the end of each row. Rows past
    ``MAX_ROWS`` are hidden until the reader ticks the show-all control."""
    import pandas as pd


    missing = [k for k in key if k not in frame.columns]
    if missing:
        raise ValueError(f"key columns {missing} are not in the table {caption!r}; its columns: {list(frame.columns)}")
    show_index = not isinstance(frame.index, pd.RangeIndex)
    columns = list(key) + [c for c in frame.columns if c not in key]
    text = {c: [_cell(v, float_format) for v in frame[c]] for c in columns}
    numeric = {c: pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c]) for c in columns}
    widths = {c: max(_min_width(text[c], not numeric[c]), _min_width([_header(c)], True)) for c in columns}
    index_text = [str(v) for v in frame.index] if show_index else []
    used = _min_width(index_text + [_header(frame.index.name or "")], True) if show_index else 0
    shown, folded = _fit(columns, widths, key, used, text)
    head = ([f'<th class="t">{html.escape(_header(frame.index.name or ""))}</th>'] if show_index else [])
    head += [f'<th{"" if numeric[c] else " class=t"}>{html.escape(_header(c))}</th>' for c in shown]
    if folded:
        head.append('<th class="t">other columns</th>')
    rows = []
    for i in range(len(frame)):
        cells = [f'<th class="t" scope="row">{html.escape(index_text[i])}</th>'] if show_index else []
        cells += [f'<td{"" if numeric[c] else " class=t"}>{html.escape(text[c][i])}</td>' for c in shown]
        if folded:
            items = "".join(f"<dt>{html.escape(_header(c))}</dt><dd>{html.escape(text[c][i])}</dd>" for c in folded)
            cells.append(f"<td class=\"t\"><details><summary>{len(folded)} more</summary><dl>{items}</dl></details></td>")
        rows.append(f'<tr{" class=more" if i >= MAX_ROWS else ""}>{"".join(cells)}</tr>')
    caption = " ".join(part for part in (caption, nonfinite_note(frame)) if part)
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    table = f'<div class="wide"><table>{cap}<thead><tr>{"".join(head)}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>'
    if len(frame) <= MAX_ROWS:
        return f'<div class="tbl" id="{html.escape(anchor)}">{table}</div>'
    toggle = f"{html.escape(anchor)}-all"
    return (f'<div class="tbl" id="{html.escape(anchor)}"><input type="checkbox" id="{toggle}">{table}'
            f'<label for="{toggle}"><span class="show">Show all {len(frame)} rows</span>'
            f'<span class="hide">Show the first {MAX_ROWS} rows only</span></label></div>')
