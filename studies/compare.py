"""Paired comparison of methods with and without ADC over seeds.

Runs ``glf-train`` for every (method, ADC on/off, seed), reads each run's
``summary.json`` and prints a Markdown table: mean and standard deviation of the
linear-probe and kNN accuracy per arm, the random-encoder and raw-pixel baselines, and
the ADC-minus-base difference paired by seed. Runs that already have a ``summary.json``
are reused, so an interrupted comparison continues where it stopped.

Example (the figures in docs/training.md)::

    python studies/compare.py --dataset mnist5k --methods barlow_twins,byol \\
        --seeds 0,1,2 --epochs 30 --out runs/mnist5k
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any


def run_dir(out: Path, method: str, adc: bool, seed: int) -> Path:
    return out / f"{method}{'-adc' if adc else ''}-seed{seed}"


def ensure_run(out: Path, method: str, adc: bool, seed: int, extra: list[str]) -> dict[str, Any]:
    directory = run_dir(out, method, adc, seed)
    summary = directory / "summary.json"
    if not summary.exists():
        cmd = [
            sys.executable, "-m", "glf_train", "--method", method,
            "--seed", str(seed), "--out", str(directory), "--quiet", "--resume",
            *(["--adc"] if adc else []), *extra,
        ]
        print("$", " ".join(cmd[1:]), flush=True)
        subprocess.run(cmd, check=True)
    return json.loads(summary.read_text())


def mean_std(values: list[float]) -> str:
    pct = [100 * v for v in values]
    spread = statistics.stdev(pct) if len(pct) > 1 else 0.0
    return f"{statistics.mean(pct):.1f} ± {spread:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="barlow_twins,byol")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--out", default="runs/compare")
    args, extra = parser.parse_known_args()
    out = Path(args.out)
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    for method in args.methods.split(","):
        results = {
            adc: [ensure_run(out, method, adc, seed, extra) for seed in seeds]
            for adc in (False, True)
        }
        for adc in (False, True):
            runs = results[adc]
            rows.append(
                f"| {method}{' + ADC' if adc else ''} | "
                f"{mean_std([r['linear_probe_accuracy'] for r in runs])} | "
                f"{mean_std([r['knn_accuracy'] for r in runs])} | "
                f"{mean_std([r['random_encoder_linear_probe_accuracy'] for r in runs])} | "
                f"{mean_std([r['raw_pixels_linear_probe_accuracy'] for r in runs])} |"
            )
        diffs = {
            key: [a[key] - b[key] for a, b in zip(results[True], results[False], strict=True)]
            for key in ("linear_probe_accuracy", "knn_accuracy")
        }
        rows.append(
            f"| {method}: ADC − base, paired | {mean_std(diffs['linear_probe_accuracy'])} | "
            f"{mean_std(diffs['knn_accuracy'])} | | |"
        )
    print(f"\n{len(seeds)} seeds ({args.seeds}); extra flags: {' '.join(extra) or '-'}; "
          "accuracy in %, mean ± standard deviation over seeds\n")
    print("| arm | linear probe | kNN | random encoder (linear) | raw pixels (linear) |")
    print("|---|---:|---:|---:|---:|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
