"""ADC's share of the gradient beside every registered method, at initialisation.

The weights nu and upsilon only mean something relative to the base loss, whose scale
differs by orders of magnitude between methods. For each method of ``glf_losses.registry``
this builds its inputs from its declaration alone, on random correlated views (N = 256,
D = 128, float64) and a random MNIST-shaped prior (784 pixels):

- ``online_*``: the two views' projections z_a, z_b (each the same random base plus
  independent noise);
- ``predicted_*``: a fixed noisy linear map of them (a random matrix near the identity,
  plus noise), as a predictor head's output;
- ``target_*``: the same view's projection, detached (a momentum target starts as a copy
  of the online network; without one the loss takes the online projection under
  stop-gradient);
- parameters (prototypes): random unit rows at the declared sizes; states: zeros or
  random unit rows per ``State.init``, at the declared sizes (``dim`` = D).

It then takes the gradient, with respect to the method's ``adc_inputs`` that carry
gradient (a target's output does not), of the method's loss (``registry.method_parts``)
and of ADC's DCM and LPM terms (ADC's defaults otherwise), and prints one table: the
loss, the norm of its gradient, the norm of ADC's at nu = upsilon = 1 and at the
method's declared ``adc_weights``, ADC's share ``|g_adc| / (|g_adc| + |g_loss|)`` there,
and the weights on the 1-3-10 scale, in the ratio 1:10, whose share is closest to
SimCLR's at (1, 10), the reference the ADC study measured in training.

These are shares at initialisation on random views; in training they differ
(``studies/adc.py --tier shares`` measures them there).

Run: ``python benchmarks/adc_gradient_share.py [--n 256] [--dim 128] [--seed 0]
[--bandwidth perplexity|median] [--methods simclr,byol,...]``.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

import glf_losses
from glf_losses import registry
from glf_losses.adc import Bandwidth

# The reference: ADC's share beside SimCLR at these weights is what the others should get.
REFERENCE = ("simclr", (1.0, 10.0))
# nu : upsilon of every recommended pair (ADC's defaults' ratio).
UPSILON_PER_NU = 10.0
PRIOR_DIM = 784
# Settings a method needs to run on these arrays at all, not to change what it measures.
SETTINGS: dict[str, dict[str, Any]] = {
    # Its default sub-batch of 128 rows cannot whiten D = 128 dimensions (it needs D + 1
    # rows): whiten the whole batch (256 rows = 2 D, the official ratio).
    "wmse": {"w_size": None},
}


# Not compared: the gradients are arrays, whose == is elementwise.
@dataclass(frozen=True, eq=False)
class Share:
    """One method's row of the table (gradient norms over its gradient-carrying ADC inputs)."""

    method: str
    loss: float
    loss_grad: float  # |g_loss|
    adc_unit_grad: float  # |g_adc| at nu = upsilon = 1
    weights: tuple[float, float]  # the registry's adc_weights
    adc_grad: float  # |g_adc| at the declared weights
    dcm_grad: np.ndarray  # the gradient of L_DCM (weight 1), flattened
    lpm_grad: np.ndarray  # the gradient of L_LPM (weight 1), flattened

    def adc_norm(self, nu: float, upsilon: float) -> float:
        """|g_adc| at any weights: ADC's gradient is linear in them."""
        return float(np.linalg.norm(nu * self.dcm_grad + upsilon * self.lpm_grad))

    def share_at(self, nu: float, upsilon: float) -> float:
        """ADC's share |g_adc| / (|g_adc| + |g_loss|) at the weights (nu, upsilon)."""
        g = self.adc_norm(nu, upsilon)
        return g / (g + self.loss_grad)

    @property
    def share(self) -> float:
        """ADC's share at the declared weights."""
        return self.share_at(*self.weights)


def one_three_ten(lo: float = 1e-3, hi: float = 1e6) -> list[float]:
    """The scales 1, 3, 10, 30, ... (and below 1: 0.3, 0.1, ...) within [lo, hi]."""
    out = []
    for k in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1):
        # Rounded, so that 0.3 prints and compares as 0.3, not 0.30000000000000004.
        out += [round(m * 10.0**k, 12) for m in (1.0, 3.0) if lo <= m * 10.0**k <= hi]
    return out


def suggested_scale(row: Share, target: float) -> float:
    """The scale s on the 1-3-10 steps whose weights (s, 10 s) give the share nearest
    ``target`` (nearest in log-odds, so that 50% -> 40% and 50% -> 60% weigh alike)."""
    if not 0.0 < target < 1.0:
        raise ValueError(f"target must be a share in (0, 1), got {target}")

    def log_odds(p: float) -> float:
        p = min(max(p, 1e-12), 1.0 - 1e-12)
        return math.log(p / (1.0 - p))

    goal = log_odds(target)
    return min(one_three_ten(),
               key=lambda s: abs(log_odds(row.share_at(s, UPSILON_PER_NU * s)) - goal))


def _unit_rows(rng: np.random.Generator, shape: tuple[int, ...]) -> torch.Tensor:
    rows = rng.normal(size=shape)
    return torch.tensor(rows / np.linalg.norm(rows, axis=-1, keepdims=True))


def _size(entry: registry.Method, name: str, dim: int) -> int:
    size = entry.sizes.get(name, dim if name == "dim" else None)
    if size is None:
        if name != "dim":
            raise ValueError(f"{entry.name}: size {name!r} has no default; declare one in its "
                             f"Method.sizes, e.g. sizes={{{name!r}: 1024}}")
        size = dim
    return int(size)


def method_arrays(
    entry: registry.Method, z_a: torch.Tensor, z_b: torch.Tensor, rng: np.random.Generator
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The method's inputs by name (from ``Method.sources``), and its parameters and states
    by name (from their declared shapes and initialisation), on the views ``z_a, z_b``."""
    n, d = z_a.shape
    online = {"a": z_a, "b": z_b}
    # One predictor for both views, as a trainer has: a random map near the identity.
    mix = torch.tensor(np.eye(d) + 0.5 * rng.normal(size=(d, d)) / math.sqrt(d))
    noise = {v: torch.tensor(0.1 * rng.normal(size=(n, d))) for v in "ab"}
    inputs = {}
    for name, source in zip(entry.inputs, entry.sources, strict=True):
        branch, view = source.rsplit("_", 1)
        if branch == "online":
            value = online[view]
        elif branch == "predicted":
            value = online[view] @ mix + noise[view]
        else:  # target: the same view's projection, outside the gradient
            value = online[view].detach()
        inputs[name] = value
    held: dict[str, torch.Tensor] = {}
    for p in entry.parameters:
        held[p.name] = _unit_rows(rng, tuple(_size(entry, s, d) for s in p.shape))
    for s in entry.states:
        shape = tuple(_size(entry, size, d) for size in s.shape)
        held[s.name] = _unit_rows(rng, shape) if s.init == "unit_rows" \
            else torch.zeros(shape, dtype=torch.float64)
    return inputs, held


def views(n: int, dim: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two correlated views (a shared base plus independent noise) and a random prior of
    784 pixel values in [0, 255]."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, dim))
    z_a = torch.tensor(base + 0.5 * rng.normal(size=(n, dim)))
    z_b = torch.tensor(base + 0.5 * rng.normal(size=(n, dim)))
    prior = torch.tensor(rng.integers(0, 256, size=(n, PRIOR_DIM)))
    return z_a, z_b, prior


def measure(
    method: str, n: int = 256, dim: int = 128, seed: int = 0, bandwidth: Bandwidth = "perplexity"
) -> Share:
    """ADC's and the loss's gradient norms for ``method`` on the views of ``views``, with
    ``bandwidth`` the rule of both of ADC's bandwidths (features and prior)."""
    entry = registry.get(method)
    z_a, z_b, prior = views(n, dim, seed)
    # Each method draws its own arrays from a generator of its own, so that a row does not
    # depend on which methods came before it.
    rng = np.random.default_rng((seed, *entry.name.encode()))
    inputs, held = method_arrays(entry, z_a, z_b, rng)
    targets = {name for name, source in zip(entry.inputs, entry.sources, strict=True)
               if source.startswith("target")}
    carrying = [name for name in entry.adc_inputs if name not in targets]
    if not carrying:
        raise ValueError(f"{entry.name}: its adc_inputs {entry.adc_inputs} are all target "
                         "outputs, which carry no gradient; ADC has no share to measure")
    leaves = {name: value.detach().clone().requires_grad_(name in carrying)
              for name, value in inputs.items()}
    wrt = [leaves[name] for name in carrying]
    args = tuple(leaves[name] for name in entry.inputs)
    loss = registry.method_parts(entry, *args, **held, **SETTINGS.get(entry.name, {})).total
    adc = glf_losses.ADC(nu=1.0, upsilon=1.0, bandwidth=bandwidth, prior_bandwidth=bandwidth)
    adc_parts = adc.parts(*entry.adc_pair(args), prior)

    def flat(term: torch.Tensor) -> np.ndarray:
        """The gradient of ``term`` with respect to ``wrt``, as one vector (zeros where an
        input does not reach it)."""
        grads = torch.autograd.grad(term, wrt, retain_graph=True, allow_unused=True)
        return torch.cat([(torch.zeros_like(w) if g is None else g).reshape(-1)
                          for g, w in zip(grads, wrt, strict=True)]).numpy()

    dcm, lpm = flat(adc_parts.dcm), flat(adc_parts.lpm)
    weights = tuple(float(w) for w in entry.adc_weights)
    return Share(
        method=entry.name,
        loss=float(loss.detach()),
        loss_grad=float(np.linalg.norm(flat(loss))),
        adc_unit_grad=float(np.linalg.norm(dcm + lpm)),
        weights=(weights[0], weights[1]),
        adc_grad=float(np.linalg.norm(weights[0] * dcm + weights[1] * lpm)),
        dcm_grad=dcm,
        lpm_grad=lpm,
    )


def table(rows: Sequence[Share]) -> str:
    """The rows as a Markdown table, with the weights nearest the reference share."""
    ref_name, ref_weights = REFERENCE
    reference = next(r for r in rows if r.method == ref_name).share_at(*ref_weights)
    lines = [
        f"Reference: ADC's share beside {ref_name} at {ref_weights} = {100 * reference:.0f}%",
        "",
        "| method | loss | ‖g_loss‖ | ‖g_adc‖ (1, 1) | weights | ‖g_adc‖ | share "
        "| nearest 1-3-10 weights (share) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        s = suggested_scale(r, reference)
        best = (s, UPSILON_PER_NU * s)
        lines.append(
            f"| {r.method} | {r.loss:.4g} | {r.loss_grad:.2e} | {r.adc_unit_grad:.2e} "
            f"| ({r.weights[0]:g}, {r.weights[1]:g}) | {r.adc_grad:.2e} "
            f"| {100 * r.share:.0f}% | ({best[0]:g}, {best[1]:g}) "
            f"({100 * r.share_at(*best):.0f}%) |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=256, help="batch size N (ADC's M = 2N)")
    parser.add_argument("--dim", type=int, default=128, help="projection width D")
    parser.add_argument("--seed", type=int, default=0)
    # One thread: the arrays are small, and threads contending for busy cores made the
    # run several times slower, not faster.
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--bandwidth", choices=("perplexity", "median"), default="perplexity",
                        help="ADC's bandwidth rule, for the features and the prior")
    parser.add_argument("--methods", default=",".join(registry.names()),
                        help="comma-separated registered methods (default: all)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    methods = args.methods.split(",")
    if REFERENCE[0] not in methods:
        methods.append(REFERENCE[0])
    rows = [measure(m, args.n, args.dim, args.seed, args.bandwidth) for m in methods]
    print(f"N={args.n}, D={args.dim}, prior {PRIOR_DIM} random pixels, float64, seed "
          f"{args.seed}, {args.bandwidth!r} bandwidths; gradients with respect to each "
          "method's adc_inputs that carry gradient, at initialisation on random views")
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
