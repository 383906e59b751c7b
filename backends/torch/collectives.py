"""PyTorch's data-parallel collectives (see [`glf_losses.distributed`][glf_losses.distributed]).

Process groups of ``torch.distributed``; identities outside ``glf_losses.data_parallel()``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

from glf_losses.distributed import active

__all__ = ["all_gather", "all_reduce_max", "all_reduce_sum", "shard", "to_local"]


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
    already the full one; where a worker uses it in its own rows' terms, `to_local`
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
