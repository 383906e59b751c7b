"""Helpers to test array-API losses across NumPy, array-api-strict, PyTorch, JAX and TF.

Public, so that any loss written over the array API (ours or a user's) can be held to the
same checks: convert NumPy inputs to a framework, take values and gradients there, compile,
and compare with a float64 NumPy result at tolerances that depend on the dtype. A function
under test is any callable over arrays plus keyword hyperparameters, returning a 0-d array
(or a tuple of arrays, or an array, for the value helpers).

No framework is imported when this module is imported; each is imported the first time a
helper needs it. The hypothesis strategies import ``hypothesis`` when they are called.

Examples:
  >>> import numpy as np
  >>> import glf_losses
  >>> from glf_losses import testing
  >>> z_a, z_b = np.eye(3), np.eye(3)[::-1]
  >>> want = glf_losses.simclr_loss(z_a, z_b)  # the float64 NumPy reference
  >>> got = glf_losses.simclr_loss(testing.to_backend("numpy", z_a, "float32"),
  ...                              testing.to_backend("numpy", z_b, "float32"))
  >>> testing.assert_close(got, want, "float32")

  Loop over [`available_backends`][glf_losses.testing.available_backends] to check every installed
  framework the same way.
"""

from __future__ import annotations

import functools
import importlib
import math
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from hypothesis.strategies import SearchStrategy

__all__ = [
    "AUTODIFF_BACKENDS",
    "BACKENDS",
    "FLOAT32_RTOL",
    "FLOAT64_RTOL",
    "assert_close",
    "available_backends",
    "batch_pairs",
    "batch_views",
    "byol_quads",
    "central_difference_grad",
    "compile_fn",
    "dtype_name",
    "enable_jax_x64",
    "max_relative_error",
    "score_pairs",
    "supports_dtype",
    "to_backend",
    "to_numpy",
    "tolerance",
    "value_and_grad",
    "value_and_grad_fn",
]

BACKENDS: tuple[str, ...] = ("numpy", "array_api_strict", "torch", "jax", "tensorflow")
"""Every backend glf-losses dispatches to, in a fixed order."""

AUTODIFF_BACKENDS: tuple[str, ...] = ("torch", "jax", "tensorflow")
"""The backends with automatic differentiation and a compiler."""

FLOAT64_RTOL = 1e-10
"""Relative tolerance of a float64 result against a float64 reference."""

FLOAT32_RTOL = 4.0 * math.sqrt(float(np.finfo(np.float32).eps))
"""Relative tolerance (~1.4e-3) of a float32 result against the float64 reference: the
error of a float32 computation grows with the conditioning of the loss, and
``4 sqrt(eps)`` leaves room for condition numbers up to ~1e4."""

# Dtypes with no counterpart in a backend (the array API standard has no float16).
_UNSUPPORTED_DTYPES = {
    "numpy": frozenset({"bfloat16"}),
    "array_api_strict": frozenset({"float16", "bfloat16"}),
}


# --- frameworks -------------------------------------------------------------------------


def _check_name(name: str) -> None:
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; expected one of {BACKENDS}")


@functools.cache
def _framework(name: str) -> ModuleType | None:
    """The framework's top-level module, or ``None`` if it does not import."""
    _check_name(name)
    try:
        module = importlib.import_module(name)
    except ImportError:
        return None
    if name == "jax":
        # Without x64, JAX silently turns every float64 input into float32.
        module.config.update("jax_enable_x64", True)
    return module


def _require(name: str) -> ModuleType:
    module = _framework(name)
    if module is None:
        raise ImportError(f"backend {name!r} is not available: its framework does not import")
    return module


def enable_jax_x64() -> None:
    """Let JAX hold float64 arrays (call before creating any JAX array); no-op without JAX."""
    _framework("jax")


def available_backends(autodiff_only: bool = False) -> list[str]:
    """The backends, in [`BACKENDS`][glf_losses.testing.BACKENDS] order, whose framework imports.

    Args:
      autodiff_only: only those with autodiff and a compiler (torch, jax, tensorflow).
    """
    names = AUTODIFF_BACKENDS if autodiff_only else BACKENDS
    return [name for name in names if _framework(name) is not None]


# --- conversions ------------------------------------------------------------------------


def _dtype_str(dtype: Any, default: np.dtype) -> str:
    if dtype is None:
        return default.name
    if isinstance(dtype, str):
        return dtype
    return np.dtype(dtype).name


def supports_dtype(name: str, dtype: Any) -> bool:
    """Whether backend ``name`` has ``dtype`` (a name such as ``"bfloat16"`` or a NumPy dtype)."""
    _check_name(name)
    return _dtype_str(dtype, np.dtype("float64")) not in _UNSUPPORTED_DTYPES.get(name, ())


def to_backend(name: str, array_np: Any, dtype: Any = None, requires_grad: bool = False) -> Any:
    """Copy a NumPy array into backend ``name``, optionally cast to ``dtype``.

    Args:
      name: one of [`BACKENDS`][glf_losses.testing.BACKENDS].
      array_np: a NumPy array (or anything ``numpy.asarray`` accepts).
      dtype: a dtype name (``"float64"``, ``"float32"``, ``"float16"``, ``"bfloat16"``,
        ``"int64"``, ...) or a NumPy dtype; ``None`` keeps the input's dtype. The cast
        happens in the framework, so ``"bfloat16"`` rounds the float64 values once.
      requires_grad: PyTorch only: make the tensor a leaf that records gradients. The other
        frameworks differentiate with respect to function arguments instead.

    Returns:
      A NumPy array, an ``array_api_strict`` array, a CPU ``torch.Tensor``, a JAX array
      (float64 enabled) or a ``tf.Tensor``.

    Raises:
      ValueError: if the backend has no such dtype (NumPy bfloat16; array-api-strict
        float16 and bfloat16).
      ImportError: if the backend's framework is not installed.
    """
    _check_name(name)
    x = np.asarray(array_np)
    target = _dtype_str(dtype, x.dtype)
    if not supports_dtype(name, target):
        raise ValueError(f"backend {name!r} has no dtype {target}")
    fw = _require(name)
    if name == "numpy":
        return x.astype(target, copy=True)
    if name == "array_api_strict":
        return fw.asarray(x.astype(target))
    if name == "torch":
        t = fw.tensor(x).to(getattr(fw, target))
        return t.requires_grad_(True) if requires_grad else t
    if name == "jax":
        return fw.numpy.asarray(x, dtype=fw.numpy.dtype(target))
    return fw.cast(fw.constant(x), getattr(fw, target))


def _root(x: Any) -> str:
    return type(x).__module__.split(".", 1)[0]


def to_numpy(x: Any) -> Any:
    """A host NumPy copy of a backend array; bfloat16 becomes float32 (exactly).

    Tuples (``GLFParts`` included) are converted element by element and keep their type;
    Python and NumPy scalars become NumPy arrays.
    """
    if isinstance(x, tuple):
        items = [to_numpy(item) for item in x]
        return type(x)(*items) if hasattr(x, "_fields") else tuple(items)
    root = _root(x)
    if root == "torch":
        x = x.detach().cpu()
        out = (x.float() if str(x.dtype) == "torch.bfloat16" else x).numpy()
    elif root == "tensorflow":
        out = np.asarray(x.numpy())
    elif root == "array_api_strict":
        out = np.from_dlpack(x)
    else:  # numpy, jax and Python scalars all support the NumPy array protocol
        out = np.asarray(x)
    if out.dtype.name == "bfloat16":
        out = out.astype(np.float32)
    return out


def dtype_name(x: Any) -> str:
    """The name of a backend array's dtype, e.g. ``"float32"`` or ``"bfloat16"``."""
    dtype = x.dtype
    root = _root(x)
    if root == "torch":
        return str(dtype).removeprefix("torch.")
    if root == "array_api_strict":
        return str(dtype).rsplit(".", 1)[-1]
    if root == "tensorflow":
        return str(dtype.name)
    return str(np.dtype(dtype).name)


# --- tolerances -------------------------------------------------------------------------


def tolerance(dtype: Any) -> float:
    """Relative tolerance of a result computed in ``dtype`` against a float64 reference.

    float64: [`FLOAT64_RTOL`][glf_losses.testing.FLOAT64_RTOL]. float32, and float16/bfloat16 (which
      compute in
    float32): [`FLOAT32_RTOL`][glf_losses.testing.FLOAT32_RTOL].
    """
    name = _dtype_str(dtype, np.dtype("float64"))
    if name == "float64":
        return FLOAT64_RTOL
    if name in ("float32", "float16", "bfloat16"):
        return FLOAT32_RTOL
    raise ValueError(f"no tolerance for dtype {name}")


def max_relative_error(actual: Any, desired: Any, scale: float | None = None) -> float:
    """``max |actual - desired| / scale``; ``scale`` defaults to ``max |desired|``.

    The norm-wise relative error the assertions are stated in; 0 when both are 0.
    """
    a = np.asarray(to_numpy(actual), dtype=np.float64)
    d = np.asarray(to_numpy(desired), dtype=np.float64)
    if a.shape != d.shape:
        raise ValueError(f"shapes differ: {a.shape} and {d.shape}")
    err = float(np.max(np.abs(a - d), initial=0.0))
    if scale is None:
        scale = float(np.max(np.abs(d), initial=0.0))
    if err == 0.0:
        return 0.0
    return err / scale if scale > 0 else math.inf


def assert_close(
    actual: Any,
    desired: Any,
    dtype: Any,
    *,
    rtol: float | None = None,
    atol: float | None = None,
    scale: float | None = None,
    err_msg: str = "",
) -> None:
    """Assert ``|actual - desired| <= rtol |desired| + atol`` everywhere.

    Args:
      actual: an array of any backend (or a NumPy array / scalar).
      desired: the reference, normally a float64 NumPy result.
      dtype: the dtype ``actual`` was computed in; picks ``rtol`` by
        [`tolerance`][glf_losses.testing.tolerance].
      rtol: overrides the dtype's relative tolerance.
      atol: absolute tolerance; defaults to ``rtol * scale``.
      scale: the magnitude errors are measured against; defaults to ``max |desired|``.
        Pass the natural size of the quantity (e.g. 1.0 for a loss of order one) when
        ``desired`` may be near 0 through cancellation, where no relative bound holds.
      err_msg: prepended to the failure message.

    Raises:
      AssertionError: on a shape mismatch, a NaN, or an error above tolerance.
    """
    a = np.asarray(to_numpy(actual), dtype=np.float64)
    d = np.asarray(to_numpy(desired), dtype=np.float64)
    prefix = f"{err_msg}: " if err_msg else ""
    if a.shape != d.shape:
        raise AssertionError(f"{prefix}shape {a.shape} != desired shape {d.shape}")
    if rtol is None:
        rtol = tolerance(dtype)
    if scale is None:
        scale = float(np.max(np.abs(d), initial=0.0)) if np.all(np.isfinite(d)) else 0.0
    if atol is None:
        atol = rtol * scale
    with np.errstate(invalid="ignore"):
        ok = (np.abs(a - d) <= rtol * np.abs(d) + atol) | (np.isinf(d) & (a == d))
    if not np.all(ok):
        bad = np.argwhere(~ok)
        first = tuple(int(i) for i in bad[0]) if a.ndim else ()
        raise AssertionError(
            f"{prefix}{int(np.sum(~ok))} of {a.size} values differ beyond rtol={rtol:.3g}, "
            f"atol={atol:.3g} (dtype {_dtype_str(dtype, np.dtype('float64'))}); first at "
            f"{first}: actual {a[first]!r}, desired {d[first]!r}; max relative error "
            f"{max_relative_error(a, d, scale or None):.3g}"
        )


# --- gradients --------------------------------------------------------------------------


def value_and_grad(
    name: str,
    fn: Callable[..., Any],
    *arrays_np: Any,
    argnums: Sequence[int] = (0,),
    jax_jit: bool = False,
    **kwargs: Any,
) -> tuple[float, tuple[np.ndarray, ...]]:
    """Value and gradients of a scalar ``fn(*arrays, **kwargs)`` in an autodiff backend.

    The NumPy inputs are converted to backend ``name`` keeping their dtypes, then
    differentiated with ``torch.autograd`` / ``jax.value_and_grad`` /
    ``tf.GradientTape``.

    Args:
      name: ``"torch"``, ``"jax"`` or ``"tensorflow"``.
      fn: returns a 0-d array.
      arrays_np: NumPy inputs (integer arrays are fine outside ``argnums``).
      argnums: positions of the inputs to differentiate with respect to.
      jax_jit: JAX only: trace value and gradient once with ``jax.jit`` instead of
        dispatching op by op; eager JAX compiles every primitive for every new shape,
        which makes many drawn shapes slow. Ignored by the other backends.
      kwargs: passed to ``fn`` unchanged (hyperparameters; static under ``jax_jit``).

    Returns:
      ``(value, grads)``: the value as a Python float and one NumPy gradient per entry of
      ``argnums``. An input the value does not depend on (e.g. behind a stop-gradient)
      gets an all-zero gradient, as JAX reports it.
    """
    argnums = tuple(argnums)
    xs = [
        to_backend(name, a, requires_grad=name == "torch" and i in argnums)
        for i, a in enumerate(arrays_np)
    ]
    vg = value_and_grad_fn(name, fn, argnums=argnums, compiled=jax_jit and name == "jax",
                           **kwargs)
    value, grads = vg(*xs)
    return float(to_numpy(value)), tuple(to_numpy(g) for g in grads)


def value_and_grad_fn(
    name: str,
    fn: Callable[..., Any],
    *,
    argnums: Sequence[int] = (0,),
    compiled: bool = False,
    **static_kwargs: Any,
) -> Callable[..., tuple[Any, tuple[Any, ...]]]:
    """``fn``'s value and gradients as a function of backend ``name``'s arrays.

    The returned callable takes the backend's arrays positionally and returns
    ``(value, grads)`` as backend arrays, one gradient per entry of ``argnums`` (all
    zeros for an input the value does not depend on, as JAX reports it). Nothing is
    copied to the host or waited for, so it is what a benchmark times:

    - jax: ``jax.value_and_grad``; with ``compiled``, ``jax.jit`` of it;
    - tensorflow: ``tf.GradientTape``; with ``compiled``, ``tf.function(jit_compile=True)``
      around the tape;
    - torch: ``torch.autograd.grad`` of ``fn``'s value; with ``compiled``, of the value of
      ``compile_fn``'s ``torch.compile`` of ``fn`` (its backward is compiled by
      AOTAutograd). The inputs in ``argnums`` must have ``requires_grad=True``.

    ``static_kwargs`` are passed to ``fn`` unchanged (static under ``jax.jit``).

    Examples:
      >>> import numpy as np
      >>> from glf_losses import testing
      >>> import glf_losses
      >>> if "jax" in testing.available_backends(autodiff_only=True):
      ...     vg = testing.value_and_grad_fn("jax", glf_losses.simclr_loss, argnums=(0, 1))
      ...     z = testing.to_backend("jax", np.eye(4), "float32")
      ...     value, (g_a, g_b) = vg(z, z[::-1])
      ...     assert g_a.shape == (4, 4)
    """
    if name not in AUTODIFF_BACKENDS:
        raise ValueError(f"backend {name!r} has no autodiff; use one of {AUTODIFF_BACKENDS}")
    argnums = tuple(argnums)
    fw = _require(name)
    bound = functools.partial(fn, **static_kwargs)
    if name == "jax":
        vg = fw.value_and_grad(bound, argnums=argnums)
        return compile_fn("jax", vg) if compiled else vg
    if name == "tensorflow":

        def tape_value_and_grad(*xs: Any) -> tuple[Any, tuple[Any, ...]]:
            wrt = [xs[i] for i in argnums]
            with fw.GradientTape() as tape:
                tape.watch(wrt)
                value = bound(*xs)
            grads = tape.gradient(value, wrt, unconnected_gradients=fw.UnconnectedGradients.ZERO)
            # An input read through a gather (W-MSE's permutations) gets IndexedSlices.
            return value, tuple(fw.convert_to_tensor(g) for g in grads)

        return compile_fn("tensorflow", tape_value_and_grad) if compiled else tape_value_and_grad
    forward = compile_fn("torch", bound) if compiled else bound

    def autograd_value_and_grad(*xs: Any) -> tuple[Any, tuple[Any, ...]]:
        value = forward(*xs)
        wrt = [xs[i] for i in argnums]
        if value.requires_grad:
            raw = fw.autograd.grad(value, wrt, allow_unused=True)
        else:
            raw = (None,) * len(wrt)
        return value, tuple(
            fw.zeros_like(x) if g is None else g for x, g in zip(wrt, raw, strict=True)
        )

    return autograd_value_and_grad


def central_difference_grad(
    fn: Callable[[np.ndarray], Any], x_np: np.ndarray, h: float = 1e-6
) -> np.ndarray:
    """The gradient of a scalar ``fn`` at ``x_np`` by central differences, in float64.

    ``(fn(x + h e_i) - fn(x - h e_i)) / 2h`` for every entry ``i``: error about
    ``h^2 |f'''| + eps |f| / h``, i.e. ~1e-10 relative for smooth functions of order one.
    """
    x = np.array(x_np, dtype=np.float64)
    grad = np.empty_like(x)
    flat, out = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        orig = flat[i]
        flat[i] = orig + h
        up = float(to_numpy(fn(x)))
        flat[i] = orig - h
        down = float(to_numpy(fn(x)))
        flat[i] = orig
        out[i] = (up - down) / (2.0 * h)
    return grad


# --- compilation ------------------------------------------------------------------------


def compile_fn(
    name: str,
    fn: Callable[..., Any],
    *,
    jit_compile: bool = True,
    torch_backend: str = "inductor",
    **static_kwargs: Any,
) -> Callable[..., Any]:
    """``fn`` compiled by backend ``name``'s compiler, hyperparameters fixed.

    - jax: ``jax.jit`` of ``functools.partial(fn, **static_kwargs)`` (so they are static);
    - tensorflow: ``tf.function(..., jit_compile=jit_compile)`` (XLA when True);
    - torch: ``torch.compile(..., fullgraph=True, dynamic=False, backend=torch_backend)``;
      ``fullgraph`` makes any graph break an error rather than a silent fallback. Dynamo's
      caches are reset first (``torch._dynamo.reset()``): it keys compiled code on the
      function's code object, so a test session that compiles one loss with many shapes,
      dtypes and hyperparameters would otherwise hit its recompile limit, which
      ``fullgraph`` turns into an error.

    The returned callable takes the backend's arrays positionally.
    """
    if name not in AUTODIFF_BACKENDS:
        raise ValueError(f"backend {name!r} has no compiler; use one of {AUTODIFF_BACKENDS}")
    fw = _require(name)
    bound = functools.partial(fn, **static_kwargs)
    if name == "jax":
        return fw.jit(bound)
    if name == "tensorflow":
        return fw.function(bound, jit_compile=jit_compile)
    fw._dynamo.reset()
    return fw.compile(bound, fullgraph=True, dynamic=False, backend=torch_backend)


# --- hypothesis strategies --------------------------------------------------------------


def _normal_views(
    seed: int, n: int, d: int, count: int, log10_scale: float, shift: float, corr: float
) -> tuple[np.ndarray, ...]:
    """``count`` (n, d) views of one shared signal: continuous (no ties), finite, bounded."""
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((n, d))
    noise_weight = math.sqrt(1.0 - corr * corr)
    scale = 10.0**log10_scale
    return tuple(
        scale * (corr * base + noise_weight * rng.standard_normal((n, d)) + shift)
        for _ in range(count)
    )


def batch_views(
    count: int,
    min_n: int = 2,
    max_n: int = 64,
    min_d: int = 1,
    max_d: int = 128,
    *,
    scale: tuple[float, float] = (0.1, 10.0),
    max_shift: float = 2.0,
    max_corr: float = 0.95,
) -> SearchStrategy[tuple[np.ndarray, ...]]:
    """``count`` float64 (N, D) arrays: correlated views of one batch.

    Values come from a normal generator seeded by a drawn seed (so large arrays are
    cheap to draw and have no ties): ``scale * (corr * base + sqrt(1 - corr^2) * noise +
    shift)``, with the overall scale drawn log-uniformly in ``scale``, a common shift in
    ``[-max_shift, max_shift]`` (a shift moves every row toward one direction, the hard
    case for normalised losses) and the correlation between views in ``[0, max_corr]``.
    """
    from hypothesis import strategies as st

    lo, hi = math.log10(scale[0]), math.log10(scale[1])
    return st.builds(
        _normal_views,
        seed=st.integers(0, 2**32 - 1),
        n=st.integers(min_n, max_n),
        d=st.integers(min_d, max_d),
        count=st.just(count),
        log10_scale=st.floats(lo, hi) if hi > lo else st.just(lo),
        shift=st.floats(-max_shift, max_shift) if max_shift > 0 else st.just(0.0),
        corr=st.floats(0.0, max_corr) if max_corr > 0 else st.just(0.0),
    )


def batch_pairs(
    min_n: int = 2, max_n: int = 64, min_d: int = 1, max_d: int = 128, **options: Any
) -> SearchStrategy[tuple[np.ndarray, np.ndarray]]:
    """Two float64 (N, D) views ``(z_a, z_b)``; see [`batch_views`][glf_losses.testing.batch_views]
    for ``options``."""
    return batch_views(2, min_n, max_n, min_d, max_d, **options)  # type: ignore[return-value]


def byol_quads(
    min_n: int = 2, max_n: int = 64, min_d: int = 1, max_d: int = 128, **options: Any
) -> SearchStrategy[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Four float64 (N, D) arrays ``(p_a, p_b, z_a, z_b)`` for BYOL: predictions, targets."""
    return batch_views(4, min_n, max_n, min_d, max_d, **options)  # type: ignore[return-value]


def _cosine_scores(
    seed: int, n: int, k: int, d: int, noise: float
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)

    def unit(v: np.ndarray) -> np.ndarray:
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    prototypes = unit(rng.standard_normal((k, d)))
    z = rng.standard_normal((n, d))
    z_a = unit(z + noise * rng.standard_normal((n, d)))
    z_b = unit(z + noise * rng.standard_normal((n, d)))
    # Rounding can put a cosine a hair outside [-1, 1].
    return (
        np.clip(z_a @ prototypes.T, -1.0, 1.0),
        np.clip(z_b @ prototypes.T, -1.0, 1.0),
    )


def score_pairs(
    min_n: int = 2, max_n: int = 64, min_k: int = 2, max_k: int = 64, max_d: int = 32
) -> SearchStrategy[tuple[np.ndarray, np.ndarray]]:
    """Two float64 (N, K) score matrices ``n(z) W^T`` of two views against K prototypes.

    Genuine cosines in [-1, 1]: unit rows of two noisy views of a batch against unit
    prototypes in a drawn dimension 2..``max_d``.
    """
    from hypothesis import strategies as st

    return st.builds(
        _cosine_scores,
        seed=st.integers(0, 2**32 - 1),
        n=st.integers(min_n, max_n),
        k=st.integers(min_k, max_k),
        d=st.integers(2, max(2, max_d)),
        noise=st.floats(0.05, 2.0),
    )
