"""Fixtures shared by the whole suite: one ``backend`` parameter over every installed
framework, an ``autodiff_backend`` one over those with gradients, and hypothesis profiles.

Select a profile with ``HYPOTHESIS_PROFILE`` (``ci``, the default, keeps the suite fast;
``dev`` draws more examples; ``thorough`` many more).
"""

from __future__ import annotations

import os

# Quiet TensorFlow's start-up logging in test output (set before TensorFlow loads).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest
from hypothesis import HealthCheck, settings

from glf_losses import testing

# Before any test creates a JAX array: float64 inputs must stay float64.
testing.enable_jax_x64()

_COMMON = {
    # Compilation and first-call dispatch make single examples slow at random moments.
    "deadline": None,
    # Reproducible runs: the same examples every time, on every machine and worker.
    "derandomize": True,
    "print_blob": True,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
}
settings.register_profile("ci", max_examples=6, **_COMMON)
settings.register_profile("dev", max_examples=40, **_COMMON)
settings.register_profile("thorough", max_examples=300, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

BACKENDS = testing.available_backends()
AUTODIFF_BACKENDS = testing.available_backends(autodiff_only=True)


@pytest.fixture(scope="session", params=BACKENDS, ids=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The name of each installed backend in turn."""
    return str(request.param)


@pytest.fixture(scope="session", params=AUTODIFF_BACKENDS, ids=AUTODIFF_BACKENDS)
def autodiff_backend(request: pytest.FixtureRequest) -> str:
    """The name of each installed backend with autodiff (torch, jax, tensorflow) in turn."""
    return str(request.param)
