"""Framework backends of glf-losses, installed as ``glf_losses.backends``.

Each backend implements `glf_losses._backend.Backend` (the contract the spec
calls, checked by mypy below). The framework backends are packages with the same modules
in each: ``namespace``, ``collectives`` and ``frontends`` (``torch``: ``nn.Module``
losses; ``tensorflow``: Keras layers; ``jax``: jitted functions), the front-ends built
from [`glf_losses.registry`][glf_losses.registry]. ``numpy`` and ``array_api_strict`` are single
modules.
Importing this package imports no framework; [`glf_losses.get_backend`][glf_losses.get_backend]
imports a
backend when it first sees its arrays.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

BACKEND_NAMES = ("numpy", "array_api_strict", "torch", "jax", "tensorflow")

__all__ = ["BACKEND_NAMES"]

if TYPE_CHECKING:
    # mypy checks every backend module against the contract; nothing runs here.
    from glf_losses._backend import Backend

    from . import array_api_strict, jax, numpy, tensorflow, torch

    _CONTRACT: tuple[Backend, ...] = (numpy, array_api_strict, torch, jax, tensorflow)
