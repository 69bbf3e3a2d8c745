"""The paper's numbers as data (fnet_dist/paper/tables.csv) and ``fnet compare-paper`` on synthetic runs."""
from __future__ import annotations

import pytest

from fnet_dist.paper import TABLE_ROWS, paper_tables


def _value(table: int, dataset: str, item: str, condition: str) -> float:
    rows = paper_tables()
    hit = rows[(rows["table"] == table) & (rows["dataset"] == dataset) & (rows["item"] == item)
               & (rows["condition"] == condition)]
    assert len(hit) == 1, (table, dataset, item, condition)
    return float(hit["value"].iloc[0])


def test_tables_have_every_published_number_once():
    rows = paper_tables()
    assert rows.groupby("table").size().to_dict() == TABLE_ROWS
    assert (rows["source"] == "Table " + rows["table"].astype(str)).all()
    assert rows["value"].notna().all()
    assert not rows.duplicated(["table", "model", "dataset", "item", "condition", "metric"]).any()
    counts = rows[rows["table"].isin([1, 6, 7, 8])]
    assert set(counts["dataset"]) == {"news", "wiki", "math", "code"}
    assert counts.groupby(["table", "dataset"]).size().eq(10).all()
    assert counts["value"].between(0, 6400).all() and (counts["value"] % 1 == 0).all()


def test_known_values():
    assert _value(1, "code", "template 7", "match") == 1473
    assert _value(6, "wiki", "template 7", "match") == 89 and _value(7, "math", "template 10", "match") == 191
    assert _value(8, "code", "template 6", "match") == 202
    assert _value(3, "sst2", "normal", "normal") == 0.9358
    assert _value(3, "sst2", "network 6", "inhibit network 6") == 0.0401
    assert _value(2, "wiki/math", "wiki template 7 / math template 10", "group templates") == 0.9302
    assert _value(5, "", "ICA top 5% vs LLM Localization", "top 5% neurons") == 0.022
    assert _value(9, "wikitext", "WIKITEXT (PPL)", "ICA inhibit top 5%") == 40.4245
    assert _value(13, "mnli", "MNLI", "inhibit 10 networks") == 0.4425
    rows = paper_tables()
    assert rows.loc[(rows["table"] == 3) & (rows["item"] == "network 2"), "neurons"].unique().tolist() == ["336"]


def test_tables_agree_with_each_other():
    """Numbers the paper prints twice agree, and the printed averages are the means of their columns."""
    rows = paper_tables()
    for task in ("sst2", "mrpc", "rte"):
        assert _value(3, task, "normal", "normal") == float(rows[(rows["table"] == 10) & (rows["dataset"] == task)
                                                               & (rows["condition"] == "normal")]["value"].iloc[0])
    for table in (4, 9):
        part = rows[(rows["table"] == table)]
        normal = part[part["condition"] == "normal"].set_index("dataset")["value"]
        assert normal.equals(rows[(rows["table"] == 9) & (rows["condition"] == "normal")].set_index("dataset")["value"])
        for condition, group in part.groupby("condition"):
            tasks = group[~group["dataset"].isin(["average", "wikitext"])]
            assert len(tasks) == 8
            assert tasks["value"].mean() == pytest.approx(group[group["dataset"] == "average"]["value"].iloc[0], abs=6e-4)
