"""The JAX backend of the reference trainer (flax.linen models, optax optimisers)."""

from glf_train.jax.model import (
    ResNet18Cifar,
    SmallCNN,
    build_encoder,
    predictor,
    projector,
)

__all__ = ["ResNet18Cifar", "SmallCNN", "build_encoder", "predictor", "projector"]
