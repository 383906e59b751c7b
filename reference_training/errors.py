"""Errors a training run reports to its user (the CLI prints them without a traceback)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read back (truncated, corrupt, or of another model)."""


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@contextlib.contextmanager
def checkpoint_problem(path: Path, problem: str) -> Iterator[None]:
    """Turn any failure inside into a :class:`CheckpointError` naming ``path`` and
    ``problem`` ("the checkpoint is unreadable", "it does not fit this model")."""
    try:
        yield
    except CheckpointError:
        raise
    except Exception as err:  # any failure here means the file is unusable
        raise CheckpointError(
            f"cannot resume from {path}: {problem} ({type(err).__name__}: {err}). "
            "Delete it to start over."
        ) from None
