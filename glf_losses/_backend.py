"""The backend contract: what the spec asks of every module in ``glf_losses.backends``.

One `typing.Protocol`, checked by mypy against every backend (the module objects
themselves are its implementations: see ``backends/__init__.py``). The spec calls
nothing else on a backend; [`glf_losses.get_backend`][glf_losses.get_backend] returns one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["Backend"]


class Backend(Protocol):
    """A framework as the spec sees it: its array namespace, the few operations the array
    API standard lacks, and the data-parallel collectives.

    Framework backends (``torch``, ``jax``, ``tensorflow``) are packages with the same
    modules: ``namespace`` (``name`` to ``to_numpy`` below), ``collectives`` (``shard`` to
    ``to_local``) and ``frontends`` (the framework-native losses, built from
    [`glf_losses.registry`][glf_losses.registry]). NumPy and array-api-strict are single modules
    with no
    front-ends and identity collectives.

    A backend whose arrays can have sizes unknown until run time (TensorFlow under
    ``tf.function`` with ``None`` in a ``TensorSpec``) also has ``dynamic_dim(x, axis)``,
    the size at run time as a 0-d integer array; the spec calls it only for such sizes.
    """

    @property
    def name(self) -> str:
        """``"numpy"``, ``"array_api_strict"``, ``"torch"``, ``"jax"`` or ``"tensorflow"``."""
        ...

    @property
    def xp(self) -> Any:
        """The array-API namespace of the framework's arrays."""
        ...

    def device(self, x: Any) -> Any:
        """The device ``x`` lives on, as the namespace's creation functions take it."""
        ...

    def stop_gradient(self, x: Any) -> Any:
        """``x`` with no gradient flowing back through it."""
        ...

    def logsumexp(self, x: Any, axis: int, keepdims: bool = False) -> Any:
        """``log(sum(exp(x)))`` along ``axis``, stabilised."""
        ...

    def log_softmax(self, x: Any, axis: int) -> Any:
        """``x - logsumexp(x)`` along ``axis``, one fused kernel where the framework has one."""
        ...

    def matmul(self, x1: Any, x2: Any) -> Any:
        """``x1 @ x2`` in the operands' own dtype (PyTorch's turns autocast off around it)."""
        ...

    def square(self, x: Any) -> Any:
        """``x * x`` elementwise, as the framework differentiates it most cheaply (a
        self-product has two operands to differentiate, a square one)."""
        ...

    def rsqrt(self, x: Any) -> Any:
        """``1 / sqrt(x)`` elementwise, one operation where the framework has one."""
        ...

    def fill_per_row(self, x: Any, columns: Any, value: float) -> Any:
        """``x`` with ``x[i, columns[i]] = value`` in every row ``i`` of a (rows, columns)
        array carrying no gradient, which the caller owns and does not read again: written
        in place where the framework allows it (O(rows) work instead of a mask and a
        ``where`` over every entry)."""
        ...

    def select_kth(self, x: Any, ks: tuple[int, ...]) -> Any:
        """Values at the 0-based positions ``ks`` of ``sort(x)`` for a 1-D ``x``."""
        ...

    @property
    def batch_standardize(self) -> Callable[[Any, float], Any] | None:
        """``(x - mean) / sqrt(var + eps)`` over the rows of a (rows, D) array in one
        process (biased variance), as one fused operation where the framework has one
        (PyTorch's batch norm in training mode, without affine parameters); ``None``
        where the spec's own form is as good."""
        ...

    def lower_triangular_inverse(self, x: Any) -> Any:
        """The inverse of each lower-triangular matrix in the last two axes (the whitening
        of W-MSE): a triangular solve against the identity where the framework has one."""
        ...

    def fori_loop(self, n: int, body: Callable[[Any], Any], carry: Any) -> Any:
        """``body`` applied ``n`` times (a fixed count, compiled as one loop where possible)."""
        ...

    def fuse(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn(be, *arrays, **flags)``, a pure piece of the spec without collectives, as
        the backend runs it best when called eagerly: one ``jax.jit`` call in JAX (flags,
        the keyword-only parameters, fixed at compile time), ``fn`` itself elsewhere."""
        ...

    def to_numpy(self, x: Any) -> Any:
        """A host NumPy copy (tests and reporting only; never called by the spec)."""
        ...

    def shard(self, like: Any) -> tuple[int, Any]:
        """``(world size, rank)`` of the active data-parallel context, else ``(1, 0)``."""
        ...

    def all_gather(self, x: Any) -> Any:
        """The workers' shards concatenated along axis 0 (identity outside a context)."""
        ...

    def all_reduce_sum(self, x: Any) -> Any:
        """The sum over workers; its gradient passes through unchanged."""
        ...

    def all_reduce_max(self, x: Any) -> Any:
        """The maximum over workers, without gradient."""
        ...

    def to_local(self, x: Any) -> Any:
        """A value equal on every worker entering one worker's own terms: the identity,
        whose backward sums the workers' cotangents."""
        ...
