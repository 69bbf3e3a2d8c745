"""The scoring engine (requests built once, scored per condition) equals lm-eval's simple_evaluate, edits included;
``LeanHFLM`` answers as ``HFLM`` does while running each distinct row once and the LM head only where scored."""
from __future__ import annotations

import math
from contextlib import nullcontext

import pytest
import torch

from fnet_dist.evaluate.hflm import PADDING, LeanHFLM
from fnet_dist.evaluate.scoring import Scorer
from fnet_dist.evaluate.tasks import prepare_tasks
from fnet_dist.model.architectures import resolve_architecture
from fnet_dist.model.edit import Edit, edited
from fnet_dist.model.loading import load_model
from fnet_dist.model.masks import NeuronMask

TASKS = ["sentiment_rt", "wiki_ppl"]
LIMIT = 4
TOLERANCE = dict(rel_tol=1e-5, abs_tol=1e-5)


@pytest.fixture(scope="module")
def setup(tiny_llama, tmp_path_factory):
    from lm_eval.models.huggingface import HFLM

    loaded = load_model(tiny_llama)
    arch = resolve_architecture(loaded.model)
    reference = HFLM(pretrained=loaded.model, tokenizer=loaded.tokenizer, batch_size=3)
    lean = LeanHFLM(pretrained=loaded.model, tokenizer=loaded.tokenizer, batch_size=3)
    manager = prepare_tasks(TASKS, tmp_path_factory.mktemp("tasks"))
    return loaded, arch, reference, lean, manager


def _close(ours, theirs, where: str = "") -> None:
    """Equal structure; floats equal within TOLERANCE (NaN equals NaN); everything else exactly equal."""
    if isinstance(theirs, dict):
        assert ours.keys() == theirs.keys(), where
        for key in theirs:
            _close(ours[key], theirs[key], f"{where}/{key}")
    elif isinstance(theirs, (list, tuple)):
        assert len(ours) == len(theirs), where
        for index, (mine, reference) in enumerate(zip(ours, theirs)):
            _close(mine, reference, f"{where}[{index}]")
    elif isinstance(theirs, float) and not isinstance(theirs, bool):
        assert math.isnan(ours) if math.isnan(theirs) else math.isclose(ours, theirs, **TOLERANCE), (where, ours, theirs)
    else:
        assert ours == theirs, where


@pytest.mark.parametrize("edit", [None, Edit("inhibit"), Edit("multiply", 3.0)], ids=["normal", "inhibit", "multiply"])
def test_each_condition_equals_simple_evaluate_under_the_same_edit(setup, edit):
    from lm_eval import simple_evaluate

    loaded, arch, reference, lean, manager = setup
    mask = NeuronMask.random((2, 32), fraction=0.5, seed=1)

    def context():
        return nullcontext() if edit is None else edited(loaded.model, arch, mask, edit)

    scorer = Scorer(lean, manager, TASKS, limit=LIMIT, seed=3, bootstrap_iters=50)
    ours = scorer.score(context())
    again = scorer.score(nullcontext())  # a second condition on the same built requests starts clean
    with context():  # the stock HFLM, as simple_evaluate runs it
        theirs = simple_evaluate(model=reference, tasks=TASKS, task_manager=manager, limit=LIMIT, bootstrap_iters=50,
                                 random_seed=3, numpy_random_seed=3, torch_random_seed=3, fewshot_random_seed=3)
    for task in TASKS:
        _close(ours["results"][task], theirs["results"][task], task)
        assert ours["n-samples"][task] == theirs["n-samples"][task] == {"original": ours["n-samples"][task]["original"],
                                                                        "effective": LIMIT}
        assert len(ours["samples"][task]) == LIMIT
        for mine, expected in zip(ours["samples"][task], theirs["samples"][task], strict=True):
            assert mine.keys() == expected.keys()
            for key in ("doc_id", "doc", "filtered_resps", "resps", "doc_hash", "prompt_hash", *expected["metrics"]):
                _close(mine[key], expected[key], f"{task}/{key}")
        assert len(again["samples"][task]) == LIMIT and all(len(s["resps"][0]) == 1 for s in again["samples"][task])
    assert set(theirs) - set(ours) == set() and ours["configs"] == theirs["configs"]
    if edit is not None:
        assert again["results"]["wiki_ppl"] != ours["results"]["wiki_ppl"]


def test_tokens_count_the_forward_rows(setup):
    loaded, _, _, lean, manager = setup
    scorer = Scorer(lean, manager, ["wiki_ppl"], limit=2, seed=0, bootstrap_iters=0)
    texts = [i.args[0] for i in scorer.requests["loglikelihood_rolling"]]
    assert scorer.tokens == sum(len(loaded.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts) > 0


def _greedy(model, context: list[int], steps: int) -> list[int]:
    """The model's own greedy continuation of ``context``: the answer whose is-greedy flag must be True."""
    tokens = list(context)
    with torch.no_grad():
        for _ in range(steps):
            tokens.append(int(model(torch.tensor([tokens])).logits[0, -1].argmax()))
    return tokens[len(context):]


def _requests(model, max_length: int) -> list:
    """Planted requests: one-token choices sharing a context (one row), continuations of several lengths
    ending on one row, greedy continuations, contexts of several lengths, and rows past ``max_length``."""
    generator = torch.Generator().manual_seed(0)

    def tokens(n: int) -> list[int]:
        return torch.randint(0, 250, (n,), generator=generator).tolist()

    requests = []
    for length in (5, 6, 6, 9, 12):
        context = tokens(length)
        requests += [(None, context, [choice]) for choice in (3, 17, 99)]  # one row, head at one position
        requests.append((None, context, _greedy(model, context, 3)))
        shared = tokens(4)
        requests += [(None, context, shared), (None, context + shared[:2], shared[2:])]  # same row, 4 and 2 scored
    requests.append((None, tokens(max_length + 7), tokens(3)))  # left-truncated, as HFLM does
    requests.append((None, tokens(2), tokens(max_length)))  # a continuation of max_length tokens
    return requests


@pytest.mark.parametrize("family", ["llama", "gemma2", "gpt2"])  # gemma2 soft-caps its logits after the head
@pytest.mark.parametrize("whole", [False, True], ids=["kept-positions", "whole-model"])
def test_lean_hflm_answers_as_hflm_does(tiny_model_factory, family, whole):
    from lm_eval.models.huggingface import HFLM

    loaded = load_model(tiny_model_factory(family))
    common = dict(pretrained=loaded.model, tokenizer=loaded.tokenizer, batch_size=4, max_length=24)
    alone = HFLM(**common, logits_cache=False)  # one forward row per request: the ground truth
    grouped = HFLM(**common)  # lm-eval's default: one row per context + continuation[:-1]
    lean = LeanHFLM(**common)
    if whole:  # a model whose forward takes no logits_to_keep
        lean._logits_to_keep = False
    requests = _requests(loaded.model, 24)
    rows: dict[tuple, set] = {}
    for _, context, continuation in requests:
        rows.setdefault(tuple((context + continuation)[-25:][:-1]), set()).add(len(continuation))
    ours, ran = _counted(lean, requests)
    _close(ours, alone._loglikelihood_tokens(requests))
    # lm-eval's grouped path scores a shorter continuation sharing a row with a longer one at the row's first
    # scored positions (HFLM gathers logits[:, :k], not [:, -k:]); everywhere else it agrees.
    longest = [i for i, (_, c, t) in enumerate(requests) if len(t) == max(rows[tuple((c + t)[-25:][:-1])])]
    assert len(longest) == len(requests) - 5
    _close([ours[i] for i in longest], [grouped._loglikelihood_tokens(requests)[i] for i in longest])
    flags = [greedy for _, greedy in ours]
    assert flags[3] and flags[9] and not all(flags)  # the planted greedy continuations, and not every answer
    assert ran["rows"] == len(rows) < len(requests)
    assert ran["tokens"] - sum(map(len, rows)) <= PADDING * ran["tokens"]  # padding bounded
    assert (ran["head"] < ran["tokens"]) if not whole else (ran["head"] == ran["tokens"])
    choices = [r for r in requests if len(r[1]) == 6 and len(r[2]) == 1]  # two contexts of 6 tokens, 3 choices each
    assert len(choices) == 6 and _counted(lean, choices)[1] == {"rows": 2, "tokens": 12, "head": 2 if not whole else 12}


def _counted(lm, requests) -> tuple[list, dict]:
    """``lm``'s answers to ``requests``, the rows and tokens (padding included) its model ran, and the
    positions its LM head saw."""
    model, seen = lm.model, {"rows": 0, "tokens": 0, "head": 0}

    def count(key, size):
        return lambda module, args: seen.__setitem__(key, seen[key] + size(args[0]))

    counters = [model.register_forward_pre_hook(count("rows", len)),  # the input ids (rows, width)
                model.register_forward_pre_hook(count("tokens", torch.numel)),
                model.get_output_embeddings().register_forward_pre_hook(count("head", lambda x: x.shape[:-1].numel()))]
    try:
        return lm._loglikelihood_tokens(requests), seen
    finally:
        for handle in counters:
            handle.remove()


def test_few_shot_and_chat_template_equal_simple_evaluate_with_the_same_options(tiny_llama, tmp_path):
    """``evaluate.num_fewshot`` and ``evaluate.apply_chat_template`` build the prompts lm-eval builds for them."""
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM

    from fnet_dist.evaluate.tasks import TaskOptions

    loaded = load_model(tiny_llama)
    loaded.tokenizer.chat_template = "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}"
    lean = LeanHFLM(pretrained=loaded.model, tokenizer=loaded.tokenizer, batch_size=3)
    reference = HFLM(pretrained=loaded.model, tokenizer=loaded.tokenizer, batch_size=3)
    manager = prepare_tasks(["sentiment_rt"], tmp_path / "tasks")
    options = TaskOptions(include_path=(), num_fewshot=2, apply_chat_template=True)
    ours = Scorer(lean, manager, ["sentiment_rt"], limit=LIMIT, seed=3, bootstrap_iters=50, options=options).score(nullcontext())
    plain = Scorer(lean, manager, ["sentiment_rt"], limit=LIMIT, seed=3, bootstrap_iters=50).score(nullcontext())
    theirs = simple_evaluate(model=reference, tasks=["sentiment_rt"], task_manager=manager, limit=LIMIT, bootstrap_iters=50,
                             random_seed=3, numpy_random_seed=3, torch_random_seed=3, fewshot_random_seed=3,
                             num_fewshot=2, apply_chat_template=True)
    _close(ours["results"]["sentiment_rt"], theirs["results"]["sentiment_rt"])
    for mine, expected, zero in zip(ours["samples"]["sentiment_rt"], theirs["samples"]["sentiment_rt"],
                                    plain["samples"]["sentiment_rt"], strict=True):
        assert mine["prompt_hash"] == expected["prompt_hash"] != zero["prompt_hash"]
        assert mine["arguments"][0][0].startswith("<user>") and mine["arguments"][0][0].count("Sentiment") == 3
