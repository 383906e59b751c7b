"""Keras 3 encoders and heads for the reference trainer, layer for layer as in PyTorch.

Encoders take NCHW float images (the layout the shared augmentation produces) and
return (N, feature_dim) features after global average pooling. They transpose to NHWC
first, the layout TensorFlow's CPU convolutions support. Convolutions pad like PyTorch's
``padding=1`` (one pixel on every side, then a valid convolution), so strided layers
sample the same positions as the PyTorch models; BatchNorm uses PyTorch's defaults
(momentum 0.1, which Keras writes as 0.9; eps 1e-5); initialisers follow PyTorch's too.
One difference remains: Keras's running variance averages the biased batch variance,
PyTorch's the unbiased one (a factor n / (n - 1) in what evaluation uses, n the batch
size times the feature map's area).

Every builder takes ``dtype``: a Keras dtype policy name such as ``"mixed_bfloat16"``
(bfloat16 compute, float32 variables), or None for float32.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from typing import Any

import keras
import numpy as np
from glf_train.architecture import resolve_arch

__all__ = [
    "BasicBlock",
    "ResNet18Cifar",
    "SmallCNN",
    "build_encoder",
    "n_parameters",
    "predictor",
    "projector",
    "synchronized_batch_norm",
]

# PyTorch's BatchNorm momentum 0.1 weights the new batch statistic; Keras's weights the old.
_BN_MOMENTUM = 0.9
_BN_EPS = 1e-5


def _kaiming_fan_out() -> keras.initializers.Initializer:
    # kaiming_normal_(mode="fan_out", nonlinearity="relu"): std = sqrt(2 / (k * k * out)).
    return keras.initializers.VarianceScaling(2.0, "fan_out", "untruncated_normal")


def _conv(out_ch: int, kernel: int, stride: int, dtype: Any, name: str) -> list[keras.Layer]:
    """A bias-free conv padded like PyTorch's ``padding=kernel // 2``.

    Keras's "same" padding puts a stride-2 convolution's extra pixel at the bottom/right
    only, which shifts the sampled positions relative to PyTorch; explicit symmetric
    padding keeps them identical. Stride 1 "same" already pads symmetrically.
    """
    pad = kernel // 2
    layers: list[keras.Layer] = []
    if stride != 1 and pad:
        layers.append(keras.layers.ZeroPadding2D(pad, dtype=dtype, name=f"{name}_pad"))
    layers.append(
        keras.layers.Conv2D(
            out_ch, kernel, strides=stride, padding="same" if stride == 1 else "valid",
            use_bias=False, kernel_initializer=_kaiming_fan_out(), dtype=dtype, name=name,
        )
    )
    return layers


# Set by the trainer while it builds models for several replicas: BatchNorm then takes its
# statistics over the global batch, as one device would.
_SYNC_BATCH_NORM: list[bool] = [False]


@contextlib.contextmanager
def synchronized_batch_norm(enabled: bool = True) -> Iterator[None]:
    """BatchNorm layers built inside take cross-replica statistics under tf.distribute."""
    _SYNC_BATCH_NORM.append(enabled)
    try:
        yield
    finally:
        _SYNC_BATCH_NORM.pop()


def _bn(dtype: Any, name: str, *, affine: bool = True) -> keras.Layer:
    return keras.layers.BatchNormalization(
        momentum=_BN_MOMENTUM, epsilon=_BN_EPS, center=affine, scale=affine, dtype=dtype,
        name=name, synchronized=_SYNC_BATCH_NORM[-1],
    )


def _dense(in_dim: int, out_dim: int, *, bias: bool, dtype: Any, name: str) -> keras.Layer:
    """A Linear with PyTorch's default init: weight and bias ~ U(+-1/sqrt(in_dim))."""
    bound = 1.0 / math.sqrt(in_dim)
    return keras.layers.Dense(
        out_dim,
        use_bias=bias,
        kernel_initializer=keras.initializers.VarianceScaling(1.0 / 3.0, "fan_in", "uniform"),
        bias_initializer=keras.initializers.RandomUniform(-bound, bound),
        dtype=dtype,
        name=name,
    )


def _apply(layers: Sequence[keras.Layer], x: Any) -> Any:
    for layer in layers:
        x = layer(x)
    return x


def _conv_bn_relu(
    x: Any, out_ch: int, stride: int, dtype: Any, name: str
) -> Any:
    x = _apply(_conv(out_ch, 3, stride, dtype, f"{name}_conv"), x)
    x = _bn(dtype, f"{name}_bn")(x)
    return keras.layers.ReLU(dtype=dtype, name=f"{name}_relu")(x)


def _nhwc_input(in_channels: int, dtype: Any) -> tuple[Any, Any]:
    """An NCHW input of any spatial size, and the same tensor moved to NHWC."""
    inputs = keras.Input((in_channels, None, None), name="images_nchw")
    return inputs, keras.layers.Permute((2, 3, 1), dtype=dtype, name="to_nhwc")(inputs)


class SmallCNN(keras.Model):
    """A small conv-BN-ReLU encoder for 8x8 (digits) to ~32x32 images.

    A 3x3 stem with ``width`` channels, then two stages, each a stride-2 conv doubling
    the channels and a stride-1 conv, then global average pooling: the feature dim is
    ``4 * width``. For images of 20 px and more the stem has stride 2 (28 -> 14 -> 7 ->
    4); on 8x8 it keeps full resolution (8 -> 4 -> 2).
    """

    def __init__(
        self,
        in_channels: int = 1,
        image_size: int = 28,
        width: int = 32,
        *,
        stem_stride: int | None = None,
        dtype: Any = None,
        name: str = "small_cnn",
    ) -> None:
        if image_size < 4:
            raise ValueError(f"image_size must be >= 4, got {image_size}")
        if stem_stride is None:
            stem_stride = 2 if image_size >= 20 else 1
        inputs, x = _nhwc_input(in_channels, dtype)
        plan = ((width, stem_stride), (2 * width, 2), (2 * width, 1), (4 * width, 2),
                (4 * width, 1))
        for i, (out_ch, stride) in enumerate(plan):
            x = _conv_bn_relu(x, out_ch, stride, dtype, f"block{i}")
        outputs = keras.layers.GlobalAveragePooling2D(dtype=dtype, name="pool")(x)
        super().__init__(inputs, outputs, name=name)
        self.in_channels = in_channels
        self.image_size = image_size
        self.feature_dim = 4 * width


class BasicBlock(keras.layers.Layer):
    """ResNet basic block on NHWC input: two 3x3 conv-BN with an identity or 1x1-conv-BN
    shortcut."""

    expansion = 1

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        dtype = kwargs.get("dtype")
        self.conv1 = _conv(out_ch, 3, stride, dtype, "conv1")
        self.bn1 = _bn(dtype, "bn1")
        self.conv2 = _conv(out_ch, 3, 1, dtype, "conv2")
        self.bn2 = _bn(dtype, "bn2")
        self.shortcut: list[keras.Layer] = []
        if stride != 1 or in_ch != out_ch:
            self.shortcut = [*_conv(out_ch, 1, stride, dtype, "shortcut_conv"),
                             _bn(dtype, "shortcut_bn")]

    def call(self, x: Any, training: bool | None = None) -> Any:
        """Residual forward pass."""
        out = keras.ops.relu(self.bn1(_apply(self.conv1, x), training=training))
        out = self.bn2(_apply(self.conv2, out), training=training)
        short = x
        if self.shortcut:
            short = self.shortcut[-1](_apply(self.shortcut[:-1], x), training=training)
        return keras.ops.relu(out + short)


class ResNet18Cifar(keras.Model):
    """ResNet-18 for small images, as in SimCLR's and solo-learn's CIFAR setting.

    A 3x3 stride-1 stem without max-pool, BasicBlock stages [2, 2, 2, 2] with 64, 128,
    256, 512 channels, global average pooling; no classifier. 512-d features,
    11,168,832 parameters (BatchNorm statistics not counted), as the PyTorch model.
    """

    feature_dim = 512

    def __init__(
        self, in_channels: int = 3, *, dtype: Any = None, name: str = "resnet18_cifar"
    ) -> None:
        inputs, x = _nhwc_input(in_channels, dtype)
        x = _conv_bn_relu(x, 64, 1, dtype, "stem")
        in_ch = 64
        for stage, (out_ch, stride) in enumerate(((64, 1), (128, 2), (256, 2), (512, 2))):
            x = BasicBlock(in_ch, out_ch, stride, dtype=dtype, name=f"layer{stage + 1}_0")(x)
            x = BasicBlock(out_ch, out_ch, dtype=dtype, name=f"layer{stage + 1}_1")(x)
            in_ch = out_ch
        outputs = keras.layers.GlobalAveragePooling2D(dtype=dtype, name="pool")(x)
        super().__init__(inputs, outputs, name=name)
        self.in_channels = in_channels


def projector(
    in_dim: int,
    hidden_dim: int = 2048,
    out_dim: int = 128,
    n_layers: int = 2,
    *,
    last_bn: bool = False,
    last_bn_affine: bool = False,
    dtype: Any = None,
    name: str = "projector",
) -> keras.Sequential:
    """An MLP head: (n_layers - 1) x [Dense-BN-ReLU], then a Dense to ``out_dim``.

    BYOL and SimCLR use 2 layers; Barlow Twins 3 wide layers with no final BN (its loss
    standardises the batch itself); SimSiam 3 layers with ``last_bn=True``. Denses that
    feed a BN have no bias, since the BN removes it.
    """
    if n_layers < 1:
        raise ValueError(f"n_layers must be >= 1, got {n_layers}")
    layers: list[keras.Layer] = [keras.Input((in_dim,))]
    dim = in_dim
    for i in range(n_layers - 1):
        layers += [
            _dense(dim, hidden_dim, bias=False, dtype=dtype, name=f"linear{i}"),
            _bn(dtype, f"bn{i}"),
            keras.layers.ReLU(dtype=dtype, name=f"relu{i}"),
        ]
        dim = hidden_dim
    layers.append(_dense(dim, out_dim, bias=not last_bn, dtype=dtype, name="out"))
    if last_bn:
        layers.append(_bn(dtype, "out_bn", affine=last_bn_affine))
    return keras.Sequential(layers, name=name)


def predictor(
    dim: int, hidden_dim: int = 4096, *, dtype: Any = None, name: str = "predictor"
) -> keras.Sequential:
    """BYOL's predictor: Dense-BN-ReLU-Dense from ``dim`` back to ``dim``."""
    return keras.Sequential(
        [
            keras.Input((dim,)),
            _dense(dim, hidden_dim, bias=False, dtype=dtype, name="linear0"),
            _bn(dtype, "bn0"),
            keras.layers.ReLU(dtype=dtype, name="relu0"),
            _dense(hidden_dim, dim, bias=True, dtype=dtype, name="out"),
        ],
        name=name,
    )


def build_encoder(
    dataset_name_or_image_shape: str | Sequence[int],
    arch: str = "auto",
    *,
    width: int = 32,
    dtype: Any = None,
) -> tuple[keras.Model, int]:
    """(encoder, feature_dim) for a dataset name or image shape.

    ``arch="auto"`` picks ``small_cnn`` for images below 32 px and single-channel
    images, else ``resnet18`` (:class:`ResNet18Cifar`). ``width`` sizes the small CNN.
    """
    arch, channels, size = resolve_arch(dataset_name_or_image_shape, arch)
    if arch == "small_cnn":
        small = SmallCNN(channels, size, width=width, dtype=dtype)
        return small, small.feature_dim
    resnet = ResNet18Cifar(channels, dtype=dtype)
    return resnet, resnet.feature_dim


def n_parameters(model: keras.Model) -> int:
    """Trainable parameter count, comparable with PyTorch's ``sum(p.numel())``."""
    return int(sum(np.prod(v.shape) for v in model.trainable_weights))
