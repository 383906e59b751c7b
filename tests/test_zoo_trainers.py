"""Every registered method in every trainer and framework front-end, stateful ones included.

- each method trains a step in the torch, JAX and TensorFlow trainers from the same
  configuration: finite parts, features that move, and the states it carries (MoCo's
  queue, NNCLR's support set, TiCo's covariance) advanced and checkpointed;
- the framework front-ends of the stateful methods compute the spec's loss with their
  current state and then hold exactly the state `registry.method_state` gives (torch in
  training mode, Keras unless ``training=False``, JAX through ``update_state``); in eval
  mode the state stays.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from glf_losses import registry
from glf_losses.testing import assert_close, to_numpy

BACKENDS = ["torch", "jax", "tensorflow"]
MODULES = {"torch": "torch", "jax": "flax", "tensorflow": "tensorflow"}
STATEFUL = [n for n in registry.names() if registry.get(n).states]
# Options that the small run needs: W-MSE whitens sub-batches of at least D + 1 rows, and
# the queues are kept small.
OVERRIDES: dict[str, dict[str, Any]] = {
    "wmse": {"proj_dim": 16, "loss_options": {"w_size": 32}},
    "moco": {"loss_options": {"queue_size": 128}},
    "nnclr": {"loss_options": {"support_size": 128}},
    "swav": {"loss_options": {"n_prototypes": 16}},
    "dino": {"loss_options": {"n_prototypes": 16}},
}


def _held_states(trainer: Any, backend: str) -> dict[str, np.ndarray]:
    names = [s.name for s in trainer.config.method_entry().states]
    if backend == "jax":
        return {n: np.array(trainer.state["method_state"][n]) for n in names}
    if backend == "torch":
        return {n: getattr(trainer.loss_fn, n).detach().cpu().numpy().copy() for n in names}
    return {n: np.array(getattr(trainer.loss_fn, n).value) for n in names}


def test_every_method_declares_what_a_trainer_feeds_it() -> None:
    for name in registry.names():
        entry = registry.get(name)
        assert len(entry.sources) == len(entry.inputs)
        # Only outputs that carry gradient can be ADC's: not a momentum target's.
        for n in entry.adc_inputs:
            source = entry.sources[entry.inputs.index(n)]
            assert not (source.startswith("target") and n == entry.adc_inputs[0]), name
    assert registry.get("moco").sources == ("online_a", "target_b")
    with pytest.raises(ValueError, match="sources must name one of"):
        registry.Method(name="bad", parts=registry.get("simclr").parts, inputs=("z_a", "z_b"),
                        adc_inputs=("z_a", "z_b"), sources=("online_a", "teacher_b"))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("method", registry.names())
def test_every_method_trains_a_step_in_every_trainer(
    tmp_path: Path, backend: str, method: str
) -> None:
    pytest.importorskip(MODULES[backend])
    from glf_train.data import load_dataset
    from glf_train.loop import make_trainer
    from glf_train.schedules import step_inputs
    from train_helpers import small_config

    config = small_config(
        tmp_path, backend, method=method, compile="off", batch_size=32,
        **OVERRIDES.get(method, {}),
    ).validate()
    dataset = load_dataset("digits")
    trainer = make_trainer(config, dataset)
    before = trainer.features(dataset.x_test[:8])
    states = _held_states(trainer, backend)
    images = trainer.to_device(dataset.x_train[:32])
    rng = np.random.default_rng(0)
    view_a, view_b = (
        trainer.to_device(rng.normal(size=images.shape).astype(np.float32)) for _ in range(2)
    )
    logs = trainer.train_step(view_a, view_b, images, step_inputs(config, 1, 5, 10))
    values = {k: float(v) for k, v in logs.items()}
    assert all(np.isfinite(v) for v in values.values()), values
    assert values["loss"] == pytest.approx(values["align"] + values["constrain"], rel=1e-5)
    assert not np.allclose(trainer.features(dataset.x_test[:8]), before)
    after = _held_states(trainer, backend)
    for name, value in after.items():
        assert value.shape == states[name].shape and np.isfinite(value).all()
        assert not np.allclose(value, states[name]), f"{method}'s {name} did not advance"
    if after:
        # The states are part of the checkpoint: a fresh trainer loads them back exactly.
        trainer.save(tmp_path / "state.ckpt", {"epoch": 0})
        fresh = make_trainer(config, dataset)
        fresh.load(tmp_path / "state.ckpt", lambda meta: None)
        for name, value in _held_states(fresh, backend).items():
            np.testing.assert_array_equal(value, after[name])


@pytest.mark.parametrize("backend", BACKENDS)
def test_heads_end_in_a_parameter_free_batchnorm_where_the_method_declares_it(
    tmp_path: Path, backend: str
) -> None:
    # SimSiam's and MoCo v3's authors standardise the projection (BatchNorm, no affine);
    # SimCLR's head ends in a plain linear layer.
    pytest.importorskip(MODULES[backend])
    from glf_train.data import load_dataset
    from glf_train.loop import make_trainer
    from train_helpers import small_config

    dataset = load_dataset("digits")
    for method in ("simsiam", "mocov3", "simclr"):
        assert registry.get(method).projector_last_bn == (method != "simclr")
        config = small_config(tmp_path, backend, method=method, compile="off").validate()
        trainer = make_trainer(config, dataset)
        if backend == "torch":
            from torch import nn

            last = trainer.online.head[-1]
            ends_in_bn = isinstance(last, nn.BatchNorm1d) and not last.affine
        elif backend == "jax":
            head_stats = trainer.state["batch_stats"]["online"]["head"]
            head_params = trainer.state["params"]["online"]["head"]
            last = f"bn{config.method_entry().projector_layers - 1}"
            ends_in_bn = last in head_stats and last not in head_params
        else:
            last = trainer.head.layers[-1]
            ends_in_bn = last.name == "out_bn" and not last.trainable_weights
        assert ends_in_bn == registry.get(method).projector_last_bn, (backend, method)


def _inputs(method: str, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    entry = registry.get(method)
    return tuple(rng.normal(size=(8, 4)) for _ in entry.inputs)


def _held(method: str, rng: np.random.Generator) -> tuple[dict[str, np.ndarray], ...]:
    """(parameters, states) of the method at small sizes, drawn at random."""
    sizes = {"dim": 4, "queue_size": 12, "support_size": 12, "n_prototypes": 6}
    entry = registry.get(method)
    return tuple(
        {h.name: rng.normal(size=tuple(sizes[n] for n in h.shape)) for h in held}
        for held in (entry.parameters, entry.states)
    )


@pytest.mark.parametrize("framework", BACKENDS)
@pytest.mark.parametrize("method", STATEFUL)
def test_stateful_front_ends_use_then_advance_their_state(method: str, framework: str) -> None:
    rng = np.random.default_rng(1)
    entry = registry.get(method)
    inputs = _inputs(method, rng)
    parameters, state = _held(method, rng)
    want = float(registry.method_parts(method, *inputs, **parameters, **state).total)
    want_state = registry.method_state(method, state, *inputs, **parameters)
    values = {**parameters, **state}
    sizes = {n: values[h.name].shape[i] for h in (*entry.parameters, *entry.states)
             for i, n in enumerate(h.shape) if n != "dim"}
    if framework == "jax":
        pytest.importorskip("jax")
        import jax.numpy as jnp
        from glf_losses.backends import jax as jb

        # float64 throughout: the test session enables JAX's x64 (conftest.py).
        arrays = [jnp.asarray(x) for x in inputs]
        held = [jnp.asarray(values[name]) for name in entry.held]
        got = float(getattr(jb, f"{method}_loss")(*arrays, *held))
        new = jb.update_state(
            method, {k: jnp.asarray(v) for k, v in state.items()}, *arrays,
            **{k: jnp.asarray(v) for k, v in parameters.items()},
        )
        assert got == pytest.approx(want, rel=1e-10)
        for name, value in want_state.items():
            assert_close(to_numpy(new[name]), value, "float64")
        return
    pytest.importorskip(framework)
    if framework == "torch":
        import torch
        from glf_losses.backends import torch as tb

        loss_fn = tb.front_end(method)(4, **sizes).double()
        with torch.no_grad():
            for name, value in values.items():
                getattr(loss_fn, name).copy_(torch.tensor(value))
        arrays = [torch.tensor(x) for x in inputs]
        loss_fn.eval()
        assert float(loss_fn(*arrays).detach()) == pytest.approx(want, rel=1e-10)
        held = {n: getattr(loss_fn, n).numpy().copy() for n in state}
        loss_fn.train()
        assert float(loss_fn(*arrays).detach()) == pytest.approx(want, rel=1e-10)
    else:
        import keras
        import tensorflow as tf
        from glf_losses.backends import tensorflow as tfb

        loss_fn = tfb.front_end(method)(4, **sizes, dtype="float64")
        for name, value in values.items():
            getattr(loss_fn, name).assign(value)
        arrays = [tf.constant(x) for x in inputs]
        assert float(loss_fn(*arrays, training=False)) == pytest.approx(want, rel=1e-10)
        held = {n: np.array(getattr(loss_fn, n).value) for n in state}
        assert float(loss_fn(*arrays)) == pytest.approx(want, rel=1e-10)
        assert isinstance(loss_fn.weights[0], keras.Variable)
    # Eval mode kept the state; the training call advanced it as the spec says.
    for name, value in state.items():
        np.testing.assert_array_equal(held[name], value)
        got_state = getattr(loss_fn, name)
        got_state = got_state.numpy() if framework == "torch" else np.asarray(got_state.value)
        assert_close(got_state, want_state[name], "float64")


def test_dino_with_prototypes_is_dino_of_the_cosine_scores() -> None:
    from glf_losses import methods

    rng = np.random.default_rng(2)
    z_a, z_b, t_a, t_b = rng.normal(size=(4, 8, 5))
    prototypes, center = rng.normal(size=(6, 5)), rng.normal(size=6)

    def scores(z: np.ndarray) -> np.ndarray:
        unit = z / np.linalg.norm(z, axis=1, keepdims=True)
        return unit @ (prototypes / np.linalg.norm(prototypes, axis=1, keepdims=True)).T

    student, teacher = np.stack([scores(z_a), scores(z_b)]), np.stack([scores(t_a), scores(t_b)])
    got = methods.dino_prototype_parts(z_a, z_b, t_a, t_b, center, prototypes,
                                       teacher_temperature=0.07)
    want = methods.dino_parts(student, teacher, center, teacher_temperature=0.07)
    assert float(got.total) == pytest.approx(float(want.total), rel=1e-12)
    new = methods.dino_prototype_center(center, t_a, t_b, prototypes, 0.8)
    np.testing.assert_allclose(new, 0.8 * center + 0.2 * teacher.mean(axis=(0, 1)), rtol=1e-12)
