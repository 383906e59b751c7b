"""Timing helpers shared by the benchmarks: warm up, then interleave the contenders."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any


def interleaved(
    contenders: dict[str, Callable[[], object]],
    *,
    repeats: int = 30,
    warmup: int = 3,
    rotate: bool = False,
) -> dict[str, list[float]]:
    """Run each contender ``repeats`` times, alternating, after ``warmup`` calls each.

    Alternating (a, b, a, b, ...) rather than (a, a, ..., b, b, ...) spreads drifts of
    the machine (frequency, other processes) evenly over the contenders, so their
    ratio is fair even when absolute times wander. With ``rotate`` the order within a
    round also shifts by one each round (a, b; b, a; ...), so that no contender always
    runs right after the same other one.
    """
    for fn in contenders.values():
        for _ in range(warmup):
            fn()
    names = list(contenders)
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for round_index in range(repeats):
        shift = round_index % len(names) if rotate else 0
        for name in names[shift:] + names[:shift]:
            fn = contenders[name]
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def summary_ms(samples: list[float]) -> tuple[float, float, float]:
    """Median and the 25th/75th percentiles, in milliseconds.

    Inclusive quartiles: they lie between the smallest and largest sample even for a few
    rounds (the exclusive method extrapolates beyond them, e.g. below zero for two).
    """
    q = statistics.quantiles(samples, n=4, method="inclusive")
    return statistics.median(samples) * 1e3, q[0] * 1e3, q[2] * 1e3


def ratio_summary(numerator: list[float], denominator: list[float]) -> tuple[float, float, float]:
    """Median and 25th/75th percentiles of the per-round ratios ``numerator[i] / denominator[i]``.

    The two lists come from the same :func:`interleaved` rounds, so each ratio compares
    two runs made back to back under the same machine conditions.
    """
    ratios = [a / b for a, b in zip(numerator, denominator, strict=True)]
    if len(ratios) == 1:
        return ratios[0], ratios[0], ratios[0]
    q = statistics.quantiles(ratios, n=4, method="inclusive")
    return statistics.median(ratios), q[0], q[2]


def limit_threads(threads: int | None) -> None:
    """Pin the CPU thread pools of PyTorch, TensorFlow and XLA (JAX) to ``threads``.

    Call before any framework runs an operation (XLA reads its flag when JAX starts).
    On a machine shared with other jobs, one thread per framework avoids the stalls of
    a parallel region waiting for a descheduled worker thread.
    """
    if threads is None:
        return
    os.environ["OMP_NUM_THREADS"] = str(threads)
    if threads == 1:
        os.environ["XLA_FLAGS"] = (
            os.environ.get("XLA_FLAGS", "")
            + " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
        ).strip()
    try:
        import torch

        torch.set_num_threads(threads)
        torch.set_num_interop_threads(threads)
    except (ImportError, RuntimeError):
        pass
    try:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except (ImportError, RuntimeError):
        pass


def cpu_name() -> str:
    """The CPU's model name (Linux), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device: str, versions: dict[str, str]) -> dict[str, Any]:
    """Platform, CPU, Python, framework versions and (on CUDA) the GPU's name."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": cpu_name(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "device": device,
        **versions,
    }
    if device.startswith("cuda"):
        try:
            import torch

            info["gpu"] = torch.cuda.get_device_name(0)
        except Exception:
            pass
    return info


def machine_line(info: dict[str, Any], versions: dict[str, str]) -> str:
    """One line naming the machine and the framework versions, for a report's header."""
    gpu = f", GPU {info['gpu']}" if "gpu" in info else ""
    frameworks = ", ".join(f"{k} {v}" for k, v in versions.items())
    return (
        f"machine: {info['platform']}, {info['processor']}, {info['cpu_count']} CPUs{gpu}; "
        f"python {info['python']}; {frameworks}; device {info['device']}"
    )
