"""Data-parallel semantics: every loss over the *global* batch, exact shard gradients.

Under data parallelism each worker holds a shard of the batch. Batch statistics (Barlow
Twins' mean, variance and cross-correlation, SwAV's Sinkhorn sums, SimCLR's negatives,
ADC's neighbour sets and bandwidths) must be taken over the global batch, or the method
silently changes. Inside [`data_parallel`][glf_losses.distributed.data_parallel], every loss of
[`glf_losses`][glf_losses]

- returns, on every worker, the loss of the whole global batch, and
- has, with respect to each worker's shard, exactly the gradient of that global loss
  with respect to the shard.

So parameter gradients must be **summed** over workers, not averaged: JAX users ``psum``
them; TensorFlow's ``MirroredStrategy`` sums replica gradients already; PyTorch's
``DistributedDataParallel`` averages, so multiply the loss by the world size before
``backward()`` (the reference trainer does).

How each framework is told:

- PyTorch: ``with glf_losses.data_parallel():`` (default process group) or
  ``data_parallel(group=...)``, in every process; all shards must have the same size.
- JAX: ``with glf_losses.data_parallel(axis_name="batch"):`` around the code traced
  inside ``shard_map`` (or ``pmap``) over that axis. Under plain ``jax.jit`` over sharded
  global arrays nothing is needed: the arrays are global and XLA partitions the work.
- TensorFlow: automatic inside a ``tf.distribute`` replica context with more than one
  replica (``strategy.run``).

Outside these contexts the collectives are identities and nothing is communicated.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

__all__ = ["DataParallel", "active", "data_parallel"]


@dataclass(frozen=True)
class DataParallel:
    """The data-parallel context: a JAX axis name or a PyTorch process group."""

    axis_name: Any = None
    group: Any = None


# A plain list, not a ContextVar: torch.compile traces a read of a module-level list but
# not ContextVar.get, and the losses read this inside compiled code.
_STACK: list[DataParallel] = []


def active() -> DataParallel | None:
    """The innermost [`data_parallel`][glf_losses.distributed.data_parallel] context, or
    ``None``."""
    return _STACK[-1] if _STACK else None


@contextlib.contextmanager
def data_parallel(axis_name: Any = None, *, group: Any = None) -> Iterator[DataParallel]:
    """Compute every loss over the global batch of a data-parallel run.

    Args:
      axis_name: JAX only: the mapped axis of ``shard_map``/``pmap`` the batch is
        sharded over.
      group: PyTorch only: the process group (default: the default group).

    Examples:
      In one process the collectives are identities, so the loss is unchanged:

      >>> import numpy as np
      >>> import glf_losses
      >>> z = np.eye(4)
      >>> with glf_losses.data_parallel():
      ...     inside = glf_losses.simclr_loss(z, z)
      >>> bool(inside == glf_losses.simclr_loss(z, z))
      True

      Under JAX's ``shard_map`` over an axis ``"batch"``, name the axis:

      ```python
      def step(z_a, z_b):  # traced inside shard_map over axis "batch"
          with glf_losses.data_parallel(axis_name="batch"):
              return glf_losses.barlow_twins_loss(z_a, z_b)
      ```
    """
    context = DataParallel(axis_name=axis_name, group=group)
    _STACK.append(context)
    try:
        yield context
    finally:
        _STACK.pop()
