"""TensorFlow's data-parallel collectives (see [`glf_losses.distributed`][glf_losses.distributed]).

Automatic inside a ``tf.distribute`` replica context with more than one replica
(``strategy.run``); identities elsewhere. Custom gradients follow the rules of
[`glf_losses.distributed`][glf_losses.distributed]: a value that is the same on every replica (a
sum, a gathered
array) passes its cotangent back unchanged, and ``to_local`` sums cotangents where such a
value enters one replica's own terms.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

__all__ = ["all_gather", "all_reduce_max", "all_reduce_sum", "shard", "to_local"]


def _replica() -> Any:
    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync == 1:
        return None
    return ctx


def shard(like: Any) -> tuple[int, Any]:
    """``(replicas, replica id)`` inside a multi-replica ``strategy.run``, else ``(1, 0)``."""
    ctx = _replica()
    if ctx is None:
        return 1, 0
    return ctx.num_replicas_in_sync, ctx.replica_id_in_sync_group


def all_gather(x: Any) -> Any:
    """Concatenate the replicas' shards; backward keeps the replica's own rows."""
    ctx = _replica()
    if ctx is None:
        return x

    @tf.custom_gradient
    def gather(v: Any) -> Any:
        def grad(upstream: Any) -> Any:
            rows = tf.shape(v)[0]
            # Dense: rows read by a gather (KoLeo's neighbours) arrive as IndexedSlices.
            upstream = tf.convert_to_tensor(upstream)
            return upstream[ctx.replica_id_in_sync_group * rows :][:rows]

        return ctx.all_gather(v, axis=0), grad

    return gather(x)


def all_reduce_sum(x: Any) -> Any:
    """Sum over replicas; backward is the identity (the sum is the same everywhere)."""
    ctx = _replica()
    if ctx is None:
        return x

    @tf.custom_gradient
    def reduce(v: Any) -> Any:
        return ctx.all_reduce(tf.distribute.ReduceOp.SUM, v), lambda upstream: upstream

    return reduce(x)


def to_local(x: Any) -> Any:
    """A replicated value entering one replica's own terms: backward sums over replicas."""
    ctx = _replica()
    if ctx is None:
        return x

    @tf.custom_gradient
    def local(v: Any) -> Any:
        return tf.identity(v), lambda upstream: ctx.all_reduce(
            tf.distribute.ReduceOp.SUM, tf.convert_to_tensor(upstream)
        )

    return local(x)


def all_reduce_max(x: Any) -> Any:
    """Maximum over replicas, without gradient."""
    ctx = _replica()
    if ctx is None:
        return x
    # tf.distribute reduces only by sum and mean: gather the candidates, then take the max.
    return tf.reduce_max(ctx.all_gather(tf.stop_gradient(x)[None], axis=0), axis=0)
