"""Null-model runs: the random-initialised twin, shuffled text, null variants of a config, and the findings that
compare the trained model's structure with theirs."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from fnet_dist.core.config import PipelineConfig
from fnet_dist.core.corpora import Sample, Selection
from fnet_dist.core.errors import InputError
from fnet_dist.core.layout import MatchFiles, RunLayout
from fnet_dist.core.stats import conclude
from fnet_dist.model.loading import check_same_model, load_model
from fnet_dist.record.sampling import shuffle_tokens
from fnet_dist.report.findings import FindingSettings, NullRun, against_null_model

SETTINGS = FindingSettings()
CONFIG = {"corpora": {"news": "offline:news", "code": "offline:code"}, "out": "runs/x",
          "nulls": {"random-init": {"set": {"model.init": "random"}, "corpora": ["news"]},
                    "shuffled": {"set": {"record.shuffle": "tokens_within_sample"}}}}


def test_a_null_variant_is_the_config_with_its_overrides_writing_under_the_run():
    config = PipelineConfig.model_validate({**CONFIG, "stores": "s3://bucket/stores"})
    twin = config.null_variant("random-init")
    assert twin.model.init == "random" and list(twin.corpora) == ["news"] and not twin.evaluate.enabled
    assert twin.nulls == {} and twin.decompose == config.decompose and config.match.sensitivity_thresholds
    assert twin.match == config.match.model_copy(update={"sensitivity_thresholds": ()})  # the grid is the trained run's
    assert RunLayout.of(twin) == RunLayout.of(config).null_run("random-init")     # one rule for where it lives
    assert twin.stores == "s3://bucket/stores/nulls/random-init"
    shuffled = config.null_variant("shuffled")
    assert shuffled.record.shuffle == "tokens_within_sample" and list(shuffled.corpora) == ["news", "code"]


@pytest.mark.parametrize("variant, message", [
    ({"set": {"match.iou": 0.3}}, r"changes \['match.iou'\]: a null variant changes only what is recorded"),
    ({"corpora": ["wiki"]}, r"nulls.x.corpora names \['wiki'\]"),
    ({"set": {"model.init": "untrained"}}, r"nulls.x: .*model.init 'untrained'"),
])
def test_bad_null_variants_are_refused_when_the_config_loads(variant, message):
    with pytest.raises(ValueError, match=message):
        PipelineConfig.model_validate({**CONFIG, "nulls": {"x": variant}})


def test_the_random_twin_keeps_architecture_and_tokenizer_and_redraws_the_weights(tiny_llama):
    trained = load_model(tiny_llama)
    twin, again = load_model(tiny_llama, init="random", init_seed=3), load_model(tiny_llama, init="random", init_seed=3)
    other = load_model(tiny_llama, init="random", init_seed=4)
    assert type(twin.model) is type(trained.model) and twin.model.config.to_dict() == trained.model.config.to_dict()
    assert twin.tokenizer("a b c")["input_ids"] == trained.tokenizer("a b c")["input_ids"]
    weights = {n: p for n, p in trained.model.named_parameters()}
    changed = [n for n, p in twin.model.named_parameters() if not torch.equal(p, weights[n])]
    assert any("mlp" in n for n in changed) and any("self_attn" in n for n in changed)
    for (n, p), (_, q) in zip(twin.model.named_parameters(), again.model.named_parameters()):
        assert torch.equal(p, q), n                                                   # seeded
    assert any(not torch.equal(p, q) for p, q in zip(twin.model.parameters(), other.model.parameters()))
    assert twin.info["model_init"] == "random:3" and "model_init" not in trained.info
    with pytest.raises(InputError, match="made from the trained weights .* has random:3 weights"):
        check_same_model({"model_id": trained.info["model_id"]}, twin.info, "the networks store")
    with pytest.raises(InputError, match="unknown model init 'fresh'"):
        load_model(tiny_llama, init="fresh")


def test_shuffled_tokens_keep_each_samples_tokens_and_first_token():
    samples = tuple(Sample(i, i, "group", np.arange(10 * i, 10 * i + 12, dtype=np.int32), f"text {i}") for i in range(4))
    selection = Selection(samples, 0, 4, 0)
    shuffled, again = shuffle_tokens(selection, seed=1), shuffle_tokens(selection, seed=1)
    for before, after, same in zip(selection.samples, shuffled.samples, again.samples):
        assert after.token_ids[0] == before.token_ids[0] and sorted(after.token_ids) == sorted(before.token_ids)
        assert not np.array_equal(after.token_ids, before.token_ids) and np.array_equal(after.token_ids, same.token_ids)
        assert after.text.startswith("[tokens shuffled]") and after.position == before.position
    assert not np.array_equal(shuffle_tokens(selection, seed=2).samples[0].token_ids, shuffled.samples[0].token_ids)


def _match_folder(folder: Path, has_counterpart: float, recurrence: float, reproduced: float, seed: int,
                  corpora=("news", "code"), pair_recurrence: dict | None = None) -> MatchFiles:
    """Match tables of a run whose samples find counterparts with probability ``has_counterpart``, and whose
    split halves recur and reproduce around the given IoU (``pair_recurrence``: {(corpus, other): IoU} instead,
    for some ordered corpus pairs)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    pd.DataFrame([{"corpus": c, "template": t, "sample": i, "counterparts": int(rng.random() < has_counterpart)}
                  for c in corpora for t in range(1, 6) for i in range(20)]).to_csv(
        folder / "counterpart_samples.csv", index=False)
    rows = [{"kind": "recurrence_pair", "corpus": x, "other": y, "split": s, "half": h, "templates": 5,
             "value": (pair_recurrence or {}).get((x, y), recurrence) + rng.normal(0, 0.02)}
            for s in range(3) for h in "AB" for x in corpora for y in corpora if x != y]
    rows += [{"kind": "recurrence", "corpus": "all", "split": s, "half": h,
              "value": np.mean([r["value"] for r in rows if (r["split"], r["half"]) == (s, h)])}
             for s in range(3) for h in "AB" if len(corpora) > 1]
    rows += [{"kind": "reproducibility", "corpus": c, "split": s, "half": "", "value": reproduced + rng.normal(0, 0.02)}
             for c in corpora for s in range(3)]
    pd.DataFrame(rows).to_csv(folder / "split_halves.csv", index=False)
    return MatchFiles(folder)


def test_the_trained_model_against_its_null_model(tmp_path):
    trained = _match_folder(tmp_path / "trained", 0.6, 0.4, 0.7, seed=0)
    twin = NullRun("random-init", _match_folder(tmp_path / "twin", 0.2, 0.1, 0.3, seed=1), "random weights")
    found = {f.id: f for f in conclude(against_null_model(trained, twin, SETTINGS), SETTINGS.alpha, SETTINGS.correction)}
    assert set(found) == {"counterparts-vs-random-init", "recurrence-vs-random-init", "reproducibility-vs-random-init"}
    assert all(f.verdict == "holds" for f in found.values()), {k: f.reason for k, f in found.items()}
    assert found["counterparts-vs-random-init"].effect == pytest.approx(0.4, abs=0.1)
    assert found["counterparts-vs-random-init"].n_examples == 40 and "random weights" in found["counterparts-vs-random-init"].claim
    assert found["recurrence-vs-random-init"].n_examples == 6 and "split halves" in found["recurrence-vs-random-init"].test
    same = NullRun("same", _match_folder(tmp_path / "same", 0.6, 0.4, 0.7, seed=2), "")
    alike = {f.id: f for f in conclude(against_null_model(trained, same, SETTINGS), SETTINGS.alpha, SETTINGS.correction)}
    assert all(f.verdict != "holds" for f in alike.values())               # a twin like the trained model: no claim
    missing = against_null_model(trained, NullRun("gone", MatchFiles(tmp_path / "gone"), ""), SETTINGS)
    assert all(f.estimate is None and f.reason for f in missing)


def test_recurrence_is_compared_on_the_corpora_both_runs_have(tmp_path):
    """A trained run of three corpora against a twin of two: only the shared pair counts. The trained model's
    news-code recurrence equals the twin's; its pairs with wiki recur far more and must not make a difference."""
    high = {pair: 0.6 for pair in [("news", "wiki"), ("wiki", "news"), ("code", "wiki"), ("wiki", "code")]}
    trained = _match_folder(tmp_path / "trained", 0.5, 0.2, 0.5, seed=0, corpora=("news", "code", "wiki"),
                            pair_recurrence=high)
    twin = NullRun("random-init", _match_folder(tmp_path / "twin", 0.5, 0.2, 0.5, seed=1), "")
    found = {f.id: f for f in conclude(against_null_model(trained, twin, SETTINGS), SETTINGS.alpha, SETTINGS.correction)}
    recurrence = found["recurrence-vs-random-init"]
    assert recurrence.verdict != "holds" and abs(recurrence.effect) < 0.05 and "corpora code, news" in recurrence.test
    alone = NullRun("one", _match_folder(tmp_path / "one", 0.5, 0.2, 0.5, seed=2, corpora=("news",)), "")
    lonely = {f.id: f for f in against_null_model(trained, alone, SETTINGS)}["recurrence-vs-one"]
    assert lonely.estimate is None and "fewer than two corpora in common" in lonely.reason


def test_calibration_of_the_two_sample_comparison_on_simulated_nulls():
    """Trained and null model drawn from one distribution: 'holds' in about alpha of 200 simulated runs."""
    from fnet_dist.core.stats import two_sample_effect

    rng = np.random.default_rng(0)
    holds = 0
    for i in range(200):
        estimate = two_sample_effect(rng.random(40), rng.random(40), level=0.95, n_resamples=200, seed=i, alpha=0.05,
                                     unit="samples", n_permutations=499)
        holds += estimate.p <= 0.05 and estimate.interval[0] > 0
    assert holds <= 20                                   # alpha 0.05 of 200 is 10; binomial room to 20


def test_a_random_twin_with_a_device_map_is_refused_in_one_line(tiny_llama):
    with pytest.raises(InputError, match="model.init random with a device_map is not supported"):
        load_model(tiny_llama, init="random", device_map={"": "cpu"})
