"""Forward+backward time and peak memory of every loss: glf-losses against a hand-written
native implementation of the same formula, in PyTorch, JAX and TensorFlow, eager and
compiled; in PyTorch also against lightly's losses when ``lightly.loss`` imports.

Run::

    python benchmarks/losses.py [--sizes 256 1024 4096] [--dims 128 2048 8192]
        [--frameworks torch,jax,tensorflow] [--terms byol,barlow_twins,swav,simclr,adc,...]
        [--modes eager,compiled] [--repeats 15] [--device cpu|cuda] [--threads T]
        [--queue 4096] [--w-size W] [--quick] [--json PATH]

What is timed, for each (framework, mode, term, N, D): one call that computes the loss
and its gradient with respect to the arrays that carry one (``ARGNUMS``: the two
projections; BYOL, SimSiam, MoCo v3 and NNCLR: the two online predictions, the targets
being stop-gradient; MoCo v2: the queries; KoLeo: its one input) and waits for them.
The contenders run in the same process, alternating (``_timing.interleaved``), after
warm-up calls (which compile). Before timing, each contender's loss and gradients are
checked against the native ones (float32 tolerance); a contender that disagrees is not
timed, and if it is ours the run exits with status 1 (timings never decide the status).
The native implementations live in ``natives/`` (one module per framework); value and
gradient, eager or compiled, come from :func:`glf_losses.testing.value_and_grad_fn`.

- eager: PyTorch eager, ``jax.value_and_grad`` without ``jit`` (every operation
  dispatched on its own), TensorFlow eager under ``tf.GradientTape``;
- compiled: ``torch.compile(fullgraph=True, dynamic=False)`` of the loss (its backward
  compiled by AOTAutograd), ``jax.jit(jax.value_and_grad(loss))``,
  ``tf.function(jit_compile=True)`` around the tape.

Terms and inputs (float32; views are correlated: ``base + 0.5 * noise`` each):
``byol_loss(p_a, p_b, z_a, z_b)``; ``barlow_twins_loss(z_a, z_b)``; ``swav_loss`` of the
scores ``n(z) n(W)^T`` against K fixed prototypes (``--prototypes``, default 300),
Sinkhorn inside, the scoring written once natively and shared by both contenders so
that the gradient reaches the projections; ``simclr_loss(z_a, z_b)``; ``adc_loss(z_a,
z_b, prior, prior_other_view=True)`` with otherwise default keyword arguments (perplexity
30 for both bandwidths, 20 bisection steps) and a uint8 prior of ``--prior-dim`` (784) columns.

The zoo (docs/zoo.md), each at its defaults: ``simsiam_loss(p_a, p_b, z_a, z_b)``;
``vicreg_loss``; ``wmse_loss(z_a, z_b, w_size=W)`` with contiguous sub-batches, W from
``--w-size`` or by default the smallest divisor of N at least 2 D (N itself when 2 D > N),
combinations where W does not divide N or is below D + 1 skipped; ``moco_loss(q, k,
queue)`` against ``--queue`` (4096) fixed unit keys; ``mocov3_loss(q_a, q_b, k_a, k_b)``;
``dcl_loss``, ``dclw_loss``, ``alignment_uniformity_loss``; ``tico_loss(z_a, z_b, C)``
with a fixed covariance state C (the second moment of another batch's unit rows);
``mmcr`` of two views (``methods.mmcr_pair_parts``, the form the trainers use);
``nnclr_loss(p_a, p_b, z_a, z_b, support)`` against ``--queue`` fixed unit rows whose
first N are other views of the batch, so that every nearest neighbour is clear (a near
tie could pick different neighbours in the two contenders); ``dino`` on two global
crops as ``methods.dino_prototype_parts(z_a, z_b, t_a, t_b, center, W)``: student and
teacher projections scored against ``--prototypes`` fixed prototypes, a fixed centre;
``constrain.koleo(z)`` of N rows holding two views of N / 2 samples (each row's
nearest neighbour is its other view, again clear of ties).

Reported: median ms of each contender; ``ours/native`` is the median of the per-round
ratios (ours and native run back to back in each round, the order alternating) with
their interquartile range in brackets; per framework and mode, the worst row (largest
ratio) and every row above the target; peak memory beyond the inputs (``--help`` of
``--device`` says how each framework's is measured; "n/a" where a framework keeps no
statistics on the device). docs/benchmarks.md holds the figures and how to read them.

Combinations whose estimated cost exceeds ``--max-gflop`` or ``--max-gib`` are skipped
and listed with the estimate.
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

# Quiet, cooperative frameworks in one process: no TF/XLA info logs, no JAX or TF
# grabbing the whole GPU before the others run.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _timing import (
    interleaved,
    limit_threads,
    machine_info,
    machine_line,
    ratio_summary,
    summary_ms,
)
from natives import ADC_STEPS

import glf_losses
from glf_losses import testing

CORE_TERMS = ("byol", "barlow_twins", "swav", "simclr", "adc")
ZOO_TERMS = ("simsiam", "vicreg", "wmse", "moco", "mocov3", "dcl", "dclw",
             "alignment_uniformity", "tico", "mmcr", "nnclr", "dino", "koleo")
TERMS = CORE_TERMS + ZOO_TERMS
# The inputs each term is differentiated with respect to: those that carry gradient in
# training (the others are stop-gradient targets, keys, states or constants).
ARGNUMS: dict[str, tuple[int, ...]] = {term: (0, 1) for term in TERMS}
ARGNUMS.update(moco=(0,), koleo=(0,))
FRAMEWORKS = ("torch", "jax", "tensorflow")
MODES = ("eager", "compiled")
TARGETS = {"eager": 1.15, "compiled": 1.05}

# What a row says when ours disagrees with the native formula (and is not timed).
DISAGREES = "NOT TIMED, disagrees with native"

# float32 agreement: loss relative, gradient relative to its largest entry.
LOSS_RTOL, GRAD_RTOL = 2e-4, 2e-3


# --- inputs and cost estimates ------------------------------------------------------------


def make_inputs(term: str, n: int, d: int, k: int, p: int, queue: int = 4096, seed: int = 0
                ) -> list[np.ndarray]:
    """The term's arguments as float32 NumPy arrays (the prior as uint8); those of
    ``ARGNUMS[term]`` are the ones differentiated. ``k``: prototypes (SwAV, DINO);
    ``p``: ADC's prior columns; ``queue``: MoCo's keys and NNCLR's support set."""
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((n, d), dtype=np.float32)

    def view(rows: int = n) -> np.ndarray:
        noise = rng.standard_normal((rows, d), dtype=np.float32)
        return base[:rows] + np.float32(0.5) * noise

    def unit_rows(x: np.ndarray) -> np.ndarray:
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    def random_rows(rows: int) -> np.ndarray:
        return rng.standard_normal((rows, d), dtype=np.float32)

    if term in ("byol", "simsiam", "mocov3"):
        return [view(), view(), view(), view()]
    if term == "swav":
        return [view(), view(), unit_rows(random_rows(k))]
    if term == "adc":
        return [view(), view(), rng.integers(0, 256, size=(n, p), dtype=np.uint8)]
    if term == "moco":
        return [view(), view(), unit_rows(random_rows(queue))]
    if term == "tico":
        u = unit_rows(random_rows(n))
        return [view(), view(), u.T @ u / np.float32(n)]
    if term == "nnclr":
        related = min(n, queue)
        support = np.concatenate([view(related), random_rows(queue - related)])
        return [view(), view(), view(), view(), unit_rows(support)]
    if term == "dino":
        center = np.float32(0.05) * rng.standard_normal(k, dtype=np.float32)
        return [view(), view(), view(), view(), center, unit_rows(random_rows(k))]
    if term == "koleo":
        return [np.concatenate([view((n + 1) // 2), view(n // 2)])]
    return [view(), view()]


def wmse_size(n: int, d: int, w_size: int | None) -> int | str:
    """W-MSE's sub-batch size for N rows of D columns, or why there is none.

    ``w_size`` given: itself, if it divides N and is at least D + 1 (the rank a Cholesky
    factor needs). None: the smallest divisor of N at least 2 D, the official ratio
    (N itself if 2 D > N), under the same two conditions.
    """
    if w_size is None:
        w_size = next((w for w in range(2 * d, n + 1) if n % w == 0), n)
    if n % w_size != 0:
        return f"--w-size {w_size} does not divide N={n}"
    if w_size < d + 1:
        return f"W-MSE needs sub-batches of at least D + 1 = {d + 1} rows, got {w_size} (N={n})"
    return w_size


def static_kwargs(term: str, n: int, d: int, args: argparse.Namespace) -> dict[str, Any] | str:
    """Keyword arguments both contenders take as Python values (static under ``jit``), or
    why the combination cannot run."""
    if term == "wmse":
        w_size = wmse_size(n, d, args.w_size)
        return w_size if isinstance(w_size, str) else {"w_size": w_size}
    return {}


def estimate(term: str, n: int, d: int, k: int, p: int, queue: int = 4096
             ) -> tuple[float, float]:
    """Rough (GFLOP, GiB) of one forward+backward, for the skip rule only."""
    m = 2 * n
    if term in ("byol", "simsiam"):
        flop, floats = 60.0 * n * d, 16.0 * n * d
    elif term in ("vicreg", "tico"):
        # Two (D, D) products per view (or C and u C) and their backward.
        flop, floats = 12.0 * n * d * d, 8.0 * d * d + 16.0 * n * d
    elif term == "wmse":
        # Covariances and whitening products, plus a Cholesky factor and a (D, D)
        # inverse per sub-batch (at most N / (D + 1) of them), each way, both views.
        flop = 24.0 * n * d * d + 8.0 * (n / (d + 1)) * d**3
        floats = 8.0 * (n / (d + 1)) * d * d + 16.0 * n * d
    elif term == "moco":
        flop, floats = 6.0 * n * queue * d + 30.0 * n * queue, 6.0 * n * queue + queue * d
    elif term in ("mocov3", "alignment_uniformity", "koleo"):
        flop, floats = 12.0 * n * n * d + 30.0 * n * n, 8.0 * n * n + 16.0 * n * d
    elif term in ("dcl", "dclw"):
        flop, floats = 12.0 * n * n * d + 60.0 * n * n, 16.0 * n * n + 12.0 * n * d
    elif term == "mmcr":
        # The SVD of the (N, D) centroids and its backward.
        small = min(n, d)
        flop, floats = 40.0 * n * d * small, 6.0 * n * d + 4.0 * small * small
    elif term == "nnclr":
        flop = 4.0 * n * queue * d + 12.0 * n * n * d + 30.0 * n * n
        floats = 2.0 * n * queue + queue * d + 8.0 * n * n + 20.0 * n * d
    elif term == "dino":
        flop, floats = 16.0 * n * k * d + 60.0 * n * k, 20.0 * n * k + 16.0 * n * d + k * d
    elif term == "barlow_twins":
        # C = za^T zb and its two backward products; a few (D, D) buffers.
        flop, floats = 6.0 * n * d * d, 8.0 * d * d + 16.0 * n * d
    elif term == "swav":
        flop, floats = 12.0 * n * d * k + 60.0 * n * k, 24.0 * n * k + 12.0 * n * d
    elif term == "simclr":
        flop, floats = 6.0 * m * m * d + 30.0 * m * m, 10.0 * m * m + 12.0 * n * d
    else:
        # Feature Gram and its backward, the prior's (N, N) Gram, 2 x 20 bisection steps.
        flop = 6.0 * m * m * d + 2.0 * n * n * p + 2 * ADC_STEPS * 8.0 * m * m + 200.0 * m * m
        floats = 30.0 * m * m + 12.0 * n * d + 2.0 * n * p
    return flop / 1e9, 4.0 * floats / 2**30


def ours(score: Callable[[Any, Any], Any]) -> dict[str, Callable[..., Any]]:
    """glf-losses' functions; SwAV scores with the framework's native ``score``."""
    from glf_losses import constrain, methods

    return {
        "byol": glf_losses.byol_loss,
        "barlow_twins": glf_losses.barlow_twins_loss,
        "swav": lambda z_a, z_b, w: glf_losses.swav_loss(score(z_a, w), score(z_b, w)),
        "simclr": glf_losses.simclr_loss,
        # The natives keep each anchor's other view in the prior (the formulation they
        # were written for); leaving it out, the default, costs one more (M, M) mask.
        "adc": lambda z_a, z_b, prior: glf_losses.adc_loss(
            z_a, z_b, prior, prior_other_view=True
        ),
        "simsiam": glf_losses.simsiam_loss,
        "vicreg": glf_losses.vicreg_loss,
        "wmse": lambda z_a, z_b, w_size: glf_losses.wmse_loss(z_a, z_b, w_size=w_size),
        "moco": glf_losses.moco_loss,
        "mocov3": glf_losses.mocov3_loss,
        "dcl": glf_losses.dcl_loss,
        "dclw": glf_losses.dclw_loss,
        "alignment_uniformity": glf_losses.alignment_uniformity_loss,
        "tico": glf_losses.tico_loss,
        # The two-view forms the registry declares (and the trainers call).
        "mmcr": lambda z_a, z_b: methods.mmcr_pair_parts(z_a, z_b).total,
        "nnclr": glf_losses.nnclr_loss,
        "dino": lambda *xs: methods.dino_prototype_parts(*xs).total,
        "koleo": constrain.koleo,
    }


# --- lightly (PyTorch) ----------------------------------------------------------------------


def lightly_contenders(score: Callable[[Any, Any], Any]) -> tuple[dict[str, Any], str | None]:
    """lightly's losses as contenders (see ``vs_lightly.py``), SwAV on the shared scores."""
    import torch
    from vs_lightly import lightly_losses

    theirs, why_not = lightly_losses(torch)
    if why_not is None:
        swav = theirs["swav"]
        theirs["swav"] = lambda z_a, z_b, w: swav(score(z_a, w), score(z_b, w)).reshape(())
    return theirs, why_not


# --- harnesses: one per framework -----------------------------------------------------------

Runner = Callable[[], Any]


class TorchHarness:
    name = "torch"

    def __init__(self, device: str) -> None:
        import torch

        self.torch = torch
        if device == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("no CUDA device is available to PyTorch")
        self.device = torch.device(device)
        self.version = torch.__version__
        from natives.torch import NATIVES

        self.natives = NATIVES
        self.ours = ours(self.natives["swav_score"])
        self.extra, self.extra_skip = lightly_contenders(self.natives["swav_score"])

    def inputs(self, arrays: list[np.ndarray], argnums: tuple[int, ...]) -> list[Any]:
        out = [self.torch.tensor(a, device=self.device) for a in arrays]
        for i in argnums:
            out[i].requires_grad_(True)
        return out

    def close(self) -> None:
        # Hand the caching allocator's blocks back before the next framework runs.
        if self.device.type == "cuda":
            self.torch.cuda.empty_cache()

    def runner(self, fn: Callable[..., Any], inputs: list[Any], compiled: bool,
               argnums: tuple[int, ...]) -> Runner:
        torch = self.torch
        f = testing.value_and_grad_fn("torch", fn, argnums=argnums, compiled=compiled)
        cuda = self.device.type == "cuda"

        def run() -> Any:
            out = f(*inputs)
            if cuda:
                torch.cuda.synchronize()
            return out

        return run

    def numpy(self, out: Any) -> tuple[float, list[np.ndarray]]:
        loss, grads = out
        return float(loss.detach().sum().cpu()), [g.detach().cpu().numpy() for g in grads]

    def peak_bytes(self, run: Runner, inputs: list[Any], compiled: bool) -> float | None:
        torch = self.torch
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            run()
            return float(torch.cuda.max_memory_allocated() - base)
        # CPU: the profiler records every allocation and free of the CPU allocator; the
        # peak of their running sum is the most memory the step held beyond its inputs.
        try:
            from torch.profiler import ProfilerActivity, profile

            with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
                run()
            events = sorted(
                (e.start_ns(), e.nbytes())
                for e in prof.profiler.kineto_results.events()
                if e.name() == "[memory]"
            )
        except Exception:  # a private profiler API: report n/a rather than fail
            return None
        held = peak = 0
        for _, nbytes in events:
            held += nbytes
            peak = max(peak, held)
        return float(peak)


class JaxHarness:
    name = "jax"

    def __init__(self, device: str) -> None:
        import jax

        self.jax = jax
        platform_name = "gpu" if device == "cuda" else "cpu"
        try:
            self.device = jax.devices(platform_name)[0]
        except RuntimeError as err:
            raise RuntimeError(f"no {platform_name} device is available to JAX ({err})") from None
        self.version = jax.__version__
        from natives.jax import NATIVES

        self.natives = NATIVES
        self.ours = ours(self.natives["swav_score"])
        self.extra, self.extra_skip = {}, None

    def inputs(self, arrays: list[np.ndarray], argnums: tuple[int, ...]) -> list[Any]:
        return [self.jax.device_put(a, self.device) for a in arrays]

    def runner(self, fn: Callable[..., Any], inputs: list[Any], compiled: bool,
               argnums: tuple[int, ...]) -> Runner:
        jax = self.jax
        f = testing.value_and_grad_fn("jax", fn, argnums=argnums, compiled=compiled)

        def run() -> Any:
            return jax.block_until_ready(f(*inputs))

        run.compiled = f if compiled else None  # type: ignore[attr-defined]
        return run

    def numpy(self, out: Any) -> tuple[float, list[np.ndarray]]:
        loss, grads = out
        return float(loss), [np.asarray(g) for g in grads]

    def peak_bytes(self, run: Runner, inputs: list[Any], compiled: bool) -> float | None:
        # XLA's buffer assignment of the compiled program: temporaries plus outputs (the
        # inputs excluded, as for the other frameworks). Eager JAX runs operation by
        # operation and keeps no resettable peak, so it has none.
        f = getattr(run, "compiled", None)
        if f is None:
            return None
        try:
            stats = f.lower(*inputs).compile().memory_analysis()
            return float(stats.temp_size_in_bytes + stats.output_size_in_bytes)
        except Exception:
            return None


class TensorFlowHarness:
    name = "tensorflow"

    def __init__(self, device: str) -> None:
        import tensorflow as tf

        self.tf = tf
        if device == "cuda":
            gpus = tf.config.list_physical_devices("GPU")
            if not gpus:
                raise RuntimeError("no GPU is visible to TensorFlow")
            for gpu in gpus:
                tf.config.experimental.set_memory_growth(gpu, True)
            self.device, self.memory_device = "/GPU:0", "GPU:0"
        else:
            self.device, self.memory_device = "/CPU:0", None
        self.version = tf.__version__
        from natives.tensorflow import NATIVES

        self.natives = NATIVES
        self.ours = ours(self.natives["swav_score"])
        self.extra, self.extra_skip = {}, None

    def inputs(self, arrays: list[np.ndarray], argnums: tuple[int, ...]) -> list[Any]:
        with self.tf.device(self.device):
            return [self.tf.constant(a) for a in arrays]

    def runner(self, fn: Callable[..., Any], inputs: list[Any], compiled: bool,
               argnums: tuple[int, ...]) -> Runner:
        tf = self.tf
        f = testing.value_and_grad_fn("tensorflow", fn, argnums=argnums, compiled=compiled)
        gpu = self.memory_device is not None

        def run() -> Any:
            with tf.device(self.device):
                out = f(*inputs)
            if gpu:
                tf.test.experimental.sync_devices()
            else:
                out[0].numpy()
            return out

        return run

    def numpy(self, out: Any) -> tuple[float, list[np.ndarray]]:
        loss, grads = out
        return float(loss), [g.numpy() for g in grads]

    def peak_bytes(self, run: Runner, inputs: list[Any], compiled: bool) -> float | None:
        # TensorFlow tracks allocator statistics on GPUs only (on CPU it reports zeros).
        if self.memory_device is None:
            return None
        experimental = self.tf.config.experimental
        self.tf.test.experimental.sync_devices()
        experimental.reset_memory_stats(self.memory_device)
        base = experimental.get_memory_info(self.memory_device)["current"]
        run()
        return float(experimental.get_memory_info(self.memory_device)["peak"] - base)


HARNESSES = {"torch": TorchHarness, "jax": JaxHarness, "tensorflow": TensorFlowHarness}


# --- one combination ------------------------------------------------------------------------


@dataclass
class Row:
    framework: str
    mode: str
    term: str
    n: int
    d: int
    ours_ms: float
    native_ms: float
    ratio: float
    ratio_q1: float
    ratio_q3: float
    ours_q: tuple[float, float] = (0.0, 0.0)
    native_q: tuple[float, float] = (0.0, 0.0)
    ours_peak_mib: float | None = None
    native_peak_mib: float | None = None
    lightly_ms: float | None = None
    lightly_ratio: tuple[float, float, float] | None = None
    lightly_peak_mib: float | None = None
    loss: float = 0.0
    repeats: int = 0
    notes: list[str] = field(default_factory=list)


def check(name: str, got: tuple[float, list[np.ndarray]], want: tuple[float, list[np.ndarray]]
          ) -> str | None:
    """None if ``got`` matches ``want`` to float32 tolerance, else what differs."""
    (loss, grads), (ref_loss, ref_grads) = got, want
    if not math.isfinite(loss) or abs(loss - ref_loss) > LOSS_RTOL * max(abs(ref_loss), 1e-3):
        return f"{name} loss {loss:.7g} vs native {ref_loss:.7g}"
    for i, (g, r) in enumerate(zip(grads, ref_grads, strict=True)):
        g, r = np.asarray(g, np.float64).reshape(r.shape), np.asarray(r, np.float64)
        scale = max(float(np.abs(r).max()), 1e-30)
        err = float(np.abs(g - r).max()) / scale
        if not np.isfinite(err) or err > GRAD_RTOL:
            return f"{name} gradient {i} differs from native by {err:.2e} of its largest entry"
    return None


def mib(x: float | None) -> float | None:
    return None if x is None else x / 2**20


def run_combination(harness: Any, mode: str, term: str, n: int, d: int, args: argparse.Namespace
                    ) -> Row | str:
    """Time one combination; returns its row, or a string saying why it was not timed."""
    kwargs = static_kwargs(term, n, d, args)
    if isinstance(kwargs, str):
        return f"skipped, {kwargs}"
    arrays = make_inputs(term, n, d, args.prototypes, args.prior_dim, args.queue)
    argnums = ARGNUMS[term]
    inputs = harness.inputs(arrays, argnums)
    compiled = mode == "compiled"

    def runner(fn: Callable[..., Any]) -> Runner:
        return harness.runner(functools.partial(fn, **kwargs), inputs, compiled, argnums)

    runners = {"ours": runner(harness.ours[term]), "native": runner(harness.natives[term])}
    if term in harness.extra:
        runners["lightly"] = runner(harness.extra[term])
    notes: list[str] = []
    reference = harness.numpy(runners["native"]())
    for name in [k for k in runners if k != "native"]:
        try:
            problem = check(name, harness.numpy(runners[name]()), reference)
        except Exception as err:  # a contender that does not run is reported, not fatal
            problem = f"{name} failed: {type(err).__name__}: {str(err).splitlines()[0][:200]}"
        if problem is not None:
            if name == "ours":
                return f"{DISAGREES}: {problem}"
            notes.append(f"{name} not timed: {problem}")
            del runners[name]
    times = interleaved(runners, repeats=args.repeats, warmup=args.warmup, rotate=True)
    ours_ms, o1, o3 = summary_ms(times["ours"])
    native_ms, n1, n3 = summary_ms(times["native"])
    ratio = ratio_summary(times["ours"], times["native"])
    peaks = {k: mib(harness.peak_bytes(r, inputs, compiled)) for k, r in runners.items()}
    row = Row(
        framework=harness.name, mode=mode, term=term, n=n, d=d, ours_ms=ours_ms,
        native_ms=native_ms, ratio=ratio[0], ratio_q1=ratio[1], ratio_q3=ratio[2],
        ours_q=(o1, o3), native_q=(n1, n3), ours_peak_mib=peaks["ours"],
        native_peak_mib=peaks["native"], loss=reference[0], repeats=args.repeats, notes=notes,
    )
    if "lightly" in times:
        row.lightly_ms = summary_ms(times["lightly"])[0]
        row.lightly_ratio = ratio_summary(times["ours"], times["lightly"])
        row.lightly_peak_mib = peaks["lightly"]
    return row


# --- reporting ------------------------------------------------------------------------------


def fmt_mem(x: float | None) -> str:
    if x is None:
        return "n/a"
    return f"{x:.1f}" if x < 100 else f"{x:.0f}"


def markdown(rows: list[Row], show_lightly: bool) -> str:
    head = ["framework", "mode", "term", "N", "D", "ours ms", "native ms",
            "ours/native [IQR]"]
    if show_lightly:
        head += ["lightly ms", "ours/lightly [IQR]"]
    head += ["peak MiB ours / native" + (" / lightly" if show_lightly else "")]
    lines = ["| " + " | ".join(head) + " |",
             "|" + "|".join("---:" if h in ("N", "D") or "ms" in h or "/" in h else "---"
                            for h in head) + "|"]
    for r in rows:
        over = r.ratio > TARGETS[r.mode]
        ratio = f"{r.ratio:.2f} [{r.ratio_q1:.2f}, {r.ratio_q3:.2f}]"
        cells = [r.framework, r.mode, r.term, str(r.n), str(r.d), _ms(r.ours_ms),
                 _ms(r.native_ms), f"**{ratio}**" if over else ratio]
        if show_lightly:
            if r.lightly_ms is None or r.lightly_ratio is None:
                cells += ["-", "-"]
            else:
                q = r.lightly_ratio
                cells += [_ms(r.lightly_ms), f"{q[0]:.2f} [{q[1]:.2f}, {q[2]:.2f}]"]
        peaks = f"{fmt_mem(r.ours_peak_mib)} / {fmt_mem(r.native_peak_mib)}"
        if show_lightly:
            peaks += f" / {fmt_mem(r.lightly_peak_mib) if r.lightly_ms is not None else '-'}"
        cells.append(peaks)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _ms(x: float) -> str:
    return f"{x:.3f}" if x < 1 else f"{x:.2f}" if x < 100 else f"{x:.0f}"


def worst_rows(rows: list[Row]) -> dict[tuple[str, str], Row]:
    """The row with the largest ours/native median per (framework, mode)."""
    worst: dict[tuple[str, str], Row] = {}
    for r in rows:
        key = (r.framework, r.mode)
        if key not in worst or r.ratio > worst[key].ratio:
            worst[key] = r
    return worst


def summary_lines(rows: list[Row]) -> list[str]:
    """Per framework and mode: the worst row first, then the median and the rows above
    the target (a median hides the cells that miss it)."""
    out = []
    worst = worst_rows(rows)
    for fw in FRAMEWORKS:
        for mode in MODES:
            sel = [r for r in rows if r.framework == fw and r.mode == mode]
            if not sel:
                continue
            w = worst[(fw, mode)]
            over = [f"{r.term} N={r.n} D={r.d} ({r.ratio:.2f})" for r in sel
                    if r.ratio > TARGETS[mode]]
            out.append(
                f"- {fw} {mode}: worst {w.ratio:.2f} [{w.ratio_q1:.2f}, {w.ratio_q3:.2f}] "
                f"({w.term} N={w.n} D={w.d}); median {statistics.median(r.ratio for r in sel):.2f} "
                f"over {len(sel)} rows; target <= {TARGETS[mode]:.2f}; "
                f"{len(over)} above it{': ' + ', '.join(over) if over else ''}"
            )
    return out


# --- main -----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 1024, 4096],
                        help="batch sizes N")
    parser.add_argument("--dims", type=int, nargs="+", default=[128, 2048, 8192],
                        help="projection dimensions D")
    parser.add_argument("--frameworks", default=",".join(FRAMEWORKS))
    parser.add_argument("--terms", default=",".join(TERMS))
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--repeats", type=int, default=15, help="timed rounds per combination")
    parser.add_argument("--warmup", type=int, default=2,
                        help="untimed calls per contender first (the first one compiles)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                        help="peak memory: cuda: the frameworks' allocator peaks (torch "
                        "max_memory_allocated, TF get_memory_info peak; JAX jit: XLA's "
                        "buffer assignment); cpu: torch via the profiler's allocation "
                        "events, JAX jit via XLA's buffer assignment, otherwise n/a")
    parser.add_argument("--prototypes", type=int, default=300, help="SwAV prototypes K")
    parser.add_argument("--prior-dim", type=int, default=784, help="ADC prior columns P")
    parser.add_argument("--queue", type=int, default=4096,
                        help="MoCo v2's queue of fixed keys and NNCLR's support set (rows)")
    parser.add_argument("--w-size", type=int, default=None,
                        help="W-MSE's sub-batch rows (default: the smallest divisor of N at "
                        "least 2 D, or N); combinations it does not fit are skipped")
    parser.add_argument("--max-gflop", type=float, default=None,
                        help="skip combinations estimated above this many GFLOP per step "
                        "(default 60 on cpu, 20000 on cuda)")
    parser.add_argument("--max-gib", type=float, default=None,
                        help="skip combinations estimated above this much memory (default "
                        "half the available RAM on cpu, 60%% of the GPU's memory on cuda)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: N=256, D=128, 5 repeats, 1 warm-up call")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads per framework (torch intra/inter-op, TF intra/inter-op, "
                        "XLA's CPU Eigen pool off when 1); default: each framework's own")
    parser.add_argument("--json", metavar="PATH", help="also save the results as JSON")
    parser.add_argument("--plot", metavar="PATH", help="also draw the results (PNG); "
                        "benchmarks/plot.py redraws one from --json")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.dims, args.repeats, args.warmup = [256], [128], 5, 1
    if args.repeats < 2:
        parser.error("--repeats must be >= 2")
    if args.queue < 1:
        parser.error(f"--queue must be >= 1 (rows of MoCo's queue and NNCLR's support set), "
                     f"got {args.queue}")
    if args.w_size is not None and args.w_size < 2:
        parser.error(f"--w-size must be >= 2 (rows per whitening sub-batch), got {args.w_size}")
    for name, allowed in (("frameworks", FRAMEWORKS), ("terms", TERMS), ("modes", MODES)):
        chosen = getattr(args, name).split(",")
        bad = [c for c in chosen if c not in allowed]
        if bad:
            parser.error(f"--{name}: unknown {bad}; choose from {','.join(allowed)}")
        setattr(args, name, chosen)
    return args


def memory_limit_gib(device: str) -> float:
    if device == "cuda":
        try:
            import torch

            return 0.6 * torch.cuda.get_device_properties(0).total_memory / 2**30
        except Exception:
            return 16.0
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return 0.5 * int(line.split()[1]) / 2**20
    except OSError:
        pass
    return 4.0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    limit_threads(args.threads)
    max_gflop = args.max_gflop or (20000.0 if args.device == "cuda" else 60.0)
    max_gib = args.max_gib or memory_limit_gib(args.device)
    rows: list[Row] = []
    skipped: list[str] = []
    versions: dict[str, str] = {}
    extra_skip: str | None = None
    started = time.perf_counter()
    for fw in args.frameworks:
        try:
            harness = HARNESSES[fw](args.device)
        except (ImportError, RuntimeError) as err:
            skipped.append(f"{fw}: all skipped ({err})")
            print(f"[{fw}] skipped: {err}", file=sys.stderr, flush=True)
            continue
        versions[fw] = harness.version
        if fw == "torch":
            extra_skip = harness.extra_skip
            if extra_skip:
                print(f"[torch] lightly skipped: {extra_skip}", file=sys.stderr, flush=True)
        for mode in args.modes:
            for term in args.terms:
                for n in args.sizes:
                    for d in args.dims:
                        label = f"{fw} {mode} {term} N={n} D={d}"
                        gflop, gib = estimate(term, n, d, args.prototypes, args.prior_dim,
                                              args.queue)
                        reason = None
                        if gflop > max_gflop:
                            reason = f"est. {gflop:.0f} GFLOP per step > --max-gflop {max_gflop:g}"
                        elif gib > max_gib:
                            reason = f"est. {gib:.1f} GiB > --max-gib {max_gib:.1f}"
                        if reason:
                            skipped.append(f"{label}: skipped, {reason}")
                            print(f"[{label}] skipped: {reason}", file=sys.stderr, flush=True)
                            continue
                        t0 = time.perf_counter()
                        try:
                            result = run_combination(harness, mode, term, n, d, args)
                        except Exception as err:
                            result = f"failed: {type(err).__name__}: {str(err).splitlines()[0]}"
                        gc.collect()
                        if isinstance(result, str):
                            skipped.append(f"{label}: {result}")
                            print(f"[{label}] {result}", file=sys.stderr, flush=True)
                            continue
                        rows.append(result)
                        print(
                            f"[{label}] ours {result.ours_ms:.2f} ms, native "
                            f"{result.native_ms:.2f} ms, ratio {result.ratio:.2f} "
                            f"[{result.ratio_q1:.2f}, {result.ratio_q3:.2f}]"
                            f"{'; ' + '; '.join(result.notes) if result.notes else ''} "
                            f"({time.perf_counter() - t0:.0f} s)",
                            file=sys.stderr, flush=True,
                        )
        close = getattr(harness, "close", None)
        del harness
        gc.collect()
        if close is not None:
            close()
    info = machine_info(args.device, versions)
    header = (
        machine_line(info, versions)
        + (f", {args.threads} thread(s) per framework" if args.threads else "")
        + f"; float32; {args.repeats} rounds after {args.warmup} "
        f"warm-up calls; {time.perf_counter() - started:.0f} s in all"
    )
    print(header)
    print()
    show_lightly = any(r.lightly_ms is not None for r in rows)
    print(markdown(rows, show_lightly))
    print()
    print("ours/native: median over rounds of ours_i / native_i (the two run back to back in "
          "each round), [25th, 75th percentile]; bold: above the target (eager 1.15, "
          "compiled 1.05).")
    for line in summary_lines(rows):
        print(line)
    if "torch" in versions:
        print(f"- lightly: {'compared' if show_lightly else 'skipped: ' + str(extra_skip)}")
    notes = [f"- {r.framework} {r.mode} {r.term} N={r.n} D={r.d}: {note}"
             for r in rows for note in r.notes]
    for line in notes + [f"- {s}" for s in skipped]:
        print(line)
    disagreements = [s for s in skipped if DISAGREES in s]
    if args.json:
        worst = {f"{fw} {mode}": {"term": r.term, "n": r.n, "d": r.d, "ratio": r.ratio,
                                  "ratio_q1": r.ratio_q1, "ratio_q3": r.ratio_q3}
                 for (fw, mode), r in worst_rows(rows).items()}
        with open(args.json, "w") as f:
            json.dump({"machine": info, "args": vars(args), "rows": [asdict(r) for r in rows],
                       "worst": worst, "skipped": skipped, "disagreements": disagreements,
                       "lightly": extra_skip or "compared"}, f, indent=1)
    if args.plot and rows:
        from plot import plot_losses

        result = {"machine": info, "args": vars(args), "rows": [asdict(r) for r in rows]}
        plot_losses(result, args.plot)
    # Timings never decide the exit status (they depend on the machine); a native
    # formula that disagrees with ours does: then one of the two is wrong.
    return 1 if disagreements else 0


if __name__ == "__main__":
    sys.exit(main())
