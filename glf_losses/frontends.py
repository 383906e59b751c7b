"""What every framework's loss objects share, written once and built from the registry.

``glf_losses.backends.torch`` makes ``torch.nn.Module`` losses and
``glf_losses.backends.tensorflow`` Keras layers by mixing `MethodFrontEnd` into the
framework's base class, one class per [`glf_losses.registry`][glf_losses.registry] entry (see
`front_end_class`); the framework class only stores the arrays the method owns (SwAV's
prototypes) the framework's way. Nothing here imports a framework.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from glf_losses import _checks, methods, registry
from glf_losses._lib import GLFParts
from glf_losses.adc import ADC, ADCParts

__all__ = ["ADCFrontEnd", "MethodFrontEnd", "check_adc", "front_end_class", "module_getattr"]


# The one check of ``adc=``, shared with ``with_adc``: an ADC or None, else a clear error.
check_adc = methods._check_adc


class MethodFrontEnd:
    """A registered method's loss, with an optional ADC term in its constraining part.

    Subclasses are made per method by `front_end_class`; their constructor is
    ``Cls(*sizes, adc=None, **hyperparameters)``: the method's size arguments (SwAV:
    ``dim, n_prototypes``), an [`glf_losses.ADC`][glf_losses.ADC] or ``None``, and any of the
    method's hyperparameters (the rest keep their official defaults). Calling the object
    with the method's inputs (and ``prior=`` when ADC is set) gives the 0-d loss;
    `parts` gives ``GLFParts(align, constrain)``.
    """

    method: ClassVar[registry.Method]
    adc: ADC | None
    hyperparameters: dict[str, Any]

    def _configure(
        self, sizes: tuple[Any, ...], adc: Any, hyperparameters: dict[str, Any]
    ) -> dict[str, tuple[int, ...]]:
        """Check and store the settings; returns the shapes of the arrays to hold (the
        method's parameters and states, by name)."""
        entry = self.method
        names = tuple(entry.sizes)
        # Sizes positionally, in the declared order, or by name; positional arguments after
        # the sizes are hyperparameters, in the declared order (SimCLRLoss(0.5)).
        extra = sizes[len(names):]
        if len(extra) > len(entry.hyperparameters):
            raise TypeError(
                f"{type(self).__name__} takes at most {len(names) + len(entry.hyperparameters)}"
                f" positional arguments ({', '.join((*names, *entry.hyperparameters))}), got "
                f"{len(sizes)}"
            )
        for key, value in zip(entry.hyperparameters, extra, strict=False):
            if key in hyperparameters:
                raise TypeError(f"{type(self).__name__} got {key} twice")
            hyperparameters[key] = value
        sizes = sizes[: len(names)]
        given = dict(zip(names, sizes, strict=False))
        for n in names[len(sizes):]:
            if n in hyperparameters:
                given[n] = hyperparameters.pop(n)
        if len(given) != len(names):
            raise TypeError(
                f"{type(self).__name__} takes {len(names)} size argument(s) "
                f"({', '.join(names) or 'none'}), got {len(sizes)} positional and "
                f"{len(given) - min(len(sizes), len(names))} by name"
            )
        # A size that counts an owned array's rows has that array's minimum.
        minimum = {p.shape[0]: p.min_rows for p in entry.parameters}
        size = {n: _checks.check_count(v, n, minimum=minimum.get(n, 1)) for n, v in given.items()}
        self.adc = check_adc(adc)
        self.hyperparameters = entry.hyperparameter_values(hyperparameters)
        held: tuple[registry.Parameter | registry.State, ...] = (*entry.parameters, *entry.states)
        return {h.name: tuple(size[n] for n in h.shape) for h in held}

    def owned_arrays(self) -> dict[str, Any]:
        """The arrays the method holds (parameters, then states), by name, as the
        framework's arrays."""
        return {}

    def _store_states(self, states: dict[str, Any]) -> None:
        """Keep the method's new states the framework's way."""
        raise NotImplementedError

    def parts(self, *inputs: Any, prior: Any = None, **local: Any) -> GLFParts:
        """The loss as ``GLFParts(align, constrain)`` (ADC, if set, in ``constrain``).

        ``local`` holds the local crops' projections under the method's
        [`Method.local_input`][glf_losses.registry.Method.local_input] keyword (SwAV's
        and DINO's ``local_z=``, shape (L, N, D)); a method without one refuses them.
        The method's states (MoCo's queue) are read, not updated: see `update_state`.
        """
        return registry.method_parts(
            self.method, *inputs, prior=prior, adc=self.adc, **self.owned_arrays(),
            **self.hyperparameters, **local,
        )

    def update_state(self, *inputs: Any) -> None:
        """Advance the method's states (MoCo's queue, TiCo's covariance) with this step's
        inputs, the arrays its loss saw; nothing for a method without states.

        Calling the front-end in training mode does this after computing the loss; call it
        yourself when you use `parts`.
        """
        entry = self.method
        if not entry.states:
            return
        held = self.owned_arrays()
        states = {s.name: held[s.name] for s in entry.states}
        parameters = {p.name: held[p.name] for p in entry.parameters}
        self._store_states(registry.method_state(
            entry, states, *inputs[: len(entry.inputs)], **parameters, **self.hyperparameters
        ))


def front_end_class(
    base: type, method: str | registry.Method, module: str, summary: str,
    cache: dict[str, type],
) -> type:
    """The front-end class of ``method`` on ``base`` (a framework's generic loss class).

    Made once per method and framework and kept in ``cache``; named after the method
    (``BarlowTwinsLoss``) and documented from its declaration.
    """
    entry = registry.get(method)
    known = cache.get(entry.name)
    if known is not None and getattr(known, "method", None) is entry:
        return known
    sizes = ", ".join(entry.sizes)
    settings = ", ".join(f"{k}={v!r}" for k, v in entry.hyperparameters.items())
    call = ", ".join(entry.inputs + tuple(f"{n}=None" for n in entry.optional_inputs))
    doc = (
        f"{entry.title or entry.name} {summary}: ``{entry.class_name}({sizes}"
        f"{', ' if sizes else ''}adc=None{', ' if settings else ''}{settings})``, called as "
        f"``loss_fn({call}, prior=None)``.\n\n"
        f"The loss is `glf_losses.{entry.name}_loss`"
        + (f" (its owned arrays: {', '.join(p.name for p in entry.parameters)})"
           if entry.parameters else "")
        + (f" (its states, advanced by ``update_state`` and by every call in training "
           f"mode: {', '.join(s.name for s in entry.states)})" if entry.states else "")
        + f"; ADC, if set, acts on ``{entry.adc_inputs[0]}, {entry.adc_inputs[1]}``.\n\n"
        f"Paper: {entry.paper}. Official code: {entry.source}.\n"
    )
    cls = type(entry.class_name, (base,), {"method": entry, "__doc__": doc, "__module__": module})
    cache[entry.name] = cls
    return cls


def module_getattr(
    make: Callable[[str], type], module: str
) -> Callable[[str], type]:
    """A module ``__getattr__`` that makes ``<Method>Loss`` classes on first use."""

    def __getattr__(name: str) -> type:
        for method in registry.names():
            if registry.get(method).class_name == name:
                return make(method)
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return __getattr__


class ADCFrontEnd:
    """ADC alone: ``(z_a, z_b, prior)`` to ``nu * L_DCM + upsilon * L_LPM``."""

    adc: ADC

    def parts(self, z_a: Any, z_b: Any, prior: Any) -> ADCParts:
        """``ADCParts(dcm=nu * L_DCM, lpm=upsilon * L_LPM)``."""
        return self.adc.parts(z_a, z_b, prior)
