"""What the host decides for each step, computed once for every backend's trainer.

The shared loop calls :func:`step_inputs` before every step and hands the result to the
backend's ``train_step``: the learning rate, the momentum target's EMA rate, whether the
arrays the method owns may move, and whether SwAV's queue is full enough to use. All are
functions of the configuration and the global step alone, so a resumed run recomputes
them exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from glf_train.config import RunConfig

from glf_losses import registry

__all__ = ["StepInputs", "ema_rate", "learning_rate", "step_inputs"]


@dataclass(frozen=True)
class StepInputs:
    """The host-side inputs of one optimiser step.

    Attributes:
      epoch: 0-based epoch.
      step: 0-based global step (over all epochs).
      lr: the learning rate of this step.
      ema_rate: the momentum target's EMA rate (1.0 when the method has no target).
      parameters_active: whether the arrays the method owns (SwAV's prototypes) move.
      use_queue: whether the method's queue is full and enters the loss.
    """

    epoch: int
    step: int
    lr: float
    ema_rate: float
    parameters_active: bool
    use_queue: bool


def learning_rate(config: RunConfig, step: int, total_steps: int) -> float:
    """Linear warm-up over ``warmup_epochs``, then cosine decay to 0."""
    warmup = min(total_steps, config.warmup_epochs * max(1, total_steps // config.epochs))
    if step < warmup:
        return config.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total_steps - warmup)
    return config.lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def ema_rate(config: RunConfig, step: int, total_steps: int) -> float:
    """BYOL's EMA rate ``1 - (1 - tau_base) (cos(pi k / K) + 1) / 2``, rising to 1."""
    return 1.0 - (1.0 - config.byol_tau_base) * (math.cos(math.pi * step / total_steps) + 1) / 2


def step_inputs(config: RunConfig, epoch: int, step: int, total_steps: int) -> StepInputs:
    """Every host-side input of global step ``step`` (in ``epoch``) of the run."""
    entry = config.method_entry()
    momentum = registry.EMA_RATE in entry.host_inputs
    gated = registry.PARAMETERS_ACTIVE in entry.host_inputs
    return StepInputs(
        epoch=epoch,
        step=step,
        lr=learning_rate(config, step, total_steps),
        ema_rate=ema_rate(config, step, total_steps) if momentum else 1.0,
        parameters_active=not gated or epoch >= config.swav_freeze_prototypes_epochs,
        # Each step puts the global batch's projections in front of the queue, so it is
        # full after ceil(Q / B) steps; it is used from then on.
        use_queue=config.swav_queue > 0 and step * config.batch_size >= config.swav_queue,
    )
