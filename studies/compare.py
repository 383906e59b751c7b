"""Paired comparison of methods with and without ADC over seeds.

Runs ``glf-train`` for every (method, ADC on/off, seed), reads each run's
``summary.json`` and prints a Markdown table: mean and standard deviation per arm of the
test accuracies (linear probe, kNN k = 20, kNN k = 200, whitened kNN), of the validation
split's linear probe and kNN, of the random-encoder and raw-pixel linear probes, and
the ADC-minus-base differences paired by seed. Runs that already have a ``summary.json``
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
    """The run's summary (in the current protocol's keys), training it first if needed."""
    from glf_train.report import upgrade_summary

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
    return upgrade_summary(json.loads(summary.read_text()))


def mean_std(values: list[float | None]) -> str:
    """Mean ± standard deviation in %; "–" when a run lacks the value (a run evaluated
    before the metric existed)."""
    if not values or any(v is None for v in values):
        return "–"
    pct = [100 * v for v in values if v is not None]
    spread = statistics.stdev(pct) if len(pct) > 1 else 0.0
    return f"{statistics.mean(pct):.1f} ± {spread:.1f}"


# Column -> summary key: the test split's accuracies (the reported numbers), then the
# validation split's (what a choice between arms is made on), then the baselines'.
COLUMNS = (
    ("linear probe", "linear_probe_accuracy"),
    ("kNN", "knn_accuracy"),
    ("kNN k=200", "knn200_accuracy"),
    ("whitened kNN", "whitened_knn_accuracy"),
    ("val linear", "val_linear_probe_accuracy"),
    ("val kNN", "val_knn_accuracy"),
    ("random encoder (linear)", "random_encoder_linear_probe_accuracy"),
    ("raw pixels (linear)", "raw_pixels_linear_probe_accuracy"),
)
# The columns also given as ADC-minus-base differences, paired by seed.
PAIRED = ("linear_probe_accuracy", "knn_accuracy", "val_linear_probe_accuracy",
          "val_knn_accuracy")


def table(results: dict[str, dict[bool, list[dict[str, Any]]]]) -> str:
    """The Markdown table of ``results`` (method -> ADC on/off -> a summary per seed)."""
    lines = [
        "| arm | " + " | ".join(name for name, _ in COLUMNS) + " |",
        "|---|" + "---:|" * len(COLUMNS),
    ]
    for method, arms in results.items():
        for adc in (False, True):
            cells = [mean_std([r.get(key) for r in arms[adc]]) for _, key in COLUMNS]
            lines.append(f"| {method}{' + ADC' if adc else ''} | " + " | ".join(cells) + " |")
        cells = []
        for _, key in COLUMNS:
            pairs = zip(arms[True], arms[False], strict=True)
            cells.append(mean_std([
                None if a.get(key) is None or b.get(key) is None else a[key] - b[key]
                for a, b in pairs
            ]) if key in PAIRED else "")
        lines.append(f"| {method}: ADC − base, paired | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="barlow_twins,byol")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--out", default="runs/compare")
    args, extra = parser.parse_known_args(argv)
    out = Path(args.out)
    seeds = [int(s) for s in args.seeds.split(",")]
    results = {
        method: {adc: [ensure_run(out, method, adc, seed, extra) for seed in seeds]
                 for adc in (False, True)}
        for method in args.methods.split(",")
    }
    print(f"\n{len(seeds)} seeds ({args.seeds}); extra flags: {' '.join(extra) or '-'}; "
          "accuracy in %, mean ± standard deviation over seeds; kNN: k = 20, T = 0.07; "
          "val: the validation split, held out of the training images (make choices on "
          "it); the others: the test split; –: not in the runs' summaries\n")
    print(table(results))


if __name__ == "__main__":
    main()
