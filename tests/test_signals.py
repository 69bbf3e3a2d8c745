"""The shared signal math (fnet_dist.core.signals) on planted data; the decomposition's transform, the anatomy's
and the explain page's source signals are one computation."""
from __future__ import annotations

import numpy as np
import pytest

from fnet_dist.core.signals import centre, peak_token_share, source_signals, standardize, token_sources
from fnet_dist.decompose.ica import best_match_correlation
from fnet_dist.decompose.individual import IndividualICA


def planted(seed=0, n_tokens=200, n_neurons=300, k=3):
    """Laplace sources over tokens mixed by sparse, disjoint maps over neurons, plus a little noise."""
    rng = np.random.default_rng(seed)
    maps = np.zeros((k, n_neurons))
    for c in range(k):
        maps[c, c * 40:(c + 1) * 40] = 3.0 + rng.random(40)
    sources = rng.laplace(size=(n_tokens, k))
    return sources, maps, (sources @ maps + 0.05 * rng.standard_normal((n_tokens, n_neurons))).astype(np.float32)


def test_standardize_constant_columns_are_zero_not_nan():
    X = np.random.default_rng(0).standard_normal((30, 5)).astype(np.float32)
    X[:, 2] = 7.0
    for dtype in (np.float32, np.float64):
        out = standardize(X, dtype)
        assert out.dtype == dtype and np.isfinite(out).all() and np.all(out[:, 2] == 0)
        np.testing.assert_allclose(out[:, [0, 1, 3, 4]].std(axis=0), 1, atol=1e-5)
        np.testing.assert_allclose(out.mean(axis=0), 0, atol=1e-6)
    np.testing.assert_allclose(centre(X).mean(axis=0), 0, atol=1e-6)


def test_source_signals_recover_planted_mixing():
    rng = np.random.default_rng(1)
    sources, maps = rng.standard_normal((20, 3)), rng.standard_normal((3, 50))
    np.testing.assert_allclose(source_signals(sources @ maps, maps), sources, atol=1e-10)
    assert source_signals(sources.astype(np.float32) @ maps.astype(np.float32), maps.astype(np.float32)).dtype == np.float32


def test_peak_token_share():
    np.testing.assert_allclose(peak_token_share(np.array([[0.0, 2.0, 0.0], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])),
                               [1.0, 1 / 3, 0.0])


@pytest.mark.parametrize("method", ["spatial", "temporal_raw"])
def test_transform_and_the_explain_math_give_the_same_sources(method):
    sources, maps, X = planted()
    est = IndividualICA(3, method=method, stability_runs=1, random_state=0).fit(X)
    fitted = est.components_[: est.n_components_].reshape(est.n_components_, -1)
    _, _, new = planted(seed=1)
    via_transform = est.transform(new)
    np.testing.assert_array_equal(via_transform, token_sources(new, fitted, method))  # one code path
    # the anatomy and the explain page evaluate the same regression in float64
    np.testing.assert_allclose(via_transform, token_sources(new, fitted, method, dtype=np.float64), rtol=1e-3, atol=1e-3)
    # and they recover the planted sources of the fitted tokens, up to permutation and sign
    assert np.all(best_match_correlation(sources.T, est.transform(X).T) > 0.95)
