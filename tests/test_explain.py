"""fnet explain on a tiny llama: dual regression recovers planted sources; the page is escaped and complete."""
from __future__ import annotations

import html
import re

import numpy as np
import pytest
import torch

from fnet_dist import cli
from fnet_dist.core.config import MatchSection
from fnet_dist.core.errors import InputError, StoreError
from fnet_dist.core.networks import binarize, network_sizes
from fnet_dist.core.signals import source_signals, standardize
from fnet_dist.report.explain import explain_text
from fnet_dist.report.explain_page import render_attribution_html
from networks_fixtures import networks_dataset, planted_networks, write_networks

TEXT = "The cat <sat> on the mat & \"purred\"."


@pytest.fixture(scope="module")
def loaded(tiny_llama):
    from fnet_dist.model.loading import load_model

    return load_model(tiny_llama, device="cpu")


def block_outputs(loaded, text):
    """The MLP outputs through plain forward hooks of the test's own, ``(n_tokens, n_layers * d_model)``."""
    captured = {}
    layers = loaded.model.model.layers
    handles = [layer.mlp.register_forward_hook(lambda m, i, o, k=k: captured.__setitem__(k, o[0]))
               for k, layer in enumerate(layers)]
    try:
        with torch.no_grad():
            loaded.model(**loaded.tokenizer(text, return_tensors="pt"))
    finally:
        for handle in handles:
            handle.remove()
    return torch.cat([captured[k] for k in range(len(layers))], dim=-1).numpy()


@pytest.fixture(scope="module")
def planted_store(loaded, tmp_path_factory):
    """Templates 1 and 2 are the z-scored patterns of tokens 3 and 7 of TEXT; template 3 is noise."""
    x = standardize(block_outputs(loaded, TEXT), np.float64)
    maps = np.stack([x[3], x[7], np.random.default_rng(0).standard_normal(x.shape[1])]).astype(np.float32)
    filler = planted_networks(n_templates=3, copies=(1, 1, 1), n_layers=2, d_model=32, size=4)
    url = write_networks(networks_dataset(maps.reshape(3, 2, 32), filler.individual_map, corpus="news",
                                          model_id=loaded.info["model_id"]),
                         tmp_path_factory.mktemp("explain") / "networks")
    return url, x, maps


def test_explain_recovers_planted_tokens(loaded, planted_store):
    url, x, maps = planted_store
    attribution = explain_text(loaded, url, TEXT, match=MatchSection())
    assert attribution.components == [1, 2, 3]
    assert attribution.weights.shape == (3, len(x))
    # token 3's own pattern is template 1: its weights are exactly (1, 0, 0); token 7's (0, 1, 0)
    np.testing.assert_allclose(attribution.weights[:, 3], [1, 0, 0], atol=1e-4)
    np.testing.assert_allclose(attribution.weights[:, 7], [0, 1, 0], atol=1e-4)
    # and the whole signal equals the regression on independently hooked activations
    np.testing.assert_allclose(attribution.weights, source_signals(x, maps).T, rtol=1e-4, atol=1e-5)
    only = explain_text(loaded, url, TEXT, components=[2], hook_module="model.layers.{i}.mlp", match=MatchSection())
    np.testing.assert_allclose(only.weights, attribution.weights[[1]])


def test_page_is_escaped_and_keeps_the_text(loaded, planted_store):
    url, _, _ = planted_store
    attribution = explain_text(loaded, url, "<script>alert('x')</script> a & b\nline two", match=MatchSection())
    page = render_attribution_html(attribution)
    assert page.startswith("<!DOCTYPE html>") and "<script>" not in page and "&lt;" in page
    assert "http" not in page.split("</style>")[0]  # self-contained: no external style sheets or fonts
    for section in re.findall(r'<div class="text">(.*?)</div>', page, flags=re.S):
        assert section.count('<span class="tok') == len(attribution.token_ids)
        assert html.unescape(re.sub(r"<[^>]+>", "", section)) == attribution.text
    assert page.count("<section>") == 3


def test_cli_writes_the_page(loaded, planted_store, tiny_llama, tmp_path, monkeypatch, capsys):
    url, _, _ = planted_store
    monkeypatch.setattr(cli, "COMMANDS", ("explain",))
    page = tmp_path / "page.html"
    code = cli.main(["explain", "--model", tiny_llama, "--networks", url, "--text", "hello there",
                     "--out", str(page), "--templates", "2", "3", "--device", "cpu"])
    assert code == 0 and "templates [2, 3]" in capsys.readouterr().out
    assert page.read_text().count("<section>") == 2


def test_bad_input(loaded, planted_store, tmp_path):
    url, _, _ = planted_store
    with pytest.raises(InputError, match=r"components \[4\] are not templates of .*: expected numbers 1..3"):
        explain_text(loaded, url, TEXT, components=[1, 4], match=MatchSection())
    with pytest.raises(InputError, match="the text to explain is empty"):
        explain_text(loaded, url, "   ", match=MatchSection())
    with pytest.raises(InputError, match="needs at least two"):
        explain_text(loaded, url, "a", match=MatchSection())
    other = planted_networks(n_layers=3, d_model=40)
    wrong = write_networks(networks_dataset(other.group_map, other.individual_map, model_id="big"), tmp_path / "w")
    with pytest.raises(InputError, match=r"has \(n_layers, d_model\) = \(2, 32\), but .* networks of shape \(3, 40\) \(big\)"):
        explain_text(loaded, wrong, TEXT, match=MatchSection())
    filler = planted_networks(n_templates=3, copies=(1, 1, 1), n_layers=2, d_model=32, size=4)
    same_shape = networks_dataset(filler.group_map, filler.individual_map, model_id=loaded.info["model_id"]
                                  ).assign_attrs(model_revision="0123abc")  # the same id, another revision
    for ds in (same_shape, same_shape.assign_attrs(model_id="other/model", model_revision="")):
        url_other = write_networks(ds, tmp_path / f"other-{ds.attrs['model_id'].replace('/', '-')[-8:]}")
        with pytest.raises(InputError, match=r"the networks store .* was made from model .*, not from the model loaded here"):
            explain_text(loaded, url_other, TEXT, match=MatchSection())
    with pytest.raises(StoreError, match="no store at"):
        explain_text(loaded, str(tmp_path / "missing"), TEXT, match=MatchSection())
    with pytest.raises(InputError, match="--hook-module 'model.layers.mlp' must be a dotted module path"):
        explain_text(loaded, url, TEXT, hook_module="model.layers.mlp", match=MatchSection())


def test_cli_bad_text_file(planted_store, tmp_path, monkeypatch, capsys):
    url, _, _ = planted_store
    monkeypatch.setattr(cli, "COMMANDS", ("explain",))
    code = cli.main(["explain", "--networks", url, "--text-file", str(tmp_path / "none.txt"), "--out", "x.html"])
    assert code == 2 and "error: cannot read --text-file" in capsys.readouterr().err


@pytest.mark.slow
def test_smollm2_pieces_keep_the_text(tmp_path, monkeypatch):
    """On the packaged SmolLM2: real BPE pieces (multi-character, a split emoji) and the CLI end to end."""
    rng = np.random.default_rng(0)
    filler = planted_networks(n_templates=2, copies=(1, 1), n_layers=30, d_model=576, size=20)
    maps = rng.standard_normal((2, 30, 576)).astype(np.float32)
    url = write_networks(networks_dataset(maps, filler.individual_map, model_id="smollm2-135m-instruct"), tmp_path / "networks")
    text = "The naïve cat <sat>  on “the” mat.\n\nDone 😀!"
    monkeypatch.setattr(cli, "COMMANDS", ("explain",))
    source = tmp_path / "text.txt"
    source.write_text(text, encoding="utf-8")
    page = tmp_path / "page.html"
    assert cli.main(["explain", "--networks", url, "--text-file", str(source), "--out", str(page), "--device", "cpu"]) == 0
    content = page.read_text(encoding="utf-8")
    sections = re.findall(r'<div class="text">(.*?)</div>', content, flags=re.S)
    assert len(sections) == 2
    for section in sections:
        assert html.unescape(re.sub(r"<[^>]+>", "", section)) == text
        assert 'title="token 1: &#x27; na&#x27;' in section  # the tokenizer's own piece, leading space included


def test_template_sizes_follow_the_runs_match_rule_not_the_default(loaded, planted_store):
    """A run with match.threshold 2.5 (the smoke config's) or one-sided networks sizes its templates by that rule:
    the report and fnet explain said 3.6 whatever the run used."""
    url, _, maps = planted_store
    for match in (MatchSection(threshold=1.5), MatchSection(threshold=1.5, two_sided=False), MatchSection()):
        attribution = explain_text(loaded, url, TEXT, match=match)
        expected = network_sizes(binarize(maps.reshape(3, 2, 32), match.threshold, match.two_sided))
        assert attribution.template_sizes == [int(n) for n in expected]
        rule = f"{'|z|' if match.two_sided else 'z'} &gt; {match.threshold:g}"
        assert render_attribution_html(attribution).count(f"neurons at {rule})") == 3
    loose, strict = (explain_text(loaded, url, TEXT, match=MatchSection(threshold=t)).template_sizes for t in (1.5, 3.6))
    assert sum(loose) > sum(strict)  # the rule matters on these maps
