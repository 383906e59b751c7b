"""Errors a training run reports to its user (the CLI prints them without a traceback)."""


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read back (truncated, corrupt, or of another model)."""


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""
