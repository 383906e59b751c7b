"""Which encoder a run builds: shared by the PyTorch, JAX and TensorFlow models."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["ARCHS", "DATASET_IMAGE_SHAPES", "image_shape_chw", "resolve_arch"]

ARCHS = ("auto", "small_cnn", "resnet18")

# (channels, height, width) of the datasets the reference trainer knows by name.
DATASET_IMAGE_SHAPES: dict[str, tuple[int, int, int]] = {
    "digits": (1, 8, 8),
    "mnist": (1, 28, 28),
    # Listed beside "mnist" because names match by prefix, the longest first: without it
    # mnist5k-canvas48 would resolve to MNIST's 28x28.
    "mnist5kcanvas48": (1, 48, 48),
    "fashionmnist": (1, 28, 28),
    "cifar10": (3, 32, 32),
    "cifar100": (3, 32, 32),
    "svhn": (3, 32, 32),
    "stl10": (3, 96, 96),
}


def _normalise_name(name: str) -> str:
    return name.lower().replace("-", "").replace("_", "")


def image_shape_chw(dataset_name_or_image_shape: str | Sequence[int]) -> tuple[int, int, int]:
    """(C, H, W) for a dataset name or an image shape.

    Names are matched without case, ``-`` or ``_``, and by prefix for subsets
    (``mnist5k`` -> ``mnist``). A shape may be (H, W), (C, H, W) or (H, W, C); a 3-tuple
    whose last entry is 1, 3 or 4 and whose first is not is read as channels-last.
    """
    spec = dataset_name_or_image_shape
    if isinstance(spec, str):
        key = _normalise_name(spec)
        for name in sorted(DATASET_IMAGE_SHAPES, key=len, reverse=True):
            if key == name or key.startswith(name):
                return DATASET_IMAGE_SHAPES[name]
        raise ValueError(
            f"unknown dataset {spec!r}; known: {', '.join(DATASET_IMAGE_SHAPES)}, "
            "or pass an image shape"
        )
    shape = tuple(int(s) for s in spec)
    if len(shape) == 2:
        return (1, shape[0], shape[1])
    if len(shape) == 3:
        channels = (1, 3, 4)
        if shape[-1] in channels and shape[0] not in channels:
            return (shape[2], shape[0], shape[1])
        return (shape[0], shape[1], shape[2])
    raise ValueError(f"an image shape must be (H, W), (C, H, W) or (H, W, C), got {shape}")


def resolve_arch(
    dataset_name_or_image_shape: str | Sequence[int], arch: str = "auto"
) -> tuple[str, int, int]:
    """``(arch, channels, image_size)``: ``"auto"`` picks ``small_cnn`` for images below
    32 px and single-channel images, else ``resnet18``."""
    c, h, w = image_shape_chw(dataset_name_or_image_shape)
    if arch == "auto":
        arch = "small_cnn" if min(h, w) < 32 or c == 1 else "resnet18"
    if arch not in ARCHS[1:]:
        raise ValueError(f"arch must be 'auto', 'small_cnn' or 'resnet18', got {arch!r}")
    return arch, c, min(h, w)
