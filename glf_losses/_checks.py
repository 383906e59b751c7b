"""Input validation whose messages name the argument and say what was expected."""

from __future__ import annotations

import math
import numbers
from types import ModuleType
from typing import Any

import numpy as np

from glf_losses._namespace import get_backend

__all__ = [
    "backend_of",
    "check_finite_number",
    "check_positive",
    "compute_dtype",
    "float_matrix",
    "same_shape",
]


def backend_of(**arrays: Any) -> ModuleType:
    """The backend of keyword-named arrays; errors name the offending argument."""
    return get_backend(*arrays.values(), names=tuple(arrays))


def shape_of(x: Any) -> tuple[int | None, ...]:
    return tuple(None if d is None else int(d) for d in x.shape)


def compute_dtype(xp: Any, dtype: Any) -> Any:
    """float64 and float32 compute as themselves; narrower floats compute in float32."""
    if dtype == xp.float64 or dtype == xp.float32:
        return dtype
    return xp.float32


def float_matrix(be: ModuleType, x: Any, name: str, *, min_rows: int = 1) -> Any:
    """Validate a (rows, columns) floating-point array and cast it to its compute dtype.

    float16 and bfloat16 are promoted to float32, the dtype every loss then computes and
    returns in.
    """
    xp = be.xp
    shape = shape_of(x)
    if len(shape) != 2:
        raise ValueError(
            f"{name} must be a 2-D array of shape (N, D), got shape {shape}: flatten each "
            f"sample's features into one row, e.g. reshape to ({shape[0] if shape else 'N'}, -1)"
        )
    if not xp.isdtype(x.dtype, "real floating"):
        raise TypeError(
            f"{name} must have a real floating-point dtype (float16, bfloat16, float32 or "
            f"float64), got {x.dtype}: cast it to float32 first"
        )
    rows = shape[0]
    if rows is not None and rows < min_rows:
        raise ValueError(
            f"{name} must have at least {min_rows} rows (batch statistics need them), got "
            f"{rows}: use a batch of at least {min_rows} samples"
        )
    target = compute_dtype(xp, x.dtype)
    return x if x.dtype == target else xp.astype(x, target)


def same_shape(a: Any, b: Any, name_a: str, name_b: str) -> None:
    sa, sb = shape_of(a), shape_of(b)
    if sa != sb:
        raise ValueError(
            f"{name_a} and {name_b} must have the same shape, got {sa} and {sb}: pass the "
            "two views of one batch, from the same head"
        )


def check_finite_number(value: Any, name: str) -> float:
    # numbers.Real admits NumPy scalars (np.float32(0.2)) but not bools or arrays.
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        kind = type(value).__name__
        if hasattr(value, "shape") and hasattr(value, "dtype"):
            # An array, or a tracer: jax.jit traces every positional argument it is given.
            raise TypeError(
                f"{name} must be a real number (a Python int or float), got an array or "
                f"traced value ({kind}): "
                f"hyperparameters are fixed when a loss is compiled. Under jax.jit, mark it "
                f"static (jax.jit(loss, static_argnames='{name}')) or call the jitted "
                f"front-ends of glf_losses.backends.jax; for a concrete 0-d array pass "
                f"float({name})"
            )
        raise TypeError(f"{name} must be a real number, got {kind}: pass an int or a float")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}: pass a finite number")
    return float(value)


def check_positive(value: Any, name: str) -> float:
    value = check_finite_number(value, name)
    if value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}: pass a positive number")
    return value


def check_nonnegative(value: Any, name: str) -> float:
    value = check_finite_number(value, name)
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}: pass a number >= 0")
    return value


def check_count(value: Any, name: str, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"{name} must be an int, got {type(value).__name__}: pass a whole number, e.g. "
            f"int({name})"
        )
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}: pass {minimum} or more")
    return int(value)


def check_flag(value: Any, name: str) -> bool:
    """A Python or NumPy bool, as a Python bool; anything else (``"no"``, 0) is refused."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise TypeError(f"{name} must be True or False, got {value!r} ({type(value).__name__})")
