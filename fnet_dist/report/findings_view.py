"""The Findings table of the report, rendered from ``report/findings.json`` (one row per claim).

- ``FINDING_VERDICTS``: holds, fails, unclear, not applicable.
- ``read_findings(path) -> list[dict]``: the findings of a run, checked (a list, or ``{"findings": [...]}``;
  per finding ``claim`` and ``verdict``, optionally ``id``, ``test``, ``effect`` (a number, or
  ``{"value", "units"}``), ``units``, ``interval`` ([low, high]), ``p_value``, ``alpha``, ``n_draws`` /
  ``n_examples``, ``correction``, ``reason``, ``conditions``, ``tables``, ``figures``).
- ``findings_html(findings, links) -> str``: the table: verdict, claim (with its test, correction, reason
  and the conditions it used, named by ``fnet_dist.core.names``), effect with its units and interval at its
  level, p-value (corrected, the uncorrected one beside it) against alpha, number of draws or examples, and
  links to the evidence (``links(finding) -> [(label, element id)]``); each row has the id
  ``anchor_id("finding-<id>")``.
"""
from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Callable, Sequence

from ..core.errors import InputError
from ..core.names import condition_names
from .page import anchor_id

__all__ = ["FINDING_VERDICTS", "findings_html", "read_findings"]

FINDING_VERDICTS = ("holds", "fails", "unclear", "not applicable")


def read_findings(path: str | Path) -> list[dict]:
    """The findings in ``path`` (``findings.json``), each with an ``id`` (its position when it has none)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{path} is not a readable findings JSON file ({exc}); rebuild the report (fnet run --stages report)") from exc
    items = data.get("findings") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise InputError(f"{path} holds {type(items).__name__}, expected a list of findings; rebuild the report")
    found = []
    for i, item in enumerate(items, 1):
        if not isinstance(item, dict) or not isinstance(item.get("claim"), str):
            raise InputError(f"finding {i} of {path} has no claim text; expected an object with 'claim' and 'verdict'")
        verdict = str(item.get("verdict", "")).lower().replace("_", " ")
        if verdict not in FINDING_VERDICTS:
            raise InputError(f"finding {i} of {path} has verdict {item.get('verdict')!r}; expected one of "
                             f"{', '.join(FINDING_VERDICTS)}")
        found.append({**item, "id": str(item.get("id") or i), "verdict": verdict})
    return found


def _number(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, (int, float)):
        return f"{value:.{digits}g}"
    return str(value)


def _effect(finding: dict) -> str:
    effect, units = finding.get("effect"), finding.get("units") or finding.get("effect_units") or ""
    if isinstance(effect, dict):
        effect, units = effect.get("value"), effect.get("units") or units
    text = _number(effect)
    interval = finding.get("interval")
    if isinstance(interval, (list, tuple)) and len(interval) == 2:
        level = finding.get("level")
        at = f"{100 * level:g} %: " if isinstance(level, (int, float)) else ""
        text += f" [{at}{_number(interval[0])}, {_number(interval[1])}]"
    minimum = finding.get("minimum")
    units = f"{units}; minimum effect {_number(minimum)}" if isinstance(minimum, (int, float)) and minimum > 0 else units
    return f"{text} {units}".strip() if text != "–" else "–"


def _draws(finding: dict) -> str:
    parts = [f"{finding[k]} {label}" for k, label in (("n_draws", "draws"), ("n_examples", "examples"))
             if finding.get(k) is not None]
    return ", ".join(parts) or "–"


def _p_value(finding: dict) -> str:
    p, raw, alpha = finding.get("p_value"), finding.get("p_raw"), finding.get("alpha")
    text = _number(p)
    p_fail = finding.get("p_fail")
    notes = [f"uncorrected {_number(raw)}" if raw is not None and text != "–" else "",
             f"α {_number(alpha, 2)}" if alpha is not None and text != "–" else "",
             f"equivalence p {_number(p_fail)}" if p_fail is not None else ""]
    notes = [n for n in notes if n]
    return f"{text} ({'; '.join(notes)})" if notes else text


def _conditions(finding: dict) -> str:
    """The conditions a finding used, as one folded list (draws counted, not listed)."""
    names = condition_names(finding.get("conditions") or [])
    if not names:
        return ""
    return (f"<details><summary>{len(names)} condition{'s' if len(names) > 1 else ''}</summary>"
            f"{html.escape(', '.join(names))}</details>")


def findings_html(findings: Sequence[dict], links: Callable[[dict], list[tuple[str, str]]]) -> str:
    """The findings as one table (see the module docstring); an empty list gives an empty string."""
    if not findings:
        return ""
    rows = []
    for f in findings:
        notes = [f.get("test"), f.get("correction") and f"correction: {f['correction']}", f.get("reason")]
        note = "; ".join(html.escape(str(n)) for n in notes if n)
        evidence = ", ".join(f'<a href="#{html.escape(anchor)}">{html.escape(label)}</a>' for label, anchor in links(f))
        verdict = f["verdict"]
        rows.append(
            f'<tr id="{anchor_id("finding-" + f["id"])}"><td><span class="verdict {verdict.replace(" ", "-")}">'
            f'{html.escape(verdict.upper())}</span></td>'
            f'<td>{html.escape(f["claim"])}{f"<br><span class=muted>{note}</span>" if note else ""}'
            f"{_conditions(f)}</td>"
            f"<td>{html.escape(_effect(f))}</td><td>{html.escape(_p_value(f))}</td><td>{html.escape(_draws(f))}</td>"
            f"<td>{evidence or '–'}</td></tr>")
    head = "".join(f"<th>{h}</th>" for h in ("verdict", "claim", "effect [interval]", "p-value", "n", "evidence"))
    return (f'<div class="tbl" id="findings-table"><div class="wide"><table class="findings">'
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div></div>")
