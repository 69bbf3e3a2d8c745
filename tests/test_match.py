"""fnet match on planted networks stores: counterparts, cross-corpus pairs, files, CLI and bad input."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from fnet_dist import cli
from fnet_dist.core.errors import InputError, StoreError
from fnet_dist.core.config import MatchSection
from fnet_dist.match.matching import markdown_table, match_networks
from networks_fixtures import networks_dataset, planted_networks, write_networks

STATUS = ["ok", "ok", "too short", "ok", "ok", "ok"]


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """Two corpora with the same planted template supports (seed 0): news (template 4 empty, sample 2 skipped), code."""
    folder = tmp_path_factory.mktemp("networks")
    news = planted_networks(empty=(3,), skipped=(2,), seed=0)
    code = planted_networks(copies=(2, 4, 0, 6), seed=0)
    urls = {
        "news": write_networks(networks_dataset(news.group_map, news.individual_map, status=STATUS), folder / "news"),
        "code": write_networks(networks_dataset(code.group_map, code.individual_map, corpus="code"), folder / "code"),
    }
    return urls, {"news": news, "code": code}


@pytest.fixture(scope="module")
def matched(stores, dask_cluster_address, tmp_path_factory):
    urls, _ = stores
    out = tmp_path_factory.mktemp("results") / "match"
    return match_networks([urls["news"], urls["code"]], str(out), scheduler=dask_cluster_address), out


def test_counterparts_equal_the_planted_ones(stores, matched):
    _, planted = stores
    results, _ = matched
    table = results.consistency.set_index(["corpus", "template"])
    for name, truth in planted.items():
        rows = table.loc[name]
        assert rows["counterparts"].tolist() == truth.counterparts.tolist()
        assert rows["samples_with_counterpart"].tolist() == truth.samples_with.tolist()
    news = table.loc["news"]
    assert news["samples"].unique().tolist() == [5] and news["individual_maps"].unique().tolist() == [25]
    assert news["size"].tolist() == [8, 8, 8, 0]
    assert news["share"].tolist() == [8 / 120] * 3 + [0.0]
    assert news["best_iou"].tolist() == [0.6, 0.0, 0.6, 0.0]  # copies keep 6 of 8 neurons: 6 / 10


def test_empty_template_and_skipped_sample_are_reported(matched):
    results, out = matched
    news = results.corpora[0]
    assert news["empty_templates"] == [4]
    assert news["skipped_samples"] == {"2": "too short"} and news["skipped_reasons"] == {"too short": 1}
    table = results.consistency.set_index(["corpus", "template"])
    assert table.loc["news", "skipped_samples"].unique().tolist() == [1]
    assert table.loc["code", "skipped_samples"].unique().tolist() == [0]
    assert (table["counterparts_per_sample"] == table["counterparts"] / table["samples"]).all()
    assert "news: 25 individual maps from 5 usable samples (1 not usable, left out)" in (out / "consistency.md").read_text()
    assert news["empty_individual_maps"] == 0
    assert not results.iou["news"][3].any()


def test_individual_maps_are_loaded_as_sparse_blocks(stores):
    """No dense mask in the matching path: the individual maps are CSR row blocks, thresholded in their tasks."""
    import scipy.sparse as sp

    from fnet_dist.match.io import load_networks
    from fnet_dist.core.networks import binarize, flatten_networks

    urls, planted = stores
    corpus = load_networks(urls["news"], MatchSection())
    assert isinstance(corpus.individual._meta, sp.csr_array)
    assert corpus.individual.chunks == ((5,) * 5, (120,))  # one sample per block, as the store is chunked
    ok = [0, 1, 3, 4, 5]
    expected = flatten_networks(binarize(planted["news"].individual_map.reshape(6, 5, 3, 40)[ok]))
    assert np.array_equal(corpus.individual.compute(scheduler="sync").toarray(), expected)


def test_cross_corpus_pairs(matched):
    results, _ = matched
    cross = results.cross_corpus
    assert len(cross) == 16
    similar = results.similar_pairs
    # identical supports: IoU 1 for each non-empty template with its twin, 0 otherwise
    assert sorted(zip(similar["template_1"], similar["template_2"])) == [(1, 1), (2, 2), (3, 3)]
    assert similar["iou"].tolist() == [1.0, 1.0, 1.0]
    assert cross.loc[~cross["similar"], "iou"].max() == 0.0


def test_files(matched):
    results, out = matched
    expected = {"consistency.csv", "consistency.md", "cross_corpus.csv", "cross_corpus.md", "network_sizes.csv",
                "counterpart_samples.csv", "networks.png", "counterparts.png", "layer_distribution.png", "cross_corpus.png", "results.json",
                "fnet-output.json"}
    assert {p.name for p in out.iterdir()} == expected
    for png in out.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pd.testing.assert_frame_equal(pd.read_csv(out / "consistency.csv"), results.consistency, check_dtype=False)
    per_sample = pd.read_csv(out / "counterpart_samples.csv")  # samples as the unit: per template, its counts per sample
    totals = per_sample.groupby(["corpus", "template"], sort=False)["counterparts"].agg(["sum", lambda c: (c > 0).sum()])
    consistency = results.consistency.set_index(["corpus", "template"])
    assert totals["sum"].tolist() == consistency["counterparts"].tolist()
    assert totals.iloc[:, 1].tolist() == consistency["samples_with_counterpart"].tolist()
    sizes = pd.read_csv(out / "network_sizes.csv")
    assert sizes.filter(like="layer_").sum(axis=1).tolist() == sizes["size"].tolist()
    index = json.loads((out / "results.json").read_text())
    assert index["parameters"] == MatchSection().model_dump(mode="json") and index["parameters"]["threshold"] == 3.6
    assert index["similar_pairs"] == 3 and set(index["files"]) == expected - {"results.json", "fnet-output.json"}
    markdown = (out / "consistency.md").read_text()
    assert "| TEMPLATES | NEWS | CODE |" in markdown and "| 3 | 5 (3) | 0 (0) |" in markdown
    assert "| NEWS COMPONENT 1 | CODE COMPONENT 1 | 1.0000 |" in (out / "cross_corpus.md").read_text()


def test_one_sided_drops_negative_counterparts(stores, tmp_path, dask_cluster_address):
    planted = planted_networks(negative_copies=True)
    url = write_networks(networks_dataset(planted.group_map, planted.individual_map), tmp_path / "neg")
    two = match_networks([url, stores[0]["code"]], str(tmp_path / "two"), scheduler=dask_cluster_address)
    assert (tmp_path / "two" / "cross_corpus.png").exists()
    with pytest.raises(StoreError, match=r"already holds match results \(fnet match\); pass --overwrite"):
        match_networks([url], str(tmp_path / "two"), scheduler=dask_cluster_address)
    two = match_networks([url], str(tmp_path / "two"), scheduler=dask_cluster_address, overwrite=True)
    assert not (tmp_path / "two" / "cross_corpus.png").exists()  # a replacement leaves no stale figure
    one = match_networks([url], str(tmp_path / "one"), two_sided=False, scheduler=dask_cluster_address)
    assert two.consistency["counterparts"].tolist() == planted.counterparts.tolist()
    assert one.consistency["counterparts"].tolist() == [0, 0, 0, 0]
    assert one.cross_corpus.empty and not (tmp_path / "one" / "cross_corpus.png").exists()


def test_stricter_iou_and_duplicate_dataset_names(stores, tmp_path, dask_cluster_address):
    urls, planted = stores
    import shutil

    import fsspec

    twin = shutil.copytree(urls["code"], tmp_path / "code-twin.zarr")  # another store of the same corpus name
    results = match_networks([urls["code"], str(twin)], "memory://fnet-tests/dup", iou=0.6,
                             scheduler=dask_cluster_address)
    assert fsspec.filesystem("memory").exists("/fnet-tests/dup/consistency.md")  # results go to any fsspec URL
    assert results.consistency["corpus"].unique().tolist() == ["code", "code-2"]
    assert results.consistency["counterparts"].sum() == 0  # copies have IoU exactly 0.6, not above
    assert len(results.similar_pairs) == 4


def test_a_store_given_twice_is_refused_before_any_work(stores, tmp_path, monkeypatch, capsys):
    urls, _ = stores
    link = tmp_path / "same.zarr"
    link.symlink_to(urls["code"])
    with pytest.raises(InputError, match="is given twice; give each corpus's store once"):
        match_networks([urls["code"], urls["news"], urls["code"]], str(tmp_path / "m"))
    with pytest.raises(InputError, match=r"given twice \(.* are one store\)"):
        match_networks([urls["code"], str(link)], str(tmp_path / "m"))
    monkeypatch.setattr(cli, "COMMANDS", ("match",))
    assert cli.main(["match", urls["news"], urls["news"], "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is given twice" in err and not (tmp_path / "m").exists()


def test_cli(stores, tmp_path, dask_cluster_address, monkeypatch, capsys, caplog):
    urls, _ = stores
    monkeypatch.setattr(cli, "COMMANDS", ("match",))
    code = cli.main(["match", urls["news"], urls["code"], "--out", str(tmp_path / "cli"), "--iou", "0.5", "--no-anatomy",
                     "--scheduler", dask_cluster_address])
    printed = capsys.readouterr().out
    assert code == 0
    assert "news: template(s) [4] have no neuron above the threshold 3.6" in caplog.text
    assert "| TEMPLATES | NEWS | CODE |" in printed and "| 1 | 3 (1) | 2 (" in printed


def test_cli_reports_bad_input_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cli, "COMMANDS", ("match",))
    assert cli.main(["match", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: no store at") and error.count("\n") == 1
    assert cli.main(["match", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out"), "--iou", "1"]) == 2
    error = capsys.readouterr().err  # the flag is generated from MatchSection and checked by its bounds
    assert error.startswith("error: --iou 1: input should be less than 1") and error.count("\n") == 1


def test_different_layouts_name_both_shapes(stores, tmp_path):
    urls, _ = stores
    other = planted_networks(n_layers=2, d_model=32, size=4)
    url = write_networks(networks_dataset(other.group_map, other.individual_map, model_id="other-model"), tmp_path / "o")
    with pytest.raises(InputError, match=r"different neuron layouts: .* \(3, 40\) \(synthetic\), .* \(2, 32\) \(other-model\)"):
        match_networks([urls["news"], url], str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_missing_and_foreign_stores(tmp_path):
    from fnet_dist.store.storage import write_store
    from fnet_dist.model.testing import activation_dataset
    from storage_schemas import ACTIVATIONS

    with pytest.raises(StoreError, match="no store at .*expected an fnet-networks store"):
        match_networks([str(tmp_path / "missing")], str(tmp_path / "out"))
    activations = write_store(activation_dataset(np.zeros((2, 4, 3, 40), np.float32), [4, 4]), str(tmp_path / "act"),
                              ACTIVATIONS)
    with pytest.raises(StoreError, match="is not an fnet-networks store"):
        match_networks([activations], str(tmp_path / "out"))
    with pytest.raises(InputError, match="no networks store given"):
        match_networks([], str(tmp_path / "out"))


def test_a_version_1_store_is_refused_in_one_line_that_says_how_to_upgrade(stores, tmp_path, monkeypatch, capsys):
    """Version 1 named the corpus attr ``dataset``: such a store is refused, not read, and left as it was."""
    import shutil
    import zarr

    urls, _ = stores
    old = tmp_path / "old.zarr"
    shutil.copytree(urls["news"], old)
    group = zarr.open_group(str(old), mode="r+")
    attrs = dict(group.attrs)
    attrs["dataset"] = attrs.pop("corpus")
    attrs["schema_version"] = 1
    group.attrs.put(attrs)
    before = sorted((p.relative_to(old), p.read_bytes()) for p in old.rglob("*") if p.is_file())
    monkeypatch.setattr(cli, "COMMANDS", ("match",))
    assert cli.main(["match", str(old), "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "schema version 1" in error and "reads version 3" in error
    assert "named the corpus attr 'dataset'" in error and "--overwrite" in error
    assert sorted((p.relative_to(old), p.read_bytes()) for p in old.rglob("*") if p.is_file()) == before
    attrs["schema_version"] = 2                    # a version-2 store (no split halves) gets its own hint
    group.attrs.put(attrs)
    assert cli.main(["match", str(old), "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert "schema version 2" in error and "no split-half group maps" in error


@pytest.mark.parametrize("kwargs,message", [
    ({"iou": 1.5}, r"iou 1.5: input should be less than 1"),
    ({"iou": 1.0}, r"iou 1.0: input should be less than 1"),
    ({"similar_iou": -0.1}, r"similar_iou -0.1: input should be greater than or equal to 0"),
    ({"threshold": 0}, "threshold 0: input should be greater than 0"),
    ({"threshold": float("nan")}, "threshold nan: input should be a finite number"),
])
def test_bad_parameters(kwargs, message, tmp_path):
    with pytest.raises(InputError, match=message):
        match_networks([str(tmp_path / "never-read")], str(tmp_path / "out"), **kwargs)


def test_markdown_table_escapes_pipes():
    text = markdown_table(pd.DataFrame({"a": ["x|y"], "b": [0.5]}))
    assert text == "| a | b |\n|---|---|\n| x\\|y | 0.5000 |\n"


def test_pool_columns_keeps_a_lone_neuron_visible():
    from fnet_dist.core.display import pool_columns

    image = np.zeros((3, 5000), dtype=np.uint8)
    image[1, 4321] = 1
    pooled = pool_columns(image, 100)
    assert pooled.shape == (3, 100) and pooled.sum() == 1 and pooled[1].argmax() == 86
    assert pool_columns(image[:, :50], 100) is not None and pool_columns(image[:, :50], 100).shape == (3, 50)


def test_all_samples_skipped_gives_zero_counterparts(tmp_path, dask_cluster_address):
    planted = planted_networks(n_samples=2, copies=(0, 0, 0, 0), skipped=(0, 1))
    url = write_networks(networks_dataset(planted.group_map, planted.individual_map, status=["too short"] * 2),
                         tmp_path / "skipped")
    results = match_networks([url], str(tmp_path / "out"), scheduler=dask_cluster_address)
    assert results.consistency["counterparts"].tolist() == [0, 0, 0, 0]
    assert results.consistency["individual_maps"].unique().tolist() == [0]
    assert results.corpora[0]["skipped_samples"] == {"0": "too short", "1": "too short"}


def test_damaged_store_is_named(tmp_path):
    planted = planted_networks()
    ds = networks_dataset(planted.group_map, planted.individual_map)
    url = write_networks(ds.assign_attrs(d_model=41), tmp_path / "damaged")
    with pytest.raises(InputError, match=r"maps of shape \(3, 40\) .* disagree with attrs n_layers=3, d_model=41"):
        match_networks([url], str(tmp_path / "out"))


def test_empty_individual_maps_are_counted(tmp_path, dask_cluster_address, monkeypatch, capsys):
    planted = planted_networks(copies=(0, 0, 0, 0))
    planted.individual_map[1, 2] = 0.0
    planted.individual_map[4, 0] = 3.5
    url = write_networks(networks_dataset(planted.group_map, planted.individual_map), tmp_path / "empty")
    monkeypatch.setattr(cli, "COMMANDS", ("match",))
    assert cli.main(["match", url, "--out", str(tmp_path / "out"), "--scheduler", dask_cluster_address,
                     "--no-anatomy"]) == 0
    assert "note: news: 2 of 30 individual maps are empty at threshold 3.6" in capsys.readouterr().out
    index = json.loads((tmp_path / "out" / "results.json").read_text())
    assert index["corpora"][0]["empty_individual_maps"] == 2


def test_match_nulls_on_planted_stores(stores, matched):
    """Planted counterparts beat layer-matched random networks (samples as the unit; the p-value is the stricter of
    the uniform and the frequency-preserving null); the shared supports recur across corpora."""
    # (120 neurons: random networks of 8 match a map now and then, so only several planted copies are significant)
    from fnet_dist.match.nulls import match_nulls

    urls, planted = stores
    _, out = matched
    shape = planted["news"].group_map.shape[1:]
    anatomy = pd.DataFrame({"corpus": ["news"] * 4 + ["code"] * 4, "template": [1, 2, 3, 4] * 2,
                            "first_token_peak_share": [0.0, 0.9, 0.0, 0.0] + [0.0] * 4})
    config = MatchSection(threshold=3.6, two_sided=True, iou=0.2, permutations=99, first_token_share=0.5)
    tables = match_nulls([urls["news"], urls["code"]], out, config, massive=np.zeros(shape, dtype=bool), anatomy=anatomy,
                         seed=0)
    null = tables["counterparts_null"].set_index(["corpus", "template"])
    assert (null["permutations"] == 99).all()
    for name, truth in planted.items():
        p = null.loc[name, "p_value"].to_numpy()    # the stricter null, samples with a counterpart
        uniform = null.loc[name, "uniform_samples_p"].to_numpy()   # 5-6 samples: the stricter null has little power
        assert (uniform[truth.samples_with >= 3] <= 0.05).all() and (uniform[truth.samples_with > 0] < 0.2).all()
        assert (p[truth.counterparts == 0] == 1.0).all()
        assert (null.loc[name, "p_value"] == null.loc[name, ["uniform_samples_p", "frequency_samples_p"]].max(axis=1)).all()
    recurrence = tables["recurrence"].set_index(["template_1", "template_2"])
    assert recurrence.loc[(1, 1), "p_value"] < 1e-6 and recurrence.loc[(1, 1), "eligible"]
    assert not recurrence.loc[(2, 2), "eligible"]                            # news 2 is first-token-dominated
    assert (out / "counterparts_null.csv").is_file() and (out / "recurrence.csv").is_file()
    summary, summary_null = tables["recurrence_summary"], tables["recurrence_null"]
    assert not ((summary["corpus"] == "news") & (summary["template"] == 2)).any()   # first-token: never counts
    assert set(summary_null["null"]) == {"uniform", "frequency"} and (summary_null["p_value"] <= 0.05).all()


def test_sensitivity_grid_recomputes_the_stage_at_every_cell_and_the_report_judges_each(stores, matched, tmp_path):
    """At the stage's own rule the grid's counts equal the stage's; thresholds above every planted z leave the
    templates empty; the report judges every cell with the findings' own functions and draws one figure."""
    from fnet_dist.core.layout import MatchFiles
    from fnet_dist.match.sensitivity import sensitivity_tables, write_sensitivity
    from fnet_dist.report.findings import FindingSettings
    from fnet_dist.report.sensitivity import sensitivity_figure, sensitivity_grid

    urls, planted = stores
    results, out = matched
    shape = planted["news"].group_map.shape[1:]
    section = MatchSection(threshold=3.6, iou=0.2, sensitivity_thresholds=(3.6, 50.0), sensitivity_ious=(0.2, 0.5),
                           sensitivity_permutations=19)
    first = {"news": np.array([False, True, False, False]), "code": np.zeros(4, dtype=bool)}
    tables = sensitivity_tables([urls["news"], urls["code"]], section, np.zeros(shape, dtype=bool), first, seed=0)
    own = tables["counterparts"].query("threshold == 3.6 and two_sided and iou == 0.2").set_index(["corpus", "template"])
    mine = results.consistency.set_index(["corpus", "template"])
    assert own["counterparts"].tolist() == mine["counterparts"].tolist()
    assert own["samples_with_counterpart"].tolist() == mine["samples_with_counterpart"].tolist()
    assert (tables["counterparts"].query("threshold == 50")["counterparts"] == 0).all()    # nothing above z 50
    assert set(tables["nulls"]["claim"]) == {"recurrence"} and len(tables["counterparts"]) == 2 * 2 * 2 * 8
    folder = tmp_path / "match"
    folder.mkdir()
    write_sensitivity(tables, str(folder))
    from fnet_dist.match.nulls import CHANCE_LEVEL, recurrence_table

    from fnet_dist.core.networks import binarize

    templates = {n: binarize(planted[n].group_map.reshape(-1, *shape), 3.6) for n in ("news", "code")}
    recurrence_table(["news", "code"], templates, np.zeros(shape, dtype=bool), first, level=CHANCE_LEVEL).to_csv(
        folder / "recurrence.csv", index=False)
    grid = sensitivity_grid(MatchFiles(folder), FindingSettings())
    cells = grid[grid["claim"] == "counterparts"]
    assert len(cells) == 2 * 2 * 2 and set(grid["claim"]) == {"counterparts", "recurrence"}
    assert set(grid["verdict"]) <= {"holds", "fails", "unclear"}
    assert (grid[grid["threshold"] == 50]["verdict"] != "holds").all()
    png = sensitivity_figure(grid, {"threshold": 3.6, "two_sided": True, "iou": 0.2})
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
