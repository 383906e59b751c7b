"""The wheel: installed beside NumPy alone, it imports, computes every loss, and imports no
deep-learning framework."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# What a NumPy-only user has besides the wheel: its two required dependencies.
REQUIRED = ("numpy", "array_api_compat")

CHECK = textwrap.dedent(
    """
    import importlib.util, sys
    import numpy as np
    import glf_losses
    from glf_losses import registry

    for framework in ("torch", "jax", "tensorflow", "keras"):
        assert importlib.util.find_spec(framework) is None, framework
    rng = np.random.default_rng(0)
    sizes = {"dim": 8, "n_prototypes": 5, "queue_size": 12, "support_size": 12}
    # W-MSE whitens sub-batches of more than D rows: the whole batch of 16 here.
    settings = {"wmse": {"w_size": 16}}
    for name in registry.names():
        entry = registry.get(name)
        inputs = [rng.normal(size=(16, 8)) for _ in entry.inputs]
        held = {h.name: rng.normal(size=tuple(sizes[n] for n in h.shape))
                for h in (*entry.parameters, *entry.states)}
        options = settings.get(name, {})
        parts = registry.method_parts(name, *inputs, **held, **options,
                                      adc=glf_losses.ADC(perplexity=5.0), prior=inputs[0])
        assert np.isfinite(parts.total), name
        new = registry.method_state(name, {s.name: held[s.name] for s in entry.states},
                                    *inputs, **{p.name: held[p.name] for p in entry.parameters})
        assert all(np.isfinite(v).all() for v in new.values()), name
        if entry.parts is getattr(glf_losses, name + "_parts", None) and not held:
            # The spec's own function (the others take scores, crops or one array).
            loss = getattr(glf_losses, name + "_loss")(*inputs, **options)
            assert np.isfinite(loss), name
    z_a = rng.normal(size=(16, 8))
    assert np.isfinite(glf_losses.adc_loss(z_a, z_a[::-1], z_a, perplexity=5.0))
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in
                    ("torch", "jax", "jaxlib", "tensorflow", "keras", "flax"))
    assert not loaded, loaded
    print("ok", len(registry.names()))
    """
)


# What the wheel is built from (a copy: setuptools writes a build/ folder beside it).
SOURCES = ("pyproject.toml", "README.md", "glf_losses", "backends", "reference_training")


def test_wheel_with_numpy_alone(tmp_path: Path) -> None:
    source = tmp_path / "source"
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name,
                            ignore=shutil.ignore_patterns("__pycache__"))
        else:
            source.mkdir(exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path / "dist"), str(source)],
        capture_output=True, text=True, timeout=600,
    )
    if built.returncode != 0 and "No module named pip" in built.stderr:
        pytest.skip("pip is not available to build the wheel")
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("glf_losses-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "glf_losses/py.typed" in names
    assert any(n.startswith("glf_losses/backends/torch/") for n in names)
    assert not any(n.startswith(("tests/", "benchmarks/", "studies/")) for n in names)
    # A bare environment: the standard library, the wheel, and NumPy's required packages.
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    for module in REQUIRED:
        spec_origin = Path(__import__(module).__file__).parent
        shutil.copytree(spec_origin, site / module, symlinks=True,
                        ignore=shutil.ignore_patterns("tests", "__pycache__"))
        libs = spec_origin.parent / f"{module}.libs"
        if libs.is_dir():
            shutil.copytree(libs, site / libs.name)
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", f"import sys; sys.path.append({str(site)!r})\n"
         + CHECK],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("ok")
