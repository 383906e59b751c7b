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
    "check_bool",
    "check_finite_number",
    "check_positive",
    "compute_dtype",
    "float_matrices",
    "float_matrix",
    "is_real_floating",
    "same_shape",
    "type_name",
]


def backend_of(**arrays: Any) -> ModuleType:
    """The backend of keyword-named arrays; errors name the offending argument."""
    return get_backend(*arrays.values(), names=tuple(arrays))


def type_name(value: Any) -> str:
    """``value``'s type for a message: ``str``, ``numpy.ndarray``, ``torch.Tensor``."""
    kind = type(value)
    where = "" if kind.__module__ == "builtins" else f"{kind.__module__}."
    return f"{where}{kind.__qualname__}"


def shape_of(x: Any) -> tuple[int | None, ...]:
    return tuple(None if d is None else int(d) for d in x.shape)


def is_real_floating(xp: Any, dtype: Any) -> bool:
    """Whether ``dtype`` is a real floating-point dtype of ``xp``'s arrays.

    NumPy's ``isdtype`` raises for the extension floats of ``ml_dtypes`` (``bfloat16``,
    the float8 types: what JAX and TensorFlow hand over as NumPy arrays), which are
    floats all the same; they are recognised by name.
    """
    try:
        return bool(xp.isdtype(dtype, "real floating"))
    except TypeError:
        return getattr(dtype, "name", "").startswith(("bfloat", "float"))


def compute_dtype(xp: Any, dtype: Any) -> Any:
    """float64 and float32 compute as themselves; narrower floats compute in float32."""
    if dtype == xp.float64 or dtype == xp.float32:
        return dtype
    return xp.float32


def _matrix(be: ModuleType, x: Any, name: str, min_rows: int) -> Any:
    """The checks of `float_matrix`, without the cast; returns the compute dtype."""
    shape = shape_of(x)
    if len(shape) != 2:
        raise ValueError(
            f"{name} must be a 2-D array of shape (N, D), got shape {shape}: flatten each "
            f"sample's features into one row, e.g. reshape to ({shape[0] if shape else 'N'}, -1)"
        )
    if not is_real_floating(be.xp, x.dtype):
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
    return compute_dtype(be.xp, x.dtype)


def float_matrix(be: ModuleType, x: Any, name: str, *, min_rows: int = 1) -> Any:
    """Validate a (rows, columns) floating-point array and cast it to its compute dtype.

    float16 and bfloat16 are promoted to float32, the dtype every loss then computes and
    returns in.
    """
    target = _matrix(be, x, name, min_rows)
    return x if x.dtype == target else be.xp.astype(x, target)


def float_matrices(be: ModuleType, *, min_rows: int = 1, **arrays: Any) -> list[Any]:
    """`float_matrix` for several arrays, cast to one common compute dtype.

    The array API's type promotion between floats: float64 with float32 (or a narrower
    float) computes in float64, in every backend, where raw PyTorch and TensorFlow ops
    would refuse to mix them. ``None`` entries (optional arguments) stay ``None``.
    """
    xp = be.xp
    given = {name: x for name, x in arrays.items() if x is not None}
    targets = [_matrix(be, x, name, min_rows) for name, x in given.items()]
    target = xp.float64 if any(t == xp.float64 for t in targets) else xp.float32
    return [
        None if x is None else x if x.dtype == target else xp.astype(x, target)
        for x in arrays.values()
    ]


def same_shape(a: Any, b: Any, name_a: str, name_b: str) -> None:
    """Equal shapes, where an unknown size (``None``, e.g. TensorFlow's batch size under
    ``tf.function``) matches any size: it can only be checked when the graph runs."""
    sa, sb = shape_of(a), shape_of(b)
    compatible = len(sa) == len(sb) and all(
        x is None or y is None or x == y for x, y in zip(sa, sb, strict=True)
    )
    if not compatible:
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


def check_bool(value: Any, name: str) -> bool:
    """A Python or NumPy bool (``np.bool_(True)``, what comparisons of NumPy scalars give),
    as a Python bool; anything else is refused rather than read by truthiness."""
    if isinstance(value, bool):
        return value
    kind = type(value)
    if kind.__module__ == "numpy" and kind.__name__ in ("bool", "bool_"):
        return bool(value)
    raise TypeError(f"{name} must be a bool (True or False), got {type_name(value)} {value!r}")


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
