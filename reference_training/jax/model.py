"""Flax encoders and heads for the reference trainer: the PyTorch backend's networks.

Written with ``flax.linen`` rather than ``nnx``: linen modules are stateless
descriptions and their variables (``params``, ``batch_stats``) are plain pytrees, so
the trainer's whole step is one pure function that ``jax.jit`` compiles once, donating
the old state's buffers, and that ``flax.serialization`` writes as is.

Encoders take NCHW float images (the layout the shared augmentation produces) and return
``(N, feature_dim)`` features after global average pooling; they transpose to NHWC,
flax's convolution layout, on entry. ``train=True`` normalises with batch statistics and
updates the running averages (apply with ``mutable=["batch_stats"]``); ``train=False``
uses the running averages.

What matches PyTorch, and why it needs saying:

- convolutions pad one pixel on every side, like torch's ``padding=1`` (flax's
  ``"SAME"`` pads a stride-2 convolution on one side only, which shifts the grid);
- BatchNorm has ``epsilon=1e-5`` and ``momentum=0.9`` (flax weighs the old running value,
  torch's ``momentum=0.1`` the new batch);
- initialisers: Kaiming-normal with fan-out for convolutions, Kaiming-uniform with
  ``a=sqrt(5)`` for linear weights and ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` for their
  biases, BatchNorm scale 1 and bias 0.

One difference remains: flax updates the running variance with the biased batch
variance, torch with the unbiased one, a relative ``1 / (n - 1)`` with ``n`` the number
of values per channel (batch x height x width for the encoder: at least 256 for the
small CNN on digits with a batch of 64).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
from glf_train.architecture import resolve_arch

__all__ = [
    "BasicBlock",
    "MLPHead",
    "ResNet18Cifar",
    "SmallCNN",
    "build_encoder",
    "predictor",
    "projector",
]

Initializer = Callable[..., Any]

_PAD_1 = ((1, 1), (1, 1))
# torch's kaiming_normal_(mode="fan_out", nonlinearity="relu"): std = sqrt(2 / fan_out).
_CONV_INIT = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
# torch's nn.Linear default: kaiming_uniform_(a=sqrt(5)), i.e. bound = 1 / sqrt(fan_in).
_LINEAR_INIT = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def _linear_bias_init(fan_in: int) -> Initializer:
    bound = 1.0 / math.sqrt(fan_in)

    def init(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def _conv(features: int, kernel: int, stride: int, dtype: Any, name: str) -> nn.Conv:
    # No bias: the BatchNorm that follows cancels it.
    return nn.Conv(
        features, (kernel, kernel), strides=(stride, stride),
        padding=_PAD_1 if kernel == 3 else "VALID", use_bias=False,
        kernel_init=_CONV_INIT, dtype=dtype, name=name,
    )


def _batch_norm(train: bool, dtype: Any, name: str, **kwargs: Any) -> nn.BatchNorm:
    # Two-pass variance: the one-pass E[x^2] - E[x]^2 loses digits on large activations.
    return nn.BatchNorm(
        use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=dtype,
        use_fast_variance=False, name=name, **kwargs,
    )


def _nhwc(x: jax.Array, in_channels: int) -> jax.Array:
    if x.ndim != 4 or x.shape[1] != in_channels:
        raise ValueError(f"expected (N, {in_channels}, H, W) images, got shape {x.shape}")
    return jnp.transpose(x, (0, 2, 3, 1))


class SmallCNN(nn.Module):
    """A small conv-BN-ReLU encoder for 8x8 (digits) to ~32x32 images.

    A 3x3 stem with ``width`` channels, then two stages, each a stride-2 conv doubling
    the channels and a stride-1 conv, then global average pooling: the feature dim is
    ``4 * width``. The stem has stride 2 for images of 20 px and more, else 1.
    """

    in_channels: int = 1
    image_size: int = 28
    width: int = 32
    stem_stride: int | None = None
    dtype: Any = None

    def __post_init__(self) -> None:
        if self.image_size < 4:
            raise ValueError(f"image_size must be >= 4, got {self.image_size}")
        super().__post_init__()

    @property
    def feature_dim(self) -> int:
        return 4 * self.width

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """(N, C, H, W) images -> (N, feature_dim) features."""
        stem = self.stem_stride if self.stem_stride is not None else (
            2 if self.image_size >= 20 else 1
        )
        w = self.width
        x = _nhwc(x, self.in_channels)
        layers = ((w, stem), (2 * w, 2), (2 * w, 1), (4 * w, 2), (4 * w, 1))
        for i, (channels, stride) in enumerate(layers):
            x = _conv(channels, 3, stride, self.dtype, f"conv{i}")(x)
            x = nn.relu(_batch_norm(train, self.dtype, f"bn{i}")(x))
        return jnp.mean(x, axis=(1, 2))


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 conv-BN with an identity or 1x1-conv-BN shortcut.

    Works on NHWC activations (it sits inside :class:`ResNet18Cifar`).
    """

    out_ch: int
    stride: int = 1
    zero_init_last_bn: bool = False
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """Residual forward pass."""
        out = _conv(self.out_ch, 3, self.stride, self.dtype, "conv1")(x)
        out = nn.relu(_batch_norm(train, self.dtype, "bn1")(out))
        out = _conv(self.out_ch, 3, 1, self.dtype, "conv2")(out)
        scale_init = nn.initializers.zeros if self.zero_init_last_bn else nn.initializers.ones
        out = _batch_norm(train, self.dtype, "bn2", scale_init=scale_init)(out)
        shortcut = x
        if self.stride != 1 or x.shape[-1] != self.out_ch:
            shortcut = _conv(self.out_ch, 1, self.stride, self.dtype, "shortcut_conv")(x)
            shortcut = _batch_norm(train, self.dtype, "shortcut_bn")(shortcut)
        return nn.relu(out + shortcut)


class ResNet18Cifar(nn.Module):
    """ResNet-18 for small images, as in SimCLR's and solo-learn's CIFAR setting.

    A 3x3 stride-1 stem without max-pool, BasicBlock stages [2, 2, 2, 2] with 64, 128,
    256, 512 channels, global average pooling; no classifier. 512-d features,
    11,168,832 parameters for RGB input, as the PyTorch model.
    """

    in_channels: int = 3
    zero_init_residual: bool = False
    dtype: Any = None

    feature_dim: ClassVar[int] = 512

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """(N, C, H, W) images -> (N, 512) features."""
        x = _nhwc(x, self.in_channels)
        x = _conv(64, 3, 1, self.dtype, "stem_conv")(x)
        x = nn.relu(_batch_norm(train, self.dtype, "stem_bn")(x))
        for stage, (channels, stride) in enumerate(((64, 1), (128, 2), (256, 2), (512, 2))):
            for block, block_stride in enumerate((stride, 1)):
                x = BasicBlock(
                    channels, block_stride, self.zero_init_residual, self.dtype,
                    name=f"layer{stage + 1}_{block}",
                )(x, train)
        return jnp.mean(x, axis=(1, 2))


class MLPHead(nn.Module):
    """(n_layers - 1) x [Linear-BN-ReLU], then a Linear to ``out_dim`` (optionally a BN).

    Linears that feed a BN have no bias, since the BN removes it.
    """

    in_dim: int
    hidden_dim: int
    out_dim: int
    n_layers: int = 2
    last_bn: bool = False
    last_bn_affine: bool = False
    dtype: Any = None

    def __post_init__(self) -> None:
        if self.n_layers < 1:
            raise ValueError(f"n_layers must be >= 1, got {self.n_layers}")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """(N, in_dim) -> (N, out_dim)."""
        dim = self.in_dim
        for i in range(self.n_layers - 1):
            x = nn.Dense(
                self.hidden_dim, use_bias=False, kernel_init=_LINEAR_INIT, dtype=self.dtype,
                name=f"linear{i}",
            )(x)
            x = nn.relu(_batch_norm(train, self.dtype, f"bn{i}")(x))
            dim = self.hidden_dim
        last = self.n_layers - 1
        x = nn.Dense(
            self.out_dim, use_bias=not self.last_bn, kernel_init=_LINEAR_INIT,
            bias_init=_linear_bias_init(dim), dtype=self.dtype, name=f"linear{last}",
        )(x)
        if self.last_bn:
            affine = self.last_bn_affine
            x = _batch_norm(train, self.dtype, f"bn{last}", use_scale=affine, use_bias=affine)(x)
        return x


def projector(
    in_dim: int,
    hidden_dim: int = 2048,
    out_dim: int = 128,
    n_layers: int = 2,
    *,
    last_bn: bool = False,
    last_bn_affine: bool = False,
    dtype: Any = None,
) -> MLPHead:
    """An MLP head: (n_layers - 1) x [Linear-BN-ReLU], then a Linear to ``out_dim``.

    BYOL and SimCLR use 2 layers; Barlow Twins 3 wide layers with no final BN (its loss
    standardises the batch itself); SimSiam 3 layers with ``last_bn=True``.
    """
    if n_layers < 1:
        raise ValueError(f"n_layers must be >= 1, got {n_layers}")
    return MLPHead(in_dim, hidden_dim, out_dim, n_layers, last_bn, last_bn_affine, dtype)


def predictor(dim: int, hidden_dim: int = 4096, *, dtype: Any = None) -> MLPHead:
    """BYOL's predictor: Linear-BN-ReLU-Linear from ``dim`` back to ``dim``."""
    return MLPHead(dim, hidden_dim, dim, 2, dtype=dtype)


def build_encoder(
    dataset_name_or_image_shape: str | Sequence[int],
    arch: str = "auto",
    *,
    width: int = 32,
    dtype: Any = None,
) -> tuple[nn.Module, int]:
    """(encoder, feature_dim) for a dataset name or image shape.

    ``arch="auto"`` picks ``small_cnn`` for images below 32 px and single-channel
    images, else ``resnet18`` (:class:`ResNet18Cifar`). ``width`` sizes the small CNN;
    ``dtype`` is the computation dtype (parameters stay float32).
    """
    arch, channels, size = resolve_arch(dataset_name_or_image_shape, arch)
    if arch == "small_cnn":
        small = SmallCNN(channels, size, width, dtype=dtype)
        return small, small.feature_dim
    return ResNet18Cifar(channels, dtype=dtype), ResNet18Cifar.feature_dim
