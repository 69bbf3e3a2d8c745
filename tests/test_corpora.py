"""Corpora: every source form, and the seeded choice of disjoint group / individual samples."""
from __future__ import annotations

import json

import numpy as np
import pytest

from fnet_dist.core.config import RecordSection
from fnet_dist.core.corpora import load_corpus, parse_hf_spec
from fnet_dist.core.errors import InputError
from fnet_dist.model.testing import byte_tokenizer
from fnet_dist.record.sampling import select_samples

TEXT = RecordSection().text_field  # the run's default column
TEXTS = [f"text number {i} " + "word " * (i % 7) for i in range(30)]


@pytest.fixture(scope="module")
def tokenizer():
    return byte_tokenizer()


@pytest.fixture()
def files(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "c.txt").write_text("\n".join(TEXTS) + "\n")
    (tmp_path / "c.jsonl").write_text("\n".join(json.dumps({"body": t, "n": i}) for i, t in enumerate(TEXTS)) + "\n")
    (tmp_path / "c.csv").write_text("body,n\n" + "\n".join(f'"{t}",{i}' for i, t in enumerate(TEXTS)) + "\n")
    pq.write_table(pa.table({"body": TEXTS, "n": list(range(30))}), tmp_path / "c.parquet")
    folder = tmp_path / "hfdata"
    folder.mkdir()
    pq.write_table(pa.table({"body": TEXTS}), folder / "train.parquet")
    return tmp_path


@pytest.mark.parametrize("name", ["c.jsonl", "c.csv", "c.parquet"])
def test_field_files_give_the_texts_in_order(files, name):
    assert load_corpus(str(files / name), text_field="body") == TEXTS


def test_txt_is_one_text_per_line(files):
    assert load_corpus(str(files / "c.txt"), text_field=TEXT) == TEXTS


def test_hf_spec_loads_a_local_dataset_folder_through_load_dataset(files):
    assert load_corpus(f"hf:{files / 'hfdata'}@train", text_field="body") == TEXTS


def test_offline_news_is_real_text():
    texts = load_corpus("offline:news", text_field=TEXT)
    assert len(texts) == 240 and all(len(t) > 100 for t in texts)  # 300 articles, 60 held out (by text) for news_ppl


def test_offline_sentiment_is_review_text_the_sentiment_task_never_scores(tmp_path, monkeypatch):
    """Sentiment networks are found on sentiment texts (as the paper's on SST-2) that the evaluation never scores."""
    from fnet_dist.core.offline import SNIPPETS_PER_DOCUMENT, rotten_tomatoes
    from fnet_dist.evaluate.tasks import prepare_tasks

    documents = load_corpus("offline:sentiment", text_field=TEXT)
    recorded = {text for text, _ in rotten_tomatoes("recorded")}
    assert len(documents) >= 500 and documents[0].startswith(next(iter(t for t, _ in rotten_tomatoes("recorded"))))
    assert len(rotten_tomatoes("recorded")) + len(rotten_tomatoes("evaluated")) == len(rotten_tomatoes("all"))
    monkeypatch.setenv("FNET_CACHE", str(tmp_path / "cache"))
    prepare_tasks(["sentiment_rt"], tmp_path / "tasks", cache=tmp_path / "cache")
    rows = [json.loads(line) for path in (tmp_path / "cache").glob("*sentiment*") for line in path.open()]
    scored = {row["text"] for row in rows}
    assert len(scored) > 9000 and not scored & recorded         # disjoint: no recorded snippet is ever scored
    assert SNIPPETS_PER_DOCUMENT > 1
    with pytest.raises(InputError, match="Rotten Tomatoes part 'train'"):
        rotten_tomatoes("train")


@pytest.mark.parametrize("domain, task", [("news", "news_ppl"), ("wiki", "wiki_ppl")])
def test_perplexity_passages_are_articles_the_corpus_never_records(domain, task, tmp_path):
    """The perplexity tasks score held-out articles only: a network is never scored on the text it was found on."""
    from fnet_dist.core.offline import HELDOUT_EVERY
    from fnet_dist.evaluate.tasks import prepare_tasks

    recorded = load_corpus(f"offline:{domain}", text_field=TEXT)
    prepare_tasks([task], tmp_path / "tasks", cache=tmp_path / "cache")
    pages = [json.loads(line)["page"] for path in (tmp_path / "cache").glob(f"*{task}*") for line in path.open()]
    assert len(pages) >= 8
    assert not any(page in article or article in page for page in pages for article in recorded)
    assert HELDOUT_EVERY > 1 and len(recorded) > len(pages) / 10


def test_parse_hf_spec():
    assert parse_hf_spec("hf:wikitext:wikitext-2-raw-v1@test") == ("wikitext", "wikitext-2-raw-v1", "test")
    assert parse_hf_spec("hf:fancyzhx/ag_news") == ("fancyzhx/ag_news", None, "train")
    with pytest.raises(InputError, match="malformed corpus 'hf:ag_news@'"):
        parse_hf_spec("hf:ag_news@")


@pytest.mark.parametrize("name", ["c.jsonl", "c.csv", "c.parquet"])
def test_missing_text_field_names_the_fields(files, name):
    with pytest.raises(InputError, match=r"no field 'text' .*body.*--text-field"):
        load_corpus(str(files / name), text_field=TEXT)


def test_missing_field_of_hf_dataset(files):
    with pytest.raises(InputError, match=r"no field 'text' \(its fields: body\)"):
        load_corpus(f"hf:{files / 'hfdata'}", text_field=TEXT)


def test_unknown_hf_dataset_is_one_line_error(files):
    with pytest.raises(InputError, match="could not load dataset 'hf:.*nothing-here'"):
        load_corpus(f"hf:{files / 'nothing-here'}", text_field=TEXT)


def test_bad_jsonl_line(tmp_path):
    (tmp_path / "bad.jsonl").write_text('{"text": "fine"}\nnot json\n')
    with pytest.raises(InputError, match="line 2 is not JSON"):
        load_corpus(str(tmp_path / "bad.jsonl"), text_field=TEXT)


@pytest.mark.parametrize(
    ("spec", "message"),
    [("corpus.xml", "unknown corpus 'corpus.xml'"), ("/no/such/file.txt", "not found"),
     ("offline:poetry", "unknown offline corpus 'poetry'"), ("", "empty corpus spec")],
)
def test_bad_specs(spec, message):
    with pytest.raises(InputError, match=message):
        load_corpus(spec, text_field=TEXT)


def test_empty_corpus(tmp_path):
    (tmp_path / "empty.txt").write_text("\n  \n\n")
    with pytest.raises(InputError, match="holds no text"):
        load_corpus(str(tmp_path / "empty.txt"), text_field=TEXT)


def _select(tokenizer, texts, **kw):
    args = dict(group=4, individual=5, max_tokens=20, min_tokens=3, seed=0, pack_to_tokens=0) | kw
    return select_samples(texts, tokenizer, **args)


def test_group_and_individual_are_disjoint_seeded_and_ordered(tokenizer):
    texts = [f"sample {i:03d} " + "x" * (i % 11) for i in range(100)]
    chosen = _select(tokenizer, texts)
    sources = [s.source_index for s in chosen.samples]
    assert [s.split for s in chosen.samples] == ["group"] * 4 + ["individual"] * 5
    assert [s.position for s in chosen.samples] == list(range(9))
    assert len(set(sources)) == 9
    assert sources == [s.source_index for s in _select(tokenizer, texts).samples]
    assert sources != [s.source_index for s in _select(tokenizer, texts, seed=1).samples]
    assert sources == [int(i) for i in np.random.default_rng(0).permutation(100)[:9]]


def test_texts_are_cut_to_max_tokens_and_short_ones_skipped_and_counted(tokenizer):
    texts = ["ab", "", "a much longer text than twenty bytes", "abc", "xy", "twenty-two bytes here!"]
    chosen = _select(tokenizer, texts, group=2, individual=1, max_tokens=10, min_tokens=3, seed=3)
    order = [int(i) for i in np.random.default_rng(3).permutation(len(texts))]
    long_enough = [i for i in order if len(texts[i]) >= 3][:3]
    assert [s.source_index for s in chosen.samples] == long_enough
    assert chosen.n_skipped_short == order.index(long_enough[-1]) + 1 - 3
    for s in chosen.samples:
        assert s.n_tokens == min(10, len(texts[s.source_index]))
        assert s.text == texts[s.source_index][:10]
        assert s.token_ids.dtype == np.int32


def test_long_texts_cut_from_a_prefix_equal_the_whole_text_cut(tokenizer):
    long = "word " * 5000
    chosen = _select(tokenizer, [long], group=1, individual=0, max_tokens=50, min_tokens=1)
    whole = tokenizer(long)["input_ids"][:50]
    assert chosen.samples[0].token_ids.tolist() == whole


def test_every_text_too_short(tokenizer):
    with pytest.raises(InputError, match=r"every text of corpus 'tiny' is shorter than --min-tokens 50 \(3 of 3 skipped\)"):
        _select(tokenizer, ["a", "bb", "ccc"], min_tokens=50, corpus="tiny")


def test_too_few_texts_for_the_samples_asked(tokenizer):
    with pytest.raises(InputError, match="has 3 texts of ≥ 3 tokens .* fewer than the 9 asked for"):
        _select(tokenizer, ["aaaa", "bbbb", "cccc", "d"], corpus="few")


def test_short_texts_are_packed_with_the_texts_after_them(tokenizer):
    """Planted short texts (5 bytes = 5 tokens) pack with their successors to ≥ 12 tokens; long ones stay alone."""
    texts = [f"text{i % 10}" if i % 7 else f"a long text number {i} of over twelve bytes" for i in range(30)]
    texts[5] = ""
    chosen = _select(tokenizer, texts, group=2, individual=1, max_tokens=40, min_tokens=3, seed=0, pack_to_tokens=12)
    assert chosen.pack_to_tokens == 12 and len(chosen.samples) == 3
    covered = []
    for s in chosen.samples:
        assert s.n_tokens >= 12
        parts = [t for t in texts[s.source_index:s.source_index + s.n_texts] if t.strip()]
        assert s.text == "\n".join(parts)[:40] and s.token_ids.tolist() == tokenizer(s.text)["input_ids"]
        assert (s.n_texts == 1) == (len(texts[s.source_index]) >= 12)
        covered += range(s.source_index, s.source_index + s.n_texts)
    assert len(covered) == len(set(covered))  # disjoint
    assert chosen.n_packed == sum(s.n_texts > 1 for s in chosen.samples) >= 1
    same = _select(tokenizer, texts, group=2, individual=1, max_tokens=40, min_tokens=3, seed=0, pack_to_tokens=12)
    assert [(s.source_index, s.n_texts) for s in same.samples] == [(s.source_index, s.n_texts) for s in chosen.samples]


def test_packing_that_cannot_fill_the_samples_says_so(tokenizer):
    texts = ["ab", "cd", "ef"]  # 2 + 1 + 2 + 1 + 2 = 8 tokens at most: never 12
    with pytest.raises(InputError, match=r"gives 0 samples of ≥ 12 tokens when texts are packed \(3 starts too short"):
        _select(tokenizer, texts, group=1, individual=0, max_tokens=20, pack_to_tokens=12, corpus="tiny")
    with pytest.raises(InputError, match=r"pack_to_tokens 30 must lie between 0 \(off\) and max_tokens 20"):
        _select(tokenizer, texts, group=1, individual=0, max_tokens=20, pack_to_tokens=30)
    off = _select(tokenizer, ["aaaaaaaaaaaaaaaa", "ab"], group=1, individual=0, max_tokens=20, pack_to_tokens=0)
    assert off.pack_to_tokens == 0 and off.samples[0].n_texts == 1


# --- through datasets: globs, compression, streaming, options -----------------------------------------------

@pytest.fixture()
def shards(tmp_path):
    """TEXTS in three jsonl parts (one gzip-compressed, one a folder down; sorted paths keep their order), a bz2 csv
    and an xz txt."""
    import bz2
    import gzip
    import lzma

    folder = tmp_path / "data"
    (folder / "zz-more").mkdir(parents=True)
    lines = [json.dumps({"body": t}) + "\n" for t in TEXTS]
    (folder / "part-0.jsonl").write_text("".join(lines[:10]))
    with gzip.open(folder / "part-1.jsonl.gz", "wt") as handle:
        handle.write("".join(lines[10:20]))
    (folder / "zz-more" / "part-2.jsonl").write_text("".join(lines[20:]))
    with bz2.open(tmp_path / "c.csv.bz2", "wt") as handle:
        handle.write("body\n" + "\n".join(f'"{t}"' for t in TEXTS) + "\n")
    with lzma.open(tmp_path / "c.txt.xz", "wt") as handle:
        handle.write("\n".join(TEXTS) + "\n")
    return tmp_path


def test_a_glob_reads_every_matching_file_in_sorted_order_compressed_or_not(shards):
    assert load_corpus(str(shards / "data" / "*.jsonl*"), text_field="body") == TEXTS[:20]
    assert load_corpus(str(shards / "data" / "**" / "part-*.jsonl*"), text_field="body") == TEXTS


@pytest.mark.parametrize("name, field", [("c.csv.bz2", "body"), ("c.txt.xz", "text")])
def test_compressed_files_read_as_their_plain_twins(shards, name, field):
    assert load_corpus(str(shards / name), text_field=field) == TEXTS


def test_streaming_and_take_read_only_the_first_rows(shards, files):
    glob = str(shards / "data" / "**" / "*.jsonl*")
    assert load_corpus(f"{glob}#streaming,take=12", text_field="body") == TEXTS[:12]
    assert load_corpus(f"{glob}#take=3", text_field="body") == TEXTS[:3]
    assert load_corpus(f"hf:{files / 'hfdata'}@train#streaming,take=4", text_field="body") == TEXTS[:4]
    assert load_corpus(f"hf:{files / 'hfdata'}@train#streaming", text_field="body") == TEXTS
    assert load_corpus("offline:news#take=5", text_field=TEXT) == load_corpus("offline:news", text_field=TEXT)[:5]
    with pytest.raises(InputError, match=r"no field 'text' \(its fields: body\)"):
        load_corpus(f"{glob}#streaming", text_field=TEXT)


def test_a_hub_revision_reaches_load_dataset(files, monkeypatch):
    """The pin is passed to ``datasets.load_dataset`` as its ``revision`` (a local folder has none to check)."""
    import datasets

    seen = []
    real = datasets.load_dataset
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: seen.append(k.get("revision")) or real(*a, **k))
    assert load_corpus(f"hf:{files / 'hfdata'}@train#revision=v1.0", text_field="body") == TEXTS
    assert seen == ["v1.0"]


@pytest.mark.parametrize("suffix, message", [
    ("#revision=abc", "revision= pins a hub dataset"), ("#take=0", "expected a positive number of rows"),
    ("#stream", "unknown or malformed"), ("#streaming=yes", "unknown or malformed"),
])
def test_bad_options_are_one_line_errors(shards, suffix, message):
    with pytest.raises(InputError, match=message):
        load_corpus(str(shards / "data" / "*.jsonl") + suffix, text_field="body")


def test_a_glob_matching_nothing_or_mixed_kinds_is_refused(shards):
    with pytest.raises(InputError, match="matches no file"):
        load_corpus(str(shards / "nowhere" / "*.jsonl"), text_field="body")
    with pytest.raises(InputError, match="several or unknown kinds"):
        load_corpus(str(shards / "c.*"), text_field="body")
