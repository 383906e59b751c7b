"""Every field of ``ADC`` reaches every framework front-end, compiled as users compile them.

The ``ADC`` dataclass is the one definition of ADC's settings: the jitted JAX functions take
it (or its fields) as static arguments, the torch modules and Keras layers take it as
``adc=``. Each field is set to a value other than its default and the front-ends are run
under ``jax.jit``, ``tf.function(jit_compile=True)`` and ``torch.compile``; their values
must equal the eager NumPy float64 spec. A new field fails here until it is given a value
below, so no front-end can silently drop one.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

import glf_losses
from glf_losses import ADC

# A value other than the default for every field of ADC (valid at N = 12, M = 24).
NON_DEFAULT: dict[str, Any] = {
    "nu": 0.5,
    "upsilon": 2.0,
    "rho": 5.0,
    "bandwidth": "median",
    "prior_bandwidth": 0.7,
    "perplexity": 6.0,
    "prior_perplexity": 4.0,
    "perplexity_steps": 7,
    "normalize": False,
    "prior_other_view": True,
}


def test_every_field_has_a_non_default_value() -> None:
    fields = {f.name: f.default for f in dataclasses.fields(ADC)}
    assert set(NON_DEFAULT) == set(fields)
    for name, value in NON_DEFAULT.items():
        assert value != fields[name], name


def _inputs() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    base = rng.normal(size=(12, 6))
    z_a, z_b = base + 0.4 * rng.normal(size=(2, 12, 6))
    prior = rng.integers(0, 256, size=(12, 1, 4, 4))
    return z_a, z_b, prior


@pytest.mark.parametrize("field", list(NON_DEFAULT))
def test_every_adc_field_through_every_compiled_front_end(field: str) -> None:
    # A perplexity that fits the batch, then the field under test.
    settings = {"perplexity": 8.0, field: NON_DEFAULT[field]}
    adc = ADC(**settings)
    z_a, z_b, prior = _inputs()
    want_adc = float(glf_losses.adc_loss(z_a, z_b, prior, **settings))
    want_simclr = float(glf_losses.simclr_loss(z_a, z_b) + adc(z_a, z_b, prior))
    # The setting matters: it changes the value.
    assert want_adc != pytest.approx(float(ADC(perplexity=8.0)(z_a, z_b, prior)), rel=1e-9)

    checked = 0
    try:
        import jax
        import jax.numpy as jnp
        from glf_losses.backends import jax as jb
    except ImportError:
        pass
    else:
        a, b, p = (jnp.asarray(x) for x in (z_a, z_b, prior))
        assert float(jb.adc_loss(a, b, p, **settings)) == pytest.approx(want_adc, rel=1e-9)
        inside = jax.jit(lambda a, b, p: jb.simclr_loss(a, b, p, adc=adc))
        assert float(inside(a, b, p)) == pytest.approx(want_simclr, rel=1e-9)
        checked += 1
    try:
        import tensorflow as tf
        from glf_losses.backends import tensorflow as tfb
    except ImportError:
        pass
    else:
        layer, method = tfb.ADCLoss(adc), tfb.SimCLRLoss(adc=adc)
        a, b, p = (tf.constant(x) for x in (z_a, z_b, prior))
        both = tf.function(lambda a, b, p: (layer(a, b, p), method(a, b, prior=p)),
                           jit_compile=True)
        got_adc, got_simclr = both(a, b, p)
        assert float(got_adc) == pytest.approx(want_adc, rel=1e-9)
        assert float(got_simclr) == pytest.approx(want_simclr, rel=1e-9)
        checked += 1
    try:
        import torch
        from glf_losses.backends import torch as tb
    except ImportError:
        pass
    else:
        torch._dynamo.reset()
        module, method = tb.ADCLoss(adc), tb.SimCLRLoss(adc=adc)
        compiled = torch.compile(
            lambda a, b, p: (module(a, b, p), method(a, b, prior=p)),
            fullgraph=True, dynamic=False, backend="aot_eager",
        )
        got_adc, got_simclr = compiled(*(torch.tensor(x) for x in (z_a, z_b, prior)))
        assert float(got_adc) == pytest.approx(want_adc, rel=1e-9)
        assert float(got_simclr) == pytest.approx(want_simclr, rel=1e-9)
        checked += 1
    if not checked:
        pytest.skip("no framework with a compiler is installed")


def test_the_jitted_adc_takes_prior_other_view() -> None:
    # The call that used to fail: a field the jitted function had not listed as static.
    jnp = pytest.importorskip("jax.numpy")
    from glf_losses.backends import jax as jb

    z = jnp.ones((16, 8)) + jnp.arange(128.0).reshape(16, 8)
    got = jb.adc_loss(z, z[::-1], z, perplexity=5.0, prior_other_view=True)
    want = glf_losses.adc_loss(z, z[::-1], z, perplexity=5.0, prior_other_view=True)
    assert float(got) == pytest.approx(float(want), rel=1e-9)


def test_settings_are_checked_when_bound() -> None:
    with pytest.raises(TypeError, match=r"prior_other_view must be a bool \(True or False\)"):
        ADC(prior_other_view="yes")
    with pytest.raises(ValueError, match="perplexity must be > 1"):
        ADC(perplexity=0.5)
    assert ADC(prior_other_view=np.bool_(True)).prior_other_view is True
    assert hash(ADC(nu=np.float32(2.0))) == hash(ADC(nu=2.0))
