"""One evaluation protocol for every backend, on frozen features in NumPy/scikit-learn.

A backend only supplies ``features_fn(images) -> np.ndarray``; everything after the
feature extraction (linear probe, weighted kNN, whitened kNN, effective rank, baselines)
is shared, so accuracies from PyTorch, JAX and TensorFlow runs are comparable number for
number.

The protocol (:func:`evaluate_features`): a validation split carved from the training
split (see ``glf_train.data.validation_split``) is held out; the probes are fitted on the
other training rows, every choice (the linear probe's ``C``) is made on the validation
split, and the test split is only scored. Every metric is reported on both, the
validation one under a ``val_`` prefix.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "C_GRID",
    "DEFAULT_C",
    "DEFAULT_MAX_ITER",
    "KNN200_K",
    "KNN200_TEMPERATURE",
    "KNN_K",
    "KNN_TEMPERATURE",
    "METRICS",
    "WHITENING_RIDGE",
    "FeaturesFn",
    "LinearProbeResult",
    "baselines",
    "dataset_arrays",
    "effective_rank",
    "evaluate",
    "evaluate_features",
    "extract_features",
    "knn_accuracy",
    "knn_scores",
    "linear_probe",
    "linear_probe_on_validation",
    "pixel_features",
    "protocol",
    "whitened_knn_accuracy",
    "whitening",
]

FeaturesFn = Callable[[np.ndarray], np.ndarray]

# The headline kNN: k = 20 neighbours, votes weighted by exp(cosine / 0.07), the setting
# solo-learn reports (InstDisc's classifier with fewer neighbours).
KNN_K = 20
KNN_TEMPERATURE = 0.07
# The second kNN column: the protocol's earlier headline (k = 200, T = 0.1), kept so that
# it continues the numbers of runs evaluated before the k = 20 column existed.
KNN200_K = 200
KNN200_TEMPERATURE = 0.1

# Whitening adds this fraction of the mean eigenvalue of the train covariance to every
# eigenvalue before the inverse square root, so directions the train features barely
# use are not blown up into the cosine similarity. Relative to the mean eigenvalue, the
# ridge does not depend on the features' scale. Chosen on mnist5k's and digits'
# validation splits: for encoder features any ridge up to 1e-2 gave the same accuracy
# within half a point, while raw pixels (many near-constant border pixels) lost 1.4 to
# 5 points at 1e-3 and below; larger ridges bring it back towards the plain kNN and
# lose the invariance to linear maps of the features that whitening is for.
WHITENING_RIDGE = 1e-2

# The probe runs on standardised features. Without a validation split it uses C = 0.1,
# which keeps the problem strongly convex enough that lbfgs settles well inside the
# iteration budget; near-separable features (common for a trained encoder) make a weakly
# regularised problem crawl towards an unbounded optimum instead.
DEFAULT_C = 0.1
# With a validation split, C is chosen from this grid (ascending: each fit starts from
# the previous, more regularised, solution, which shortens the weakly regularised fits).
C_GRID = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)
# On 4000 x 512, 10-class problems lbfgs converged in 50-100 iterations (around a second
# on two cores); 1000 leaves ample headroom for larger problems before a
# ConvergenceWarning, which is surfaced rather than hidden.
DEFAULT_MAX_ITER = 1000

# The accuracies every evaluation reports, on the test split under these names and on
# the validation split under "val_" + name.
METRICS = (
    "linear_probe_accuracy", "knn_accuracy", "knn200_accuracy", "whitened_knn_accuracy",
)

# Test rows per kNN chunk are chosen so that one chunk's similarity matrix holds at most
# this many entries (float32: 64 MiB), whatever the train size.
_KNN_CHUNK_ENTRIES = 1 << 24


def protocol() -> dict[str, Any]:
    """The settings of the protocol, as ``summary.json`` records them under
    ``evaluation``."""
    return {
        "knn": {"k": KNN_K, "temperature": KNN_TEMPERATURE},
        "knn200": {"k": KNN200_K, "temperature": KNN200_TEMPERATURE},
        "whitened_knn": {"k": KNN_K, "temperature": KNN_TEMPERATURE,
                         "ridge": WHITENING_RIDGE},
        "linear_probe": {"C_grid": list(C_GRID), "C_without_validation": DEFAULT_C},
    }


def _as_features(x: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim < 1 or a.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty (n, d) array, got shape {a.shape}")
    a = a.reshape(a.shape[0], -1)
    if not np.issubdtype(a.dtype, np.floating):
        a = a.astype(np.float32)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains non-finite values (a diverged encoder?)")
    return a


def _feature_pair(train_feats: np.ndarray, test_feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both feature arrays checked (`_as_features`) and of the same width."""
    xtr = _as_features(train_feats, "train_feats")
    xte = _as_features(test_feats, "test_feats")
    if xtr.shape[1] != xte.shape[1]:
        raise ValueError(f"feature dims differ: train {xtr.shape[1]}, test {xte.shape[1]}")
    return xtr, xte


def _as_labels(y: np.ndarray, n: int, name: str) -> np.ndarray:
    a = np.asarray(y).reshape(-1)
    if a.shape[0] != n:
        raise ValueError(f"{name} has {a.shape[0]} entries, expected {n}")
    return a


def _one_blas_thread() -> Any:
    """BLAS limited to one thread. lbfgs runs hundreds of small matrix products, for which
    waking BLAS threads costs more than it saves: on two loaded cores a 3600 x 128 probe
    took 1.8 to 11 s per C with the default threads and 0.13 to 0.24 s with one. One
    thread also makes the floating-point sums the same whatever the machine's core
    count."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def linear_probe(
    train_feats: np.ndarray,
    train_labels: np.ndarray,
    test_feats: np.ndarray,
    test_labels: np.ndarray,
    *,
    C: float = DEFAULT_C,
    max_iter: int = DEFAULT_MAX_ITER,
    tol: float = 1e-4,
) -> float:
    """Test accuracy (0..1) of a multinomial logistic regression on standardised features.

    The scaler is fitted on the train features only. lbfgs with a fixed ``C`` is
    deterministic for given inputs, so the probe adds no seed of its own.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    xtr, xte = _feature_pair(train_feats, test_feats)
    ytr = _as_labels(train_labels, xtr.shape[0], "train_labels")
    yte = _as_labels(test_labels, xte.shape[0], "test_labels")
    classes = np.unique(ytr)
    if classes.shape[0] < 2:
        # LogisticRegression refuses a single class; predicting it is the only option.
        return float(np.mean(yte == classes[0]))
    # float64 throughout: scikit-learn's lbfgs path was faster in float64 than float32
    # here, and the result then does not depend on the backend's feature dtype.
    xtr, xte = xtr.astype(np.float64, copy=False), xte.astype(np.float64, copy=False)
    scaler = StandardScaler().fit(xtr)
    clf = LogisticRegression(C=C, solver="lbfgs", max_iter=max_iter, tol=tol)
    with _one_blas_thread():
        clf.fit(scaler.transform(xtr), ytr)
    return float(np.mean(clf.predict(scaler.transform(xte)) == yte))


@dataclass(frozen=True)
class LinearProbeResult:
    """What :func:`linear_probe_on_validation` found: ``C`` (the chosen one),
    ``val_accuracy`` and ``test_accuracy`` at that ``C``, and ``val_accuracies`` (every
    ``C`` of the grid -> its validation accuracy)."""

    C: float
    val_accuracy: float
    test_accuracy: float
    val_accuracies: dict[float, float]


def linear_probe_on_validation(
    train_feats: np.ndarray,
    train_labels: np.ndarray,
    val_feats: np.ndarray,
    val_labels: np.ndarray,
    test_feats: np.ndarray,
    test_labels: np.ndarray,
    *,
    grid: Sequence[float] = C_GRID,
    max_iter: int = DEFAULT_MAX_ITER,
    tol: float = 1e-4,
) -> LinearProbeResult:
    """The linear probe of :func:`linear_probe` with ``C`` chosen on a validation split.

    One probe per ``C`` of ``grid`` is fitted on the train features (the scaler too);
    the ``C`` with the best validation accuracy wins, the smallest one (the most
    regularised) among equals, and that same probe is scored on the test features. The
    test split plays no part in the choice.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    cs = sorted(float(c) for c in grid)
    if not cs or not all(c > 0 for c in cs):
        raise ValueError(f"grid must hold at least one C > 0, got {list(grid)}")
    xtr = _as_features(train_feats, "train_feats")
    xva = _as_features(val_feats, "val_feats")
    xte = _as_features(test_feats, "test_feats")
    ytr = _as_labels(train_labels, xtr.shape[0], "train_labels")
    yva = _as_labels(val_labels, xva.shape[0], "val_labels")
    yte = _as_labels(test_labels, xte.shape[0], "test_labels")
    for name, x in (("val", xva), ("test", xte)):
        if x.shape[1] != xtr.shape[1]:
            raise ValueError(
                f"feature dims differ: train {xtr.shape[1]}, {name} {x.shape[1]}"
            )
    classes = np.unique(ytr)
    if classes.shape[0] < 2:
        # LogisticRegression refuses a single class; predicting it is the only option.
        return LinearProbeResult(
            C=cs[0], val_accuracy=float(np.mean(yva == classes[0])),
            test_accuracy=float(np.mean(yte == classes[0])),
            val_accuracies=dict.fromkeys(cs, float(np.mean(yva == classes[0]))),
        )
    scaler = StandardScaler().fit(xtr.astype(np.float64, copy=False))
    xtr, xva, xte = (scaler.transform(x.astype(np.float64, copy=False))
                     for x in (xtr, xva, xte))
    # warm_start: each C starts from the solution of the previous (smaller) one.
    clf = LogisticRegression(solver="lbfgs", max_iter=max_iter, tol=tol, warm_start=True)
    val_accuracies: dict[float, float] = {}
    best: tuple[float, float, Any] | None = None
    with _one_blas_thread():
        for c in cs:
            clf.set_params(C=c)
            clf.fit(xtr, ytr)
            acc = float(np.mean(clf.predict(xva) == yva))
            val_accuracies[c] = acc
            if best is None or acc > best[1]:
                best = (c, acc, copy.deepcopy(clf))
    assert best is not None
    chosen_c, val_acc, chosen = best
    return LinearProbeResult(
        C=chosen_c, val_accuracy=val_acc,
        test_accuracy=float(np.mean(chosen.predict(xte) == yte)),
        val_accuracies=val_accuracies,
    )


def _l2_normalise(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float32, copy=False)
    norm = np.sqrt(np.maximum(np.einsum("ij,ij->i", x, x), 1e-12))
    return x / norm[:, None]


def knn_scores(
    train_feats: np.ndarray,
    train_labels: np.ndarray,
    test_feats: np.ndarray,
    *,
    k: int = KNN_K,
    temperature: float = KNN_TEMPERATURE,
    chunk_size: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted-kNN class probabilities, shape (n_test, n_classes), and the class labels.

    Cosine similarity s on L2-normalised features; each of the top-k train neighbours
    (k clipped to the train size) votes for its class with weight exp(s / temperature);
    the votes are normalised per test row. ``chunk_size`` test rows are scored at a time.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    xtr, xte = (_l2_normalise(x) for x in _feature_pair(train_feats, test_feats))
    ytr = _as_labels(train_labels, xtr.shape[0], "train_labels")
    classes, ytr_idx = np.unique(ytr, return_inverse=True)
    n_classes = classes.shape[0]
    n_train, n_test = xtr.shape[0], xte.shape[0]
    k = min(k, n_train)
    if chunk_size is None:
        chunk_size = max(1, _KNN_CHUNK_ENTRIES // n_train)

    probs = np.empty((n_test, n_classes), dtype=np.float64)
    for start in range(0, n_test, chunk_size):
        stop = min(start + chunk_size, n_test)
        sim = xte[start:stop] @ xtr.T
        if k < n_train:
            idx = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        else:
            idx = np.broadcast_to(np.arange(n_train), sim.shape)
        top = np.take_along_axis(sim, idx, axis=1).astype(np.float64)
        # Shifting by the row maximum rescales a row's weights by one constant, which the
        # normalisation removes; it keeps exp() finite for any temperature.
        w = np.exp((top - top.max(axis=1, keepdims=True)) / temperature)
        rows = stop - start
        flat = (np.arange(rows)[:, None] * n_classes + ytr_idx[idx]).reshape(-1)
        votes = np.bincount(flat, weights=w.reshape(-1), minlength=rows * n_classes)
        votes = votes.reshape(rows, n_classes)
        probs[start:stop] = votes / votes.sum(axis=1, keepdims=True)
    return probs, classes


def knn_accuracy(
    train_feats: np.ndarray,
    train_labels: np.ndarray,
    test_feats: np.ndarray,
    test_labels: np.ndarray,
    k: int = KNN_K,
    temperature: float = KNN_TEMPERATURE,
    *,
    chunk_size: int | None = None,
) -> float:
    """Test accuracy (0..1) of the temperature-weighted kNN classifier of InstDisc.

    See :func:`knn_scores`; the prediction is the class with the largest summed weight.
    """
    probs, classes = knn_scores(
        train_feats, train_labels, test_feats, k=k, temperature=temperature,
        chunk_size=chunk_size,
    )
    yte = _as_labels(test_labels, probs.shape[0], "test_labels")
    return float(np.mean(classes[np.argmax(probs, axis=1)] == yte))


def whitening(
    train_feats: np.ndarray, ridge: float = WHITENING_RIDGE
) -> tuple[np.ndarray, np.ndarray]:
    """``(mean, W)`` of PCA whitening fitted on ``train_feats``: ``(x - mean) @ W`` has
    (about) identity covariance on the train rows.

    ``W = V diag(1 / sqrt(lambda + ridge * mean(lambda)))`` over the eigenpairs of the
    train covariance. With more dimensions than train rows the eigenpairs come from the
    rows' Gram matrix instead, and the directions in which the train rows do not vary
    at all are dropped (whitening cannot scale them).
    """
    if ridge < 0:
        raise ValueError(f"ridge must be >= 0, got {ridge}")
    x = _as_features(train_feats, "train_feats").astype(np.float64)
    mean = x.mean(axis=0)
    xc = x - mean
    n, d = xc.shape
    if d <= n:
        lam, vec = np.linalg.eigh(xc.T @ xc / n)
    else:
        lam, u = np.linalg.eigh(xc @ xc.T / n)
        keep = lam > lam.max() * 1e-12 if lam.max() > 0 else np.zeros_like(lam, dtype=bool)
        lam, u = lam[keep], u[:, keep]
        # Unit eigenvectors of the covariance from those of the Gram matrix.
        vec = xc.T @ u / np.sqrt(n * lam)
    lam = np.maximum(lam, 0.0)
    floor = ridge * float(lam.mean()) if lam.size else 0.0
    if floor <= 0:
        # No ridge (or constant features): only directions that vary can be whitened.
        keep = lam > (lam.max() * 1e-12 if lam.size else 0.0)
        lam, vec, floor = lam[keep], vec[:, keep], 0.0
    # Features that do not vary at all leave no direction: W has no columns, and a kNN
    # on the (empty) whitened features scores like a guess instead of failing.
    return mean, vec / np.sqrt(lam + floor)


def whitened_knn_accuracy(
    train_feats: np.ndarray,
    train_labels: np.ndarray,
    test_feats: np.ndarray,
    test_labels: np.ndarray,
    k: int = KNN_K,
    temperature: float = KNN_TEMPERATURE,
    *,
    ridge: float = WHITENING_RIDGE,
) -> float:
    """:func:`knn_accuracy` on features whitened with the train features' statistics
    (:func:`whitening`).

    Cosine similarity on raw features is dominated by the few directions of largest
    variance; after whitening every direction the train features use counts alike, so
    the result no longer depends on how the encoder happens to scale or mix its
    directions: with ``ridge=0`` any invertible linear map of the features gives the
    same neighbours. The default ridge damps the directions with less than about 1% of
    the mean variance (noise, such as near-constant pixels), so it keeps that invariance
    only for maps that leave no useful direction that weak.
    """
    xtr, xte = _feature_pair(train_feats, test_feats)
    mean, w = whitening(xtr, ridge)
    xtr, xte = (xtr - mean) @ w, (xte - mean) @ w
    return knn_accuracy(xtr, train_labels, xte, test_labels, k=k, temperature=temperature)


def effective_rank(features: np.ndarray, eps: float = 1e-7) -> float:
    """The effective rank of Roy & Vetterli, ``exp(H(p))``: the exponential of the
    Shannon entropy of ``p_k = s_k / sum(s)`` over the singular values ``s`` of the
    (n, d) feature matrix (uncentred); between 1 and ``min(n, d)``. ``eps`` is added to
    each ``p_k`` so that ``log`` stays finite, as RankMe does, which applies this rank to
    SSL embeddings.

    A dimensionally collapsed encoder, whose features span few directions, scores low
    whatever its accuracy; it explains a low cosine-kNN accuracy beside a fair linear
    probe (a probe rescales directions, cosine similarity does not).

    References:
      Roy & Vetterli, "The effective rank: a measure of effective dimensionality",
      EUSIPCO 2007.
      Garrido et al., "RankMe: Assessing the Downstream Performance of Pretrained
      Self-Supervised Representations by Their Rank", ICML 2023.
    """
    a = _as_features(features, "features").astype(np.float64, copy=False)
    s = np.linalg.svd(a, compute_uv=False)
    if not s.sum() > 0:
        return 1.0  # all-zero features: one (degenerate) direction at most
    p = s / s.sum() + eps
    return float(np.exp(-np.sum(p * np.log(p))))


def extract_features(
    features_fn: FeaturesFn, images: np.ndarray, *, batch_size: int = 512
) -> np.ndarray:
    """Apply ``features_fn`` to ``images`` in batches; returns an (n, d) NumPy array."""
    images = np.asarray(images)
    n = images.shape[0]
    if n == 0:
        raise ValueError("no images to extract features from")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    parts = []
    for start in range(0, n, batch_size):
        out = np.asarray(features_fn(images[start : start + batch_size]))
        parts.append(out.reshape(out.shape[0], -1))
    feats = np.concatenate(parts, axis=0)
    if feats.shape[0] != n:
        raise ValueError(f"features_fn returned {feats.shape[0]} rows for {n} images")
    return feats


def pixel_features(images: np.ndarray) -> np.ndarray:
    """Raw pixels as features: flattened, uint8 scaled to [0, 1], other dtypes as given."""
    a = np.asarray(images)
    a = a.reshape(a.shape[0], -1)
    if a.dtype == np.uint8:
        return a.astype(np.float32) / np.float32(255.0)
    return a.astype(np.float32, copy=False)


# Accepted spellings of the four arrays of a dataset, tried in order.
_SPLIT_NAMES = (
    ("train_images", "train_labels", "test_images", "test_labels"),
    ("x_train", "y_train", "x_test", "y_test"),
    ("train_x", "train_y", "test_x", "test_y"),
)


def _lookup(obj: Any, name: str) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def _pair(split: Any) -> tuple[np.ndarray, np.ndarray] | None:
    if isinstance(split, Sequence) and len(split) == 2:
        return np.asarray(split[0]), np.asarray(split[1])
    images, labels = _lookup(split, "images"), _lookup(split, "labels")
    if images is not None and labels is not None:
        return np.asarray(images), np.asarray(labels)
    return None


def dataset_arrays(dataset: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train_images, train_labels, test_images, test_labels) from a dataset-like object.

    Accepts a 4-sequence in that order; a mapping or object with one of the name sets
    ``train_images/train_labels/test_images/test_labels``, ``x_train/y_train/...``,
    ``train_x/train_y/...``; or one with ``train`` and ``test`` splits, each an
    (images, labels) pair or an object with ``images`` and ``labels``.
    """
    if isinstance(dataset, Sequence) and not isinstance(dataset, str) and len(dataset) == 4:
        return tuple(np.asarray(a) for a in dataset)  # type: ignore[return-value]
    for names in _SPLIT_NAMES:
        arrays = [_lookup(dataset, n) for n in names]
        if all(a is not None for a in arrays):
            return tuple(np.asarray(a) for a in arrays)  # type: ignore[return-value]
    train, test = _lookup(dataset, "train"), _lookup(dataset, "test")
    if train is not None and test is not None:
        tr, te = _pair(train), _pair(test)
        if tr is not None and te is not None:
            return tr[0], tr[1], te[0], te[1]
    raise TypeError(
        f"cannot find train/test images and labels in a {type(dataset).__name__}; pass "
        "(train_images, train_labels, test_images, test_labels)"
    )


def evaluate_features(
    train_feats: np.ndarray,
    train_labels: np.ndarray,
    test_feats: np.ndarray,
    test_labels: np.ndarray,
    *,
    val_indices: np.ndarray | None = None,
    max_iter: int = DEFAULT_MAX_ITER,
) -> dict[str, float | None]:
    """Every metric of the protocol, from features already extracted.

    ``val_indices`` (rows of the train features, see ``glf_train.data.validation_split``)
    are held out: the probes are fitted on the other train rows, the linear probe's C is
    the one of :data:`C_GRID` with the best validation accuracy, and every metric of
    :data:`METRICS` is reported on the test rows under its name and on the validation
    rows as ``val_`` + name. Also ``linear_probe_C`` and ``effective_rank`` (of the test
    features). Without validation rows the probes are fitted on every train row, C is
    :data:`DEFAULT_C` and the ``val_`` entries are ``None``.
    """
    # One BLAS thread throughout (see _one_blas_thread): on two loaded cores a mnist5k
    # run's kNN, whitening and rank were each several times faster so than with two.
    with _one_blas_thread():
        return _evaluate_features(train_feats, train_labels, test_feats, test_labels,
                                  val_indices, max_iter)


def _evaluate_features(
    train_feats: np.ndarray, train_labels: np.ndarray, test_feats: np.ndarray,
    test_labels: np.ndarray, val_indices: np.ndarray | None, max_iter: int,
) -> dict[str, float | None]:
    xtr, xte = _feature_pair(train_feats, test_feats)
    ytr = _as_labels(train_labels, xtr.shape[0], "train_labels")
    yte = _as_labels(test_labels, xte.shape[0], "test_labels")
    val = np.zeros(xtr.shape[0], dtype=bool)
    if val_indices is not None and len(val_indices):
        idx = np.asarray(val_indices)
        if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
            raise ValueError(f"val_indices must be a 1-d integer array, got {idx.dtype} "
                             f"of shape {idx.shape}")
        if idx.min() < 0 or idx.max() >= xtr.shape[0]:
            raise ValueError(f"val_indices must lie in [0, {xtr.shape[0]}) (train rows)")
        val[idx] = True
        if val.all():
            raise ValueError("val_indices hold every train row: none is left to fit on")
    xfit, yfit = xtr[~val], ytr[~val]
    out: dict[str, float | None] = {}
    splits = {"": (xte, yte)}
    if val.any():
        splits["val_"] = (xtr[val], ytr[val])
        probe = linear_probe_on_validation(
            xfit, yfit, xtr[val], ytr[val], xte, yte, max_iter=max_iter
        )
        out["linear_probe_accuracy"] = probe.test_accuracy
        out["val_linear_probe_accuracy"] = probe.val_accuracy
        out["linear_probe_C"] = probe.C
    else:
        out["linear_probe_accuracy"] = linear_probe(
            xfit, yfit, xte, yte, C=DEFAULT_C, max_iter=max_iter
        )
        out["val_linear_probe_accuracy"] = None
        out["linear_probe_C"] = DEFAULT_C
    # The whitening is fitted once, on the fitted rows, and applied to every split.
    mean, w = whitening(xfit)
    wfit = (xfit - mean) @ w
    for prefix in ("", "val_"):
        if prefix not in splits:
            for name in METRICS[1:]:
                out[prefix + name] = None
            continue
        x, y = splits[prefix]
        out[prefix + "knn_accuracy"] = knn_accuracy(xfit, yfit, x, y)
        out[prefix + "knn200_accuracy"] = knn_accuracy(
            xfit, yfit, x, y, k=KNN200_K, temperature=KNN200_TEMPERATURE
        )
        out[prefix + "whitened_knn_accuracy"] = knn_accuracy(wfit, yfit, (x - mean) @ w, y)
    out["effective_rank"] = effective_rank(xte)
    return out


def evaluate(
    features_fn: FeaturesFn,
    dataset: Any,
    *,
    val_indices: np.ndarray | None = None,
    batch_size: int = 512,
    max_iter: int = DEFAULT_MAX_ITER,
) -> dict[str, float | None]:
    """Every metric of :func:`evaluate_features` for the encoder behind ``features_fn``.

    ``features_fn`` maps a NumPy image batch (as stored in ``dataset``, see
    :func:`dataset_arrays`) to NumPy features; it should run the encoder in eval mode
    without augmentation. ``val_indices`` are the train rows held out for validation.
    """
    xtr, ytr, xte, yte = dataset_arrays(dataset)
    ftr = extract_features(features_fn, xtr, batch_size=batch_size)
    fte = extract_features(features_fn, xte, batch_size=batch_size)
    return evaluate_features(ftr, ytr, fte, yte, val_indices=val_indices, max_iter=max_iter)


def baselines(
    dataset: Any,
    random_features_fn: FeaturesFn | None = None,
    *,
    val_indices: np.ndarray | None = None,
    batch_size: int = 512,
    max_iter: int = DEFAULT_MAX_ITER,
) -> dict[str, dict[str, float | None]]:
    """The same metrics for reference points a trained encoder should beat.

    ``raw_pixels``: flattened pixels (uint8 scaled to [0, 1]). ``random_encoder``: the
    features of a randomly initialised encoder of the same architecture, when
    ``random_features_fn`` is given.
    """
    xtr, ytr, xte, yte = dataset_arrays(dataset)
    kw: dict[str, Any] = {"val_indices": val_indices, "max_iter": max_iter}
    out: dict[str, dict[str, float | None]] = {}
    if random_features_fn is not None:
        out["random_encoder"] = evaluate_features(
            extract_features(random_features_fn, xtr, batch_size=batch_size), ytr,
            extract_features(random_features_fn, xte, batch_size=batch_size), yte, **kw,
        )
    out["raw_pixels"] = evaluate_features(
        pixel_features(xtr), ytr, pixel_features(xte), yte, **kw
    )
    return out
