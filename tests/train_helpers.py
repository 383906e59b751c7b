"""What the trainer tests of every backend share (imports no framework).

``sigkill_and_resume`` is the resume protocol: one uninterrupted run, one run killed with
SIGKILL as soon as its first checkpoint exists, then resumed; the caller compares the two
final states in its backend's checkpoint format.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from glf_train import report
from glf_train.config import RunConfig

# A run small enough for seconds per epoch on two CPU cores.
SMALL: dict[str, object] = {
    "dataset": "digits",
    "batch_size": 64,
    "cnn_width": 8,
    "proj_hidden": 64,
    "proj_dim": 32,
    "pred_hidden": 64,
    "adc_perplexity": 10.0,
    "eval_every": 0,
    "quiet": True,
}


# SwAV's prototypes for the small run (a front-end size, given as a loss option).
SMALL_SWAV_PROTOTYPES = 16


def small_config(tmp_path: Path, backend: str, **overrides: object) -> RunConfig:
    values: dict[str, object] = {**SMALL, "backend": backend, "out": str(tmp_path / "run")}
    if overrides.get("method") == "swav":
        values["loss_options"] = {"n_prototypes": SMALL_SWAV_PROTOTYPES}
    return RunConfig.from_dict({**values, **overrides})


def cli(out: Path, backend: str, *extra: str) -> list[str]:
    """The ``glf-train`` command line of the small run."""
    args = [sys.executable, "-m", "glf_train", "--backend", backend, "--out", str(out)]
    for key, value in SMALL.items():
        if key == "quiet":
            args.append("--quiet")
        else:
            args += [f"--{key.replace('_', '-')}", str(value)]
    if "swav" in extra:
        args += ["--loss-option", f"n_prototypes={SMALL_SWAV_PROTOTYPES}"]
    return [*args, *extra]


def sigkill_and_resume(
    tmp_path: Path,
    backend: str,
    checkpoint_name: str,
    flags: tuple[str, ...],
    epochs: int,
    env: dict[str, str] | None = None,
) -> tuple[Path, Path]:
    """Run to the end once; run again, SIGKILL it after its first checkpoint, resume it.

    Returns the two run directories (uninterrupted, killed-and-resumed) and checks that
    the resumed run's log has every epoch exactly once.
    """
    # One intra-op thread: TensorFlow's multithreaded CPU kernels may reduce in an order
    # that depends on scheduling, which a loaded machine changes between two runs; the
    # comparison is of the checkpoint logic, not of the kernels' thread scheduling.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TF_NUM_INTRAOP_THREADS": "1",
           "TF_NUM_INTEROP_THREADS": "1", **(env or {})}
    flags = (*flags, "--epochs", str(epochs))
    whole = tmp_path / "whole"
    subprocess.run(cli(whole, backend, *flags), check=True, env=env, timeout=600)

    killed = tmp_path / "killed"
    proc = subprocess.Popen(cli(killed, backend, *flags), env=env)
    ckpt = killed / checkpoint_name
    deadline = time.monotonic() + 300
    while not ckpt.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert [r["epoch"] for r in report.read_metrics(killed / "metrics.jsonl")] != list(
        range(epochs)
    ), "the killed run had already finished"
    subprocess.run(cli(killed, backend, *flags, "--resume"), check=True, env=env, timeout=600)
    assert [r["epoch"] for r in report.read_metrics(killed / "metrics.jsonl")] == list(
        range(epochs)
    )
    return whole, killed


def check_short_run(config: RunConfig, summary: dict[str, object]) -> None:
    """What every backend's short run must show: one record per epoch, a falling loss
    whose parts add up, BYOL's constraint only from ADC, and complete outputs."""
    out = Path(config.out)
    records = report.read_metrics(out / "metrics.jsonl")
    assert [r["epoch"] for r in records] == list(range(config.epochs))
    losses = [r["loss"] for r in records]
    assert losses[-1] < losses[0], losses
    for r in records:
        assert abs(r["loss"] - (r["align"] + r["constrain"])) <= 1e-5 * abs(r["loss"]) + 1e-6
    if config.method == "byol":
        # BYOL's constraint is implicit; ADC is the only constraining term it can have.
        assert all((r["constrain"] > 0.0) is config.adc for r in records)
    from glf_train.evaluate import METRICS

    for prefix in ("", "random_encoder_", "raw_pixels_"):
        for key in (*METRICS, *("val_" + m for m in METRICS)):
            assert 0.0 <= summary[prefix + key] <= 1.0  # type: ignore[operator]
    # At most the feature dimension of the default small CNN (4 x width 32).
    assert 1.0 <= summary["effective_rank"] <= 4 * config.cnn_width  # type: ignore[operator]
    saved = json.loads((out / "summary.json").read_text())["config"]
    assert (saved["backend"], saved["method"], saved["adc"]) == (
        config.backend, config.method, config.adc
    )
    for png in ("loss.png", "embeddings.png"):
        assert (out / png).stat().st_size > 1000


def flip_bytes_of(path: Path, data: bytes, count: int = 50) -> None:
    """Flip ``count`` bytes of the copy of ``data`` (an array's raw bytes) inside the file
    ``path``, as a damaged disk would, leaving the file's structure intact."""
    raw = bytearray(path.read_bytes())
    start = raw.find(data)
    assert start >= 0 and len(data) >= count, "the array's bytes are not in the file"
    for i in range(start, start + count):
        raw[i] ^= 0xFF
    path.write_bytes(bytes(raw))
