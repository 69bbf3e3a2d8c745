"""The packaged SmolLM2 converted once into a cached safetensors folder: the same model, keyed by the file, never
replacing what fnet did not write, safe when two processes convert at once."""
from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest

from fnet_dist.core.errors import InputError
from fnet_dist.core.offline import smollm2_gguf
from fnet_dist.model import packaged
from fnet_dist.model.loading import DEFAULT_MODEL, load_model, resolve_source
from fnet_dist.store.outputs import MARKER_FILE


def _fake_convert(gguf: Path, folder: Path) -> None:
    """Stands in for the 15-30 s dequantisation where the test is about the cache's bookkeeping only."""
    (folder / "config.json").write_text(json.dumps({"source": gguf.read_text()}))


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(packaged.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_cache_root_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv(packaged.CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert packaged.cache_root() == tmp_path / "xdg" / "fnet-dist"
    monkeypatch.setenv(packaged.CACHE_ENV, str(tmp_path / "mine"))
    assert packaged.cache_root() == tmp_path / "mine"


def test_converted_once_keyed_by_the_files_content(cache, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(packaged, "_convert", lambda g, f: (calls.append(g), _fake_convert(g, f)))
    gguf = tmp_path / "model.gguf"
    gguf.write_text("weights v1")
    first = packaged.packaged_model_folder(gguf)
    assert packaged.packaged_model_folder(gguf) == first and len(calls) == 1
    assert json.loads((first / MARKER_FILE).read_text())["kind"] == "checkpoint"
    assert json.loads((first / "config.json").read_text()) == {"source": "weights v1"}
    gguf.write_text("weights v2")  # a reinstalled, different file is converted anew, beside the old one
    second = packaged.packaged_model_folder(gguf)
    assert second != first and len(calls) == 2 and first.is_dir()
    assert [p.name for p in (cache / "models").iterdir() if p.name.startswith(".")] == []  # no staging left


def test_a_failed_conversion_leaves_nothing_that_looks_finished(cache, tmp_path, monkeypatch):
    def broken(gguf, folder):
        (folder / "config.json").write_text("{}")
        raise RuntimeError("killed half-way")

    monkeypatch.setattr(packaged, "_convert", broken)
    gguf = tmp_path / "model.gguf"
    gguf.write_text("weights")
    with pytest.raises(RuntimeError):
        packaged.packaged_model_folder(gguf)
    assert list((cache / "models").iterdir()) == []


def test_a_foreign_folder_in_the_way_is_refused_not_replaced(cache, tmp_path, monkeypatch):
    monkeypatch.setattr(packaged, "_convert", _fake_convert)
    gguf = tmp_path / "model.gguf"
    gguf.write_text("weights")
    target = packaged.packaged_model_folder(gguf)
    (target / MARKER_FILE).unlink()  # now a folder fnet cannot tell it wrote
    (target / "mine.txt").write_text("a user's file")
    with pytest.raises(InputError, match="not written by fnet"):
        packaged.packaged_model_folder(gguf)
    assert (target / "mine.txt").read_text() == "a user's file"
    with pytest.raises(InputError, match="missing"):
        packaged.packaged_model_folder(tmp_path / "absent.gguf")


def _convert_in_a_process(cache: str, gguf: str, barrier, results) -> None:
    import os

    os.environ[packaged.CACHE_ENV] = cache

    def slow_convert(g, folder):
        barrier.wait(timeout=30)  # both processes are converting at the same time
        _fake_convert(g, folder)

    packaged._convert = slow_convert
    results.put(str(packaged.packaged_model_folder(Path(gguf))))


def test_two_processes_converting_at_once_agree_on_one_folder(cache, tmp_path):
    gguf = tmp_path / "model.gguf"
    gguf.write_text("weights")
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(2), context.Queue()
    workers = [context.Process(target=_convert_in_a_process, args=(str(cache), str(gguf), barrier, results))
               for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert [w.exitcode for w in workers] == [0, 0]
    folders = {results.get(timeout=5), results.get(timeout=5)}
    assert len(folders) == 1
    assert sorted(p.name for p in (cache / "models").iterdir()) == [Path(folders.pop()).name]


@pytest.mark.slow
def test_the_cached_folder_is_the_packaged_model(tmp_path, monkeypatch):
    """Token ids and logits of the cached safetensors folder equal those of the GGUF file loaded directly."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    monkeypatch.setenv(packaged.CACHE_ENV, str(tmp_path / "cache"))
    source = resolve_source(DEFAULT_MODEL)
    assert source.gguf_file is None and Path(source.path).parent == tmp_path / "cache" / "models"
    cached = load_model(DEFAULT_MODEL)
    assert cached.info["model_id"] == DEFAULT_MODEL and cached.revision == "local"  # stores' provenance unchanged
    gguf = smollm2_gguf()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32).eval()
    texts = ["The quick brown fox.", "def f(x):\n    return x ** 2  # café 日本語", "<|im_start|>user\nhi<|im_end|>"]
    for text in texts:
        assert cached.tokenizer(text)["input_ids"] == tokenizer(text)["input_ids"]
    ids = tokenizer(texts[1], return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(cached.model(**ids).logits, model(**ids).logits, rtol=0, atol=0)
    assert cached.tokenizer.chat_template == tokenizer.chat_template
    assert cached.tokenizer.eos_token == tokenizer.eos_token and cached.model.config.tie_word_embeddings
