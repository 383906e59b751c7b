"""How many operations one forward+backward dispatches: ours against the native forms.

Run::

    python benchmarks/op_counts.py [--n 256] [--d 128] [--terms byol,barlow_twins,...]

In eager mode every operation is dispatched on its own, so where a call is small its time
follows the number of operations rather than the arithmetic. For each term this prints,
for ours and for the native implementation of ``benchmarks/natives``:

- jax: the primitives of ``jax.make_jaxpr(jax.value_and_grad(loss))`` (a fixed-count loop
  is one ``fori_loop`` primitive in both);
- torch: the ATen operator calls that ``torch.profiler`` records (nested calls included)
  and the allocations of at least ``--big`` float32 elements (each a fresh buffer: on a
  CPU, page faults on new memory can cost more than a pass over it);
- tensorflow: the operations an eager call executes under a ``GradientTape``, forward
  and backward (``tape.gradient``) apart, each one kernel launch from Python (counted at
  TensorFlow's private entry points ``TFE_Py_FastPathExecute`` and ``TFE_Py_Execute``).

Inputs are those of ``benchmarks/losses.py`` (``make_inputs``), differentiated with
respect to the same arrays (``ARGNUMS``).
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import losses


def contenders(term: str, natives: dict[str, Callable[..., Any]], kwargs: dict[str, Any]
               ) -> dict[str, Callable[..., Any]]:
    """Ours and native for ``term``, with its static keyword arguments bound."""
    ours = losses.ours(natives["swav_score"])
    return {name: functools.partial(fn, **kwargs)
            for name, fn in (("ours", ours[term]), ("native", natives[term]))}


def jax_counts(term: str, arrays: list[Any], kwargs: dict[str, Any]) -> tuple[int, int]:
    import jax
    import jax.numpy as jnp
    from natives.jax import NATIVES

    xs = [jnp.asarray(a) for a in arrays]
    argnums = losses.ARGNUMS[term]
    return tuple(  # type: ignore[return-value]
        len(jax.make_jaxpr(jax.value_and_grad(f, argnums=argnums))(*xs).jaxpr.eqns)
        for f in contenders(term, NATIVES, kwargs).values()
    )


def torch_inputs(term: str, arrays: list[Any]) -> tuple[list[Any], list[Any]]:
    """The arrays as tensors, and those of them that are differentiated."""
    import torch

    xs = [torch.tensor(a) for a in arrays]
    wrt = [xs[i].requires_grad_(True) for i in losses.ARGNUMS[term]]
    return xs, wrt


def torch_counts(term: str, arrays: list[Any], big: int, kwargs: dict[str, Any]
                 ) -> tuple[tuple[int, int], ...]:
    import torch
    from natives.torch import NATIVES
    from torch.profiler import ProfilerActivity, profile

    def count(fn: Callable[..., Any]) -> tuple[int, int]:
        xs, wrt = torch_inputs(term, arrays)
        torch.autograd.grad(fn(*xs), wrt)  # warm-up: lazy imports, caches
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            torch.autograd.grad(fn(*xs), wrt)
        ops = sum(1 for e in prof.events() if e.name.startswith("aten::"))
        # The CPU allocator's events: a positive size is an allocation (a private API,
        # as in losses.py's peak memory).
        large = sum(
            1 for e in prof.profiler.kineto_results.events()
            if e.name() == "[memory]" and e.nbytes() >= 4 * big
        )
        return ops, large

    fns = contenders(term, NATIVES, kwargs)
    return count(fns["ours"]), count(fns["native"])


def tensorflow_counts(term: str, arrays: list[Any], kwargs: dict[str, Any]
                      ) -> tuple[tuple[int, int], ...]:
    """(forward, backward) eager operations of ours and of native."""
    import tensorflow as tf
    from natives.tensorflow import NATIVES
    from tensorflow.python import pywrap_tfe

    executed = [0]
    entry_points = ("TFE_Py_FastPathExecute", "TFE_Py_Execute")
    originals = {name: getattr(pywrap_tfe, name) for name in entry_points}

    def counting(original: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any) -> Any:
            executed[0] += 1
            return original(*args)
        return call

    def count(fn: Callable[..., Any]) -> tuple[int, int]:
        xs = [tf.constant(a) for a in arrays]
        wrt = [xs[i] for i in losses.ARGNUMS[term]]

        def step() -> tuple[int, int]:
            start = executed[0]
            with tf.GradientTape() as tape:
                tape.watch(wrt)
                value = fn(*xs)
            middle = executed[0]
            tape.gradient(value, wrt)
            return middle - start, executed[0] - middle

        step()  # warm-up: lazy imports, caches
        for name, original in originals.items():
            setattr(pywrap_tfe, name, counting(original))
        try:
            return step()
        finally:
            for name, original in originals.items():
                setattr(pywrap_tfe, name, original)

    fns = contenders(term, NATIVES, kwargs)
    return count(fns["ours"]), count(fns["native"])


def torch_profile(term: str, arrays: list[Any], rounds: int, top: int, kwargs: dict[str, Any]
                  ) -> list[str]:
    """The ATen operators whose self CPU time differs most between ours and native."""
    import torch
    from natives.torch import NATIVES
    from torch.profiler import ProfilerActivity, profile

    fns = contenders(term, NATIVES, kwargs)
    xs, wrt = torch_inputs(term, arrays)
    per_op: dict[str, dict[str, tuple[int, float]]] = {name: {} for name in fns}
    for fn in fns.values():
        torch.autograd.grad(fn(*xs), wrt)
    # Alternating, so that a change of the machine's load touches both alike.
    for _ in range(rounds):
        for name, fn in fns.items():
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                torch.autograd.grad(fn(*xs), wrt)
            totals = per_op[name]
            for e in prof.key_averages():
                _, ms = totals.get(e.key, (0, 0.0))
                totals[e.key] = (e.count, ms + e.self_cpu_time_total / 1e3 / rounds)
    keys = set(per_op["ours"]) | set(per_op["native"])

    def gap(key: str) -> float:
        return per_op["ours"].get(key, (0, 0.0))[1] - per_op["native"].get(key, (0, 0.0))[1]

    lines = [f"  {'operator':<36} {'ours calls':>10} {'ours ms':>8} {'native calls':>12} "
             f"{'native ms':>9}"]
    for key in sorted(keys, key=gap, reverse=True)[:top]:
        (oc, oms), (nc, nms) = per_op["ours"].get(key, (0, 0.0)), per_op["native"].get(
            key, (0, 0.0))
        lines.append(f"  {key[:36]:<36} {oc:>10} {oms:>8.1f} {nc:>12} {nms:>9.1f}")
    total = {k: sum(ms for _, ms in v.values()) for k, v in per_op.items()}
    lines.append(f"  self CPU total: ours {total['ours']:.1f} ms, native {total['native']:.1f} ms")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=256, help="batch size N")
    parser.add_argument("--d", type=int, default=128, help="projection dimension D")
    parser.add_argument("--prototypes", type=int, default=300, help="SwAV prototypes K")
    parser.add_argument("--prior-dim", type=int, default=784, help="ADC prior columns P")
    parser.add_argument("--queue", type=int, default=4096,
                        help="MoCo v2's queue and NNCLR's support set (rows)")
    parser.add_argument("--w-size", type=int, default=None, help="W-MSE's sub-batch rows")
    parser.add_argument("--terms", default=",".join(losses.TERMS))
    parser.add_argument("--frameworks", default="jax,torch",
                        help="any of jax, torch, tensorflow")
    parser.add_argument("--big", type=int, default=None,
                        help="float32 elements from which an allocation counts as large "
                        "(default N * N)")
    parser.add_argument("--profile", type=int, default=0, metavar="TOP",
                        help="torch: also list the TOP operators whose self CPU time "
                        "differs most between ours and native (mean of 3 profiled calls each, "
                        "alternating)")
    args = parser.parse_args(argv)
    big = args.big or args.n * args.n
    print(f"N={args.n}, D={args.d}, K={args.prototypes}, P={args.prior_dim}; large: "
          f">= {big} elements")
    for term in args.terms.split(","):
        kwargs = losses.static_kwargs(term, args.n, args.d, args)
        if isinstance(kwargs, str):
            print(f"- {term}: skipped, {kwargs}")
            continue
        arrays = losses.make_inputs(term, args.n, args.d, args.prototypes, args.prior_dim,
                                    args.queue)
        parts = []
        if "jax" in args.frameworks:
            o, n = jax_counts(term, arrays, kwargs)
            parts.append(f"jax primitives ours {o} / native {n}")
        if "torch" in args.frameworks:
            (o_ops, o_big), (n_ops, n_big) = torch_counts(term, arrays, big, kwargs)
            parts.append(f"torch ATen calls ours {o_ops} / native {n_ops}, large results "
                         f"ours {o_big} / native {n_big}")
        if "tensorflow" in args.frameworks:
            (o_f, o_b), (n_f, n_b) = tensorflow_counts(term, arrays, kwargs)
            parts.append(f"tensorflow eager ops ours {o_f} + {o_b} / native {n_f} + {n_b} "
                         f"(forward + backward)")
        print(f"- {term}: " + "; ".join(parts))
        if args.profile and "torch" in args.frameworks:
            print("\n".join(torch_profile(term, arrays, 3, args.profile, kwargs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
