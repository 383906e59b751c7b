"""Cases and workers for the data-parallel tests (run as a script in fresh processes).

A worker computes each case's loss and its gradient with respect to the worker's shard
inside the engine's data-parallel context, and writes them to an .npz file; the test
compares them with one process computing the same loss on the whole batch. Usage::

    python tests/distributed_cases.py ENGINE OUT

runs every case for each of :data:`RUNS` in one process per engine (framework start-up
dominates the cost) and writes ``OUT.w{world}[.wrong].rank{r}.npz``. A "wrong" run
replaces the collectives with identities (per-worker batch statistics), the classic
data-parallel bug, so that a test can show the comparison catches it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

N_GLOBAL, DIM, PROTOTYPES = 8, 5, 6
# (world size, wrong reduction) of every run
RUNS = ((2, False), (4, False), (2, True))
MAX_WORLD = 4


def result_path(out: str, world: int, wrong: bool, rank: int) -> str:
    return f"{out}.w{world}{'.wrong' if wrong else ''}.rank{rank}.npz"


def batch() -> dict[str, np.ndarray]:
    """The global batch, float64, with a uint8 image prior."""
    rng = np.random.default_rng(0)
    base = rng.normal(size=(N_GLOBAL, DIM))
    scores = np.tanh(rng.normal(size=(2, N_GLOBAL, PROTOTYPES)))
    out = {
        "z_a": base + 0.3 * rng.normal(size=base.shape),
        "z_b": base + 0.3 * rng.normal(size=base.shape),
        "p_a": rng.normal(size=base.shape),
        "p_b": rng.normal(size=base.shape),
        "s_a": scores[0],
        "s_b": scores[1],
        "prior": rng.integers(0, 256, size=(N_GLOBAL, 1, 3, 3)).astype(np.uint8),
    }
    # Two-column views, so that W-MSE's sub-batches of 4 rows (a worker's shard at world
    # size 2, straddling workers at 4) have full-rank covariances.
    base2 = rng.normal(size=(N_GLOBAL, 2))
    out["w_a"] = base2 + 0.3 * rng.normal(size=base2.shape)
    out["w_b"] = base2 + 0.3 * rng.normal(size=base2.shape)
    # Multi-crop inputs, rows first so that workers shard them like the rest: DINO's
    # student (4 crops) and teacher (the first 2), SwAV's local crops (3).
    crops = np.random.default_rng(2)
    logits = crops.normal(size=(N_GLOBAL, 1, PROTOTYPES))
    out["dino_student"] = logits + 0.7 * crops.normal(size=(N_GLOBAL, 4, PROTOTYPES))
    out["dino_teacher"] = logits + 0.7 * crops.normal(size=(N_GLOBAL, 2, PROTOTYPES))
    out["s_local"] = np.tanh(crops.normal(size=(N_GLOBAL, 3, PROTOTYPES)))
    return out


# MoCo's queue: state every worker holds the same copy of, not a batch to shard.
QUEUE = np.random.default_rng(1).normal(size=(12, DIM))
QUEUE /= np.linalg.norm(QUEUE, axis=1, keepdims=True)
# TiCo's running covariance, likewise replicated.
COVARIANCE = QUEUE.T @ QUEUE / len(QUEUE)


# DINO's running centre, replicated state.
CENTER = 0.3 * np.random.default_rng(3).normal(size=PROTOTYPES)


def _crops_first(x: Any) -> Any:
    """(N, V, K) rows-first crops as the (V, N, K) stack the multi-crop losses take."""
    import glf_losses

    return glf_losses.get_namespace(x).stack([x[:, v, ...] for v in range(x.shape[1])])


def _replicated(like: Any, value: np.ndarray) -> Any:
    """``value`` as a constant of ``like``'s framework (the same on every worker)."""
    import glf_losses

    return glf_losses.get_namespace(like).asarray(value, dtype=like.dtype)


def cases() -> dict[str, tuple[Callable[[dict[str, Any]], Any], tuple[str, ...]]]:
    """name -> (loss of the named inputs, the inputs it is differentiated against)."""
    import glf_losses

    views = ("z_a", "z_b")
    return {
        "barlow_twins": (lambda a: glf_losses.barlow_twins_loss(a["z_a"], a["z_b"]), views),
        "simclr": (lambda a: glf_losses.simclr_loss(a["z_a"], a["z_b"]), views),
        "byol": (
            lambda a: glf_losses.byol_loss(a["p_a"], a["p_b"], a["z_a"], a["z_b"]),
            ("p_a", "p_b"),
        ),
        "swav": (lambda a: glf_losses.swav_loss(a["s_a"], a["s_b"]), ("s_a", "s_b")),
        "adc_perplexity": (
            lambda a: glf_losses.adc_loss(
                a["z_a"], a["z_b"], a["prior"], perplexity=5.0, perplexity_steps=10
            ),
            views,
        ),
        "adc_median": (
            lambda a: glf_losses.adc_loss(
                a["z_a"], a["z_b"], a["prior"], bandwidth="median", prior_bandwidth="median"
            ),
            views,
        ),
        "adc_fixed": (
            lambda a: glf_losses.adc_loss(
                a["z_a"], a["z_b"], a["prior"], bandwidth=0.5, prior_bandwidth=3000.0
            ),
            views,
        ),
        "simsiam": (
            lambda a: glf_losses.simsiam_loss(a["p_a"], a["p_b"], a["z_a"], a["z_b"]),
            ("p_a", "p_b"),
        ),
        "vicreg": (lambda a: glf_losses.vicreg_loss(a["z_a"], a["z_b"]), views),
        # One sub-batch, the whole global batch: its whitening is global.
        "wmse": (
            lambda a: glf_losses.wmse_loss(a["w_a"], a["w_b"], w_size=None),
            ("w_a", "w_b"),
        ),
        "wmse_sub_batches": (
            lambda a: glf_losses.wmse_loss(a["w_a"], a["w_b"], w_size=4),
            ("w_a", "w_b"),
        ),
        "moco": (
            lambda a: glf_losses.moco_loss(a["p_a"], a["z_a"], _replicated(a["p_a"], QUEUE)),
            ("p_a",),
        ),
        # The keys of every worker enter the queue, so the next step sees them all.
        "moco_enqueued": (
            lambda a: glf_losses.moco_loss(
                a["p_a"],
                a["z_a"],
                glf_losses.moco_enqueue(_replicated(a["p_a"], QUEUE), a["z_b"]),
                temperature=0.5,
            ),
            ("p_a",),
        ),
        "moco_in_batch": (lambda a: glf_losses.moco_loss(a["p_a"], a["z_a"]), ("p_a",)),
        "dcl": (lambda a: glf_losses.dcl_loss(a["z_a"], a["z_b"], temperature=0.5), views),
        "dclw": (lambda a: glf_losses.dclw_loss(a["z_a"], a["z_b"], temperature=0.5), views),
        "alignment_uniformity": (
            lambda a: glf_losses.alignment_uniformity_loss(a["z_a"], a["z_b"], alpha=1.5),
            views,
        ),
        # Neighbours are searched in the global batch, and gradients reach them there.
        "koleo": (lambda a: glf_losses.constrain.koleo(a["z_a"]), ("z_a",)),
        "tico": (
            lambda a: glf_losses.tico_loss(
                a["z_a"], a["z_b"], _replicated(a["z_a"], COVARIANCE), rho=8.0
            ),
            views,
        ),
        # The new state is over the global batch, so the next step sees every worker's.
        "tico_state": (
            lambda a: glf_losses.tico_loss(
                a["p_a"],
                a["p_b"],
                glf_losses.tico_covariance(a["z_a"], _replicated(a["z_a"], COVARIANCE)),
                beta=1.0,
            ),
            ("p_a", "p_b"),
        ),
        # Whole samples (2 consecutive views) per worker; the centroids' nuclear norm is
        # over the global batch.
        "mmcr": (lambda a: glf_losses.mmcr_loss(a["z_a"], n_views=2, lmbda=0.5), ("z_a",)),
        # The support set is replicated state; negatives are the global predictions.
        "nnclr": (
            lambda a: glf_losses.nnclr_loss(
                a["p_a"], a["p_b"], a["z_a"], a["z_b"], _replicated(a["p_a"], QUEUE)
            ),
            ("p_a", "p_b"),
        ),
        "mocov3": (
            lambda a: glf_losses.mocov3_loss(
                a["p_a"], a["p_b"], a["z_a"], a["z_b"], temperature=0.5
            ),
            ("p_a", "p_b"),
        ),
        # Crops along axis 0, rows along axis 1: the batch mean is over the global rows.
        "dino": (
            lambda a: glf_losses.dino_loss(
                _crops_first(a["dino_student"]),
                _crops_first(a["dino_teacher"]),
                _replicated(a["dino_student"], CENTER),
                teacher_temperature=0.07,
            ),
            ("dino_student",),
        ),
        # The new centre is the mean of every worker's teacher outputs.
        "dino_center": (
            lambda a: glf_losses.dino_loss(
                _crops_first(a["dino_student"]),
                _crops_first(a["dino_teacher"]),
                glf_losses.dino_center(
                    _crops_first(a["dino_teacher"]),
                    _replicated(a["dino_student"], CENTER),
                    momentum=0.5,
                ),
            ),
            ("dino_student",),
        ),
        # Codes from the global crops (Sinkhorn over the global batch), predicted by
        # every other crop.
        "swav_multicrop": (
            lambda a: glf_losses.swav_loss(
                a["s_a"], a["s_b"], local_scores=_crops_first(a["s_local"])
            ),
            ("s_a", "s_b", "s_local"),
        ),
    }


def shard(array: np.ndarray, rank: int, world: int) -> np.ndarray:
    n = array.shape[0] // world
    return array[rank * n : (rank + 1) * n]


def _break_collectives(backend: Any) -> Any:
    """Make ``backend`` compute per-worker statistics; returns a function undoing it."""
    names = ("shard", "all_gather", "all_reduce_sum", "all_reduce_max", "to_local")
    saved = {n: getattr(backend, n) for n in names}
    backend.shard = lambda like: (1, 0)
    for n in names[1:]:
        setattr(backend, n, lambda x: x)
    return lambda: [setattr(backend, n, f) for n, f in saved.items()]


# --- engines ------------------------------------------------------------------------------


def _torch_worker(rank: int, world: int, out: str, port: int, wrong: bool) -> None:
    import torch
    import torch.distributed as dist
    from glf_losses.backends import torch as backend

    import glf_losses

    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    if wrong:
        _break_collectives(backend)
    results: dict[str, np.ndarray] = {}
    data = batch()
    for name, (fn, wrt) in cases().items():
        inputs = {k: torch.tensor(shard(v, rank, world)) for k, v in data.items()}
        for k in wrt:
            inputs[k].requires_grad_(True)
        with glf_losses.data_parallel():
            loss = fn(inputs)
        loss.backward()
        results[f"{name}/loss"] = loss.detach().numpy()
        for k in wrt:
            results[f"{name}/grad/{k}"] = inputs[k].grad.numpy()
    np.savez(result_path(out, world, wrong, rank), **results)
    dist.destroy_process_group()


def run_torch(out: str) -> None:
    import socket

    import torch.multiprocessing as mp

    for world, wrong in RUNS:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        mp.spawn(_torch_worker, args=(world, out, port, wrong), nprocs=world, join=True)


def run_jax(out: str) -> None:
    import jax

    jax.config.update("jax_enable_x64", True)
    from glf_losses.backends import jax as backend
    from jax.sharding import Mesh
    from jax.sharding import PartitionSpec as P

    import glf_losses

    data = batch()
    for world, wrong in RUNS:
        restore = _break_collectives(backend) if wrong else None
        mesh = Mesh(np.array(jax.devices()[:world]), ("batch",))
        results: list[dict[str, np.ndarray]] = [{} for _ in range(world)]
        for name, (fn, wrt) in cases().items():
            rest = {k: v for k, v in data.items() if k not in wrt}

            def per_device(diff: dict[str, Any], rest: dict[str, Any], fn: Any = fn) -> Any:
                def loss(diff: dict[str, Any]) -> Any:
                    with glf_losses.data_parallel(axis_name="batch"):
                        return fn({**diff, **rest})

                value, grads = jax.value_and_grad(loss)(diff)
                # One value per device, so that a wrong run's disagreeing values show.
                return value[None], grads

            mapped = jax.jit(
                jax.shard_map(
                    per_device,
                    mesh=mesh,
                    in_specs=(P("batch"), P("batch")),
                    out_specs=(P("batch"), P("batch")),
                )
            )
            values, grads = mapped({k: data[k] for k in wrt}, rest)
            for rank in range(world):
                results[rank][f"{name}/loss"] = np.asarray(values)[rank]
                for k in wrt:
                    results[rank][f"{name}/grad/{k}"] = shard(np.asarray(grads[k]), rank, world)
        for rank in range(world):
            np.savez(result_path(out, world, wrong, rank), **results[rank])
        if restore is not None:
            restore()


def run_tensorflow(out: str) -> None:
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(MAX_WORLD)]
    )
    from glf_losses.backends import tensorflow as backend

    data = batch()
    for world, wrong in RUNS:
        restore = _break_collectives(backend) if wrong else None
        devices = [d.name for d in tf.config.list_logical_devices("CPU")[:world]]
        strategy = tf.distribute.MirroredStrategy(
            devices, cross_device_ops=tf.distribute.ReductionToOneDevice()
        )
        results: list[dict[str, np.ndarray]] = [{} for _ in range(world)]
        for name, (fn, wrt) in cases().items():

            def shards(ctx: Any, world: int = world) -> dict[str, Any]:
                return {
                    k: tf.constant(shard(v, ctx.replica_id_in_sync_group, world))
                    for k, v in data.items()
                }

            inputs = strategy.experimental_distribute_values_from_function(shards)

            def step(inputs: dict[str, Any], fn: Any = fn, wrt: tuple[str, ...] = wrt) -> Any:
                with tf.GradientTape() as tape:
                    tape.watch([inputs[k] for k in wrt])
                    loss = fn(inputs)
                return loss, tape.gradient(loss, [inputs[k] for k in wrt])

            # Eager replicas: tracing every case for every replica count costs more here
            # than it saves.
            losses, grads = strategy.run(step, args=(inputs,))
            for rank, value in enumerate(strategy.experimental_local_results(losses)):
                results[rank][f"{name}/loss"] = value.numpy()
            for k, per_replica in zip(wrt, grads, strict=True):
                for rank, g in enumerate(strategy.experimental_local_results(per_replica)):
                    results[rank][f"{name}/grad/{k}"] = g.numpy()
        for rank in range(world):
            np.savez(result_path(out, world, wrong, rank), **results[rank])
        if restore is not None:
            restore()


def main() -> None:
    engine, out = sys.argv[1], sys.argv[2]
    if engine == "jax":
        os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={MAX_WORLD}"
    {"torch": run_torch, "jax": run_jax, "tensorflow": run_tensorflow}[engine](out)


if __name__ == "__main__":
    main()
