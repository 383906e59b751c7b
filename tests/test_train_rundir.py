"""What the trainer does with a user's run directories, config files and disks: it never
overwrites another run's files, never mixes settings on --resume without saying so, and
turns file-system failures and mistyped settings into ``glf-train: error:`` messages.

End to end with the PyTorch backend (the checks are the shared loop's); one epoch each.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

import train_helpers  # noqa: E402
from glf_train import loop, report, rundir  # noqa: E402
from glf_train.cli import main, os_error_message  # noqa: E402
from glf_train.config import RunConfig  # noqa: E402
from glf_train.data import load_dataset  # noqa: E402
from glf_train.errors import TrainingDiverged  # noqa: E402
from glf_train.loop import train  # noqa: E402


@pytest.fixture(autouse=True)
def tiny_digits(monkeypatch: pytest.MonkeyPatch) -> None:
    """256 training and 100 test images of digits: 4 steps an epoch, so that the tests of
    the directory logic take seconds, not minutes."""
    whole = load_dataset("digits")
    tiny = dataclasses.replace(
        whole, x_train=whole.x_train[:256], y_train=whole.y_train[:256],
        x_test=whole.x_test[:100], y_test=whole.y_test[:100],
    )
    monkeypatch.setattr(loop, "load_dataset", lambda name, root=None: tiny)


def small_config(tmp_path: Path, **overrides: object) -> RunConfig:
    return train_helpers.small_config(tmp_path, "torch", method="simclr", **overrides)


def cli_args(out: Path, *extra: str) -> list[str]:
    """``glf-train`` arguments of the small run (for :func:`main`, in this process)."""
    return [*train_helpers.cli(out, "torch", "--method", "simclr", *extra)[3:]]


def run_main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().err


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


# --- resume with changed settings --------------------------------------------------------


def test_resume_refuses_changed_settings_naming_each(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert main(cli_args(out, "--epochs", "1")) == 0
    before = snapshot(out)
    code, err = run_main(
        capsys, *cli_args(out, "--epochs", "1", "--resume", "--lr", "0.01", "--lambd", "0.01",
                          "--weight-decay", "0.001"),
    )
    assert code == 2
    for change in ("--lr 0.002 -> 0.01", "--lambd 0.0051 -> 0.01",
                   "--weight-decay 1e-05 -> 0.001", "--allow-changes"):
        assert change in err, (change, err)
    assert snapshot(out) == before  # nothing was touched
    # Settings that do not change the training may differ.
    assert main(cli_args(out, "--epochs", "1", "--resume", "--eval-every", "1")) == 0


def test_allow_changes_records_old_and_new_values(tmp_path: Path) -> None:
    train(small_config(tmp_path, epochs=1))
    changed = small_config(tmp_path, epochs=3, lr=0.01)
    with pytest.raises(ValueError, match=r"--epochs 1 -> 3; --lr 0.002 -> 0.01"):
        train(changed, resume=True)
    train(small_config(tmp_path, epochs=2, lr=0.01), resume=True, allow_changes=True)
    # A second resume with more changes: the history keeps both.
    summary = train(changed, resume=True, allow_changes=True)
    assert summary["config"]["lr"] == 0.01 and summary["config"]["epochs"] == 3
    assert summary["changes"] == [
        {"epoch": 1, "settings": {"epochs": [1, 2], "lr": [0.002, 0.01]}},
        {"epoch": 2, "settings": {"epochs": [2, 3]}},
    ]
    saved = report.read_summary(changed.out)
    assert saved["changes"] == summary["changes"]
    assert [r["epoch"] for r in report.read_metrics(Path(changed.out))] == [0, 1, 2]


def test_resume_still_refuses_another_model_with_allow_changes(tmp_path: Path) -> None:
    train(small_config(tmp_path, epochs=1))
    with pytest.raises(ValueError, match=r"proj_dim=32, this run asks for 16"):
        train(small_config(tmp_path, epochs=2, proj_dim=16), resume=True, allow_changes=True)


# --- whose directory ------------------------------------------------------------------------


def test_new_run_refuses_a_finished_runs_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert main(cli_args(out, "--epochs", "1")) == 0
    before = snapshot(out)
    code, err = run_main(capsys, *cli_args(out, "--epochs", "1", "--seed", "5"))
    assert code == 2
    assert f"glf-train: error: --out {out} already holds another run" in err
    assert "--resume" in err and "--overwrite" in err
    assert snapshot(out) == before
    # --overwrite replaces the run's files (a new run: other seed, new summary).
    assert main(cli_args(out, "--epochs", "1", "--seed", "5", "--overwrite")) == 0
    assert report.read_summary(out)["config"]["seed"] == 5


def test_new_run_refuses_a_directory_of_other_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "thesis"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / "summary.json").write_text('{"mine": true}')
    code, err = run_main(capsys, *cli_args(out, "--epochs", "1"))
    assert code == 2 and "notes.txt" in err and "--overwrite" in err
    assert (out / "summary.json").read_text() == '{"mine": true}'
    # --overwrite deletes only what a run writes; other files stay.
    assert main(cli_args(out, "--epochs", "1", "--overwrite")) == 0
    assert (out / "notes.txt").read_text() == "mine"
    assert "linear_probe_accuracy" in report.read_summary(out)


def test_resume_with_another_backend_refuses_instead_of_starting_over(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert main(cli_args(out, "--epochs", "1")) == 0
    before = snapshot(out)
    argv = cli_args(out, "--epochs", "1", "--resume")
    argv[argv.index("torch")] = "jax"
    code, err = run_main(capsys, *argv)
    assert code == 2
    assert "holds a torch run (checkpoint.pt), not a jax one" in err
    assert "--backend torch" in err
    assert snapshot(out) == before


def test_resume_without_a_checkpoint_refuses_a_directory_with_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "data.csv").write_text("1,2\n")
    code, err = run_main(capsys, *cli_args(out, "--epochs", "1", "--resume"))
    assert code == 2 and "holds no checkpoint.pt to resume from" in err
    # An empty directory, or one whose run stopped before its first record, starts over.
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "metrics.jsonl").write_text("")
    assert main(cli_args(empty, "--epochs", "1", "--resume")) == 0


def test_overwrite_and_resume_exclude_each_other(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = run_main(capsys, *cli_args(tmp_path / "r", "--resume", "--overwrite"))
    assert code == 2 and "--overwrite starts a new run and --resume continues one" in err
    code, err = run_main(capsys, *cli_args(tmp_path / "r", "--allow-changes"))
    assert code == 2 and "--allow-changes applies to --resume only" in err


# --- file-system failures -------------------------------------------------------------------


def test_out_that_is_a_file_or_under_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    code, err = run_main(capsys, *cli_args(afile, "--epochs", "1"))
    assert code == 2 and f"--out {afile} is a file, not a directory" in err
    assert "Traceback" not in err
    code, err = run_main(capsys, *cli_args(afile / "run", "--epochs", "1"))
    assert code == 2 and f"lies under {afile}, which is a file" in err
    assert afile.read_text() == "x"


def test_read_only_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Root ignores permission bits, so the check's answer is what is simulated here.
    real_access = os.access
    out = tmp_path / "ro"
    monkeypatch.setattr(
        rundir.os, "access",
        lambda path, mode: False if Path(path) == out else real_access(path, mode),
    )
    code, err = run_main(capsys, *cli_args(out, "--epochs", "1"))
    assert code == 2 and f"--out {out} is not writable" in err


@pytest.mark.parametrize(
    ("number", "advice"),
    [
        (errno.ENOSPC, "no space left on the device while writing /x/checkpoint.pt. Free"),
        (errno.EROFS, "the file system is read-only. Choose an --out you can write to"),
        (errno.EACCES, "permission denied. Choose an --out you can write to"),
        (errno.ENOTDIR, "a file stands where --out needs a directory"),
    ],
)
def test_os_errors_say_what_to_do(number: int, advice: str) -> None:
    err = OSError(number, os.strerror(number), "/x/checkpoint.pt")
    assert advice in os_error_message(err)


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc/self/fd")
def test_full_disk_keeps_the_last_checkpoint_and_resume_works(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "run"
    real_fsync = os.fsync
    checkpoints = []

    def fsync(fd: int) -> None:
        # The second checkpoint's temporary file hits a full disk.
        name = os.readlink(f"/proc/self/fd/{fd}")
        if Path(name).name.startswith(".checkpoint.pt."):
            checkpoints.append(name)
            if len(checkpoints) == 2:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), name)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    code, err = run_main(capsys, *cli_args(out, "--epochs", "3"))
    assert code == 2, err
    assert "glf-train: error: no space left on the device" in err
    assert "--resume" in err and "Traceback" not in err
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert not list(out.glob(".*.tmp"))
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["meta"]["epoch"] == 1  # the first checkpoint, intact
    assert main(cli_args(out, "--epochs", "3", "--resume")) == 0
    assert [r["epoch"] for r in report.read_metrics(out)] == [0, 1, 2]


# --- mistyped settings ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"epochs": "ten"}, "--epochs (config key 'epochs') must be an integer, got 'ten'"),
        ({"lr": "0.1"}, "--lr (config key 'lr') must be a number, got '0.1' (a str); "
                        "write 0.1 without quotes"),
        ({"epochs": True}, "--epochs (config key 'epochs') must be an integer, got True"),
        ({"adc": "false"}, "--adc (config key 'adc') must be true or false, got 'false'"),
        ({"batch_size": 64.0}, "--batch-size (config key 'batch_size') must be an integer"),
        ({"adc_nu": [1]}, "--adc-nu (config key 'adc_nu') must be a number or null"),
        ({"method": 3}, "--method (config key 'method') must be a string, got 3 (an int)"),
    ],
)
def test_config_values_of_the_wrong_type_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], settings: dict[str, object],
    message: str,
) -> None:
    path = tmp_path / "run.json"
    path.write_text(json.dumps(settings))
    code, err = run_main(capsys, "--config", str(path), "--out", str(tmp_path / "run"))
    assert code == 2
    assert f"glf-train: error: {message}" in err, err
    assert not (tmp_path / "run").exists()


def test_config_numbers_are_accepted_as_they_are_written(tmp_path: Path) -> None:
    config = RunConfig.from_dict({"lr": 1, "adc_nu": 2, "adc": False}).validate()
    assert (config.lr, config.adc_nu) == (1.0, 2.0)
    assert isinstance(config.lr, float)


# --- divergence and interrupted writes -----------------------------------------------------


def test_divergence_in_the_first_epoch_claims_no_checkpoint(tmp_path: Path) -> None:
    config = small_config(tmp_path, epochs=2, optimizer="sgd", lr=1e38)
    with pytest.raises(TrainingDiverged) as info:
        train(config)
    message = str(info.value)
    assert "before its first checkpoint, so there is none to resume from" in message
    assert "last good checkpoint" not in message
    assert not (Path(config.out) / "checkpoint.pt").exists()
    # Its directory holds no record, so the corrected run may start there.
    train(small_config(tmp_path, epochs=1))


def test_stale_temporaries_of_a_killed_run_are_removed(tmp_path: Path) -> None:
    config = small_config(tmp_path, epochs=1)
    train(config)
    out = Path(config.out)
    stale = [out / ".checkpoint.pt.k1ll3d.tmp", out / ".metrics.jsonl.x2.tmp",
             out / ".checkpoint.msgpack.q.tmp"]
    for path in stale:
        path.write_bytes(os.urandom(1 << 20))
    unrelated = out / ".notes.tmp"
    unrelated.write_text("not ours")
    train(small_config(tmp_path, epochs=2), resume=True, allow_changes=True)
    assert not any(path.exists() for path in stale)
    assert unrelated.exists()
    # A new run's start cleans them up too (a killed run's first checkpoint, half written).
    fresh = tmp_path / "fresh" / "run"
    fresh.mkdir(parents=True)
    (fresh / ".checkpoint.pt.abc.tmp").write_bytes(b"\0" * 1000)
    train(small_config(tmp_path / "fresh", epochs=1))
    assert not (fresh / ".checkpoint.pt.abc.tmp").exists()
