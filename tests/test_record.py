"""Recording: stored activations equal a plain capture, resume after a kill, concurrent shards, bad input."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from fnet_dist.model.architectures import resolve_architecture
from fnet_dist.core.config import ModelSection, with_overrides
from fnet_dist.core.errors import InputError, StoreError
from fnet_dist.model.hooks import capture_block_outputs
from fnet_dist.model.loading import load_model
from fnet_dist.record.recording import parse_shard, record_activations, summarize_store
from fnet_dist.store.storage import open_store
from fnet_dist.model.testing import build_tiny_model, byte_tokenizer
from storage_schemas import ACTIVATIONS

ROOT = Path(__file__).resolve().parents[1]
ARGS = dict(group_samples=4, individual_samples=4, max_tokens=40, min_tokens=8, seed=0, progress=False)
SENTENCES = [
    "The council met on Tuesday to discuss the new bridge over the river.",
    "Rain fell.",
    "A short line here.",
    "Markets rose sharply after the central bank held interest rates steady for another quarter.",
    "ok",
    "Scientists found a new species of frog in the rainforest canopy.",
    "The team won the final in extra time.",
    "Prices of wheat and corn climbed for a third week in a row, traders said on Friday.",
    "Voters queued for hours.",
    "An old lighthouse was restored by volunteers over two summers.",
    "The museum opened a wing for modern art and design.",
    "Snow closed roads in the north.",
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("corpus") / "news.txt"
    path.write_text("\n".join(SENTENCES) + "\n")
    return str(path)


@pytest.fixture(scope="module")
def llama(tiny_llama):
    return load_model(tiny_llama)


@pytest.fixture(scope="module")
def baseline(llama, corpus, tmp_path_factory) -> xr.Dataset:
    """An uninterrupted single-process recording (batch 3) that other runs must reproduce."""
    url = record_activations(llama, corpus, str(tmp_path_factory.mktemp("base") / "a.zarr"), batch_size=3, **ARGS)
    return xr.open_zarr(url, consolidated=False).load()


def _reference(loaded, token_ids: np.ndarray) -> np.ndarray:
    """Block outputs of one text alone (batch 1, no padding, full model): (n_tokens, n_layers, d_model)."""
    arch = resolve_architecture(loaded.model)
    with torch.inference_mode(), capture_block_outputs(loaded.model, arch) as capture:
        loaded.model(torch.as_tensor(token_ids, dtype=torch.long)[None])
        return capture.stacked()[0].float().numpy()


def _tree_digest(folder: str) -> str:
    digest = hashlib.sha256()
    for path in sorted(Path(folder).rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(folder)).encode() + path.read_bytes())
    return digest.hexdigest()


def _subprocess(code: str, *argv: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *argv], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _cli_argv(model: str, corpus: str, out: str, *extra: str) -> list[str]:
    return ["record", "--model", model, "--corpus", corpus, "--out", out, "--group-samples", "4",
            "--individual-samples", "4", "--max-tokens", "40", "--min-tokens", "8", "--no-progress", *extra]


@pytest.mark.parametrize("family", ["llama", "gpt2", "gemma3"])
def test_recorded_activations_equal_a_plain_capture_of_each_text_alone(family, tiny_model_factory, corpus, tmp_path):
    loaded = load_model(tiny_model_factory(family))
    url = record_activations(loaded, corpus, str(tmp_path / "a.zarr"), batch_size=3, store_dtype="float32", **ARGS)
    ds = xr.open_zarr(url, consolidated=False).load()
    lengths = ds["n_tokens"].values
    assert len(set(lengths.tolist())) > 2, "the corpus must give samples of several lengths (padding in batches)"
    for p in range(ds.sizes["sample"]):
        n, ids = int(lengths[p]), ds["token_id"].values[p]
        reference = _reference(loaded, ids[:n])
        np.testing.assert_allclose(ds["activation"].values[p, :n], reference, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(ds["peak"].values[p], np.abs(reference).max(axis=(0, 2)), rtol=1e-5)
        assert not ds["activation"].values[p, n:].any() and (ids[n:] == -1).all()
        assert (ids[:n] >= 0).all()


def test_float16_store_is_the_cast_of_the_float32_store(baseline, llama, corpus, tmp_path):
    url = record_activations(llama, corpus, str(tmp_path / "f32.zarr"), batch_size=3, store_dtype="float32", **ARGS)
    wide = xr.open_zarr(url, consolidated=False)["activation"].values
    assert baseline["activation"].dtype == np.float16
    np.testing.assert_array_equal(baseline["activation"].values, wide.astype(np.float16))


def test_plain_open_zarr_shows_the_labelled_dims_without_warnings(baseline, llama, corpus, tmp_path):
    import warnings

    url = record_activations(llama, corpus, str(tmp_path / "a.zarr"), batch_size=3, **ARGS)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = xr.open_zarr(url)
    assert ds["activation"].dims == ("sample", "token", "layer", "neuron")
    assert ds.attrs["config_hash"] == baseline.attrs["config_hash"]
    xr.testing.assert_identical(ds.load(), baseline)


def test_store_is_labelled_valid_and_described(baseline, llama):
    assert dict(baseline.sizes) == {"sample": 8, "token": 40, "layer": 2, "neuron": 32}
    assert baseline["activation"].dims == ("sample", "token", "layer", "neuron")
    assert list(baseline["split"].values) == ["group"] * 4 + ["individual"] * 4
    assert len(set(baseline["source_index"].values.tolist())) == 8
    assert baseline["complete"].values.all()
    attrs = baseline.attrs
    assert attrs["schema"] == ACTIVATIONS.name and attrs["model_id"] == llama.info["model_id"]
    assert attrs["hook_points"] == ["model.layers.0.mlp", "model.layers.1.mlp"]
    assert attrs["n_skipped_short"] >= 1 and attrs["seed"] == 0
    for p, s in enumerate(baseline["source_index"].values):
        assert SENTENCES[int(s)].startswith(str(baseline["text"].values[p]))


def test_summary_and_schema_check_on_open(baseline, llama, corpus, tmp_path):
    url = record_activations(llama, corpus, str(tmp_path / "a.zarr"), **ARGS)
    open_store(url, ACTIVATIONS)
    summary = summarize_store(url)
    assert "4 group + 4 individual" in summary and "2 layers × 32 = 64" in summary and "8 of 8 samples" in summary


def test_rerun_of_a_complete_store_writes_nothing(llama, corpus, tmp_path):
    url = record_activations(llama, corpus, str(tmp_path / "a.zarr"), **ARGS)
    before = _tree_digest(url)
    record_activations(llama, corpus, url, **ARGS)
    assert _tree_digest(url) == before


KILL_AFTER = """
    import os, signal, sys
    from fnet_dist.store import activations as activation_store

    class DieOnMarker:  # SIGKILL after K samples, between a sample's activation write and its marker
        def __init__(self, array):
            self.array, self.seen = array, 0

        def __setitem__(self, key, value):
            self.seen += 1
            if self.seen > int(os.environ["KILL_AFTER"]):
                os.kill(os.getpid(), signal.SIGKILL)
            self.array[key] = value

    real_init = activation_store.SampleWriter.__init__
    def init(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        self._arrays["complete"] = DieOnMarker(self._arrays["complete"])
    activation_store.SampleWriter.__init__ = init
    from fnet_dist.cli import main
    sys.exit(main(sys.argv[1:]))
"""


def test_a_killed_run_resumed_equals_the_uninterrupted_run(baseline, tiny_llama, corpus, tmp_path):
    out = str(tmp_path / "killed.zarr")
    os.environ["KILL_AFTER"] = "3"
    try:
        proc = _subprocess(KILL_AFTER, *_cli_argv(tiny_llama, corpus, out, "--batch-size", "3"))
        log = proc.communicate(timeout=240)[0]
    finally:
        del os.environ["KILL_AFTER"]
    assert proc.returncode == -9, log
    partial = xr.open_zarr(out, consolidated=False)
    assert int(partial["complete"].sum()) == 3
    written = {int(p.name) for p in (Path(out) / "activation" / "c").iterdir()}
    assert len(written) == 4, "the killed sample's activation was written, its marker not"
    record_activations(tiny_llama, corpus, out, batch_size=3, **ARGS)
    xr.testing.assert_identical(xr.open_zarr(out, consolidated=False).load(), baseline)


SHARD = """
    import sys
    from fnet_dist.cli import main
    sys.exit(main(sys.argv[1:]))
"""


def test_two_concurrent_shards_equal_a_single_process_run(baseline, tiny_llama, corpus, tmp_path):
    out = str(tmp_path / "sharded.zarr")
    procs = [_subprocess(SHARD, *_cli_argv(tiny_llama, corpus, out, "--batch-size", "3", "--shard", f"{i}/2"))
             for i in (1, 0)]
    logs = [p.communicate(timeout=240)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], logs
    assert "8 of 8 samples" in logs[0] + logs[1]
    sharded = xr.open_zarr(out, consolidated=False).load()
    # other batches pad to other widths, which changes float rounding (not values) of the forward pass
    xr.testing.assert_allclose(sharded, baseline, rtol=1e-3, atol=1e-7)
    assert sharded.attrs == baseline.attrs
    for name in ("n_tokens", "token_id", "text", "split", "source_index", "complete"):
        xr.testing.assert_identical(sharded[name], baseline[name])


def test_any_shard_creates_the_store_and_a_late_creator_keeps_written_samples(baseline, llama, corpus, tmp_path,
                                                                              monkeypatch):
    """Shard 1 alone creates the store (no wait for shard 0); shard 0, made to believe there is no store yet,
    creates it again over shard 1's samples: they stay complete, and the two shards give the baseline."""
    from fnet_dist.store import activations as activation_store

    out = str(tmp_path / "independent.zarr")
    record_activations(llama, corpus, out, batch_size=3, shard=(1, 2), wait_timeout=0.0, **ARGS)
    assert xr.open_zarr(out, consolidated=False)["complete"].values.tolist() == [False, True] * 4
    real, calls = activation_store._group_attrs, []

    def first_sees_nothing(url):
        calls.append(url)
        return None if len(calls) == 1 else real(url)

    monkeypatch.setattr(activation_store, "_group_attrs", first_sees_nothing)
    record_activations(llama, corpus, out, batch_size=3, shard=(0, 2), wait_timeout=0.0, **ARGS)
    assert len(calls) > 1, "shard 0 must have created the store again"
    sharded = xr.open_zarr(out, consolidated=False).load()
    xr.testing.assert_allclose(sharded, baseline, rtol=1e-3, atol=1e-7)
    assert sharded.attrs == baseline.attrs


def test_a_foreign_folder_is_never_written_over(llama, corpus, tmp_path):
    out = tmp_path / "foreign"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(StoreError, match="holds a folder of files that fnet did not write, not an activations store"):
        record_activations(llama, corpus, str(out), shard=(1, 2), **ARGS)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


@pytest.fixture()
def existing(llama, corpus, tmp_path) -> str:
    return record_activations(llama, corpus, str(tmp_path / "kept.zarr"), **ARGS)


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        (dict(model="/no/such/model"), InputError, "no model at '/no/such/model'"),
        (dict(seed=1), StoreError, r"another config \(seed: 0 there, 1 here\).*--overwrite"),
        (dict(max_tokens=32), StoreError, r"another config \(max_tokens: 40 there, 32 here\)"),
        (dict(max_tokens=4), InputError, "max_tokens 4 < min_tokens 8"),
        (dict(min_tokens=1000, max_tokens=1000), InputError, "every text of corpus .* shorter than --min-tokens 1000"),
        (dict(model={"dtype": "float8"}), InputError, "dtype 'float8': input should be 'auto', 'float32', 'float16' or"),
        (dict(store_dtype="int8"), InputError, "store_dtype 'int8': input should be 'float16' or 'float32'"),
        (dict(shard=(2, 2)), InputError, r"bad shard 2/2"),
        (dict(shard="0/2"), InputError, "malformed shard '0/2'"),
        (dict(batch_size=0), InputError, "batch_size 0: input should be greater than or equal to 1"),
        (dict(batch_sizes=2), InputError, r"unknown parameter\(s\) \['batch_sizes'\] of RecordSection"),
        (dict(group_samples=0, individual_samples=0), InputError, "nothing to record"),
        (dict(model={"hook_module": "model.layers"}), InputError, "must be a dotted module path with one"),
    ],
)
def test_bad_input_is_a_clear_error_and_leaves_the_store_intact(change, error, message, existing, llama, corpus):
    before = _tree_digest(existing)
    args = {**ARGS, **change}
    model = args.pop("model", llama)
    with pytest.raises(error, match=message):
        if isinstance(model, dict):  # a model section of the run's config, checked as the config is
            model, args["loaded"] = with_overrides(ModelSection(), model), llama
        record_activations(model, corpus, existing, **args)
    assert _tree_digest(existing) == before


def test_empty_corpus_leaves_the_store_intact(existing, llama, tmp_path):
    (tmp_path / "empty.jsonl").write_text("")
    before = _tree_digest(existing)
    with pytest.raises(InputError, match="holds no text"):
        record_activations(llama, str(tmp_path / "empty.jsonl"), existing, **ARGS)
    assert _tree_digest(existing) == before


def test_a_store_of_another_schema_version_is_refused_then_replaced_with_overwrite(llama, corpus, tmp_path):
    out = str(tmp_path / "old.zarr")
    old = xr.Dataset({"activation": (("sample", "token", "layer", "neuron"), np.zeros((1, 2, 2, 4), np.float16))},
                     attrs={**ACTIVATIONS.stamp(), "schema_version": ACTIVATIONS.version + 1})
    old.to_zarr(out, zarr_format=3, consolidated=False)
    before = _tree_digest(out)
    with pytest.raises(StoreError, match="schema version 2, this fnet-dist reads version 1"):
        record_activations(llama, corpus, out, **ARGS)
    assert _tree_digest(out) == before
    record_activations(llama, corpus, out, overwrite=True, **ARGS)
    assert open_store(out, ACTIVATIONS)["complete"].values.all()


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_folder_of_other_files_or_another_store_is_never_replaced(overwrite, llama, corpus, tmp_path):
    folder = tmp_path / "precious"
    folder.mkdir()
    (folder / "thesis.txt").write_text("years of work")
    with pytest.raises(StoreError, match="holds a folder of files that fnet did not write, not an activations store"):
        record_activations(llama, corpus, str(folder), overwrite=overwrite, **ARGS)
    assert (folder / "thesis.txt").read_text() == "years of work"
    other = str(tmp_path / "networks.zarr")
    xr.Dataset({"x": ("a", np.arange(3))}, attrs={"schema": "fnet-networks", "schema_version": 1}).to_zarr(
        other, zarr_format=3, consolidated=False)
    before = _tree_digest(other)
    with pytest.raises(StoreError, match="holds a networks store .*, not an activations store"):
        record_activations(llama, corpus, other, overwrite=overwrite, **ARGS)
    assert _tree_digest(other) == before


def test_overwrite_replaces_a_store_of_another_config(existing, llama, corpus, monkeypatch):
    from fnet_dist.record import recording as record

    before = _tree_digest(existing)
    real = record.SampleWriter.put
    calls = []

    def crash_midway(self, *args):
        calls.append(1)
        if len(calls) == 2:
            raise OSError("node lost")
        real(self, *args)

    monkeypatch.setattr(record.SampleWriter, "put", crash_midway)
    with pytest.raises(OSError, match="node lost"):
        record_activations(llama, corpus, existing, overwrite=True, **{**ARGS, "seed": 5})
    assert _tree_digest(existing) == before  # the new store is recorded beside: the old one is whole
    monkeypatch.undo()
    record_activations(llama, corpus, existing, overwrite=True, **{**ARGS, "seed": 5})  # resumes the one beside
    ds = open_store(existing, ACTIVATIONS)
    assert ds.attrs["seed"] == 5 and ds["complete"].values.all()
    assert [p.name for p in Path(existing).parent.iterdir() if p.name.startswith(".")] == []


def _save_tiny(model, folder: Path) -> str:
    model.save_pretrained(folder)
    byte_tokenizer().save_pretrained(folder)
    return str(folder)


def test_unsupported_architecture_names_it_and_the_fix(corpus, tmp_path):
    from transformers import GPTJConfig, GPTJForCausalLM

    config = GPTJConfig(vocab_size=260, n_embd=32, n_layer=2, n_head=4, rotary_dim=4, n_positions=128)
    folder = _save_tiny(GPTJForCausalLM(config), tmp_path / "gptj")
    with pytest.raises(InputError, match="architecture 'gptj' is not in fnet's registry.*--hook-module"):
        record_activations(folder, corpus, str(tmp_path / "a.zarr"), **ARGS)
    assert not (tmp_path / "a.zarr").exists()
    url = record_activations(ModelSection(id=folder, hook_module="transformer.h.{i}.mlp"), corpus,
                             str(tmp_path / "a.zarr"), **ARGS)
    assert open_store(url, ACTIVATIONS).attrs["hook_points"][1] == "transformer.h.1.mlp"


def test_a_hook_module_of_the_wrong_shape_is_refused(corpus, tmp_path):
    from transformers import OPTConfig, OPTForCausalLM

    config = OPTConfig(vocab_size=260, hidden_size=32, ffn_dim=64, num_hidden_layers=2, num_attention_heads=4,
                       max_position_embeddings=128, word_embed_proj_dim=32, pad_token_id=258)
    folder = _save_tiny(OPTForCausalLM(config), tmp_path / "opt")
    with pytest.raises(InputError, match=r"give outputs of shapes \[\(1, 32\)\] .* expected \(1, 1, d_model\)"):
        record_activations(ModelSection(id=folder, hook_module="model.decoder.layers.{i}.fc2"), corpus,
                           str(tmp_path / "a.zarr"), **ARGS)


def test_float16_overflow_is_reported_not_written(tmp_path, corpus):
    folder = build_tiny_model("llama", tmp_path / "loud")
    loaded = load_model(str(folder))
    with torch.no_grad():
        loaded.model.model.layers[1].mlp.down_proj.weight.mul_(1e9)
    with pytest.raises(InputError, match=r"layer 1: peak \|activation\| .* not finite once stored as float16.*--store-dtype float32"):
        record_activations(loaded, corpus, str(tmp_path / "a.zarr"), **ARGS)
    ds = xr.open_zarr(tmp_path / "a.zarr", consolidated=False)
    assert not ds["complete"].values.any() and np.isfinite(ds["activation"].values).all()
    url = record_activations(loaded, corpus, str(tmp_path / "b.zarr"), store_dtype="float32", **ARGS)
    assert float(xr.open_zarr(url, consolidated=False)["peak"].max()) > 65504


@pytest.mark.parametrize("text", ["1-2", "a/b", "3", "1/0", "-1/2", "2/2"])
def test_malformed_shard(text):
    with pytest.raises(InputError, match="shard"):
        parse_shard(text)
    assert parse_shard("1/4") == (1, 4)


def test_cli_prints_the_summary_and_one_line_errors(tiny_llama, corpus, tmp_path, capsys):
    from fnet_dist.cli import main

    assert main(_cli_argv(tiny_llama, corpus, str(tmp_path / "a.zarr"))) == 0
    assert "8 of 8 samples" in capsys.readouterr().out
    assert main(_cli_argv(tiny_llama, corpus, str(tmp_path / "a.zarr"), "--shard", "1-2")) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: malformed --shard '1-2'") and "\n" not in err
    assert main(_cli_argv(tiny_llama, corpus, str(tmp_path / "a.zarr"), "--max-tokens", "1")) == 2
    err = capsys.readouterr().err.strip()  # the flag's bounds are RecordSection's
    assert err.startswith("error: --max-tokens 1: input should be greater than or equal to 2") and "\n" not in err


@pytest.mark.slow
def test_smollm2_on_offline_news_end_to_end(tmp_path, capsys):
    """The packaged model through the CLI: real text, 30 layers × 576, float16 in range, the massive first token."""
    from fnet_dist.cli import main

    out = str(tmp_path / "news.zarr")
    argv = ["record", "--model", "smollm2-135m-instruct", "--corpus", "offline:news", "--out", out, "--group-samples", "2",
            "--individual-samples", "2", "--max-tokens", "48", "--no-progress"]
    assert main(argv) == 0
    assert "30 layers × 576 = 17,280" in capsys.readouterr().out
    ds = open_store(out, ACTIVATIONS).load()
    act = ds["activation"].values.astype(np.float32)
    assert np.isfinite(act).all() and ds["complete"].values.all()
    first, rest = np.abs(act[:, 0]).max(axis=(0, 2)), np.abs(act[:, 1:]).max(axis=(0, 1, 3))
    assert first.max() > 1e3 and first.max() > 10 * rest[int(first.argmax())]
    np.testing.assert_allclose(ds["peak"].values.max(axis=0), np.maximum(first, rest), rtol=1e-3)


@pytest.mark.parametrize("background", [True, False])
def test_samples_are_written_as_whole_chunks_and_chunks_past_them_never(background, tmp_path):
    """Token chunks of c tokens: a sample fills ceil(n / c) chunk files (the last padded with zeros), no more;
    the same from the writer thread (GPU recording) and in line (CPU recording)."""
    from fnet_dist.store.activations import MAX_TOKEN_CHUNK, SampleWriter, ActivationArray, config_hash, prepare_store
    from fnet_dist.core.corpora import Sample, Selection

    c = MAX_TOKEN_CHUNK
    lengths = [c // 3, c, 2 * c + 6, 2 * c + 11]
    rng = np.random.default_rng(0)
    samples = tuple(Sample(p, p, "group", np.arange(n, dtype=np.int32), f"text {p}") for p, n in enumerate(lengths))
    array = ActivationArray(len(samples), max(lengths), 2, 3, "float16")
    assert array.token_chunk == c
    attrs = {"record_config": {"x": 1}, "config_hash": config_hash({"x": 1}), "model_id": "m", "model_revision": "r",
             "architecture": "a", "model_dtype": "float32", "hook_points": [], "corpus": "c", "seed": 0,
             "max_tokens": max(lengths), "min_tokens": 1, "n_skipped_short": 0, "package_version": "0"}
    url = str(tmp_path / "a.zarr")
    prepare_store(url, Selection(samples, 0, len(samples), 0), array, attrs)
    values = [rng.standard_normal((n, 2, 3)).astype(np.float16) + 1 for n in lengths]  # never 0
    writer = SampleWriter(url, array, background=background)
    for sample, value in zip(samples, values):
        writer.put(sample.position, value, np.abs(value).max(axis=(0, 2)))
    writer.close()
    ds = open_store(url, ACTIVATIONS).load()
    for p, (n, value) in enumerate(zip(lengths, values)):
        np.testing.assert_array_equal(ds["activation"].values[p, :n], value)
        assert not ds["activation"].values[p, n:].any()
        chunk_files = sorted(f.name for f in (tmp_path / "a.zarr" / "activation" / "c" / str(p)).iterdir())
        assert chunk_files == [str(i) for i in range(-(-n // c))], (n, chunk_files)
    assert ds["complete"].values.all()
    assert ds["activation"].encoding.get("compressors") in (None, ())  # float16 activations barely compress


def test_short_texts_are_packed_into_samples_of_enough_tokens(llama, corpus, tmp_path):
    """Planted short lines ("ok", "Voters queued for hours.") are joined with the lines after them; the store says so."""
    args = ARGS | {"group_samples": 2, "individual_samples": 2, "min_tokens": 1}
    url = record_activations(llama, corpus, str(tmp_path / "packed.zarr"), pack_to_tokens=30, **args)
    ds = open_store(url, ACTIVATIONS)
    assert ds.attrs["pack_to_tokens"] == 30 and ds.attrs["record_config"]["pack_to_tokens"] == 30
    assert (ds["n_tokens"].values >= 30).all() and ds.attrs["n_packed_samples"] >= 1
    assert any("\n" in str(t) for t in ds["text"].values)
    assert "packed from consecutive texts to ≥ 30 tokens" in summarize_store(url)
    plain = open_store(record_activations(llama, corpus, str(tmp_path / "plain.zarr"), **args), ACTIVATIONS)
    assert "pack_to_tokens" not in plain.attrs["record_config"] and plain.attrs["pack_to_tokens"] == 0
