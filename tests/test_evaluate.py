"""Tests for the backend-neutral evaluation protocol."""

from __future__ import annotations

import numpy as np
import pytest
from glf_train.evaluate import (
    baselines,
    dataset_arrays,
    effective_rank,
    evaluate,
    extract_features,
    knn_accuracy,
    knn_scores,
    linear_probe,
    pixel_features,
)


def _clusters(n_per_class: int, n_classes: int, dim: int, seed: int, spread: float = 0.3):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_classes, dim)) * 3.0
    labels = np.repeat(np.arange(n_classes), n_per_class)
    feats = centres[labels] + spread * rng.standard_normal((labels.size, dim))
    perm = rng.permutation(labels.size)
    return feats[perm].astype(np.float32), labels[perm]


@pytest.fixture(scope="module")
def separable():
    xtr, ytr = _clusters(60, 5, 32, seed=0)
    rng = np.random.default_rng(1)
    # The test set shares the train set's centres: same seed, fresh noise.
    centres = np.random.default_rng(0).standard_normal((5, 32)) * 3.0
    yte = rng.integers(0, 5, 200)
    xte = (centres[yte] + 0.3 * rng.standard_normal((200, 32))).astype(np.float32)
    return xtr, ytr, xte, yte


def test_linear_probe_separable(separable):
    assert linear_probe(*separable) >= 0.99


def test_knn_separable(separable):
    assert knn_accuracy(*separable, k=20) >= 0.99
    assert knn_accuracy(*separable) >= 0.99  # k=200 < n_train=300


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_random_labels_near_chance():
    rng = np.random.default_rng(2)
    xtr, xte = rng.standard_normal((600, 16)), rng.standard_normal((2000, 16))
    ytr, yte = rng.integers(0, 4, 600), rng.integers(0, 4, 2000)
    assert abs(linear_probe(xtr, ytr, xte, yte) - 0.25) < 0.05
    assert abs(knn_accuracy(xtr, ytr, xte, yte, k=50) - 0.25) < 0.05


def _knn_brute(xtr, ytr, xte, k, t):
    classes = np.unique(ytr)
    out = np.zeros((len(xte), len(classes)))
    ntr = xtr / np.linalg.norm(xtr, axis=1, keepdims=True)
    for i, q in enumerate(xte):
        q = q / np.linalg.norm(q)
        sims = [float(q @ ntr[j]) for j in range(len(xtr))]
        order = sorted(range(len(xtr)), key=lambda j: -sims[j])[:k]
        for j in order:
            out[i, list(classes).index(ytr[j])] += np.exp(sims[j] / t)
        out[i] /= out[i].sum()
    return out, classes


@pytest.mark.parametrize("k", [1, 3, 7, 100])
def test_knn_matches_brute_force(k):
    rng = np.random.default_rng(3)
    xtr, xte = rng.standard_normal((25, 6)), rng.standard_normal((9, 6))
    ytr = rng.choice(np.array([2, 5, 9]), 25)
    want, want_classes = _knn_brute(xtr, ytr, xte, min(k, 25), 0.1)
    got, classes = knn_scores(xtr, ytr, xte, k=k, temperature=0.1, chunk_size=4)
    np.testing.assert_array_equal(classes, want_classes)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    yte = classes[np.argmax(want, axis=1)]
    assert knn_accuracy(xtr, ytr, xte, yte, k=k) == 1.0


def test_knn_chunking_and_tiny_temperature_are_consistent(separable):
    xtr, ytr, xte, _ = separable
    a, _ = knn_scores(xtr, ytr, xte, k=50, chunk_size=7)
    b, _ = knn_scores(xtr, ytr, xte, k=50, chunk_size=10_000)
    np.testing.assert_allclose(a, b, rtol=1e-12)
    c, _ = knn_scores(xtr, ytr, xte, k=50, temperature=1e-4)
    assert np.all(np.isfinite(c))


def test_non_finite_features_are_rejected(separable):
    xtr, ytr, xte, yte = separable
    bad = xtr.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        linear_probe(bad, ytr, xte, yte)
    with pytest.raises(ValueError, match="non-finite"):
        knn_accuracy(bad, ytr, xte, yte)


def test_extract_features_batches():
    images = np.arange(10 * 2 * 3, dtype=np.uint8).reshape(10, 2, 3)
    sizes = []

    def fn(batch):
        sizes.append(len(batch))
        return batch.reshape(len(batch), -1).astype(np.float32) * 2

    feats = extract_features(fn, images, batch_size=4)
    assert sizes == [4, 4, 2]
    np.testing.assert_array_equal(feats, images.reshape(10, -1) * 2.0)


def test_pixel_features_scaling():
    x = np.array([[[0, 255]], [[51, 102]]], dtype=np.uint8)
    np.testing.assert_allclose(pixel_features(x), [[0, 1], [0.2, 0.4]], rtol=1e-6)


def test_dataset_arrays_forms():
    a = [np.zeros((2, 3)), np.zeros(2), np.ones((1, 3)), np.ones(1)]
    for ds in (
        a,
        dict(zip(["train_images", "train_labels", "test_images", "test_labels"], a, strict=True)),
        {"x_train": a[0], "y_train": a[1], "x_test": a[2], "y_test": a[3]},
        {"train": (a[0], a[1]), "test": (a[2], a[3])},
    ):
        got = dataset_arrays(ds)
        for g, w in zip(got, a, strict=True):
            np.testing.assert_array_equal(g, w)
    with pytest.raises(TypeError):
        dataset_arrays({"nothing": 1})


def test_evaluate_and_baselines_on_pixel_clusters():
    # Images whose pixels are the cluster coordinates: every encoder here is "good".
    xtr, ytr = _clusters(40, 3, 16, seed=4)
    xte, yte = _clusters(20, 3, 16, seed=4)
    images_tr, images_te = xtr.reshape(-1, 1, 4, 4), xte.reshape(-1, 1, 4, 4)
    ds = (images_tr, ytr, images_te, yte)

    def features(batch):
        return batch.reshape(len(batch), -1)

    rng = np.random.default_rng(0)
    proj = rng.standard_normal((16, 8)).astype(np.float32)

    def random_features(batch):
        return np.maximum(batch.reshape(len(batch), -1) @ proj, 0)

    res = evaluate(features, ds, batch_size=16, k=10)
    assert set(res) == {"linear_probe_accuracy", "knn_accuracy"}
    assert res["linear_probe_accuracy"] >= 0.99 and res["knn_accuracy"] >= 0.99
    base = baselines(ds, random_features, batch_size=16, k=10)
    assert set(base) == {"random_encoder", "raw_pixels"}
    assert base["raw_pixels"]["knn_accuracy"] >= 0.99
    for v in base.values():
        assert set(v) == {"linear_probe_accuracy", "knn_accuracy"}
        assert all(0.0 <= a <= 1.0 for a in v.values())
    assert set(baselines(ds, k=10)) == {"raw_pixels"}


@pytest.mark.parametrize("r", [1, 3, 10])
def test_effective_rank_counts_equally_strong_directions(r: int) -> None:
    rng = np.random.default_rng(r)
    q, _ = np.linalg.qr(rng.standard_normal((200, 16)))
    basis, _ = np.linalg.qr(rng.standard_normal((16, 16)))
    feats = q[:, :r] @ basis[:r] * 7.0  # r equal singular values, rotated in 16 dims
    assert effective_rank(feats) == pytest.approx(r, rel=1e-4)
    assert effective_rank(feats * 1e-3) == pytest.approx(r, rel=1e-4)


def test_effective_rank_falls_as_features_collapse() -> None:
    rng = np.random.default_rng(0)
    spread = rng.standard_normal((300, 32))
    collapsed = spread * np.geomspace(1.0, 1e-3, 32)
    assert 20 < effective_rank(spread) <= 32
    assert effective_rank(collapsed) < 0.5 * effective_rank(spread)
    assert effective_rank(np.zeros((10, 4))) == 1.0
