"""The TensorFlow (Keras 3) reference trainer end to end, on the bundled digits data.

Runs that compile their train step with XLA spend a few seconds on it once; the steps
themselves take milliseconds.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

import train_helpers  # noqa: E402
from glf_train.cli import main  # noqa: E402
from glf_train.config import RunConfig  # noqa: E402
from glf_train.data import load_dataset  # noqa: E402
from glf_train.errors import CheckpointError, TrainingDiverged  # noqa: E402
from glf_train.loop import train  # noqa: E402
from glf_train.schedules import step_inputs  # noqa: E402
from glf_train.tensorflow import model as tf_model  # noqa: E402
from glf_train.tensorflow.step import (  # noqa: E402
    TensorFlowTrainer,
    _unsupported_xla_ops,
)

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="Keras runs on another backend"
)

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Workers share the cores; one thread each avoids oversubscription. TensorFlow only
    # accepts this before its runtime starts (another module may have started it).
    with contextlib.suppress(RuntimeError):
        tf.config.threading.set_intra_op_parallelism_threads(1)

# One thread in subprocesses too, so that they neither compete with the other test
# worker nor depend on the machine's core count.
_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TF_NUM_INTRAOP_THREADS": "1"}


def tf_config(tmp_path: Path, **overrides: object) -> RunConfig:
    return train_helpers.small_config(tmp_path, "tensorflow", **overrides)


def _weights(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as npz:
        return {k: npz[k] for k in npz.files if k.startswith(("encoder/", "head/", "loss_fn/"))}


def _trainer(tmp_path: Path, **overrides: object) -> TensorFlowTrainer:
    config = tf_config(tmp_path, **overrides)
    return TensorFlowTrainer(config, load_dataset(config.dataset))


@pytest.mark.parametrize("adc", [False, True], ids=["base", "adc"])
@pytest.mark.parametrize("method", ["barlow_twins", "byol", "simclr", "swav"])
def test_short_run_lowers_the_loss(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], method: str, adc: bool
) -> None:
    # SwAV's first epoch has frozen prototypes; its loss must fall once they move too.
    # The ADC runs compile the whole step (method and ADC) with XLA, as --compile auto
    # does; the others run it as a plain graph, the path taken when XLA cannot compile an
    # op, and save an XLA compilation (seconds) each.
    config = tf_config(
        tmp_path, method=method, adc=adc, epochs=3, lr=3e-3, compile="auto" if adc else "off"
    )
    summary = train(config)
    assert "XLA cannot compile" not in capsys.readouterr().err
    train_helpers.check_short_run(config, summary)


def test_resume_after_sigkill_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    flags = ("--method", "barlow_twins", "--adc", "--seed", "3")
    whole, killed = train_helpers.sigkill_and_resume(
        tmp_path, "tensorflow", "checkpoint.npz", flags, 6, env=_ENV
    )
    a, b = _weights(whole / "checkpoint.npz"), _weights(killed / "checkpoint.npz")
    assert a.keys() == b.keys() and len(a) > 10
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-5, atol=1e-6, err_msg=name)


def test_checkpoint_restores_the_state_exactly_and_the_step_is_traced_once(
    tmp_path: Path,
) -> None:
    """SwAV: two steps with frozen prototypes, one with moving ones, save, load, step.

    Without XLA, to keep it short: the SIGKILL test covers resuming the compiled step.
    """
    settings = {"method": "swav", "adc": True, "optimizer": "sgd", "epochs": 2, "compile": "off"}
    a = _trainer(tmp_path, **settings)
    images = a.to_device(a.dataset.x_train[:64])
    rng = np.random.default_rng(0)
    view = a.to_device(rng.normal(size=images.shape).astype(np.float32))
    prototypes = a.loss_fn.prototypes.numpy()
    for step in range(2):
        a.train_step(view, view[::-1], images, step_inputs(a.config, 0, step, 10))
    np.testing.assert_allclose(a.loss_fn.prototypes.numpy(), prototypes, rtol=1e-6, atol=1e-7)
    a.train_step(view, view[::-1], images, step_inputs(a.config, 1, 2, 10))
    moved = a.loss_fn.prototypes.numpy()
    assert not np.allclose(moved, prototypes)
    np.testing.assert_allclose(np.linalg.norm(moved, axis=1), 1.0, rtol=1e-6)
    ckpt = tmp_path / "state.npz"
    a.save(ckpt, {"epoch": 1, "config": a.config.to_dict()})

    b = _trainer(tmp_path, **settings)
    fresh = [v.numpy() for v in b.head.weights]

    def refuse(meta: dict[str, Any]) -> None:
        raise ValueError("another run")

    with pytest.raises(ValueError, match="another run"):
        b.load(ckpt, refuse)
    for v, value in zip(b.head.weights, fresh, strict=True):  # checked before restoring
        np.testing.assert_array_equal(v.numpy(), value)
    seen: list[dict[str, Any]] = []
    assert b.load(ckpt, seen.append) == {"epoch": 1, "config": a.config.to_dict()}
    assert len(seen) == 1
    assert int(b.optimizer.iterations.numpy()) == 3
    groups_a, groups_b = a._groups(), b._groups()
    assert groups_a.keys() == groups_b.keys()
    for group in groups_a:
        for x, y in zip(groups_a[group], groups_b[group], strict=True):
            np.testing.assert_array_equal(x.numpy(), y.numpy(), err_msg=f"{group} {x.path}")
    out_a = a.train_step(view, view[::-1], images, step_inputs(a.config, 1, 3, 10))
    out_b = b.train_step(view, view[::-1], images, step_inputs(b.config, 1, 3, 10))
    # Without XLA, TensorFlow's CPU kernels are not bitwise repeatable from call to call
    # (last-bit differences, even on one thread with op determinism on); XLA's are.
    np.testing.assert_allclose(float(out_a["loss"]), float(out_b["loss"]), rtol=1e-6)
    for x, y in zip(a.head.weights, b.head.weights, strict=True):
        np.testing.assert_allclose(x.numpy(), y.numpy(), rtol=1e-5, atol=1e-7, err_msg=x.path)
    # New learning rates, gates and epochs enter as tensors: no retracing.
    assert a._step_fn.experimental_get_tracing_count() == 1


def test_bad_checkpoints_give_clear_errors(tmp_path: Path) -> None:
    settings = {"method": "simclr", "optimizer": "sgd", "compile": "off"}
    config = tf_config(tmp_path, epochs=1, **settings)
    train(config)
    ckpt = Path(config.out) / "checkpoint.npz"
    good = ckpt.read_bytes()

    with pytest.raises(ValueError, match="method='simclr'"):
        train(tf_config(tmp_path, method="byol", epochs=2), resume=True)

    exploding = tf_config(tmp_path, epochs=3, lr=1e38, **settings)
    with pytest.raises(TrainingDiverged, match=r"non-finite .* last good checkpoint"):
        train(exploding, resume=True, allow_changes=True)
    assert ckpt.read_bytes() == good

    # Same run settings, another model: the layout check names the first misfit.
    wider = _trainer(tmp_path, cnn_width=16, **settings)
    with pytest.raises(CheckpointError, match="does not fit this model"):
        wider.load(ckpt, lambda meta: None)

    middle = len(good) // 2
    flipped = good[:middle] + bytes([good[middle] ^ 0xFF]) + good[middle + 1 :]
    for broken in (good[:100], good[:middle], good[:-200] + bytes(200), flipped):
        ckpt.write_bytes(broken)
        with pytest.raises(CheckpointError, match=r"cannot resume from .*checkpoint\.npz"):
            train(tf_config(tmp_path, epochs=2, **settings), resume=True)


def test_bit_flipped_checkpoint_is_refused(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path, method="simclr", compile="off")
    path = tmp_path / "ckpt.npz"
    meta = {"epoch": 1, "config": trainer.config.to_dict()}
    trainer.save(path, meta)
    assert trainer.load(path, lambda m: None) == meta
    with np.load(path) as npz:
        members = {key: npz[key] for key in npz.files}
    key = max((k for k in members if k.startswith("encoder/")), key=lambda k: members[k].size)
    train_helpers.flip_bytes_of(path, members[key].tobytes())
    # The zip's CRC of the member catches this one...
    with pytest.raises(CheckpointError, match=r"cannot resume from .*ckpt\.npz"):
        trainer.load(path, lambda m: None)
    # ...but not a member rewritten whole, with a CRC of its own: the checksum does.
    members[key] = members[key].copy()
    members[key].reshape(-1)[:50] += 1.0
    np.savez(path, **members)
    with pytest.raises(CheckpointError, match=r"ckpt\.npz: the checkpoint is corrupt"):
        trainer.load(path, lambda m: None)

def _port_torch_weights(torch_module: Any, keras_model: Any) -> None:
    """Copy a PyTorch module's parameters and BatchNorm statistics into its Keras twin.

    Both list each layer's weights in the same order (kernel, bias, BN scale, shift,
    mean, variance); kernels change layout: OIHW -> HWIO, (out, in) -> (in, out).
    """
    layouts = {4: (2, 3, 1, 0), 2: (1, 0), 1: (0,)}
    values = [
        v.numpy().transpose(layouts[v.ndim])
        for k, v in torch_module.state_dict().items()
        if not k.endswith("num_batches_tracked")
    ]
    assert len(values) == len(keras_model.weights)
    for variable, value in zip(keras_model.weights, values, strict=True):
        variable.assign(value)


@pytest.mark.parametrize("size", [8, 28])
def test_models_compute_what_the_torch_models_compute(size: int) -> None:
    torch = pytest.importorskip("torch")
    from glf_train.torch import model as torch_model

    torch.manual_seed(0)
    t_enc = torch_model.SmallCNN(1, size, width=4)
    t_head = torch_model.projector(t_enc.feature_dim, 32, 8, n_layers=3)
    k_enc = tf_model.SmallCNN(1, size, width=4)
    k_head = tf_model.projector(k_enc.feature_dim, 32, 8, n_layers=3)
    for t, k in ((t_enc, k_enc), (t_head, k_head)):
        with torch.no_grad():  # non-trivial running statistics for the eval-mode check
            for m in t.modules():
                if isinstance(m, torch.nn.BatchNorm2d | torch.nn.BatchNorm1d):
                    m.running_mean.uniform_(-0.5, 0.5)
                    m.running_var.uniform_(0.5, 2.0)
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.uniform_(-0.5, 0.5)
        _port_torch_weights(t, k)
    x = np.random.default_rng(1).normal(size=(16, 1, size, size)).astype(np.float32)
    for training in (True, False):
        t_enc.train(training)
        t_head.train(training)
        with torch.no_grad():
            expected = t_head(t_enc(torch.from_numpy(x))).numpy()
        got = k_head(k_enc(x, training=training), training=training).numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    assert tf_model.n_parameters(tf_model.ResNet18Cifar(3)) == 11_168_832
    assert tf_model.build_encoder("digits")[1] == 128
    assert isinstance(tf_model.build_encoder("cifar10")[0], tf_model.ResNet18Cifar)
    with pytest.raises(ValueError, match="arch"):
        tf_model.build_encoder("digits", arch="vit")


class _HostPrior(TensorFlowTrainer):
    """A trainer whose step holds an op with no XLA kernel (a Python callback)."""

    def _prior(self, images: Any) -> Any:
        out = tf.py_function(lambda x: x, [images], images.dtype)
        out.set_shape(images.shape)
        return out


def test_xla_fallback_names_the_unsupported_op(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tf_config(tmp_path, method="barlow_twins", adc=True)
    trainer = _HostPrior(config, load_dataset(config.dataset))
    images = trainer.to_device(trainer.dataset.x_train[:64])
    view = trainer.xp.astype(images, tf.float32) / 255.0
    out = trainer.train_step(view, view[::-1], images, step_inputs(trainer.config, 0, 0, 10))
    assert np.isfinite(float(out["loss"])) and not trainer.jit_compile
    assert "XLA cannot compile EagerPyFunc" in capsys.readouterr().err
    assert _unsupported_xla_ops("Incompatible shapes: [2] vs. [3]") == []


def test_bad_device_exits_with_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if tf.config.list_logical_devices("GPU"):
        pytest.skip("a GPU is visible to TensorFlow")
    argv = ["--backend", "tensorflow", "--device", "cuda:7", "--out", str(tmp_path / "run"),
            "--quiet", "--epochs", "1"]
    assert main(argv) == 2
    assert "CUDA" in capsys.readouterr().err


@pytest.mark.parametrize("method", ["barlow_twins", "byol", "simclr", "swav"])
def test_loss_step_matches_torch(tmp_path: Path, method: str) -> None:
    """Fixed network outputs through both trainers' losses (ADC on): the same values
    and gradients, the TensorFlow side XLA-compiled as in its train step."""
    torch = pytest.importorskip("torch")
    from glf_train.torch.step import TorchTrainer

    digits = load_dataset("digits")
    config = train_helpers.small_config(tmp_path, "torch", method=method, adc=True)
    rng = np.random.default_rng(0)
    n, d = 32, config.proj_dim
    n_outputs = 4 if method == "byol" else 2
    outputs = [rng.normal(size=(n, d)).astype(np.float32) for _ in range(n_outputs)]
    prior = digits.x_train[:n]
    torch_loss = TorchTrainer(config, digits).loss_fn
    t_out = [torch.tensor(o, requires_grad=True) for o in outputs]
    t_parts = torch_loss.parts(*t_out, prior=torch.from_numpy(prior))
    t_parts.total.backward()

    trainer = TensorFlowTrainer(RunConfig.from_dict({**config.to_dict(), "backend": "tensorflow"}),
                                digits)
    if method == "swav":
        trainer.loss_fn.prototypes.assign(torch_loss.prototypes.detach().numpy())

    @tf.function(jit_compile=True)
    def step(*outs: Any) -> tuple[Any, ...]:
        with tf.GradientTape() as tape:
            tape.watch(outs)
            parts = trainer.loss_parts(*outs, prior=tf.constant(prior))
            total = parts.total
        wrt = [*outs, *([trainer.loss_fn.prototypes] if method == "swav" else [])]
        return parts.align, parts.constrain, tape.gradient(total, wrt)

    align, constrain, grads = step(*[tf.constant(o) for o in outputs])
    for got, want in ((align, t_parts.align), (constrain, t_parts.constrain)):
        np.testing.assert_allclose(float(got), float(want.detach()), rtol=1e-4, atol=1e-5)
    for g_tf, t in zip(grads[:n_outputs], t_out, strict=True):
        expected = np.zeros_like(outputs[0]) if t.grad is None else t.grad.numpy()
        got = np.zeros_like(expected) if g_tf is None else g_tf.numpy()
        # Float32 rounding is relative to the gradient's size (ADC's weights beside
        # Barlow Twins are 1000), so the absolute floor is too.
        scale = max(float(np.abs(expected).max()), 1.0)
        np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-5 * scale)
    if method == "swav":
        np.testing.assert_allclose(
            grads[-1].numpy(), torch_loss.prototypes.grad.numpy(), rtol=1e-3, atol=1e-6
        )
