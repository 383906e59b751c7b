"""Keras 3 front-ends: every registered method as a ``keras.layers.Layer``, and ADC alone.

``BarlowTwinsLoss``, ``BYOLLoss``, ``SimCLRLoss``, ``SwAVLoss`` (and every method added to
[`glf_losses.registry`][glf_losses.registry]) are made from their declarations on first use: import
them
from ``glf_losses.backends.tensorflow``. ``call`` is the 0-d loss, ``parts`` its
``GLFParts``. Arrays a method owns (SwAV's prototypes) are trainable weights; call
``after_step()`` after each optimiser step to project them back where the method keeps
them. States a method carries between steps (MoCo's queue) are non-trainable weights,
advanced by every call unless ``training=False``, or by ``update_state(*inputs)``.
The layers hand their inputs to [`glf_losses`][glf_losses], which dispatches on the
array type, so they also run when Keras uses its JAX or PyTorch backend.

``autocast=False`` by default: a loss must see its inputs' own dtype (float64 stays
float64; float16 and bfloat16 are promoted to float32 by [`glf_losses`][glf_losses]), not the
layer's compute dtype. Keyword arguments that are not the method's hyperparameters go to
``keras.layers.Layer``.

Examples:
  >>> import tensorflow as tf
  >>> from glf_losses import ADC
  >>> from glf_losses.backends.tensorflow import BarlowTwinsLoss
  >>> loss_fn = BarlowTwinsLoss(adc=ADC(perplexity=5.0))
  >>> z_a, z_b = tf.random.normal((16, 8)), tf.random.normal((16, 8))
  >>> pixels = tf.random.uniform((16, 1, 8, 8), 0, 256, dtype=tf.int32)
  >>> bool(tf.math.is_finite(loss_fn(z_a, z_b, prior=pixels)))
  True
"""

from __future__ import annotations

from typing import Any

import keras

from glf_losses import registry
from glf_losses._lib import l2_normalize
from glf_losses._namespace import get_namespace
from glf_losses.adc import ADC
from glf_losses.frontends import (
    ADCFrontEnd,
    MethodFrontEnd,
    check_adc,
    front_end_class,
    module_getattr,
)

__all__ = ["ADCLoss", "MethodLoss", "front_end"]


class MethodLoss(MethodFrontEnd, keras.layers.Layer):
    """The generic layer behind every method's front-end (see
    [`front_end`][backends.tensorflow.frontends.front_end])."""

    def __init__(self, *sizes: int, adc: ADC | None = None, **kwargs: Any) -> None:
        names = {*self.method.hyperparameters, *self.method.sizes}
        hyperparameters = {k: kwargs.pop(k) for k in list(kwargs) if k in names}
        kwargs.setdefault("autocast", False)
        keras.layers.Layer.__init__(self, **kwargs)
        shapes = self._configure(sizes, adc, hyperparameters)
        for parameter in self.method.parameters:
            weight = self.add_weight(
                shape=shapes[parameter.name],
                initializer=keras.initializers.RandomNormal(stddev=1.0),
                name=parameter.name,
            )
            setattr(self, parameter.name, weight)
        for state in self.method.states:
            init = (keras.initializers.RandomNormal(stddev=1.0) if state.init == "unit_rows"
                    else keras.initializers.Zeros())
            weight = self.add_weight(
                shape=shapes[state.name], initializer=init, name=state.name, trainable=False
            )
            if state.init == "unit_rows":
                weight.assign(l2_normalize(get_namespace(weight.value), weight.value))
            setattr(self, state.name, weight)
        self.after_step()
        # The only state is created above, so no shape-driven build is needed.
        self.built = True

    def owned_arrays(self) -> dict[str, Any]:
        # ``.value`` is the backend's own array (or variable), which glf_losses dispatches
        # on; the Keras wrapper itself belongs to no framework it knows.
        return {name: getattr(self, name).value for name in self.method.held}

    def _store_states(self, states: dict[str, Any]) -> None:
        for name, value in states.items():
            getattr(self, name).assign(value)

    def call(
        self, *inputs: Any, prior: Any = None, training: bool | None = None, **local: Any
    ) -> Any:
        """The 0-d loss; unless ``training=False`` the method's states then advance.
        ``local``: the local crops (``local_z=``) of a method that takes them."""
        total = self.parts(*inputs, prior=prior, **local).total
        if training is not False:
            self.update_state(*inputs)
        return total

    def after_step(self) -> None:
        """Project owned arrays back where the method keeps them (unit rows for SwAV)."""
        for parameter in self.method.parameters:
            if parameter.unit_rows:
                weight = getattr(self, parameter.name)
                w = weight.value
                weight.assign(l2_normalize(get_namespace(w), w))


_CLASSES: dict[str, type] = {}


def front_end(method: str | registry.Method) -> type[MethodLoss]:
    """The Keras layer class of a registered method (``front_end("swav")`` is ``SwAVLoss``)."""
    cls: type[MethodLoss] = front_end_class(
        MethodLoss, method, __name__.rsplit(".", 1)[0], "as a Keras layer", _CLASSES
    )
    return cls


class ADCLoss(ADCFrontEnd, keras.layers.Layer):
    """ADC alone as a layer: ``ADCLoss(ADC(...))(z_a, z_b, prior)``.

    ``autocast=False`` by default, as for the method layers.
    """

    def __init__(self, adc: ADC | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("autocast", False)
        keras.layers.Layer.__init__(self, **kwargs)
        self.adc = check_adc(adc) or ADC()

    def call(self, z_a: Any, z_b: Any, prior: Any) -> Any:
        return self.adc(z_a, z_b, prior)


__getattr__ = module_getattr(front_end, __name__)
