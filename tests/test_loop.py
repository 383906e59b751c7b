"""The shared loop's backend selection."""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest
import train_helpers
from glf_train import loop
from glf_train.config import RunConfig
from glf_train.data import load_dataset


@pytest.mark.parametrize("backend", ["torch", "jax", "tensorflow"])
def test_missing_framework_names_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    real_import = importlib.import_module

    def without_framework(name: str, *args: object) -> object:
        if name.startswith(f"glf_train.{backend}"):
            raise ImportError(f"No module named '{backend}'")
        return real_import(name, *args)

    monkeypatch.setattr(loop.importlib, "import_module", without_framework)
    config = train_helpers.small_config(tmp_path, backend)
    with pytest.raises(RuntimeError, match=rf"--backend {backend} needs .*pip install"):
        loop.make_trainer(config, load_dataset("digits"))


def _every_key(prefix: str = "") -> set[str]:
    from glf_train.evaluate import METRICS

    names = {*METRICS, *("val_" + m for m in METRICS), "linear_probe_C", "effective_rank"}
    return {prefix + n for n in names}


def test_summary_holds_every_metric_and_the_epoch_knn_is_on_validation(
    tmp_path: Path,
) -> None:
    pytest.importorskip("torch")
    from glf_train import report

    config = train_helpers.small_config(tmp_path, "torch", epochs=1, eval_every=1)
    summary = loop.train(config)
    on_disk = report.read_summary(config.out)
    for prefix in ("", "random_encoder_", "raw_pixels_"):
        assert _every_key(prefix) <= set(on_disk), prefix
        for key in _every_key(prefix) - {prefix + "linear_probe_C", prefix + "effective_rank"}:
            assert 0.0 <= on_disk[key] <= 1.0, key
    for name in ("random_encoder", "raw_pixels"):
        assert set(on_disk["baselines"][name]) == _every_key()
    # digits: 1,438 training images, 10% of each class held out (143); 359 test images.
    evaluation = on_disk["evaluation"]
    assert (evaluation["fit_rows"], evaluation["val_rows"], evaluation["test_rows"]) == (
        1295, 143, 359
    )
    assert evaluation["knn"] == {"k": 20, "temperature": 0.07}
    # The epoch's kNN is the validation one, on the same (final) weights as the summary's.
    records = report.read_metrics(Path(config.out) / report.METRICS_FILE)
    assert "knn_accuracy" not in records[-1]
    assert records[-1]["val_knn_accuracy"] == summary["val_knn_accuracy"]


def test_without_a_validation_split_nothing_is_monitored() -> None:
    dataset = load_dataset("digits")
    config = RunConfig(val_fraction=0.0)

    class Features:
        def features(self, images: np.ndarray) -> np.ndarray:
            return images.reshape(len(images), -1).astype(np.float32)

    assert loop._val_knn(config, Features(), dataset) is None  # type: ignore[arg-type]
    held_out = loop._val_knn(RunConfig(), Features(), dataset)  # type: ignore[arg-type]
    assert held_out is not None and 0.9 < held_out <= 1.0  # pixels' kNN on digits
    with pytest.raises(ValueError, match=r"--val-fraction must be in \[0, 0.5\]"):
        RunConfig(val_fraction=0.7).validate()
