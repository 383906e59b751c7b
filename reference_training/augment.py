"""Self-supervised views: parameters drawn on the host, applied on the device.

Every random choice is drawn with a NumPy ``Generator`` (seeded, reproducible, the same
stream whatever the framework) and turned on the host into a few small matrices.
:func:`apply` then needs only standard array-API functions (``asarray``, ``astype``,
``matmul``, ``reshape``, ``expand_dims``, ``mean``, ``clip``, arithmetic), so one code
path serves NumPy, PyTorch, JAX and TensorFlow, on any device, with no gathers.

Geometry
    Random resized crop, horizontal flip, translation and Gaussian blur are all linear
    and separable, so one view is ``Ry @ img @ Rx^T`` per sample and channel, with
    ``Ry: (B, H_out, H_in)`` and ``Rx: (B, W_out, W_in)``. A row of ``Ry`` holds the
    interpolation weights of one output row: bilinear, widened into a triangle filter
    when the crop box is larger than the output (antialiasing, as PIL does). Samples
    outside the image get zero weight (zero padding); a flip reverses the rows of
    ``Rx``; a translation moves the box; a blur multiplies by a Gaussian matrix.
    The box is continuous (sub-pixel), drawn as torchvision's ``RandomResizedCrop``
    does: area fraction uniform in ``crop_scale``, aspect ratio log-uniform in
    ``crop_ratio``, ten tries, then the whole image.

Colour (RGB only)
    With probability ``jitter_p``: brightness, then contrast, then saturation, then hue,
    always in this order (torchvision shuffles it per call). Then, independently, random
    grayscale with probability ``gray_p``. Brightness, saturation, hue (a rotation of
    the I-Q plane in YIQ space) and grayscale are 3x3 matrices; contrast blends with the
    image's mean gray level, which makes the whole chain ``M @ rgb + K @ mean_rgb`` for
    two per-sample 3x3 matrices ``M`` and ``K``. Values are clipped to ``[0, 1]`` once,
    after the chain, not after each step.

Noise
    Gaussian noise (``noise_std``, in the ``[0, 1]`` scale) is drawn on the host and
    added after the colour step, followed by the clip.

Last comes ``(x - mean) / std`` with the dataset's per-channel statistics.

Costs: the matrices travel to the device at every step; for STL-10 at 96x96 pixels
they weigh 72 KiB per image and view (the image itself: 27 KiB as ``uint8``). Drawing
a view of 512 such images takes about 0.1 s of host time (NumPy releases the GIL, so a
background thread can draw the next batch); 32x32 images take a few milliseconds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

import numpy as np

__all__ = [
    "AugmentConfig",
    "AugmentParams",
    "apply",
    "blur_matrices",
    "center",
    "colour_matrices",
    "draw",
    "local_views",
    "resample_matrices",
    "two_views",
]

# ITU-R BT.601 luma, as used by torchvision's grayscale, and the YIQ transform built on it.
_LUMA = np.array([0.299, 0.587, 0.114])
_YIQ = np.array(
    [
        [0.299, 0.587, 0.114],
        [0.596, -0.274, -0.322],
        [0.211, -0.523, 0.312],
    ]
)
_YIQ_INV = np.linalg.inv(_YIQ)
_EYE3 = np.eye(3)
_TO_GRAY = np.ones((3, 1)) @ _LUMA[None, :]  # every channel becomes the luma
_CROP_TRIES = 10


@dataclass(frozen=True)
class AugmentConfig:
    """What to randomise. The default (``AugmentConfig()``) changes nothing.

    Attributes:
      out_hw: output height and width; ``None`` keeps the input size.
      crop_scale: range of the crop's area as a fraction of the image; ``None`` keeps
        the whole image (still resized to ``out_hw``).
      crop_ratio: range of the crop's width / height, sampled log-uniformly.
      translate: largest shift of the crop box, as a fraction of the input side; the
        uncovered border is zero.
      flip_p: probability of a horizontal flip.
      jitter_p: probability of the colour jitter (all four factors together).
      brightness, contrast, saturation: factors drawn in ``[max(0, 1 - v), 1 + v]``.
      hue: hue rotation drawn in ``[-hue, hue]`` turns (at most 0.5).
      gray_p: probability of converting to grayscale (kept as three channels).
      blur_p: probability of a Gaussian blur.
      blur_sigma: range of the blur's standard deviation, in output pixels.
      noise_std: standard deviation of additive Gaussian noise, ``[0, 1]`` scale.
      antialias: widen the interpolation filter when shrinking, to avoid aliasing.
    """

    out_hw: tuple[int, int] | None = None
    crop_scale: tuple[float, float] | None = None
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    translate: float = 0.0
    flip_p: float = 0.0
    jitter_p: float = 0.0
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1
    gray_p: float = 0.0
    blur_p: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    noise_std: float = 0.0
    antialias: bool = True

    def __post_init__(self) -> None:
        for label in ("flip_p", "jitter_p", "gray_p", "blur_p"):
            p = getattr(self, label)
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{label} must be a probability in [0, 1], got {p}")
        if self.crop_scale is not None:
            lo, hi = self.crop_scale
            if not 0.0 < lo <= hi <= 1.0:
                raise ValueError(
                    f"crop_scale must satisfy 0 < lo <= hi <= 1, got {self.crop_scale}"
                )
        if not 0.0 < self.crop_ratio[0] <= self.crop_ratio[1]:
            raise ValueError(f"crop_ratio must satisfy 0 < lo <= hi, got {self.crop_ratio}")
        if not 0.0 <= self.hue <= 0.5:
            raise ValueError(f"hue must lie in [0, 0.5], got {self.hue}")
        if min(self.brightness, self.contrast, self.saturation, self.translate, self.noise_std) < 0:
            raise ValueError(
                "brightness, contrast, saturation, translate and noise_std must be non-negative"
            )
        if not 0.0 < self.blur_sigma[0] <= self.blur_sigma[1]:
            raise ValueError(f"blur_sigma must satisfy 0 < lo <= hi, got {self.blur_sigma}")
        if self.out_hw is not None and min(self.out_hw) < 1:
            raise ValueError(f"out_hw must be positive, got {self.out_hw}")

    @property
    def uses_colour(self) -> bool:
        """Whether the views need RGB input (colour jitter or grayscale)."""
        return self.jitter_p > 0 or self.gray_p > 0

    @classmethod
    def for_dataset(cls, name: str, out_hw: tuple[int, int] | None = None) -> AugmentConfig:
        """The preset views of a dataset of :mod:`glf_train.data`.

        * digits, mnist5k: mild crops (area 0.7..1, near-square), shifts of about one
          pixel (digits) or three (mnist5k), Gaussian noise 0.05; no flip, no colour.
          A ``-rgb32`` suffix (padded copies) selects the same views at 32x32.
        * mnist5k-canvas48 (a digit at a random place on a 48x48 canvas): crops of area
          0.5..1 (at least 32 px a side, enough to hold a whole 28 px digit) and shifts
          of up to a quarter of the canvas (12 px), noise 0.05; no flip, no colour.
          Within a pair of views the digit moves about as far as it moves between
          images, so where it sits says nothing about which image it is, and the
          aligning term teaches the encoder to ignore it.
        * cifar10, cifar100: SimCLR-style with crop area ``(0.2, 1)``, the usual choice
          for 32x32 images (``(0.08, 1)`` leaves crops of 9x9 pixels), flip 0.5, jitter
          0.8 with (0.4, 0.4, 0.4, 0.1), grayscale 0.2, no blur.
        * stl10: crop area ``(0.08, 1)``, flip 0.5, the same jitter and grayscale, blur
          0.5 with sigma in (0.1, 2.0) pixels; 96x96 out unless ``out_hw`` says otherwise.
        """
        key = name.lower()
        padded = key.endswith("-rgb32")
        if padded:
            key = key.removesuffix("-rgb32")
        if key.startswith("cifar100"):
            key = "cifar100"
        colour: dict[str, Any] = {
            "flip_p": 0.5,
            "jitter_p": 0.8,
            "brightness": 0.4,
            "contrast": 0.4,
            "saturation": 0.4,
            "hue": 0.1,
            "gray_p": 0.2,
        }
        mild_crop: dict[str, Any] = {
            "crop_scale": (0.7, 1.0),
            "crop_ratio": (0.9, 1 / 0.9),
            "noise_std": 0.05,
        }
        if key == "digits":
            config = cls(out_hw=(8, 8), translate=0.125, **mild_crop)
        elif key == "mnist5k":
            config = cls(out_hw=(28, 28), translate=0.1, **mild_crop)
        elif key == "mnist5k-canvas48":
            config = cls(
                out_hw=(48, 48), crop_scale=(0.5, 1.0), crop_ratio=(0.9, 1 / 0.9),
                translate=0.25, noise_std=0.05,
            )
        elif key in ("cifar10", "cifar100"):
            config = cls(out_hw=(32, 32), crop_scale=(0.2, 1.0), **colour)
        elif key == "stl10":
            config = cls(
                out_hw=(96, 96),
                crop_scale=(0.08, 1.0),
                blur_p=0.5,
                **colour,
            )
        else:
            raise ValueError(f"no augmentation preset for dataset {name!r}")
        if padded:
            config = replace(config, out_hw=(32, 32))
        if out_hw is not None:
            config = replace(config, out_hw=(int(out_hw[0]), int(out_hw[1])))
        return config


class AugmentParams(NamedTuple):
    """One batch of drawn views: host NumPy arrays, ``float32`` unless noted.

    ``ry``, ``rx``, ``colour``, ``colour_mean`` and ``noise`` are what :func:`apply`
    uses; the rest records the draw (for logging, tests and debugging).

    Attributes:
      ry: ``(B, H_out, H_in)`` row interpolation (crop, translation, blur).
      rx: ``(B, W_out, W_in)`` column interpolation (crop, translation, flip, blur).
      colour: ``(B, 3, 3)`` matrix ``M`` of the colour chain, or ``None``.
      colour_mean: ``(B, 3, 3)`` matrix ``K`` applied to the mean colour, or ``None``.
      noise: ``(B, C or 1, H_out, W_out)`` additive noise, or ``None``.
      boxes: ``(B, 4)`` float64 crop boxes ``(top, left, height, width)`` in input pixels.
      flipped: ``(B,)`` bool.
      factors: ``(B, 4)`` float64 brightness, contrast, saturation, hue (turns); the
        neutral ``(1, 1, 1, 0)`` where no jitter was drawn.
      gray: ``(B,)`` bool.
      sigma: ``(B,)`` float64 blur sigma in output pixels, 0 where none.
    """

    ry: np.ndarray
    rx: np.ndarray
    colour: np.ndarray | None
    colour_mean: np.ndarray | None
    noise: np.ndarray | None
    boxes: np.ndarray
    flipped: np.ndarray
    factors: np.ndarray
    gray: np.ndarray
    sigma: np.ndarray


# --- host side: matrices ----------------------------------------------------------------


def resample_matrices(
    start: np.ndarray,
    length: np.ndarray,
    in_size: int,
    out_size: int,
    *,
    flip: np.ndarray | None = None,
    antialias: bool = True,
) -> np.ndarray:
    """Interpolation weights ``(B, out_size, in_size)`` (``float32``) sampling a box.

    Output pixel ``i`` reads input coordinate ``start + (i + 0.5) * length / out_size -
    0.5`` (pixel centres, ``align_corners=False``). The box ``[start, start + length)``
    is in input pixels and may leave the image. A sample point inside the image
    (``-0.5 <= y <= in_size - 0.5``) averages image pixels only, its weights renormalised
    over the taps that exist, so crops touching the border keep their brightness (as
    PIL and torch do); a sample point outside is zero padding, fading to zero. With
    ``antialias`` and a box longer than ``out_size`` the bilinear tent is widened by the
    ratio. A whole-image box of the same size gives the identity exactly. ``flip``
    (``(B,)`` bool) reverses the output order.
    """
    start = np.asarray(start, dtype=np.float64).reshape(-1)
    length = np.asarray(length, dtype=np.float64).reshape(-1)
    batch = len(start)
    step = length / out_size
    centre = start[:, None] + (np.arange(out_size) + 0.5) * step[:, None] - 0.5  # (B, out)
    inside = (centre >= -0.5) & (centre <= in_size - 0.5)
    weights = np.zeros((batch, out_size, in_size), dtype=np.float32)
    wide = step > 1.0 if antialias else np.zeros(batch, dtype=bool)

    # Bilinear rows: two taps each, written directly.
    narrow = np.flatnonzero(~wide)
    if narrow.size:
        c = centre[narrow]
        lower = np.floor(c)
        frac = c - lower
        taps = (lower, lower + 1.0)
        tap_w = [1.0 - frac, frac]
        valid = [(t >= 0) & (t <= in_size - 1) for t in taps]
        kept = np.where(valid[0], tap_w[0], 0.0) + np.where(valid[1], tap_w[1], 0.0)
        # Renormalise only rows that lost a tap, so untouched rows stay exact.
        lost = inside[narrow] & ~(valid[0] & valid[1])
        scale = np.where(lost & (kept > 0), 1.0 / np.where(kept > 0, kept, 1.0), 1.0)
        b = np.broadcast_to(narrow[:, None], c.shape)
        i = np.broadcast_to(np.arange(out_size), c.shape)
        for t, w, ok in zip(taps, tap_w, valid, strict=True):
            k = np.clip(t, 0, in_size - 1).astype(np.int64)
            weights[b, i, k] += np.where(ok, w * scale, 0.0).astype(np.float32)

    # Shrinking rows: a tent as wide as the step.
    shrink = np.flatnonzero(wide)
    if shrink.size:
        c = centre[shrink][..., None]  # (S, out, 1)
        support = step[shrink][:, None, None]
        dense = np.maximum(0.0, 1.0 - np.abs(np.arange(in_size) - c) / support)
        # Outside the image: normalise over every integer tap under the tent, as if the
        # image went on with zeros.
        reach = math.ceil(float(support.max())) + 1
        around = np.floor(c) + np.arange(-reach, reach + 1)
        total = np.maximum(0.0, 1.0 - np.abs(around - c) / support).sum(-1, keepdims=True)
        total = np.where(inside[shrink][..., None], dense.sum(-1, keepdims=True), total)
        weights[shrink] = (dense / total).astype(np.float32)

    if flip is not None:
        flip = np.asarray(flip, dtype=bool).reshape(-1)
        weights[flip] = weights[flip, ::-1, :]
    return weights


def blur_matrices(sigma: np.ndarray, size: int) -> np.ndarray:
    """Gaussian blur along one axis as ``(B, size, size)`` ``float32`` matrices.

    The identity where ``sigma`` is 0. Rows are renormalised at the border, so flat
    regions stay flat.
    """
    sigma = np.asarray(sigma, dtype=np.float64).reshape(-1)
    safe = np.where(sigma > 0, sigma, 1.0)[:, None]
    profile = np.exp(-0.5 * (np.arange(-(size - 1), size) / safe) ** 2)  # (B, 2 size - 1)
    offsets = np.arange(size)[None, :] - np.arange(size)[:, None] + size - 1
    kernel = profile[:, offsets]  # Toeplitz: kernel[b, i, j] = profile[b, j - i]
    kernel = kernel / kernel.sum(-1, keepdims=True)
    kernel[sigma <= 0] = np.eye(size)
    return kernel.astype(np.float32)


def colour_matrices(factors: np.ndarray, gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The per-sample colour chain as ``(M, K)``: ``rgb -> M @ rgb + K @ mean_rgb``.

    ``factors`` is ``(B, 4)``: brightness ``b``, contrast ``c``, saturation ``s``, hue
    ``h`` in turns; ``gray`` is ``(B,)`` bool. With ``S``, ``H``, ``G`` the saturation,
    hue and grayscale matrices and ``L = 1 luma^T``, brightness then contrast (blend
    with the mean luma) then saturation then hue then grayscale gives
    ``M = c G H S b`` and ``K = (1 - c) G H S L b``.
    """
    factors = np.asarray(factors, dtype=np.float64)
    b, c, s, h = (factors[:, i, None, None] for i in range(4))
    saturation = s * _EYE3 + (1.0 - s) * _TO_GRAY
    angle = 2.0 * np.pi * factors[:, 3]
    cos, sin = np.cos(angle), np.sin(angle)
    rotation = np.zeros((len(factors), 3, 3))
    rotation[:, 0, 0] = 1.0
    rotation[:, 1, 1], rotation[:, 1, 2] = cos, -sin
    rotation[:, 2, 1], rotation[:, 2, 2] = sin, cos
    hue = np.where(h == 0.0, _EYE3, _YIQ_INV @ rotation @ _YIQ)
    grayscale = np.where(np.asarray(gray, dtype=bool)[:, None, None], _TO_GRAY, _EYE3)
    chain = grayscale @ hue @ saturation
    return c * b * chain, (1.0 - c) * b * (chain @ _TO_GRAY)


def _crop_boxes(
    rng: np.random.Generator,
    batch_size: int,
    in_hw: tuple[int, int],
    scale: tuple[float, float],
    ratio: tuple[float, float],
) -> np.ndarray:
    height, width = in_hw
    area = height * width * rng.uniform(scale[0], scale[1], size=(batch_size, _CROP_TRIES))
    log_ratio = rng.uniform(math.log(ratio[0]), math.log(ratio[1]), (batch_size, _CROP_TRIES))
    aspect = np.exp(log_ratio)
    w = np.sqrt(area * aspect)
    h = np.sqrt(area / aspect)
    fits = (w <= width) & (h <= height)
    first = np.argmax(fits, axis=1)
    rows = np.arange(batch_size)
    h, w = h[rows, first], w[rows, first]
    # No try fitted: the whole image, trimmed to the ratio range (torchvision's fallback).
    in_ratio = width / height
    if in_ratio < ratio[0]:
        fall_w, fall_h = float(width), width / ratio[0]
    elif in_ratio > ratio[1]:
        fall_w, fall_h = height * ratio[1], float(height)
    else:
        fall_w, fall_h = float(width), float(height)
    ok = fits.any(axis=1)
    h = np.where(ok, h, fall_h)
    w = np.where(ok, w, fall_w)
    u = rng.uniform(size=(batch_size, 2))
    top = np.where(ok, u[:, 0] * (height - h), (height - h) / 2)
    left = np.where(ok, u[:, 1] * (width - w), (width - w) / 2)
    return np.stack([top, left, h, w], axis=1)


def draw(
    rng: np.random.Generator,
    batch_size: int,
    in_hw: tuple[int, int],
    out_hw: tuple[int, int] | None,
    config: AugmentConfig,
    *,
    channels: int | None = None,
) -> AugmentParams:
    """Draw one view per image on the host.

    ``out_hw=None`` uses ``config.out_hw``, else the input size. ``channels`` sizes the
    noise (``None``: one noise plane shared by all channels). The random stream is
    consumed in a fixed order, so a seed and a config fix the result.
    """
    in_h, in_w = (int(v) for v in in_hw)
    out_h, out_w = (int(v) for v in (out_hw or config.out_hw or (in_h, in_w)))
    if channels is not None and config.uses_colour and channels != 3:
        raise ValueError(f"colour jitter and grayscale need 3 channels, got {channels}")
    n = int(batch_size)

    if config.crop_scale is None:
        boxes = np.tile(np.array([0.0, 0.0, in_h, in_w]), (n, 1))
    else:
        boxes = _crop_boxes(rng, n, (in_h, in_w), config.crop_scale, config.crop_ratio)
    if config.translate > 0:
        shift = rng.uniform(-config.translate, config.translate, size=(n, 2))
        boxes[:, 0] += shift[:, 0] * in_h
        boxes[:, 1] += shift[:, 1] * in_w
    flipped = rng.uniform(size=n) < config.flip_p if config.flip_p > 0 else np.zeros(n, bool)

    factors = np.tile(np.array([1.0, 1.0, 1.0, 0.0]), (n, 1))
    if config.jitter_p > 0:
        jitter = rng.uniform(size=n) < config.jitter_p
        for i, v in enumerate((config.brightness, config.contrast, config.saturation)):
            drawn = rng.uniform(max(0.0, 1.0 - v), 1.0 + v, size=n)
            factors[:, i] = np.where(jitter, drawn, 1.0)
        drawn = rng.uniform(-config.hue, config.hue, size=n)
        factors[:, 3] = np.where(jitter, drawn, 0.0)
    gray = rng.uniform(size=n) < config.gray_p if config.gray_p > 0 else np.zeros(n, bool)

    sigma = np.zeros(n)
    if config.blur_p > 0:
        blurred = rng.uniform(size=n) < config.blur_p
        drawn = rng.uniform(config.blur_sigma[0], config.blur_sigma[1], size=n)
        sigma = np.where(blurred, drawn, 0.0)

    noise = None
    if config.noise_std > 0:
        planes = 1 if channels is None else channels
        noise = (rng.standard_normal((n, planes, out_h, out_w)) * config.noise_std).astype(
            np.float32
        )

    ry = resample_matrices(boxes[:, 0], boxes[:, 2], in_h, out_h, antialias=config.antialias)
    rx = resample_matrices(
        boxes[:, 1], boxes[:, 3], in_w, out_w, flip=flipped, antialias=config.antialias
    )
    blurred = sigma > 0
    if blurred.any():
        ry[blurred] = blur_matrices(sigma[blurred], out_h) @ ry[blurred]
        rx[blurred] = blur_matrices(sigma[blurred], out_w) @ rx[blurred]

    colour = colour_mean = None
    if config.uses_colour:
        m, k = colour_matrices(factors, gray)
        colour, colour_mean = m.astype(np.float32), k.astype(np.float32)

    return AugmentParams(
        ry=ry,
        rx=rx,
        colour=colour,
        colour_mean=colour_mean,
        noise=noise,
        boxes=boxes,
        flipped=flipped,
        factors=factors,
        gray=gray,
        sigma=sigma,
    )


# --- device side -------------------------------------------------------------------------


def _device_of(x: Any) -> Any:
    sharding = getattr(x, "sharding", None)
    if sharding is not None and len(getattr(sharding, "device_set", ())) > 1:
        # A global array over several devices (JAX data parallelism): host constants stay
        # uncommitted and JAX places them beside it.
        return None
    try:
        from array_api_compat import device

        return device(x)
    except Exception:  # a tracer, or a framework without a device notion: the default
        return None


def _to_unit(xp: Any, images: Any, device: Any) -> tuple[Any, Any]:
    x = xp.asarray(images, device=device) if device is not None else xp.asarray(images)
    if device is None:
        device = _device_of(x)
    if x.dtype == xp.uint8:
        x = xp.astype(x, xp.float32) * (1.0 / 255.0)  # a product rounds alike everywhere
    else:
        x = xp.astype(x, xp.float32)
    return x, device


def _put(xp: Any, array: np.ndarray, device: Any) -> Any:
    if device is None:
        return xp.asarray(array)
    return xp.asarray(array, device=device)


def _normalise(
    xp: Any, x: Any, mean: Sequence[float] | None, std: Sequence[float] | None, device: Any
) -> Any:
    if mean is None and std is None:
        return x
    channels = x.shape[1]
    mean_ = np.zeros(channels) if mean is None else np.asarray(mean, dtype=np.float64)
    std_ = np.ones(channels) if std is None else np.asarray(std, dtype=np.float64)
    if mean_.shape != (channels,) or std_.shape != (channels,):
        raise ValueError(f"mean and std need {channels} entries, one per channel")
    shape = (1, channels, 1, 1)
    m = _put(xp, mean_.astype(np.float32).reshape(shape), device)
    s = _put(xp, std_.astype(np.float32).reshape(shape), device)
    return (x - m) / s


def take(params: AugmentParams, rows: slice) -> AugmentParams:
    """The views of ``rows`` of a drawn batch: what one data-parallel worker applies.

    Drawing for the global batch and taking a worker's rows keeps every image's view the
    same whatever the number of workers.
    """
    return AugmentParams._make(None if a is None else a[rows] for a in params)


def apply(
    xp: Any,
    images: Any,
    params: AugmentParams,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    device: Any = None,
) -> Any:
    """Apply drawn views to a batch, on the device, through the array namespace ``xp``.

    Args:
      xp: an array-API namespace (``array_api_compat.numpy``, ``array_api_compat.torch``,
        ``jax.numpy``, ...).
      images: ``(B, C, H_in, W_in)``, ``uint8`` (scaled by 1/255) or floats in ``[0, 1]``;
        host NumPy or already on the device.
      params: from :func:`draw`, for this batch size and input size.
      mean, std: per-channel normalisation; ``None`` for both returns ``[0, 1]`` values.
      device: where to compute; default: the device of ``xp.asarray(images)``.

    Returns:
      ``float32 (B, C, H_out, W_out)`` in ``xp``'s framework.
    """
    x, device = _to_unit(xp, images, device)
    batch, channels, height, width = x.shape
    if params.ry.shape[0] != batch or params.ry.shape[2] != height or params.rx.shape[2] != width:
        raise ValueError(
            f"params were drawn for {params.ry.shape[0]} images of "
            f"{params.ry.shape[2]}x{params.rx.shape[2]}, got {batch} of {height}x{width}"
        )
    out_h, out_w = params.ry.shape[1], params.rx.shape[1]
    ry = xp.expand_dims(_put(xp, params.ry, device), axis=1)
    rx_t = xp.expand_dims(
        _put(xp, np.ascontiguousarray(np.swapaxes(params.rx, 1, 2)), device), axis=1
    )
    x = xp.matmul(xp.matmul(ry, x), rx_t)  # (B, C, H_out, W_out)
    if params.colour is not None and params.colour_mean is not None:
        if channels != 3:
            raise ValueError(f"colour parameters need 3 channels, got {channels}")
        flat = xp.reshape(x, (batch, 3, out_h * out_w))
        mean_rgb = xp.mean(flat, axis=2, keepdims=True)
        m = _put(xp, params.colour, device)
        k = _put(xp, params.colour_mean, device)
        flat = xp.matmul(m, flat) + xp.matmul(k, mean_rgb)
        x = xp.reshape(flat, (batch, 3, out_h, out_w))
    if params.noise is not None:
        x = x + _put(xp, params.noise, device)
    x = xp.clip(x, 0.0, 1.0)
    return _normalise(xp, x, mean, std, device)


def two_views(
    xp: Any,
    images: Any,
    rng: np.random.Generator,
    config: AugmentConfig | tuple[AugmentConfig, AugmentConfig],
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    device: Any = None,
    *,
    global_size: int | None = None,
    rows: slice = slice(None),
) -> tuple[Any, Any]:
    """Two independent views of a batch; a pair of configs gives asymmetric views (BYOL).

    Under data parallelism ``images`` are this worker's ``rows`` of a global batch of
    ``global_size``: the parameters are drawn for the global batch and sliced, so the views
    do not depend on the number of workers.
    """
    first, second = config if isinstance(config, tuple) else (config, config)
    batch, channels, height, width = images.shape
    views = []
    for cfg in (first, second):
        params = draw(rng, global_size or batch, (height, width), None, cfg, channels=channels)
        views.append(apply(xp, images, take(params, rows), mean, std, device))
    return views[0], views[1]


def local_views(
    xp: Any,
    images: Any,
    rng: np.random.Generator,
    config: AugmentConfig,
    count: int,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    device: Any = None,
    *,
    global_size: int | None = None,
    rows: slice = slice(None),
) -> tuple[Any, ...]:
    """``count`` independent local crops of a batch (multi-crop), each a view drawn with
    ``config`` (small ``crop_scale``, small ``out_hw``).

    Drawn from ``rng`` after the two views, so that the two views of a step stay what they
    are without local crops; ``count = 0`` draws nothing. As `two_views`, the parameters
    are drawn for the global batch and sliced to this worker's ``rows``.
    """
    batch, channels, height, width = images.shape
    crops = []
    for _ in range(count):
        params = draw(rng, global_size or batch, (height, width), None, config,
                      channels=channels)
        crops.append(apply(xp, images, take(params, rows), mean, std, device))
    return tuple(crops)


def center(
    xp: Any,
    images: Any,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    out_hw: tuple[int, int] | None = None,
    device: Any = None,
) -> Any:
    """Evaluation input: the whole image, optionally resized, then normalised.

    Without ``out_hw`` (or with the input size) this is only the scaling and the
    normalisation; no matrix is built.
    """
    x, device = _to_unit(xp, images, device)
    batch, _, height, width = x.shape
    if out_hw is not None and tuple(out_hw) != (height, width):
        params = draw(np.random.default_rng(0), batch, (height, width), out_hw, AugmentConfig())
        return apply(xp, x, params, mean, std, device)
    return _normalise(xp, x, mean, std, device)
