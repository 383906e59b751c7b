"""The loss every trainer optimises, built once from the run's config and the registry.

Each backend's trainer asks :func:`front_end` for its framework's front-end of the run's
method (a ``torch.nn.Module``, a Keras layer, or a jitted JAX function), computes the
network outputs the method's declaration names, and passes the parts through
:func:`with_controls`. Nothing here imports a framework.
"""

from __future__ import annotations

from functools import partial
from types import ModuleType
from typing import Any

from glf_train.config import RunConfig

import glf_losses
from glf_losses import GLFParts

__all__ = ["front_end", "method_inputs", "views_through", "with_controls"]


def front_end(config: RunConfig, backend: ModuleType) -> Any:
    """The run's loss (ADC included when ``--adc``, unless ``--method-weight`` is not 1:
    `with_controls` then adds it after scaling the method's parts) from a backend's
    front-ends.

    ``backend`` is ``glf_losses.backends.torch`` or ``.tensorflow`` (an ``nn.Module`` or
    Keras layer is returned, holding the arrays the method owns) or ``.jax`` (a function
    ``(*inputs, *owned_arrays, prior, **optional_inputs) -> GLFParts``).
    """
    sizes, hyperparameters = config.loss_settings()
    made = backend.front_end(config.method)
    # A --method-weight other than 1 scales the method's parts without ADC's: ADC then
    # joins them in with_controls, not in the front-end.
    adc = config.adc_config() if config.method_weight == 1.0 else None
    if backend.name == "jax":
        return partial(made, adc=adc, parts=True, **hyperparameters)
    return made(*sizes, adc=adc, **hyperparameters)


def views_through(config: RunConfig, branch: str) -> tuple[str, ...]:
    """The views (``"a"``, ``"b"``) the run's method needs through ``branch``.

    ``branch`` is ``"online"``, ``"predicted"`` or ``"target"``, as the method's
    [`Method.sources`][glf_losses.registry.Method.sources] name them: a trainer runs its
    momentum target only on the views the loss takes from it (MoCo's key view).
    """
    sources = config.method_entry().sources
    return tuple(v for v in "ab" if f"{branch}_{v}" in sources)


def method_inputs(config: RunConfig, outputs: dict[str, Any]) -> tuple[Any, ...]:
    """The method's inputs, in order, from the network outputs a trainer computed.

    ``outputs`` maps ``online_a``, ``online_b``, and as the method needs them
    ``predicted_*`` and ``target_*`` (see `views_through`) to arrays. A ``target_*``
    the trainer did not compute (no momentum target) is the online projection of that
    view, which the loss takes under stop-gradient.
    """
    inputs = []
    for source in config.method_entry().sources:
        if source not in outputs and source.startswith("target_"):
            source = "online_" + source[-1]
        inputs.append(outputs[source])
    return tuple(inputs)


def with_controls(
    config: RunConfig, parts: GLFParts, inputs: tuple[Any, ...], prior: Any = None
) -> GLFParts:
    """``parts`` with the study's control terms of the run applied.

    ``parts`` come from the run's `front_end`; ``inputs`` are the method's inputs and
    ``prior`` ADC's prior, as the front-end was given them.

    ``--method-weight m`` (other than 1) scales the method's aligning and constraining
    parts by ``m``, then adds ADC (with ``--adc``) to the constraining part: with ``m =
    0`` the run trains ADC alone. ``--uniformity-weight w`` adds ``w`` times the
    uniformity term (at ``uniformity_temperature``) of the outputs ADC would act on:
    plain spreading, the control against which ADC's effect is measured.

    Raises:
      ValueError: if ADC is to be added here and ``prior`` is missing.
    """
    if config.method_weight != 1.0:
        weight = config.method_weight
        parts = GLFParts(weight * parts.align, weight * parts.constrain)
        adc = config.adc_config()
        if adc is not None:
            if prior is None:
                raise ValueError(
                    "with_controls needs ADC's prior (prior=...) for a run with --adc and "
                    f"--method-weight {weight:g}: ADC is added here, not in the front-end"
                )
            a, b = config.method_entry().adc_pair(inputs)
            parts = glf_losses.with_adc(parts, adc, a, b, prior)
    if not config.uniformity_weight:
        return parts
    a, b = config.method_entry().adc_pair(inputs)
    xp = glf_losses.get_namespace(a)
    # The terms compute in float32 at least, whatever the network's precision.
    if not xp.isdtype(a.dtype, (xp.float32, xp.float64)):
        a, b = xp.astype(a, xp.float32), xp.astype(b, xp.float32)
    u = glf_losses.constrain.uniformity(a, b, config.uniformity_temperature)
    return GLFParts(parts.align, parts.constrain + config.uniformity_weight * u)
