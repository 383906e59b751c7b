"""The PyTorch reference trainer end to end, on the bundled digits data (seconds each)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import train_helpers  # noqa: E402
from glf_train import report  # noqa: E402
from glf_train.cli import main, parse_config  # noqa: E402
from glf_train.config import RunConfig  # noqa: E402
from glf_train.errors import CheckpointError, TrainingDiverged  # noqa: E402
from glf_train.loop import train, view_config  # noqa: E402


def small_config(tmp_path: Path, backend: str = "torch", **overrides: object) -> RunConfig:
    return train_helpers.small_config(tmp_path, backend, **overrides)


@pytest.mark.parametrize("adc", [False, True], ids=["base", "adc"])
@pytest.mark.parametrize("method", ["barlow_twins", "byol", "simclr", "swav"])
def test_short_run_lowers_the_loss(tmp_path: Path, method: str, adc: bool) -> None:
    # SwAV's first epoch has frozen prototypes; its loss must fall once they move too.
    config = small_config(tmp_path, method=method, adc=adc, epochs=3, lr=3e-3)
    summary = train(config)
    train_helpers.check_short_run(config, summary)


def test_adc_adds_to_the_constraining_part(tmp_path: Path) -> None:
    base = train(small_config(tmp_path / "a", method="byol", epochs=1))
    with_adc = train(small_config(tmp_path / "b", method="byol", epochs=1, adc=True))
    read = report.read_metrics
    assert read(Path(base["config"]["out"]) / "metrics.jsonl")[0]["constrain"] == 0.0
    assert read(Path(with_adc["config"]["out"]) / "metrics.jsonl")[0]["constrain"] > 0.0


def _weights(path: Path) -> dict[str, np.ndarray]:
    state = torch.load(path, map_location="cpu", weights_only=True)
    return {f"{k}.{n}": v.numpy() for k in ("online", "loss_fn") for n, v in state[k].items()}


def test_resume_after_sigkill_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    flags = ("--method", "barlow_twins", "--adc", "--seed", "3")
    whole, killed = train_helpers.sigkill_and_resume(tmp_path, "torch", "checkpoint.pt", flags, 6)
    a, b = _weights(whole / "checkpoint.pt"), _weights(killed / "checkpoint.pt")
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-5, atol=1e-6, err_msg=name)


def test_corrupt_checkpoint_gives_a_clear_error(tmp_path: Path) -> None:
    config = small_config(tmp_path, method="simclr", epochs=1)
    train(config)
    ckpt = Path(config.out) / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:100])
    with pytest.raises(CheckpointError, match=r"cannot resume from .*checkpoint\.pt"):
        train(small_config(tmp_path, method="simclr", epochs=2), resume=True)


def test_bit_flipped_checkpoint_is_refused(tmp_path: Path) -> None:
    from glf_train.data import load_dataset
    from glf_train.torch.step import TorchTrainer

    config = small_config(tmp_path, method="simclr")
    trainer = TorchTrainer(config, load_dataset("digits"))
    path = tmp_path / "ckpt.pt"
    meta = {"epoch": 1, "config": config.to_dict()}
    trainer.save(path, meta)
    assert trainer.load(path, lambda m: None) == meta
    weight = max(trainer.online.state_dict().values(), key=lambda t: t.numel())
    train_helpers.flip_bytes_of(path, weight.cpu().numpy().tobytes())
    # torch itself reads the damaged file without complaint: only the checksum tells.
    damaged = torch.load(path, map_location="cpu", weights_only=True)
    assert damaged["meta"] == meta
    with pytest.raises(CheckpointError, match=r"ckpt\.pt: the checkpoint is corrupt"):
        trainer.load(path, lambda m: None)

def test_resume_refuses_another_method(tmp_path: Path) -> None:
    train(small_config(tmp_path, method="simclr", epochs=1))
    with pytest.raises(ValueError, match="method='simclr'"):
        train(small_config(tmp_path, method="byol", epochs=2), resume=True)


def test_divergence_stops_and_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    train(small_config(tmp_path, method="simclr", epochs=1, optimizer="sgd"))
    ckpt = Path(small_config(tmp_path).out) / "checkpoint.pt"
    good = ckpt.read_bytes()
    exploding = small_config(tmp_path, method="simclr", epochs=3, optimizer="sgd", lr=1e38)
    with pytest.raises(TrainingDiverged, match=r"non-finite .* last good checkpoint"):
        train(exploding, resume=True, allow_changes=True)
    assert ckpt.read_bytes() == good


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--method", "mocov4"], "--method must be one of"),
        (["--batch-size", "1"], "--batch-size must be >= 2"),
        (["--adc-rho", "2"], "--adc-rho must be > 2"),
        (["--crop-min-area", "0"], "--crop-min-area must be in (0, 1]"),
        (["--adc-bandwidth", "widest"],
         "--adc-bandwidth must be a positive float, 'median' or 'perplexity'"),
        (["--dataset", "cifar10", "--data-root", "/nonexistent"], "cifar-10-batches-py"),
        (["--backend", "torch", "--device", "cuda:7"], "CUDA"),
    ],
)
def test_bad_arguments_exit_with_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    if "cuda:7" in argv and torch.cuda.is_available():
        pytest.skip("a CUDA device exists")
    code = main([*argv, "--out", str(tmp_path / "run"), "--quiet", "--epochs", "1"])
    assert code == 2
    assert message in capsys.readouterr().err


def test_adc_weights_default_to_the_methods_recommendation() -> None:
    bt = RunConfig(method="barlow_twins", adc=True).adc_config()
    assert (bt.nu, bt.upsilon) == (100.0, 1000.0)
    byol = RunConfig(method="byol", adc=True).adc_config()
    assert (byol.nu, byol.upsilon) == (1.0, 10.0)
    chosen = RunConfig.from_dict({"method": "barlow_twins", "adc": True, "adc_upsilon": 5.0})
    assert (chosen.adc_config().nu, chosen.adc_config().upsilon) == (100.0, 5.0)
    assert RunConfig(method="byol").adc_config() is None


@pytest.mark.parametrize("method", ["simclr", "byol"])
def test_method_weight_scales_the_method_and_zero_trains_adc_alone(
    tmp_path: Path, method: str
) -> None:
    from glf_train.data import load_dataset
    from glf_train.loop import make_trainer
    from glf_train.schedules import step_inputs

    import glf_losses

    dataset = load_dataset("digits")
    rng = np.random.default_rng(0)
    images = torch.from_numpy(dataset.x_train[:64])
    view_a, view_b = (
        torch.from_numpy(rng.normal(size=tuple(images.shape)).astype(np.float32))
        for _ in range(2)
    )

    def losses(weight: float, adc: bool) -> tuple[float, float, float]:
        # The same seed gives every trainer the same initial weights.
        config = small_config(tmp_path, method=method, adc=adc, method_weight=weight)
        trainer = make_trainer(config.validate(), dataset)
        with torch.no_grad():
            total, align, constrain, _ = trainer._compute_loss(view_a, view_b, images)
        return float(total), float(align), float(constrain)

    base, full = losses(1.0, False), losses(1.0, True)
    alone, half = losses(0.0, True), losses(0.5, True)
    adc_part = full[0] - base[0]
    assert adc_part > 0.0
    # ADC alone: the method's parts are gone, ADC's is all the loss, in the constraining part.
    assert alone[1] == 0.0 and alone[0] == pytest.approx(alone[2])
    assert alone[0] == pytest.approx(adc_part, rel=1e-4)
    # Half the method's parts, ADC's unchanged.
    assert half[1] == pytest.approx(0.5 * base[1], rel=1e-5)
    assert half[0] == pytest.approx(0.5 * base[0] + adc_part, rel=1e-4)
    if method == "simclr":
        # ...and ADC's part is ADC of the projections and the raw batch, computed apart.
        trainer = make_trainer(small_config(tmp_path, method=method, adc=True).validate(),
                               dataset)
        with torch.no_grad():
            z_a, z_b = trainer.online(view_a), trainer.online(view_b)
        adc = glf_losses.ADC.for_method(method, perplexity=10.0)
        assert alone[0] == pytest.approx(float(adc(z_a, z_b, images)), rel=1e-4)
    # ADC alone trains: a step moves the encoder.
    config = small_config(tmp_path, method=method, adc=True, method_weight=0.0).validate()
    trainer = make_trainer(config, dataset)
    before = trainer.features(dataset.x_test[:8])
    logs = trainer.train_step(view_a, view_b, images, step_inputs(config, 0, 0, 10))
    assert float(logs["align"]) == 0.0 and float(logs["loss"]) > 0.0
    assert not np.allclose(trainer.features(dataset.x_test[:8]), before)


def test_method_weight_zero_needs_adc() -> None:
    with pytest.raises(ValueError, match=r"--method-weight 0 leaves nothing to train: .*add "
                       r"--adc"):
        RunConfig(method="byol", method_weight=0.0).validate()
    with pytest.raises(ValueError, match=r"--method-weight must be >= 0, got -1\.0"):
        RunConfig(method="byol", adc=True, method_weight=-1.0).validate()
    assert RunConfig(method="byol", adc=True, method_weight=0.0).validate().method_weight == 0.0
    invocation = parse_config(["--method", "byol", "--adc", "--method-weight", "0"])
    assert invocation.config.method_weight == 0.0


def test_crop_min_area_replaces_the_preset_crop() -> None:
    preset = view_config(RunConfig(dataset="mnist5k"), "mnist5k")
    assert preset.crop_scale == (0.7, 1.0)
    views = view_config(RunConfig(dataset="mnist5k", crop_min_area=0.15), "mnist5k")
    assert views.crop_scale == (0.15, 1.0) and views.crop_ratio == (3 / 4, 4 / 3)
    # Everything else about the views stays the preset's.
    assert (views.translate, views.noise_std) == (preset.translate, preset.noise_std)


def test_config_file_and_flags(tmp_path: Path) -> None:
    path = tmp_path / "run.toml"
    path.write_text('method = "byol"\nepochs = 7\nadc = true\nadc-nu = 0.5\n')
    config, resume, allow_changes, overwrite = parse_config(
        ["--config", str(path), "--epochs", "2", "--resume"]
    )
    assert (config.method, config.epochs, config.adc, config.adc_config().nu) == (
        "byol", 2, True, 0.5
    )
    assert resume and not allow_changes and not overwrite
    bad = tmp_path / "bad.toml"
    bad.write_text("methd = 'byol'\n")
    with pytest.raises(ValueError, match="unknown configuration keys: methd"):
        parse_config(["--config", str(bad)])


def test_swav_queue_fills_and_is_checkpointed(tmp_path: Path) -> None:
    config = small_config(tmp_path, method="swav", epochs=2, swav_queue=128)
    train(config)
    state = torch.load(Path(config.out) / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert state["queue"].shape == (2, 128, train_helpers.SMALL["proj_dim"])
    assert torch.count_nonzero(state["queue"].abs().sum(dim=2)) == 2 * 128
    records = report.read_metrics(Path(config.out) / "metrics.jsonl")
    assert all(np.isfinite(r["loss"]) for r in records)


def test_bfloat16_autocast_and_compile_on_cpu(tmp_path: Path) -> None:
    config = small_config(
        tmp_path, method="barlow_twins", adc=True, epochs=1, precision="bfloat16",
        compile="on",
    )
    summary = train(config)
    assert 0.0 <= summary["linear_probe_accuracy"] <= 1.0
    record = report.read_metrics(Path(config.out) / "metrics.jsonl")[0]
    assert np.isfinite(record["loss"])
