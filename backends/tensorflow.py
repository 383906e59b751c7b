"""TensorFlow backend: ``GradientTape``, ``tf.function`` and XLA (``jit_compile=True``).

TensorFlow has no array-API namespace of its own (and ``array_api_compat`` has none for
it), so :data:`xp` is ours: a thin layer over raw ``tf`` ops with the standard's names,
keywords and Python-scalar promotion, covering what :mod:`glf_losses` uses.

Also the Keras 3 front-ends: :class:`BYOLLoss`, :class:`BarlowTwinsLoss`,
:class:`SwAVLoss` (owns the prototypes), :class:`SimCLRLoss` and :class:`ADCLoss`, as
``keras.layers.Layer`` subclasses. They hand their inputs to :mod:`glf_losses`, which
dispatches on the array type, so they also run when Keras uses its JAX or PyTorch backend.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import keras
import ml_dtypes
import numpy as np
import tensorflow as tf

from glf_losses._lib import l2_normalize, python_loop
from glf_losses._namespace import get_namespace
from glf_losses.adc import ADC
from glf_losses.frontends import (
    ADCFrontEnd,
    BarlowTwinsFrontEnd,
    BYOLFrontEnd,
    LossFrontEnd,
    SimCLRFrontEnd,
    SwAVFrontEnd,
)

__all__ = [
    "ADCLoss",
    "BYOLLoss",
    "BarlowTwinsLoss",
    "SimCLRLoss",
    "SwAVLoss",
    "all_gather",
    "all_reduce_max",
    "all_reduce_sum",
    "device",
    "fori_loop",
    "log_softmax",
    "logsumexp",
    "name",
    "select_kth",
    "shard",
    "stop_gradient",
    "to_local",
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


def _dtype_of(x: Any) -> tf.dtypes.DType:
    return tf.as_dtype(x.dtype if hasattr(x, "dtype") else x)


def _variance(x: Any, axis: Axis, correction: float, keepdims: bool) -> Any:
    """Variance with ``correction`` degrees of freedom (0: biased, 1: unbiased)."""
    mean = tf.reduce_mean(x, axis=axis, keepdims=True)
    dev = x - mean
    # Element count from the runtime sizes, so unknown dimensions under tf.function work.
    count = tf.cast(tf.size(x), x.dtype) / tf.cast(tf.size(mean), x.dtype)
    return tf.reduce_sum(dev * dev, axis=axis, keepdims=keepdims) / (count - correction)


def _arg_reduce(op: Callable[..., Any], x: Any, axis: int | None, keepdims: bool) -> Any:
    """argmax/argmin with the standard's ``axis=None`` (flattened) and ``keepdims``."""
    if axis is None:
        out = op(tf.reshape(x, [-1]), axis=0)
        return tf.reshape(out, [1] * x.shape.rank) if keepdims else out
    out = op(x, axis=axis)
    return tf.expand_dims(out, axis) if keepdims else out


@dataclass(frozen=True)
class _FInfo:
    """Machine limits of a floating dtype, as the array API's ``finfo`` returns them."""

    bits: int
    eps: float
    max: float
    min: float
    smallest_normal: float
    dtype: tf.dtypes.DType


@dataclass(frozen=True)
class _IInfo:
    """Machine limits of an integer dtype, as the array API's ``iinfo`` returns them."""

    bits: int
    max: int
    min: int
    dtype: tf.dtypes.DType


# --- the namespace ----------------------------------------------------------------------


class _Linalg:
    """The ``linalg`` extension, as far as the losses need it."""

    @staticmethod
    def vector_norm(
        x: Any, /, *, axis: Axis = None, keepdims: bool = False, ord: float = 2
    ) -> Any:
        """p-norm over ``axis`` (all axes when None), the axes flattened into one vector.

        ``tf.norm`` would read a 2-tuple ``axis`` as a matrix norm, hence the explicit form.
        """
        a = tf.abs(x)
        if ord == 2:
            return tf.sqrt(tf.reduce_sum(a * a, axis=axis, keepdims=keepdims))
        if ord == math.inf:
            return tf.reduce_max(a, axis=axis, keepdims=keepdims)
        if ord == -math.inf:
            return tf.reduce_min(a, axis=axis, keepdims=keepdims)
        if ord == 0:
            return tf.reduce_sum(tf.cast(a != 0, x.dtype), axis=axis, keepdims=keepdims)
        return tf.reduce_sum(a**ord, axis=axis, keepdims=keepdims) ** (1.0 / ord)

    @staticmethod
    def diagonal(x: Any, /, *, offset: int = 0) -> Any:
        """Diagonal ``offset`` of the last two axes."""
        return tf.linalg.diag_part(x, k=offset)


class _DTypesAndConstants:
    """The namespace's dtypes and constants.

    A base class rather than names in :class:`_ArrayNamespace`'s body, where ``bool`` would
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
    def finfo(type: Any, /) -> _FInfo:
        """Limits of a floating dtype (or of an array's dtype); bfloat16 included."""
        dtype = _dtype_of(type)
        info = ml_dtypes.finfo(dtype.as_numpy_dtype)
        return _FInfo(
            bits=int(info.bits), eps=float(info.eps), max=float(info.max),
            min=float(info.min), smallest_normal=float(info.smallest_normal), dtype=dtype,
        )

    @staticmethod
    def iinfo(type: Any, /) -> _IInfo:
        """Limits of an integer dtype (or of an array's dtype)."""
        dtype = _dtype_of(type)
        info = np.iinfo(dtype.as_numpy_dtype)
        return _IInfo(bits=int(info.bits), max=int(info.max), min=int(info.min), dtype=dtype)

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
    def full(shape: Any, fill_value: Any, *, dtype: Any = None, device: Any = None) -> Any:
        """``fill_value`` repeated to ``shape``; the dtype follows the value unless given."""
        with _placed(device):
            return tf.fill(shape, tf.constant(fill_value, dtype=dtype))

    @staticmethod
    def zeros_like(x: Any, /, *, dtype: Any = None, device: Any = None) -> Any:
        """Zeros with the shape (and, unless given, dtype) of ``x``."""
        with _placed(device):
            return tf.zeros_like(x, dtype=dtype)

    @staticmethod
    def ones_like(x: Any, /, *, dtype: Any = None, device: Any = None) -> Any:
        """Ones with the shape (and, unless given, dtype) of ``x``."""
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
    def squeeze(x: Any, /, axis: int | tuple[int, ...]) -> Any:
        """Remove the size-1 ``axis`` (the standard requires it to be named)."""
        return tf.squeeze(x, axis=axis)

    @staticmethod
    def expand_dims(x: Any, /, *, axis: int = 0) -> Any:
        """Insert a size-1 axis at ``axis``."""
        return tf.expand_dims(x, axis)

    @staticmethod
    def broadcast_to(x: Any, /, shape: Any) -> Any:
        """``x`` broadcast to ``shape``."""
        return tf.broadcast_to(x, shape)

    @staticmethod
    def permute_dims(x: Any, /, axes: Sequence[int]) -> Any:
        """``x`` with its axes reordered."""
        return tf.transpose(x, perm=list(axes))

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
    expm1 = staticmethod(tf.math.expm1)
    sqrt = staticmethod(tf.math.sqrt)
    abs = staticmethod(tf.math.abs)
    square = staticmethod(tf.math.square)
    sign = staticmethod(tf.math.sign)
    tanh = staticmethod(tf.math.tanh)
    floor = staticmethod(tf.math.floor)
    round = staticmethod(tf.math.round)  # half to even, as the standard asks
    isfinite = staticmethod(tf.math.is_finite)
    isnan = staticmethod(tf.math.is_nan)
    logical_not = staticmethod(tf.math.logical_not)

    maximum = staticmethod(_binary(tf.math.maximum))
    minimum = staticmethod(_binary(tf.math.minimum))
    logical_and = staticmethod(_binary(tf.math.logical_and))
    logical_or = staticmethod(_binary(tf.math.logical_or))
    equal = staticmethod(_binary(tf.math.equal))
    not_equal = staticmethod(_binary(tf.math.not_equal))
    less = staticmethod(_binary(tf.math.less))
    less_equal = staticmethod(_binary(tf.math.less_equal))
    greater = staticmethod(_binary(tf.math.greater))
    greater_equal = staticmethod(_binary(tf.math.greater_equal))

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
    def prod(x: Any, /, *, axis: Axis = None, dtype: Any = None, keepdims: bool = False) -> Any:
        """Product over ``axis`` (all axes when None), in ``dtype`` if given."""
        return tf.reduce_prod(x if dtype is None else tf.cast(x, dtype), axis, keepdims)

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
    def any(x: Any, /, *, axis: Axis = None, keepdims: bool = False) -> Any:
        """Logical OR over ``axis`` (all axes when None)."""
        return tf.reduce_any(tf.cast(x, tf.bool), axis, keepdims)

    @staticmethod
    def all(x: Any, /, *, axis: Axis = None, keepdims: bool = False) -> Any:
        """Logical AND over ``axis`` (all axes when None)."""
        return tf.reduce_all(tf.cast(x, tf.bool), axis, keepdims)

    @staticmethod
    def var(
        x: Any, /, *, axis: Axis = None, correction: float = 0.0, keepdims: bool = False
    ) -> Any:
        """Variance over ``axis``, divided by ``count - correction`` (0: biased)."""
        return _variance(x, axis, correction, keepdims)

    @staticmethod
    def std(
        x: Any, /, *, axis: Axis = None, correction: float = 0.0, keepdims: bool = False
    ) -> Any:
        """Standard deviation over ``axis``, from :meth:`var` with the same ``correction``."""
        return tf.sqrt(_variance(x, axis, correction, keepdims))

    @staticmethod
    def argmax(x: Any, /, *, axis: int | None = None, keepdims: bool = False) -> Any:
        """Index (int64) of the first maximum; over the flattened array when ``axis=None``."""
        return _arg_reduce(tf.math.argmax, x, axis, keepdims)

    @staticmethod
    def argmin(x: Any, /, *, axis: int | None = None, keepdims: bool = False) -> Any:
        """Index (int64) of the first minimum; over the flattened array when ``axis=None``."""
        return _arg_reduce(tf.math.argmin, x, axis, keepdims)

    @staticmethod
    def cumulative_sum(
        x: Any, /, *, axis: int | None = None, dtype: Any = None,
        include_initial: bool = False,
    ) -> Any:
        """Running sum along ``axis`` (optional for 1-D ``x``), optionally led by a 0."""
        axis = 0 if axis is None else axis
        out = tf.math.cumsum(x if dtype is None else tf.cast(x, dtype), axis=axis)
        if include_initial:
            lead = [[0, 0] for _ in range(x.shape.rank)]
            lead[axis] = [1, 0]
            out = tf.pad(out, lead)
        return out

    # --- sorting and indexing -----------------------------------------------------------

    @staticmethod
    def sort(x: Any, /, *, axis: int = -1, descending: bool = False, stable: bool = True) -> Any:
        """Sorted values along ``axis`` (stability is moot for values)."""
        return tf.sort(x, axis=axis, direction="DESCENDING" if descending else "ASCENDING")

    @staticmethod
    def argsort(
        x: Any, /, *, axis: int = -1, descending: bool = False, stable: bool = True
    ) -> Any:
        """Indices (int32) that sort ``x`` along ``axis``."""
        return tf.argsort(
            x, axis=axis, direction="DESCENDING" if descending else "ASCENDING", stable=stable
        )

    @staticmethod
    def take(x: Any, indices: Any, /, *, axis: int | None = None) -> Any:
        """Entries of ``x`` at ``indices`` along ``axis``; ``axis=None`` flattens ``x``."""
        if axis is None:
            return tf.gather(tf.reshape(x, [-1]), indices)
        return tf.gather(x, indices, axis=axis)


xp = _ArrayNamespace()

# --- backend operations -----------------------------------------------------------------


def device(x: Any) -> Any:
    """The device string of ``x``; None for symbolic tensors, which have none."""
    return getattr(x, "device", None) or None


def stop_gradient(x: Any) -> Any:
    """``x`` with no gradient flowing back through it."""
    return tf.stop_gradient(x)


def logsumexp(x: Any, axis: int, keepdims: bool = False) -> Any:
    """``log(sum(exp(x)))`` along ``axis``, max-shifted by TF itself."""
    return tf.reduce_logsumexp(x, axis=axis, keepdims=keepdims)


def log_softmax(x: Any, axis: int) -> Any:
    """Log-probabilities of a softmax along ``axis``, one TF kernel."""
    return tf.nn.log_softmax(x, axis=axis)


def select_kth(x: Any, ks: tuple[int, ...]) -> Any:
    """Values at 0-based positions ``ks`` of ``sort(x)`` for a 1-D ``x``.

    A full sort: ``tf.math.top_k`` for the middle order statistics is slower on CPU (it
    sorts half the array anyway) and equal under XLA, which lowers both to a sort.
    """
    return tf.gather(tf.sort(x), list(ks))


# --- data-parallel collectives (see glf_losses.distributed) -----------------------------
#
# Custom gradients with the rules of glf_losses.distributed: a value that is the same on
# every replica (a sum, a gathered array) passes its cotangent back unchanged, and
# ``to_local`` sums cotangents where such a value enters one replica's own terms.


def _replica() -> Any:
    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync == 1:
        return None
    return ctx


def shard(like: Any) -> tuple[int, Any]:
    """``(replicas, replica id)`` inside a multi-replica ``strategy.run``, else ``(1, 0)``."""
    ctx = _replica()
    if ctx is None:
        return 1, 0
    return ctx.num_replicas_in_sync, ctx.replica_id_in_sync_group


def all_gather(x: Any) -> Any:
    """Concatenate the replicas' shards; backward keeps the replica's own rows."""
    ctx = _replica()
    if ctx is None:
        return x

    @tf.custom_gradient
    def gather(v: Any) -> Any:
        def grad(upstream: Any) -> Any:
            rows = tf.shape(v)[0]
            return upstream[ctx.replica_id_in_sync_group * rows :][:rows]

        return ctx.all_gather(v, axis=0), grad

    return gather(x)


def all_reduce_sum(x: Any) -> Any:
    """Sum over replicas; backward is the identity (the sum is the same everywhere)."""
    ctx = _replica()
    if ctx is None:
        return x

    @tf.custom_gradient
    def reduce(v: Any) -> Any:
        return ctx.all_reduce(tf.distribute.ReduceOp.SUM, v), lambda upstream: upstream

    return reduce(x)


def to_local(x: Any) -> Any:
    """A replicated value entering one replica's own terms: backward sums over replicas."""
    ctx = _replica()
    if ctx is None:
        return x

    @tf.custom_gradient
    def local(v: Any) -> Any:
        return tf.identity(v), lambda upstream: ctx.all_reduce(
            tf.distribute.ReduceOp.SUM, upstream
        )

    return local(x)


def all_reduce_max(x: Any) -> Any:
    """Maximum over replicas, without gradient."""
    ctx = _replica()
    if ctx is None:
        return x
    # tf.distribute reduces only by sum and mean: gather the candidates, then take the max.
    return tf.reduce_max(ctx.all_gather(tf.stop_gradient(x)[None], axis=0), axis=0)


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


# --- Keras front-ends -------------------------------------------------------------------


class _Layer(LossFrontEnd, keras.layers.Layer):
    """``call`` is the 0-d loss ``align + constrain``; ``parts`` gives both parts.

    ``autocast=False`` by default: a loss must see its inputs' own dtype (float64 stays
    float64; float16 and bfloat16 are promoted to float32 by :mod:`glf_losses`), not the
    layer's compute dtype. Other keywords go to ``keras.layers.Layer``.
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)

    def call(self, *args: Any, prior: Any = None) -> Any:
        return self.parts(*args, prior=prior).total


class BYOLLoss(BYOLFrontEnd, _Layer):
    """``BYOLLoss()(p_a, p_b, z_a, z_b)``: :func:`glf_losses.byol_loss` as a layer.

    ADC, if set, acts on the online predictions ``(p_a, p_b)``.

    Example:
      >>> import tensorflow as tf
      >>> from glf_losses.backends.tensorflow import BYOLLoss
      >>> p = tf.random.normal((8, 16))
      >>> float(BYOLLoss()(p, p, p, p)) < 1e-6
      True
    """

    def __init__(self, adc: ADC | None = None, **kwargs: Any) -> None:
        _Layer.__init__(self, **kwargs)
        self.adc = adc


class BarlowTwinsLoss(BarlowTwinsFrontEnd, _Layer):
    """``BarlowTwinsLoss(lambd, eps, scale)(z_a, z_b)``: :func:`glf_losses.barlow_twins_loss`.

    Example:
      >>> import tensorflow as tf
      >>> from glf_losses import ADC
      >>> from glf_losses.backends.tensorflow import BarlowTwinsLoss
      >>> loss_fn = BarlowTwinsLoss(adc=ADC(perplexity=5.0))
      >>> z_a, z_b = tf.random.normal((16, 8)), tf.random.normal((16, 8))
      >>> pixels = tf.random.uniform((16, 1, 8, 8), 0, 256, dtype=tf.int32)
      >>> bool(tf.math.is_finite(loss_fn(z_a, z_b, prior=pixels)))
      True
    """

    def __init__(
        self,
        lambd: float = 0.0051,
        eps: float = 1e-5,
        scale: float = 1.0,
        adc: ADC | None = None,
        **kwargs: Any,
    ) -> None:
        _Layer.__init__(self, **kwargs)
        self.lambd, self.eps, self.scale, self.adc = lambd, eps, scale, adc


class SimCLRLoss(SimCLRFrontEnd, _Layer):
    """``SimCLRLoss(temperature)(z_a, z_b)``: :func:`glf_losses.simclr_loss`."""

    def __init__(self, temperature: float = 0.2, adc: ADC | None = None, **kwargs: Any) -> None:
        _Layer.__init__(self, **kwargs)
        self.temperature, self.adc = temperature, adc


class SwAVLoss(SwAVFrontEnd, _Layer):
    """SwAV with its prototypes: ``SwAVLoss(dim, n_prototypes)(z_a, z_b)``.

    Owns a trainable (K, D) prototype weight; ``call`` L2-normalises the projections and
    the prototype rows, scores ``n(z) n(W)^T`` and calls :func:`glf_losses.swav_loss`.
    Call :meth:`normalize_prototypes` after each optimiser step, as SwAV does, to keep the
    stored rows on the sphere. ADC, if set, acts on the projections.
    """

    def __init__(
        self,
        dim: int,
        n_prototypes: int,
        temperature: float = 0.1,
        epsilon: float = 0.05,
        sinkhorn_iters: int = 3,
        adc: ADC | None = None,
        **kwargs: Any,
    ) -> None:
        _Layer.__init__(self, **kwargs)
        self.temperature, self.epsilon, self.sinkhorn_iters = temperature, epsilon, sinkhorn_iters
        self.adc = adc
        self.prototypes = self.add_weight(
            shape=(n_prototypes, dim),
            initializer=keras.initializers.RandomNormal(stddev=1.0),
            name="prototypes",
        )
        self.normalize_prototypes()
        # The only state is created above, so no shape-driven build is needed.
        self.built = True

    def prototype_matrix(self) -> Any:
        # ``.value`` is the backend's own array (or variable), which glf_losses dispatches
        # on; the Keras wrapper itself belongs to no framework it knows.
        return self.prototypes.value

    def normalize_prototypes(self) -> None:
        """Project the stored prototype rows back onto the unit sphere."""
        w = self.prototypes.value
        self.prototypes.assign(l2_normalize(get_namespace(w), w))


class ADCLoss(ADCFrontEnd, keras.layers.Layer):
    """ADC alone as a layer: ``ADCLoss(ADC(...))(z_a, z_b, prior)``.

    ``autocast=False`` by default, as for the method layers.
    """

    def __init__(self, adc: ADC | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("autocast", False)
        keras.layers.Layer.__init__(self, **kwargs)
        self.adc = adc if adc is not None else ADC()

    def call(self, z_a: Any, z_b: Any, prior: Any) -> Any:
        return self.adc(z_a, z_b, prior)
