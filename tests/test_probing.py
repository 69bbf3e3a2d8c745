"""Linear probing: planted separable features, conditions on a tiny model, labelled offline text, bad input."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from fnet_dist.model.architectures import resolve_architecture
from fnet_dist.model.edit import Edit, edited
from fnet_dist.core.errors import InputError
from fnet_dist.evaluate import NORMAL
from fnet_dist.core.conditions import custom
from fnet_dist.evaluate.features import final_features, pool
from fnet_dist.evaluate.probing import labelled_texts, probe, probe_conditions
from fnet_dist.model.masks import NeuronMask
from fnet_dist.model.loading import load_model


def test_probe_finds_a_planted_separable_feature():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    features = rng.normal(size=(200, 20))
    features[:, 7] += 3.0 * (2 * labels - 1)  # one informative direction among noise
    result = probe(features, labels, folds=5, seed=0)
    assert result["accuracy"] > 0.95 and len(result["fold_accuracy"]) == 5
    assert probe(features, labels, folds=5, seed=0) == result  # seeded
    shuffled = probe(features, rng.permutation(labels), folds=5, seed=0)
    assert 0.3 < shuffled["accuracy"] < 0.7


FEATURES = dict(max_tokens=128, batch_size=16)  # probe_conditions' cut and batch


def test_pool_ignores_padding():
    states = torch.arange(12, dtype=torch.float32).reshape(2, 3, 2)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    assert pool(states, mask, "last").tolist() == [[2.0, 3.0], [10.0, 11.0]]
    assert pool(states, mask, "mean").tolist() == [[1.0, 2.0], [8.0, 9.0]]


@pytest.fixture(scope="module")
def planted_model(tiny_llama):
    """Tiny llama whose 'q' embedding is large along a few dims: texts ending in 'q' are linearly separable."""
    loaded = load_model(tiny_llama)
    q = loaded.tokenizer.convert_tokens_to_ids("q")
    with torch.no_grad():
        loaded.model.model.embed_tokens.weight[q, :4] = 8.0
    return loaded


def _texts(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    letters = list("abcdefghijklmnoprstuvw")
    texts = ["".join(rng.choice(letters, size=rng.integers(4, 9))) + ("q" if y else "x") for y in labels]
    return texts, labels


def test_probe_conditions_on_a_tiny_model(planted_model):
    texts, labels = _texts(60)
    everything = custom("every", NeuronMask(np.ones((2, 32), bool), "all"), Edit("inhibit"))
    rows = probe_conditions(planted_model, [NORMAL, everything], texts, labels, folds=3, seed=0, batch_size=16)
    assert list(zip(rows.condition, rows.pooling)) == [("normal", "last"), ("normal", "mean"),
                                                       ("inhibit:every", "last"), ("inhibit:every", "mean")]
    normal_last = rows[(rows.condition == "normal") & (rows.pooling == "last")].accuracy.item()
    assert normal_last > 0.9
    assert set(rows.neurons) == {0, 64} and (rows.n_texts == 60).all() and (rows.seed == 0).all()


def test_features_change_under_an_edit(planted_model):
    texts, _ = _texts(6)
    arch = resolve_architecture(planted_model.model)
    normal = final_features(planted_model.model, planted_model.tokenizer, texts, **FEATURES)
    with edited(planted_model.model, arch, NeuronMask(np.ones((2, 32), bool)), Edit("inhibit")):
        inhibited = final_features(planted_model.model, planted_model.tokenizer, texts, **FEATURES)
    assert normal.shape == inhibited.shape == (6, 32)
    assert not np.allclose(normal, inhibited)
    np.testing.assert_allclose(final_features(planted_model.model, planted_model.tokenizer, texts, **FEATURES), normal, rtol=1e-5)


def test_labelled_texts_are_balanced_and_seeded():
    texts, labels = labelled_texts("polarity_pl", 40, seed=1)
    assert len(texts) == 40 and labels.sum() == 20
    assert labelled_texts("polarity_pl", 40, seed=1)[0] == texts


def test_bad_input(planted_model):
    with pytest.raises(InputError, match="two or more classes"):
        probe(np.zeros((10, 2)), np.zeros(10, int), seed=0)
    with pytest.raises(InputError, match="the smallest class has 2"):
        probe(np.zeros((10, 2)), np.array([0] * 8 + [1] * 2), folds=5, seed=0)
    with pytest.raises(InputError, match=r"got \(10, 2\) and \(9,\)"):
        probe(np.zeros((10, 2)), np.zeros(9, int), seed=0)
    with pytest.raises(InputError, match="no labelled offline text 'imdb'"):
        labelled_texts("imdb", 40, seed=0)
    with pytest.raises(InputError, match="ask for n <= 200"):
        labelled_texts("polarity_pl", 1000, seed=0)
    with pytest.raises(InputError, match="unknown pooling 'max'"):
        final_features(planted_model.model, planted_model.tokenizer, ["a"], pooling="max", **FEATURES)
