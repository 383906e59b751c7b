"""JAX front-ends: every registered method as a plain jitted function, and ADC alone.

``barlow_twins_loss``, ``byol_loss``, ``simclr_loss``, ``swav_loss`` (and every method
added to [`glf_losses.registry`][glf_losses.registry]) are made from their declarations on first
use:
import them from ``glf_losses.backends.jax``. Each takes the method's inputs, then the
arrays the method owns (SwAV's ``prototypes``) and its states (MoCo's ``queue``), then
``prior`` (needed with ADC); optional inputs (SwAV's ``queue_a``/``queue_b``) by keyword.
The states are the caller's to keep: [`update_state`][backends.jax.frontends.update_state]
gives the next ones. Hyperparameters, ``adc`` (an
[`glf_losses.ADC`][glf_losses.ADC]) and ``parts`` (return ``GLFParts`` instead of the total) are
static: they are checked once on the host, and a call inside a user's own ``jax.jit`` is
traced once per setting.

Examples:
  >>> import jax.numpy as jnp
  >>> from glf_losses import ADC
  >>> from glf_losses.backends.jax import barlow_twins_loss
  >>> z = jnp.arange(32.0).reshape(8, 4) ** 0.5
  >>> bool(jnp.isfinite(barlow_twins_loss(z, z[::-1], z, adc=ADC(perplexity=5.0))))
  True
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import jax

from glf_losses import _checks, registry
from glf_losses.adc import ADC
from glf_losses.frontends import check_adc

__all__ = ["adc_loss", "front_end", "update_state"]


@partial(jax.jit, static_argnames=("method", "adc", "parts", "settings"))
def _compute(
    inputs: tuple[Any, ...], owned: dict[str, Any], prior: Any, *, method: registry.Method,
    adc: ADC | None, parts: bool, settings: tuple[tuple[str, Any], ...],
) -> Any:
    out = registry.method_parts(method, *inputs, prior=prior, adc=adc, **owned, **dict(settings))
    return out if parts else out.total


def _static(settings: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    """Hyperparameters as a hashable static argument; a traced value is refused."""
    for key, value in settings.items():
        if isinstance(value, jax.Array) or not isinstance(value, (int, float, str, bool)):
            raise TypeError(
                f"{key} must be a Python number (hyperparameters are static under jax.jit), "
                f"got {type(value).__name__}: pass it as a constant, not a traced array"
            )
    return tuple(sorted(settings.items()))


_FUNCTIONS: dict[str, Callable[..., Any]] = {}


def front_end(method: str | registry.Method) -> Callable[..., Any]:
    """The jitted function of a registered method (``front_end("swav")`` is ``swav_loss``)."""
    entry = registry.get(method)
    known = _FUNCTIONS.get(entry.name)
    if known is not None and getattr(known, "method", None) is entry:
        return known
    n_inputs, owned = len(entry.inputs), entry.held
    positional = entry.inputs + owned + ("prior",)

    def loss(*arrays: Any, adc: ADC | None = None, parts: bool = False, **kwargs: Any) -> Any:
        if not n_inputs + len(owned) <= len(arrays) <= len(positional):
            raise TypeError(
                f"{entry.name}_loss takes ({', '.join(positional)}) positionally (prior "
                f"optional), got {len(arrays)} arrays"
            )
        prior = arrays[len(positional) - 1] if len(arrays) == len(positional) \
            else kwargs.pop("prior", None)
        optional = tuple(kwargs.pop(n, None) for n in entry.optional_inputs)
        while optional and optional[-1] is None:
            optional = optional[:-1]
        # The local crops (local_z=) travel with the owned arrays: method_parts takes both
        # by keyword and refuses local crops a method does not have.
        held = dict(zip(owned, arrays[n_inputs:], strict=False))
        for name in {str(registry.get(n).local_input) for n in registry.local_crop_methods()}:
            value = kwargs.pop(name, None)
            if value is not None:
                held[name] = value
        settings = entry.hyperparameter_values(kwargs)
        return _compute(
            (*arrays[:n_inputs], *optional), held,
            prior, method=entry, adc=check_adc(adc), parts=_checks.check_bool(parts, "parts"),
            settings=_static(settings),
        )

    loss.__name__ = loss.__qualname__ = f"{entry.name}_loss"
    loss.__module__ = __name__.rsplit(".", 1)[0]
    loss.__doc__ = (
        f"`glf_losses.{entry.name}_loss`, jitted: ``{entry.name}_loss("
        f"{', '.join(positional)}=None, *, adc=None, parts=False"
        + "".join(f", {k}={v!r}" for k, v in entry.hyperparameters.items())
        + "".join(f", {n}=None" for n in entry.optional_inputs)
        + (f", {entry.local_input}=None" if entry.local_input else "")
        + f")``. ADC, if set, acts on ``{', '.join(entry.adc_inputs)}``."
    )
    loss.method = entry  # type: ignore[attr-defined]
    _FUNCTIONS[entry.name] = loss
    return loss


@partial(jax.jit, static_argnames=("method", "settings"))
def _update(
    states: dict[str, Any], inputs: tuple[Any, ...], parameters: dict[str, Any], *,
    method: registry.Method, settings: tuple[tuple[str, Any], ...],
) -> dict[str, Any]:
    return registry.method_state(method, states, *inputs, **parameters, **dict(settings))


def update_state(
    method: str | registry.Method, states: dict[str, Any], *inputs: Any, **kwargs: Any
) -> dict[str, Any]:
    """A method's states after a step, jitted: see
    [`glf_losses.registry.method_state`][glf_losses.registry.method_state]. ``kwargs``
    hold the method's parameters (DINO's ``prototypes``) and static hyperparameters.

    Examples:
      >>> import jax.numpy as jnp
      >>> from glf_losses.backends.jax import moco_loss, update_state
      >>> q, k, queue = jnp.eye(4, 8), jnp.eye(4, 8)[::-1], jnp.zeros((16, 8))
      >>> loss = moco_loss(q, k, queue)
      >>> update_state("moco", {"queue": queue}, q, k)["queue"].shape
      (16, 8)
    """
    entry = registry.get(method)
    owned = {p.name for p in entry.parameters}
    parameters = {k: v for k, v in kwargs.items() if k in owned}
    settings = {k: v for k, v in kwargs.items() if k not in owned}
    return _update(
        dict(states), tuple(inputs), parameters, method=entry,
        settings=_static(entry.hyperparameter_values(settings)),
    )


@partial(jax.jit, static_argnames=("adc",))
def _adc(z_a: Any, z_b: Any, prior: Any, *, adc: ADC) -> Any:
    return adc(z_a, z_b, prior)


def adc_loss(z_a: Any, z_b: Any, prior: Any, **settings: Any) -> Any:
    """[`glf_losses.adc_loss`][glf_losses.adc_loss], jitted: every
    [`glf_losses.ADC`][glf_losses.ADC] field is static.

    Examples:
      >>> import jax.numpy as jnp
      >>> from glf_losses.backends.jax import adc_loss
      >>> z = jnp.ones((16, 8)) + jnp.arange(128.0).reshape(16, 8)
      >>> bool(jnp.isfinite(adc_loss(z, z[::-1], z, perplexity=5.0, prior_other_view=True)))
      True
    """
    return _adc(z_a, z_b, prior, adc=ADC(**settings))


def __getattr__(name: str) -> Callable[..., Any]:
    """``<method>_loss``: the jitted function of a registered method, made on first use."""
    if name.endswith("_loss") and name[: -len("_loss")] in registry.names():
        return front_end(name[: -len("_loss")])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
