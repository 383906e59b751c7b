"""A checksum of a checkpoint's contents, stored inside it and verified on load.

A flipped byte in an array does not always make a checkpoint unreadable: the framework
reads back a changed weight, and the run goes on (or diverges later). Each backend
therefore stores :func:`tree_digest` of the tree it saves under :data:`CHECKSUM_KEY`,
and :func:`verify` recomputes it from the tree it loaded. The digest is of the values
(keys, types, dtypes, shapes and bytes), not of the file, so it is the same however a
framework lays the file out.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from glf_train.errors import CheckpointError

__all__ = ["CHECKSUM_KEY", "tree_digest", "verify"]

CHECKSUM_KEY = "sha256"


def _array(value: Any) -> np.ndarray:
    # A torch tensor (duck-typed: no framework import here) on any device, in any dtype
    # NumPy lacks: bfloat16 widens to float32 exactly, which keeps every bit of it.
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        value = value.detach().cpu()
        if str(value.dtype) == "torch.bfloat16":
            value = value.float()
    return np.asarray(value)


def _feed(h: Any, value: Any) -> None:
    if isinstance(value, Mapping):
        h.update(b"{%d" % len(value))
        for key in sorted(value, key=repr):
            _feed(h, key)
            _feed(h, value[key])
        h.update(b"}")
    elif isinstance(value, (list, tuple)):
        h.update(b"[%d" % len(value))
        for item in value:
            _feed(h, item)
        h.update(b"]")
    elif value is None or isinstance(value, (bool, int, float, str, bytes)):
        h.update(repr((type(value).__name__, value)).encode())
    else:
        array = np.ascontiguousarray(_array(value))
        h.update(f"array {array.dtype.str} {array.shape}".encode())
        h.update(array.tobytes())


def tree_digest(tree: Any) -> str:
    """The SHA-256 (hex) of a nested tree of dicts, lists, scalars, strings and arrays
    (NumPy, JAX, TensorFlow or torch), in a canonical order of the dicts' keys."""
    h = hashlib.sha256()
    _feed(h, tree)
    return h.hexdigest()


def verify(tree: Mapping[str, Any], path: Path) -> None:
    """Check ``tree[CHECKSUM_KEY]`` against the digest of the rest of ``tree``.

    Raises :class:`CheckpointError` naming ``path`` when the checksum is missing or does
    not match (a corrupt file).
    """
    stored = tree.get(CHECKSUM_KEY)
    if stored is None:
        raise CheckpointError(
            f"cannot resume from {path}: it carries no checksum (it was written by an "
            "earlier version, or is not a glf-train checkpoint). Start the run again with "
            "--overwrite."
        )
    actual = tree_digest({k: v for k, v in tree.items() if k != CHECKSUM_KEY})
    if str(stored) != actual:
        raise CheckpointError(
            f"cannot resume from {path}: the checkpoint is corrupt (its checksum does not "
            "match its contents: the file was changed or damaged after it was written). "
            "Restore it from a copy, or start the run again with --overwrite."
        )
