"""Random controls as distributions, empirical p-values and effects separated from massive channels."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
import pytest

from fnet_dist.core.config import EvaluateSection, MatchSection, ReportSection
from fnet_dist.core.errors import InputError
from fnet_dist.core.stats import interval
from fnet_dist.evaluate.control_tables import control_tables, metric_direction
from fnet_dist.evaluate.controls import choose_networks
from fnet_dist.evaluate.draws import activation_strata, control_conditions, random_controls, separated_masks
from fnet_dist.model.masks import NeuronMask

SHAPE = (4, 50)
TABLES = dict(fraction=EvaluateSection().random_fraction, level=ReportSection().level)  # the run's defaults
FIRST_TOKEN = MatchSection().first_token_share


def _network():
    values = np.zeros(SHAPE, dtype=bool)
    values[1, [3, 4, 5]] = True
    values[2, [10, 11]] = True
    return NeuronMask(values, name="news/3")


def test_fraction_controls_are_distinct_seeded_draws_of_the_right_size():
    draws = random_controls("fraction", SHAPE, n_draws=5, seed=1, fraction=0.15)
    assert [m.count for m in draws] == [30] * 5
    assert len({m.values.tobytes() for m in draws}) == 5
    again = random_controls("fraction", SHAPE, n_draws=5, seed=1, fraction=0.15)
    assert all((a.values == b.values).all() for a, b in zip(draws, again))
    assert draws[0].meta["control"] == "fraction" and "draw_seed" in draws[0].meta


def test_matched_controls_match_count_per_layer_and_avoid_massive_channels():
    network = _network()
    massive = np.zeros(SHAPE, dtype=bool)
    massive[:, 7] = True
    per_layer = random_controls("matched_per_layer", SHAPE, n_draws=4, seed=0, reference=network)
    assert all((m.values.sum(axis=1) == [0, 3, 2, 0]).all() for m in per_layer)
    avoid = random_controls("matched_avoid_massive", SHAPE, n_draws=20, seed=0, reference=network, massive=massive)
    assert all(m.count == 5 and not (m.values & massive).any() for m in avoid)
    assert all(m.count == 5 for m in random_controls("matched_count", SHAPE, n_draws=3, seed=0, reference=network))


@pytest.mark.parametrize("kwargs, message", [
    (dict(kind="nope"), "unknown random control 'nope'"),
    (dict(kind="fraction", n_draws=0), "n_draws 0 must be ≥ 1"),
    (dict(kind="fraction"), "pass fraction=<evaluate.random_fraction>"),
    (dict(kind="matched_count"), "pass reference="),
    (dict(kind="matched_avoid_massive", reference=_network()), "needs the massive-channel mask"),
])
def test_bad_control_requests(kwargs, message):
    with pytest.raises(InputError, match=message):
        random_controls(**{"shape": SHAPE, "n_draws": 3, "seed": 0, **kwargs})


def test_interval_on_known_draws():
    draws = np.arange(1, 11, dtype=float)       # accuracies 1..10 of random masks
    mean, low, high = interval(draws, 0.95)
    assert mean == 5.5 and low == pytest.approx(1.225) and high == pytest.approx(9.775)


def test_metric_direction():
    assert metric_direction("word_perplexity,none") == "lower"
    assert metric_direction("acc,none") == "higher" and metric_direction("mcc") == "higher"


def test_separated_masks_split_a_network_at_massive_channels():
    network = _network()
    massive = np.zeros(SHAPE, dtype=bool)
    massive[1, 4] = True
    whole, without, alone = separated_masks(network, massive)
    assert (whole.count, without.count, alone.count) == (5, 4, 1)
    assert alone.values[1, 4] and not without.values[1, 4]
    assert (without.values | alone.values == whole.values).all()
    with pytest.raises(InputError):
        separated_masks(network, np.zeros((3, 50), dtype=bool))


def _frame(rows):
    """Tidy rows of ``(Condition, value)`` pairs on one task, with the conditions' field columns."""
    import pandas as pd

    return pd.DataFrame([{"condition": c.name, "task": "sentiment_rt", "metric": "acc", "value": v, "stderr": 0.0,
                          "filter": "none", "n_samples": 10, "neurons": 0, **c.fields()} for c, v in rows])


def _news3(kind="network", **fields):
    from fnet_dist.model.edit import Edit
    from fnet_dist.core.conditions import Condition

    return Condition(kind, _network(), Edit("inhibit"), corpus="news", template=3, **fields)


def test_control_tables_on_planted_rows():

    from fnet_dist.model.edit import Edit
    from fnet_dist.core.conditions import NORMAL, Condition

    inhibit, where = Edit("inhibit"), {"corpus": "news", "template": 3}
    network = Condition("network", _network(), inhibit, **where)
    other = Condition("network", _network(), inhibit, corpus="news", template=4)  # its draws must not count
    rows = [(NORMAL, 0.80), (network, 0.40), (Condition("minus_massive", _network(), inhibit, **where), 0.75),
            (Condition("massive_only", _network(), inhibit, **where), 0.45)]
    rows += [(Condition("control", _network(), inhibit, control="fraction", percent=15.0, draw=i), 0.78 - 0.01 * i)
             for i in range(5)]
    rows += [(Condition("control", _network(), inhibit, control="matched_count", draw=i, **where), 0.79) for i in range(5)]
    rows += [(Condition("control", _network(), inhibit, control="matched_count", draw=i, corpus="news", template=4), 0.1)
             for i in range(5)]
    assert [c.name for c, _ in rows[:5]] == ["normal", "inhibit:news/3", "minus-massive:news/3", "massive-only:news/3",
                                             "ctl-fraction15/0"]
    assert rows[-1][0].name == "ctl-matched_count:news/4/4"
    frame = _frame(rows)
    massive = np.zeros(SHAPE, dtype=bool)
    massive[1, 3] = True
    controls, separated = control_tables(frame, [network], massive, **TABLES)
    assert other.name not in set(controls["network"])
    by_kind = controls.set_index("control")
    assert set(by_kind.index) == {"fraction", "matched_count"}
    assert by_kind.loc["fraction", "mean"] == pytest.approx(0.76)
    assert by_kind.loc["matched_count", "p_value"] == pytest.approx(1 / 6)   # worse than all 5 draws
    row = separated.iloc[0]
    assert row.damage_whole == pytest.approx(0.40) and row.damage_minus_massive == pytest.approx(0.05)
    assert row.damage_massive_only == pytest.approx(0.35) and row.on_massive == 1


def test_control_tables_never_reward_a_missing_value():
    from fnet_dist.core.conditions import NORMAL

    network = _news3()
    everywhere = network.mask.values.copy()                  # every neuron of the network on a massive channel
    rows = [(NORMAL, 0.80), (network, float("nan")), (_news3("massive_only"), 0.40)]
    rows += [(_news3("control", control="matched_count", draw=i), 0.79) for i in range(5)]
    controls, separated = control_tables(_frame(rows), [network], everywhere, **TABLES)
    assert np.isnan(controls["p_value"].iloc[0])             # a NaN value was "worse than every draw": p = 1/6
    # nothing is left without the massive neurons: the normal model (the first version took the whole network's value)
    assert separated.iloc[0].damage_minus_massive == 0.0
    partly = everywhere.copy()
    partly[2] = False
    _, separated = control_tables(_frame(rows), [network], partly, **TABLES)
    assert np.isnan(separated.iloc[0].damage_minus_massive)  # a part that exists but was not evaluated is missing


def test_networks_for_controls_are_chosen_without_evaluation_examples():
    import pandas as pd

    consistency = pd.DataFrame({"corpus": ["news"] * 4 + ["wiki"], "template": [1, 2, 3, 4, 1],
                                "counterparts": [4, 9, 9, 0, 50], "size": [5, 5, 5, 0, 5]})
    assert choose_networks(consistency, ["news"], 2, first_token_share=FIRST_TOKEN) == [("news", 2), ("news", 3)]
    assert (choose_networks(consistency.assign(counterparts=0), ["news"], 4, first_token_share=FIRST_TOKEN)
            == [("news", k) for k in (1, 2, 3)])
    assert choose_networks(consistency, ["news", "wiki"], 1, first_token_share=FIRST_TOKEN) == [("news", 2), ("wiki", 1)]


def test_all_networks_are_every_non_empty_template_in_order():
    import pandas as pd

    consistency = pd.DataFrame({"corpus": ["news"] * 4 + ["wiki"], "template": [3, 1, 2, 4, 1],
                                "counterparts": [4, 9, 9, 0, 50], "size": [5, 5, 5, 0, 5]})
    assert choose_networks(consistency, ["news"], "all", first_token_share=FIRST_TOKEN) == [("news", k) for k in (1, 2, 3)]
    assert EvaluateSection().controls.networks == "all"    # the default declares every network


def test_activation_matched_draws_keep_the_count_in_every_layer_and_stratum():
    rng = np.random.default_rng(0)
    mean_abs, kurtosis = rng.lognormal(size=SHAPE), rng.lognormal(size=SHAPE)
    strata = activation_strata(mean_abs, kurtosis, 3)
    assert strata.min() == 0 and strata.max() == 8
    assert all((np.bincount(strata[layer] // 3, minlength=3) >= 16).all() for layer in range(SHAPE[0]))  # |a| tertiles
    network = _network()
    draws = random_controls("matched_activation", SHAPE, n_draws=20, seed=0, reference=network, strata=strata)
    def cells(values):  # neurons per (layer, stratum)
        return Counter(zip(np.nonzero(values)[0].tolist(), strata[values].tolist()))

    for mask in draws:
        assert cells(mask.values) == cells(network.values)
    assert len({m.values.tobytes() for m in draws}) > 1
    with pytest.raises(InputError, match="needs the channels' activation strata"):
        random_controls("matched_activation", SHAPE, n_draws=1, seed=0, reference=network)
    names = [c.name for c in control_conditions([_news3()], np.zeros(SHAPE, bool), _settings(("matched_activation",), 2))]
    assert names == []                                    # no strata (an older match stage): none drawn, none invented
    names = [c.name for c in control_conditions([_news3()], np.zeros(SHAPE, bool), _settings(("matched_activation",), 2), strata)]
    assert names == ["ctl-matched_activation:news/3/0", "ctl-matched_activation:news/3/1"]


def test_controls_go_first_to_the_small_networks_the_claims_are_about():
    """The first-token template has counterparts in every sample: by counterparts alone it is chosen, and the claim
    about networks of < 2 % of neurons is then never tested (the default run said "not applicable")."""
    import pandas as pd

    consistency = pd.DataFrame({"corpus": ["news"] * 4, "template": [1, 2, 3, 4], "counterparts": [30, 3, 9, 5],
                                "size": [475, 38, 600, 20], "share": [0.027, 0.002, 0.035, 0.001]})
    anatomy = pd.DataFrame({"corpus": ["news"] * 4, "template": [1, 2, 3, 4], "first_token_peak_share": [1.0, 0.0, 0.1, 0.9]})
    assert choose_networks(consistency, ["news"], 1, first_token_share=FIRST_TOKEN) == [("news", 4)]  # 1, 3: not small
    assert (choose_networks(consistency, ["news"], 2, anatomy, first_token_share=FIRST_TOKEN)
            == [("news", 2), ("news", 1)])  # 4: first token
    assert choose_networks(consistency, ["news"], 1, anatomy, first_token_share=0.95) == [("news", 4)]


def _settings(kinds, draws, top_draws=0) -> EvaluateSection:
    return EvaluateSection(controls={"kinds": kinds, "draws": draws, "matched_draws": draws, "top_draws": top_draws})


def test_random_draws_of_the_top_percent_are_the_null_of_the_top_neurons():
    conditions = control_conditions([], np.zeros(SHAPE, bool), _settings(("fraction",), 2, top_draws=3))
    assert [c.name for c in conditions] == [*(f"ctl-fraction15/{i}" for i in range(2)), *(f"ctl-fraction5/{i}" for i in range(3))]
    assert [c.mask.count for c in conditions] == [30] * 2 + [10] * 3     # 15 % and 5 % of 200 neurons


def test_draws_avoiding_massive_channels_only_for_networks_that_have_some():

    network = _news3()
    none = np.zeros(SHAPE, dtype=bool)
    names = [c.name for c in control_conditions([network], none, _settings(("matched_count", "matched_avoid_massive"), 2))]
    assert names == ["ctl-matched_count:news/3/0", "ctl-matched_count:news/3/1"]
    some = none.copy()
    some[1, 3] = True
    names = [c.name for c in control_conditions([network], some, _settings(("matched_avoid_massive",), 2))]
    assert names == ["ctl-matched_avoid_massive:news/3/0", "ctl-matched_avoid_massive:news/3/1",
                     "minus-massive:news/3", "massive-only:news/3"]


def test_controls_evaluated_on_one_loaded_tiny_model(tiny_llama, tmp_path):
    from fnet_dist.evaluate.controls import evaluate_controls
    from fnet_dist.model.loading import load_model

    loaded = load_model(tiny_llama)
    values = np.zeros((2, 32), dtype=bool)
    values[0, [1, 2, 3]] = True
    massive = np.zeros((2, 32), dtype=bool)
    massive[0, 1] = True
    from fnet_dist.model.edit import Edit
    from fnet_dist.core.conditions import Condition

    networks = [Condition("network", NeuronMask(values, name="template-1"), Edit("inhibit"), corpus="toy", template=1)]
    settings = _settings(("fraction", "matched_avoid_massive"), 2)
    controls, separated = evaluate_controls(loaded, networks, tmp_path / "ctl", settings, tasks=["wiki_ppl"],
                                            massive=massive, level=TABLES["level"], limit=1, progress=False)
    assert sorted(controls["control"]) == ["fraction", "matched_avoid_massive"]
    assert (controls["draws"] == 2).all() and controls["p_value"].between(1 / 3, 1).all()
    written = pd.read_csv(tmp_path / "ctl" / "tables" / "controls.csv")
    assert list(written.columns) == list(controls.columns)  # no row-number column ("Unnamed: 0")
    assert (tmp_path / "ctl" / "figures" / "controls_wiki_ppl.png").is_file()
    folders = {p.name for p in (tmp_path / "ctl" / "conditions").iterdir()}
    assert {"minus-massive-toy_1", "massive-only-toy_1", "ctl-matched_avoid_massive-toy_1_1"} <= folders
    assert separated.iloc[0].whole != separated.iloc[0].normal
