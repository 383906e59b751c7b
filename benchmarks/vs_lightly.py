"""glf-losses against lightly's PyTorch losses, as a user switching from lightly would time them.

Run::

    python benchmarks/vs_lightly.py [--cases swav:1024:3000,barlow_twins:256:2048]
        [--pairs 25] [--warmup 3] [--threads 2] [--json PATH]

Each case is ``term:N:D`` (for SwAV, D is the number of prototypes K: both losses take
the (N, K) prototype scores of the two views). One call computes the loss and its
gradient with respect to the two float32 inputs, in eager PyTorch. After warm-up calls
and a check that both losses and gradients agree, ours and lightly's run in
alternating pairs (the order swapping every pair); the ratio ours/lightly is reported as
the median of the per-pair ratios with their quartiles.

lightly is imported only if it is installed (its losses import ``torchvision``, which
must match the installed torch); otherwise the script says so and exits 0. glf-losses
is imported as installed, or else straight from this checkout (``glf_losses/`` and
``backends/``), so the script also runs in a separate environment that has lightly but
not glf-losses, e.g.::

    python3 -m venv /tmp/lightly-venv
    /tmp/lightly-venv/bin/pip install torch torchvision lightly array-api-compat
    /tmp/lightly-venv/bin/python benchmarks/vs_lightly.py
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent

# The library's defaults, which lightly's losses take as arguments.
LAMBD, SIMCLR_T = 0.0051, 0.2
SWAV_T, SWAV_EPS, SWAV_ITERS = 0.1, 0.05, 3
LOSS_RTOL, GRAD_RTOL = 2e-4, 2e-3


def import_glf_losses() -> Any:
    """``glf_losses`` as installed, else from this checkout.

    The checkout maps the package ``glf_losses.backends`` to the top-level ``backends/``
    folder, so a plain ``PYTHONPATH`` finds ``glf_losses`` but not its backends; the
    backends package is registered from its folder before the first loss call needs it.
    """
    try:
        import glf_losses.backends

        return glf_losses
    except ImportError:
        pass
    sys.path.insert(0, str(REPO))
    spec = importlib.util.spec_from_file_location(
        "glf_losses.backends",
        REPO / "backends" / "__init__.py",
        submodule_search_locations=[str(REPO / "backends")],
    )
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load glf_losses.backends from {REPO / 'backends'}")
    import glf_losses

    backends = importlib.util.module_from_spec(spec)
    sys.modules["glf_losses.backends"] = backends
    spec.loader.exec_module(backends)
    glf_losses.backends = backends
    return glf_losses


def lightly_losses(torch: Any) -> tuple[dict[str, Callable[..., Any]], str | None]:
    """lightly's losses configured to our formulas, or ``({}, why not)``.

    Where lightly's formula is ours: ``BarlowTwinsLoss`` with ``lambda_param=0.0051`` (its
    default is 5e-3; it standardises with ``F.batch_norm``, eps 1e-5, as we do);
    ``NTXentLoss(temperature=0.2)`` is NT-Xent over the 2N rows without memory bank;
    ``SwaVLoss`` on ``[s_a, s_b]`` with no low-resolution crops is the symmetrised swapped
    prediction (its Sinkhorn has no max shift, which cancels in exact arithmetic); BYOL is
    composed from ``NegativeCosineSimilarity`` as ``4 + 2 (ncs(p_a, sg z_b) + ncs(p_b,
    sg z_a))``, our mean of ``|n(p) - n(z)|^2 = 2 - 2 cos`` per direction.
    """
    try:
        import lightly.loss as ll
    except ImportError as err:
        try:
            import lightly  # noqa: F401
        except ImportError:
            return {}, f"lightly is not installed ({err})"
        return {}, f"lightly is installed but lightly.loss does not import: {err}"
    swav = ll.SwaVLoss(
        temperature=SWAV_T, sinkhorn_iterations=SWAV_ITERS, sinkhorn_epsilon=SWAV_EPS
    )
    ncs = ll.NegativeCosineSimilarity()

    def byol(p_a: Any, p_b: Any, z_a: Any, z_b: Any) -> Any:
        # Our |n(p) - n(z)|^2 = 2 - 2 cos per direction, summed over both directions.
        return 4.0 + 2.0 * (ncs(p_a, z_b.detach()) + ncs(p_b, z_a.detach()))

    return {
        "swav": lambda s_a, s_b: swav([s_a, s_b], []),
        "barlow_twins": ll.BarlowTwinsLoss(lambda_param=LAMBD),
        "simclr": ll.NTXentLoss(temperature=SIMCLR_T),
        "byol": byol,
    }, None


def our_losses(glf_losses: Any) -> dict[str, Callable[..., Any]]:
    return {
        "swav": glf_losses.swav_loss,
        "barlow_twins": glf_losses.barlow_twins_loss,
        "simclr": glf_losses.simclr_loss,
        "byol": glf_losses.byol_loss,
    }


def make_inputs(torch: Any, term: str, n: int, d: int, seed: int = 0) -> list[Any]:
    """float32 inputs; the first two are differentiated. SwAV gets cosine scores."""
    rng = np.random.default_rng(seed)

    def views(count: int, n: int, d: int) -> list[np.ndarray]:
        base = rng.standard_normal((n, d), dtype=np.float32)
        return [base + np.float32(0.5) * rng.standard_normal((n, d), dtype=np.float32)
                for _ in range(count)]

    if term == "swav":
        # Scores in [-1, 1] like n(z) n(W)^T: 128-dim normalised rows against d unit
        # prototypes.
        w = rng.standard_normal((d, 128), dtype=np.float32)
        w /= np.linalg.norm(w, axis=1, keepdims=True)
        arrays = [(z / np.linalg.norm(z, axis=1, keepdims=True)) @ w.T
                  for z in views(2, n, 128)]
    else:
        arrays = views(4 if term == "byol" else 2, n, d)
    out = [torch.tensor(a) for a in arrays]
    for t in out[:2]:
        t.requires_grad_(True)
    return out


def value_and_grad(fn: Callable[..., Any], inputs: list[Any]) -> tuple[Any, list[Any]]:
    for t in inputs[:2]:
        t.grad = None
    loss = fn(*inputs)
    loss.backward()
    return loss, [t.grad for t in inputs[:2]]


def disagreement(ours: tuple[Any, list[Any]], theirs: tuple[Any, list[Any]]) -> str | None:
    """None if both losses and gradients agree to float32 tolerance, else what differs."""
    (loss, grads), (ref, ref_grads) = ours, theirs
    loss, ref = float(loss.detach()), float(ref.detach())
    if abs(loss - ref) > LOSS_RTOL * max(abs(ref), 1e-3):
        return f"loss {loss:.7g} vs lightly {ref:.7g}"
    for i, (g, r) in enumerate(zip(grads, ref_grads, strict=True)):
        err = float((g - r).abs().max()) / max(float(r.abs().max()), 1e-30)
        if err > GRAD_RTOL:
            return f"gradient {i} differs from lightly's by {err:.2e} of its largest entry"
    return None


def quartiles(values: list[float]) -> tuple[float, float, float]:
    q = statistics.quantiles(values, n=4)
    return statistics.median(values), q[0], q[2]


def time_pairs(
    ours: Callable[[], Any], theirs: Callable[[], Any], pairs: int, warmup: int
) -> tuple[list[float], list[float]]:
    """Seconds per call of each, in ``pairs`` back-to-back pairs, the order alternating."""
    for _ in range(warmup):
        ours()
        theirs()
    t_ours: list[float] = []
    t_theirs: list[float] = []
    for i in range(pairs):
        order = [(ours, t_ours), (theirs, t_theirs)]
        for fn, times in order if i % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return t_ours, t_theirs


def parse_cases(text: str) -> list[tuple[str, int, int]]:
    cases = []
    for item in text.split(","):
        parts = item.split(":")
        if len(parts) != 3 or parts[0] not in ("swav", "barlow_twins", "simclr", "byol"):
            raise argparse.ArgumentTypeError(
                f"--cases: {item!r} is not term:N:D with term one of swav, barlow_twins, "
                "simclr, byol (e.g. swav:1024:3000)"
            )
        cases.append((parts[0], int(parts[1]), int(parts[2])))
    return cases


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=parse_cases,
                        default=parse_cases("swav:1024:3000,barlow_twins:256:2048"),
                        help="comma-separated term:N:D (SwAV: D is K, the prototypes)")
    parser.add_argument("--pairs", type=int, default=25, help="timed alternating pairs")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls of each first")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--json", metavar="PATH", help="also save the results as JSON")
    args = parser.parse_args(argv)
    if args.pairs < 2:
        parser.error("--pairs must be >= 2 (quartiles need two ratios)")

    import torch

    torch.set_num_threads(args.threads)
    theirs, why_not = lightly_losses(torch)
    if why_not is not None:
        print(f"lightly: skipped: {why_not}")
        return 0
    import lightly

    ours = our_losses(import_glf_losses())
    print(f"torch {torch.__version__}, lightly {lightly.__version__}, {args.threads} "
          f"thread(s), float32, forward+backward, {args.pairs} alternating pairs after "
          f"{args.warmup} warm-up calls each; {os.cpu_count()} CPUs")
    print()
    print("| loss | N | D or K | ours ms | lightly ms | ours/lightly median [q1, q3] |")
    print("|---|---:|---:|---:|---:|---:|")
    rows, disagreed = [], False
    for term, n, d in args.cases:
        inputs = make_inputs(torch, term, n, d)
        problem = disagreement(value_and_grad(ours[term], inputs),
                               value_and_grad(theirs[term], inputs))
        if problem is not None:
            print(f"| {term} | {n} | {d} | - | - | not timed: {problem} |")
            disagreed = True
            continue
        t_ours, t_theirs = time_pairs(
            functools.partial(value_and_grad, ours[term], inputs),
            functools.partial(value_and_grad, theirs[term], inputs),
            args.pairs, args.warmup,
        )
        ratio = quartiles([a / b for a, b in zip(t_ours, t_theirs, strict=True)])
        ms_ours, ms_theirs = statistics.median(t_ours) * 1e3, statistics.median(t_theirs) * 1e3
        print(f"| {term} | {n} | {d} | {ms_ours:.2f} | {ms_theirs:.2f} | "
              f"{ratio[0]:.2f} [{ratio[1]:.2f}, {ratio[2]:.2f}] |", flush=True)
        rows.append({"term": term, "n": n, "d": d, "ours_ms": ms_ours, "lightly_ms": ms_theirs,
                     "ratio": ratio})
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"torch": torch.__version__, "lightly": lightly.__version__,
                       "threads": args.threads, "pairs": args.pairs, "rows": rows}, f, indent=1)
    return 1 if disagreed else 0


if __name__ == "__main__":
    sys.exit(main())
