"""Bad input fails early, with the right exception and a message naming the argument."""

from __future__ import annotations

import functools
import importlib
import inspect
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import glf_losses
from glf_losses import align, constrain
from glf_losses.testing import available_backends, to_backend, to_numpy

N, D = 6, 4

FUNCTIONS: list[Callable[..., Any]] = [
    glf_losses.byol_loss,
    glf_losses.byol_parts,
    glf_losses.barlow_twins_loss,
    glf_losses.barlow_twins_parts,
    glf_losses.swav_loss,
    glf_losses.swav_parts,
    glf_losses.simclr_loss,
    glf_losses.simclr_parts,
    align.normalized_mse,
    align.invariance,
    align.swapped_prediction,
    align.infonce_alignment,
    constrain.redundancy_reduction,
    constrain.sinkhorn,
    constrain.uniformity,
]
MULTI = [f for f in FUNCTIONS if f is not constrain.sinkhorn]
# Batch statistics (a variance, a negative) need two samples.
NEED_TWO = [
    glf_losses.barlow_twins_loss,
    glf_losses.barlow_twins_parts,
    glf_losses.simclr_loss,
    glf_losses.simclr_parts,
    align.invariance,
    constrain.redundancy_reduction,
]


def _name(f: Callable[..., Any]) -> str:
    return f.__name__


def _array_args(f: Callable[..., Any]) -> list[str]:
    """The names of ``f``'s array arguments: its parameters without defaults."""
    return [p.name for p in inspect.signature(f).parameters.values() if p.default is p.empty]


def _valid(f: Callable[..., Any], n: int = N, d: int = D) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.uniform(0.1, 1.0, (n, d)) for _ in _array_args(f)]


def _args(backend: str, arrays: list[np.ndarray]) -> list[Any]:
    return [to_backend(backend, a) for a in arrays]


# --- arrays -----------------------------------------------------------------------------

OTHERS = [b for b in available_backends() if b != "numpy"]


@pytest.mark.parametrize("other", OTHERS)
@pytest.mark.parametrize("f", MULTI, ids=_name)
def test_mixed_frameworks_name_the_odd_argument(f: Callable[..., Any], other: str) -> None:
    names = _array_args(f)
    for i, name in enumerate(names):
        args: list[Any] = _valid(f)
        args[i] = to_backend(other, args[i])
        with pytest.raises(TypeError, match=rf"one framework.*\b{name} is a {other} array"):
            f(*args)


@pytest.mark.parametrize("f", MULTI, ids=_name)
def test_mismatched_shapes_name_the_argument(backend: str, f: Callable[..., Any]) -> None:
    names = _array_args(f)
    for i in range(1, len(names)):
        for shape in ((N, D + 1), (N + 1, D)):
            arrays = _valid(f)
            arrays[i] = np.ones(shape)
            with pytest.raises(ValueError, match=rf"\b{names[i]}\b.*same shape"):
                f(*_args(backend, arrays))


@pytest.mark.parametrize("f", FUNCTIONS, ids=_name)
def test_non_matrix_inputs_name_the_argument(backend: str, f: Callable[..., Any]) -> None:
    names = _array_args(f)
    for shape in ((N,), (N, D, 1), ()):
        arrays = [np.ones(shape) for _ in names]
        with pytest.raises(ValueError, match=rf"\b{names[0]} must be a 2-D array"):
            f(*_args(backend, arrays))


@pytest.mark.parametrize("f", FUNCTIONS, ids=_name)
def test_non_floating_inputs_name_the_argument(backend: str, f: Callable[..., Any]) -> None:
    names = _array_args(f)
    for dtype in ("int64", "int32", "bool"):
        for i, name in enumerate(names):
            args = _args(backend, _valid(f))
            args[i] = to_backend(backend, np.ones((N, D)), dtype)
            match = rf"\b{name} must have a real floating-point dtype"
            with pytest.raises(TypeError, match=match):
                f(*args)


@pytest.mark.parametrize("f", NEED_TWO, ids=_name)
def test_single_sample_batches_are_refused(backend: str, f: Callable[..., Any]) -> None:
    with pytest.raises(ValueError, match=r"\bz_a must have at least 2 rows.*got 1"):
        f(*_args(backend, _valid(f, n=1)))


def test_unsupported_array_types_are_refused() -> None:
    with pytest.raises(TypeError, match=r"argument 0 must be an array.*list"):
        glf_losses.get_namespace([1.0, 2.0])
    with pytest.raises(TypeError, match=r"argument 1 must be an array.*float"):
        glf_losses.get_namespace(np.ones(2), 3.0)
    with pytest.raises(TypeError, match="expected at least one array"):
        glf_losses.get_namespace()
    z = np.ones((N, D))
    with pytest.raises(TypeError, match=r"\bz_a must be an array.*list"):
        glf_losses.simclr_loss(z.tolist(), z)
    with pytest.raises(TypeError, match=r"\bz_b must be an array.*tuple"):
        glf_losses.barlow_twins_loss(z, tuple(z.tolist()))


@pytest.mark.parametrize("other", OTHERS)
def test_get_namespace_refuses_mixed_frameworks(other: str) -> None:
    with pytest.raises(TypeError, match=rf"argument 1 is a {other} array"):
        glf_losses.get_namespace(np.ones(2), to_backend(other, np.ones(2)))


# --- hyperparameters --------------------------------------------------------------------

WITH_TEMPERATURE = [
    glf_losses.swav_loss,
    glf_losses.swav_parts,
    glf_losses.simclr_loss,
    glf_losses.simclr_parts,
    align.swapped_prediction,
    align.infonce_alignment,
    constrain.uniformity,
]
WITH_EPSILON = [glf_losses.swav_loss, glf_losses.swav_parts, constrain.sinkhorn]


@pytest.mark.parametrize("f", WITH_TEMPERATURE, ids=_name)
def test_bad_temperature_is_refused(backend: str, f: Callable[..., Any]) -> None:
    args = _args(backend, _valid(f))
    for value in (0.0, -0.1, -math.inf, math.nan, math.inf):
        with pytest.raises(ValueError, match=r"\btemperature must be"):
            f(*args, temperature=value)


@pytest.mark.parametrize("f", WITH_EPSILON, ids=_name)
def test_bad_epsilon_is_refused(backend: str, f: Callable[..., Any]) -> None:
    args = _args(backend, _valid(f))
    for value in (0.0, -0.05, math.nan):
        with pytest.raises(ValueError, match=r"\bepsilon must be"):
            f(*args, epsilon=value)


@pytest.mark.parametrize("f", [*WITH_TEMPERATURE, *WITH_EPSILON], ids=_name)
def test_non_numeric_hyperparameters_are_refused(f: Callable[..., Any]) -> None:
    arrays = _valid(f)
    keyword = "temperature" if f in WITH_TEMPERATURE else "epsilon"
    for value in ("0.1", np.ones(1), True, None):
        with pytest.raises(TypeError, match=rf"\b{keyword} must be a real number"):
            f(*arrays, **{keyword: value})


@pytest.mark.parametrize(
    ("f", "keyword", "value", "error"),
    [
        (glf_losses.barlow_twins_loss, "lambd", -0.1, ValueError),
        (glf_losses.barlow_twins_loss, "eps", -1e-5, ValueError),
        (glf_losses.barlow_twins_loss, "scale", math.nan, ValueError),
        (glf_losses.barlow_twins_parts, "lambd", math.inf, ValueError),
        (align.invariance, "eps", -1.0, ValueError),
        (constrain.redundancy_reduction, "lambd", -1.0, ValueError),
        (constrain.redundancy_reduction, "eps", math.nan, ValueError),
        (glf_losses.swav_loss, "sinkhorn_iters", 0, ValueError),
        (glf_losses.swav_loss, "sinkhorn_iters", 2.0, TypeError),
        (constrain.sinkhorn, "n_iters", 0, ValueError),
        (constrain.sinkhorn, "n_iters", True, TypeError),
    ],
    ids=lambda x: x.__name__ if callable(x) else str(x),
)
def test_other_bad_hyperparameters_are_refused(
    f: Callable[..., Any], keyword: str, value: Any, error: type[Exception]
) -> None:
    with pytest.raises(error, match=rf"\b{keyword} must be"):
        f(*_valid(f), **{keyword: value})


def test_numpy_scalar_hyperparameters_are_accepted() -> None:
    z = np.random.default_rng(0).normal(size=(6, 3))
    expected = float(glf_losses.simclr_loss(z, z[::-1], temperature=0.25))
    assert float(glf_losses.simclr_loss(z, z[::-1], temperature=np.float32(0.25))) == expected
    scores = np.tanh(z)
    assert np.isfinite(glf_losses.swav_loss(scores, scores, sinkhorn_iters=np.int64(2)))


# --- flags, ADC rules and SwAV prototypes ----------------------------------------------------


def _adc_inputs(backend: str = "numpy") -> tuple[Any, Any, Any]:
    rng = np.random.default_rng(0)
    z_a, z_b = rng.normal(size=(2, N, D))
    pixels = rng.integers(0, 256, size=(N, 3, 3))
    return tuple(to_backend(backend, a) for a in (z_a, z_b, pixels))  # type: ignore[return-value]


@pytest.mark.parametrize("flag", ["normalize", "prior_other_view"])
def test_numpy_bools_are_accepted_as_flags(backend: str, flag: str) -> None:
    z_a, z_b, prior = _adc_inputs(backend)
    for value in (True, False):
        want = glf_losses.adc_loss(z_a, z_b, prior, perplexity=3.0, **{flag: value})
        for given in (np.bool_(value), np.float64(1.0) > (0.0 if value else 2.0)):
            got = glf_losses.adc_loss(z_a, z_b, prior, perplexity=3.0, **{flag: given})
            np.testing.assert_array_equal(to_numpy(got), to_numpy(want))
            rule = glf_losses.ADC(perplexity=3.0, **{flag: given})
            np.testing.assert_array_equal(to_numpy(rule(z_a, z_b, prior)), to_numpy(want))


@pytest.mark.parametrize("flag", ["normalize", "prior_other_view"])
def test_non_bool_flags_are_refused(flag: str) -> None:
    z_a, z_b, prior = _adc_inputs()
    for value, shown in (("yes", "str 'yes'"), (1, "int 1"), (None, "NoneType None"),
                         (np.array(True), "numpy.ndarray")):
        match = rf"\b{flag} must be a bool \(True or False\), got {shown}"
        with pytest.raises(TypeError, match=match):
            glf_losses.adc_loss(z_a, z_b, prior, perplexity=3.0, **{flag: value})


def _front_end_makers() -> dict[str, Callable[[Any], Any]]:
    """'framework.Class' -> a constructor taking ``adc``, for every loss front-end."""
    makers: dict[str, Callable[[Any], Any]] = {}
    for framework in ("torch", "tensorflow"):
        if framework not in available_backends():
            continue
        module = importlib.import_module(f"glf_losses.backends.{framework}")
        for cls in ("BYOLLoss", "BarlowTwinsLoss", "SimCLRLoss", "ADCLoss"):
            makers[f"{framework}.{cls}"] = getattr(module, cls)
        makers[f"{framework}.SwAVLoss"] = functools.partial(module.SwAVLoss, D, 3)
    return makers


@pytest.mark.parametrize("bad", ["yes", True, {"nu": 1.0}], ids=["str", "bool", "dict"])
@pytest.mark.parametrize("front_end", sorted(_front_end_makers()))
def test_front_ends_refuse_an_adc_that_is_not_an_adc(front_end: str, bad: Any) -> None:
    make = _front_end_makers()[front_end]
    with pytest.raises(TypeError, match=r"adc must be a glf_losses\.ADC .* or None, got "):
        make(adc=bad)
    assert make(adc=glf_losses.ADC()).adc == glf_losses.ADC()


jax_only = pytest.mark.skipif("jax" not in available_backends(), reason="needs JAX")


@jax_only
def test_jax_front_ends_check_adc_and_parts() -> None:
    from glf_losses.backends import jax as jb

    z_a, z_b, prior = _adc_inputs("jax")
    with pytest.raises(TypeError, match=r"adc must be a glf_losses\.ADC .* got str 'yes'"):
        jb.simclr_loss(z_a, z_b, prior, adc="yes")
    for bad in ("no", 0, None):
        with pytest.raises(TypeError, match=r"\bparts must be a bool \(True or False\)"):
            jb.barlow_twins_loss(z_a, z_b, parts=bad)
    parts = jb.simclr_loss(z_a, z_b, parts=np.bool_(True))
    assert isinstance(parts, glf_losses.GLFParts)
    assert float(parts.total) == float(jb.simclr_loss(z_a, z_b, parts=False))
    # prior_other_view is static too: a traced bool could not choose the prior's mask.
    for value in (True, False):
        got = jb.adc_loss(z_a, z_b, prior, perplexity=3.0, prior_other_view=value)
        want = glf_losses.adc_loss(*_adc_inputs(), perplexity=3.0, prior_other_view=value)
        np.testing.assert_allclose(float(got), want, rtol=1e-10)


def _swav_front_ends(dim: int, n_prototypes: int) -> dict[str, Callable[..., Any]]:
    """framework -> SwAV loss of (z_a, z_b) with (n_prototypes, dim) prototypes."""
    fronts: dict[str, Callable[..., Any]] = {}
    for framework in ("torch", "tensorflow"):
        if framework in available_backends():
            module = importlib.import_module(f"glf_losses.backends.{framework}")
            fronts[framework] = module.SwAVLoss(dim, n_prototypes)
    if "jax" in available_backends():
        from glf_losses.backends import jax as jb

        w = to_backend("jax", np.ones((n_prototypes, dim)))
        fronts["jax"] = lambda z_a, z_b: jb.swav_loss(z_a, z_b, w)
    return fronts


@pytest.mark.parametrize("framework", ["torch", "tensorflow", "jax"])
def test_swav_prototypes_of_the_wrong_width_are_named(framework: str) -> None:
    fronts = _swav_front_ends(D + 1, 3)
    if framework not in fronts:
        pytest.skip(f"{framework} is not installed")
    z = to_backend(framework, np.ones((N, D)), "float32")
    match = rf"prototypes must have shape \(K, D\) with D = {D}, the width of z_a, got shape"
    with pytest.raises(ValueError, match=match):
        fronts[framework](z, z)


@pytest.mark.parametrize("framework", ["torch", "tensorflow"])
def test_swav_layers_need_two_prototypes(framework: str) -> None:
    if framework not in available_backends():
        pytest.skip(f"{framework} is not installed")
    module = importlib.import_module(f"glf_losses.backends.{framework}")
    for k in (0, 1):
        with pytest.raises(ValueError, match=rf"\bn_prototypes must be >= 2, got {k}"):
            module.SwAVLoss(4, k)
    with pytest.raises(ValueError, match=r"\bdim must be >= 1, got 0"):
        module.SwAVLoss(0, 4)
    with pytest.raises(TypeError, match=r"\bn_prototypes must be an int"):
        module.SwAVLoss(4, 2.5)


def test_swav_needs_two_prototypes(backend: str) -> None:
    one = to_backend(backend, np.ones((N, 1)))
    match = r"scores_a must have at least 2 columns, one per prototype .* got shape"
    with pytest.raises(ValueError, match=match):
        glf_losses.swav_loss(one, one)
    if "jax" in available_backends() and backend == "jax":
        from glf_losses.backends import jax as jb

        z = to_backend("jax", np.ones((N, D)))
        with pytest.raises(ValueError, match=r"prototypes must have at least 2 rows"):
            jb.swav_loss(z, z, to_backend("jax", np.ones((1, D))))
