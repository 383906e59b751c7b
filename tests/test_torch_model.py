"""Shape and size tests for the PyTorch encoders and heads."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from glf_train.architecture import image_shape_chw  # noqa: E402
from glf_train.torch.model import (  # noqa: E402
    ResNet18Cifar,
    SmallCNN,
    build_encoder,
    predictor,
    projector,
)


def _n_params(m) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("size", [8, 28])
def test_small_cnn_shapes(size):
    torch.manual_seed(0)
    model = SmallCNN(1, size)
    out = model(torch.randn(4, 1, size, size))
    assert out.shape == (4, 128) == (4, model.feature_dim)
    assert torch.isfinite(out).all()
    wide = SmallCNN(3, size, width=64)
    assert wide(torch.randn(2, 3, size, size)).shape == (2, 256)


def test_small_cnn_backward_and_eval_single_sample():
    model = SmallCNN(1, 8)
    model(torch.randn(8, 1, 8, 8)).pow(2).mean().backward()
    assert all(p.grad is not None for p in model.parameters())
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(1, 1, 8, 8)).shape == (1, 128)


def test_resnet18_cifar_shape_and_size():
    model = ResNet18Cifar(3)
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 512)
    n = _n_params(model)
    assert 11.1e6 < n < 11.3e6, n
    assert n == 11_168_832  # torchvision's resnet18 with a 3x3 stem, less fc and max-pool
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in model.modules())
    assert not any(isinstance(m, torch.nn.Linear) for m in model.modules())
    stem = model.stem[0]
    assert stem.kernel_size == (3, 3) and stem.stride == (1, 1)


def test_projector_and_predictor_shapes():
    x = torch.randn(6, 128)
    byol = projector(128, 256, 64, n_layers=2)
    assert byol(x).shape == (6, 64)
    assert sum(isinstance(m, torch.nn.Linear) for m in byol) == 2
    bt = projector(128, 512, 512, n_layers=3)
    assert bt(x).shape == (6, 512)
    assert sum(isinstance(m, torch.nn.Linear) for m in bt) == 3
    assert not isinstance(bt[-1], torch.nn.BatchNorm1d)
    simsiam = projector(128, 256, 256, n_layers=3, last_bn=True)
    assert isinstance(simsiam[-1], torch.nn.BatchNorm1d) and not simsiam[-1].affine
    assert simsiam(x).shape == (6, 256)
    single = projector(128, out_dim=32, n_layers=1)
    assert single(x).shape == (6, 32) and len(single) == 1
    pred = predictor(64, 256)
    assert pred(torch.randn(6, 64)).shape == (6, 64)
    with pytest.raises(ValueError):
        projector(128, n_layers=0)


@pytest.mark.parametrize(
    ("spec", "chw", "kind", "dim"),
    [
        ("digits", (1, 8, 8), SmallCNN, 128),
        ("mnist5k", (1, 28, 28), SmallCNN, 128),
        ("MNIST", (1, 28, 28), SmallCNN, 128),
        ("cifar10", (3, 32, 32), ResNet18Cifar, 512),
        ("CIFAR-100", (3, 32, 32), ResNet18Cifar, 512),
        ((28, 28), (1, 28, 28), SmallCNN, 128),
        ((8, 8, 1), (1, 8, 8), SmallCNN, 128),
        ((32, 32, 3), (3, 32, 32), ResNet18Cifar, 512),
        ((3, 32, 32), (3, 32, 32), ResNet18Cifar, 512),
    ],
)
def test_build_encoder_auto(spec, chw, kind, dim):
    assert image_shape_chw(spec) == chw
    encoder, feature_dim = build_encoder(spec)
    assert isinstance(encoder, kind) and feature_dim == dim


def test_build_encoder_explicit_arch():
    encoder, dim = build_encoder("cifar10", arch="small_cnn")
    assert isinstance(encoder, SmallCNN) and dim == 128
    assert encoder(torch.randn(2, 3, 32, 32)).shape == (2, 128)
    encoder, dim = build_encoder("digits", arch="resnet18")
    assert isinstance(encoder, ResNet18Cifar) and encoder.in_channels == 1 and dim == 512
    with pytest.raises(ValueError, match="arch"):
        build_encoder("digits", arch="vit")
    with pytest.raises(ValueError, match="unknown dataset"):
        build_encoder("imagenet")
