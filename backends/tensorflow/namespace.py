"""TensorFlow's array namespace (ours) and the operations the array API lacks.

TensorFlow has no array-API namespace of its own (and ``array_api_compat`` has none for
it), so `xp` is ours: a thin layer over raw ``tf`` ops with the standard's names,
keywords and Python-scalar promotion, covering what [`glf_losses`][glf_losses] uses. Works under
``GradientTape``, ``tf.function`` and XLA (``jit_compile=True``).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from glf_losses._lib import plain_matmul, python_loop, unfused

__all__ = [
    "batch_standardize",
    "device",
    "dynamic_dim",
    "fill_per_row",
    "fori_loop",
    "fuse",
    "log_softmax",
    "logsumexp",
    "lower_triangular_inverse",
    "matmul",
    "name",
    "rsqrt",
    "select_kth",
    "square",
    "stop_gradient",
    "to_numpy",
    "xp",
]

name = "tensorflow"

Axis = int | tuple[int, ...] | None

# --- helpers of the namespace -----------------------------------------------------------


def _is_python_scalar(x: Any) -> bool:
    return isinstance(x, (bool, int, float, complex))


def _promote(x1: Any, x2: Any) -> tuple[Any, Any]:
    """Give a Python scalar operand the other operand's dtype (array-API promotion).

    Raw tf ops never promote between dtypes, and only some convert a Python scalar to the
    other operand's dtype (by op and argument position); converting it here makes the
    standard's rule hold for every op, so float64 and float16 never meet a float32 constant.
    """
    if _is_python_scalar(x1) and not _is_python_scalar(x2):
        x1 = tf.convert_to_tensor(x1, dtype=x2.dtype)
    elif _is_python_scalar(x2) and not _is_python_scalar(x1):
        x2 = tf.convert_to_tensor(x2, dtype=x1.dtype)
    return x1, x2


def _binary(op: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """``op`` with Python scalars promoted to the other operand's dtype."""

    def apply(x1: Any, x2: Any, /) -> Any:
        return op(*_promote(x1, x2))

    apply.__name__ = op.__name__
    apply.__doc__ = f"Elementwise ``tf.math.{op.__name__}``; Python scalars take the other dtype."
    return apply


def _placed(device: Any) -> contextlib.AbstractContextManager[Any]:
    # Symbolic tensors have no device (""); placement is then the graph's business.
    return tf.device(device) if device else contextlib.nullcontext()


_KINDS: dict[str, Callable[[tf.dtypes.DType], bool]] = {
    "bool": lambda d: d.is_bool,
    "signed integer": lambda d: d.is_integer and not d.is_unsigned,
    "unsigned integer": lambda d: d.is_integer and d.is_unsigned,
    "integral": lambda d: d.is_integer,
    "real floating": lambda d: d.is_floating,
    "complex floating": lambda d: d.is_complex,
    "numeric": lambda d: d.is_integer or d.is_floating or d.is_complex,
}


def _dtype_is(dtype: tf.dtypes.DType, kind: Any) -> bool:
    if isinstance(kind, str):
        if kind not in _KINDS:
            raise ValueError(f"unknown dtype kind {kind!r}; expected one of {sorted(_KINDS)}")
        return _KINDS[kind](dtype)
    return dtype == tf.as_dtype(kind)


def _arg_reduce(op: Callable[..., Any], x: Any, axis: int | None, keepdims: bool) -> Any:
    """argmax/argmin with the standard's ``axis=None`` (flattened) and ``keepdims``."""
    if axis is None:
        out = op(tf.reshape(x, [-1]), axis=0)
        return tf.reshape(out, [1] * x.shape.rank) if keepdims else out
    out = op(x, axis=axis)
    return tf.expand_dims(out, axis) if keepdims else out


class _Linalg:
    """The ``linalg`` extension, as far as the losses need it."""

    @staticmethod
    def cholesky(x: Any, /, *, upper: bool = False) -> Any:
        """Cholesky factor of each symmetric positive-definite matrix in the last two axes."""
        factor = tf.linalg.cholesky(x)
        return tf.linalg.matrix_transpose(factor) if upper else factor

    @staticmethod
    def inv(x: Any, /) -> Any:
        """Inverse of each square matrix in the last two axes."""
        return tf.linalg.inv(x)

    @staticmethod
    def svdvals(x: Any, /) -> Any:
        """Singular values of each matrix in the last two axes, in descending order."""
        return tf.linalg.svd(x, compute_uv=False)


class _DTypesAndConstants:
    """The namespace's dtypes and constants.

    A base class rather than names in `_ArrayNamespace`'s body, where ``bool`` would
    shadow the builtin in every annotation of that body.
    """

    bool = tf.bool
    int8, int16, int32, int64, uint8 = tf.int8, tf.int16, tf.int32, tf.int64, tf.uint8
    float16, bfloat16, float32, float64 = tf.float16, tf.bfloat16, tf.float32, tf.float64
    e, pi, inf, nan, newaxis = math.e, math.pi, math.inf, math.nan, None


class _ArrayNamespace(_DTypesAndConstants):
    """Array-API (2023.12) names over ``tf`` ops, for ``tf.Tensor`` and ``tf.Variable``.

    Covers what the losses use, with the standard's keywords; ``device`` is honoured where
    given. Operators (``+``, ``@``, ``x[:, None]``, comparisons) are used directly on
    tensors: TF2 already gives them the standard's meaning for these cases.
    """

    __array_api_version__ = "2023.12"

    linalg = _Linalg()

    # --- dtypes -------------------------------------------------------------------------

    @staticmethod
    def isdtype(dtype: Any, kind: Any) -> bool:
        """Whether ``dtype`` is of ``kind``: a kind name, a dtype, or a tuple of those."""
        kinds = kind if isinstance(kind, tuple) else (kind,)
        return any(_dtype_is(tf.as_dtype(dtype), k) for k in kinds)

    @staticmethod
    def astype(x: Any, dtype: Any, /, *, copy: bool = True, device: Any = None) -> Any:
        """``x`` cast to ``dtype``."""
        return tf.cast(x, dtype)

    # --- creation -----------------------------------------------------------------------

    @staticmethod
    def asarray(obj: Any, /, *, dtype: Any = None, device: Any = None, copy: Any = None) -> Any:
        """A tensor from a tensor, variable, NumPy array, Python scalar or nested list.

        Non-tensors go through ``tf.constant`` with the target dtype directly, so that
        Python floats asked for as float64 are not rounded through float32 first.
        """
        with _placed(device):
            if tf.is_tensor(obj):
                out = tf.convert_to_tensor(obj)
                return out if dtype is None or out.dtype == dtype else tf.cast(out, dtype)
            return tf.constant(obj, dtype=dtype)

    @staticmethod
    def arange(
        start: Any, /, stop: Any = None, step: Any = 1, *, dtype: Any = None,
        device: Any = None,
    ) -> Any:
        """``[start, stop)`` by ``step``; ``arange(n)`` is ``[0, n)``."""
        if stop is None:
            start, stop = 0, start
        with _placed(device):
            return tf.range(start, stop, step, dtype=dtype)

    @staticmethod
    def zeros(shape: Any, *, dtype: Any = None, device: Any = None) -> Any:
        """Zeros of ``shape`` (float32 unless ``dtype``)."""
        with _placed(device):
            return tf.zeros(shape, dtype=dtype or tf.float32)

    @staticmethod
    def ones(shape: Any, *, dtype: Any = None, device: Any = None) -> Any:
        """Ones of ``shape`` (float32 unless ``dtype``)."""
        with _placed(device):
            return tf.ones(shape, dtype=dtype or tf.float32)

    @staticmethod
    def ones_like(x: Any, /, *, dtype: Any = None, device: Any = None) -> Any:
        """Ones of ``x``'s shape (known at run time too) and dtype unless ``dtype``."""
        with _placed(device):
            return tf.ones_like(x, dtype=dtype)

    @staticmethod
    def eye(
        n_rows: int, n_cols: int | None = None, /, *, k: int = 0, dtype: Any = None,
        device: Any = None,
    ) -> Any:
        """Ones on diagonal ``k`` of an (n_rows, n_cols) matrix (``tf.eye`` has no ``k``)."""
        with _placed(device):
            rows = tf.range(n_rows)[:, None]
            cols = tf.range(n_rows if n_cols is None else n_cols)[None, :]
            return tf.cast(rows + k == cols, dtype or tf.float32)

    # --- manipulation -------------------------------------------------------------------

    @staticmethod
    def reshape(x: Any, /, shape: Any, *, copy: Any = None) -> Any:
        """``x`` with a new shape (one entry may be -1)."""
        return tf.reshape(x, shape)

    @staticmethod
    def concat(arrays: Sequence[Any], /, *, axis: int | None = 0) -> Any:
        """Join along ``axis``; ``axis=None`` joins the flattened arrays."""
        if axis is None:
            return tf.concat([tf.reshape(a, [-1]) for a in arrays], axis=0)
        return tf.concat(list(arrays), axis=axis)

    @staticmethod
    def stack(arrays: Sequence[Any], /, *, axis: int = 0) -> Any:
        """Join along a new ``axis``."""
        return tf.stack(list(arrays), axis=axis)

    @staticmethod
    def unstack(x: Any, /, *, axis: int = 0) -> tuple[Any, ...]:
        """The slices of ``x`` along ``axis``, as a tuple."""
        return tuple(tf.unstack(x, axis=axis))

    @staticmethod
    def squeeze(x: Any, /, axis: int | tuple[int, ...]) -> Any:
        """Remove the size-1 ``axis`` (the standard requires it to be named)."""
        return tf.squeeze(x, axis=axis)

    @staticmethod
    def expand_dims(x: Any, /, *, axis: int = 0) -> Any:
        """Insert a size-1 axis at ``axis``."""
        return tf.expand_dims(x, axis)

    @staticmethod
    def matrix_transpose(x: Any, /) -> Any:
        """Swap the last two axes."""
        return tf.linalg.matrix_transpose(x)

    @staticmethod
    def matmul(x1: Any, x2: Any, /) -> Any:
        """Matrix product with the standard's 1-D rules (``tf.matmul`` wants rank >= 2)."""
        v1, v2 = x1.shape.rank == 1, x2.shape.rank == 1
        out = tf.linalg.matmul(x1[None, :] if v1 else x1, x2[:, None] if v2 else x2)
        squeezed = [a for a, vector in ((-2, v1), (-1, v2)) if vector]
        return tf.squeeze(out, axis=squeezed) if squeezed else out

    # --- elementwise --------------------------------------------------------------------

    exp = staticmethod(tf.math.exp)
    log = staticmethod(tf.math.log)
    log1p = staticmethod(tf.math.log1p)
    sqrt = staticmethod(tf.math.sqrt)

    logical_and = staticmethod(_binary(tf.math.logical_and))

    @staticmethod
    def clip(x: Any, /, min: Any = None, max: Any = None) -> Any:
        """``x`` clamped to ``[min, max]``; either bound may be None, a scalar or an array.

        At a tie the gradient goes to ``x`` (TF's maximum/minimum gradient), as in torch.
        """
        if min is not None:
            x = tf.math.maximum(*_promote(x, min))
        if max is not None:
            x = tf.math.minimum(*_promote(x, max))
        return x

    @staticmethod
    def where(condition: Any, x1: Any, x2: Any, /) -> Any:
        """``x1`` where ``condition`` else ``x2``, broadcast; scalars take the other dtype."""
        return tf.where(condition, *_promote(x1, x2))

    # --- reductions ---------------------------------------------------------------------

    @staticmethod
    def sum(x: Any, /, *, axis: Axis = None, dtype: Any = None, keepdims: bool = False) -> Any:
        """Sum over ``axis`` (all axes when None), in ``dtype`` if given."""
        return tf.reduce_sum(x if dtype is None else tf.cast(x, dtype), axis, keepdims)

    @staticmethod
    def mean(x: Any, /, *, axis: Axis = None, keepdims: bool = False) -> Any:
        """Mean over ``axis`` (all axes when None)."""
        return tf.reduce_mean(x, axis, keepdims)

    @staticmethod
    def max(x: Any, /, *, axis: Axis = None, keepdims: bool = False) -> Any:
        """Maximum over ``axis`` (all axes when None)."""
        return tf.reduce_max(x, axis, keepdims)

    @staticmethod
    def min(x: Any, /, *, axis: Axis = None, keepdims: bool = False) -> Any:
        """Minimum over ``axis`` (all axes when None)."""
        return tf.reduce_min(x, axis, keepdims)

    @staticmethod
    def argmax(x: Any, /, *, axis: int | None = None, keepdims: bool = False) -> Any:
        """Index (int64) of the first maximum; over the flattened array when ``axis=None``."""
        return _arg_reduce(tf.math.argmax, x, axis, keepdims)

    # --- sorting and indexing -----------------------------------------------------------

    @staticmethod
    def sort(x: Any, /, *, axis: int = -1, descending: bool = False, stable: bool = True) -> Any:
        """Sorted values along ``axis`` (stability is moot for values)."""
        return tf.sort(x, axis=axis, direction="DESCENDING" if descending else "ASCENDING")

    @staticmethod
    def take(x: Any, indices: Any, /, *, axis: int | None = None) -> Any:
        """Entries of ``x`` at ``indices`` along ``axis``; ``axis=None`` flattens ``x``."""
        if axis is None:
            return tf.gather(tf.reshape(x, [-1]), indices)
        return tf.gather(x, indices, axis=axis)


xp = _ArrayNamespace()

# --- backend operations -----------------------------------------------------------------


# The spec standardises with its own form: eager TensorFlow is at par with
# tf.nn.moments and batch_normalization, and XLA fuses it.
batch_standardize = None


def device(x: Any) -> Any:
    """The device string of ``x``; None for symbolic tensors, which have none."""
    return getattr(x, "device", None) or None


def dynamic_dim(x: Any, axis: int) -> Any:
    """The run-time size of ``axis`` (a 0-d int32 tensor), for sizes unknown when tracing:
    the batch size under ``tf.function(input_signature=[tf.TensorSpec([None, D])])``,
    with ``reduce_retracing=True`` or in Keras ``fit``."""
    return tf.shape(x)[axis]


# Raw tf ops never lower a product's precision: nothing to shield.
matmul = plain_matmul


def stop_gradient(x: Any) -> Any:
    """``x`` with no gradient flowing back through it."""
    return tf.stop_gradient(x)


def logsumexp(x: Any, axis: int, keepdims: bool = False) -> Any:
    """``log(sum(exp(x)))`` along ``axis``, max-shifted by TF itself."""
    return tf.reduce_logsumexp(x, axis=axis, keepdims=keepdims)


def fill_per_row(x: Any, columns: Any, value: float) -> Any:
    """``x`` with ``x[i, columns[i]] = value``: one scatter of a row's worth of entries
    (TensorFlow reuses ``x``'s buffer when nothing else holds it)."""
    rows = tf.range(tf.shape(x)[0], dtype=columns.dtype)
    index = tf.stack([rows, columns], axis=1)
    updates = tf.fill(tf.shape(columns), tf.cast(value, x.dtype))
    return tf.tensor_scatter_nd_update(x, index, updates)


def rsqrt(x: Any) -> Any:
    """``1 / sqrt(x)`` as one operation with a one-operation gradient (``1.0 / sqrt``'s
    gradient is a division's: both operands' gradients, each reduced over its
    broadcast)."""
    return tf.math.rsqrt(x)


def log_softmax(x: Any, axis: int) -> Any:
    """Log-probabilities of a softmax along ``axis``, one TF kernel."""
    return tf.nn.log_softmax(x, axis=axis)


def lower_triangular_inverse(x: Any) -> Any:
    """``L^{-1}`` by one triangular solve of ``L X = I``, where ``inv`` would factorise
    ``L`` again (LU) and make two solves; its backward is lighter too."""
    eye = tf.broadcast_to(tf.eye(tf.shape(x)[-1], dtype=x.dtype), tf.shape(x))
    return tf.linalg.triangular_solve(x, eye, lower=True)


def square(x: Any) -> Any:
    """``tf.math.square``: one gradient op (2 x g) where a self-product has two products
    and their sum."""
    return tf.math.square(x)


def select_kth(x: Any, ks: tuple[int, ...]) -> Any:
    """Values at 0-based positions ``ks`` of ``sort(x)`` for a 1-D ``x``.

    A full sort: ``tf.math.top_k`` for the middle order statistics is slower on CPU (it
    sorts half the array anyway) and equal under XLA, which lowers both to a sort.
    """
    return tf.gather(tf.sort(x), list(ks))


# Eager TensorFlow runs the spec's pieces as they are: a tf.function called eagerly costs
# more than the operations it would save.
fuse = unfused


def fori_loop(n: int, body: Callable[[Any], Any], carry: Any) -> Any:
    """A fixed-count loop: a Python loop eagerly, one while loop in a graph (and in XLA)."""
    if tf.executing_eagerly():
        return python_loop(n, body, carry)
    _, carry = tf.while_loop(
        lambda i, _: i < n, lambda i, c: (i + 1, body(c)), (tf.constant(0), carry),
        maximum_iterations=n,
    )
    return carry


def to_numpy(x: Any) -> np.ndarray:
    """A host copy of ``x``; bfloat16 becomes float32, which NumPy can compute with."""
    if x.dtype == tf.bfloat16:
        x = tf.cast(x, tf.float32)
    return np.asarray(x)
