"""Errors that refuse a setting say what to do instead, not only what was wrong."""

from __future__ import annotations

import numpy as np
import pytest

import glf_losses


def _views(n: int, d: int = 4) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, d)), rng.normal(size=(n, d))


def test_traced_temperature_names_static_argnames_and_the_jitted_front_ends() -> None:
    jax = pytest.importorskip("jax")
    z_a, z_b = _views(8)
    with pytest.raises(TypeError) as info:
        jax.jit(glf_losses.simclr_loss)(z_a, z_b, 0.5)
    message = str(info.value)
    assert "temperature must be a real number" in message
    assert "static_argnames='temperature'" in message
    assert "glf_losses.backends.jax" in message
    # The fix it names works.
    fixed = jax.jit(glf_losses.simclr_loss, static_argnames="temperature")
    assert np.isfinite(float(fixed(z_a, z_b, temperature=0.5)))


def test_array_hyperparameter_outside_jit_says_to_pass_a_number() -> None:
    z_a, z_b = _views(8)
    with pytest.raises(TypeError, match=r"pass float\(temperature\)"):
        glf_losses.simclr_loss(z_a, z_b, temperature=np.asarray(0.5))


def test_small_batch_perplexity_names_both_ways_out() -> None:
    z_a, z_b = _views(8)  # M = 16 stacked rows, below the default perplexity of 30
    with pytest.raises(ValueError) as info:
        glf_losses.adc_loss(z_a, z_b, z_a)
    message = str(info.value)
    assert "perplexity must lie in (1, M - 1] = (1, 15]" in message
    assert "pass perplexity=" in message and "at most 15" in message
    assert "batch of at least 16 samples" in message
    # Both fixes it names work: a smaller perplexity, or the batch it asks for.
    assert np.isfinite(glf_losses.adc_loss(z_a, z_b, z_a, perplexity=5.0))
    big_a, big_b = _views(16)
    assert np.isfinite(glf_losses.adc_loss(big_a, big_b, big_a))


def test_prior_perplexity_bound_names_the_prior_argument() -> None:
    z_a, z_b = _views(8)
    # The features accept 15; the prior without each anchor's other view has 14 candidates.
    with pytest.raises(ValueError) as info:
        glf_losses.adc_loss(z_a, z_b, z_a, perplexity=15.0)
    message = str(info.value)
    assert "at most 14" in message and "prior_perplexity=" in message


@pytest.mark.parametrize(
    ("call", "fix"),
    [
        (lambda: glf_losses.simclr_loss(np.ones((2, 3, 4)), np.ones((2, 3, 4))), "reshape"),
        (lambda: glf_losses.simclr_loss(np.ones((4, 3), int), np.ones((4, 3), int)), "cast"),
        (lambda: glf_losses.simclr_loss(*_views(1)), "batch of at least 2 samples"),
        (lambda: glf_losses.simclr_loss(*_views(4), temperature=-1.0), "positive"),
        (lambda: glf_losses.swav_loss(*_views(4), sinkhorn_iters=2.5), "int("),
        (lambda: glf_losses.adc_loss(*_views(16), np.ones((16, 3)), rho=2.0), "rho="),
        (lambda: glf_losses.simclr_loss([[1.0, 0.0]] * 4, np.eye(4, 2)), "numpy.asarray"),
        (lambda: glf_losses.adc_loss(*_views(16), np.ones((8, 3))), "same batch"),
        (lambda: glf_losses.adc.method_weights("no_such_method"), "registry.register"),
    ],
)
def test_refused_settings_say_what_to_pass(call, fix: str) -> None:
    with pytest.raises((TypeError, ValueError)) as info:
        call()
    assert fix in str(info.value)
