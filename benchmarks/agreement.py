"""Cross-framework agreement of every loss: the table behind docs/testing.md.

Computes each method, each term and ADC (three bandwidth modes) on random batches in
every installed backend, in float64 and float32, and prints the largest relative
difference from NumPy's float64 result, |a - d| / max(|d|, 1), over ``--trials`` random
shapes. Run: ``python benchmarks/agreement.py [--trials 5]``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import numpy as np

import glf_losses
from glf_losses import align, constrain, testing


def cases(rng: np.random.Generator) -> dict[str, tuple[Callable[..., Any], list[np.ndarray]]]:
    n, d, k = (int(v) for v in rng.integers((4, 2, 2), (64, 128, 64)))
    base = rng.normal(size=(n, d))
    z_a, z_b = base + 0.5 * rng.normal(size=(n, d)), base + 0.5 * rng.normal(size=(n, d))
    s_a, s_b = np.tanh(rng.normal(size=(2, n, k)))
    prior = rng.integers(0, 256, size=(n, 1, 6, 6))
    perplexity = min(30.0, 2 * n - 1.0)
    return {
        "byol_loss": (glf_losses.byol_loss, [z_a, z_b, z_a, z_b]),
        "barlow_twins_loss": (glf_losses.barlow_twins_loss, [z_a, z_b]),
        "swav_loss": (glf_losses.swav_loss, [s_a, s_b]),
        "simclr_loss": (glf_losses.simclr_loss, [z_a, z_b]),
        "align.invariance": (align.invariance, [z_a, z_b]),
        "constrain.redundancy_reduction": (constrain.redundancy_reduction, [z_a, z_b]),
        "constrain.uniformity": (constrain.uniformity, [z_a, z_b]),
        "adc_loss (perplexity)": (
            lambda a, b, x: glf_losses.adc_loss(a, b, x, perplexity=perplexity),
            [z_a, z_b, prior],
        ),
        "adc_loss (median)": (
            lambda a, b, x: glf_losses.adc_loss(
                a, b, x, bandwidth="median", prior_bandwidth="median"
            ),
            [z_a, z_b, prior],
        ),
        "adc_loss (float)": (
            lambda a, b, x: glf_losses.adc_loss(a, b, x, bandwidth=0.5, prior_bandwidth=5e4),
            [z_a, z_b, prior],
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    args = parser.parse_args()
    testing.enable_jax_x64()
    backends = testing.available_backends()
    worst: dict[tuple[str, str, str], float] = {}
    for trial in range(args.trials):
        for name, (fn, arrays) in cases(np.random.default_rng(trial)).items():
            reference = float(fn(*arrays))
            for backend in backends:
                for dtype in ("float64", "float32"):
                    inputs = [
                        testing.to_backend(backend, a, dtype if a.dtype.kind == "f" else None)
                        for a in arrays
                    ]
                    got = float(testing.to_numpy(fn(*inputs)))
                    err = abs(got - reference) / max(abs(reference), 1.0)
                    key = (name, backend, dtype)
                    worst[key] = max(worst.get(key, 0.0), err)
    names = list(cases(np.random.default_rng(0)))
    print(f"largest |x - numpy float64| / max(|numpy float64|, 1) over {args.trials} random "
          "batches (N 4..63, D 2..127, K 2..63)\n")
    header = " | ".join(f"{b} f64 | {b} f32" for b in backends)
    print(f"| term | {header} |")
    print("|---|" + "---:|" * (2 * len(backends)))
    for name in names:
        cells = " | ".join(
            f"{worst[(name, b, 'float64')]:.1e} | {worst[(name, b, 'float32')]:.1e}"
            for b in backends
        )
        print(f"| {name} | {cells} |")
    f32_bound = 4 * np.sqrt(np.finfo(np.float32).eps)
    worst64 = max(v for (_, _, dt), v in worst.items() if dt == "float64")
    worst32 = max(v for (_, _, dt), v in worst.items() if dt == "float32")
    print(f"\nworst float64: {worst64:.1e} (bound 1e-10); worst float32: {worst32:.1e} "
          f"(bound 4 sqrt(eps32) = {f32_bound:.1e})")


if __name__ == "__main__":
    main()
