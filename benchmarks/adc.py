"""Forward+backward time of ``adc_loss`` per backend, eager and compiled, beside one
training step of the small CNN, at N = 256 on MNIST shapes (M = 512, D = 128, P = 784).

Run: ``python benchmarks/adc.py [--n 256] [--dim 128] [--repeats 20]``. Prints a table of
median times (interquartile range in brackets) and ADC's cost relative to the CNN step.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from _timing import interleaved, summary_ms

import glf_losses
from glf_losses import testing

KWARGS: dict[str, object] = {}


def adc(z_a: Any, z_b: Any, x: Any) -> Any:
    return glf_losses.adc_loss(z_a, z_b, x, **KWARGS)


def torch_contenders(z_a, z_b, prior, n: int) -> dict[str, Callable[[], object]]:
    import torch
    from glf_train.torch.model import SmallCNN, projector

    za = torch.tensor(z_a, requires_grad=True)
    zb = torch.tensor(z_b, requires_grad=True)
    x = torch.tensor(prior)

    def run(compiled: bool) -> Callable[[], object]:
        vg = testing.value_and_grad_fn("torch", adc, argnums=(0, 1), compiled=compiled)
        return lambda: vg(za, zb, x)

    encoder = SmallCNN(in_channels=1, image_size=28)
    head = projector(encoder.feature_dim, 512, z_a.shape[1])
    params = list(encoder.parameters()) + list(head.parameters())
    opt = torch.optim.SGD(params, lr=0.01, momentum=0.9)
    images = torch.rand(2 * n, 1, 28, 28)

    def cnn_step() -> None:
        opt.zero_grad(set_to_none=True)
        z = head(encoder(images))
        glf_losses.barlow_twins_loss(z[:n], z[n:]).backward()
        opt.step()

    return {
        "torch eager": run(False),
        "torch compiled": run(True),
        "torch small-CNN step (Barlow Twins, no ADC)": cnn_step,
    }


def jax_contenders(z_a, z_b, prior, n: int) -> dict[str, Callable[[], object]]:
    import jax

    jax.config.update("jax_enable_x64", False)
    za, zb, x = jax.numpy.asarray(z_a), jax.numpy.asarray(z_b), jax.numpy.asarray(prior)

    eager = testing.value_and_grad_fn("jax", adc, argnums=(0, 1))
    jitted = testing.value_and_grad_fn("jax", adc, argnums=(0, 1), compiled=True)
    return {
        "jax eager": lambda: jax.block_until_ready(eager(za, zb, x)),
        "jax jit": lambda: jax.block_until_ready(jitted(za, zb, x)),
    }


def tensorflow_contenders(z_a, z_b, prior, n: int) -> dict[str, Callable[[], object]]:
    import tensorflow as tf

    za, zb, x = tf.constant(z_a), tf.constant(z_b), tf.constant(prior)

    eager = testing.value_and_grad_fn("tensorflow", adc, argnums=(0, 1))
    xla = testing.value_and_grad_fn("tensorflow", adc, argnums=(0, 1), compiled=True)
    return {
        "tensorflow eager": lambda: [t.numpy() for t in eager(za, zb, x)[1]],
        "tensorflow XLA": lambda: [t.numpy() for t in xla(za, zb, x)[1]],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=256, help="batch size N (M = 2N)")
    parser.add_argument("--dim", type=int, default=128, help="projection dimension D")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--bandwidth", default="perplexity", help="'median', 'perplexity'")
    parser.add_argument("--backends", default="torch,jax,tensorflow")
    args = parser.parse_args()
    KWARGS.update(bandwidth=args.bandwidth, prior_bandwidth=args.bandwidth)

    rng = np.random.default_rng(0)
    z_a = rng.normal(size=(args.n, args.dim)).astype(np.float32)
    z_b = (z_a + 0.3 * rng.normal(size=z_a.shape)).astype(np.float32)
    prior = rng.integers(0, 256, size=(args.n, 1, 28, 28), dtype=np.uint8)

    builders = {
        "torch": torch_contenders,
        "jax": jax_contenders,
        "tensorflow": tensorflow_contenders,
    }
    print(
        f"adc_loss forward+backward, N={args.n} (M={2 * args.n}), D={args.dim}, P=784, "
        f"bandwidth={args.bandwidth}, float32; {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores"
    )
    rows: list[tuple[str, float, float, float]] = []
    for name in args.backends.split(","):
        try:
            contenders = builders[name](z_a, z_b, prior, args.n)
        except ImportError as err:
            print(f"  {name}: skipped ({err})")
            continue
        for label, samples in interleaved(contenders, repeats=args.repeats).items():
            rows.append((label, *summary_ms(samples)))
    cnn = next((r[1] for r in rows if "CNN" in r[0]), None)
    print(f"{'what':<46} {'median ms':>10} {'IQR ms':>16} {'x CNN step':>11}")
    for label, med, q1, q3 in rows:
        ratio = f"{med / cnn:.2f}" if cnn else "-"
        print(f"{label:<46} {med:>10.1f} {f'[{q1:.1f}, {q3:.1f}]':>16} {ratio:>11}")


if __name__ == "__main__":
    main()
