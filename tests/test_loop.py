"""The shared loop's backend selection."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import train_helpers
from glf_train import loop
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
