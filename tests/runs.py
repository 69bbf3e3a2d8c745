"""Compare two run folders: every table a run wrote (CSV under match/ and evaluate/, not the per-condition
folders) and its findings must be equal. The stage-by-stage test uses it; so does a refactor that must not
change what a run finds, against a run folder of the code before it:

    python tests/runs.py BEFORE AFTER [--rename dataset=corpus ...]

``--rename OLD=NEW`` maps a column (or findings key) named OLD in BEFORE to NEW before comparing, for a change
that renames a column on purpose. Exit status 0 when equal, 1 with the differences listed otherwise.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

SKIPPED_FOLDERS = {"conditions", "tasks"}


def run_results(out: Path) -> dict[str, object]:
    """``{relative path: DataFrame}`` for every table of the run, and ``findings`` (findings.json's content)."""
    tables = {str(p.relative_to(out)): pd.read_csv(p) if p.stat().st_size > 1 else pd.DataFrame()  # an empty table
              for folder in ("match", "evaluate", "nulls")
              for p in sorted((Path(out) / folder).rglob("*.csv")) if not SKIPPED_FOLDERS & set(p.parts)}
    return {**tables, "findings": json.loads((Path(out) / "report" / "findings.json").read_text())}


def _renamed(value, renames: dict[str, str]):
    if isinstance(value, dict):
        return {renames.get(k, k): _renamed(v, renames) for k, v in value.items()}
    if isinstance(value, list):
        return [_renamed(v, renames) for v in value]
    return value


def _names_only(findings: dict) -> dict:
    """Findings whose conditions are names (a findings.json before conditions became records)."""
    return {**findings, "findings": [{**f, "conditions": [c["condition"] if isinstance(c, dict) else c
                                                           for c in f.get("conditions", [])]}
                                     for f in findings.get("findings", [])]}


def differences(before: dict, after: dict, renames: dict[str, str] | None = None, rtol: float = 1e-6) -> list[str]:
    """What differs between two ``run_results`` (empty when they are equal)."""
    renames = renames or {}
    found = [f"{name}: only in the first run" for name in sorted(set(before) - set(after))]
    found += [f"{name}: only in the second run" for name in sorted(set(after) - set(before))]
    for name in sorted(set(before) & set(after)):
        if name == "findings":
            old, new = _renamed(before[name], renames), after[name]
            if old != new and _names_only(old) != _names_only(new):
                found.append("findings differ")
            elif old != new:
                found.append("(findings equal but for their conditions: names in the first run, records in the second)")
            continue
        try:
            pd.testing.assert_frame_equal(before[name].rename(columns=renames), after[name], check_exact=False,
                                          rtol=rtol, obj=name)
        except AssertionError as exc:
            found.append(str(exc).strip().splitlines()[0] + " …")
    return found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--rename", action="append", default=[], metavar="OLD=NEW")
    args = parser.parse_args(argv)
    renames = dict(r.split("=", 1) for r in args.rename)
    before, after = run_results(args.before), run_results(args.after)
    found = differences(before, after, renames)
    for line in found:
        print(line)
    real = [line for line in found if not line.startswith("(")]
    print(f"{len(before)} tables and findings compared: {'equal' if not real else f'{len(real)} differ'}")
    return 1 if real else 0


if __name__ == "__main__":
    sys.exit(main())
