"""Every method gives the eager result under jax.jit, tf.function (XLA and graph) and
torch.compile, values and gradients, at a handful of fixed shapes.

torch.compile's default inductor backend compiles C++ and takes seconds per function on
a CPU, so it runs once per method; the other shapes and the ``*_parts`` functions use
``aot_eager``, which traces the same graph (fullgraph: any break fails) without codegen.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import glf_losses
from glf_losses.testing import (
    assert_close,
    available_backends,
    compile_fn,
    to_backend,
    to_numpy,
    value_and_grad,
)

AUTODIFF = available_backends(autodiff_only=True)


def _views(n: int, d: int, count: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((n, d))
    return [base + 0.6 * rng.standard_normal((n, d)) for _ in range(count)]


def _scores(n: int, k: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)

    def unit(v: np.ndarray) -> np.ndarray:
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    w = unit(rng.standard_normal((k, 8)))
    z = rng.standard_normal((n, 8))
    return [unit(z + 0.5 * rng.standard_normal((n, 8))) @ w.T for _ in range(2)]


# (name, function, inputs of a batch (n, d), hyperparameters other than the defaults)
METHODS: list[tuple[str, Callable[..., Any], Callable[[int, int], list[np.ndarray]], dict]] = [
    ("byol", glf_losses.byol_loss, lambda n, d: _views(n, d, 4, 1), {}),
    (
        "barlow_twins",
        glf_losses.barlow_twins_loss,
        lambda n, d: _views(n, d, 2, 2),
        {"lambd": 0.01, "scale": 0.5},
    ),
    (
        "swav",
        glf_losses.swav_loss,
        lambda n, k: _scores(n, k, 3),
        {"temperature": 0.2, "sinkhorn_iters": 4},
    ),
    ("simclr", glf_losses.simclr_loss, lambda n, d: _views(n, d, 2, 4), {"temperature": 0.3}),
]
PARTS = {
    "byol": glf_losses.byol_parts,
    "barlow_twins": glf_losses.barlow_twins_parts,
    "swav": glf_losses.swav_parts,
    "simclr": glf_losses.simclr_parts,
}
SHAPES = [(2, 3), (8, 5), (32, 16)]

# Compiled float32 code may reorder reductions and fuse operations: a few ulps of each
# intermediate, far below the float32-vs-float64 tolerance.
FLOAT32_COMPILED_RTOL = 1e-5


def _compare(compiled: Any, eager: Any, dtype: str, what: str) -> None:
    rtol = FLOAT32_COMPILED_RTOL if dtype == "float32" else None
    if isinstance(eager, tuple):
        assert type(compiled).__name__ == type(eager).__name__, what
        for name, c, e in zip(eager._fields, compiled, eager, strict=True):
            assert_close(c, e, dtype, rtol=rtol, scale=1.0, err_msg=f"{what}.{name}")
    else:
        assert_close(compiled, eager, dtype, rtol=rtol, scale=1.0, err_msg=what)


def _check(
    backend: str,
    fn: Callable[..., Any],
    arrays: list[np.ndarray],
    kwargs: dict,
    dtype: str,
    **compile_options: Any,
) -> None:
    xs = [to_backend(backend, a, dtype) for a in arrays]
    eager = to_numpy(fn(*xs, **kwargs))
    compiled = compile_fn(backend, fn, **compile_options, **kwargs)
    # Twice: the second call runs the cached executable, not the tracing path.
    for _ in range(2):
        _compare(to_numpy(compiled(*xs)), eager, dtype, f"{fn.__name__} {compile_options}")


COMPILERS = [
    pytest.param(b, opts, id=ident)
    for b, opts, ident in [
        ("jax", {}, "jax.jit"),
        ("tensorflow", {"jit_compile": True}, "tf.function-xla"),
        ("torch", {"torch_backend": "aot_eager"}, "torch.compile-aot_eager"),
    ]
    if b in AUTODIFF
]


@pytest.mark.parametrize(("backend", "options"), COMPILERS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize(("name", "fn", "make", "kwargs"), METHODS, ids=[m[0] for m in METHODS])
def test_compiled_loss_equals_eager(
    backend: str, options: dict, shape: tuple[int, int], name: str, fn, make, kwargs
) -> None:
    _check(backend, fn, make(*shape), kwargs, "float64", **options)


@pytest.mark.parametrize(("backend", "options"), COMPILERS)
@pytest.mark.parametrize(("name", "fn", "make", "kwargs"), METHODS, ids=[m[0] for m in METHODS])
def test_compiled_parts_equal_eager_in_float32(
    backend: str, options: dict, name: str, fn, make, kwargs
) -> None:
    _check(backend, PARTS[name], make(8, 5), kwargs, "float32", **options)


@pytest.mark.parametrize(("name", "fn", "make", "kwargs"), METHODS, ids=[m[0] for m in METHODS])
def test_tf_function_without_xla_equals_eager(name: str, fn, make, kwargs) -> None:
    pytest.importorskip("tensorflow")
    _check("tensorflow", fn, make(8, 5), kwargs, "float64", jit_compile=False)


@pytest.mark.parametrize(("name", "fn", "make", "kwargs"), METHODS, ids=[m[0] for m in METHODS])
def test_torch_inductor_equals_eager(name: str, fn, make, kwargs) -> None:
    # What users run: the default backend, generated C++ on CPU, in float32.
    pytest.importorskip("torch")
    _check("torch", fn, make(16, 8), kwargs, "float32")


# --- gradients of compiled functions ----------------------------------------------------


def _compiled_value_and_grad(backend: str, fn, arrays, kwargs) -> tuple[float, list]:
    xs = [to_backend(backend, a, requires_grad=backend == "torch") for a in arrays]
    if backend == "jax":
        import jax

        vg = jax.jit(jax.value_and_grad(lambda *a: fn(*a, **kwargs), argnums=(0, 1)))
        value, grads = vg(*xs)
    elif backend == "tensorflow":
        import tensorflow as tf

        @tf.function(jit_compile=True)
        def vg(*a: Any) -> Any:
            with tf.GradientTape() as tape:
                tape.watch(a[:2])
                value = fn(*a, **kwargs)
            return value, tape.gradient(value, a[:2])

        value, grads = vg(*xs)
    else:
        compiled = compile_fn("torch", fn, torch_backend="aot_eager", **kwargs)
        value = compiled(*xs)
        value.backward()
        grads = [x.grad for x in xs[:2]]
    return float(to_numpy(value)), [to_numpy(g) for g in grads]


@pytest.mark.parametrize("backend", AUTODIFF)
@pytest.mark.parametrize(("name", "fn", "make", "kwargs"), METHODS, ids=[m[0] for m in METHODS])
def test_compiled_gradients_equal_eager(backend: str, name: str, fn, make, kwargs) -> None:
    arrays = make(8, 5)
    value, grads = _compiled_value_and_grad(backend, fn, arrays, kwargs)
    eager_value, eager_grads = value_and_grad(backend, fn, *arrays, argnums=(0, 1), **kwargs)
    assert_close(value, eager_value, "float64", scale=1.0)
    scale = max(float(np.max(np.abs(g))) for g in eager_grads)
    for i, (g, e) in enumerate(zip(grads, eager_grads, strict=True)):
        assert_close(g, e, "float64", scale=scale, err_msg=f"{name} d/d(arg {i})")


def test_torch_compile_works_before_any_eager_call() -> None:
    # A training script may call a loss for the first time inside a compiled step; the
    # backend lookup then happens while dynamo traces, so it must be traceable. A fresh
    # interpreter, because any earlier eager call in this one would hide the problem.
    pytest.importorskip("torch")
    script = textwrap.dedent(
        """
        import torch
        import glf_losses
        z = torch.randn(8, 5, dtype=torch.float64)
        for fn in (glf_losses.simclr_loss, glf_losses.barlow_twins_loss,
                   glf_losses.swav_loss):
            torch.compile(fn, fullgraph=True, dynamic=False, backend="eager")(z, z + 1)
        torch.compile(glf_losses.byol_loss, fullgraph=True, backend="eager")(z, z, z, z)
        print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-3000:]


def test_jax_jit_wmse_gradient_returns_with_several_sub_batches() -> None:
    # Under jax.jit on a CPU (jaxlib 0.10), a program whose backward held two independent
    # batched Cholesky / triangular-solve chains (one per view) never returned at
    # N = 1024 with four sub-batches of 256 rows; the spec whitens both views in one
    # stack. A fresh interpreter with a timeout, so that a regression fails here instead
    # of blocking the suite.
    pytest.importorskip("jax")
    script = textwrap.dedent(
        """
        import jax, numpy as np
        import glf_losses
        rng = np.random.default_rng(0)
        z_a = jax.numpy.asarray(rng.standard_normal((1024, 128), dtype=np.float32))
        z_b = z_a + 0.5 * jax.numpy.asarray(rng.standard_normal((1024, 128), dtype=np.float32))
        step = jax.jit(jax.value_and_grad(
            lambda a, b: glf_losses.wmse_loss(a, b, w_size=256), argnums=(0, 1)))
        value, (g_a, g_b) = step(z_a, z_b)
        assert np.isfinite(float(value)) and np.isfinite(np.asarray(g_a)).all()
        print("ok")
        """
    )
    try:
        result = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=240
        )
    except subprocess.TimeoutExpired:
        pytest.fail("jax.jit of wmse_loss's gradient did not return within 240 s")
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-3000:]


def test_jax_eager_fuses_row_wise_pieces_into_one_call_each() -> None:
    """In JAX the spec's row-wise pieces (L2 normalisation, masked log-sum-exp) enter an
    eager computation as one compiled call each, with the values of the plain code."""
    jax = pytest.importorskip("jax")
    from glf_losses._lib import l2_normalize

    z = jax.numpy.asarray(_views(8, 4, 1, seed=3)[0], dtype=jax.numpy.float32)
    jaxpr = jax.make_jaxpr(lambda a: glf_losses.simclr_loss(a, 2.0 * a))(z)
    calls = [e.params["name"] for e in jaxpr.eqns if "name" in e.params]
    assert calls.count("unit_rows") == 2
    assert calls.count("masked_logsumexp") == 1
    be = glf_losses.get_backend(z)
    fused = be.fuse(l2_normalize)
    assert fused is not l2_normalize
    # XLA may compute 1 / sqrt as one rsqrt: the same values to an ulp.
    np.testing.assert_allclose(
        np.asarray(fused(be.xp, z)), np.asarray(l2_normalize(be.xp, z)), rtol=1e-6
    )


@pytest.mark.parametrize("name", [n for n in AUTODIFF if n != "jax"])
def test_other_backends_run_the_pieces_as_they_are(name: str) -> None:
    """Eager PyTorch and TensorFlow gain nothing from compiling a piece: ``fuse`` is the
    identity there."""
    from glf_losses._lib import l2_normalize

    be = glf_losses.get_backend(to_backend(name, np.ones((2, 2), dtype=np.float32)))
    assert be.fuse(l2_normalize) is l2_normalize


def _fill_per_row_case(backend: str) -> tuple[Any, Any, np.ndarray]:
    """A (4, 6) product, a column per row (the offset of a second worker's rows) and the
    expected result: -2 at (i, columns[i]), every other entry untouched."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 6)).astype(np.float32)
    columns = np.array([4, 5, 0, 2])
    expected = x.copy()
    expected[np.arange(4), columns] = -2.0
    return to_backend(backend, x), to_backend(backend, columns), expected


def test_fill_per_row_writes_one_entry_per_row(backend: str) -> None:
    """The backend op behind KoLeo's self-exclusion sets exactly x[i, columns[i]]."""
    x, columns, expected = _fill_per_row_case(backend)
    be = glf_losses.get_backend(x)
    np.testing.assert_array_equal(to_numpy(be.fill_per_row(x, columns, -2.0)), expected)


@pytest.mark.parametrize(("backend", "options"), COMPILERS)
def test_fill_per_row_compiles(backend: str, options: dict[str, Any]) -> None:
    x, columns, expected = _fill_per_row_case(backend)
    be = glf_losses.get_backend(x)
    compiled = compile_fn(backend, lambda a, c: be.fill_per_row(a * 1.0, c, -2.0), **options)
    np.testing.assert_array_equal(to_numpy(compiled(x, columns)), expected)


def test_torch_fill_per_row_keeps_a_gradient_path_out_of_place() -> None:
    """A tensor that requires grad is not written in place (autograd would refuse it);
    the filled entries get no gradient."""
    torch = pytest.importorskip("torch")
    x = torch.ones((3, 3), requires_grad=True)
    be = glf_losses.get_backend(x)
    filled = be.fill_per_row(x, torch.arange(3), 0.0)
    filled.sum().backward()
    assert torch.equal(x.detach(), torch.ones((3, 3)))
    assert torch.equal(x.grad, 1.0 - torch.eye(3))
