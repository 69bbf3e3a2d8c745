"""LLM Localization baseline: offline stimuli, recovery of units planted in a tiny model, IoU, bad input."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from fnet_dist.model.architectures import resolve_architecture
from fnet_dist.core.errors import InputError
from fnet_dist.evaluate.baselines import localize, localizer_stimuli, mask_iou, pseudowords, top_units
from fnet_dist.model.masks import NeuronMask
from fnet_dist.model.loading import load_model

PLANTED_DIMS = (5, 17)


def test_stimuli_are_real_sentences_against_their_shuffled_letters():
    sentences, nonwords = localizer_stimuli(40, words=12, seed=3)
    assert len(sentences) == len(nonwords) == 40 and len(set(sentences)) == 40
    for sentence, nonword in zip(sentences, nonwords):
        words, scrambled = sentence.split(), nonword.split()
        assert len(words) == len(scrambled) == 12 and sentence == sentence.lower()
        assert all(sorted(a) == sorted(b) for a, b in zip(words, scrambled))
    changed = sum(a != b for s, n in zip(sentences, nonwords) for a, b in zip(s.split(), n.split()) if len(set(a)) > 1)
    assert changed > 0.8 * sum(len(set(a)) > 1 for s in sentences for a in s.split())
    assert localizer_stimuli(40, words=12, seed=3) == (sentences, nonwords)
    assert localizer_stimuli(40, words=12, seed=4)[0] != sentences


def test_pseudowords_keep_letters_and_lengths():
    rng = np.random.default_rng(0)
    out = pseudowords("language network in the brain", rng)
    assert [sorted(w) for w in out.split()] == [sorted(w) for w in "language network in the brain".split()]


@pytest.fixture(scope="module")
def planted_model(tiny_llama):
    """The tiny llama with the embedding of 'q' made huge on PLANTED_DIMS: a unit that fires for 'q'-final text."""
    loaded = load_model(tiny_llama)
    q = loaded.tokenizer.convert_tokens_to_ids("q")
    with torch.no_grad():
        loaded.model.model.embed_tokens.weight[q, list(PLANTED_DIMS)] = 40.0
    return loaded


def _stimuli(n: int, seed: int) -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(seed)
    letters = list("abcdefghijklmnoprstuvw")  # no q, no x
    stems = ["".join(rng.choice(letters, size=rng.integers(3, 8))) for _ in range(2 * n)]
    return [s + "q" for s in stems[:n]], [s + "x" for s in stems[n:]]


@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_localize_recovers_planted_units(planted_model, pooling):
    sentences, nonwords = _stimuli(24, seed=0)
    arch = resolve_architecture(planted_model.model)
    found = localize(planted_model.model, planted_model.tokenizer, arch, sentences, nonwords,
                     count=2 * len(PLANTED_DIMS), pooling=pooling)
    planted = {(layer, dim) for layer in range(2) for dim in PLANTED_DIMS}
    assert {tuple(map(int, i)) for i in found.mask.indices()} == planted
    assert found.t_values.shape == found.p_values.shape == (2, 32)
    assert found.settings["count"] == 4 and found.settings["pooling"] == pooling
    assert (found.p_values[:, list(PLANTED_DIMS)] < 1e-6).all()


def test_localize_selects_and_ablates_at_one_site(planted_model):
    """The method's units are decoder-layer outputs, ablated there (``hidden *= 1 - mask`` after each layer);
    ``site="mlp"`` selects on |MLP-block output| instead (Welch t-test computed here by hand) and edits there."""
    from scipy.stats import ttest_ind

    from fnet_dist.model.edit import Edit

    sentences, nonwords = _stimuli(16, seed=2)
    model, tokenizer = planted_model.model, planted_model.tokenizer
    arch = resolve_architecture(model)
    residual = localize(model, tokenizer, arch, sentences, nonwords, count=4)
    assert residual.settings["site"] == "residual" and residual.edit(Edit("inhibit")).site == "residual"
    mlp = localize(model, tokenizer, arch, sentences, nonwords, count=4, site="mlp")
    assert mlp.settings["site"] == "mlp" and mlp.edit(Edit("multiply", 1.02)) == Edit("multiply", 1.02, "mlp")

    def last_mlp_output(texts):
        rows = []
        for text in texts:
            outputs = []
            handles = [layer.mlp.register_forward_hook(lambda _m, _i, out: outputs.append(out[0, -1]))
                       for layer in model.model.layers]
            with torch.no_grad():
                model(**tokenizer([text], return_tensors="pt", truncation=True, max_length=12))
            for handle in handles:
                handle.remove()
            rows.append(torch.stack(outputs).abs().numpy())
        return np.stack(rows)

    t_values, _ = ttest_ind(last_mlp_output(sentences), last_mlp_output(nonwords), axis=0, equal_var=False)
    np.testing.assert_allclose(mlp.t_values, t_values, rtol=1e-4, atol=1e-4)
    assert not np.allclose(mlp.t_values, residual.t_values)
    with pytest.raises(InputError, match="localizer site 'attention' is unknown"):
        localize(model, tokenizer, arch, sentences, nonwords, count=4, site="attention")


def test_localize_by_percent_counts_over_all_layers(planted_model):
    sentences, nonwords = _stimuli(8, seed=1)
    arch = resolve_architecture(planted_model.model)
    found = localize(planted_model.model, planted_model.tokenizer, arch, sentences, nonwords, percent=10)
    assert found.mask.count == round(0.10 * 64) and found.mask.values.shape == (2, 32)


def test_top_units_and_iou():
    scores = np.array([[1.0, np.nan, 3.0], [2.0, 5.0, -1.0]])
    assert top_units(scores, 2).tolist() == [[False, False, True], [False, True, False]]
    a = NeuronMask.from_indices((2, 3), [(0, 0), (0, 1), (1, 1)])
    b = NeuronMask.from_indices((2, 3), [(0, 1), (1, 1), (1, 2)])
    assert mask_iou(a, b) == pytest.approx(2 / 4)
    assert mask_iou(a, a) == 1.0
    assert mask_iou(np.zeros((2, 3), bool), np.zeros((2, 3), bool)) == 0.0


def test_bad_input(planted_model):
    arch = resolve_architecture(planted_model.model)
    with pytest.raises(InputError, match="either percent= or count="):
        localize(planted_model.model, planted_model.tokenizer, arch, ["aq", "bq"], ["ax", "bx"], percent=5, count=3)
    with pytest.raises(InputError, match="at least 2 sentences"):
        localize(planted_model.model, planted_model.tokenizer, arch, ["aq"], ["ax", "bx"], count=1)
    with pytest.raises(InputError, match="cannot select 99 units out of 6"):
        top_units(np.zeros((2, 3)), 99)
    with pytest.raises(InputError, match=r"shapes \(2, 3\) and \(3, 2\)"):
        mask_iou(np.zeros((2, 3), bool), np.zeros((3, 2), bool))
    with pytest.raises(InputError, match=r"only \d+ sentences of 12\+ words"):
        localizer_stimuli(10, seed=0, texts=["too short. also short."])
    with pytest.raises(InputError, match="n >= 2"):
        localizer_stimuli(1, seed=0)
