"""The scoring engine (requests built once, scored per condition) equals lm-eval's simple_evaluate, edits included."""
from __future__ import annotations

import math
from contextlib import nullcontext

import pytest

from fnet_dist.model.architectures import resolve_architecture
from fnet_dist.model.edit import Edit, edited
from fnet_dist.evaluate.scoring import Scorer
from fnet_dist.evaluate.tasks import prepare_tasks
from fnet_dist.model.masks import NeuronMask
from fnet_dist.model.loading import load_model

TASKS = ["sentiment_rt", "wiki_ppl"]
LIMIT = 4


@pytest.fixture(scope="module")
def setup(tiny_llama, tmp_path_factory):
    from lm_eval.models.huggingface import HFLM

    loaded = load_model(tiny_llama)
    arch = resolve_architecture(loaded.model)
    lm = HFLM(pretrained=loaded.model, tokenizer=loaded.tokenizer, batch_size=3)
    manager = prepare_tasks(TASKS, tmp_path_factory.mktemp("tasks"))
    return loaded, arch, lm, manager


def _same(ours, theirs) -> None:
    """Equal numbers (NaN equals NaN), keys and per-document samples."""
    assert ours.keys() == theirs.keys()
    for key, value in theirs.items():
        if isinstance(value, float) and math.isnan(value):
            assert math.isnan(ours[key]), key
        else:
            assert ours[key] == value, key


@pytest.mark.parametrize("edit", [None, Edit("inhibit"), Edit("multiply", 3.0)], ids=["normal", "inhibit", "multiply"])
def test_each_condition_equals_simple_evaluate_under_the_same_edit(setup, edit):
    from lm_eval import simple_evaluate

    loaded, arch, lm, manager = setup
    mask = NeuronMask.random((2, 32), fraction=0.5, seed=1)

    def context():
        return nullcontext() if edit is None else edited(loaded.model, arch, mask, edit)

    scorer = Scorer(lm, manager, TASKS, limit=LIMIT, seed=3, bootstrap_iters=50)
    ours = scorer.score(context())
    again = scorer.score(nullcontext())  # a second condition on the same built requests starts clean
    with context():
        theirs = simple_evaluate(model=lm, tasks=TASKS, task_manager=manager, limit=LIMIT, bootstrap_iters=50,
                                 random_seed=3, numpy_random_seed=3, torch_random_seed=3, fewshot_random_seed=3)
    for task in TASKS:
        _same(ours["results"][task], theirs["results"][task])
        assert ours["n-samples"][task] == theirs["n-samples"][task] == {"original": ours["n-samples"][task]["original"],
                                                                        "effective": LIMIT}
        assert len(ours["samples"][task]) == LIMIT
        for mine, reference in zip(ours["samples"][task], theirs["samples"][task], strict=True):
            assert mine.keys() == reference.keys()
            for key in ("doc_id", "doc", "filtered_resps", "resps", "doc_hash", "prompt_hash", *reference["metrics"]):
                assert mine[key] == reference[key], (task, key)
        assert len(again["samples"][task]) == LIMIT and all(len(s["resps"][0]) == 1 for s in again["samples"][task])
    assert set(theirs) - set(ours) == set() and ours["configs"] == theirs["configs"]
    if edit is not None:
        assert again["results"]["wiki_ppl"] != ours["results"]["wiki_ppl"]


def test_tokens_count_the_forward_rows(setup):
    loaded, _, lm, manager = setup
    scorer = Scorer(lm, manager, ["wiki_ppl"], limit=2, seed=0, bootstrap_iters=0)
    texts = [i.args[0] for i in scorer.requests["loglikelihood_rolling"]]
    assert scorer.tokens == sum(len(loaded.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts) > 0
