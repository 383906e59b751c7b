"""SwAV's queue: earlier projections enlarge Sinkhorn's input; only the batch's codes count."""

from __future__ import annotations

import numpy as np
import pytest

import glf_losses
from glf_losses import align, testing
from glf_losses.constrain import sinkhorn


def _example() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    s_a, s_b = np.tanh(rng.normal(size=(2, 6, 5)))
    q_a, q_b = np.tanh(rng.normal(size=(2, 12, 5)))
    return s_a, s_b, q_a, q_b


def test_queue_matches_its_definition_on_every_backend(backend: str) -> None:
    s_a, s_b, q_a, q_b = _example()
    codes_a = sinkhorn(np.concatenate([q_a, s_a]))[len(q_a) :]
    codes_b = sinkhorn(np.concatenate([q_b, s_b]))[len(q_b) :]
    expected = float(align.swapped_prediction(s_a, s_b, codes_a, codes_b))
    args = [testing.to_backend(backend, x) for x in (s_a, s_b, q_a, q_b)]
    got = glf_losses.swav_loss(args[0], args[1], queue_a=args[2], queue_b=args[3])
    testing.assert_close(testing.to_numpy(got), expected, "float64", scale=1.0)
    # The queue changes the codes, hence the loss.
    assert abs(float(glf_losses.swav_loss(s_a, s_b)) - expected) > 1e-6


def test_queue_with_the_wrong_number_of_prototypes_is_refused() -> None:
    s_a, s_b, q_a, _ = _example()
    with pytest.raises(ValueError, match="queue_b must have one column per prototype"):
        glf_losses.swav_loss(s_a, s_b, queue_a=q_a, queue_b=q_a[:, :3])


def test_queue_under_jit() -> None:
    jax = pytest.importorskip("jax")
    s_a, s_b, q_a, q_b = _example()
    f = jax.jit(lambda *a: glf_losses.swav_loss(a[0], a[1], queue_a=a[2], queue_b=a[3]))
    got = float(f(*(jax.numpy.asarray(x) for x in (s_a, s_b, q_a, q_b))))
    assert got == pytest.approx(float(glf_losses.swav_loss(s_a, s_b, queue_a=q_a, queue_b=q_b)))
