"""The TensorFlow (Keras 3) backend of the reference trainer."""

from glf_train.tensorflow.model import (
    ResNet18Cifar,
    SmallCNN,
    build_encoder,
    predictor,
    projector,
)

__all__ = ["ResNet18Cifar", "SmallCNN", "build_encoder", "predictor", "projector"]
