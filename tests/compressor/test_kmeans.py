"""Exact 1-D k-means: agrees with or beats scikit-learn from the same init (issue 3, item 4)."""

import numpy as np
import pytest

from dcz.compressor import CompressError
from dcz.compressor.kmeans import assign, cluster_weights, inertia, initial_centroids, kmeans_1d, kmeans_sklearn


@pytest.fixture(scope="module")
def weights():
    rng = np.random.default_rng(1)
    return np.concatenate([rng.normal(-0.05, 0.02, 1800), rng.normal(0.04, 0.03, 1200)]).astype(np.float32)


@pytest.mark.parametrize("init", ["linear", "kmeans++"])  # sklearn is slow to start; the other inits: see below
def test_inertia_equal_or_lower_than_sklearn_from_same_init(weights, init):
    ours = kmeans_1d(weights, 16, init=init, seed=3)
    ref = kmeans_sklearn(weights, 16, init=init, seed=3, tol=0.0)
    assert inertia(weights, *ours) <= inertia(weights, *ref) * (1 + 1e-9)


@pytest.mark.parametrize("init", ["linear", "density", "random", "kmeans++"])
def test_result_is_a_lloyd_fixed_point(weights, init):
    centroids, labels = kmeans_1d(weights, 8, init=init)
    assert np.array_equal(labels, assign(weights, centroids))  # every value at its nearest centroid
    for j in range(centroids.size):  # every centroid the mean of its values
        members = weights[labels == j].astype(np.float64)
        if members.size:
            assert centroids[j] == pytest.approx(members.mean(), abs=1e-9)


def test_few_distinct_values_are_kept_exactly():
    values = np.array([3.0, -1.0, 3.0, 0.5, -1.0])
    centroids, labels = kmeans_1d(values, 4)
    assert np.array_equal(centroids[labels], values)


def test_linear_and_density_inits_follow_the_paper():
    values = np.array([0.0, 0.1, 0.2, 0.3, 10.0])
    assert np.allclose(initial_centroids(values, 3, "linear"), [0.0, 5.0, 10.0])
    assert np.allclose(initial_centroids(values, 3, "density"), [0.0, 0.2, 10.0])


def test_seeded_inits_are_reproducible(weights):
    for init in ("random", "kmeans++"):
        a = initial_centroids(weights, 32, init, seed=7)
        assert np.array_equal(a, initial_centroids(weights, 32, init, seed=7))
        assert np.unique(a).size == 32 and np.all(np.diff(a) > 0)


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.array([]), "no values"),
        (np.array([1.0, np.nan]), "NaN"),
    ],
)
def test_bad_values_raise(bad, match):
    with pytest.raises(CompressError, match=match):
        kmeans_1d(bad, 4)


def test_bad_k_and_init_raise(weights):
    with pytest.raises(CompressError, match="k must be"):
        kmeans_1d(weights, 0)
    with pytest.raises(CompressError, match="init"):
        kmeans_1d(weights, 4, init="best")


def test_cluster_weights_only_uses_surviving_weights(weights):
    w = weights[:1200].reshape(30, 40)
    mask = np.abs(w) > 0.03
    book, labels = cluster_weights(w, mask, bits=3)
    assert book.dtype == np.float32 and book.shape == (8,)
    assert np.all(labels[~mask] == 0)
    kept = book[labels][mask]
    assert np.abs(kept - w[mask]).max() < np.abs(w[mask]).max() / 4  # close to the originals


def test_cluster_weights_per_row_groups(weights):
    w = weights[:1200].reshape(30, 40)
    book, labels = cluster_weights(w, None, bits=2, group_rows=10)
    assert book.shape == (3, 4)
    group = np.arange(30)[:, None] // 10
    shared = book[group, labels]
    err_grouped = np.square(shared - w).sum()
    single_book, single_labels = cluster_weights(w, None, bits=2)
    assert err_grouped <= np.square(single_book[single_labels] - w).sum() + 1e-9


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fast_assign_equals_binary_search_including_ties(dtype):
    rng = np.random.default_rng(5)
    values = rng.laplace(0, 0.05, 50_000).astype(dtype)
    centroids = np.sort(rng.choice(values, 40, replace=False).astype(np.float64))
    midpoints = (centroids[:-1] + centroids[1:]) / 2
    values[:39] = midpoints.astype(dtype)  # values sitting on (or next to) midpoints
    expected = np.searchsorted(midpoints, values.astype(np.float64), side="left")
    assert np.array_equal(assign(values, centroids), expected)
