"""PyTorch front-ends: every registered method as a ``torch.nn.Module``, and ADC alone.

``BarlowTwinsLoss``, ``BYOLLoss``, ``SimCLRLoss``, ``SwAVLoss`` (and every method added to
[`glf_losses.registry`][glf_losses.registry]) are made from their declarations on first use: import
them
from ``glf_losses.backends.torch``. ``forward`` is the 0-d loss, ``parts`` its
``GLFParts``. Arrays a method owns (SwAV's prototypes) are ``nn.Parameter``\\ s; call
``after_step()`` after each optimiser step to project them back where the method keeps
them (SwAV: onto the unit sphere). States a method carries between steps (MoCo's queue,
TiCo's covariance) are buffers, advanced by every call in training mode (``.train()``,
the default) or by ``update_state(*inputs)``.

Examples:
  >>> import torch
  >>> from glf_losses import ADC
  >>> from glf_losses.backends.torch import BarlowTwinsLoss
  >>> loss_fn = BarlowTwinsLoss(adc=ADC(perplexity=5.0))
  >>> z_a, z_b = torch.randn(16, 8, requires_grad=True), torch.randn(16, 8)
  >>> pixels = torch.randint(0, 256, (16, 1, 8, 8))
  >>> loss_fn(z_a, z_b, prior=pixels).backward()
"""

from __future__ import annotations

from typing import Any

import array_api_compat.torch as xp
import torch

from glf_losses import registry
from glf_losses._lib import l2_normalize
from glf_losses.adc import ADC
from glf_losses.frontends import (
    ADCFrontEnd,
    MethodFrontEnd,
    check_adc,
    front_end_class,
    module_getattr,
)

__all__ = ["ADCLoss", "MethodLoss", "front_end"]


class MethodLoss(MethodFrontEnd, torch.nn.Module):
    """The generic module behind every method's front-end (see
    [`front_end`][backends.torch.frontends.front_end])."""

    def __init__(self, *sizes: int, adc: ADC | None = None, **hyperparameters: Any) -> None:
        torch.nn.Module.__init__(self)
        shapes = self._configure(sizes, adc, hyperparameters)
        for parameter in self.method.parameters:
            value = torch.randn(shapes[parameter.name])
            if parameter.unit_rows:
                value = l2_normalize(xp, value)
            self.register_parameter(parameter.name, torch.nn.Parameter(value))
        for state in self.method.states:
            value = torch.zeros(shapes[state.name])
            if state.init == "unit_rows":
                value = l2_normalize(xp, torch.randn(shapes[state.name]))
            self.register_buffer(state.name, value)

    def owned_arrays(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.method.held}

    @torch.no_grad()
    def _store_states(self, states: dict[str, Any]) -> None:
        for name, value in states.items():
            getattr(self, name).copy_(value)

    def forward(self, *inputs: Any, prior: Any = None, **local: Any) -> torch.Tensor:
        """The 0-d loss; in training mode the method's states then advance. ``local``:
        the local crops (``local_z=``) of a method that takes them."""
        total: torch.Tensor = self.parts(*inputs, prior=prior, **local).total
        if self.training:
            self.update_state(*inputs)
        return total

    @torch.no_grad()
    def after_step(self) -> None:
        """Project owned arrays back where the method keeps them (unit rows for SwAV)."""
        for parameter in self.method.parameters:
            if parameter.unit_rows:
                value = getattr(self, parameter.name)
                value.copy_(l2_normalize(xp, value))


_CLASSES: dict[str, type] = {}


def front_end(method: str | registry.Method) -> type[MethodLoss]:
    """The ``nn.Module`` class of a registered method (``front_end("swav")`` is ``SwAVLoss``)."""
    cls: type[MethodLoss] = front_end_class(
        MethodLoss, method, __name__.rsplit(".", 1)[0], "as a torch.nn.Module", _CLASSES
    )
    return cls


class ADCLoss(ADCFrontEnd, torch.nn.Module):
    """ADC alone as a module: ``ADCLoss(ADC(...))(z_a, z_b, prior)``."""

    def __init__(self, adc: ADC | None = None) -> None:
        torch.nn.Module.__init__(self)
        self.adc = check_adc(adc) or ADC()

    def forward(self, z_a: Any, z_b: Any, prior: Any) -> torch.Tensor:
        return self.adc(z_a, z_b, prior)


__getattr__ = module_getattr(front_end, __name__)
