"""Findings are computed from a run's own tables: each verdict follows the numbers, both ways."""
from __future__ import annotations

import pandas as pd
import pytest

from fnet_dist.report.findings import amplification, counterparts, cross_corpus, network_controls, small_networks_vs_random


def _consistency(counts):
    return pd.DataFrame([{"dataset": d, "template": t + 1, "counterparts": c, "samples_with_counterpart": min(c, 3)}
                         for d, cs in counts.items() for t, c in enumerate(cs)])


def test_counterpart_verdicts_follow_the_counts():
    assert counterparts(_consistency({"news": [3, 0, 5], "code": [1, 2, 0]}), 0.2).verdict == "holds"
    assert counterparts(_consistency({"news": [0, 0, 5], "code": [0, 0, 0]}), 0.2).verdict == "fails"
    mixed = counterparts(_consistency({"news": [3, 4, 0], "code": [0, 0, 1]}), 0.2)
    assert mixed.verdict == "unclear" and "news: 2/3" in mixed.evidence and "code: 1/3" in mixed.evidence


def test_cross_corpus_verdicts():
    cross = pd.DataFrame({"dataset_1": ["news", "news"], "template_1": [1, 2], "dataset_2": ["code", "code"],
                          "template_2": [1, 1], "iou": [0.05, 0.6]})
    assert cross_corpus(cross, 0.2).verdict == "holds"
    assert cross_corpus(cross.assign(iou=[0.05, 0.1]), 0.2).verdict == "fails"


def _primary(rows):
    return pd.DataFrame([{"condition": c, "task": t, "metric": m, "value": v, "neurons": n} for c, t, m, v, n in rows])


def test_small_networks_against_random_and_amplification():
    rows = [("normal", "rt", "acc", 0.8, 0), ("random15:seed0", "rt", "acc", 0.78, 150),
            ("inhibit:news/1", "rt", "acc", 0.5, 10), ("inhibit:news/2", "rt", "acc", 0.79, 5),
            ("top5:multiply1.02", "rt", "acc", 0.81, 50)]
    finding = small_networks_vs_random(_primary(rows), 1000, "random15:seed0")
    assert finding.verdict == "holds" and "1 of 2 small networks" in finding.evidence
    rows[2] = ("inhibit:news/1", "rt", "acc", 0.79, 10)
    assert small_networks_vs_random(_primary(rows), 1000, "random15:seed0").verdict == "fails"
    assert amplification(_primary(rows), "top5:multiply1.02").verdict == "holds"
    rows[-1] = ("top5:multiply1.02", "rt", "acc", 0.70, 50)
    assert amplification(_primary(rows), "top5:multiply1.02").verdict == "fails"


@pytest.mark.parametrize("minus_massive, verdict", [(0.30, "holds"), (0.01, "fails")])
def test_network_controls_verdicts(minus_massive, verdict):
    controls = pd.DataFrame([{"network": "inhibit:news/1", "neurons": 10, "task": "rt", "metric": "acc", "normal": 0.8,
                              "network_value": 0.4, "control": k, "draws": 10, "mean": 0.78, "low": 0.75, "high": 0.8,
                              "p_value": 1 / 11} for k in ("matched_count", "matched_avoid_massive")])
    separated = pd.DataFrame([{"network": "inhibit:news/1", "task": "rt", "metric": "acc", "damage_whole": 0.4,
                               "damage_minus_massive": minus_massive, "damage_massive_only": 0.2}])
    beats, survives = network_controls(controls, separated)
    assert beats.verdict == "holds"
    assert survives.verdict == verdict
    weak = network_controls(controls.assign(p_value=0.5), separated)[0]
    assert weak.verdict == "fails"
