"""Framework backends of glf-losses, installed as ``glf_losses.backends``.

One module per framework with the same names in each (see
:mod:`glf_losses._namespace`): ``name``, ``xp``, ``device``, ``stop_gradient``,
``logsumexp``, ``log_softmax``, ``select_kth``, ``to_numpy``, plus framework-native
front-ends where the framework has a convention for them (``torch``: ``nn.Module``
losses; ``tensorflow``: Keras layers; ``jax``: jitted functions). Importing this package
imports no framework; :func:`glf_losses.get_namespace` imports a backend module when it
first sees its arrays.
"""

BACKEND_NAMES = ("numpy", "array_api_strict", "torch", "jax", "tensorflow")

__all__ = ["BACKEND_NAMES"]
