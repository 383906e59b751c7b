"""One evaluation protocol for every backend, on frozen features in NumPy/scikit-learn.

A backend only supplies ``features_fn(images) -> np.ndarray``; everything after the
feature extraction (linear probe, weighted kNN, baselines) is shared, so accuracies from
PyTorch, JAX and TensorFlow runs are comparable number for number.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_C",
    "DEFAULT_MAX_ITER",
    "FeaturesFn",
    "baselines",
    "dataset_arrays",
    "effective_rank",
    "evaluate",
    "extract_features",
    "knn_accuracy",
    "knn_scores",
    "linear_probe",
    "pixel_features",
]

FeaturesFn = Callable[[np.ndarray], np.ndarray]

# The probe runs on standardised features, so one C fits every encoder and dataset here.
# C = 0.1 keeps the problem strongly convex enough that lbfgs settles well inside the
# iteration budget; near-separable features (common for a trained encoder) make a weakly
# regularised problem crawl towards an unbounded optimum instead.
DEFAULT_C = 0.1
# On 4000 x 512, 10-class problems lbfgs converged in 50-100 iterations (around a second
# on two cores); 1000 leaves ample headroom for larger problems before a
# ConvergenceWarning, which is surfaced rather than hidden.
DEFAULT_MAX_ITER = 1000

# Test rows per kNN chunk are chosen so that one chunk's similarity matrix holds at most
# this many entries (float32: 64 MiB), whatever the train size.
_KNN_CHUNK_ENTRIES = 1 << 24


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


def _as_labels(y: np.ndarray, n: int, name: str) -> np.ndarray:
    a = np.asarray(y).reshape(-1)
    if a.shape[0] != n:
        raise ValueError(f"{name} has {a.shape[0]} entries, expected {n}")
    return a


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

    xtr = _as_features(train_feats, "train_feats")
    xte = _as_features(test_feats, "test_feats")
    ytr = _as_labels(train_labels, xtr.shape[0], "train_labels")
    yte = _as_labels(test_labels, xte.shape[0], "test_labels")
    if xtr.shape[1] != xte.shape[1]:
        raise ValueError(f"feature dims differ: train {xtr.shape[1]}, test {xte.shape[1]}")
    classes = np.unique(ytr)
    if classes.shape[0] < 2:
        # LogisticRegression refuses a single class; predicting it is the only option.
        return float(np.mean(yte == classes[0]))
    # float64 throughout: scikit-learn's lbfgs path was faster in float64 than float32
    # here, and the result then does not depend on the backend's feature dtype.
    xtr, xte = xtr.astype(np.float64, copy=False), xte.astype(np.float64, copy=False)
    scaler = StandardScaler().fit(xtr)
    clf = LogisticRegression(C=C, solver="lbfgs", max_iter=max_iter, tol=tol)
    clf.fit(scaler.transform(xtr), ytr)
    return float(np.mean(clf.predict(scaler.transform(xte)) == yte))


def _l2_normalise(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float32, copy=False)
    norm = np.sqrt(np.maximum(np.einsum("ij,ij->i", x, x), 1e-12))
    return x / norm[:, None]


def knn_scores(
    train_feats: np.ndarray,
    train_labels: np.ndarray,
    test_feats: np.ndarray,
    *,
    k: int = 200,
    temperature: float = 0.1,
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
    xtr = _l2_normalise(_as_features(train_feats, "train_feats"))
    xte = _l2_normalise(_as_features(test_feats, "test_feats"))
    ytr = _as_labels(train_labels, xtr.shape[0], "train_labels")
    if xtr.shape[1] != xte.shape[1]:
        raise ValueError(f"feature dims differ: train {xtr.shape[1]}, test {xte.shape[1]}")
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
    k: int = 200,
    temperature: float = 0.1,
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


def effective_rank(features: np.ndarray, eps: float = 1e-7) -> float:
    """RankMe: ``exp(H(p))`` with ``p_k = s_k / sum(s) + eps`` over the singular values
    ``s`` of the (n, d) feature matrix; between 1 and ``min(n, d)``.

    A dimensionally collapsed encoder, whose features span few directions, scores low
    whatever its accuracy; it explains a low cosine-kNN accuracy beside a fair linear
    probe (a probe rescales directions, cosine similarity does not).

    References:
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


def _probe_both(
    train_feats: np.ndarray,
    train_labels: np.ndarray,
    test_feats: np.ndarray,
    test_labels: np.ndarray,
    *,
    k: int,
    temperature: float,
    C: float,
    max_iter: int,
) -> dict[str, float]:
    return {
        "linear_probe_accuracy": linear_probe(
            train_feats, train_labels, test_feats, test_labels, C=C, max_iter=max_iter
        ),
        "knn_accuracy": knn_accuracy(
            train_feats, train_labels, test_feats, test_labels, k=k, temperature=temperature
        ),
    }


def evaluate(
    features_fn: FeaturesFn,
    dataset: Any,
    *,
    batch_size: int = 512,
    k: int = 200,
    temperature: float = 0.1,
    C: float = DEFAULT_C,
    max_iter: int = DEFAULT_MAX_ITER,
) -> dict[str, float]:
    """Linear-probe and kNN accuracy (0..1) of the encoder behind ``features_fn``.

    ``features_fn`` maps a NumPy image batch (as stored in ``dataset``, see
    :func:`dataset_arrays`) to NumPy features; it should run the encoder in eval mode
    without augmentation. Returns ``linear_probe_accuracy`` and ``knn_accuracy``.
    """
    xtr, ytr, xte, yte = dataset_arrays(dataset)
    ftr = extract_features(features_fn, xtr, batch_size=batch_size)
    fte = extract_features(features_fn, xte, batch_size=batch_size)
    return _probe_both(
        ftr, ytr, fte, yte, k=k, temperature=temperature, C=C, max_iter=max_iter
    )


def baselines(
    dataset: Any,
    random_features_fn: FeaturesFn | None = None,
    *,
    batch_size: int = 512,
    k: int = 200,
    temperature: float = 0.1,
    C: float = DEFAULT_C,
    max_iter: int = DEFAULT_MAX_ITER,
) -> dict[str, dict[str, float]]:
    """The same two accuracies for reference points a trained encoder should beat.

    ``raw_pixels``: flattened pixels (uint8 scaled to [0, 1]). ``random_encoder``: the
    features of a randomly initialised encoder of the same architecture, when
    ``random_features_fn`` is given.
    """
    xtr, ytr, xte, yte = dataset_arrays(dataset)
    kw: dict[str, Any] = {"k": k, "temperature": temperature, "C": C, "max_iter": max_iter}
    out: dict[str, dict[str, float]] = {}
    if random_features_fn is not None:
        out["random_encoder"] = _probe_both(
            extract_features(random_features_fn, xtr, batch_size=batch_size), ytr,
            extract_features(random_features_fn, xte, batch_size=batch_size), yte, **kw,
        )
    out["raw_pixels"] = _probe_both(pixel_features(xtr), ytr, pixel_features(xte), yte, **kw)
    return out
