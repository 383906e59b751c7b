"""Multi-crop: SwAV and DINO with local crops, from the spec to the three trainers.

- the registry declares which methods take local crops, and the others refuse them;
- DINO's prototype form takes local crops as ``main_dino.py`` does (a float64 NumPy
  reference in ``zoo_references.py``), and ADC acts on the two views only;
- ``--local-crops`` and its settings are validated naming the flag, and saved;
- the local views are drawn after the two views, deterministically, at their own size;
- each trainer's step with local crops computes the spec's loss of its own networks'
  outputs (the compiled JAX and TensorFlow steps included), and a run resumes with them.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import array_api_compat.numpy as xp_np
import numpy as np
import pytest
import train_helpers
import zoo_references as ref

from glf_losses import ADC, methods, registry
from glf_losses.testing import assert_close

# --- the registry and the spec ----------------------------------------------------------


def test_swav_and_dino_declare_their_local_input_and_the_others_refuse_local_crops() -> None:
    assert registry.local_crop_methods() == ("dino", "swav")
    assert registry.get("swav").local_input == registry.get("dino").local_input == "local_z"
    assert registry.get("simclr").local_input is None
    rng = np.random.default_rng(0)
    z_a, z_b = rng.normal(size=(2, 8, 4))
    local_z = rng.normal(size=(2, 8, 4))
    with pytest.raises(TypeError, match=r"simclr takes no local crops \(local_z=\): only "
                                        r"dino, swav do"):
        registry.method_parts("simclr", z_a, z_b, local_z=local_z)
    # None is no local crop, for every method.
    plain = registry.method_parts("simclr", z_a, z_b)
    assert float(registry.method_parts("simclr", z_a, z_b, local_z=None).total) == float(
        plain.total
    )
    w = rng.normal(size=(5, 4))
    got = registry.method_parts("swav", z_a, z_b, prototypes=w, local_z=local_z)
    want = methods.swav_prototype_parts(z_a, z_b, w, local_z=local_z)
    assert float(got.total) == float(want.total)
    assert float(got.total) != float(registry.method_parts("swav", z_a, z_b, prototypes=w).total)


def test_dino_local_crops_are_the_official_multi_crop_loss() -> None:
    rng = np.random.default_rng(3)
    z_a, z_b, t_a, t_b = rng.normal(size=(4, 6, 5))
    local_z = rng.normal(size=(3, 6, 5))
    prototypes, center = rng.normal(size=(7, 5)), 0.1 * rng.normal(size=7)
    got = methods.dino_prototype_parts(z_a, z_b, t_a, t_b, center, prototypes,
                                       teacher_temperature=0.07, local_z=local_z)
    want = ref.ref_dino_prototype_multicrop(z_a, z_b, t_a, t_b, local_z, center, prototypes,
                                            teacher_temperature=0.07)
    assert_close(got.total, want, "float64", scale=1.0)
    assert float(got.constrain) == 0.0
    # Without local crops it is the two-crop loss, exactly as before.
    two = methods.dino_prototype_parts(z_a, z_b, t_a, t_b, center, prototypes,
                                       teacher_temperature=0.07)
    assert_close(two.total, ref.ref_dino_prototype_multicrop(
        z_a, z_b, t_a, t_b, local_z[:0], center, prototypes, teacher_temperature=0.07
    ), "float64", scale=1.0)
    assert abs(float(got.total) - float(two.total)) > 1e-6
    # The local crops are the student's only: the teacher's crops (and the centre's
    # update, which reads them) do not change with them.
    assert_close(registry.method_parts("dino", z_a, z_b, t_a, t_b, prototypes=prototypes,
                                       center=center, teacher_temperature=0.07,
                                       local_z=local_z).total, want, "float64", scale=1.0)
    with pytest.raises(ValueError, match=r"local_z must have shape \(L, N, D\) = \(L, 6, 5\)"):
        methods.dino_prototype_parts(z_a, z_b, t_a, t_b, center, prototypes,
                                     local_z=np.ones((2, 6, 4)))


def test_local_crops_carry_gradient_and_adc_sees_the_two_views_only() -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    z_a, z_b, t_a, t_b = (torch.tensor(x) for x in rng.normal(size=(4, 16, 5)))
    local_z = torch.tensor(rng.normal(size=(2, 16, 5)), requires_grad=True)
    w, center = torch.tensor(rng.normal(size=(6, 5))), torch.zeros(6, dtype=torch.float64)
    prior = torch.tensor(rng.normal(size=(16, 3)))
    adc = ADC(perplexity=5.0)
    parts = registry.method_parts("dino", z_a, z_b, t_a, t_b, prototypes=w, center=center,
                                  local_z=local_z, adc=adc, prior=prior)
    parts.total.backward()
    assert local_z.grad is not None and float(local_z.grad.abs().sum()) > 0.0
    assert_close(parts.constrain.detach(), adc(z_a, z_b, prior), "float64", scale=1.0)


@pytest.mark.parametrize("framework", ["torch", "jax", "tensorflow"])
@pytest.mark.parametrize("method", ["swav", "dino"])
def test_front_ends_pass_local_crops_to_the_spec(framework: str, method: str) -> None:
    rng = np.random.default_rng(5)
    entry = registry.get(method)
    inputs = [rng.normal(size=(8, 4)) for _ in entry.inputs]
    local_z = rng.normal(size=(2, 8, 4))
    held = {"prototypes": rng.normal(size=(6, 4)), "center": rng.normal(size=6)}
    held = {name: held[name] for name in entry.held}
    want = float(registry.method_parts(method, *inputs, **held, local_z=local_z).total)
    if framework == "jax":
        pytest.importorskip("jax")
        import jax.numpy as jnp
        from glf_losses.backends import jax as jb

        loss = jb.front_end(method)
        got = loss(*map(jnp.asarray, inputs), *map(jnp.asarray, held.values()),
                   local_z=jnp.asarray(local_z))
        with pytest.raises(TypeError, match="simclr takes no local crops"):
            jb.simclr_loss(*map(jnp.asarray, inputs[:2]), local_z=jnp.asarray(local_z))
    elif framework == "torch":
        torch = pytest.importorskip("torch")
        from glf_losses.backends import torch as tb

        loss_fn = tb.front_end(method)(4, 6).double().eval()
        with torch.no_grad():
            for name, value in held.items():
                getattr(loss_fn, name).copy_(torch.tensor(value))
        got = loss_fn(*map(torch.tensor, inputs), local_z=torch.tensor(local_z)).detach()
    else:
        tf = pytest.importorskip("tensorflow")
        from glf_losses.backends import tensorflow as tfb

        loss_fn = tfb.front_end(method)(4, 6, dtype="float64")
        for name, value in held.items():
            getattr(loss_fn, name).assign(value)
        got = loss_fn(*map(tf.constant, inputs), local_z=tf.constant(local_z), training=False)
    assert float(got) == pytest.approx(want, rel=1e-10)


# --- configuration -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--method", "simclr", "--local-crops", "2"],
         "--local-crops 2: simclr takes no local crops; only dino, swav do"),
        (["--method", "swav", "--local-crops", "-1"], "--local-crops must be >= 0, got -1"),
        (["--method", "swav", "--local-crops", "2", "--local-crop-size", "9"],
         r"--local-crop-size must be in \[1, 8\] pixels \(at most the side of the views of "
         r"digits\), got 9"),
        (["--method", "dino", "--local-crop-size", "0"], r"--local-crop-size must be in \[1"),
        (["--method", "swav", "--local-crop-min-area", "0"],
         r"--local-crop-min-area must be in \(0, 1\], got 0.0"),
        (["--method", "swav", "--local-crop-min-area", "0.2"],
         r"--local-crop-max-area must be in \[--local-crop-min-area, 1\] = \[0.2, 1\], "
         r"got 0.14"),
        (["--method", "dino", "--local-crop-max-area", "1.5"],
         r"--local-crop-max-area must be in \[--local-crop-min-area, 1\]"),
    ],
)
def test_local_crop_settings_are_validated_naming_the_flag(
    argv: list[str], message: str
) -> None:
    from glf_train.cli import parse_config

    with pytest.raises(ValueError, match=message):
        parse_config(["--no-recipe", *argv])


def test_local_crop_settings_are_saved_and_default_to_none() -> None:
    from glf_train.cli import parse_config
    from glf_train.config import RunConfig

    config = parse_config(["--no-recipe", "--method", "dino", "--local-crops", "6",
                           "--local-crop-size", "4", "--local-crop-max-area", "0.3"]).config
    saved = config.to_dict()
    assert (saved["local_crops"], saved["local_crop_size"], saved["local_crop_min_area"],
            saved["local_crop_max_area"]) == (6, 4, 0.05, 0.3)
    assert RunConfig.from_dict(saved) == config
    # A summary written before multi-crop reads as a run without local crops.
    old = {k: v for k, v in saved.items() if not k.startswith("local_crop")}
    assert RunConfig.from_dict(old).validate().local_crops == 0
    with pytest.raises(ValueError, match=r"--local-crops \(config key 'local_crops'\) must be "
                                         r"an integer, got '2'"):
        RunConfig.from_dict({**saved, "local_crops": "2"}).validate()


# --- the views ---------------------------------------------------------------------------


def test_local_view_config_scales_the_views_side_as_swav_and_dino() -> None:
    from glf_train.config import RunConfig
    from glf_train.loop import local_view_config

    # 96 of 224 px: 3 of 8, 12 of 28, 14 of 32, 41 of 96.
    for side, local in ((8, 3), (28, 12), (32, 14), (96, 41)):
        aug = local_view_config(RunConfig(method="swav"), "digits", (side, side))
        assert aug.out_hw == (local, local)
    aug = local_view_config(
        RunConfig(method="dino", local_crop_size=5, local_crop_min_area=0.1,
                  local_crop_max_area=0.4), "mnist5k", (28, 28),
    )
    assert (aug.out_hw, aug.crop_scale, aug.crop_ratio) == ((5, 5), (0.1, 0.4), (3 / 4, 4 / 3))
    assert aug.noise_std == 0.05  # the rest of the dataset's preset is kept


def test_local_views_are_drawn_after_the_two_views_deterministically() -> None:
    from glf_train import augment
    from glf_train.config import RunConfig
    from glf_train.data import load_dataset
    from glf_train.loop import local_view_config, view_config

    dataset = load_dataset("digits")
    images = dataset.x_train[:16]
    config = RunConfig(method="swav", local_crops=3)
    aug = view_config(config, "digits")
    local_aug = local_view_config(config, "digits", (8, 8))

    def draw(count: int, seed: int, rows: slice = slice(None)) -> tuple[Any, ...]:
        rng = np.random.default_rng((seed, 0, 0))
        views = augment.two_views(xp_np, images[rows], rng, aug, global_size=16, rows=rows)
        return (*views, *augment.local_views(xp_np, images[rows], rng, local_aug, count,
                                             global_size=16, rows=rows))

    plain, with_local, again = draw(0, 0), draw(3, 0), draw(3, 0)
    assert len(plain) == 2 and len(with_local) == 5
    # The two views are bit for bit those of a run without local crops.
    for x, y in zip(plain, with_local[:2], strict=True):
        np.testing.assert_array_equal(x, y)
    for x, y in zip(with_local, again, strict=True):
        np.testing.assert_array_equal(x, y)
    for crop in with_local[2:]:
        assert crop.shape == (16, 1, 3, 3) and np.isfinite(crop).all()
    assert not np.allclose(with_local[2], with_local[3])
    assert not np.allclose(with_local[2], draw(3, 1)[2])
    # A data-parallel worker's crops are its rows of the global batch's.
    half = draw(3, 0, slice(8, 16))
    for x, y in zip(half, with_local, strict=True):
        np.testing.assert_array_equal(x, y[8:])


def test_the_loop_passes_local_views_only_with_local_crops(tmp_path: Path) -> None:
    from glf_train import loop
    from glf_train.data import load_dataset

    class Recorder:
        xp = xp_np
        batch_rows = slice(None)
        is_main = True

        def __init__(self) -> None:
            self.calls: list[tuple[Any, ...]] = []

        def to_device(self, images: np.ndarray) -> np.ndarray:
            return images

        def train_step(self, view_a: Any, view_b: Any, prior: Any, inputs: Any,
                       **local: Any) -> dict[str, float]:
            self.calls.append((view_a, view_b, local))
            return {"loss": 1.0, "align": 1.0, "constrain": 0.0}

    dataset = load_dataset("digits")
    recorded = {}
    for count in (0, 2):
        config = train_helpers.small_config(tmp_path, "torch", method="dino", epochs=1,
                                            local_crops=count).validate()
        trainer = Recorder()
        loop._train_epoch(config, trainer, dataset, 0, tmp_path / "unused")  # type: ignore[arg-type]
        recorded[count] = trainer.calls
    assert len(recorded[0]) == len(recorded[2]) == dataset.ssl_size // 64
    for (a0, b0, none), (a2, b2, local) in zip(recorded[0], recorded[2], strict=True):
        assert none == {}
        np.testing.assert_array_equal(a0, a2)
        np.testing.assert_array_equal(b0, b2)
        assert [v.shape for v in local["local_views"]] == [(64, 1, 3, 3)] * 2


# --- the trainers ------------------------------------------------------------------------


def _outputs(trainer: Any, backend: str, views: list[np.ndarray]) -> dict[str, list[Any]]:
    """The online and target networks' projections of ``views``, as the step computes them
    (training mode: batch statistics), in NumPy float64."""
    out: dict[str, list[Any]] = {"online": [], "target": []}
    # The two views one by one, the local crops in one batch, as the steps run them; the
    # target sees the two views only.
    crops = views[2:]
    views = [*views[:2], np.concatenate(crops)] if crops else views
    if backend == "torch":
        import torch

        with torch.no_grad():
            for i, v in enumerate(views):
                x = torch.from_numpy(v)
                out["online"].append(trainer.online(x))
                if trainer.target is not None and i < 2:
                    out["target"].append(trainer.target(x))
        held = {n: getattr(trainer.loss_fn, n).detach() for n in trainer.entry.held}
    elif backend == "jax":
        state = trainer.state
        online = trainer.programs.online

        def apply(params: Any, x: np.ndarray) -> Any:
            variables = {"params": params, "batch_stats": state["batch_stats"]["online"]}
            return online.apply(variables, x, train=True, mutable=["batch_stats"])[0]

        for i, v in enumerate(views):
            out["online"].append(apply(state["params"]["online"], v))
            if "target" in state and i < 2:
                out["target"].append(apply(state["target"], v))
        held = {**state["owned"], **state["method_state"]}
    else:
        for i, v in enumerate(views):
            out["online"].append(trainer._online(v))
            if trainer.target is not None and i < 2:
                t_enc, t_head = trainer.target
                out["target"].append(t_head(t_enc(v, training=True), training=True))
        held = {n: getattr(trainer.loss_fn, n).value for n in trainer.entry.held}
    as_numpy = {k: [np.asarray(x, dtype=np.float64) for x in v] for k, v in out.items()}
    if crops:
        as_numpy["online"][2:] = np.split(as_numpy["online"][2], len(crops))
    as_numpy["held"] = [{k: np.asarray(v, dtype=np.float64) for k, v in held.items()}]
    return as_numpy


@pytest.mark.parametrize("backend", ["torch", "jax", "tensorflow"])
@pytest.mark.parametrize("method", ["swav", "dino"])
def test_a_step_with_local_crops_is_the_spec_of_the_networks_outputs(
    tmp_path: Path, backend: str, method: str
) -> None:
    pytest.importorskip({"torch": "torch", "jax": "flax", "tensorflow": "tensorflow"}[backend])
    from glf_train.data import load_dataset
    from glf_train.loop import make_trainer
    from glf_train.schedules import step_inputs

    # JAX compiled (its eager step is slower than compiling it); TensorFlow's DINO through
    # XLA and its SwAV eagerly, both paths in half the compile time. torch.compile takes
    # minutes on a CPU.
    compiled = backend == "jax" or (backend == "tensorflow" and method == "dino")
    config = train_helpers.small_config(
        tmp_path, backend, method=method, batch_size=32, local_crops=2,
        compile="on" if compiled else "off", loss_options={"n_prototypes": 16},
    ).validate()
    dataset = load_dataset("digits")
    trainer = make_trainer(config, dataset)
    rng = np.random.default_rng(0)
    views = [rng.normal(size=(32, 1, 8, 8)).astype(np.float32) for _ in range(2)]
    crops = [rng.normal(size=(32, 1, 3, 3)).astype(np.float32) for _ in range(2)]
    # Computed first: the step donates the JAX state and moves every network.
    out = _outputs(trainer, backend, views + crops)
    z_a, z_b, *local = out["online"]
    inputs = (z_a, z_b, *out["target"]) if method == "dino" else (z_a, z_b)
    settings = dict(config.loss_settings()[1])
    want = registry.method_parts(method, *inputs, **out["held"][0], **settings,
                                 local_z=np.stack(local))
    without = registry.method_parts(method, *inputs, **out["held"][0], **settings)

    images = trainer.to_device(dataset.x_train[:32])
    logs = trainer.train_step(
        *(trainer.to_device(v) for v in views), images, step_inputs(config, 1, 5, 10),
        local_views=tuple(trainer.to_device(c) for c in crops),
    )
    got = {k: float(v) for k, v in logs.items()}
    assert got["loss"] == pytest.approx(float(want.total), rel=2e-4), (got, float(want.total))
    assert got["align"] == pytest.approx(float(want.align), rel=2e-4)
    assert abs(got["loss"] - float(without.total)) > 1e-3


def test_a_run_with_local_crops_resumes_and_keeps_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("torch")
    from glf_train import loop, report
    from glf_train.data import load_dataset

    whole = load_dataset("digits")
    tiny = dataclasses.replace(
        whole, x_train=whole.x_train[:256], y_train=whole.y_train[:256],
        x_test=whole.x_test[:100], y_test=whole.y_test[:100],
    )
    monkeypatch.setattr(loop, "load_dataset", lambda name, root=None: tiny)

    def config(out: str, epochs: int, **overrides: Any) -> Any:
        values = {"method": "swav", "local_crops": 2, "epochs": epochs,
                  "loss_options": {"n_prototypes": 16}, **overrides}
        return train_helpers.small_config(tmp_path / out, "torch", **values)

    loop.train(config("whole", 2))
    loop.train(config("resumed", 1))
    # Changing the crops changes the training: refused without --allow-changes.
    with pytest.raises(ValueError, match=r"--local-crops 2 -> 0"):
        loop.train(config("resumed", 1, local_crops=0), resume=True)
    # One more epoch (the warm-up is the first epoch either way, so the learning rates
    # of both epochs are the uninterrupted run's).
    resumed = loop.train(config("resumed", 2), resume=True, allow_changes=True)
    assert resumed["config"]["local_crops"] == 2
    assert resumed["changes"] == [{"epoch": 1, "settings": {"epochs": [1, 2]}}]
    losses = [[r["loss"] for r in report.read_metrics(Path(c.out))]
              for c in (config("whole", 2), config("resumed", 2))]
    # The local crops of every step are drawn from (seed, epoch, step): the resumed run
    # trains on the same crops as the uninterrupted one.
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-5)


# Run in a fresh process: JAX's host devices are fixed when it starts.
_TWO_DEVICES = """
import os, sys
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
sys.path.insert(0, "tests")
import numpy as np, train_helpers
from glf_train import augment
from glf_train.data import load_dataset
from glf_train.loop import local_view_config, make_trainer, view_config
from glf_train.schedules import step_inputs

dataset = load_dataset("digits")
images = dataset.x_train[:32]
losses = []
for devices in (1, 2):
    config = train_helpers.small_config(
        __import__("pathlib").Path(sys.argv[1]), "jax", method="dino", batch_size=32,
        devices=devices, local_crops=2, loss_options={"n_prototypes": 16}).validate()
    trainer = make_trainer(config, dataset)
    x = trainer.to_device(images)
    rng = np.random.default_rng(0)
    views = augment.two_views(trainer.xp, x, rng, view_config(config, "digits"))
    crops = augment.local_views(trainer.xp, x, rng,
                                local_view_config(config, "digits", (8, 8)), 2)
    for step in range(2):
        logs = trainer.train_step(*views, x, step_inputs(config, 0, step, 10),
                                  local_views=crops)
        losses.append(float(logs["loss"]))
print(losses)
"""


@pytest.mark.slow
def test_jax_two_devices_with_local_crops_equal_one(tmp_path: Path) -> None:
    """The local crops are sharded with the batch: two steps on two devices are the
    one-device steps (the second checks the first's update)."""
    pytest.importorskip("flax")
    import ast
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", _TWO_DEVICES, str(tmp_path)], env=env,
                            capture_output=True, text=True, timeout=600,
                            cwd=Path(__file__).parent.parent)
    assert result.returncode == 0, result.stderr[-3000:]
    losses = ast.literal_eval(result.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(losses[2:], losses[:2], rtol=1e-4)
    assert losses[0] != losses[1]
