"""PyTorch backend: autograd, ``torch.compile``, tensors stay on their device.

Also the ``torch.nn.Module`` front-ends: :class:`BYOLLoss`, :class:`BarlowTwinsLoss`,
:class:`SwAVLoss` (owns the prototypes) and :class:`SimCLRLoss`.
"""

from __future__ import annotations

from typing import Any

import array_api_compat.torch as xp
import numpy as np
import torch

from glf_losses import methods
from glf_losses._lib import GLFParts, l2_normalize

__all__ = [
    "BYOLLoss",
    "BarlowTwinsLoss",
    "SimCLRLoss",
    "SwAVLoss",
    "device",
    "logsumexp",
    "name",
    "select_kth",
    "stop_gradient",
    "to_numpy",
    "xp",
]

name = "torch"


def device(x: Any) -> Any:
    return x.device


def stop_gradient(x: Any) -> Any:
    return x.detach()


def logsumexp(x: Any, axis: int, keepdims: bool = False) -> Any:
    return torch.logsumexp(x, dim=axis, keepdim=keepdims)


def select_kth(x: Any, ks: tuple[int, ...]) -> Any:
    """Order statistics by ``torch.kthvalue`` (selection) on CPU, a sort on accelerators.

    ``kthvalue`` has no CUDA kernel faster than sorting for the sizes used here.
    """
    if x.device.type == "cpu":
        return torch.stack([torch.kthvalue(x, k + 1).values for k in ks])
    ordered = torch.sort(x).values
    return ordered[list(ks)]


def to_numpy(x: Any) -> np.ndarray:
    x = x.detach().cpu()
    if x.dtype == torch.bfloat16:
        x = x.float()
    return x.numpy()


# --- nn.Module front-ends ---------------------------------------------------------------


class _GLFLoss(torch.nn.Module):
    """Base: ``forward`` returns the 0-d loss, ``parts`` the ``GLFParts``."""

    def parts(self, *args: Any) -> GLFParts:
        raise NotImplementedError

    def forward(self, *args: Any) -> torch.Tensor:
        return self.parts(*args).total


class BYOLLoss(_GLFLoss):
    """``BYOLLoss()(p_a, p_b, z_a, z_b)``: :func:`glf_losses.byol_loss` as a module.

    Example:
      >>> import torch
      >>> from glf_losses.backends.torch import BYOLLoss
      >>> p = torch.randn(8, 16, requires_grad=True)
      >>> BYOLLoss()(p, p, p.detach(), p.detach()).backward()
    """

    def parts(self, p_a: Any, p_b: Any, z_a: Any, z_b: Any) -> GLFParts:
        return methods.byol_parts(p_a, p_b, z_a, z_b)


class BarlowTwinsLoss(_GLFLoss):
    """``BarlowTwinsLoss(lambd, eps, scale)(z_a, z_b)``: :func:`glf_losses.barlow_twins_loss`."""

    def __init__(self, lambd: float = 0.0051, eps: float = 1e-5, scale: float = 1.0) -> None:
        super().__init__()
        self.lambd, self.eps, self.scale = lambd, eps, scale

    def parts(self, z_a: Any, z_b: Any) -> GLFParts:
        return methods.barlow_twins_parts(z_a, z_b, self.lambd, self.eps, self.scale)


class SimCLRLoss(_GLFLoss):
    """``SimCLRLoss(temperature)(z_a, z_b)``: :func:`glf_losses.simclr_loss`."""

    def __init__(self, temperature: float = 0.2) -> None:
        super().__init__()
        self.temperature = temperature

    def parts(self, z_a: Any, z_b: Any) -> GLFParts:
        return methods.simclr_parts(z_a, z_b, self.temperature)


class SwAVLoss(_GLFLoss):
    """SwAV with its prototypes: ``SwAVLoss(dim, n_prototypes)(z_a, z_b)``.

    Owns a (K, D) prototype matrix; ``forward`` L2-normalises the projections and the
    prototype rows, scores ``n(z) W^T`` and calls :func:`glf_losses.swav_loss`. Call
    :meth:`normalize_prototypes` after each optimiser step, as SwAV does, to keep the
    stored rows on the sphere.
    """

    def __init__(
        self,
        dim: int,
        n_prototypes: int,
        temperature: float = 0.1,
        epsilon: float = 0.05,
        sinkhorn_iters: int = 3,
    ) -> None:
        super().__init__()
        self.prototypes = torch.nn.Parameter(torch.randn(n_prototypes, dim))
        with torch.no_grad():
            self.normalize_prototypes()
        self.temperature, self.epsilon, self.sinkhorn_iters = temperature, epsilon, sinkhorn_iters

    @torch.no_grad()
    def normalize_prototypes(self) -> None:
        self.prototypes.copy_(l2_normalize(xp, self.prototypes))

    def scores(self, z: torch.Tensor) -> torch.Tensor:
        w = l2_normalize(xp, self.prototypes).to(dtype=z.dtype)
        return l2_normalize(xp, z) @ w.T

    def parts(self, z_a: Any, z_b: Any) -> GLFParts:
        return methods.swav_parts(
            self.scores(z_a), self.scores(z_b), self.temperature, self.epsilon,
            self.sinkhorn_iters,
        )
