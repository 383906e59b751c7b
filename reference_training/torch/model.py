"""PyTorch encoders and heads for the reference trainer.

Encoders take NCHW float images and return (N, feature_dim) features after global
average pooling; heads are plain ``nn.Sequential`` stacks.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from glf_train.architecture import resolve_arch
from torch import nn

__all__ = [
    "BasicBlock",
    "ResNet18Cifar",
    "SmallCNN",
    "build_encoder",
    "predictor",
    "projector",
]


def _conv_bn_relu(in_ch: int, out_ch: int, stride: int = 1) -> list[nn.Module]:
    # No conv bias: the BatchNorm that follows cancels it.
    return [
        nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
    ]


def _init_conv_bn(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d) and m.affine:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class SmallCNN(nn.Module):
    """A small conv-BN-ReLU encoder for 8x8 (digits) to ~32x32 images.

    A 3x3 stem with ``width`` channels, then two stages, each a stride-2 conv doubling
    the channels and a stride-1 conv, then global average pooling: the feature dim is
    ``4 * width`` (128 by default). For images of 20 px and more the stem has stride 2
    (28 -> 14 -> 7 -> 4), which keeps a CPU epoch on MNIST short; on 8x8 it keeps full
    resolution (8 -> 4 -> 2).
    """

    def __init__(
        self,
        in_channels: int = 1,
        image_size: int = 28,
        width: int = 32,
        *,
        stem_stride: int | None = None,
    ) -> None:
        super().__init__()
        if image_size < 4:
            raise ValueError(f"image_size must be >= 4, got {image_size}")
        if stem_stride is None:
            stem_stride = 2 if image_size >= 20 else 1
        self.in_channels = in_channels
        self.image_size = image_size
        self.feature_dim = 4 * width
        self.features = nn.Sequential(
            *_conv_bn_relu(in_channels, width, stride=stem_stride),
            *_conv_bn_relu(width, 2 * width, stride=2),
            *_conv_bn_relu(2 * width, 2 * width),
            *_conv_bn_relu(2 * width, 4 * width, stride=2),
            *_conv_bn_relu(4 * width, 4 * width),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        _init_conv_bn(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) images -> (N, feature_dim) features."""
        return self.features(x)


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 conv-BN with an identity or 1x1-conv-BN shortcut."""

    expansion = 1

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual forward pass."""
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNet18Cifar(nn.Module):
    """ResNet-18 for small images, as in SimCLR's and solo-learn's CIFAR setting.

    A 3x3 stride-1 stem without max-pool, BasicBlock stages [2, 2, 2, 2] with 64, 128,
    256, 512 channels, global average pooling; no classifier. 512-d features,
    ~11.2M parameters.
    """

    feature_dim = 512

    def __init__(self, in_channels: int = 3, *, zero_init_residual: bool = False) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.stem = nn.Sequential(*_conv_bn_relu(in_channels, 64))
        stages: list[nn.Module] = []
        in_ch = 64
        for out_ch, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            blocks = BasicBlock(in_ch, out_ch, stride), BasicBlock(out_ch, out_ch)
            stages.append(nn.Sequential(*blocks))
            in_ch = out_ch
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        _init_conv_bn(self)
        if zero_init_residual:
            # Each block then starts as the identity, which some recipes find steadier.
            for m in self.modules():
                if isinstance(m, BasicBlock):
                    nn.init.zeros_(m.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) images -> (N, 512) features."""
        x = self.stem(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.pool(x), 1)


def projector(
    in_dim: int,
    hidden_dim: int = 2048,
    out_dim: int = 128,
    n_layers: int = 2,
    *,
    last_bn: bool = False,
    last_bn_affine: bool = False,
) -> nn.Sequential:
    """An MLP head: (n_layers - 1) x [Linear-BN-ReLU], then a Linear to ``out_dim``.

    BYOL and SimCLR use 2 layers; Barlow Twins 3 wide layers with no final BN (its loss
    standardises the batch itself); SimSiam 3 layers with ``last_bn=True``. Linears that
    feed a BN have no bias, since the BN removes it.
    """
    if n_layers < 1:
        raise ValueError(f"n_layers must be >= 1, got {n_layers}")
    layers: list[nn.Module] = []
    dim = in_dim
    for _ in range(n_layers - 1):
        layers += [nn.Linear(dim, hidden_dim, bias=False), nn.BatchNorm1d(hidden_dim),
                   nn.ReLU(inplace=True)]
        dim = hidden_dim
    layers.append(nn.Linear(dim, out_dim, bias=not last_bn))
    if last_bn:
        layers.append(nn.BatchNorm1d(out_dim, affine=last_bn_affine))
    return nn.Sequential(*layers)


def predictor(dim: int, hidden_dim: int = 4096) -> nn.Sequential:
    """BYOL's predictor: Linear-BN-ReLU-Linear from ``dim`` back to ``dim``."""
    return nn.Sequential(
        nn.Linear(dim, hidden_dim, bias=False),
        nn.BatchNorm1d(hidden_dim),
        nn.ReLU(inplace=True),
        nn.Linear(hidden_dim, dim),
    )


def build_encoder(
    dataset_name_or_image_shape: str | Sequence[int],
    arch: str = "auto",
    *,
    width: int = 32,
) -> tuple[nn.Module, int]:
    """(encoder, feature_dim) for a dataset name or image shape.

    ``arch="auto"`` picks ``small_cnn`` for images below 32 px and single-channel
    images, else ``resnet18`` (:class:`ResNet18Cifar`). ``width`` sizes the small CNN.
    """
    arch, channels, size = resolve_arch(dataset_name_or_image_shape, arch)
    if arch == "small_cnn":
        small = SmallCNN(channels, size, width=width)
        return small, small.feature_dim
    resnet = ResNet18Cifar(channels)
    return resnet, resnet.feature_dim
