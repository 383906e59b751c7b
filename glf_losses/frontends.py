"""What every framework's loss objects share, written once.

``glf_losses.backends.torch`` builds ``torch.nn.Module`` losses and
``glf_losses.backends.tensorflow`` builds Keras layers by mixing these classes into the
framework's base class; the framework class only stores the hyperparameters (and, for
SwAV, the prototypes) the framework's way. Nothing here imports a framework.
"""

from __future__ import annotations

from typing import Any

from glf_losses import methods
from glf_losses._lib import GLFParts
from glf_losses.adc import ADC, ADCParts

__all__ = [
    "ADCFrontEnd",
    "BYOLFrontEnd",
    "BarlowTwinsFrontEnd",
    "LossFrontEnd",
    "SimCLRFrontEnd",
    "SwAVFrontEnd",
]


class LossFrontEnd:
    """A method's loss with an optional ADC term added to its constraining part.

    With ``adc=ADC(...)`` the ADC term (on the pair :meth:`adc_inputs` picks) joins the
    constraining part, and ``prior`` (raw inputs or frozen features) must be passed.
    """

    adc: ADC | None

    def method_parts(self, *args: Any) -> GLFParts:
        """The method's own ``GLFParts``, without ADC."""
        raise NotImplementedError

    def adc_inputs(self, *args: Any) -> tuple[Any, Any]:
        """The two views' features ADC acts on: the first two arguments by default."""
        return args[0], args[1]

    def parts(self, *args: Any, prior: Any = None) -> GLFParts:
        """The loss as ``GLFParts(align, constrain)``."""
        return methods.with_adc(
            self.method_parts(*args), self.adc, *self.adc_inputs(*args), prior
        )


class BYOLFrontEnd(LossFrontEnd):
    """BYOL from ``(p_a, p_b, z_a, z_b)``; ADC acts on the online predictions, the only
    BYOL outputs that carry gradient."""

    def method_parts(self, p_a: Any, p_b: Any, z_a: Any, z_b: Any) -> GLFParts:
        return methods.byol_parts(p_a, p_b, z_a, z_b)


class BarlowTwinsFrontEnd(LossFrontEnd):
    """Barlow Twins from ``(z_a, z_b)`` with ``lambd``, ``eps`` and ``scale``."""

    lambd: float
    eps: float
    scale: float

    def method_parts(self, z_a: Any, z_b: Any) -> GLFParts:
        return methods.barlow_twins_parts(z_a, z_b, self.lambd, self.eps, self.scale)


class SimCLRFrontEnd(LossFrontEnd):
    """SimCLR from ``(z_a, z_b)`` with ``temperature``."""

    temperature: float

    def method_parts(self, z_a: Any, z_b: Any) -> GLFParts:
        return methods.simclr_parts(z_a, z_b, self.temperature)


class SwAVFrontEnd(LossFrontEnd):
    """SwAV from the projections ``(z_a, z_b)`` and the object's own prototypes."""

    temperature: float
    epsilon: float
    sinkhorn_iters: int

    def prototype_matrix(self) -> Any:
        """The (K, D) prototypes as an array of the framework."""
        raise NotImplementedError

    def scores(self, z: Any, name: str = "z") -> Any:
        """``n(z) n(W)^T``: (N, K) scores of the projections against the prototypes.

        In the common compute dtype of ``z`` and the prototypes (float32 at least);
        errors name ``name``.
        """
        return methods._prototype_scores(z, self.prototype_matrix(), name)

    def method_parts(
        self, z_a: Any, z_b: Any, queue_a: Any = None, queue_b: Any = None
    ) -> GLFParts:
        """``queue_a``/``queue_b``: optional earlier projections (Q, D) for Sinkhorn."""

        def scores(q: Any, name: str) -> Any:
            return None if q is None else self.scores(q, name)

        return methods.swav_parts(
            self.scores(z_a, "z_a"), self.scores(z_b, "z_b"), self.temperature, self.epsilon,
            self.sinkhorn_iters, scores(queue_a, "queue_a"), scores(queue_b, "queue_b"),
        )


class ADCFrontEnd:
    """ADC alone: ``(z_a, z_b, prior)`` to ``nu * L_DCM + upsilon * L_LPM``."""

    adc: ADC

    def parts(self, z_a: Any, z_b: Any, prior: Any) -> ADCParts:
        """``ADCParts(dcm=nu * L_DCM, lpm=upsilon * L_LPM)``."""
        return self.adc.parts(z_a, z_b, prior)
