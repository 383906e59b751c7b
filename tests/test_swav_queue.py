"""SwAV's queue: earlier projections enlarge Sinkhorn's input; only the batch's codes count."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from glf_train.schedules import step_inputs

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


# --- the JAX and TensorFlow trainers' queue, against the PyTorch trainer's semantics -------

TRAINERS = ["jax", "tensorflow"]


def _require(framework: str) -> None:
    if framework == "jax":
        for name in ("jax", "flax", "optax"):
            pytest.importorskip(name)
    else:
        pytest.importorskip("tensorflow")
        keras = pytest.importorskip("keras")
        if keras.backend.backend() != "tensorflow":
            pytest.skip("Keras runs on another backend")


def small_config(tmp_path: Path, framework: str, **overrides: object) -> Any:
    import train_helpers

    return train_helpers.small_config(tmp_path, framework, **overrides)


def _trainer(framework: str, config: Any, dataset: Any) -> Any:
    if framework == "jax":
        from glf_train.jax.step import JaxTrainer

        return JaxTrainer(config, dataset)
    from glf_train.tensorflow.step import TensorFlowTrainer

    return TensorFlowTrainer(config, dataset)


def _queue(trainer: Any) -> np.ndarray:
    if hasattr(trainer, "state"):
        return np.asarray(trainer.state["queue"])
    return np.asarray(trainer.queue.numpy())


def _trace_count(trainer: Any) -> int:
    if hasattr(trainer, "programs"):
        return int(trainer.programs.step._cache_size())
    return int(trainer._step_fn.experimental_get_tracing_count())


def _batch(trainer: Any, i: int) -> tuple[Any, Any, Any]:
    """Step ``i``'s two views of the first batch's images, and the images."""
    from glf_train import augment

    data = trainer.dataset
    images = trainer.to_device(data.x_train[: trainer.config.batch_size])
    aug = augment.AugmentConfig.for_dataset(data.name)
    rng = np.random.default_rng((0, i))
    a, b = augment.two_views(trainer.xp, images, rng, aug, data.mean, data.std)
    return a, b, images


def _projections(trainer: Any, view: Any) -> np.ndarray:
    """The online network's training-mode outputs (what the step computes first)."""
    if hasattr(trainer, "state"):
        state = trainer.state
        variables = {
            "params": state["params"]["online"], "batch_stats": state["batch_stats"]["online"]
        }
        out = trainer.programs.online.apply(variables, view, train=True, mutable=["batch_stats"])
        return np.asarray(out[0], np.float32)
    return np.asarray(trainer._online(view), np.float32)


def _step_losses(trainer: Any, n_steps: int, queues: list[np.ndarray] | None = None) -> list[float]:
    """``n_steps`` train steps (prototypes free to move) on the first batch's images."""
    losses = []
    for i in range(n_steps):
        a, b, images = _batch(trainer, i)
        out = trainer.train_step(a, b, images, step_inputs(trainer.config, 1, i, n_steps))
        losses.append(float(out["loss"]))
        if queues is not None:
            queues.append(_queue(trainer).copy())
    return losses


@pytest.mark.parametrize("framework", TRAINERS)
def test_trainer_queue_is_used_once_full(tmp_path: Path, framework: str) -> None:
    """Two trainers from one seed, with and without a queue of two batches: the same
    steps until the queue is full, another loss once it is used; newest rows first."""
    _require(framework)
    from glf_train.data import load_dataset

    digits = load_dataset("digits")
    settings = {"method": "swav", "batch_size": 64}
    config = small_config(tmp_path, framework, swav_queue=128, **settings)
    # The first step's projections, by a twin of the trainer before any update.
    twin = _trainer(framework, config, digits)
    first = [_projections(twin, view) for view in _batch(twin, 0)[:2]]
    with_queue = _trainer(framework, config, digits)
    without = _trainer(framework, small_config(tmp_path, framework, **settings), digits)
    queues: list[np.ndarray] = []
    got = _step_losses(with_queue, 4, queues)
    want = _step_losses(without, 4)
    # Filling: the queue is not used yet, so nothing differs.
    np.testing.assert_allclose(got[:2], want[:2], rtol=1e-5)
    # The loop uses the queue from the step at which it is full (2 steps of 64 rows).
    assert [step_inputs(config, 1, i, 4).use_queue for i in range(4)] == [False, False, True, True]
    # Full: it joins Sinkhorn's input and changes the codes, hence the loss.
    assert all(abs(g - w) > 1e-4 * abs(w) for g, w in zip(got[2:], want[2:], strict=True))
    assert queues[0].shape == (2, 128, with_queue.config.proj_dim)
    assert queues[0].dtype == np.float32
    # After one step: its projections of each view (before the update) in front, zeros
    # behind.
    for view in range(2):
        np.testing.assert_allclose(queues[0][view, :64], first[view], rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(queues[0][:, 64:], 0.0)
    # Each step puts its projections in front and moves the earlier ones back.
    for before, after in itertools.pairwise(queues):
        np.testing.assert_array_equal(after[:, 64:], before[:, :64])
        assert not np.array_equal(after[:, :64], before[:, :64])
    # One program (trace) without the queue and one with it, whatever the step.
    assert _trace_count(with_queue) == 2
    assert _trace_count(without) == 1


@pytest.mark.parametrize("framework", TRAINERS)
def test_trainer_short_run_with_a_queue(tmp_path: Path, framework: str) -> None:
    _require(framework)
    import train_helpers
    from glf_train.loop import train

    config = small_config(
        tmp_path, framework, method="swav", epochs=3, batch_size=64, swav_queue=128, lr=3e-3
    )
    summary = train(config)
    train_helpers.check_short_run(config, summary)
    queue = _saved_queue(framework, Path(config.out))
    assert queue.shape == (2, 128, config.proj_dim)
    assert np.all(np.linalg.norm(queue, axis=2) > 0)


def _saved_queue(framework: str, out: Path) -> np.ndarray:
    if framework == "jax":
        import flax.serialization

        raw = flax.serialization.msgpack_restore((out / "checkpoint.msgpack").read_bytes())
        return np.asarray(raw["state"]["queue"])
    with np.load(out / "checkpoint.npz") as npz:
        return np.asarray(npz["swav_queue/0"])


def _saved_arrays(framework: str, path: Path) -> dict[str, np.ndarray]:
    """Every array of a checkpoint (the run's whole state), by name."""
    if framework == "jax":
        import flax.serialization
        import jax
        from glf_train.checksum import CHECKSUM_KEY

        raw = flax.serialization.msgpack_restore(path.read_bytes())
        del raw["format"], raw["meta"]
        raw.pop(CHECKSUM_KEY, None)
        flat = jax.tree_util.tree_flatten_with_path(raw)[0]
        return {jax.tree_util.keystr(p): np.asarray(leaf) for p, leaf in flat}
    with np.load(path) as npz:
        # The run's arrays; the metadata, layout and checksum are not the state.
        return {k: npz[k] for k in npz.files if npz[k].dtype.kind not in "US"}


@pytest.mark.parametrize("adc", [False, True], ids=["base", "adc"])
@pytest.mark.parametrize("framework", TRAINERS)
def test_trainer_queue_loss_matches_torch(tmp_path: Path, framework: str, adc: bool) -> None:
    """Fixed projections, a full queue and the prototypes through the trainer's loss and
    torch's ``SwAVLoss.parts(z_a, z_b, queue_a, queue_b)``: the same values and gradients
    (compiled as in the trainers' steps)."""
    _require(framework)
    torch = pytest.importorskip("torch")
    from glf_losses.backends.torch import SwAVLoss
    from glf_train.data import load_dataset

    config = small_config(tmp_path, framework, method="swav", adc=adc, swav_queue=64)
    rng = np.random.default_rng(0)
    n, q, d = 32, config.swav_queue, config.proj_dim
    z_a, z_b = rng.normal(size=(2, n, d)).astype(np.float32)
    # Earlier projections, of another scale than the current ones.
    q_a, q_b = (3.0 * rng.normal(size=(2, q, d))).astype(np.float32)
    prior = load_dataset("digits").x_train[:n]
    torch.manual_seed(0)
    sizes, settings = config.loss_settings()
    torch_loss = SwAVLoss(*sizes, adc=config.adc_config(), **settings)
    t_z = [torch.tensor(z, requires_grad=True) for z in (z_a, z_b)]
    t_prior = torch.from_numpy(prior) if adc else None
    t_parts = torch_loss.parts(*t_z, torch.from_numpy(q_a), torch.from_numpy(q_b), prior=t_prior)
    t_parts.total.backward()
    w = torch_loss.prototypes.detach().numpy().copy()
    without = float(torch_loss.parts(*t_z, prior=t_prior).total.detach())
    assert abs(without - float(t_parts.total.detach())) > 1e-3  # the queue matters here

    if framework == "jax":
        import jax
        import jax.numpy as jnp
        from glf_train.jax.step import loss_parts

        def total(outs: Any, prototypes: Any, queue: Any) -> Any:
            parts = loss_parts(
                config, outs, jnp.asarray(prior), {"prototypes": prototypes}, queue
            )
            return parts.total, parts

        grads, parts = jax.jit(jax.grad(total, argnums=(0, 1), has_aux=True))(
            [jnp.asarray(z_a), jnp.asarray(z_b)], jnp.asarray(w), jnp.asarray(np.stack([q_a, q_b]))
        )
        g_z, g_w = [np.asarray(g) for g in grads[0]], np.asarray(grads[1])
    else:
        import tensorflow as tf

        trainer = _trainer(framework, config, load_dataset("digits"))
        trainer.loss_fn.prototypes.assign(w)

        @tf.function(jit_compile=True)
        def step(*args: Any) -> Any:
            outs = args[:2]
            with tf.GradientTape() as tape:
                tape.watch(outs)
                parts = trainer.loss_parts(*args, prior=tf.constant(prior) if adc else None)
                total = parts.total  # on the tape
            wrt = [*outs, trainer.loss_fn.prototypes]
            return parts, tape.gradient(total, wrt)

        parts, grads = step(*[tf.constant(x) for x in (z_a, z_b, q_a, q_b)])
        g_z, g_w = [g.numpy() for g in grads[:2]], grads[2].numpy()
    for name in ("align", "constrain"):
        np.testing.assert_allclose(
            float(getattr(parts, name)), float(getattr(t_parts, name).detach()), rtol=1e-4,
            atol=1e-5,
        )
    for got, t in zip(g_z, t_z, strict=True):
        np.testing.assert_allclose(got, t.grad.numpy(), rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(g_w, torch_loss.prototypes.grad.numpy(), rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("framework", TRAINERS)
def test_trainer_queue_resumes_after_sigkill(tmp_path: Path, framework: str) -> None:
    """The queue is in the checkpoint: a run killed once the queue is full,
    then resumed, ends where an uninterrupted one does."""
    _require(framework)
    import train_helpers

    name = {"jax": "checkpoint.msgpack", "tensorflow": "checkpoint.npz"}[framework]
    flags = ("--method", "swav", "--swav-queue", "128", "--seed", "3", "--batch-size", "64")
    env = {"TF_NUM_INTRAOP_THREADS": "1"}
    if framework == "jax":
        env |= {
            "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "xla_cache"),
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        }
    whole, killed = train_helpers.sigkill_and_resume(tmp_path, framework, name, flags, 3, env=env)
    a, b = _saved_arrays(framework, whole / name), _saved_arrays(framework, killed / name)
    assert a.keys() == b.keys()
    assert any("queue" in k for k in a) and len(a) > 10
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-5, atol=1e-6, err_msg=key)
    queue = _saved_queue(framework, killed)
    assert np.all(np.linalg.norm(queue, axis=2) > 0)


@pytest.mark.parametrize("framework", ["torch", *TRAINERS])
def test_every_trainer_accepts_a_queue_on_one_device(framework: str) -> None:
    from glf_train.config import RunConfig

    config = RunConfig(backend=framework, method="swav", swav_queue=128)
    assert config.validate() is config
    with pytest.raises(ValueError, match="--swav-queue is not supported with --devices > 1"):
        RunConfig(backend=framework, method="swav", swav_queue=128, devices=2).validate()
