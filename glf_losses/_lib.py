"""Generic building blocks over an array namespace, shared by every term.

Private: the public terms in [`glf_losses.align`][glf_losses.align],
[`glf_losses.constrain`][glf_losses.constrain] and
[`glf_losses.adc`][glf_losses.adc] are the API. Everything here takes the backend module ``be``
(see `glf_losses._namespace`) and uses only ``be.xp`` plus ``be``'s few extra
operations, so it runs unchanged on every backend, under every compiler.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from types import ModuleType
from typing import Any, NamedTuple, TypeVar

from glf_losses.typing import Array

__all__ = [
    "NORM_FLOOR",
    "GLFParts",
    "as_divisor",
    "batch_average",
    "column_mean",
    "dim",
    "entropy",
    "fused",
    "generic_log_softmax",
    "generic_logsumexp",
    "generic_lower_triangular_inverse",
    "generic_select_kth",
    "global_rows",
    "kl_divergence",
    "l2_normalize",
    "masked_log_softmax",
    "masked_logsumexp",
    "matmul",
    "not_self",
    "off_diagonal",
    "plain_matmul",
    "plain_square",
    "python_loop",
    "rows",
    "similarity_logits",
    "single_process_collective",
    "single_process_shard",
    "sq_distances",
    "stacked_columns",
    "stacked_rows",
    "standardize",
    "unfused",
    "unit_rows",
]

_Fn = TypeVar("_Fn", bound=Callable[..., Any])

# Squared-norm floor of every L2 normalisation: v * rsqrt(max(|v|^2, 1e-12)), so that a
# zero vector maps to zero with a finite gradient instead of 0/0.
NORM_FLOOR = 1e-12


class GLFParts(NamedTuple):
    """The two parts of a GLF objective; the method's loss is ``align + constrain``.

    A NamedTuple so that it is a pytree in JAX and a nest in TensorFlow, and so can be
    returned from ``jax.jit``, ``tf.function`` and ``torch.compile`` functions.

    Examples:
      >>> import numpy as np
      >>> import glf_losses
      >>> z = np.eye(4)
      >>> parts = glf_losses.simclr_parts(z, z)
      >>> bool(parts.total == glf_losses.simclr_loss(z, z))
      True
    """

    align: Array
    constrain: Array

    @property
    def total(self) -> Array:
        """``align + constrain``: the method's loss."""
        return self.align + self.constrain


def single_process_shard(like: Any) -> tuple[int, int]:
    """``(world_size, rank)`` of a backend with no data-parallel engine: one worker."""
    return 1, 0


def single_process_collective(x: Any) -> Any:
    """A collective over one worker: the identity."""
    return x


def python_loop(n: int, body: Callable[[Any], Any], carry: Any) -> Any:
    """``carry = body(carry)``, ``n`` times: a fixed-count loop, unrolled when traced."""
    for _ in range(n):
        carry = body(carry)
    return carry


def plain_matmul(a: Any, b: Any) -> Any:
    """``a @ b``: the ``matmul`` of every backend whose framework computes a product in
    its operands' dtype."""
    return a @ b


def plain_square(x: Any) -> Any:
    """``x * x``: the ``square`` of every backend whose framework differentiates a
    self-product as cheaply as a square (PyTorch eager: ``torch.square`` is a ``pow``
    whose backward makes copies, 20% slower at (1024, 2048) on a CPU)."""
    return x * x


def matmul(be: ModuleType, a: Any, b: Any) -> Any:
    """``a @ b`` in the operands' own dtype.

    Every matrix product of the spec goes through the backend's ``matmul``, because a
    framework may lower a product's precision behind the caller's back (PyTorch's
    autocast runs ``@`` in float16 or bfloat16 even on float32 operands), and the losses
    promise float32 at least.
    """
    return be.matmul(a, b)


def similarity_logits(be: ModuleType, anchors: Any, columns: Any, temperature: float) -> Any:
    """``anchors @ columns.T / temperature``, the (rows, columns) logits of a contrastive
    softmax.

    The division goes on whichever is smaller, the (rows, D) anchors or the (rows,
    columns) product: the same value to rounding, but at N = 1024, D = 128 dividing the
    (2N, D) anchors instead of the (2N, 2N) product saves two (2N, 2N) passes per call
    (the division and its backward), 10% of DCL's eager PyTorch time on a CPU. Shapes
    unknown until run time (TensorFlow's ``None`` batch) keep the product's division.
    """
    xp = be.xp
    n_rows, width = anchors.shape
    n_columns = columns.shape[0]
    static = all(isinstance(n, int) for n in (n_rows, width, n_columns))
    if static and width < n_columns:
        return matmul(be, anchors / temperature, xp.matrix_transpose(columns))
    return matmul(be, anchors, xp.matrix_transpose(columns)) / temperature


def dim(be: ModuleType, x: Any, axis: int) -> Any:
    """The size of ``x`` along ``axis``: its static size when known (a Python int, or what
    the framework's tracer stands in for one), else the size at run time as a 0-d integer
    array, from the backend's ``dynamic_dim``.

    The array API allows ``None`` for a size unknown until the computation runs, as
    TensorFlow's batch size is under ``tf.function(input_signature=[TensorSpec([None,
    D])])`` or in Keras ``fit``; the losses must work there too.
    """
    n = x.shape[axis]
    return be.dynamic_dim(x, axis) if n is None else n


def rows(be: ModuleType, x: Any) -> Any:
    """The number of rows of ``x``, as `dim` gives it."""
    return dim(be, x, 0)


def as_divisor(be: ModuleType, n: Any, like: Any) -> Any:
    """A count from `rows` (or a multiple of one), ready to divide arrays of
    ``like``'s dtype: a run-time integer array is cast to that dtype, a static one kept."""
    return be.xp.astype(n, like.dtype) if hasattr(n, "dtype") else n


def l2_normalize(xp: Any, v: Any) -> Any:
    """Row-wise ``v * rsqrt(max(sum v^2, 1e-12))``."""
    sq = xp.sum(v * v, axis=-1, keepdims=True)
    # Times the (rows, 1) reciprocal rather than divided by the root: the backward of a
    # broadcast division makes several (rows, D) passes (-g * v / s^2) where a product
    # needs one, in PyTorch eager and TensorFlow (XLA included); see docs/benchmarks.md.
    return v * (1.0 / xp.sqrt(xp.clip(sq, min=NORM_FLOOR)))


def fused(fn: _Fn) -> _Fn:
    """Run ``fn(be, *arrays, **flags)`` through ``be.fuse``: as one compiled call where the
    backend compiles pieces of an eager computation (JAX), as itself elsewhere.

    For pure, elementwise or row-wise helpers without collectives only: a collective reads
    the data-parallel context when traced, which a compiled piece would not see change;
    and a piece holding a matrix product, compiled apart, is partitioned on its own under
    a sharded ``jax.jit``, which changed the rounding enough for a two-device training run
    to drift from a one-device run (ADC's squared distances: 8e-3 after two epochs,
    against 2e-7 inline). Keyword-only parameters are flags fixed at compile time.

    Why: eager JAX dispatches every primitive of a ``value_and_grad`` separately, 100 to
    200 us each on a CPU, so a normalisation of seven primitives cost more than the
    matrix product after it; compiled as one piece it is one dispatch each way. Under an
    outer ``jax.jit`` the piece is inlined, the same program as before.
    """

    @functools.wraps(fn)
    def call(be: Any, *args: Any, **flags: Any) -> Any:
        return be.fuse(fn)(be, *args, **flags)

    return call  # type: ignore[return-value]


def unfused(fn: _Fn) -> _Fn:
    """``fuse`` of the backends that run the spec's pieces as they are (eager PyTorch and
    TensorFlow: a compiled piece called eagerly costs more than the operations it saves)."""
    return fn


@fused
def unit_rows(be: ModuleType, v: Any) -> Any:
    """`l2_normalize` of ``v``'s rows for the spec's terms, fused where the backend fuses.

    The backend's square and reciprocal root: one operation each way where the generic
    form's ``1 / sqrt`` makes two forward and, in TensorFlow, a division's gradient (a
    dozen eager operations with its broadcasting) backward. Eager, at N = 256, D = 128:
    SimSiam 0.62 to 0.53 ms in PyTorch (native 0.45), TiCo 5.2 to 3.8 ms in TensorFlow
    (native 3.0).
    """
    xp = be.xp
    sq = xp.sum(be.square(v), axis=-1, keepdims=True)
    return v * be.rsqrt(xp.clip(sq, min=NORM_FLOOR))


def batch_average(be: ModuleType, per_sample: Any) -> Any:
    """Mean of a per-sample (local rows) vector over the global batch."""
    n_global = rows(be, per_sample) * be.shard(per_sample)[0]
    return be.all_reduce_sum(be.xp.sum(per_sample)) / as_divisor(be, n_global, per_sample)


def column_mean(be: ModuleType, x: Any) -> Any:
    """(1, D) mean over the rows of the global batch."""
    n_global = rows(be, x) * be.shard(x)[0]
    return be.all_reduce_sum(be.xp.sum(x, axis=0, keepdims=True)) / as_divisor(be, n_global, x)


def standardize(be: ModuleType, z: Any, eps: float) -> Any:
    """Standardise columns over the batch like BatchNorm1d(affine=False) in training mode.

    Biased variance, ``eps`` added to the variance: ``(z - mean) / sqrt(var + eps)``;
    mean and variance are over the global batch.
    """
    native = be.batch_standardize
    if native is not None and eps > 0.0 and be.shard(z)[0] == 1:
        # The framework's batch norm: one kernel each way where the form below makes
        # eight passes, most of the eager time of a Barlow Twins call at D = 128. (It
        # refuses eps = 0, which the form below allows.)
        return native(z, eps)
    centred = z - be.to_local(column_mean(be, z))
    return centred / be.xp.sqrt(be.to_local(column_mean(be, be.square(centred))) + eps)


def global_rows(be: ModuleType, n_local: Any, like: Any) -> tuple[Any, Any]:
    """``(n_global, index)``: the global batch size and the global index of each local row.

    In one process the index is ``arange(n_local)``; under data parallelism worker r's
    rows are ``r * n_local + arange(n_local)`` (shards are equal and in worker order).
    ``n_local`` is an int or a run-time size from `rows`.
    """
    xp = be.xp
    world, rank = be.shard(like)
    index = xp.arange(n_local, device=be.device(like))
    if world == 1:
        return n_local, index
    offset = rank * n_local
    if not isinstance(offset, int):
        offset = xp.astype(offset, index.dtype)
    return n_local * world, index + offset


def stacked_rows(be: ModuleType, n_local: Any, like: Any) -> tuple[Any, Any]:
    """``(n_global, index)`` for local rows ``[a; b]`` against global ``[A; B]``."""
    n_global, index = global_rows(be, n_local, like)
    return n_global, be.xp.concat([index, index + n_global])


def stacked_columns(be: ModuleType, a: Any, b: Any, local: Any = None) -> Any:
    """The global ``[A; B]`` from the local ``a`` and ``b``, to pair with local rows.

    ``local``: the caller's ``concat([a, b])``, if it has one. In one process the global
    stack is that array, which is then returned rather than concatenated again (one
    copy, and its backward, fewer per call in eager mode).
    """
    if local is not None and be.shard(a)[0] == 1:
        return local
    return be.to_local(be.xp.concat([be.all_gather(a), be.all_gather(b)], axis=0))


def not_self(be: ModuleType, row_index: Any, n_columns: Any, like: Any) -> Any:
    """(rows, n_columns) mask, False where a column is the row's own sample."""
    columns = be.xp.arange(n_columns, device=be.device(like))
    return row_index[:, None] != columns[None, :]


def off_diagonal(be: ModuleType, m: Any, like: Any) -> Any:
    """Boolean (m, m) mask, True off the diagonal, on the device of ``like``.

    Static: built from the shape alone, so compilers fold it to a constant.
    """
    idx = be.xp.arange(m, device=be.device(like))
    return idx[:, None] != idx[None, :]


def sq_distances(be: ModuleType, anchors: Any, columns: Any, mask: Any) -> Any:
    """Squared Euclidean distances in Gram form, clamped at 0, exactly 0 where masked out.

    ``|a|^2 + |b|^2 - 2 a.b`` needs one matrix product instead of an (M, M, D) tensor;
    rounding can make it slightly negative, hence the clamp.
    """
    xp = be.xp
    sq_r = xp.sum(be.square(anchors), axis=1)
    sq_c = xp.sum(be.square(columns), axis=1)
    gram = matmul(be, anchors, xp.matrix_transpose(columns))
    d = xp.clip(sq_r[:, None] + sq_c[None, :] - 2.0 * gram, min=0.0)
    return xp.where(mask, d, 0.0)


def generic_logsumexp(be: ModuleType, x: Any, axis: int, keepdims: bool = False) -> Any:
    """log(sum(exp(x))) along ``axis``, shifted by a stop-gradient max."""
    xp = be.xp
    m = be.stop_gradient(xp.max(x, axis=axis, keepdims=True))
    out = xp.log(xp.sum(xp.exp(x - m), axis=axis, keepdims=True)) + m
    return out if keepdims else xp.squeeze(out, axis=axis)


def generic_log_softmax(be: ModuleType, x: Any, axis: int) -> Any:
    """``x - logsumexp(x)`` along ``axis``: log-probabilities of a softmax."""
    return x - be.logsumexp(x, axis=axis, keepdims=True)


def generic_rsqrt(xp: Any, x: Any) -> Any:
    """``1 / sqrt(x)`` elementwise, for frameworks without a reciprocal root."""
    return 1.0 / xp.sqrt(x)


def generic_fill_per_row(be: ModuleType, x: Any, columns: Any, value: float) -> Any:
    """``x`` with ``x[i, columns[i]] = value`` in every row ``i``, by a comparison mask and
    ``where``: two (rows, columns) passes, for frameworks that cannot write the entries."""
    xp = be.xp
    every_column = xp.arange(x.shape[1], device=be.device(x))
    return xp.where(every_column[None, :] == columns[:, None], value, x)


def generic_lower_triangular_inverse(xp: Any, x: Any) -> Any:
    """The inverse of each lower-triangular matrix in the last two axes, by ``xp.linalg.inv``
    (the array API has no triangular solve): for frameworks without one."""
    return xp.linalg.inv(x)


def generic_select_kth(xp: Any, x: Any, ks: tuple[int, ...]) -> Any:
    """Values at 0-based positions ``ks`` of ``sort(x)`` for a 1-D ``x``, by sorting."""
    ordered = xp.sort(x)
    return xp.stack([ordered[k] for k in ks])


@fused
def masked_logsumexp(be: ModuleType, x: Any, mask: Any) -> Any:
    """logsumexp of each row of ``x`` over the entries where ``mask`` is True.

    Every row must keep at least one entry. Masked entries become ``-inf`` and go to the
    backend's fused logsumexp: ``exp(-inf) = 0`` adds nothing to the value, and their
    gradient is exactly 0 (``where``'s backward drops it; no ``0 * inf`` arises, as
    ``x`` itself is finite). One masked pass each way, where shifting by a masked
    maximum, masking the exponentials and summing cost five: in eager PyTorch those
    ``where`` passes over the (2N, 2N) logits were a third of DCL's time at N = 1024.
    """
    return be.logsumexp(be.xp.where(mask, x, -math.inf), axis=-1)


@fused
def masked_log_softmax(
    be: ModuleType, logits: Any, mask: Any, *, no_grad: bool = False
) -> tuple[Any, Any]:
    """Row-wise softmax over the entries where ``mask`` is True.

    Returns ``(log_p, p)``: ``p`` is exactly 0 on masked entries; ``log_p`` is finite
    everywhere (its masked entries are meaningless and must be masked by the caller).

    ``no_grad``: the caller promises that ``logits`` carries no gradient (it is under
    stop-gradient), so the (rows, columns) intermediates are updated in place instead of
    allocated afresh: the same arithmetic, three fewer fresh buffers (page faults on new
    memory dominate eager PyTorch on a CPU). Immutable arrays (JAX, TensorFlow) rebind.
    """
    xp = be.xp
    m = be.stop_gradient(xp.max(xp.where(mask, logits, -math.inf), axis=-1, keepdims=True))
    shifted = xp.where(mask, logits, m)
    if no_grad:
        shifted -= m
    else:
        shifted = shifted - m
    e = xp.where(mask, xp.exp(shifted), 0.0)
    # The normaliser is 1 (a row maximum) + the rest. Summing the rest apart and taking
    # log1p keeps a nearly one-hot row accurate, where log(1 + tiny) would round tiny
    # away; ``e - 1`` at the maxima is 0 in value but keeps their gradient.
    at_max = xp.logical_and(mask, shifted == 0.0)
    rest = xp.sum(xp.where(at_max, e - 1.0, e), axis=-1, keepdims=True) + (
        xp.sum(xp.astype(at_max, e.dtype), axis=-1, keepdims=True) - 1.0
    )
    if no_grad:
        shifted -= xp.log1p(rest)
        e /= 1.0 + rest
        return shifted, e
    return shifted - xp.log1p(rest), e / (1.0 + rest)


def entropy(xp: Any, p: Any, log_p: Any) -> Any:
    """Row entropies ``-sum_j p_j log p_j``.

    For distributions from ``masked_log_softmax`` (or with ``log_p`` clipped finite):
    ``p`` is exactly 0 on the masked-out entries and ``log_p`` is finite there, so they
    add exactly 0 without a ``where`` (as in ``kl_divergence``).
    """
    return -xp.sum(p * log_p, axis=-1)


def kl_divergence(xp: Any, p: Any, log_p: Any, log_q: Any) -> Any:
    """Row-wise ``KL(p || q) = sum_j p_j (log p_j - log q_j)``.

    For distributions from `masked_log_softmax`: ``p`` is exactly 0 on the
    masked-out entries and ``log_p``, ``log_q`` are finite there, so those entries add
    exactly 0 (and a zero gradient) without a ``where``. Leaving it out saves (M, M)
    passes and keeps TensorFlow's XLA from summing a ``where`` inaccurately (5e-4
    relative error over 2048 x 2048 entries on CPU; see docs/benchmarks.md).
    """
    return xp.sum(p * (log_p - log_q), axis=-1)
