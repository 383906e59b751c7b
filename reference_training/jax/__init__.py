"""The JAX backend of the reference trainer (flax.linen models, optax optimisers)."""

from reference_training.jax.model import (
    ResNet18Cifar,
    SmallCNN,
    build_encoder,
    predictor,
    projector,
)

__all__ = ["ResNet18Cifar", "SmallCNN", "build_encoder", "predictor", "projector"]
