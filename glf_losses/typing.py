"""Type aliases of the public API.

The losses take and return arrays of whichever framework the caller uses, so no single
array class can be named in their signatures; the alias says what a parameter is, and
type checkers accept any array for it.
"""

from __future__ import annotations

from typing import Any, TypeAlias

__all__ = ["Array"]

Array: TypeAlias = Any
"""An array of one supported framework: ``numpy.ndarray``, an array-api-strict array,
``torch.Tensor``, ``jax.Array`` or ``tf.Tensor``.

Every array argument of one call must come from the same framework, and the result is an
array of that framework (a 0-d one for a loss). Shapes are given in each parameter's
description, e.g. ``(N, D)`` for a batch of N rows of dimension D.
"""
