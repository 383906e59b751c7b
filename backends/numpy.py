"""NumPy backend: values only (NumPy has no autodiff), through ``array_api_compat``."""

from __future__ import annotations

import sys
from typing import Any

import array_api_compat.numpy as xp
import numpy as np

from glf_losses._lib import (
    generic_log_softmax,
    generic_logsumexp,
    generic_lower_triangular_inverse,
    generic_rsqrt,
    plain_matmul,
    plain_square,
    python_loop,
    single_process_collective,
    single_process_shard,
    unfused,
)

__all__ = [
    "all_gather",
    "all_reduce_max",
    "all_reduce_sum",
    "batch_standardize",
    "device",
    "fill_per_row",
    "fori_loop",
    "fuse",
    "log_softmax",
    "logsumexp",
    "lower_triangular_inverse",
    "matmul",
    "name",
    "rsqrt",
    "select_kth",
    "shard",
    "square",
    "stop_gradient",
    "to_local",
    "to_numpy",
    "xp",
]

name = "numpy"


# No fused standardisation here: the spec uses its own form.
batch_standardize = None


def device(x: Any) -> Any:
    return "cpu"


def stop_gradient(x: Any) -> Any:
    return x


def logsumexp(x: Any, axis: int, keepdims: bool = False) -> Any:
    return generic_logsumexp(sys.modules[__name__], x, axis, keepdims)


def rsqrt(x: Any) -> Any:
    return generic_rsqrt(xp, x)


def log_softmax(x: Any, axis: int) -> Any:
    return generic_log_softmax(sys.modules[__name__], x, axis)


def fill_per_row(x: Any, columns: Any, value: float) -> Any:
    # In place: the caller owns x (a fresh product) and reads only the result.
    x[np.arange(x.shape[0]), columns] = value
    return x


def lower_triangular_inverse(x: Any) -> Any:
    return generic_lower_triangular_inverse(xp, x)


def select_kth(x: Any, ks: tuple[int, ...]) -> Any:
    """Order statistics of a 1-D array by introselect, O(n) instead of a full sort."""
    return np.partition(x, list(ks))[list(ks)]


def to_numpy(x: Any) -> np.ndarray:
    return np.asarray(x)


# No data-parallel engine: one worker, and collectives are identities.
shard = single_process_shard
all_gather = all_reduce_sum = all_reduce_max = to_local = single_process_collective

fori_loop = python_loop
fuse = unfused
matmul = plain_matmul
square = plain_square
