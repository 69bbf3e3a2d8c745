"""The paper's published numbers as data, and a run's figures beside them.

- ``paper_tables() -> DataFrame``: Tables 1-13 of the paper, one row per published number (``tables.csv``:
  table, model, dataset, item, condition, metric, value, neurons, source), transcribed from the paper's text.
- ``fnet_dist.paper.compare``: ``docs/replication.md`` from one or more run folders (``fnet compare-paper``).
"""
from __future__ import annotations

from functools import lru_cache
from importlib import resources

import pandas as pd

__all__ = ["TABLE_ROWS", "paper_tables"]

TABLE_ROWS = {1: 40, 2: 16, 3: 44, 4: 30, 5: 1, 6: 40, 7: 40, 8: 40, 9: 30, 10: 24, 11: 30, 12: 18, 13: 18}
"""Published numbers per table: 10 templates × 4 corpora (1, 6-8), 16 template pairs (2), 10 networks × 4 tasks
plus the caption's 4 normal accuracies (3), 10 rows × 3 conditions (4, 9, 11), 8 × 3 (10), 6 × 3 (12, 13)."""


@lru_cache(maxsize=1)
def _read() -> pd.DataFrame:
    with resources.files(__package__).joinpath("tables.csv").open("r", encoding="utf-8") as handle:
        return pd.read_csv(handle, dtype={"neurons": str, "dataset": str}, keep_default_na=False,
                           na_values={"value": [""]})


def paper_tables() -> pd.DataFrame:
    """All published numbers of Tables 1-13 (a copy; ``value`` is float, ``neurons`` the paper's text)."""
    return _read().copy()
