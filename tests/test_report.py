"""Tests for run outputs: progress bar, metrics log, summary, plots."""

from __future__ import annotations

import io
import json
import os

import numpy as np
import pytest
from glf_train import report
from glf_train.report import (
    MetricsLog,
    ProgressBar,
    atomic_write_bytes,
    format_summary_table,
    plot_run,
    project_2d,
    read_metrics,
    read_summary,
    write_metrics,
    write_summary,
)
from rich.console import Console


def test_metrics_log_round_trip(tmp_path):
    records = [
        {"epoch": 0, "step": 1, "loss": 1.5, "align": np.float32(0.5), "constrain": 1.0},
        {"epoch": 0, "knn_accuracy": np.float64(0.25), "lr": np.array(0.1)},
        {"epoch": 1, "loss": float("nan"), "note": "diverged"},
    ]
    with MetricsLog(tmp_path) as log:
        for r in records:
            log.append(r)
    got = read_metrics(tmp_path / "metrics.jsonl")
    assert got[0] == {"epoch": 0, "step": 1, "loss": 1.5, "align": 0.5, "constrain": 1.0}
    assert got[1]["knn_accuracy"] == 0.25 and got[1]["lr"] == pytest.approx(0.1)
    assert np.isnan(got[2]["loss"])
    with pytest.raises(ValueError, match="closed"):
        log.append({"x": 1})


def test_metrics_log_torch_scalars(tmp_path):
    torch = pytest.importorskip("torch")
    with MetricsLog(tmp_path / "m.jsonl") as log:
        log.append({"loss": torch.tensor(2.5), "v": torch.tensor([1.0, 2.0])})
    assert read_metrics(tmp_path / "m.jsonl") == [{"loss": 2.5, "v": [1.0, 2.0]}]


def test_metrics_truncated_last_line_tolerated_and_dropped_on_resume(tmp_path):
    path = tmp_path / "metrics.jsonl"
    with MetricsLog(path) as log:
        log.append({"epoch": 0, "loss": 1.0})
        log.append({"epoch": 1, "loss": 0.5})
    with open(path, "a", encoding="utf-8") as f:
        f.write('{"epoch": 2, "lo')  # a kill mid-write
    kept = read_metrics(path)
    assert [r["epoch"] for r in kept] == [0, 1]
    # What the loop does on resume: rewrite the kept records, then append after them.
    write_metrics(path, kept)
    with MetricsLog(path) as log:
        log.append({"epoch": 2, "loss": 0.25})
    assert [r["epoch"] for r in read_metrics(path)] == [0, 1, 2]
    assert path.read_text().endswith("\n")
    path.write_text('{"epoch": 0}\n{"epoch": 1}')  # only the last newline was lost
    assert [r["epoch"] for r in read_metrics(path)] == [0, 1]


def test_metrics_corrupt_middle_line_raises(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"a": 1}\nnot json\n{"a": 2}\n')
    with pytest.raises(ValueError, match=":2:"):
        read_metrics(path)
    assert read_metrics(tmp_path / "missing.jsonl") == []


def _summary():
    return {
        "method": "byol",
        "linear_probe_accuracy": 0.9123,
        "knn_accuracy": np.float64(0.881),
        "baselines": {
            "random_encoder": {"linear_probe_accuracy": 0.5, "knn_accuracy": 0.4},
            "raw_pixels": {"linear_probe_accuracy": 0.85, "knn_accuracy": None},
        },
    }


def test_write_summary_atomic(tmp_path, monkeypatch):
    calls = []
    real_replace = os.replace

    def spy(src, dst):
        calls.append((os.fspath(src), os.fspath(dst)))
        # The new content is complete before the rename makes it visible.
        assert json.loads(open(src, encoding="utf-8").read())["method"] == "byol"
        return real_replace(src, dst)

    monkeypatch.setattr(report.os, "replace", spy)
    (tmp_path / "summary.json").write_text('{"old": true}')
    path = write_summary(tmp_path, _summary())
    assert path == tmp_path / "summary.json"
    assert len(calls) == 1
    src, dst = calls[0]
    assert os.path.dirname(src) == str(tmp_path) and dst == str(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]
    got = read_summary(tmp_path)
    assert set(got) == {"method", "linear_probe_accuracy", "knn_accuracy", "baselines"}
    assert got["knn_accuracy"] == pytest.approx(0.881)


def test_atomic_write_failure_leaves_old_file_and_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "ckpt.bin"
    atomic_write_bytes(target, b"old")

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(report.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.bin"]


def test_atomic_write_creates_dirs_and_mode(tmp_path):
    p = atomic_write_bytes(tmp_path / "a" / "b" / "x.bin", b"\x00\x01")
    assert p.read_bytes() == b"\x00\x01"
    assert p.stat().st_mode & 0o777 == 0o644


def test_format_summary_table():
    table = format_summary_table(_summary())
    lines = table.splitlines()
    assert len(lines) == 4
    assert lines[0].split() == ["linear", "probe", "kNN", "kNN", "k=200", "whitened", "kNN"]
    # An older summary (no "evaluation"): its kNN was at k = 200, so it shows there.
    assert lines[1].startswith("trained encoder") and lines[1].split()[2:] == [
        "91.23%", "-", "88.10%", "-"
    ]
    assert lines[2].startswith("random encoder") and "50.00%" in lines[2]
    assert lines[3].startswith("raw pixels") and "85.00%" in lines[3] and lines[3].endswith("-")
    assert len({len(line) for line in lines}) == 1  # aligned columns
    short = format_summary_table({"linear_probe_accuracy": 0.5})
    assert len(short.splitlines()) == 2
    current = {
        "linear_probe_accuracy": 0.9, "knn_accuracy": 0.8, "knn200_accuracy": 0.7,
        "whitened_knn_accuracy": 0.6, "linear_probe_C": 1.0,
        "evaluation": {"val_rows": 400, "test_rows": 1000},
    }
    lines = format_summary_table(current).splitlines()
    assert lines[1].split()[2:] == ["90.00%", "80.00%", "70.00%", "60.00%"]
    assert lines[2] == "test split (1000 images); probe C = 1 chosen on 400 validation images"
    no_val = {**current, "linear_probe_C": 0.1, "evaluation": {"val_rows": 0, "test_rows": 9}}
    assert format_summary_table(no_val).splitlines()[-1] == \
        "test split (9 images); probe C = 0.1 (no validation split)"


def test_upgrade_summary_moves_an_older_knn_to_the_k200_column():
    old = {**_summary(), "raw_pixels_knn_accuracy": 0.7, "random_encoder_knn_accuracy": 0.4}
    new = report.upgrade_summary(old)
    assert new["knn200_accuracy"] == pytest.approx(0.881) and "knn_accuracy" not in new
    assert new["raw_pixels_knn200_accuracy"] == 0.7 and "raw_pixels_knn_accuracy" not in new
    assert new["baselines"]["random_encoder"] == {
        "linear_probe_accuracy": 0.5, "knn200_accuracy": 0.4
    }
    assert old["knn_accuracy"] == pytest.approx(0.881)  # the argument is left alone
    assert "knn_accuracy" in old["baselines"]["random_encoder"]
    current = {"knn_accuracy": 0.8, "evaluation": {}}
    assert report.upgrade_summary(current) == current


def _console(terminal: bool) -> tuple[io.StringIO, Console]:
    stream = io.StringIO()
    return stream, Console(file=stream, width=160, force_terminal=terminal)


def test_progress_bar_on_a_pipe_writes_one_final_line():
    stream, console = _console(terminal=False)
    with ProgressBar(4, epoch=2, n_epochs=5, console=console) as bar:
        for _ in range(4):
            bar.update(images=128, loss=1.23456, align=-0.5, constrain=1.7e-5)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1, lines
    for part in ("epoch 2/5", "4/4", "loss 1.2346", "align -0.5000", "constrain 1.700e-05",
                 "img/s", "ETA"):
        assert part in lines[0], (part, lines[0])
    assert "\r" not in stream.getvalue()


def test_progress_bar_on_a_terminal_redraws_and_quiet_writes_nothing():
    stream, console = _console(terminal=True)
    bar = ProgressBar(10, epoch=1, n_epochs=1, console=console)
    bar.update(2, images=64, loss=0.5)
    bar.update(8, loss=0.25)
    bar.close()
    bar.close()  # harmless
    out = stream.getvalue()
    assert "10/10" in out and "loss 0.2500" in out and "\r" in out  # redrawn in place

    stream, console = _console(terminal=True)
    with ProgressBar(3, epoch=1, n_epochs=1, quiet=True, console=console) as bar:
        bar.update(3, loss=1.0)
    assert stream.getvalue() == ""


def test_project_2d_pca():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 5)) * np.array([10.0, 3.0, 0.1, 0.1, 0.1])
    y = project_2d(x)
    assert y.shape == (200, 2)
    assert np.allclose(y.mean(axis=0), 0.0, atol=1e-9)
    assert y[:, 0].var() > y[:, 1].var() > 1.0
    np.testing.assert_array_equal(project_2d(x), y)  # deterministic signs
    wide = project_2d(rng.standard_normal((10, 50)))
    assert wide.shape == (10, 2) and np.all(np.isfinite(wide))
    with pytest.raises(ValueError):
        project_2d(x, method="umap")


def test_plot_run_writes_pngs(tmp_path):
    metrics = []
    for epoch in range(3):
        for step in range(4):
            loss = 2.0 - 0.3 * epoch - 0.01 * step
            metrics.append({"epoch": epoch, "step": step, "loss": loss,
                            "align": -1.0 - 0.1 * epoch, "constrain": loss + 1.0})
        metrics.append({"epoch": epoch, "knn_accuracy": 0.3 + 0.2 * epoch})
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 300)
    emb = project_2d(rng.standard_normal((300, 16)) + labels[:, None])
    paths = plot_run(tmp_path, metrics, emb, labels)
    assert sorted(p.name for p in paths) == ["accuracy.png", "embeddings.png", "loss.png"]
    for p in paths:
        data = p.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert plot_run(tmp_path / "empty", []) == []


def test_per_epoch_prefers_epoch_summaries():
    metrics = [
        {"epoch": 0, "step": 0, "loss": 4.0},
        {"epoch": 0, "step": 1, "loss": 2.0},
        {"epoch": 0, "loss": 2.5},
        {"epoch": 1, "step": 0, "loss": 1.0},
        {"epoch": 1, "step": 1, "loss": 3.0},
    ]
    assert report._per_epoch(metrics, "loss", "mean") == ([0.0, 1.0], [2.5, 2.0])
