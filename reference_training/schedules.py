"""Schedules shared by every backend's trainer, as functions of the global step."""

from __future__ import annotations

import math

from reference_training.config import RunConfig

__all__ = ["byol_tau", "learning_rate", "projector_layers"]


def learning_rate(config: RunConfig, step: int, total_steps: int) -> float:
    """Linear warm-up over ``warmup_epochs``, then cosine decay to 0."""
    warmup = min(total_steps, config.warmup_epochs * max(1, total_steps // config.epochs))
    if step < warmup:
        return config.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total_steps - warmup)
    return config.lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def byol_tau(config: RunConfig, step: int, total_steps: int) -> float:
    """BYOL's EMA rate ``1 - (1 - tau_base) (cos(pi k / K) + 1) / 2``, rising to 1."""
    return 1.0 - (1.0 - config.byol_tau_base) * (math.cos(math.pi * step / total_steps) + 1) / 2


def projector_layers(method: str) -> int:
    """Barlow Twins uses a 3-layer projector; BYOL, SimCLR and SwAV 2 layers."""
    return 3 if method == "barlow_twins" else 2
