"""The PyTorch backend of the reference trainer."""

from reference_training.torch.model import (
    ResNet18Cifar,
    SmallCNN,
    build_encoder,
    predictor,
    projector,
)

__all__ = ["ResNet18Cifar", "SmallCNN", "build_encoder", "predictor", "projector"]
