"""The ICA kernels and the two estimators on plain arrays: planted ground truth, seeds, edge cases, errors."""
from __future__ import annotations

import numpy as np
import pytest

from fnet_dist.decompose import GroupCanICA, IndividualICA
from fnet_dist.decompose.ica import (best_match_correlation, fastica, flip_peak_positive, pca, peak_token_share,
                                     spatial_ica, standardize, whiten, zscore_rows)
from fnet_dist.decompose.synthetic import best_match_iou, planted_networks
from fnet_dist.errors import InputError
from fnet_dist.match.networks import binarize


@pytest.fixture(scope="module")
def planted():
    return planted_networks(n_samples=6, n_tokens=80, n_layers=2, d_model=400, n_networks=4, seed=3)


def test_standardize_constant_columns_are_zero_not_nan():
    X = np.random.default_rng(0).standard_normal((30, 5)).astype(np.float32)
    X[:, 2] = 7.0
    out = standardize(X)
    assert np.isfinite(out).all() and np.all(out[:, 2] == 0)
    np.testing.assert_allclose(out[:, [0, 1, 3, 4]].std(axis=0), 1, atol=1e-5)
    np.testing.assert_allclose(out.mean(axis=0), 0, atol=1e-6)


@pytest.mark.parametrize("shape", [(40, 300), (300, 40)])
def test_pca_full_and_randomized_agree(shape):
    rng = np.random.default_rng(1)
    X = standardize(rng.standard_normal((shape[0], 6)) @ rng.standard_normal((6, shape[1])) * 3
                    + rng.standard_normal(shape))
    full, rand = pca(X, 5, solver="full"), pca(X, 5, solver="randomized", seed=2, n_iter=6)
    np.testing.assert_allclose(full.s, rand.s, rtol=1e-3)
    assert np.all(np.abs(np.sum(full.vt * rand.vt, axis=1)) > 0.999)
    np.testing.assert_allclose(full.u * full.s @ full.vt, rand.u * rand.s @ rand.vt, atol=2e-3 * np.abs(X).max())
    np.testing.assert_allclose(full.explained_variance_ratio.sum(), (full.s.astype(float) ** 2).sum() / (X.astype(float) ** 2).sum())


@pytest.mark.parametrize("fun", ["logcosh", "cube", "exp"])
def test_fastica_unmixes_planted_laplace_sources(fun):
    rng = np.random.default_rng(4)
    S = rng.laplace(size=(3, 5000))
    Z, _, _ = whiten(rng.standard_normal((3, 3)) @ S)
    res = fastica(Z, seed=0, fun=fun, max_iter=500)
    assert res.converged and res.n_iter < 500
    assert np.all(best_match_correlation(S, res.W @ Z) > 0.99)


def test_fastica_reports_non_convergence():
    Z, _, _ = whiten(np.random.default_rng(0).laplace(size=(4, 2000)))
    res = fastica(Z, seed=0, max_iter=1, tol=1e-12)
    assert not res.converged and res.n_iter == 1 and res.change > 1e-12


def test_map_helpers():
    maps = np.array([[0.0, 1.0, -5.0, 2.0], [3.0, 3.0, 3.0, 3.0]], dtype=np.float32)
    np.testing.assert_array_equal(flip_peak_positive(maps), [-1.0, 1.0])
    z = zscore_rows(maps)
    assert np.isfinite(z).all() and np.all(z[1] == 0)
    np.testing.assert_allclose(z[0].std(), 1, rtol=1e-5)
    np.testing.assert_allclose(peak_token_share(np.array([[0.0, 2.0, 0.0], [1.0, 1.0, 1.0]])), [1.0, 1 / 3])
    np.testing.assert_allclose(best_match_correlation(maps[:1], -maps[::-1]), [1.0], rtol=1e-5)


def test_spatial_ica_recovers_planted_networks_and_time_courses(planted):
    X = planted.activations[0].reshape(80, -1)
    res = spatial_ica(X, 8, seed=0)
    assert best_match_iou(planted.networks, binarize(res.maps)).min() >= 0.9
    corr = np.abs(np.corrcoef(planted.time_courses[0].T, res.sources)[:4, 4:]).max(axis=1)
    assert corr.min() > 0.95
    assert np.all(res.maps.max(axis=1) >= -res.maps.min(axis=1))  # peak positive


def test_individual_ica_on_planted_sample(planted):
    est = IndividualICA(8, stability_runs=3, random_state=5, max_iter=500).fit(planted.activations[1])
    assert est.components_.shape == (8, 2, 400) and est.sources_.shape == (8, 80)
    assert est.status_ == "ok" and est.n_components_ == 8 and len(est.seeds_) == 3
    assert best_match_iou(planted.networks, binarize(est.components_)).min() >= 0.9
    planted_maps = best_match_iou(binarize(est.components_), planted.networks) >= 0.9
    assert np.all(est.stability_[planted_maps] > 0.99)  # planted networks are reproducible across seeds
    assert est.blas_threads_ == 1
    np.testing.assert_allclose(np.nansum(est.explained_variance_ratio_), est.explained_variance_ratio_.sum())


def test_individual_ica_same_seed_same_maps_and_input_types(planted):
    import dask.array as da
    import xarray as xr

    X = planted.activations[2]
    ref = IndividualICA(6, random_state=1).fit(X)
    for other in (X.copy(), da.from_array(X, chunks=(40, 1, 400)), xr.DataArray(X, dims=("token", "layer", "neuron"))):
        got = IndividualICA(6, random_state=1).fit(other)
        np.testing.assert_array_equal(got.components_, ref.components_)
    assert not np.array_equal(IndividualICA(6, random_state=2).fit(X).seeds_, ref.seeds_)


def test_individual_ica_short_samples_reduce_or_skip():
    X = np.random.default_rng(0).standard_normal((20, 50)).astype(np.float32)
    reduced = IndividualICA(16).fit(X, n_tokens=10)
    assert reduced.n_components_ == 9 and reduced.status_.startswith("reduced: 10 tokens")
    assert np.isnan(reduced.components_[9:]).all() and np.isfinite(reduced.components_[:9]).all()
    assert np.isnan(reduced.sources_[:, 10:]).all()
    with pytest.warns(RuntimeWarning, match="skipped"):
        skipped = IndividualICA(4, exclude_first_tokens=1).fit(X, n_tokens=3)
    assert skipped.n_components_ == 0 and skipped.status_.startswith("skipped: 2 tokens")
    assert np.isnan(skipped.components_).all()


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_individual_ica_constant_neurons_and_excluded_tokens():
    X = np.random.default_rng(1).laplace(size=(40, 60)).astype(np.float32)
    X[:, :10] = 3.0
    est = IndividualICA(5, exclude_first_tokens=2).fit(X)
    assert np.isfinite(est.components_).all()
    assert np.isnan(est.sources_[:, :2]).all() and np.isfinite(est.sources_[:, 2:]).all()


def test_first_token_artefact_is_flagged_and_exclusion_removes_it():
    data = planted_networks(n_samples=1, n_tokens=80, n_networks=3, seed=7, first_token_spike=40.0)
    flagged = IndividualICA(8).fit(data.activations[0])
    assert flagged.single_token_.any()
    assert flagged.peak_token_share_[flagged.single_token_].min() > 0.5
    clean = IndividualICA(8, exclude_first_tokens=1).fit(data.activations[0])
    assert not clean.single_token_.any()


def test_individual_ica_warns_on_non_convergence(planted):
    from sklearn.exceptions import ConvergenceWarning

    with pytest.warns(ConvergenceWarning, match="did not converge in 2 iterations"):
        est = IndividualICA(8, max_iter=2, tol=1e-10).fit(planted.activations[0])
    assert not est.converged_ and est.n_iter_ == 2


@pytest.mark.parametrize("params, match", [
    ({"n_components": 0}, "--components / n_components=0 is invalid"),
    ({"tol": 0.0}, "tol=0.0 is invalid: expected a positive"),
    ({"max_iter": -3}, "max_iter=-3"),
    ({"fun": "tanh"}, "expected one of cube, logcosh, exp"),
    ({"single_token_share": 0}, r"expected a share in \(0, 1\]"),
    ({"stability_runs": 0}, "stability_runs=0"),
])
def test_individual_ica_rejects_bad_params(params, match):
    with pytest.raises(InputError, match=match):
        IndividualICA(**params).fit(np.ones((10, 20)))


def test_group_canica_planted_and_dask_matches_numpy(planted):
    import dask
    import dask.array as da

    X = planted.activations.reshape(6, 80, -1)
    ref = GroupCanICA(4, n_init=3, random_state=0).fit(list(X))
    assert best_match_iou(planted.networks.reshape(4, -1), binarize(ref.components_)).min() >= 0.9
    assert ref.components_.shape == (4, 800) and len(ref.seeds_) == 3 and ref.n_samples_used_ == 6
    assert np.all(ref.stability_ > 0.99) and ref.converged_.all()
    with dask.config.set(scheduler="sync"):
        lazy = GroupCanICA(4, n_init=3, random_state=0).fit(da.from_array(planted.activations, chunks=(2, 80, 2, 400)))
    assert lazy.components_.shape == (4, 2, 400)
    assert np.all(best_match_correlation(lazy.components_.reshape(4, -1), ref.components_) >= 0.99)


def test_group_canica_skips_short_samples_and_rejects_impossible_k(planted):
    n_tokens = np.array([80, 80, 4, 80, 80, 80])
    est = GroupCanICA(4, n_init=2).fit(planted.activations, n_tokens=n_tokens)
    assert est.n_samples_used_ == 5 and est.sample_status_[2].startswith("skipped")
    with pytest.raises(InputError, match="--group-components 30 is larger than possible"):
        GroupCanICA(30, sample_components=2, n_init=1).fit(planted.activations)
    with pytest.raises(InputError, match="no sample has enough tokens"):
        GroupCanICA(4).fit(planted.activations, n_tokens=np.full(6, 3))
    with pytest.raises(InputError, match="--n-init / n_init=0"):
        GroupCanICA(4, n_init=0).fit(planted.activations)


def test_sum_of_squares_is_the_float64_sum_without_a_float64_copy():
    from fnet_dist.decompose.ica import sum_of_squares

    x = np.random.default_rng(0).standard_normal((300, 5000)).astype(np.float32) * 100
    assert sum_of_squares(x) == pytest.approx(float(np.sum(x.astype(np.float64) ** 2)), rel=1e-6)
    assert sum_of_squares(np.zeros((2, 3), np.float32)) == 0.0
