"""Tests for the backend-neutral evaluation protocol."""

from __future__ import annotations

import numpy as np
import pytest
from glf_train.evaluate import (
    C_GRID,
    DEFAULT_C,
    METRICS,
    baselines,
    dataset_arrays,
    effective_rank,
    evaluate,
    evaluate_features,
    extract_features,
    knn_accuracy,
    knn_scores,
    linear_probe,
    linear_probe_on_validation,
    pixel_features,
    whitened_knn_accuracy,
    whitening,
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
    assert knn_accuracy(*separable) >= 0.99  # k = 20
    assert knn_accuracy(*separable, k=200) >= 0.99  # k=200 < n_train=300


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


def _all_keys(prefix: str = "") -> set[str]:
    names = {*METRICS, *("val_" + m for m in METRICS), "linear_probe_C", "effective_rank"}
    return {prefix + n for n in names}


def test_evaluate_and_baselines_on_pixel_clusters():
    # Images whose pixels are the cluster coordinates: every encoder here is "good".
    xtr, ytr = _clusters(40, 3, 16, seed=4)
    xte, yte = _clusters(20, 3, 16, seed=4)
    images_tr, images_te = xtr.reshape(-1, 1, 4, 4), xte.reshape(-1, 1, 4, 4)
    ds = (images_tr, ytr, images_te, yte)
    val = np.arange(0, 120, 6)

    def features(batch):
        return batch.reshape(len(batch), -1)

    rng = np.random.default_rng(0)
    proj = rng.standard_normal((16, 8)).astype(np.float32)

    def random_features(batch):
        return np.maximum(batch.reshape(len(batch), -1) @ proj, 0)

    res = evaluate(features, ds, batch_size=16, val_indices=val)
    assert set(res) == _all_keys()
    for name in ("linear_probe_accuracy", "knn_accuracy", "knn200_accuracy"):
        assert res[name] >= 0.99 and res["val_" + name] >= 0.99
    # (Whitening gives the 14 noise directions the weight of the 2 that separate the
    # clusters, so its kNN is no better than a guess here.)
    assert 0.0 <= res["whitened_knn_accuracy"] <= 1.0
    assert res["linear_probe_C"] in C_GRID
    base = baselines(ds, random_features, batch_size=16, val_indices=val)
    assert set(base) == {"random_encoder", "raw_pixels"}
    assert base["raw_pixels"]["knn_accuracy"] >= 0.99
    for v in base.values():
        assert set(v) == _all_keys()
        assert all(0.0 <= v[m] <= 1.0 for m in METRICS)  # type: ignore[operator]
    assert set(baselines(ds)) == {"raw_pixels"}
    # Without a validation split: every train row fits the probes, C is the default.
    plain = evaluate(features, ds, batch_size=16)
    assert set(plain) == _all_keys()
    assert plain["linear_probe_C"] == DEFAULT_C
    assert all(plain["val_" + m] is None for m in METRICS)


def test_knn_k20_t007_matches_a_hand_computation():
    # Query (1, 0). Class 0: 5 rows at cosine 1; class 1: 15 rows at cosine 0.86; class 2:
    # 3 rows at cosine 0.5, the 21st to 23rd neighbours. Norms vary: only angles count.
    def at(cosine: float, count: int, scale: float) -> np.ndarray:
        row = np.array([cosine, np.sqrt(1.0 - cosine**2)]) * scale
        return np.tile(row, (count, 1))

    xtr = np.concatenate([at(1.0, 5, 3.0), at(0.86, 15, 0.5), at(0.5, 3, 7.0)])
    ytr = np.repeat([0, 1, 2], [5, 15, 3])
    query = np.array([[2.0, 0.0]])
    # Top 20: the 5 + 15 rows of classes 0 and 1, each weighted exp(s / 0.07).
    v0, v1 = 5 * np.exp(1.0 / 0.07), 15 * np.exp(0.86 / 0.07)
    want = np.array([[v0, v1, 0.0]]) / (v0 + v1)  # = [5, 15 e^-2, 0] / (5 + 15 e^-2)
    probs, classes = knn_scores(xtr, ytr, query)  # the defaults: k = 20, T = 0.07
    np.testing.assert_array_equal(classes, [0, 1, 2])
    np.testing.assert_allclose(probs, want, rtol=1e-6)
    assert probs[0, 0] == pytest.approx(5 / (5 + 15 * np.exp(-2.0)), rel=1e-6)
    # The temperature decides: a plain majority of the 20 (or T = 0.2) picks class 1.
    assert knn_accuracy(xtr, ytr, query, [0]) == 1.0
    assert knn_accuracy(xtr, ytr, query, [1], temperature=0.2) == 1.0
    # and k does: with 23 neighbours class 2 gets a (small) share of the vote.
    assert knn_scores(xtr, ytr, query, k=23)[0][0, 2] > 0


def _whitening_case():
    rng = np.random.default_rng(0)
    centres = np.array([[3.0, 0.0], [0.0, 3.0], [-3.0, -3.0]])

    def draw(n):
        y = rng.integers(0, 3, n)
        x = np.c_[centres[y] + rng.standard_normal((n, 2)), 0.3 * rng.standard_normal((n, 4))]
        return x, y

    (xtr, ytr), (xte, yte) = draw(300), draw(200)
    stretch = np.diag([1.0, 1.0, 30.0, 30.0, 30.0, 30.0])  # the four noise directions
    rotation, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    mixing = stretch @ rng.standard_normal((6, 6))  # any invertible map (cond ~1600)
    return xtr, ytr, xte, yte, stretch @ rotation, mixing


def test_whitened_knn_is_invariant_to_invertible_linear_maps():
    xtr, ytr, xte, yte, stretched, mixing = _whitening_case()
    plain = knn_accuracy(xtr, ytr, xte, yte)
    whitened = whitened_knn_accuracy(xtr, ytr, xte, yte)
    assert plain >= 0.95 and whitened >= 0.95
    for a in (stretched, mixing):
        # The plain cosine kNN is not invariant: the stretched noise swamps the classes.
        assert knn_accuracy(xtr @ a, ytr, xte @ a, yte) < plain - 0.25
        # Without a ridge, whitening leaves the same cosine similarities for any
        # invertible map (the whitened features of x @ a are those of x times an
        # orthogonal matrix), hence the same kNN.
        m1, w1 = whitening(xtr, ridge=0.0)
        m2, w2 = whitening(xtr @ a, ridge=0.0)
        z1, z2 = (xte - m1) @ w1, (xte @ a - m2) @ w2
        np.testing.assert_allclose(z1 @ z1.T, z2 @ z2.T, atol=1e-8 * np.abs(z1 @ z1.T).max())
        assert whitened_knn_accuracy(xtr @ a, ytr, xte @ a, yte, ridge=0.0) == \
            whitened_knn_accuracy(xtr, ytr, xte, yte, ridge=0.0)
    np.testing.assert_allclose(np.cov(((xtr - m1) @ w1).T, bias=True), np.eye(6), atol=1e-9)
    # The default ridge damps directions with under ~1% of the mean variance, so it
    # keeps the invariance for a map that leaves no useful direction that weak (cond 30).
    assert whitened_knn_accuracy(xtr @ stretched, ytr, xte @ stretched, yte) == whitened


def test_whitening_with_more_dimensions_than_rows_uses_their_span():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((20, 50))
    mean, w = whitening(x, ridge=0.0)
    assert w.shape == (50, 19)  # 20 centred rows span 19 directions
    np.testing.assert_allclose(np.cov(((x - mean) @ w).T, bias=True), np.eye(19), atol=1e-8)
    mean, w = whitening(np.ones((5, 3)))
    assert w.shape == (3, 0)  # constant features: nothing to whiten, and no error
    assert 0.0 <= whitened_knn_accuracy(np.ones((5, 3)), [0, 1, 0, 1, 0], np.ones((2, 3)),
                                        [0, 1]) <= 1.0


def _imbalanced(n0: int, n1: int, seed: int):
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], [n0, n1])
    x = rng.standard_normal((n0 + n1, 5))
    x[:, 0] += 1.5 * (2 * y - 1)
    return x, y


def test_linear_probe_c_is_the_best_on_validation():
    # Train rows 95% class 0, validation rows balanced: a strongly regularised probe
    # leans on the intercept and calls everything class 0, so C matters.
    xtr, ytr = _imbalanced(380, 20, 1)
    xva, yva = _imbalanced(100, 100, 2)
    xte, yte = _imbalanced(100, 100, 3)
    got = linear_probe_on_validation(xtr, ytr, xva, yva, xte, yte)
    accs = got.val_accuracies
    assert sorted(accs) == sorted(C_GRID)
    assert accs[min(C_GRID)] == 0.5 and accs[DEFAULT_C] < accs[got.C] - 0.1
    best = max(accs.values())
    assert got.C == min(c for c in C_GRID if accs[c] == best)  # the smallest of the best
    assert got.val_accuracy == best
    assert got.test_accuracy == linear_probe(xtr, ytr, xte, yte, C=got.C)
    # The test labels play no part in the choice.
    flipped = linear_probe_on_validation(xtr, ytr, xva, yva, xte, 1 - yte)
    assert flipped.C == got.C and flipped.test_accuracy == pytest.approx(1 - got.test_accuracy)
    with pytest.raises(ValueError, match="grid must hold"):
        linear_probe_on_validation(xtr, ytr, xva, yva, xte, yte, grid=[0.0, 1.0])


def test_validation_rows_are_not_fitted_on():
    # Random features and labels: a row in the kNN's bank finds itself (cosine 1 beside
    # about 0 for the others), so a validation row fitted on would be "predicted" right.
    rng = np.random.default_rng(5)
    xtr, ytr = rng.standard_normal((400, 64)), rng.integers(0, 4, 400)
    xte, yte = rng.standard_normal((50, 64)), rng.integers(0, 4, 50)
    val = np.arange(0, 400, 4)
    res = evaluate_features(xtr, ytr, xte, yte, val_indices=val)
    assert res["val_knn_accuracy"] < 0.45  # chance: 0.25
    assert knn_accuracy(xtr, ytr, xtr[val], ytr[val]) == 1.0  # what leaking would give
    with pytest.raises(ValueError, match="val_indices must lie in"):
        evaluate_features(xtr, ytr, xte, yte, val_indices=np.array([400]))
    with pytest.raises(ValueError, match="none is left to fit on"):
        evaluate_features(xtr, ytr, xte, yte, val_indices=np.arange(400))


@pytest.mark.parametrize("r", [1, 3, 10])
def test_effective_rank_counts_equally_strong_directions(r: int) -> None:
    # Roy & Vetterli: r equal singular values give an entropy of log r, a rank of r.
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
