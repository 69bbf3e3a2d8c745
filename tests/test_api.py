"""The public API, ``import fnet_dist as fnet``: editing and recording on a tiny model (checked against plain
forward hooks of the test's own), the estimators on a recording, and a finished smoke run opened from Python
(its masks equal the neurons the report evaluated under the same names; its stores carry 1-based templates)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import fnet_dist as fnet
from fnet_dist.core.errors import InputError
from fnet_dist.model.masks import NeuronMask
from storage_schemas import ACTIVATIONS, NETWORKS

ROOT = Path(__file__).parents[1]
TEXTS = ["The cat sat on the mat and purred.", "Numbers: 3 + 4 = 7, and 7 * 2 = 14."]


def test_importing_the_package_does_not_import_the_api():
    """``fnet --help`` stays fast: the API (torch, xarray, lm-eval through it) loads on first use only."""
    code = ("import sys, fnet_dist; print('fnet_dist.api' in sys.modules, 'torch' in sys.modules); "
            "import fnet_dist.record.recording; from fnet_dist.record import sampling; "  # the stage package: no clash
            "print(fnet_dist.record.__module__, sampling.__name__)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False", "fnet_dist.api.recording", "fnet_dist.record.sampling"]
    assert set(fnet.__all__) <= set(dir(fnet)) and all(callable(getattr(fnet, n)) for n in fnet.__all__ if n != "__version__")
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        fnet.nope  # noqa: B018


@pytest.fixture(scope="module")
def loaded(tiny_llama):
    return fnet.load_model(tiny_llama, device="cpu")


def _plain_block_outputs(model, tokenizer, text) -> np.ndarray:
    """Each layer's MLP output through the test's own hooks: (n_tokens, n_layers, d_model)."""
    captured = {}
    layers = model.model.layers
    handles = [layer.mlp.register_forward_hook(lambda m, i, o, k=k: captured.__setitem__(k, o[0].detach()))
               for k, layer in enumerate(layers)]
    try:
        with torch.no_grad():
            model(**tokenizer(text, return_tensors="pt"))
    finally:
        for handle in handles:
            handle.remove()
    return torch.stack([captured[k] for k in range(len(layers))], dim=1).numpy()


def test_record_is_the_block_outputs_with_fill_past_each_text(loaded):
    ds = fnet.record(loaded, TEXTS)
    n_layers, d_model = len(loaded.model.model.layers), loaded.model.config.hidden_size
    assert ds["activation"].dims == ("sample", "token", "layer", "neuron")
    assert ds.sizes == {"sample": 2, "token": int(ds["n_tokens"].max()), "layer": n_layers, "neuron": d_model}
    for i, text in enumerate(TEXTS):
        n = int(ds["n_tokens"][i])
        expected = _plain_block_outputs(loaded.model, loaded.tokenizer, text)
        np.testing.assert_allclose(ds["activation"].values[i, :n], expected, rtol=1e-5, atol=1e-6)
        assert (ds["activation"].values[i, n:] == 0).all() and (ds["token_id"].values[i, n:] == -1).all()
    assert ds["activation"].attrs["description"] == ACTIVATIONS.variables["activation"].doc
    hf = fnet.record(loaded.model, TEXTS[:1], tokenizer=loaded.tokenizer)  # a plain HF model and its tokenizer
    np.testing.assert_array_equal(hf["activation"].values[0], ds["activation"].values[0, : hf.sizes["token"]])
    with pytest.raises(InputError, match="needs its tokenizer"):
        fnet.record(loaded.model, TEXTS)
    with pytest.raises(InputError, match="non-empty list of strings"):
        fnet.record(loaded, "one string")


def test_inhibit_and_amplify_edit_exactly_the_masked_channels_and_leave_no_hook(loaded):
    before = fnet.record(loaded, TEXTS)["activation"].values
    n_layers, d_model = before.shape[2:]
    last = n_layers - 1
    mask = NeuronMask.from_indices((n_layers, d_model), [(last, 1), (last, 5), (last, 9)], name="three")
    with fnet.inhibit(loaded, mask):
        inhibited = fnet.record(loaded, TEXTS)["activation"].values
    with fnet.amplify(loaded.model, mask.values, factor=2.0):  # a plain module and a bool array work too
        amplified = fnet.record(loaded, TEXTS)["activation"].values
    chosen = mask.values[last]
    assert (inhibited[:, :, last][..., chosen] == 0).all()
    np.testing.assert_array_equal(amplified[:, :, last][..., chosen], 2 * before[:, :, last][..., chosen])
    for edited in (inhibited, amplified):  # nothing else moves: the last layer's other channels, the earlier layers
        np.testing.assert_array_equal(edited[:, :, last][..., ~chosen], before[:, :, last][..., ~chosen])
        np.testing.assert_array_equal(edited[:, :, :last], before[:, :, :last])
    np.testing.assert_array_equal(fnet.record(loaded, TEXTS)["activation"].values, before)  # hooks gone on exit
    with pytest.raises(InputError, match=r"has shape \(3, 4\)"), fnet.inhibit(loaded, np.ones((3, 4), bool)):
        pass


def test_the_estimators_fit_a_recording_scikit_learn_style(loaded):
    ds = fnet.record(loaded, TEXTS * 3)
    n = int(ds["n_tokens"][0])
    individual = fnet.IndividualICA(n_components=3, stability_runs=1).fit(ds["activation"][0], n_tokens=n)
    assert individual.components_.shape == (3, *ds["activation"].shape[2:]) and individual.status_ == "ok"
    assert individual.transform(ds["activation"].values[0, :n]).shape == (n, 3)
    group = fnet.CanICA(n_components=2, n_init=2).fit(ds["activation"], n_tokens=ds["n_tokens"].values)
    maps = group.components_.reshape(2, -1)
    assert group.components_.shape == (2, *ds["activation"].shape[2:])
    np.testing.assert_allclose(maps.mean(axis=1), 0, atol=1e-4)  # z-maps across neurons, peak positive
    np.testing.assert_allclose(maps.std(axis=1), 1, atol=1e-3)
    assert (np.abs(maps).argmax(axis=1) == maps.argmax(axis=1)).all()
    sources = group.transform(ds["activation"].values[0, :n])
    assert sources.shape == (n, 2) and np.isfinite(sources).all()


# --- a finished run -----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def run(smoke_run):
    return fnet.open_run(smoke_run[0])


@pytest.mark.slow
def test_a_run_opens_with_its_config_status_and_findings(run, smoke_run):
    assert run.corpora == ["news", "code"] and run.config.match.threshold == 2.5
    assert list(run.status["stage"]) == ["record", "decompose", "match", "evaluate", "controls", "nulls", "report"]
    assert set(run.status["status"]) == {"done"}
    recorded = json.loads((smoke_run[0] / "report" / "findings.json").read_text())["findings"]
    assert list(run.findings["id"]) == [f["id"] for f in recorded]
    assert list(run.findings["verdict"]) == [f["verdict"] for f in recorded]
    assert {"consistency", "table3_networks_news", "controls/controls"} <= set(run.tables)
    pd.testing.assert_frame_equal(run.tables["consistency"], pd.read_csv(smoke_run[0] / "match" / "consistency.csv"))
    assert "<table>" in run._repr_html_() and "smoke" in run._repr_html_()
    done = subprocess.run([sys.executable, "-c", f"import fnet_dist as fnet; print(fnet.open_run({str(smoke_run[0])!r}).findings)"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0 and "counterparts" in done.stdout, done.stderr[-2000:]


@pytest.mark.slow
def test_stores_have_1_based_templates_and_described_variables(run, smoke_run):
    networks = run.networks("news")
    raw = fnet_open(smoke_run[0] / "networks" / "news.zarr")
    assert list(networks["template"].values) == [1, 2] and networks.sizes["layer"] == 30
    np.testing.assert_array_equal(networks["group_map"].sel(template=2).values, raw["group_map"].values[1])
    np.testing.assert_array_equal(run.zmap("news/2").values, raw["group_map"].values[1])
    assert networks["group_map"].attrs["description"] == NETWORKS.variables["group_map"].doc
    assert run.activations("code")["activation"].attrs["description"] == ACTIVATIONS.variables["activation"].doc


def fnet_open(path):
    import xarray as xr

    return xr.open_zarr(str(path), consolidated=False)


@pytest.mark.slow
def test_masks_by_name_are_the_neurons_the_report_evaluated(run):
    """``run.mask("news/2")`` is the network the report calls news/2: the evaluation's rows under that name
    (kind network, corpus news, template 2) count the same neurons; likewise its part without massive
    channels (the controls) and the top-percent mask."""
    rows = run.results
    controls = pd.read_csv(run.layout.controls.results)
    for template in (1, 2):
        evaluated = rows[(rows["kind"] == "network") & (rows["corpus"] == "news") & (rows["template"] == template)
                         & (rows["edit"] == "inhibit")]
        assert set(evaluated["neurons"]) == {run.mask(f"news/{template}").count}
        split = controls[(controls["kind"] == "minus_massive") & (controls["template"] == template)]
        if len(split):
            assert set(split["neurons"]) == {run.mask(f"news/{template}", without_massive=True).count}
    every = rows[(rows["kind"] == "network") & (rows["corpus"] == "news") & rows["template"].isna()]
    assert set(every["neurons"]) == {run.mask("news/all").count}
    top = rows[(rows["kind"] == "top") & (rows["corpus"] == "news")]
    assert set(top["neurons"]) == {run.top_mask().count} and run.top_mask().name == "top5@news"
    without = run.mask("news/1", without_massive=True)
    assert without.values.tolist() == (run.mask("news/1").values & ~run.massive_mask()).tolist()
    assert run.network("news/1").values.sum() == run.mask("news/1").count


@pytest.mark.slow
@pytest.mark.parametrize("name, message", [
    ("news/3", r"'news/3': news has templates 1..2"), ("news/0", "expected CORPUS/TEMPLATE"),
    ("news", "expected CORPUS/TEMPLATE"), ("wiki/1", "has no corpus 'wiki'; its corpora: news, code"),
])
def test_a_bad_network_name_says_what_there_is(run, name, message):
    with pytest.raises(InputError, match=message):
        run.mask(name)


def test_a_folder_that_is_no_run_is_refused(tmp_path):
    with pytest.raises(InputError, match="is not a run folder"):
        fnet.open_run(tmp_path)


@pytest.mark.slow
def test_plots_draw_the_zmap_and_its_counterparts(run):
    zmap = run.zmap("news/1")
    figure = fnet.plot_zmap(zmap)
    count = run.mask("news/1").count
    assert figure.axes[0].get_title() == f"news/1: {count} neurons at |z| > 2.5"
    image = figure.axes[0].images[0]
    assert image.get_array().shape == (30, 576) and image.norm.vmin == -image.norm.vmax  # symmetric around 0
    assert figure.axes[1].get_ylabel() == "z (across neurons)"
    counterparts = fnet.plot_counterparts(run, "news/1", top=2)
    titles = [ax.get_title() for ax in counterparts.axes if ax.images]
    assert titles[0] == "news/1 (template)" and len(titles) == 3 and all("IoU" in t for t in titles[1:])
