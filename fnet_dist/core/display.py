"""How figures and tables show numbers they cannot draw: infinite or undefined values (a destroyed model's
perplexity), and values that are not positive on a log axis. A figure draws what it can and says what it
could not; a table shows the values as they are and says what ``inf`` / ``nan`` mean.

- ``drawable(values, log=False) -> bool ndarray``: finite values (and positive ones on a log axis).
- ``undrawn(labels, values, log=False) -> list[str]``: ``"label (inf)"`` for each value a figure cannot draw.
- ``note_undrawn(ax, items)``: add "not drawn: …" under an axes' x label (nothing when ``items`` is empty).
- ``nonfinite_note(frame) -> str``: one sentence on the table's ``inf`` / ``nan`` cells ("" when there are none).
- ``value_axis(ax, values, axis, label)``: the scale every bar / point figure of the run uses: linear,
  or logarithmic when the values span more than two orders of magnitude (symmetric-log when they change
  sign), said in the axis label, with limits that keep the smallest bar in view.
- ``pool_columns(image, width)``: max-pooled columns, so one selected neuron stays visible in a wide image.
- ``figure_png(fig)``: a matplotlib Figure as PNG bytes (Agg canvas, no pyplot state).
"""
from __future__ import annotations

import io
import textwrap
from typing import Iterable, Sequence

import numpy as np

__all__ = ["drawable", "figure_png", "nonfinite_note", "note_undrawn", "pool_columns", "undrawn", "value_axis"]

_MAX_COLUMNS = 512
_LOG_SPAN = 100.0  # more than two orders of magnitude between the smallest and largest |value|: log axis
_LOG_TOP = 1e100  # matplotlib's log tick locator overflows on axes spanning several hundred decades


def drawable(values, log: bool = False) -> np.ndarray:
    """Bool mask of ``values`` (any shape) a figure can place: finite, and > 0 when ``log``."""
    data = np.asarray(values, dtype=float)
    keep = np.isfinite(data)
    return keep & (data > 0) if log else keep


def undrawn(labels: Sequence, values, log: bool = False) -> list[str]:
    """``"label (value)"`` for each of ``values`` that ``drawable`` rejects."""
    data = np.asarray(values, dtype=float).ravel()
    keep = drawable(data, log)
    return [f"{label} ({value:g})" for label, value, ok in zip(labels, data, keep) if not ok]


def note_undrawn(ax, items: Iterable[str], log: bool = False) -> None:
    """Say under ``ax``'s x label which values it does not show (``items`` from ``undrawn``); nothing when none.

    Call it after ``set_xlabel``: the note is added to the label, so the layout keeps it clear of the data.
    """
    items = list(dict.fromkeys(items))
    if not items:
        return
    why = "not finite or not positive on the log axis" if log else "not finite"
    shown = ", ".join(items[:8]) + (f" and {len(items) - 8} more" if len(items) > 8 else "")
    ax.set_xlabel("\n".join([ax.get_xlabel(), textwrap.fill(f"not drawn ({why}): {shown}", 90)]).strip("\n"))


def nonfinite_note(frame) -> str:
    """A sentence on what ``inf`` / ``nan`` cells of ``frame`` (a DataFrame) mean; "" when it has none."""
    numbers = frame.select_dtypes(include="number").to_numpy(dtype=float)
    kinds = []
    if np.isinf(numbers).any():
        kinds.append("inf: the value overflowed (e.g. the perplexity of a destroyed model)")
    if np.isnan(numbers).any():
        kinds.append("nan: not a number, the value is undefined or was not measured")
    return ("Shown as computed; " + "; ".join(kinds) + ".") if kinds else ""


def figure_png(fig, dpi: int = 120) -> bytes:
    """Render ``fig`` (a matplotlib Figure) with the Agg canvas and return the PNG bytes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # matplotlib only where a figure is drawn

    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def value_axis(ax, values, axis: str = "y", label: str = "") -> str:
    """Choose ``axis`` ("x" or "y") of ``ax``'s scale from the plotted ``values`` and label it; returns the scale.

    ``log`` when all finite values are positive and span more than ``_LOG_SPAN`` (limits from half the
    smallest to twice the largest, within 1e±100, so every bar shows); ``symlog`` when they span as
    much but change sign (limits at twice the extremes; linear within the smallest nonzero |value|, at least
    ``_LOG_SPAN``⁻² of the largest, so rounding noise such as 1e-16 does not stretch the axis); else
    ``linear``. The label says which.
    """
    data = np.asarray(values, dtype=float).ravel()
    data = data[np.isfinite(data)]
    size = np.abs(data[data != 0])
    scale = "linear"
    if size.size and size.max() > _LOG_SPAN * size.min():
        scale = "log" if (data > 0).all() else "symlog"
    set_scale, set_limits, set_label = ((ax.set_yscale, ax.set_ylim, ax.set_ylabel) if axis == "y" else
                                        (ax.set_xscale, ax.set_xlim, ax.set_xlabel))
    if scale == "log":
        set_scale("log")
        set_limits(max(size.min(), 1 / _LOG_TOP) / 2, min(size.max(), _LOG_TOP) * 2)
    elif scale == "symlog":
        set_scale("symlog", linthresh=float(max(size.min(), size.max() / _LOG_SPAN ** 2)))
        low, high = (2 * float(np.clip(v, -_LOG_TOP, _LOG_TOP)) for v in (min(data.min(), 0), max(data.max(), 0)))
        set_limits(low, high)
    suffix = {"log": " (log scale)", "symlog": " (symmetric log scale)"}.get(scale, "")
    set_label(f"{label}{suffix}")
    return scale


def pool_columns(image: np.ndarray, width: int = _MAX_COLUMNS) -> np.ndarray:
    """Max-pool the columns of ``(rows, columns)`` to at most ``width`` so one selected neuron stays visible."""
    rows, columns = image.shape
    if columns <= width:
        return image
    edges = np.linspace(0, columns, width + 1).astype(int)
    return np.maximum.reduceat(image, edges[:-1], axis=1)
