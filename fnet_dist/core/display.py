"""How figures and tables show numbers they cannot draw: infinite or undefined values (a destroyed model's
perplexity), and values that are not positive on a log axis. A figure draws what it can and says what it
could not; a table shows the values as they are and says what ``inf`` / ``nan`` mean.

- ``drawable(values, log=False) -> bool ndarray``: finite values (and positive ones on a log axis).
- ``undrawn(labels, values, log=False) -> list[str]``: ``"label (inf)"`` for each value a figure cannot draw.
- ``note_undrawn(ax, items)``: add "not drawn: …" under an axes' x label (nothing when ``items`` is empty).
- ``nonfinite_note(frame) -> str``: one sentence on the table's ``inf`` / ``nan`` cells ("" when there are none).
"""
from __future__ import annotations

import textwrap
from typing import Iterable, Sequence

import numpy as np

__all__ = ["drawable", "nonfinite_note", "note_undrawn", "undrawn"]


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
