"""ADC's share of the gradient next to each base method, at equal weights.

The weights nu and upsilon only mean something relative to the base loss: this prints,
for random projections of a correlated pair of views (N = 256, D = 128, an MNIST-shaped
prior), each method's loss and gradient norm with respect to the projections, and the
gradient norm of ADC's DCM and LPM terms at nu = upsilon = 1, for "median" and
"perplexity" bandwidths. Run: ``python benchmarks/adc_gradient_share.py``.
"""

from __future__ import annotations

import numpy as np
import torch

import glf_losses


def grad_norm(loss_fn, z_a: torch.Tensor, z_b: torch.Tensor) -> tuple[float, float]:
    z_a = z_a.detach().requires_grad_(True)
    z_b = z_b.detach().requires_grad_(True)
    loss = loss_fn(z_a, z_b)
    g_a, g_b = torch.autograd.grad(loss, [z_a, z_b])
    return float(loss.detach()), float(torch.sqrt((g_a**2).sum() + (g_b**2).sum()))


def main() -> None:
    rng = np.random.default_rng(0)
    n, d = 256, 128
    base = rng.normal(size=(n, d))
    z_a = torch.tensor(base + 0.5 * rng.normal(size=(n, d)))
    z_b = torch.tensor(base + 0.5 * rng.normal(size=(n, d)))
    pixels = torch.tensor(rng.integers(0, 256, size=(n, 784)))
    scores = torch.randn(d, 300, dtype=torch.float64)
    scores = scores / scores.norm(dim=0, keepdim=True)

    def swav(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        na, nb = a / a.norm(dim=1, keepdim=True), b / b.norm(dim=1, keepdim=True)
        return glf_losses.swav_loss(na @ scores, nb @ scores)

    methods = {
        "barlow_twins": glf_losses.barlow_twins_loss,
        "simclr": glf_losses.simclr_loss,
        "swav": swav,
        "byol": lambda a, b: glf_losses.byol_loss(a, b, a, b),
    }
    print(f"N={n}, D={d}, prior 784 random pixels; float64")
    print(f"{'term':<34} {'loss':>10} {'|grad|':>10}")
    for name, fn in methods.items():
        loss, g = grad_norm(fn, z_a, z_b)
        print(f"{name:<34} {loss:>10.4f} {g:>10.3e}")
    for mode in ("median", "perplexity"):
        for term, (nu, ups) in {"DCM": (1.0, 0.0), "LPM": (0.0, 1.0)}.items():
            loss, g = grad_norm(
                lambda a, b, nu=nu, ups=ups, mode=mode: glf_losses.adc_loss(
                    a, b, pixels, nu=nu, upsilon=ups, bandwidth=mode, prior_bandwidth=mode
                ),
                z_a,
                z_b,
            )
            print(f"{f'ADC {term} ({mode}), weight 1':<34} {loss:>10.4f} {g:>10.3e}")


if __name__ == "__main__":
    main()
