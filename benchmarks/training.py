"""Images per second of one real training step, with and without ADC, per backend.

Uses the reference trainers exactly as ``glf-train`` does
(``glf_train.loop.make_trainer`` with a ``RunConfig``, then
``trainer.train_step``): ResNet-18 (CIFAR variant) on 3x32x32 images, Barlow Twins by
default (``--method``), batch 256 by default (``--batch-size``; use a small batch such
as 32 on a CPU). For each backend two trainers are built, one without and one with ADC
(default ADC settings, the raw batch as prior), and their steps alternate
(``_timing.interleaved``) after ``--warmup`` untimed steps each (they compile). Each
timed step waits for its result (torch: ``.item()`` of the loss, which also waits for
CUDA; JAX: ``block_until_ready``; TensorFlow: ``.numpy()``).

Data: CIFAR-10 when ``$GLF_DATA/cifar-10-batches-py`` exists, else mnist5k padded to
3x32x32 (bundled, no network). Views: ``--views augment`` (default) draws two augmented
views per batch with ``glf_train.augment`` as the training loop does;
``--views center`` feeds the centred batch twice. The views of ``--batches`` batches
are prepared before timing and cycled, so only the step itself is timed.

Run: ``python benchmarks/training.py [--backends torch,jax,tensorflow]
[--method barlow_twins] [--batch-size 256] [--steps 10] [--device cpu|cuda] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _timing import interleaved, limit_threads, machine_info, machine_line, ratio_summary
from glf_train import augment
from glf_train.config import RunConfig, methods
from glf_train.data import Dataset, data_root, epoch_batches, load_dataset
from glf_train.loop import make_trainer
from glf_train.schedules import step_inputs

BACKENDS = ("torch", "jax", "tensorflow")


def default_dataset() -> str:
    """CIFAR-10 when its python files are in the data root, else mnist5k at CIFAR shape."""
    return "cifar10" if (data_root() / "cifar-10-batches-py").is_dir() else "mnist5k-rgb32"


def run_config(backend: str, adc: bool, args: argparse.Namespace, dataset: str) -> RunConfig:
    return RunConfig(
        backend=backend, method=args.method, dataset=dataset, batch_size=args.batch_size,
        arch=args.arch, adc=adc, device=args.device, compile=args.compile, quiet=True,
        eval_every=0, out=os.devnull,
    ).validate()


def prepared_batches(
    trainer: Any, dataset: Dataset, args: argparse.Namespace
) -> list[tuple[Any, Any, Any]]:
    """``(view_a, view_b, images)`` on the trainer's device for ``args.batches`` batches."""
    aug = augment.AugmentConfig.for_dataset(dataset.name)
    batches = []
    for step, indices in enumerate(epoch_batches(dataset.ssl_size, args.batch_size, 0, 0)):
        if step == args.batches:
            break
        images = trainer.to_device(dataset.ssl_batch(indices))
        if args.views == "center":
            view = augment.center(trainer.xp, images, dataset.mean, dataset.std)
            view_a = view_b = view
        else:
            # The training loop's views: one draw per view from the step's generator.
            rng = np.random.default_rng((0, 0, step))
            view_a, view_b = augment.two_views(
                trainer.xp, images, rng, aug, dataset.mean, dataset.std
            )
        batches.append((view_a, view_b, images))
    return batches


def waiter(backend: str) -> Callable[[dict[str, Any]], float]:
    """Wait for a step's result and return its loss as a float."""
    if backend == "jax":
        import jax

        return lambda logs: float(jax.block_until_ready(logs["loss"]))
    if backend == "tensorflow":
        return lambda logs: float(logs["loss"].numpy())
    return lambda logs: float(logs["loss"].item())


def step_runner(trainer: Any, backend: str, batches: list[tuple[Any, Any, Any]]
                ) -> Callable[[], float]:
    """One training step per call, cycling through ``batches``; returns the loss."""
    wait = waiter(backend)
    counter = [0]

    def step() -> float:
        i = counter[0]
        counter[0] += 1
        view_a, view_b, images = batches[i % len(batches)]
        # epoch 1: past SwAV's frozen-prototype epoch, so every method runs its full step.
        logs = trainer.train_step(view_a, view_b, images, step_inputs(trainer.config, 1, i, 10**6))
        return wait(logs)

    return step


def framework_version(backend: str) -> str:
    module = {"torch": "torch", "jax": "jax", "tensorflow": "tensorflow"}[backend]
    return str(__import__(module).__version__)


def measure(backend: str, dataset: Dataset, args: argparse.Namespace) -> dict[str, Any]:
    runners = {}
    for label, adc in (("no ADC", False), ("ADC", True)):
        trainer = make_trainer(run_config(backend, adc, args, dataset.name), dataset)
        runners[label] = step_runner(trainer, backend, prepared_batches(trainer, dataset, args))
    first = {label: run() for label, run in runners.items()}
    for label, loss in first.items():
        if not np.isfinite(loss):
            raise RuntimeError(f"{label}: the first step's loss is {loss}")
    times = interleaved(runners, repeats=args.steps, warmup=max(args.warmup - 1, 0),
                        rotate=True)
    base_s, adc_s = float(np.median(times["no ADC"])), float(np.median(times["ADC"]))
    ratio, q1, q3 = ratio_summary(times["ADC"], times["no ADC"])
    return {
        "backend": backend,
        "method": args.method,
        "ms_without_adc": base_s * 1e3,
        "ms_with_adc": adc_s * 1e3,
        "images_per_s_without_adc": args.batch_size / base_s,
        "images_per_s_with_adc": args.batch_size / adc_s,
        "adc_cost_percent": (ratio - 1.0) * 100.0,
        "adc_cost_percent_iqr": [(q1 - 1.0) * 100.0, (q3 - 1.0) * 100.0],
        "steps": args.steps,
        "times_s": times,
    }


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| backend | method | ms/step without ADC | ms/step with ADC | images/s without ADC "
        "| images/s with ADC | ADC cost % [IQR] |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lo, hi = r["adc_cost_percent_iqr"]
        lines.append(
            f"| {r['backend']} | {r['method']} | {r['ms_without_adc']:.0f} | "
            f"{r['ms_with_adc']:.0f} | {r['images_per_s_without_adc']:.1f} | "
            f"{r['images_per_s_with_adc']:.1f} | {r['adc_cost_percent']:+.1f} "
            f"[{lo:+.1f}, {hi:+.1f}] |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--method", default="barlow_twins", choices=methods())
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--arch", default="resnet18", choices=("resnet18", "small_cnn"))
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N")
    parser.add_argument("--compile", default="auto", choices=("auto", "on", "off"),
                        help="the trainers' own rule: auto = torch.compile on CUDA only, "
                        "XLA (jax.jit, tf.function(jit_compile=True)) everywhere")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per contender")
    parser.add_argument("--warmup", type=int, default=3,
                        help="untimed steps per contender first (the first one compiles)")
    parser.add_argument("--batches", type=int, default=4, help="distinct batches, cycled")
    parser.add_argument("--views", default="augment", choices=("augment", "center"))
    parser.add_argument("--dataset", default=None,
                        help="default: cifar10 if present in the data root, else mnist5k-rgb32")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads per framework (default: each framework's own)")
    parser.add_argument("--json", metavar="PATH", help="also save the results as JSON")
    parser.add_argument("--plot", metavar="PATH", help="also draw the results (PNG); "
                        "benchmarks/plot.py redraws one from --json")
    args = parser.parse_args(argv)
    args.backends = args.backends.split(",")
    bad = [b for b in args.backends if b not in BACKENDS]
    if bad:
        parser.error(f"--backends: unknown {bad}; choose from {','.join(BACKENDS)}")
    if args.steps < 2:
        parser.error("--steps must be >= 2")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Three frameworks in one process (set here, not on import: gpu_train.py imports this
    # module and its subprocesses must keep the frameworks' own defaults).
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
    limit_threads(args.threads)
    dataset = load_dataset(args.dataset or default_dataset())
    started = time.perf_counter()
    rows, failures, versions = [], [], {}
    for backend in args.backends:
        t0 = time.perf_counter()
        try:
            row = measure(backend, dataset, args)
            versions[backend] = framework_version(backend)
        except Exception as err:  # report and go on with the other backends
            failures.append(f"{backend}: {type(err).__name__}: {str(err).splitlines()[0]}")
            print(f"[{backend}] failed: {err}", file=sys.stderr, flush=True)
            continue
        rows.append(row)
        print(f"[{backend}] {row['ms_without_adc']:.0f} ms/step without ADC, "
              f"{row['ms_with_adc']:.0f} ms with ({row['adc_cost_percent']:+.1f}%), "
              f"{time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    info = machine_info(args.device, versions)
    print(
        machine_line(info, versions)
        + (f", {args.threads} thread(s) per framework" if args.threads else "")
        + f"; {args.arch}, {dataset.name} {'x'.join(map(str, dataset.image_shape))}, batch "
        f"{args.batch_size} (two views each), {args.views} views, compile={args.compile}; "
        f"{args.steps} timed steps each after {args.warmup} warm-up steps, alternating; "
        f"{time.perf_counter() - started:.0f} s in all"
    )
    print()
    print(markdown(rows))
    print()
    print("ms/step: median; images/s: batch size / median step time; ADC cost: median over "
          "rounds of t_ADC / t_without - 1, [25th, 75th percentile].")
    for failure in failures:
        print(f"- {failure}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": info, "args": vars(args), "rows": rows,
                       "failures": failures}, f, indent=1)
    if args.plot and rows:
        from plot import plot_training

        plot_training({"machine": info, "args": vars(args), "rows": rows}, args.plot)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
