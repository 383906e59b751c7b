"""The trainers' ``--devices``: a data-parallel run trains the global-batch objective.

PyTorch (one process per device, gloo on CPU) keeps per-device BatchNorm statistics on
CPU, so its reference is one process whose network sees each device's rows separately
and whose loss takes the concatenated projections: the two must give the same losses
epoch after epoch (the second epoch's losses check the first epoch's updates; with AdamW,
which is blind to a constant factor on the gradient, they check its direction, and the
sum-not-mean convention is checked at the loss level by tests/test_distributed.py).
JAX shards global arrays over host devices and TensorFlow mirrors the model over logical
CPU devices with synchronised BatchNorm: their reference is the one-device run itself.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import train_helpers
from glf_train import report

EPOCHS = 2


def _losses(out: Path) -> np.ndarray:
    records = report.read_metrics(out / "metrics.jsonl")
    assert [r["epoch"] for r in records] == list(range(EPOCHS))
    return np.array([[r["loss"], r["align"], r["constrain"]] for r in records])


# MoCo: a method that carries a state (its queue) across steps, enqueued from every
# device's keys.
@pytest.mark.parametrize(
    "flags", [("--method", "barlow_twins", "--adc"), ("--method", "swav"), ("--method", "moco")],
    ids=["barlow_twins-adc", "swav", "moco"],
)
def test_torch_two_processes_train_the_global_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flags: tuple[str, ...]
) -> None:
    torch = pytest.importorskip("torch")
    from glf_train.loop import train
    from glf_train.torch import step

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    parallel = tmp_path / "parallel"
    cmd = train_helpers.cli(parallel, "torch", *flags, "--epochs", str(EPOCHS), "--devices", "2")
    subprocess.run(cmd, check=True, env=env, timeout=600)
    summary = json.loads((parallel / "summary.json").read_text())
    assert summary["config"]["devices"] == 2

    forward = step._Online.forward

    def per_device(self: object, x: torch.Tensor) -> torch.Tensor:
        half = x.shape[0] // 2
        return torch.cat([forward(self, x[:half]), forward(self, x[half:])])

    monkeypatch.setattr(step._Online, "forward", per_device)
    method = flags[1]
    config = train_helpers.small_config(
        tmp_path / "reference", "torch", method=method, adc="--adc" in flags, epochs=EPOCHS
    )
    train(config)
    got, want = _losses(parallel), _losses(Path(config.out))
    # Every loss of the first epoch, and the total of every epoch, to 2e-4. The parts of
    # later epochs carry the drift of two trajectories apart by rounding (one process
    # standardises with PyTorch's batch norm, two with the spec's all-reduced moments):
    # Barlow Twins' smaller invariance part drifted 2e-3 by the second epoch.
    np.testing.assert_allclose(got[0], want[0], rtol=2e-4)
    np.testing.assert_allclose(got[:, 0], want[:, 0], rtol=2e-4)
    np.testing.assert_allclose(got, want, rtol=5e-3)


@pytest.mark.parametrize(
    ("backend", "method"),
    # TensorFlow's MoCo: the replicas' queues must stay one global queue.
    [("jax", "barlow_twins"), ("tensorflow", "byol"), ("tensorflow", "moco")],
)
def test_two_devices_equal_one(tmp_path: Path, backend: str, method: str) -> None:
    """Global arrays over host devices (JAX) and a MirroredStrategy with synchronised
    BatchNorm (TensorFlow) train exactly what one device trains."""
    pytest.importorskip(backend)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "XLA_FLAGS": "", "TF_CPP_MIN_LOG_LEVEL": "2"}
    runs = {}
    for devices in (1, 2):
        out = tmp_path / f"devices{devices}"
        cmd = train_helpers.cli(
            out, backend, "--method", method, "--adc", "--epochs", str(EPOCHS),
            "--devices", str(devices),
        )
        subprocess.run(cmd, check=True, env=env, timeout=600)
        runs[devices] = _losses(out)
    np.testing.assert_allclose(runs[2], runs[1], rtol=1e-3)


def test_devices_must_divide_the_batch(tmp_path: Path) -> None:
    result = subprocess.run(
        train_helpers.cli(tmp_path / "run", "torch", "--devices", "3"),
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 2
    assert "--batch-size 64 must be divisible by --devices 3" in result.stderr


def test_jax_too_few_devices_is_a_clear_error(tmp_path: Path) -> None:
    pytest.importorskip("jax")
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
    result = subprocess.run(
        train_helpers.cli(tmp_path / "run", "jax", "--devices", "2", "--epochs", "1"),
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert result.returncode == 2, result.stderr
    assert "--devices 2: JAX sees only 1 cpu device" in result.stderr
