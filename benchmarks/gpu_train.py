"""End-to-end training on a GPU at CIFAR shape, with throughput per backend.

Trains ResNet-18 (CIFAR variant) with Barlow Twins + ADC for a short run on real data:
the CIFAR-10 python files when ``$GLF_DATA/cifar-10-batches-py`` exists, else mnist5k
padded to 32x32 with 3 channels. For each backend it runs ``glf-train`` (mixed precision
and ``torch.compile`` on CUDA for PyTorch, the jitted step for JAX, XLA for TensorFlow)
and prints the images/s of every epoch after the first (which includes compilation),
side by side, plus the accuracies the run reached. For the cost of ADC in one step (with
and without it, alternating), see ``benchmarks/training.py``.

Run: ``python benchmarks/gpu_train.py [--backends torch,jax,tensorflow] [--epochs 3]``.
``--device cpu --arch small_cnn --batch-size 64`` makes a quick CPU smoke run of the same
path.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from training import default_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="torch,jax,tensorflow")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--out", default="runs/gpu")
    args = parser.parse_args()
    dataset = default_dataset()
    print(f"dataset {dataset}, {args.arch}, batch {args.batch_size}, {args.epochs} epochs, "
          f"device {args.device}", flush=True)
    rows = []
    for backend in args.backends.split(","):
        out = Path(args.out) / backend
        cmd = [
            sys.executable, "-m", "glf_train", "--backend", backend,
            "--method", "barlow_twins", "--adc", "--dataset", dataset, "--arch", args.arch,
            "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
            "--device", args.device, "--out", str(out), "--eval-every", "0", "--quiet",
        ]
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ)
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            rows.append((backend, f"failed: {proc.stderr.strip().splitlines()[-1:]}"))
            continue
        metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        speeds = [m["images_per_second"] for m in metrics]
        steady = speeds[1:] or speeds
        summary = json.loads((out / "summary.json").read_text())
        rows.append((
            backend,
            f"{sum(steady) / len(steady):9.0f} img/s (first epoch {speeds[0]:.0f}); "
            f"linear {100 * summary['linear_probe_accuracy']:.1f}%, "
            f"kNN {100 * summary['knn_accuracy']:.1f}%; {seconds:.0f} s in all",
        ))
    for backend, text in rows:
        print(f"{backend:<11} {text}")


if __name__ == "__main__":
    main()
