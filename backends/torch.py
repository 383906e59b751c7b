"""PyTorch backend: autograd, ``torch.compile``, tensors stay on their device.

Also the ``torch.nn.Module`` front-ends: :class:`BYOLLoss`, :class:`BarlowTwinsLoss`,
:class:`SwAVLoss` (owns the prototypes) and :class:`SimCLRLoss`.
"""

from __future__ import annotations

from typing import Any

import array_api_compat.torch as xp
import numpy as np
import torch
import torch.distributed as dist

from glf_losses._lib import l2_normalize, python_loop
from glf_losses.adc import ADC
from glf_losses.distributed import active
from glf_losses.frontends import (
    ADCFrontEnd,
    BarlowTwinsFrontEnd,
    BYOLFrontEnd,
    LossFrontEnd,
    SimCLRFrontEnd,
    SwAVFrontEnd,
)

__all__ = [
    "ADCLoss",
    "BYOLLoss",
    "BarlowTwinsLoss",
    "SimCLRLoss",
    "SwAVLoss",
    "all_gather",
    "all_reduce_max",
    "all_reduce_sum",
    "device",
    "fori_loop",
    "log_softmax",
    "logsumexp",
    "name",
    "select_kth",
    "shard",
    "stop_gradient",
    "to_local",
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


def log_softmax(x: Any, axis: int) -> Any:
    # One fused kernel forward and one backward, where x - logsumexp(x) allocates and
    # traverses several (rows, columns) temporaries in eager mode.
    return torch.log_softmax(x, dim=axis)


def select_kth(x: Any, ks: tuple[int, ...]) -> Any:
    """Order statistics by ``torch.kthvalue`` (selection) on CPU, a sort on accelerators.

    ``kthvalue`` has no CUDA kernel faster than sorting for the sizes used here.
    """
    if x.device.type == "cpu":
        return torch.stack([torch.kthvalue(x, k + 1).values for k in ks])
    ordered = torch.sort(x).values
    return ordered[list(ks)]


# --- data-parallel collectives (see glf_losses.distributed) -----------------------------


def _group() -> Any:
    ctx = active()
    if ctx is None or not dist.is_available() or not dist.is_initialized():
        return None
    return ctx.group if ctx.group is not None else dist.group.WORLD


def shard(like: Any) -> tuple[int, int]:
    """``(world_size, rank)`` inside ``glf_losses.data_parallel()``, else ``(1, 0)``."""
    group = _group()
    if group is None:
        return 1, 0
    return dist.get_world_size(group), dist.get_rank(group)


class _AllGather(torch.autograd.Function):
    """Concatenate the shards; backward keeps the worker's own rows of the cotangent.

    The gathered array is the same on every worker, so each worker's cotangent of it is
    already the full one; where a worker uses it in its own rows' terms, :func:`to_local`
    sums those contributions first.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, group: Any) -> torch.Tensor:
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size(group))]
        dist.all_gather(parts, x.contiguous(), group=group)
        ctx.rank, ctx.rows = dist.get_rank(group), x.shape[0]
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad[ctx.rank * ctx.rows : (ctx.rank + 1) * ctx.rows], None


class _AllReduceSum(torch.autograd.Function):
    """Sum over workers; backward is the identity: the sum is the same on every worker,
    so each worker's cotangent of it is already the full one."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, group: Any) -> torch.Tensor:
        out = x.clone()
        dist.all_reduce(out, group=group)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad, None


class _ToLocal(torch.autograd.Function):
    """A value that is the same on every worker, entering one worker's own terms.

    Forward is the identity; backward sums the cotangents of all workers, each of which
    holds only its own terms' share.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, group: Any) -> torch.Tensor:
        ctx.group = group
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, group=ctx.group)
        return grad, None


def all_gather(x: Any) -> Any:
    group = _group()
    return x if group is None else _AllGather.apply(x, group)


def all_reduce_sum(x: Any) -> Any:
    group = _group()
    return x if group is None else _AllReduceSum.apply(x, group)


def to_local(x: Any) -> Any:
    group = _group()
    return x if group is None else _ToLocal.apply(x, group)


def all_reduce_max(x: Any) -> Any:
    """Maximum over workers, without gradient."""
    group = _group()
    if group is None:
        return x
    out = x.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.MAX, group=group)
    return out


def to_numpy(x: Any) -> np.ndarray:
    x = x.detach().cpu()
    if x.dtype == torch.bfloat16:
        x = x.float()
    return x.numpy()


# --- nn.Module front-ends ---------------------------------------------------------------


class _Loss(LossFrontEnd, torch.nn.Module):
    """``forward`` is the 0-d loss ``align + constrain``; ``parts`` gives both parts."""

    def forward(self, *args: Any, prior: Any = None) -> torch.Tensor:
        total: torch.Tensor = self.parts(*args, prior=prior).total
        return total


class BYOLLoss(BYOLFrontEnd, _Loss):
    """``BYOLLoss()(p_a, p_b, z_a, z_b)``: :func:`glf_losses.byol_loss` as a module.

    ADC, if set, acts on the online predictions ``(p_a, p_b)``.

    Example:
      >>> import torch
      >>> from glf_losses.backends.torch import BYOLLoss
      >>> p = torch.randn(8, 16, requires_grad=True)
      >>> BYOLLoss()(p, p, p.detach(), p.detach()).backward()
    """

    def __init__(self, adc: ADC | None = None) -> None:
        torch.nn.Module.__init__(self)
        self.adc = adc


class BarlowTwinsLoss(BarlowTwinsFrontEnd, _Loss):
    """``BarlowTwinsLoss(lambd, eps, scale)(z_a, z_b)``: :func:`glf_losses.barlow_twins_loss`.

    Example:
      >>> import torch
      >>> from glf_losses import ADC
      >>> from glf_losses.backends.torch import BarlowTwinsLoss
      >>> loss_fn = BarlowTwinsLoss(adc=ADC(perplexity=5.0))
      >>> z_a, z_b = torch.randn(16, 8, requires_grad=True), torch.randn(16, 8)
      >>> pixels = torch.randint(0, 256, (16, 1, 8, 8))
      >>> loss_fn(z_a, z_b, prior=pixels).backward()
    """

    def __init__(
        self,
        lambd: float = 0.0051,
        eps: float = 1e-5,
        scale: float = 1.0,
        adc: ADC | None = None,
    ) -> None:
        torch.nn.Module.__init__(self)
        self.lambd, self.eps, self.scale, self.adc = lambd, eps, scale, adc


class SimCLRLoss(SimCLRFrontEnd, _Loss):
    """``SimCLRLoss(temperature)(z_a, z_b)``: :func:`glf_losses.simclr_loss`."""

    def __init__(self, temperature: float = 0.2, adc: ADC | None = None) -> None:
        torch.nn.Module.__init__(self)
        self.temperature, self.adc = temperature, adc


class SwAVLoss(SwAVFrontEnd, _Loss):
    """SwAV with its prototypes: ``SwAVLoss(dim, n_prototypes)(z_a, z_b)``.

    Owns a (K, D) prototype matrix; ``forward`` L2-normalises the projections and the
    prototype rows, scores ``n(z) n(W)^T`` and calls :func:`glf_losses.swav_loss`. Call
    :meth:`normalize_prototypes` after each optimiser step, as SwAV does, to keep the
    stored rows on the sphere. ADC, if set, acts on the projections.
    """

    def __init__(
        self,
        dim: int,
        n_prototypes: int,
        temperature: float = 0.1,
        epsilon: float = 0.05,
        sinkhorn_iters: int = 3,
        adc: ADC | None = None,
    ) -> None:
        torch.nn.Module.__init__(self)
        self.prototypes = torch.nn.Parameter(torch.randn(n_prototypes, dim))
        self.normalize_prototypes()
        self.temperature, self.epsilon, self.sinkhorn_iters = temperature, epsilon, sinkhorn_iters
        self.adc = adc

    def prototype_matrix(self) -> torch.Tensor:
        return self.prototypes

    @torch.no_grad()
    def normalize_prototypes(self) -> None:
        self.prototypes.copy_(l2_normalize(xp, self.prototypes))


class ADCLoss(ADCFrontEnd, torch.nn.Module):
    """ADC alone as a module: ``ADCLoss(ADC(...))(z_a, z_b, prior)``."""

    def __init__(self, adc: ADC | None = None) -> None:
        torch.nn.Module.__init__(self)
        self.adc = adc if adc is not None else ADC()

    def forward(self, z_a: Any, z_b: Any, prior: Any) -> torch.Tensor:
        return self.adc(z_a, z_b, prior)


# A fixed-count loop is unrolled: eagerly it is a Python loop, and torch.compile traces
# through it.
fori_loop = python_loop
