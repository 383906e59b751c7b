"""Largest disagreement of each zoo method with its float64 NumPy reference, per backend.

Usage: python benchmarks/zoo_disagreement.py [VALUE_DRAWS [GRADIENT_DRAWS [METHOD,...]]]

Draws the agreement tests' inputs (``tests/test_zoo_agreement.py``) and prints, per
method, one JSON line: the largest ``|loss - reference| / (1 + |reference|)`` in every
backend and dtype; the largest difference of torch's float64 gradients from JAX's and
TensorFlow's, relative to the largest gradient entry; and each framework's gradient
against central differences of the reference (limited by the differences, ~1e-9).
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from glf_losses import testing

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
warnings.filterwarnings("ignore")
testing.enable_jax_x64()

import test_zoo_agreement as zoo  # noqa: E402


def draws(strategy: st.SearchStrategy[Any], count: int) -> list[Any]:
    """``count`` reproducible examples of a hypothesis strategy."""
    found: list[Any] = []

    @settings(
        max_examples=count,
        database=None,
        phases=[Phase.generate],
        derandomize=True,
        suppress_health_check=list(HealthCheck),
        deadline=None,
    )
    @given(strategy)
    def collect(example: Any) -> None:
        found.append(example)

    collect()
    return found


def value_errors(method: zoo.Method, examples: list[Any]) -> dict[str, float]:
    row = {}
    for backend in testing.available_backends():
        for dtype in ("float64", "float32"):
            worst = 0.0
            for arrays, kwargs in examples:
                want = method.reference(*arrays, **kwargs)
                xs = [zoo._to(backend, a, dtype) for a in arrays]
                got = float(testing.to_numpy(zoo._evaluate(backend, method.loss, xs, kwargs)))
                worst = max(worst, abs(got - want) / (1.0 + abs(want)))
            row[f"{backend} {dtype}"] = worst
    return row


def numeric_grads(method: zoo.Method, arrays: tuple, kwargs: dict) -> dict[int, np.ndarray]:
    held = method.frozen(*arrays, **kwargs) if method.frozen else {}
    out = {}
    for i in zoo._float_positions(arrays):
        if i in method.stopped:
            continue
        along: Callable[[np.ndarray], float] = lambda x, i=i: method.reference(  # noqa: E731
            *(x if j == i else a for j, a in enumerate(arrays)), **kwargs, **held
        )
        out[i] = testing.central_difference_grad(along, arrays[i])
    return out


def gradient_errors(method: zoo.Method, examples: list[Any]) -> dict[str, float]:
    row = {"grad torch-jax": 0.0, "grad torch-tensorflow": 0.0}
    row.update({f"{b} grad-vs-FD": 0.0 for b in testing.AUTODIFF_BACKENDS})
    for arrays, kwargs in examples:
        argnums = zoo._float_positions(arrays)
        grads = {
            b: testing.value_and_grad(
                b, method.loss, *arrays, argnums=argnums, jax_jit=True, **kwargs
            )[1]
            for b in testing.AUTODIFF_BACKENDS
        }
        scale = max(max(float(np.max(np.abs(g))) for g in grads["torch"]), 1e-3)
        for other in ("jax", "tensorflow"):
            pairs = zip(grads["torch"], grads[other], strict=True)
            diff = max(float(np.max(np.abs(a - b))) for a, b in pairs)
            row[f"grad torch-{other}"] = max(row[f"grad torch-{other}"], diff / scale)
        numeric = numeric_grads(method, arrays, kwargs)
        fd_scale = max(max(float(np.max(np.abs(g))) for g in numeric.values()), 0.1)
        for backend, backend_grads in grads.items():
            for i, g in zip(argnums, backend_grads, strict=True):
                # A stop-gradient input's gradient must be 0: its size is the error.
                err = (
                    float(np.max(np.abs(g - numeric[i]))) / fd_scale
                    if i in numeric
                    else (float(np.max(np.abs(g))))
                )
                key = f"{backend} grad-vs-FD"
                row[key] = max(row[key], err)
    return row


def main() -> None:
    n_values = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    n_grads = int(sys.argv[2]) if len(sys.argv) > 2 else 6
    only = set(sys.argv[3].split(",")) if len(sys.argv) > 3 else None
    for method in zoo.METHODS:
        if only and method.name not in only:
            continue
        row = value_errors(method, draws(method.draws, n_values))
        row.update(gradient_errors(method, draws(method.small_draws, n_grads)))
        print(method.name, json.dumps({k: f"{v:.1e}" for k, v in row.items()}), flush=True)


if __name__ == "__main__":
    main()
