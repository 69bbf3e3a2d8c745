"""The ICA kernels and the two estimators on plain arrays: planted ground truth, seeds, edge cases, errors; Picard-O
against python-picard and FastICA's criterion; temporal ICA against scikit-learn's FastICA."""
from __future__ import annotations

import numpy as np
import pytest

from fnet_dist.decompose import GroupCanICA, IndividualICA
from fnet_dist.core.signals import standardize
from fnet_dist.decompose.ica import (best_match_correlation, fastica, flip_peak_positive, pca, picard_o, spatial_ica,
                                     temporal_ica, whiten, zscore_rows)
from fnet_dist.core.planted import best_match_iou, planted_networks
from fnet_dist.core.config import DecomposeSection
from fnet_dist.core.errors import InputError
from fnet_dist.core.networks import binarize

TOL = DecomposeSection().tol  # the run's tolerance


@pytest.fixture(scope="module")
def planted():
    return planted_networks(n_samples=6, n_tokens=80, n_layers=2, d_model=400, n_networks=4, seed=3)


@pytest.mark.parametrize("shape", [(40, 300), (300, 40)])
def test_pca_full_and_randomized_agree(shape):
    rng = np.random.default_rng(1)
    X = standardize(rng.standard_normal((shape[0], 6)) @ rng.standard_normal((6, shape[1])) * 3
                    + rng.standard_normal(shape))
    full, rand = pca(X, 5, seed=0, solver="full"), pca(X, 5, solver="randomized", seed=2, n_iter=6)
    np.testing.assert_allclose(full.s, rand.s, rtol=1e-3)
    assert np.all(np.abs(np.sum(full.vt * rand.vt, axis=1)) > 0.999)
    np.testing.assert_allclose(full.u * full.s @ full.vt, rand.u * rand.s @ rand.vt, atol=2e-3 * np.abs(X).max())
    np.testing.assert_allclose(full.explained_variance_ratio.sum(), (full.s.astype(float) ** 2).sum() / (X.astype(float) ** 2).sum())


@pytest.mark.parametrize("fun", ["logcosh", "cube", "exp"])
def test_fastica_unmixes_planted_laplace_sources(fun):
    rng = np.random.default_rng(4)
    S = rng.laplace(size=(3, 5000))
    Z, _, _ = whiten(rng.standard_normal((3, 3)) @ S)
    res = fastica(Z, seed=0, fun=fun, max_iter=500, tol=TOL)
    assert res.converged and res.n_iter < 500
    assert np.all(best_match_correlation(S, res.W @ Z) > 0.99)


def _laplace_mixture(seed: int = 4, n: int = 5000, k: int = 4):
    rng = np.random.default_rng(seed)
    S = rng.laplace(size=(k, n))
    Z, _, _ = whiten(rng.standard_normal((k, k)) @ S)
    return S, Z


@pytest.mark.parametrize("fun, extended", [("logcosh", False), ("logcosh", True), ("cube", True)])
def test_picard_o_equals_python_picard(fun, extended):
    """Same data, same start: our float32 Picard-O and python-picard's ``picard(ortho=True)`` reach the same unmixing."""
    from picard import picard

    from fnet_dist.decompose.ica import _sym_decorrelation

    S, Z = _laplace_mixture()
    w_init = _sym_decorrelation(np.random.default_rng(0).standard_normal((4, 4)))
    ours = picard_o(Z, seed=0, fun=fun, extended=extended, w_init=w_init, max_iter=200, tol=1e-7)
    _, W, _ = picard(Z.astype(np.float64), fun={"logcosh": "tanh", "cube": "cube"}[fun], ortho=True,
                     extended=extended, whiten=False, centering=False, w_init=w_init, max_iter=500, tol=1e-9)
    assert ours.converged and ours.n_iter < 200
    np.testing.assert_allclose(np.abs(ours.W @ W.T), np.eye(4), atol=2e-3)  # the same rows, in the same order
    assert np.all(best_match_correlation(S, ours.W @ Z) > 0.99)


@pytest.mark.parametrize("fun", ["logcosh", "cube", "exp"])
def test_picard_o_stops_on_fastica_criterion(fun):
    """``change`` is FastICA's own criterion on the returned W: one FastICA step from it moves each row that much."""
    _, Z = _laplace_mixture(seed=5)
    for max_iter in (2, 200):
        res = picard_o(Z, seed=1, fun=fun, max_iter=max_iter, tol=1e-6)
        step = fastica(Z, seed=0, fun=fun, max_iter=1, tol=0.0, w_init=res.W)
        np.testing.assert_allclose(res.row_change, step.row_change, rtol=1e-2, atol=1e-6)
        assert res.converged == (res.change < 1e-6)
    assert res.converged and not picard_o(Z, seed=1, fun=fun, max_iter=2, tol=1e-6).converged


def test_picard_converges_where_fastica_does_not():
    """A sample with more components than networks (near-Gaussian noise components): FastICA keeps rotating them
    for 200 iterations, Picard-O reaches FastICA's fixed point, and both recover the planted networks."""
    data = planted_networks(n_samples=1, n_tokens=100, n_layers=4, d_model=500, n_networks=6, noise=1.0, seed=1)
    X = data.activations[0].reshape(100, -1)
    kw = dict(seed=1, max_iter=200, tol=1e-4, fun="logcosh")
    slow, fast = spatial_ica(X, 24, algorithm="fastica", **kw), spatial_ica(X, 24, algorithm="picard", **kw)
    assert not slow.converged and fast.converged and fast.n_iter < 100
    for res in (slow, fast):
        assert best_match_iou(data.networks, binarize(res.maps.reshape(24, 4, 500))).min() >= 0.9


def test_fastica_cube_stays_finite_on_near_gaussian_components():
    """Under cube, a near-Gaussian row makes W Wᵀ near singular; the decorrelation in float64 keeps W orthogonal."""
    data = planted_networks(n_samples=1, n_tokens=128, n_layers=8, d_model=500, n_networks=2, noise=1.0, seed=0)
    pcs = pca(standardize(data.activations[0].reshape(128, -1)), 64, seed=0)  # 62 noise components (float32 decorrelation: NaN)
    Z, _, _ = whiten(pcs.vt)
    res = fastica(Z, seed=0, fun="cube", max_iter=200, tol=1e-12)
    assert np.isfinite(res.W).all()
    np.testing.assert_allclose(res.W @ res.W.T, np.eye(len(res.W)), atol=1e-4)


def test_fastica_reports_non_convergence():
    Z, _, _ = whiten(np.random.default_rng(0).laplace(size=(4, 2000)))
    res = fastica(Z, seed=0, fun="cube", max_iter=1, tol=1e-12)
    assert not res.converged and res.n_iter == 1 and res.change > 1e-12


def test_map_helpers():
    maps = np.array([[0.0, 1.0, -5.0, 2.0], [3.0, 3.0, 3.0, 3.0]], dtype=np.float32)
    np.testing.assert_array_equal(flip_peak_positive(maps), [-1.0, 1.0])
    z = zscore_rows(maps)
    assert np.isfinite(z).all() and np.all(z[1] == 0)
    np.testing.assert_allclose(z[0].std(), 1, rtol=1e-5)
    np.testing.assert_allclose(best_match_correlation(maps[:1], -maps[::-1]), [1.0], rtol=1e-5)


@pytest.mark.parametrize("algorithm", ["picard", "fastica"])
@pytest.mark.parametrize("fun", ["logcosh", "cube"])
def test_spatial_ica_recovers_planted_networks_and_time_courses(planted, algorithm, fun):
    X = planted.activations[0].reshape(80, -1)
    res = spatial_ica(X, 8, algorithm=algorithm, seed=0, fun=fun, max_iter=500, tol=1e-4)
    assert res.converged
    assert best_match_iou(planted.networks, binarize(res.maps)).min() >= 0.9
    corr = np.abs(np.corrcoef(planted.time_courses[0].T, res.sources)[:4, 4:]).max(axis=1)
    assert corr.min() > 0.95
    assert np.all(res.maps.max(axis=1) >= -res.maps.min(axis=1))  # peak positive


@pytest.mark.parametrize("algorithm", ["picard", "fastica"])
def test_temporal_ica_recovers_planted_mixing_columns(algorithm):
    """Super-Gaussian time courses: temporal ICA of the raw matrix finds them, and its maps (mixing columns) are
    the planted networks."""
    data = planted_networks(n_samples=1, n_tokens=200, n_networks=4, noise=0.3, seed=3, courses="laplace")
    res = temporal_ica(data.activations[0].reshape(200, -1), 6, algorithm=algorithm, seed=0, fun="logcosh",
                       max_iter=500, tol=1e-4)
    assert res.converged and res.maps.shape == (6, 800) and res.sources.shape == (6, 200)
    assert best_match_iou(data.networks, binarize(res.maps.reshape(6, 2, 400))).min() >= 0.9
    assert best_match_correlation(data.time_courses[0].T, res.sources).min() > 0.9
    assert np.all(res.maps.max(axis=1) >= -res.maps.min(axis=1))  # peak positive


@pytest.mark.parametrize("algorithm", ["fastica", "picard"])
def test_temporal_raw_equals_sklearn_fastica_on_raw_data(algorithm):
    """The paper code's first version: ``FastICA(k).fit(X).mixing_.T`` on the raw matrix, each map z-scored. Neurons
    of very different scales make the raw and the standardised analyses disagree, so only the raw one matches."""
    from sklearn.decomposition import FastICA

    data = planted_networks(n_samples=1, n_tokens=200, n_networks=4, noise=0.3, seed=3, courses="laplace")
    X = data.activations[0].reshape(200, -1) * np.random.default_rng(0).lognormal(0, 1, 800).astype(np.float32)
    ref = FastICA(4, fun="logcosh", whiten="unit-variance", tol=1e-8, max_iter=2000, random_state=0).fit(X.astype(np.float64))
    ref = zscore_rows(ref.mixing_.T * flip_peak_positive(ref.mixing_.T)[:, None])
    kw = dict(algorithm=algorithm, fun="logcosh", tol=1e-6, max_iter=2000, stability_runs=1, random_state=0)
    ours = IndividualICA(4, method="temporal_raw", **kw).fit(X)
    assert ours.converged_ and ours.status_ == "ok"
    maps = ours.components_.reshape(4, -1)
    match = (np.abs(maps @ ref.T) / 800).argmax(axis=1)
    assert sorted(match) == [0, 1, 2, 3]
    np.testing.assert_allclose(maps, ref[match], atol=2e-2)  # z-maps (std 1): float32 at FastICA criterion 1e-6
    spatial = IndividualICA(4, method="spatial", **kw).fit(X).components_.reshape(4, -1)
    assert best_match_correlation(spatial, ref).max() < 0.9


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
    ({"n_components": 0}, r"IndividualICA n_components=0 \(decompose.components, --components\) is invalid: input "
                          "should be greater than or equal to 1"),
    ({"tol": 0.0}, r"tol=0.0 \(decompose.tol, --tol\) is invalid: input should be greater than 0"),
    ({"max_iter": -3}, "max_iter=-3"),
    ({"fun": "tanh"}, "fun='tanh' .* input should be 'logcosh', 'cube' or 'exp'"),
    ({"single_token_share": 0}, "single_token_share=0 .* input should be greater than 0"),
    ({"single_token_share": 1.5}, "single_token_share=1.5 .* input should be less than or equal to 1"),
    ({"stability_runs": 0}, "stability_runs=0"),
    ({"n_components": True}, "n_components=True .* input should be a valid integer"),
    ({"svd_solver": "lapack"}, "svd_solver='lapack' is invalid: expected one of auto, full, randomized"),
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


def test_group_canica_defaults_equal_nilearn_recipe_with_cube(planted):
    """CanICA's steps as nilearn takes them (per-sample standardise + SVD, stacked unit rows, randomized group SVD,
    scikit-learn FastICA ``fun="cube"`` restarts, the sparsest kept) give the default GroupCanICA's templates."""
    from sklearn.decomposition import FastICA
    from sklearn.utils.extmath import randomized_svd

    X = planted.activations.reshape(6, 80, -1).astype(np.float64)
    stack = np.vstack([np.linalg.svd((x - x.mean(0)) / x.std(0), full_matrices=False)[2][:4] for x in X])
    _, _, vt = randomized_svd(stack, 4, n_iter=3, random_state=0)
    runs = [FastICA(4, fun="cube", whiten="arbitrary-variance", max_iter=1000, random_state=s).fit_transform(vt.T).T
            for s in range(3)]
    ref = min((zscore_rows(r) for r in runs), key=lambda m: np.abs(m).sum(axis=1).max())
    ours = GroupCanICA(4, n_init=3).fit(list(X.astype(np.float32)))
    assert ours.fun == "cube"
    assert np.all(best_match_correlation(ours.components_.reshape(4, -1), ref) > 0.99)


def test_group_canica_skips_short_samples_and_rejects_impossible_k(planted):
    n_tokens = np.array([80, 80, 4, 80, 80, 80])
    est = GroupCanICA(4, n_init=2).fit(planted.activations, n_tokens=n_tokens)
    assert est.n_samples_used_ == 5 and est.sample_status_[2].startswith("skipped")
    with pytest.raises(InputError, match="--group-components 30 is larger than possible"):
        GroupCanICA(30, sample_components=2, n_init=1).fit(planted.activations)
    with pytest.raises(InputError, match="no sample has enough tokens"):
        GroupCanICA(4).fit(planted.activations, n_tokens=np.full(6, 3))
    with pytest.raises(InputError, match=r"GroupCanICA n_init=0 \(decompose.n_init, --n-init\) is invalid"):
        GroupCanICA(4, n_init=0).fit(planted.activations)


def test_sum_of_squares_is_the_float64_sum_without_a_float64_copy():
    from fnet_dist.decompose.ica import sum_of_squares

    x = np.random.default_rng(0).standard_normal((300, 5000)).astype(np.float32) * 100
    assert sum_of_squares(x) == pytest.approx(float(np.sum(x.astype(np.float64) ** 2)), rel=1e-6)
    assert sum_of_squares(np.zeros((2, 3), np.float32)) == 0.0


def test_estimators_take_the_decompose_section():
    """``from_section`` reads each level's fields of the section (renamed ones included); the defaults are the
    section's, and numpy integers pass the section's strict checks."""
    from fnet_dist.core.config import DecomposeSection

    section = DecomposeSection(components=7, group_components=3, n_init=2, seed=4, max_iter=11, group_max_iter=12,
                               fun="exp", group_fun="logcosh", individual_method="temporal_raw", power_iter=1)
    individual = IndividualICA.from_section(section, random_state=9)
    assert (individual.n_components, individual.method, individual.fun, individual.max_iter,
            individual.random_state) == (7, "temporal_raw", "exp", 11, 9)
    group = GroupCanICA.from_section(section)
    assert (group.n_components, group.n_init, group.fun, group.max_iter, group.power_iter,
            group.random_state) == (3, 2, "logcosh", 12, 1, 4)
    defaults = DecomposeSection()
    assert IndividualICA().get_params() == IndividualICA.from_section(defaults).get_params()
    assert GroupCanICA().get_params() == GroupCanICA.from_section(defaults).get_params()
    IndividualICA(np.int64(3), max_iter=np.int32(50)).fit(np.random.default_rng(0).standard_normal((12, 20)))
