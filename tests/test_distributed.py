"""Data parallelism on the real engines: torch.distributed (gloo), JAX shard_map over
host devices, tf.distribute MirroredStrategy over logical CPUs.

For every method and ADC, the loss each worker computes on its shard inside the data-
parallel context equals the one-process loss on the whole batch, and each worker's
gradient equals the one-process gradient restricted to its shard. Workers run in fresh
processes (device counts are fixed when a framework starts); see
``tests/distributed_cases.py``.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import distributed_cases

ENGINES = [e for e in ("torch", "jax", "tensorflow") if importlib.util.find_spec(e)]
WORKER = str(Path(__file__).with_name("distributed_cases.py"))


@pytest.fixture(scope="module")
def whole_batch() -> dict[str, np.ndarray]:
    """Loss and gradients of every case on the whole batch, in one process (float64)."""
    torch = pytest.importorskip("torch")
    data = distributed_cases.batch()
    out: dict[str, np.ndarray] = {}
    for name, (fn, wrt) in distributed_cases.cases().items():
        inputs = {k: torch.tensor(v) for k, v in data.items()}
        for k in wrt:
            inputs[k].requires_grad_(True)
        loss = fn(inputs)
        loss.backward()
        out[f"{name}/loss"] = loss.detach().numpy()
        for k in wrt:
            out[f"{name}/grad/{k}"] = inputs[k].grad.numpy()
    return out


@functools.cache
def engine_results(engine: str) -> str:
    """Run one engine's workers for every run of ``RUNS``; returns the results' prefix."""
    prefix = str(Path(tempfile.mkdtemp(prefix=f"glf-{engine}-")) / engine)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run(
        [sys.executable, WORKER, engine, prefix],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return prefix


def load(engine: str, world: int, wrong: bool) -> list[dict]:
    prefix = engine_results(engine)
    return [
        dict(np.load(distributed_cases.result_path(prefix, world, wrong, rank)))
        for rank in range(world)
    ]


def mismatches(ranks: list[dict], whole: dict, world: int) -> list[str]:
    """Every (case, quantity) where some worker disagrees with the whole-batch result."""
    bad = []
    for key, expected in whole.items():
        for rank, got in enumerate(ranks):
            if "/grad/" in key:
                expected_here = distributed_cases.shard(expected, rank, world)
                scale = np.max(np.abs(expected)) + 1e-300
            else:
                expected_here, scale = expected, abs(float(expected)) + 1e-300
            err = np.max(np.abs(got[key] - expected_here)) / scale
            if not err <= 1e-9:
                bad.append(f"{key} (rank {rank}: relative error {err:.2e})")
    return bad


@pytest.mark.parametrize("engine", ENGINES)
def test_sharded_losses_and_gradients_equal_the_whole_batch(engine: str, whole_batch: dict) -> None:
    # One test per engine: its workers start once (framework start-up dominates) and
    # cover every world size.
    for world in (2, 4):
        assert mismatches(load(engine, world, False), whole_batch, world) == [], world
    # With the collectives replaced by identities each worker computes its shard's own
    # batch statistics: every case must then disagree with the whole batch.
    caught = {m.split("/")[0] for m in mismatches(load(engine, 2, True), whole_batch, 2)}
    assert caught == set(distributed_cases.cases())
