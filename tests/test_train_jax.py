"""The JAX reference trainer: end to end on the bundled digits data, and its pieces.

Mirrors tests/test_train_torch.py; the shared settings and the resume protocol are in
tests/train_helpers.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

jax = pytest.importorskip("jax")
pytest.importorskip("flax")
pytest.importorskip("optax")

import flax.serialization  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import train_helpers  # noqa: E402
from glf_train import augment  # noqa: E402
from glf_train.architecture import image_shape_chw  # noqa: E402
from glf_train.cli import main  # noqa: E402
from glf_train.config import RunConfig  # noqa: E402
from glf_train.data import Dataset, load_dataset  # noqa: E402
from glf_train.errors import CheckpointError  # noqa: E402
from glf_train.jax.model import (  # noqa: E402
    ResNet18Cifar,
    SmallCNN,
    build_encoder,
    predictor,
    projector,
)
from glf_train.jax.step import JaxTrainer, loss_parts, make_optimizer  # noqa: E402
from glf_train.loop import train  # noqa: E402
from glf_train.schedules import step_inputs  # noqa: E402


def small_config(tmp_path: Path, backend: str = "jax", **overrides: object) -> RunConfig:
    return train_helpers.small_config(tmp_path, backend, **overrides)


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset("digits")


def _n_params(tree: Any) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def _shapes(module: Any, *input_shape: int) -> Any:
    """Variables' shapes without computing them."""
    x = jnp.zeros(input_shape, jnp.float32)
    return jax.eval_shape(lambda k: module.init(k, x), jax.random.PRNGKey(0))


def _steps(trainer: JaxTrainer, data: Dataset, epochs: list[int]) -> list[dict[str, float]]:
    """One train step per entry of ``epochs``, at that epoch, on the first images."""
    images = trainer.to_device(data.x_train[: trainer.config.batch_size])
    aug = augment.AugmentConfig.for_dataset(data.name)
    logs = []
    for i, epoch in enumerate(epochs):
        rng = np.random.default_rng((0, epoch, i))
        a, b = augment.two_views(jnp, images, rng, aug, data.mean, data.std)
        out = trainer.train_step(a, b, images, step_inputs(trainer.config, epoch, i, len(epochs)))
        logs.append({k: float(v) for k, v in out.items()})
    return logs


def _leaves(tree: Any) -> dict[str, np.ndarray]:
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in flat}


# --- models -------------------------------------------------------------------------------


def test_models_match_the_torch_architectures() -> None:
    # Parameter counts of the PyTorch models with the same arguments.
    resnet = _shapes(ResNet18Cifar(3), 2, 3, 32, 32)
    assert _n_params(resnet["params"]) == 11_168_832
    assert _n_params(_shapes(SmallCNN(1, 8), 2, 1, 8, 8)["params"]) == 277_600
    assert _n_params(_shapes(projector(128, 512, 128, 3), 4, 128)["params"]) == 395_392
    assert _n_params(_shapes(predictor(64, 256), 4, 64)["params"]) == 33_344
    for size in (8, 28):
        model = SmallCNN(1, size)
        variables = _shapes(model, 4, 1, size, size)
        out, updated = jax.eval_shape(
            lambda v, x, m=model: m.apply(v, x, train=True, mutable=["batch_stats"]),
            variables, jnp.zeros((4, 1, size, size)),
        )
        assert out.shape == (4, model.feature_dim) == (4, 128)
        assert jax.tree.structure(updated["batch_stats"]) == jax.tree.structure(
            variables["batch_stats"]
        )
    with pytest.raises(ValueError, match="n_layers"):
        projector(128, n_layers=0)
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\)"):
        SmallCNN(1, 8).init(jax.random.PRNGKey(0), jnp.zeros((2, 8, 8, 1)))


@pytest.mark.parametrize(
    ("spec", "chw", "kind", "dim"),
    [
        ("digits", (1, 8, 8), SmallCNN, 128),
        ("mnist5k", (1, 28, 28), SmallCNN, 128),
        ("CIFAR-100", (3, 32, 32), ResNet18Cifar, 512),
        ((8, 8, 1), (1, 8, 8), SmallCNN, 128),
        ((3, 32, 32), (3, 32, 32), ResNet18Cifar, 512),
    ],
)
def test_build_encoder_auto(spec: Any, chw: tuple[int, int, int], kind: type, dim: int) -> None:
    assert image_shape_chw(spec) == chw
    encoder, feature_dim = build_encoder(spec)
    assert isinstance(encoder, kind) and feature_dim == dim
    with pytest.raises(ValueError, match="arch"):
        build_encoder(spec, arch="vit")


# --- the loss step against PyTorch's --------------------------------------------------------


@pytest.mark.parametrize("method", ["barlow_twins", "byol", "simclr", "swav"])
def test_loss_step_matches_torch(tmp_path: Path, digits: Dataset, method: str) -> None:
    torch = pytest.importorskip("torch")
    from glf_train.torch.step import TorchTrainer

    config = small_config(tmp_path, backend="torch", method=method, adc=True)
    rng = np.random.default_rng(0)
    n, d = 32, config.proj_dim
    # Network outputs: (z_a, z_b), or BYOL's (p_a, p_b, t_a, t_b).
    n_outputs = 4 if method == "byol" else 2
    outputs = [rng.normal(size=(n, d)).astype(np.float32) for _ in range(n_outputs)]
    prior = digits.x_train[:n]
    torch_loss = TorchTrainer(config, digits).loss_fn
    w = torch_loss.prototypes.detach().numpy().copy() if method == "swav" else None
    t_out = [torch.tensor(o, requires_grad=True) for o in outputs]
    t_parts = torch_loss.parts(*t_out, prior=torch.from_numpy(prior))
    t_parts.total.backward()

    def total(outs: list[Any], prototypes: Any) -> Any:
        owned = None if prototypes is None else {"prototypes": prototypes}
        parts = loss_parts(config, outs, jnp.asarray(prior), owned)
        return parts.total, parts

    grads, j_parts = jax.jit(jax.grad(total, argnums=(0, 1), has_aux=True))(
        [jnp.asarray(o) for o in outputs], None if w is None else jnp.asarray(w)
    )
    for name in ("align", "constrain"):
        np.testing.assert_allclose(
            float(getattr(j_parts, name)), float(getattr(t_parts, name).detach()), rtol=1e-4,
            atol=1e-5,
        )
    for g_jax, t in zip(grads[0], t_out, strict=True):
        expected = np.zeros_like(outputs[0]) if t.grad is None else t.grad.numpy()
        # Float32 rounding is relative to the gradient's size (ADC's weights beside
        # Barlow Twins are 1000), so the absolute floor is too.
        scale = max(float(np.abs(expected).max()), 1.0)
        np.testing.assert_allclose(np.asarray(g_jax), expected, rtol=1e-3, atol=1e-5 * scale)
    if w is not None:
        np.testing.assert_allclose(
            np.asarray(grads[1]), torch_loss.prototypes.grad.numpy(), rtol=1e-3, atol=1e-6
        )


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_optimizer_matches_torch(optimizer: str) -> None:
    """Both decay weight matrices and leave 1-d parameters (BatchNorm, biases) undecayed."""
    torch = pytest.importorskip("torch")
    config = RunConfig(optimizer=optimizer, weight_decay=0.1)
    rng = np.random.default_rng(0)
    w0, b0 = rng.normal(size=(3, 4)).astype(np.float32), rng.normal(size=4).astype(np.float32)
    grads = rng.normal(size=(4, 3, 4)).astype(np.float32)
    bias_grads = rng.normal(size=(4, 4)).astype(np.float32)
    lrs = [0.1, 0.05, 0.2, 0.01]
    p = torch.nn.Parameter(torch.from_numpy(w0.copy()))
    q = torch.nn.Parameter(torch.from_numpy(b0.copy()))
    groups = [{"params": [p], "weight_decay": 0.1}, {"params": [q], "weight_decay": 0.0}]
    opt = (
        torch.optim.AdamW(groups, lr=lrs[0]) if optimizer == "adamw"
        else torch.optim.SGD(groups, lr=lrs[0], momentum=0.9)
    )
    tx = make_optimizer(config)
    params = {"w": jnp.asarray(w0), "b": jnp.asarray(b0)}
    state = tx.init(params)
    for g, gb, lr in zip(grads, bias_grads, lrs, strict=True):
        p.grad, q.grad = torch.from_numpy(g), torch.from_numpy(gb)
        for group in opt.param_groups:
            group["lr"] = lr
        opt.step()
        update, state = tx.update({"w": jnp.asarray(g), "b": jnp.asarray(gb)}, state, params)
        params = jax.tree.map(lambda v, u, lr=lr: v - lr * u, params, update)
    np.testing.assert_allclose(np.asarray(params["w"]), p.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(params["b"]), q.detach().numpy(), rtol=1e-5, atol=1e-6)


# --- the trainer's pieces -------------------------------------------------------------------


def test_swav_prototypes_freeze_then_move_without_recompiling(
    tmp_path: Path, digits: Dataset
) -> None:
    trainer = JaxTrainer(small_config(tmp_path, method="swav"), digits)
    w0 = np.asarray(trainer.state["owned"]["prototypes"])
    _steps(trainer, digits, [0, 0])
    # Only re-normalised (as after every step), which may move the last bit.
    w = trainer.state["owned"]["prototypes"]
    np.testing.assert_allclose(np.asarray(w), w0, rtol=0, atol=1e-7)
    _steps(trainer, digits, [1])
    w1 = np.asarray(trainer.state["owned"]["prototypes"])
    assert not np.allclose(w1, w0)
    np.testing.assert_allclose(np.linalg.norm(w1, axis=1), 1.0, rtol=1e-5)
    # New learning rates and the prototypes' flag are traced inputs, not new programs.
    assert trainer.programs.step._cache_size() == 1


def test_frozen_prior_and_exact_checkpoint_round_trip(tmp_path: Path, digits: Dataset) -> None:
    config = small_config(tmp_path, method="byol", adc=True, adc_prior="frozen_encoder")
    trainer = JaxTrainer(config, digits)
    prior = _leaves(trainer.prior_variables)
    logs = _steps(trainer, digits, [0, 0])
    assert all(np.isfinite(v) and v > 0 for entry in logs for v in entry.values())
    # The prior encoder keeps the initial weights while the online encoder trains.
    for key, value in _leaves(trainer.prior_variables).items():
        np.testing.assert_array_equal(value, prior[key], err_msg=key)
    trained = _leaves(trainer.state["params"]["online"]["encoder"])
    assert any(not np.array_equal(trained[k], prior["['params']" + k]) for k in trained)

    path = tmp_path / "ckpt.msgpack"
    meta = {"epoch": 1, "config": config.to_dict()}
    trainer.save(path, meta)
    saved = _leaves(trainer._saved())

    fresh = JaxTrainer(config, digits)
    seen: list[dict[str, Any]] = []

    def refuse(m: dict[str, Any]) -> None:
        seen.append(m)
        raise ValueError("another run")

    untouched = _leaves(fresh._saved())
    with pytest.raises(ValueError, match="another run"):
        fresh.load(path, refuse)
    assert seen == [meta]
    for key, value in _leaves(fresh._saved()).items():
        np.testing.assert_array_equal(value, untouched[key], err_msg=key)

    assert fresh.load(path, lambda m: None) == meta
    restored = _leaves(fresh._saved())
    assert restored.keys() == saved.keys()
    for key in saved:
        assert restored[key].dtype == saved[key].dtype, key
        np.testing.assert_array_equal(restored[key], saved[key], err_msg=key)
    # The restored state trains on (its buffers are donated like the initial ones).
    assert np.isfinite(_steps(fresh, digits, [1])[0]["loss"])


def test_checkpoint_errors(tmp_path: Path, digits: Dataset) -> None:
    config = small_config(tmp_path, method="simclr")
    trainer = JaxTrainer(config, digits)
    path = tmp_path / "ckpt.msgpack"
    trainer.save(path, {"epoch": 1, "config": config.to_dict()})
    good = path.read_bytes()

    path.write_bytes(good[:100])
    with pytest.raises(CheckpointError, match=r"cannot resume from .*unreadable"):
        trainer.load(path, lambda m: None)
    path.write_bytes(b"not msgpack at all")
    with pytest.raises(CheckpointError, match="unreadable"):
        trainer.load(path, lambda m: None)

    wider = JaxTrainer(small_config(tmp_path, method="simclr", cnn_width=16), digits)
    path.write_bytes(good)
    with pytest.raises(CheckpointError, match=r"does not fit this model .*\['encoder'\]"):
        wider.load(path, lambda m: None)
    byol = JaxTrainer(small_config(tmp_path, method="byol"), digits)
    with pytest.raises(CheckpointError, match="does not fit this model"):
        byol.load(path, lambda m: None)


def test_bit_flipped_checkpoint_is_refused(tmp_path: Path, digits: Dataset) -> None:
    config = small_config(tmp_path, method="simclr")
    trainer = JaxTrainer(config, digits)
    path = tmp_path / "ckpt.msgpack"
    meta = {"epoch": 1, "config": config.to_dict()}
    trainer.save(path, meta)
    assert trainer.load(path, lambda m: None) == meta
    weight = max(_leaves(trainer.state["params"]).values(), key=np.size)
    train_helpers.flip_bytes_of(path, weight.tobytes())
    # msgpack reads the damaged file without complaint: only the checksum tells.
    flax.serialization.msgpack_restore(path.read_bytes())
    with pytest.raises(CheckpointError, match=r"ckpt\.msgpack: the checkpoint is corrupt"):
        trainer.load(path, lambda m: None)

# --- end to end -----------------------------------------------------------------------------


@pytest.mark.parametrize("adc", [False, True], ids=["base", "adc"])
@pytest.mark.parametrize("method", ["barlow_twins", "byol", "simclr", "swav"])
def test_short_run_lowers_the_loss(tmp_path: Path, method: str, adc: bool) -> None:
    # SwAV's first epoch has frozen prototypes; its loss must fall once they move too.
    config = small_config(tmp_path, method=method, adc=adc, epochs=3, lr=3e-3)
    summary = train(config)
    train_helpers.check_short_run(config, summary)


def _saved_state(path: Path) -> dict[str, np.ndarray]:
    return _leaves(flax.serialization.msgpack_restore(path.read_bytes())["state"])


def test_resume_after_sigkill_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    flags = ("--method", "barlow_twins", "--adc", "--seed", "3")
    # The three processes run the same programs: XLA's on-disk cache compiles them once.
    env = {
        "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "xla_cache"),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
    }
    whole, killed = train_helpers.sigkill_and_resume(
        tmp_path, "jax", "checkpoint.msgpack", flags, 4, env=env
    )
    a = _saved_state(whole / "checkpoint.msgpack")
    b = _saved_state(killed / "checkpoint.msgpack")
    assert a.keys() == b.keys() and any("batch_stats" in k for k in a)
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-5, atol=1e-6, err_msg=name)


def test_corrupt_checkpoint_gives_a_clear_error(tmp_path: Path) -> None:
    config = small_config(tmp_path, method="simclr", epochs=1)
    train(config)
    ckpt = Path(config.out) / "checkpoint.msgpack"
    ckpt.write_bytes(ckpt.read_bytes()[:100])
    with pytest.raises(CheckpointError, match=r"cannot resume from .*checkpoint\.msgpack"):
        train(small_config(tmp_path, method="simclr", epochs=2), resume=True)


def test_missing_device_exits_with_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if any(d.platform == "gpu" for d in jax.devices()):
        pytest.skip("a GPU is visible to JAX")
    argv = ["--backend", "jax", "--device", "cuda:7", "--out", str(tmp_path / "run"), "--quiet"]
    assert main(argv) == 2
    assert "no such GPU device is available to JAX" in capsys.readouterr().err
