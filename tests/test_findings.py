"""Findings from a run's own tables and lm-eval's per-example samples: each verdict follows its test, both ways,
and the bugs of the first version stay fixed."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import hypergeom, sem
from scipy.stats import t as t_dist

from fnet_dist.core.conditions import FIELD_COLUMNS, slug_of
from fnet_dist.core.layout import EvaluationFiles, MatchFiles
from fnet_dist.model.masks import NeuronMask
from fnet_dist.report.findings import (
    FindingSettings,
    compute_findings,
    counterparts,
    recurrence,
    reproducibility,
    write_findings,
)
from fnet_dist.report.findings_view import findings_html, read_findings
from fnet_dist.core.config import ReportSection
from fnet_dist.core.stats import CORRECTIONS, conclude

SHAPE = (4, 250)   # 1000 neurons: a 10-neuron network is 1 %
SETTINGS = FindingSettings(ReportSection(bootstrap=300))
N_DOCS = 60


class FakeRun:
    """An evaluate folder as the runner leaves it: results.csv, per-condition samples, masks, controls."""

    def __init__(self, root):
        self.root = root
        self.rows = {"": [], "controls": []}

    def condition(self, name, accuracy_per_doc, *, fields, where="", neurons=0, task="sentiment_rt", mask=None):
        folder = self.root / where / "conditions" / slug_of(name)
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / f"samples_{task}.jsonl", "a") as handle:
            for doc, value in enumerate(accuracy_per_doc):
                handle.write(json.dumps({"doc_id": doc, "acc": float(value)}) + "\n")
        self.rows[where].append({"condition": name, "task": task, "metric": "acc", "value": float(np.mean(accuracy_per_doc)),
                                 "stderr": 0.0, "filter": "none", "n_samples": len(accuracy_per_doc), "neurons": neurons,
                                 **{c: None for c in FIELD_COLUMNS}, **fields})
        if mask is not None:
            (self.root / "masks").mkdir(exist_ok=True)
            NeuronMask(mask, name=name).save(str(self.root / "masks" / f"{slug_of(name)}.npz"))

    def write(self, selection=None):
        for where, rows in self.rows.items():
            if rows:
                (self.root / where).mkdir(parents=True, exist_ok=True)
                pd.DataFrame(rows).to_csv(self.root / where / "results.csv", index=False)
        if selection:
            (self.root / "controls" / "selection.json").write_text(json.dumps({"rule": "test rule", "networks": selection}))
        return self.root


NORMAL = {"kind": "normal"}
NEWS1 = {"edit": "inhibit", "corpus": "news", "template": 1}


def _control(kind, i, **where):
    return {"kind": "control", "edit": "inhibit", "control": kind, "draw": i, **where}


def _top(corpus, edit, factor=None):
    return {"kind": "top", "edit": edit, "factor": factor, "percent": 5.0, "corpus": corpus}


def _docs(rng, accuracy):
    return (rng.uniform(size=N_DOCS) < accuracy).astype(float)


def _network_mask(on_massive=0, off_massive=10):
    mask = np.zeros(SHAPE, dtype=bool)
    mask[0, :on_massive] = True
    mask[1, :off_massive] = True
    return mask


def _run(tmp_path, *, draws=19, network_accuracy=0.2, mask=None, minus_massive=None, avoid=False, networks=1,
         matched=None, flip=0.03):
    """``networks`` networks (news/1 …) at ``network_accuracy``, each with ``matched`` (default ``draws``) count-matched
    draws that flip ``flip`` of the examples, and ``draws`` shared 15 % draws."""
    rng = np.random.default_rng(0)
    run = FakeRun(tmp_path / "evaluate")
    normal = _docs(rng, 0.8)
    run.condition("normal", normal, fields=NORMAL)
    mask = _network_mask() if mask is None else mask
    for i in range(draws):
        run.condition(f"ctl-fraction15/{i}", np.where(rng.uniform(size=N_DOCS) < 0.05, 1 - normal, normal), where="controls",
                      fields=_control("fraction", i, percent=15.0))
    for k in range(1, networks + 1):
        where = {**NEWS1, "template": k}
        run.condition(f"inhibit:news/{k}", normal if network_accuracy is None else _docs(rng, network_accuracy),
                      neurons=int(mask.sum()), mask=mask,
                      fields={"kind": "network", **where})
        for i in range(draws if matched is None else matched):
            run.condition(f"ctl-matched_count:news/{k}/{i}", np.where(rng.uniform(size=N_DOCS) < flip, 1 - normal, normal),
                          where="controls", fields=_control("matched_count", i, **where))
            if avoid:
                run.condition(f"ctl-matched_avoid_massive:news/{k}/{i}", np.where(rng.uniform(size=N_DOCS) < flip, 1 - normal, normal),
                              where="controls", fields=_control("matched_avoid_massive", i, **where))
        if minus_massive is not None:
            run.condition(f"minus-massive:news/{k}", _docs(rng, minus_massive), where="controls",
                          fields={**where, "kind": "minus_massive"})
    return run


def _all(networks):
    return [f"inhibit:news/{k}" for k in range(1, networks + 1)]


def _findings(match, evaluate):
    """The findings of a match folder and an evaluate folder (its controls beside it, as in a run folder)."""
    return compute_findings(MatchFiles(match), EvaluationFiles(evaluate), EvaluationFiles(evaluate / "controls"), SETTINGS,
                            total_neurons=1000, null_runs=[])


def _by_id(findings):
    return {f.id: f for f in findings}


def test_networks_far_beyond_their_own_few_draws_hold_and_one_network_with_4_draws_cannot_decide(tmp_path):
    """Networks are the unit: three networks with 4 matched draws each give 5^3 relabellings, p = 1/125 exactly;
    each network's own result, against its matched draws and against the shared 15 % draws, is in the details."""
    root = _run(tmp_path / "a", networks=3, matched=4).write(selection=_all(3))
    small = _by_id(_findings(tmp_path / "a" / "match", root))["small-networks/sentiment_rt"]
    assert small.verdict == "holds" and small.p_value == pytest.approx(1 / 125) and small.interval[0] > 0
    assert "stratified permutation test over 3 networks, each against its own 4 matched_count draws" in small.test
    assert "networks chosen by: test rule" in small.test and small.minimum == SETTINGS.report.min_accuracy
    mine = [d for d in small.details if d["draws"] == "matched_count"]
    assert [d["network"] for d in mine] == ["news/1", "news/2", "news/3"] and all(d["n_draws"] == 4 for d in mine)
    assert small.effect == pytest.approx(np.mean([d["effect"] for d in mine]))       # the mean over networks
    assert {d["n_draws"] for d in small.details if d["draws"] == "fraction"} == {19}
    assert small.units.endswith("mean over networks beyond their own matched draws")
    root = _run(tmp_path / "b", matched=4).write(selection=_all(1))
    few = _by_id(_findings(tmp_path / "b" / "match", root))["small-networks/sentiment_rt"]
    assert few.verdict == "unclear" and few.reason == "1 network cannot reach p ≤ 0.05: needs ≥ 2"


def test_networks_no_worse_than_their_draws_fail_by_the_equivalence_test(tmp_path):
    """Networks that flip as few examples as their draws: the effect is shown below the declared minimum (0.02)."""
    root = _run(tmp_path, networks=6, matched=4, network_accuracy=None, flip=0.0).write(selection=_all(6))
    small = _by_id(_findings(tmp_path / "match", root))["small-networks/sentiment_rt"]
    assert small.verdict == "fails" and small.p_fail <= 0.05 and "below the minimum the claim needs (0.02)" in small.reason


def test_a_network_like_its_draws_never_holds(tmp_path):
    root = _run(tmp_path, network_accuracy=0.79).write(selection=["inhibit:news/1"])
    small = _by_id(_findings(tmp_path / "match", root))["small-networks/sentiment_rt"]
    assert small.verdict in ("fails", "unclear")


def test_a_task_the_draws_were_not_scored_on_is_unclear_and_says_why(tmp_path):
    """``evaluate.controls.tasks`` may leave a task out: its claims are unclear for that reason, not missing and not
    'not applicable' (the first form said no network was small enough)."""
    rng = np.random.default_rng(1)
    run = _run(tmp_path, avoid=True, mask=_network_mask(on_massive=2))
    run.condition("normal", _docs(rng, 0.8), fields=NORMAL, task="polarity_pl")
    run.condition("inhibit:news/1", _docs(rng, 0.2), neurons=12, fields={"kind": "network", **NEWS1}, task="polarity_pl")
    root = run.write(selection=["inhibit:news/1"])
    (tmp_path / "match").mkdir()
    np.save(tmp_path / "match" / "massive_mask.npy", _network_mask(on_massive=2, off_massive=0))
    found = _by_id(_findings(tmp_path / "match", root))
    assert found["small-networks/sentiment_rt"].verdict == "holds"
    for key in ("small-networks/polarity_pl", "survives-without-massive/polarity_pl"):
        assert found[key].verdict == "unclear"
        assert found[key].reason.startswith("the random draws were not scored on polarity_pl (evaluate.controls.tasks)")


def test_survives_is_not_applicable_without_massive_neurons(tmp_path):
    match = tmp_path / "match"
    match.mkdir()
    massive = np.zeros(SHAPE, dtype=bool)
    massive[0, :5] = True
    np.save(match / "massive_mask.npy", massive)
    root = _run(tmp_path).write(selection=["inhibit:news/1"])     # the network has no neuron on row 0
    survives = _by_id(_findings(match, root))["survives-without-massive/sentiment_rt"]
    assert survives.verdict == "not applicable" and "no network" in survives.reason   # was "holds", trivially


def test_a_network_wholly_on_massive_channels_does_not_survive_without_them(tmp_path):
    match = tmp_path / "match"
    match.mkdir()
    massive = np.zeros(SHAPE, dtype=bool)
    massive[:2, :10] = True
    np.save(match / "massive_mask.npy", massive)
    root = _run(tmp_path, mask=_network_mask(on_massive=3, off_massive=10), avoid=True).write(selection=["inhibit:news/1"])
    survives = _by_id(_findings(match, root))["survives-without-massive/sentiment_rt"]
    # nothing is left without its massive neurons: the normal model, no damage (the first version took the whole network's)
    assert survives.verdict != "holds" and survives.effect < 0


def test_amplification_is_found_for_every_corpus_suffix(tmp_path):
    rng = np.random.default_rng(2)
    run = FakeRun(tmp_path / "evaluate")
    normal = _docs(rng, 0.5)
    run.condition("normal", normal, fields=NORMAL)
    better = np.where(normal == 0, (rng.uniform(size=N_DOCS) < 0.6).astype(float), normal)
    run.condition("top5:multiply1.02@news", better, fields=_top("news", "multiply", 1.02))
    run.condition("top5:multiply1.02@wiki", normal, fields=_top("wiki", "multiply", 1.02))
    found = _by_id(_findings(tmp_path / "match", run.write()))
    assert {"amplification@news", "amplification@wiki"} <= set(found)   # the first version looked for the bare name only
    assert found["amplification@news"].verdict == "holds" and found["amplification@news"].n_examples == N_DOCS
    assert found["amplification@wiki"].verdict == "fails"                # no change at all: the interval is [0, 0]


def test_ica_against_localization_and_their_overlap(tmp_path):
    rng = np.random.default_rng(3)
    run = FakeRun(tmp_path / "evaluate")
    normal = _docs(rng, 0.8)
    a, b = np.zeros(SHAPE, dtype=bool), np.zeros(SHAPE, dtype=bool)
    a.flat[:50], b.flat[950:] = True, True                                          # disjoint: below chance
    run.condition("normal", normal, fields=NORMAL)
    run.condition("top5:inhibit@news", _docs(rng, 0.3), mask=a, fields=_top("news", "inhibit"))
    run.condition("localization:inhibit@news", normal, mask=b, fields={"kind": "localization", "edit": "inhibit", "corpus": "news"})
    found = _by_id(_findings(tmp_path / "match", run.write()))
    assert found["ica-vs-localization@news"].verdict == "holds"
    overlap = found["ica-localization-overlap@news"]
    assert overlap.effect == pytest.approx(2.5) and overlap.p_raw == pytest.approx(hypergeom(1000, 50, 50).cdf(0))
    assert overlap.verdict == "unclear"                    # 0 of 2.5 expected is not evidence of avoidance


def _counterpart_tables(p_values, with_counterpart: int = 15, samples: int = 20, chance: float = 1.0):
    """``counterparts_null.csv`` and ``counterpart_samples.csv`` of templates seen in ``with_counterpart`` of
    ``samples`` samples, random networks in ``chance`` of them on average."""
    m = len(p_values)
    table = pd.DataFrame({"corpus": "news", "template": np.arange(1, m + 1), "counterparts": with_counterpart,
                          "samples_with_counterpart": with_counterpart, "samples": samples,
                          "uniform_samples_mean": 0.0, "frequency_samples_mean": chance, "uniform_samples_p": 1 / 3000,
                          "frequency_samples_p": p_values, "permutations": 2999, "p_value": p_values, "null": "frequency"})
    per_sample = pd.DataFrame([{"corpus": "news", "template": t, "sample": i, "counterparts": int(i < with_counterpart)}
                               for t in range(1, m + 1) for i in range(samples)])
    return table, per_sample


def test_counterparts_hold_when_more_than_half_of_the_templates_beat_random_networks():
    strong = conclude([counterparts(*_counterpart_tables([1 / 3000] * 10), SETTINGS)], SETTINGS.alpha, SETTINGS.correction)[0]
    assert strong.verdict == "holds" and strong.effect == pytest.approx(15 / 20 - 1 / 20) and strong.interval[0] > 0.4
    assert strong.n_examples == 20 and "bootstrap interval over 20 samples" in strong.test
    assert {d["stricter_null"] for d in strong.details} == {"frequency"}
    half = conclude([counterparts(*_counterpart_tables([1 / 3000] * 5 + [0.5] * 5), SETTINGS)], SETTINGS.alpha, SETTINGS.correction)[0]
    assert half.verdict == "unclear" and half.p_raw == pytest.approx(1.0)
    none = conclude([counterparts(*_counterpart_tables([1.0] * 10, with_counterpart=0, chance=2.0), SETTINGS)],
                    SETTINGS.alpha, SETTINGS.correction)[0]
    assert none.verdict == "fails"                       # fewer samples than random networks find, by its interval
    old = counterparts(_counterpart_tables([0.01] * 3)[0].drop(columns=["null"]), None, SETTINGS)
    assert old.estimate is None and "rerun the match stage" in old.reason


def _pairs(first_token=False):
    return pd.DataFrame([
        {"corpus_1": "news", "template_1": 1, "corpus_2": "wiki", "template_2": 1, "iou": 0.95, "chance_iou": 0.01,
         "p_value": 1e-300, "iou_without_massive": 0.9, "chance_iou_without_massive": 0.01,
         "chance_low_without_massive": 0.0, "chance_high_without_massive": 0.03, "p_without_massive": 1e-200,
         "massive_1": True, "massive_2": True, "first_token_1": first_token, "first_token_2": first_token,
         "eligible": not first_token},
        {"corpus_1": "news", "template_1": 2, "corpus_2": "wiki", "template_2": 2, "iou": 0.02, "chance_iou": 0.01,
         "p_value": 0.3, "iou_without_massive": 0.02, "chance_iou_without_massive": 0.01,
         "chance_low_without_massive": 0.0, "chance_high_without_massive": 0.03, "p_without_massive": 0.3,
         "massive_1": False, "massive_2": False, "first_token_1": False, "first_token_2": False, "eligible": True}])


def _summary_null(observed=0.46, uniform=(0.05, 1 / 3000), frequency=(0.2, 1 / 3000)):
    return pd.DataFrame([{"null": kind, "observed": observed, "null_mean": mean, "null_low": mean - 0.02,
                          "null_high": mean + 0.02, "p_value": p, "draws": 2999, "templates": 3, "corpora": 2, "seed": 0}
                         for kind, (mean, p) in (("uniform", uniform), ("frequency", frequency))])


def _halves(recurrence_values, reproducibility_values=(0.6, 0.62, 0.58)):
    rows = [{"kind": "recurrence", "corpus": "all", "split": s, "half": h, "value": v}
            for s, pair in enumerate(recurrence_values) for h, v in zip("AB", pair)]
    rows += [{"kind": "reproducibility", "corpus": c, "split": s, "half": "", "value": v}
             for c in ("news", "wiki") for s, v in enumerate(reproducibility_values)]
    return pd.DataFrame(rows)


def test_recurrence_is_an_estimate_against_the_stricter_null_with_an_interval_from_split_halves():
    halves = _halves([(0.44, 0.47), (0.45, 0.43), (0.48, 0.46)])
    real = conclude([recurrence(_pairs(), _summary_null(), halves, SETTINGS)], SETTINGS.alpha, SETTINGS.correction)[0]
    assert real.verdict == "holds" and real.effect == pytest.approx(0.46 - 0.2)   # the frequency-preserving null's mean
    se = np.sqrt(np.mean((np.array([0.44, 0.47, 0.45, 0.43, 0.48, 0.46]) - 0.46) ** 2))
    assert real.interval[1] - real.effect == pytest.approx(t_dist.ppf(0.975, 3) * se)
    chance = conclude([recurrence(_pairs(), _summary_null(frequency=(0.45, 0.3)), halves, SETTINGS)],
                      SETTINGS.alpha, SETTINGS.correction)[0]
    assert chance.verdict == "unclear" and "corrected p 0.3" in chance.reason   # the uniform null alone would say holds
    unsplit = conclude([recurrence(_pairs(), _summary_null(), None, SETTINGS)], SETTINGS.alpha, SETTINGS.correction)[0]
    assert unsplit.verdict == "unclear" and np.isnan(unsplit.interval[0])


def test_a_first_token_template_never_counts_as_a_recurrence_alone():
    flagged = conclude([recurrence(_pairs(first_token=True), pd.DataFrame(), None, SETTINGS)], SETTINGS.alpha, SETTINGS.correction)[0]
    assert flagged.verdict != "holds" and flagged.details[0]["first_token"] and "first-token" in flagged.reason
    assert "predate" in recurrence(_pairs(), None, None, SETTINGS).reason


def test_reproducibility_has_a_t_interval_over_splits():
    null = _summary_null(observed=0.6, frequency=(0.1, 1 / 3000)).assign(splits=3)
    found = conclude([reproducibility(null, _halves([(0.4, 0.4)] * 3), SETTINGS)], SETTINGS.alpha, SETTINGS.correction)[0]
    assert found.verdict == "holds" and found.effect == pytest.approx(0.5)
    assert found.interval == pytest.approx(t_dist.interval(0.95, 2, loc=0.5, scale=sem([0.6, 0.62, 0.58])))
    assert reproducibility(pd.DataFrame(), None, SETTINGS) is None


def test_findings_json_is_what_the_page_shows(tmp_path):
    found = conclude([counterparts(*_counterpart_tables([1 / 3000] * 10), SETTINGS),
                      recurrence(_pairs(first_token=True), pd.DataFrame(), None, SETTINGS)], SETTINGS.alpha, SETTINGS.correction)
    path = write_findings(found, tmp_path / "findings.json", SETTINGS, {"rule": "most counterparts"})
    recorded = json.loads(path.read_text())
    assert recorded["selection_rule"] == "most counterparts" and recorded["correction"] == CORRECTIONS["finding"]
    record = recorded["findings"][0]
    assert {"claim", "verdict", "test", "effect", "units", "interval", "p_value", "alpha", "n_draws", "n_examples",
            "correction", "reason", "conditions", "tables", "anchors"} <= set(record)
    page = findings_html(read_findings(path), lambda f: [])
    assert 'id="finding-counterparts"' in page and f"{record['p_value']:.3g}" in page and "NOT APPLICABLE" not in page
    assert record["reason"] in page and recorded["findings"][1]["verdict"].upper() in page


def test_the_top_neurons_are_tested_against_random_draws_of_as_many_neurons(tmp_path):
    rng = np.random.default_rng(4)
    run = FakeRun(tmp_path / "evaluate")
    normal = _docs(rng, 0.8)
    run.condition("normal", normal, fields=NORMAL)
    run.condition("top5:inhibit@news", _docs(rng, 0.3), fields=_top("news", "inhibit"))
    run.condition("top5-nofirst:inhibit@news", np.where(rng.uniform(size=N_DOCS) < 0.05, 1 - normal, normal),
                  fields=_top("news", "inhibit") | {"kind": "top_no_first_token"})
    for i in range(19):
        run.condition(f"ctl-fraction5/{i}", np.where(rng.uniform(size=N_DOCS) < 0.05, 1 - normal, normal), where="controls",
                      fields=_control("fraction", i, percent=5.0))
        run.condition(f"ctl-fraction15/{i}", 1 - normal, where="controls", fields=_control("fraction", i, percent=15.0))
    found = _by_id(_findings(tmp_path / "match", run.write()))["top-vs-random@news/sentiment_rt"]
    assert found.verdict == "holds" and found.n_draws == 19 and "against 19 random 5 % draws" in found.test
    assert found.conditions[1]["percent"] == 5.0                       # the 5 % draws, never the 15 % ones
    without = _by_id(_findings(tmp_path / "match", run.write()))["top-without-first-token-vs-random@news/sentiment_rt"]
    assert without.verdict != "holds" and "without the first-token templates" in without.claim  # damage like a draw's
    assert without.conditions[0]["kind"] == "top_no_first_token" and without.n_draws == 19
