"""Dispatch from arrays to the backend that owns them.

The spec never imports a framework: it asks :func:`get_backend` for the module of
``glf_losses.backends`` that matches the arrays it was given, and that module is imported
(and with it the framework) only then. Each backend module exposes the same names:

``name``
    the backend's name (``"numpy"``, ``"array_api_strict"``, ``"torch"``, ``"jax"``,
    ``"tensorflow"``);
``xp``
    an array-API namespace for the framework's arrays;
``stop_gradient(x)``, ``logsumexp(x, axis, keepdims)``, ``log_softmax(x, axis)``,
``select_kth(x, ks)``
    the few operations the array API standard lacks (or has no fast path for);
``all_reduce_sum(x)``, ``all_reduce_max(x)``, ``all_gather(x)``
    data-parallel collectives; identities outside a distributed context;
``to_numpy(x)``
    a host copy, for tests and reporting only (never called by the spec).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

__all__ = ["backend_name", "get_backend", "get_namespace"]

# The top-level module a framework's array types live in, mapped to our backend name.
_ROOT_TO_BACKEND = {
    "numpy": "numpy",
    "array_api_strict": "array_api_strict",
    "torch": "torch",
    "jax": "jax",
    "jaxlib": "jax",
    "tensorflow": "tensorflow",
    "tf_keras": "tensorflow",
}


def backend_name(x: Any) -> str | None:
    """The name of the backend that owns ``x``, or ``None`` for anything else.

    Decided from the module of ``type(x)`` so that no framework is imported to ask.
    NumPy scalars (``np.float64(1.0)``) count as NumPy arrays.
    """
    root = type(x).__module__.split(".", 1)[0]
    return _ROOT_TO_BACKEND.get(root)


def _load(name: str) -> ModuleType:
    # Plain import statements, not importlib: torch.compile traces through an import
    # statement but refuses importlib.import_module, and the first call of a loss may
    # happen inside a compiled function.
    if name == "torch":
        from glf_losses.backends import torch as torch_backend

        return torch_backend
    if name == "jax":
        from glf_losses.backends import jax as jax_backend

        return jax_backend
    if name == "tensorflow":
        from glf_losses.backends import tensorflow as tensorflow_backend

        return tensorflow_backend
    if name == "array_api_strict":
        from glf_losses.backends import array_api_strict as strict_backend

        return strict_backend
    from glf_losses.backends import numpy as numpy_backend

    return numpy_backend


def get_backend(*arrays: Any, names: tuple[str, ...] | None = None) -> ModuleType:
    """The backend module shared by ``arrays``.

    Args:
      *arrays: arrays of one framework (``None`` entries are ignored).
      names: optional argument names, parallel to ``arrays``, used in error messages.

    Raises:
      TypeError: if an argument is not an array of a supported framework, or if the
        arrays come from different frameworks.
    """
    if names is None:
        names = tuple(f"argument {i}" for i in range(len(arrays)))
    found: dict[str, str] = {}
    for label, x in zip(names, arrays, strict=True):
        if x is None:
            continue
        name = backend_name(x)
        if name is None:
            raise TypeError(
                f"{label} must be an array of NumPy, array-api-strict, PyTorch, JAX or "
                f"TensorFlow, got {type(x).__module__}.{type(x).__qualname__}"
            )
        found.setdefault(name, label)
    if not found:
        raise TypeError("expected at least one array, got none")
    if len(found) > 1:
        described = ", ".join(f"{label} is a {name} array" for name, label in found.items())
        raise TypeError(f"all arrays must come from one framework, but {described}")
    return _load(next(iter(found)))


def get_namespace(*arrays: Any) -> Any:
    """The array-API namespace of ``arrays``.

    NumPy, PyTorch and JAX get their ``array_api_compat`` namespaces, array-api-strict its
    own module, TensorFlow ``glf_losses.backends.tensorflow.xp`` (ours, on raw ``tf``
    ops).

    Raises:
      TypeError: for unsupported array types or arrays from different frameworks.

    Example:
      >>> import numpy as np
      >>> import glf_losses
      >>> xp = glf_losses.get_namespace(np.ones(3))
      >>> float(xp.sum(xp.ones(3)))
      3.0
    """
    return get_backend(*arrays).xp
