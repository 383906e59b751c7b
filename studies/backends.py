"""Cross-backend accuracy: the same runs in PyTorch, JAX and TensorFlow.

For every (backend, method, ADC on/off, seed) this trains the reference model with the
same configuration and seed schedule, then prints a Markdown table of the final
linear-probe and kNN accuracy (mean ± standard deviation over seeds) per backend, and per
(method, ADC) arm the largest difference between the backends' mean linear-probe
accuracies, against the 2-point bound. Runs that already have a ``summary.json`` are
reused, so an interrupted study continues where it stopped.

Each backend's runs share one process (one framework start-up; the JAX trainer reuses
its compiled programs across seeds). Example (the table in docs/training.md)::

    python studies/backends.py --dataset digits --epochs 50 --seeds 0,1,2 \\
        --out runs/backends
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

BACKENDS = ("torch", "jax", "tensorflow")
METHODS = ("barlow_twins", "byol", "simclr", "swav")
BOUND_POINTS = 2.0


def run_dir(out: Path, backend: str, method: str, adc: bool, seed: int) -> Path:
    return out / backend / f"{method}{'-adc' if adc else ''}-seed{seed}"


def _train_all(backend: str, jobs: list[dict[str, Any]]) -> None:
    """In this process: every job of one backend whose summary is missing."""
    from glf_train.config import RunConfig
    from glf_train.loop import train

    for job in jobs:
        if Path(job["out"], "summary.json").exists():
            continue
        print(f"[{backend}] {job['method']}{' + ADC' if job['adc'] else ''} seed "
              f"{job['seed']} -> {job['out']}", flush=True)
        train(RunConfig.from_dict(job), resume=True)


def _mean_std(values: list[float]) -> tuple[float, float]:
    pct = [100 * v for v in values]
    return statistics.mean(pct), statistics.stdev(pct) if len(pct) > 1 else 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--out", default="runs/backends")
    parser.add_argument("--table-only", action="store_true",
                        help="print the table from the runs already done")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _train_all(args.worker, json.loads(sys.stdin.read()))
        return 0

    from glf_train.config import RunConfig

    out = Path(args.out)
    backends = args.backends.split(",")
    methods = args.methods.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    arms = [(m, adc) for m in methods for adc in (False, True)]
    if not args.table_only:
        for backend in backends:
            jobs = [
                RunConfig(
                    backend=backend, method=m, adc=adc, seed=s, dataset=args.dataset,
                    epochs=args.epochs, batch_size=args.batch_size, eval_every=0, quiet=True,
                    out=str(run_dir(out, backend, m, adc, s)),
                ).to_dict()
                for m, adc in arms for s in seeds
            ]
            if all(Path(j["out"], "summary.json").exists() for j in jobs):
                continue
            # One fresh process per backend: frameworks do not share a process politely.
            subprocess.run(
                [sys.executable, __file__, "--worker", backend], input=json.dumps(jobs),
                text=True, check=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
            )

    def summaries(backend: str, m: str, adc: bool) -> list[dict[str, Any]] | None:
        paths = [run_dir(out, backend, m, adc, s) / "summary.json" for s in seeds]
        if not all(p.exists() for p in paths):
            return None
        from glf_train.report import upgrade_summary

        # An older run's kNN was at k = 200: it is not shown as the k = 20 one.
        return [upgrade_summary(json.loads(p.read_text())) for p in paths]

    print(f"\n{args.dataset}, {args.epochs} epochs, batch {args.batch_size}, seeds "
          f"{args.seeds}; test accuracy in %, mean ± standard deviation over seeds; kNN: "
          "k = 20, T = 0.07 (–: runs evaluated before it)\n")
    print("| method | ADC | " + " | ".join(f"{b} linear | {b} kNN" for b in backends)
          + " | linear spread (max − min) | within 2 points |")
    print("|---|---|" + "---:|---:|" * len(backends) + "---:|---|")
    failures = 0
    for m, adc in arms:
        cells, means = [], []
        for backend in backends:
            runs = summaries(backend, m, adc)
            if runs is None:
                cells += ["–", "–"]
                continue
            lin = _mean_std([r["linear_probe_accuracy"] for r in runs])
            knn_values = [r.get("knn_accuracy") for r in runs]
            knn = "–" if None in knn_values else "{:.1f} ± {:.1f}".format(*_mean_std(knn_values))
            cells += [f"{lin[0]:.1f} ± {lin[1]:.1f}", knn]
            means.append(lin[0])
        if len(means) < 2:
            verdict, shown = "–", "–"
        else:
            spread = max(means) - min(means)
            verdict, shown = ("yes" if spread <= BOUND_POINTS else "NO"), f"{spread:.1f}"
            failures += verdict == "NO"
        print(f"| {m} | {'yes' if adc else 'no'} | " + " | ".join(cells)
              + f" | {shown} | {verdict} |")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
