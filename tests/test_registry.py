"""The method registry: one declaration makes a method's front-ends in every framework and
its training in every trainer; ADC's settings are defined once, by the ``ADC`` fields."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import glf_losses
from glf_losses import ADC, GLFParts, registry
from glf_losses._lib import l2_normalize


def _toy_parts(z_a: Any, z_b: Any, weight: float = 1.0) -> GLFParts:
    """A toy method: mean squared distance of the normalised views, a constraint of 0."""
    xp = glf_losses.get_namespace(z_a, z_b)
    u_a, u_b = l2_normalize(xp, z_a), l2_normalize(xp, z_b)
    align = weight * xp.mean(xp.sum((u_a - u_b) ** 2, axis=1))
    return GLFParts(align, 0.0 * align)


@pytest.fixture
def toy() -> Iterator[registry.Method]:
    entry = registry.register(registry.Method(
        name="toy_alignment", parts=_toy_parts, inputs=("z_a", "z_b"),
        adc_inputs=("z_a", "z_b"), hyperparameters={"weight": 1.0}, adc_weights=(2.0, 3.0),
        title="Toy alignment",
    ))
    try:
        yield entry
    finally:
        registry.unregister("toy_alignment")


def test_declared_methods_have_a_spec_and_front_ends() -> None:
    assert set(registry.names()) >= {"barlow_twins", "byol", "simclr", "swav"}
    for name in registry.names():
        entry = registry.get(name)
        assert callable(getattr(glf_losses, f"{name}_loss"))
        assert set(entry.adc_inputs) <= set(entry.inputs)
        assert glf_losses.adc.method_weights(name) == entry.adc_weights
    with pytest.raises(ValueError, match=r"method must be one of .*barlow_twins"):
        registry.get("barlow")


def test_a_declared_toy_method_gets_front_ends_in_every_framework(toy: Any) -> None:
    rng = np.random.default_rng(0)
    z_a, z_b = rng.normal(size=(2, 16, 8))
    want = float(_toy_parts(z_a, z_b, weight=2.0).total)
    adc = ADC.for_method("toy_alignment", perplexity=4.0)
    assert (adc.nu, adc.upsilon) == (2.0, 3.0)
    with_adc = want + float(adc(z_a, z_b, z_a))
    torch = pytest.importorskip("torch")
    from glf_losses.backends import torch as tb

    loss_fn = tb.ToyAlignmentLoss(weight=2.0)
    assert float(loss_fn(torch.tensor(z_a), torch.tensor(z_b))) == pytest.approx(want)
    assert float(tb.front_end("toy_alignment")(weight=2.0, adc=adc)(
        torch.tensor(z_a), torch.tensor(z_b), prior=torch.tensor(z_a))) == pytest.approx(with_adc)
    jnp = pytest.importorskip("jax.numpy")
    from glf_losses.backends import jax as jb

    assert float(jb.toy_alignment_loss(jnp.asarray(z_a), jnp.asarray(z_b), weight=2.0)) == \
        pytest.approx(want, rel=1e-5)
    tf = pytest.importorskip("tensorflow")
    from glf_losses.backends import tensorflow as tfb

    layer = tfb.ToyAlignmentLoss(weight=2.0, adc=adc, name="toy")
    assert float(layer(tf.constant(z_a), tf.constant(z_b), prior=tf.constant(z_a))) == \
        pytest.approx(with_adc)
    with pytest.raises(TypeError, match="has no hyperparameter 'temperature'; its "
                       "hyperparameters are: weight"):
        tb.ToyAlignmentLoss(temperature=0.1)


@pytest.mark.parametrize("backend", ["torch", "jax", "tensorflow"])
def test_a_declared_toy_method_trains_in_every_trainer(
    toy: Any, tmp_path: Path, backend: str
) -> None:
    pytest.importorskip({"torch": "torch", "jax": "flax", "tensorflow": "tensorflow"}[backend])
    from glf_train.data import load_dataset
    from glf_train.loop import make_trainer
    from glf_train.schedules import step_inputs
    from train_helpers import small_config

    config = small_config(
        tmp_path, backend, method="toy_alignment", adc=True, compile="off",
        loss_options={"weight": 2.0}, uniformity_weight=0.5,
    ).validate()
    dataset = load_dataset("digits")
    trainer = make_trainer(config, dataset)
    before = trainer.features(dataset.x_test[:8])
    images = trainer.to_device(dataset.x_train[:64])
    rng = np.random.default_rng(0)
    view_a, view_b = (
        trainer.to_device(rng.normal(size=images.shape).astype(np.float32)) for _ in range(2)
    )
    logs = trainer.train_step(view_a, view_b, images, step_inputs(config, 0, 0, 10))
    values = {k: float(v) for k, v in logs.items()}
    assert all(np.isfinite(v) for v in values.values())
    # ADC and the uniformity control join the constraining part; the toy's own is 0.
    assert values["constrain"] != 0.0 and values["align"] > 0.0
    assert not np.allclose(trainer.features(dataset.x_test[:8]), before)


def test_the_trainer_refuses_options_the_method_does_not_have(toy: Any) -> None:
    from glf_train.config import RunConfig

    with pytest.raises(ValueError, match="--loss-option temperature: toy_alignment has no "
                       "such option; its options are: weight"):
        RunConfig(method="toy_alignment", loss_options={"temperature": 0.1}).validate()
    with pytest.raises(ValueError, match="--loss-option weight must be a float"):
        RunConfig(method="toy_alignment", loss_options={"weight": "big"}).validate()
    with pytest.raises(ValueError, match="--swav-queue: toy_alignment has no queue"):
        RunConfig(method="toy_alignment", swav_queue=64).validate()


def test_adc_flags_and_config_keys_derive_from_the_adc_fields() -> None:
    from glf_train.cli import _parser, parse_config
    from glf_train.config import RunConfig

    help_text = _parser().format_help()
    for field in dataclasses.fields(ADC):
        assert "--adc-" + field.name.replace("_", "-") in help_text
    config, _ = parse_config(["--adc", "--adc-perplexity-steps", "7", "--adc-bandwidth",
                              "median", "--no-adc-normalize", "--adc-rho", "4"])
    adc = config.adc_config()
    assert (adc.perplexity_steps, adc.bandwidth, adc.normalize, adc.rho) == (7, "median",
                                                                              False, 4.0)
    # The flat form round-trips through a summary's config.
    assert RunConfig.from_dict(config.to_dict()).adc_config() == adc
    with pytest.raises(ValueError, match="--adc-rho must be > 2"):
        parse_config(["--adc", "--adc-rho", "1.5"])
