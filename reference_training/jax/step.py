"""The JAX trainer: flax.linen model, one jitted optax step, EMA target, msgpack checkpoints.

Everything else (batch order, views, logging, evaluation) is the shared loop in
:mod:`glf_train.loop`. This mirrors :mod:`glf_train.torch.step`:

- the trainer's state is one pytree (``params``, ``batch_stats``, ``opt_state``, the
  arrays the method owns (``owned``, e.g. SwAV's prototypes) with their own optimiser
  state, and the momentum ``target`` for methods that have one); :func:`make_train_step`
  returns the pure step on it, which the trainer jits once with the state's buffers
  donated;
- the host-side inputs of the shared loop (learning rate, EMA rate, whether owned arrays
  may move) enter the step as traced scalars, so changing them never recompiles;
- SwAV's queue (``--swav-queue Q``) is a ``(2, Q, D)`` float32 array in the state,
  updated by the step; whether the step uses it (once full, as the loop decides) is a
  static argument, so a run compiles at most two programs;
- the optimisers are torch's: AdamW (decoupled weight decay ``p -= lr * wd * p``) or SGD
  with momentum 0.9 and L2 weight decay added to the gradient; the learning rate scales
  the optimiser's output, so it is not part of the optimiser state;
- the loss is :func:`loss_parts`, a pure function of the network outputs, through the
  JAX front-end that :mod:`glf_losses.registry` makes for the method (as the torch and
  TensorFlow trainers use theirs).

Two BatchNorm details follow torch's modules exactly: each view is a separate forward
pass (its own batch statistics, two running-average updates per step), and the BYOL
target runs in training mode (batch statistics), so it needs no running averages of its
own; torch copies the online ones into it, which has no effect on training.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections import OrderedDict
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import flax.linen as nn
import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax
from glf_losses.backends import jax as jax_frontends
from glf_train import augment, objective, report
from glf_train.checksum import CHECKSUM_KEY, tree_digest, verify
from glf_train.config import RunConfig
from glf_train.data import Dataset
from glf_train.errors import checkpoint_problem
from glf_train.jax.model import MLPHead, build_encoder, predictor, projector
from glf_train.rundir import CHECKPOINT_NAMES
from glf_train.schedules import StepInputs
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from glf_losses import registry
from glf_losses._lib import GLFParts, l2_normalize

__all__ = [
    "JaxTrainer", "loss_parts", "make_optimizer", "make_train_step", "request_host_devices",
]

State = dict[str, Any]
TrainStep = Callable[..., tuple[State, dict[str, jax.Array]]]

_FORMAT = "glf-train-jax/2"


class _Online(nn.Module):
    """Encoder then projection head; the network BYOL's target copies."""

    encoder: nn.Module
    head: nn.Module

    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        return self.head(self.encoder(x, train), train)


def loss_parts(
    config: RunConfig, outputs: Sequence[Any], prior: Any, owned: dict[str, Any] | None = None,
    queue: Any = None, local_z: Any = None,
) -> GLFParts:
    """The method's ``GLFParts`` (ADC and the run's controls included) from network outputs.

    ``outputs`` are the method's inputs as its registry entry names them: ``(z_a, z_b)``,
    or ``(p_a, p_b, t_a, t_b)`` for a method with a predictor (online predictions, then
    target projections, taken under stop-gradient by the loss). ``owned`` holds the arrays
    the method holds by name (SwAV's ``prototypes``, MoCo's ``queue``). ``queue`` is SwAV's earlier
    projections of both views, ``(queue_a, queue_b)`` of shape ``(Q, D)`` each (or one
    ``(2, Q, D)`` array). ``local_z`` is the ``(L, N, D)`` online projections of the
    local crops (``--local-crops``, methods with a local input). Pure and differentiable
    in ``outputs``, ``owned`` and ``local_z``: the function the train step calls, through
    the JAX front-end the registry makes.
    """
    if queue is not None and not config.swav_queue:
        raise ValueError(f"{config.method} has no queue in this run (--swav-queue 0)")
    entry = config.method_entry()
    owned = owned or {}
    loss = objective.front_end(config, jax_frontends)
    arrays = [owned[name] for name in entry.held]
    optional = {} if queue is None else {"queue_a": queue[0], "queue_b": queue[1]}
    if local_z is not None:
        if entry.local_input is None:
            raise ValueError(
                f"{config.method} takes no local crops; only "
                f"{', '.join(registry.local_crop_methods())} do (--local-crops)"
            )
        optional[entry.local_input] = local_z
    parts: GLFParts = loss(*outputs, *arrays, prior, **optional)
    return objective.with_controls(config, parts, tuple(outputs), prior)


def make_optimizer(config: RunConfig) -> optax.GradientTransformation:
    """torch's AdamW or SGD(momentum=0.9), without the learning rate (the step applies it).

    AdamW: ``p -= lr * (adam(g) + wd * p)``; SGD: ``p -= lr * momentum_buffer(g + wd * p)``.
    """
    # Weight decay on weight matrices and kernels only: BatchNorm's scales and shifts and
    # the biases (the 1-d parameters) are not decayed, as SSL recipes do.
    decay = optax.add_decayed_weights(
        config.weight_decay, mask=lambda params: jax.tree.map(lambda p: p.ndim > 1, params)
    )
    if config.optimizer == "adamw":
        return optax.chain(optax.scale_by_adam(b1=0.9, b2=0.999, eps=1e-8), decay)
    return optax.chain(decay, optax.trace(decay=0.9))


def _where(flag: jax.Array, new: Any, old: Any) -> Any:
    return jax.tree.map(lambda n, o: jnp.where(flag, n, o), new, old)


def make_train_step(
    config: RunConfig,
    online: nn.Module,
    pred: MLPHead | None,
    prior_encoder: nn.Module | None,
    tx: optax.GradientTransformation,
    mean: Sequence[float],
    std: Sequence[float],
) -> TrainStep:
    """The pure train step ``(state, view_a, view_b, images, lr, tau, owned_active,
    prior_variables, use_queue=False, local_views=()) -> (state, logs)``; ``logs`` holds
    0-d ``loss``, ``align``, ``constrain``.

    ``local_views`` are the batch's local crops (``--local-crops``): they go through the
    online network together (one forward pass) and the projections reach the loss as its
    local input; the target, ADC and the controls see the two views only.

    ``images`` are the raw batch (ADC's default prior); with ``prior_encoder`` the prior
    is that encoder's eval-mode features of the centred batch under
    ``prior_variables``. ``tau`` is the momentum target's EMA rate; ``owned_active`` (0 or
    1) lets the arrays the method owns (SwAV's prototypes) and their optimiser state move.

    With SwAV's queue the state holds ``queue``, ``(2, Q, D)`` float32 earlier
    projections of both views, newest first. ``use_queue`` (a Python bool, static under
    jit) passes it to the loss; the caller sets it once the queue is full. Every step
    then puts this step's projections (computed before the update) in front of the queue
    and drops the oldest rows.
    """
    entry = config.method_entry()
    hyperparameters = config.loss_settings()[1]
    queue_size = config.swav_queue
    unit_rows = {p.name for p in entry.parameters if p.unit_rows}

    def forward(module: nn.Module, params: Any, stats: Any, x: jax.Array) -> tuple[Any, Any]:
        out, updates = module.apply(
            {"params": params, "batch_stats": stats}, x, train=True, mutable=["batch_stats"]
        )
        return out, updates["batch_stats"]

    def loss_of(
        trainable: State, state: State, view_a: jax.Array, view_b: jax.Array, prior: Any,
        queue: jax.Array | None, local_views: tuple[jax.Array, ...],
    ) -> tuple[jax.Array, tuple[GLFParts, Any, jax.Array, dict[str, jax.Array]]]:
        params, stats = trainable["params"], state["batch_stats"]
        z_a, online_stats = forward(online, params["online"], stats["online"], view_a)
        z_b, online_stats = forward(online, params["online"], online_stats, view_b)
        local_z = None
        if local_views:
            # All local crops in one forward pass (one set of BatchNorm statistics), as the
            # authors' code runs the crops of one size together.
            z, online_stats = forward(
                online, params["online"], online_stats, jnp.concatenate(local_views)
            )
            local_z = z.reshape(len(local_views), -1, z.shape[-1])
        new_stats = {"online": online_stats}
        outputs = {"online_a": z_a, "online_b": z_b}
        views = {"a": view_a, "b": view_b}
        if pred is not None:
            pred_stats = stats["predictor"]
            for v in objective.views_through(config, "predicted"):
                outputs[f"predicted_{v}"], pred_stats = forward(
                    pred, params["predictor"], pred_stats, outputs[f"online_{v}"]
                )
            new_stats["predictor"] = pred_stats
        if "target" in state:
            for v in objective.views_through(config, "target"):
                # The target's running averages are discarded: it uses batch statistics.
                t, _ = forward(online, state["target"], stats["online"], views[v])
                outputs[f"target_{v}"] = jax.lax.stop_gradient(t)
        inputs = objective.method_inputs(config, outputs)
        held = {**trainable["owned"], **state["method_state"]}
        parts = loss_parts(config, inputs, prior, held, queue, local_z)
        # The states advance from the outputs the loss saw (MoCo: this step's keys).
        new_method_state = registry.method_state(
            entry, state["method_state"],
            *(jax.lax.stop_gradient(x).astype(jnp.float32) for x in inputs),
            **jax.lax.stop_gradient(trainable["owned"]), **hyperparameters,
        ) if entry.states else {}
        projections = jax.lax.stop_gradient(jnp.stack([z_a, z_b])).astype(jnp.float32)
        return parts.total, (parts, new_stats, projections, new_method_state)

    def step(
        state: State, view_a: jax.Array, view_b: jax.Array, images: jax.Array, lr: jax.Array,
        tau: jax.Array, owned_active: jax.Array, prior_variables: Any, use_queue: bool = False,
        local_views: tuple[jax.Array, ...] = (),
    ) -> tuple[State, dict[str, jax.Array]]:
        prior: Any = images
        if prior_encoder is not None:
            x = augment.center(jnp, images, mean, std)
            prior = jax.lax.stop_gradient(prior_encoder.apply(prior_variables, x, train=False))
        trainable = {"params": state["params"], "owned": state["owned"]}
        queue = state["queue"] if use_queue and queue_size > 0 else None
        grads, (parts, new_stats, projections, method_state) = jax.grad(
            loss_of, has_aux=True
        )(trainable, state, view_a, view_b, prior, queue, tuple(local_views))
        new = dict(state, batch_stats=new_stats, method_state=method_state)
        updates, new["opt_state"] = tx.update(grads["params"], state["opt_state"], state["params"])
        new["params"] = optax.apply_updates(
            state["params"], jax.tree.map(lambda u: -lr * u, updates)
        )
        if state["owned"]:
            # Arrays the method owns (SwAV's prototypes) have their own optimiser state.
            # Held still, they neither move nor advance it, as torch's optimiser skips a
            # parameter whose gradient is None; unit rows are projected back after the step.
            moving = owned_active > 0
            w = state["owned"]
            w_update, w_opt = tx.update(grads["owned"], state["owned_opt_state"], w)
            new["owned_opt_state"] = _where(moving, w_opt, state["owned_opt_state"])
            w = _where(moving, jax.tree.map(lambda p, u: p - lr * u, w, w_update), w)
            new["owned"] = {k: l2_normalize(jnp, v) if k in unit_rows else v for k, v in w.items()}
        if queue_size > 0:
            # Newest first; the oldest fall off the end.
            new["queue"] = jnp.concatenate([projections, state["queue"]], axis=1)[:, :queue_size]
        if "target" in state:
            new["target"] = jax.tree.map(
                lambda t, o: t + (1.0 - tau) * (o - t), state["target"], new["params"]["online"]
            )
        logs = {"loss": parts.total, "align": parts.align, "constrain": parts.constrain}
        return new, logs

    return step


def _jax_device(name: str) -> jax.Device:
    kind, _, index = name.partition(":")
    platform = {"cpu": "cpu", "cuda": "gpu", "gpu": "gpu", "tpu": "tpu"}.get(kind)
    if platform is None:
        raise ValueError(f"--device must be cpu, cuda[:N], gpu[:N] or tpu[:N], got {name!r}")
    try:
        devices = jax.devices(platform)
    except RuntimeError:
        devices = []
    i = int(index) if index.isdigit() else 0
    if i >= len(devices):
        raise RuntimeError(f"--device {name}: no such {platform.upper()} device is available "
                           f"to JAX (it sees {jax.devices()})")
    return devices[i]


def _copy(tree: Any) -> Any:
    # Fresh buffers: a donated buffer may not also live in another part of the state.
    return jax.tree.map(jnp.copy, tree)


def _check_like(template: Any, restored: Any) -> None:
    for (path, want), got in zip(
        jax.tree_util.tree_flatten_with_path(template)[0], jax.tree.leaves(restored), strict=True
    ):
        got_shape, got_dtype = np.shape(got), np.asarray(got).dtype
        if got_shape != want.shape or got_dtype != want.dtype:
            raise ValueError(
                f"{jax.tree_util.keystr(path)} has shape {got_shape} and dtype {got_dtype}, "
                f"the model expects {want.shape} and {want.dtype}"
            )


# Fields that only the host reads (schedules, paths, logging): trainers whose configs
# differ only in these run the same compiled programs. Any other field, including one
# added later, gives new programs.
_HOST_ONLY_FIELDS = frozenset({
    "seed", "epochs", "batch_size", "out", "data_root", "lr", "warmup_epochs",
    "byol_tau_base", "swav_freeze_prototypes_epochs", "eval_every", "quiet",
})
_PROGRAM_CACHE_SIZE = 8


def _init_random_bits() -> contextlib.AbstractContextManager[Any]:
    # XLA compiles the partitionable threefry (JAX's default) several times more slowly,
    # seconds per initialisation on a CPU; sharding the initialisation is of no use here.
    switch = getattr(jax, "threefry_partitionable", None)
    return switch(False) if switch is not None else contextlib.nullcontext()


class _Programs:
    """The modules of one configuration and its compiled train step."""

    def __init__(self, config: RunConfig, dataset: Dataset, device: jax.Device) -> None:
        self.config, self.dataset = config, dataset
        on_accelerator = device.platform != "cpu"
        bf16 = config.precision == "bfloat16" or (config.precision == "auto" and on_accelerator)
        dtype = jnp.bfloat16 if bf16 else None
        self.encoder, feature_dim = build_encoder(
            dataset.image_shape, config.arch, width=config.cnn_width, dtype=dtype
        )
        entry = config.method_entry()
        head = projector(
            feature_dim, config.proj_hidden, config.proj_dim, entry.projector_layers,
            last_bn=entry.projector_last_bn, dtype=dtype,
        )
        self.online = _Online(self.encoder, head)
        self.predictor = (
            predictor(config.proj_dim, config.pred_hidden, dtype=dtype) if entry.predictor
            else None
        )
        self.tx = make_optimizer(config)
        self.frozen_prior = config.adc and config.adc_prior == "frozen_encoder"
        step = make_train_step(
            config, self.online, self.predictor, self.encoder if self.frozen_prior else None,
            self.tx, dataset.mean, dataset.std,
        )
        self.step = (
            step if config.compile == "off"
            else jax.jit(step, donate_argnums=0, static_argnames="use_queue")
        )
        # The arrays the method owns: (name, shape, unit rows), from its front-end's sizes.
        sizes = dict(zip(entry.sizes, config.loss_settings()[0], strict=True))
        self.owned_spec = tuple(
            (p.name, tuple(sizes[n] for n in p.shape), p.unit_rows) for p in entry.parameters
        )
        # The states the method carries between steps: (name, shape, unit-row start).
        self.state_spec = tuple(
            (s.name, tuple(sizes[n] for n in s.shape), s.init == "unit_rows")
            for s in entry.states
        )

    def init(self, seed: int) -> tuple[State, State]:
        """(params, batch_stats) of the online network (and predictor); ``params["owned"]``
        holds the arrays the method owns."""
        with _init_random_bits():
            return _initial_params(
                jax.random.PRNGKey(seed), self.online, self.predictor,
                tuple(self.dataset.image_shape), self.owned_spec,
            )

    def encode(self, variables: Any, images: jax.Array) -> jax.Array:
        """Eval-mode features of raw images."""
        mean, std = tuple(self.dataset.mean), tuple(self.dataset.std)
        return _encode(variables, images, self.encoder, mean, std)


# Initialisation and feature extraction depend on the modules alone (hashable, compared
# by value), so every configuration with the same networks shares their programs.


@partial(jax.jit, static_argnums=(1, 2, 3, 4))
def _initial_params(
    key: jax.Array, online: nn.Module, pred: MLPHead | None, image_shape: tuple[int, ...],
    owned_spec: tuple[tuple[str, tuple[int, ...], bool], ...],
) -> tuple[State, State]:
    k_online, k_pred, k_owned = jax.random.split(key, 3)
    online_vars = online.init(k_online, jnp.zeros((2, *image_shape), jnp.float32), train=False)
    params, stats = {"online": online_vars["params"]}, {"online": online_vars["batch_stats"]}
    if pred is not None:
        z = jnp.zeros((2, pred.in_dim), jnp.float32)
        pred_vars = pred.init(k_pred, z, train=False)
        params["predictor"], stats["predictor"] = pred_vars["params"], pred_vars["batch_stats"]
    params["owned"] = {}
    for key_i, (name, shape, unit_rows) in zip(
        jax.random.split(k_owned, max(1, len(owned_spec))), owned_spec, strict=False
    ):
        value = jax.random.normal(key_i, shape, jnp.float32)
        params["owned"][name] = l2_normalize(jnp, value) if unit_rows else value
    return params, stats


def _initial_method_state(
    key: jax.Array, spec: tuple[tuple[str, tuple[int, ...], bool], ...]
) -> dict[str, jax.Array]:
    """The method's states at the start: zeros, or unit rows (MoCo's queue)."""
    state = {}
    for key_i, (name, shape, unit_rows) in zip(
        jax.random.split(key, max(1, len(spec))), spec, strict=False
    ):
        state[name] = (
            l2_normalize(jnp, jax.random.normal(key_i, shape, jnp.float32)) if unit_rows
            else jnp.zeros(shape, jnp.float32)
        )
    return state


@partial(jax.jit, static_argnums=(2, 3, 4))
def _encode(
    variables: Any, images: jax.Array, encoder: nn.Module, mean: tuple[float, ...],
    std: tuple[float, ...],
) -> jax.Array:
    x = augment.center(jnp, images, mean, std)
    return jnp.asarray(encoder.apply(variables, x, train=False), jnp.float32)


_PROGRAMS: OrderedDict[str, _Programs] = OrderedDict()


def _programs(config: RunConfig, dataset: Dataset, device: jax.Device) -> _Programs:
    """Shared by trainers with the same programs (seeds, learning rates, runs in a study)."""
    fields = {k: v for k, v in config.to_dict().items() if k not in _HOST_ONLY_FIELDS}
    key = json.dumps(
        [fields, dataset.name, dataset.image_shape, dataset.mean, dataset.std, str(device)],
        sort_keys=True, default=repr,
    )
    if key in _PROGRAMS:
        _PROGRAMS.move_to_end(key)
    else:
        _PROGRAMS[key] = _Programs(config, dataset, device)
        while len(_PROGRAMS) > _PROGRAM_CACHE_SIZE:
            _PROGRAMS.popitem(last=False)
    return _PROGRAMS[key]


def _data_parallel_mesh(config: RunConfig, first: jax.Device) -> Mesh | None:
    """A one-axis mesh over ``config.devices`` devices of ``first``'s platform, or None."""
    if config.devices == 1:
        return None
    devices = [d for d in jax.devices(first.platform) if d.id >= first.id][: config.devices]
    if len(devices) < config.devices:
        hint = (
            f" (on CPU, start Python with XLA_FLAGS=--xla_force_host_platform_device_count="
            f"{config.devices}; glf-train sets it when JAX has not started yet)"
            if first.platform == "cpu" else ""
        )
        raise RuntimeError(
            f"--devices {config.devices}: JAX sees only {len(devices)} {first.platform} "
            f"device(s) from {first}{hint}"
        )
    return Mesh(np.array(devices), ("batch",))


def request_host_devices(count: int) -> None:
    """Ask XLA for ``count`` CPU devices, if JAX has not started its backends yet.

    Under plain ``jax.jit`` over arrays sharded on a mesh, a CPU run with several host
    devices computes exactly what the GPUs of a data-parallel run would.
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if count > 1 and "xla_force_host_platform_device_count" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={count}"


def launch(config: RunConfig, resume: bool, options: dict[str, Any]) -> None:
    """Before the trainer: CPU data parallelism needs XLA's host devices requested."""
    del resume, options
    if config.device == "cpu":
        request_host_devices(config.devices)


class JaxTrainer:
    """One method (optionally with ADC) on one encoder, trained with JAX/flax/optax.

    With ``devices > 1`` the batch is sharded over a one-axis mesh and the state is
    replicated; the step is the same ``jax.jit`` program over global arrays, so every
    statistic (the losses' and BatchNorm's) is over the global batch and the run computes
    what one device would, up to the order of floating-point sums.
    """

    xp = jnp
    checkpoint_name = CHECKPOINT_NAMES["jax"]
    batch_rows = slice(None)
    is_main = True

    def __init__(self, config: RunConfig, dataset: Dataset) -> None:
        self.config, self.dataset = config, dataset
        self.device = _jax_device(config.device)
        self.mesh = _data_parallel_mesh(config, self.device)
        self.placement: Any = self.device
        self.batch_placement: Any = self.device
        if self.mesh is not None:
            self.placement = NamedSharding(self.mesh, PartitionSpec())
            self.batch_placement = NamedSharding(self.mesh, PartitionSpec("batch"))
        self.programs = _programs(config, dataset, self.device)
        self.state = jax.device_put(self._initial_state(config.seed), self.placement)
        self.prior_variables: Any = None
        if self.programs.frozen_prior:
            # The encoder as initialised, frozen: input-space structure seen through
            # random features.
            self.prior_variables = _copy(self._encoder_variables(self.state))

    def _initial_state(self, seed: int) -> State:
        params, stats = self.programs.init(seed)
        owned = params.pop("owned")
        tx = self.programs.tx
        # Built outside the compiled init so that no two leaves share a buffer (the whole
        # state is donated to the step).
        state: State = {
            "params": params, "batch_stats": stats, "opt_state": tx.init(params),
            "owned": owned, "owned_opt_state": tx.init(owned),
        }
        entry = self.config.method_entry()
        if entry.momentum_target:
            state["target"] = _copy(params["online"])
        state["method_state"] = _initial_method_state(
            jax.random.PRNGKey(seed + 2), self.programs.state_spec
        )
        if self.config.swav_queue > 0:
            shape = (2, self.config.swav_queue, self.config.proj_dim)
            state["queue"] = jnp.zeros(shape, jnp.float32)
        return state

    # --- one step ----------------------------------------------------------------------

    def to_device(self, images: np.ndarray) -> jax.Array:
        return jax.device_put(np.ascontiguousarray(images), self.batch_placement)

    def train_step(
        self, view_a: Any, view_b: Any, prior: Any, inputs: StepInputs,
        local_views: tuple[Any, ...] = (),
    ) -> dict[str, Any]:
        # float32 scalars: same dtype every step (no retracing), whatever x64 says.
        self.state, logs = self.programs.step(
            self.state, view_a, view_b, prior, np.float32(inputs.lr),
            np.float32(inputs.ema_rate), np.float32(inputs.parameters_active),
            self.prior_variables, use_queue=inputs.use_queue, local_views=tuple(local_views),
        )
        return logs

    # --- evaluation --------------------------------------------------------------------

    @staticmethod
    def _encoder_variables(state: State) -> dict[str, Any]:
        return {
            "params": state["params"]["online"]["encoder"],
            "batch_stats": state["batch_stats"]["online"]["encoder"],
        }

    def _features(self, variables: Any, images: np.ndarray) -> np.ndarray:
        # Batches padded to a power of two: a few compiled shapes serve every split size,
        # and eval-mode BatchNorm treats each image on its own.
        n = len(images)
        padded = np.zeros((1 << max(n - 1, 0).bit_length(), *images.shape[1:]), images.dtype)
        padded[:n] = images
        variables = jax.device_put(variables, self.device)
        images_on_device = jax.device_put(padded, self.device)
        return np.asarray(self.programs.encode(variables, images_on_device))[:n]

    def features(self, images: np.ndarray) -> np.ndarray:
        return self._features(self._encoder_variables(self.state), images)

    def random_encoder_features(self, images: np.ndarray) -> np.ndarray:
        if not hasattr(self, "_random_variables"):
            params, stats = self.programs.init(self.config.seed + 1)
            variables = self._encoder_variables({"params": params, "batch_stats": stats})
            self._random_variables = jax.device_put(variables, self.device)
        return self._features(self._random_variables, images)

    # --- checkpoints -------------------------------------------------------------------

    def _saved(self) -> dict[str, Any]:
        tree: dict[str, Any] = {"state": self.state}
        if self.prior_variables is not None:
            tree["prior_encoder"] = self.prior_variables
        return tree

    def save(self, path: Path, meta: dict[str, Any]) -> None:
        # The metadata is a JSON string beside the arrays: None and nested dicts survive
        # exactly, and it can be read before any array is restored.
        tree = {
            "format": _FORMAT,
            "meta": json.dumps(meta),
            **flax.serialization.to_state_dict(jax.device_get(self._saved())),
        }
        # The checksum is of the tree as msgpack gives it back, which is what load sees.
        tree[CHECKSUM_KEY] = tree_digest(
            flax.serialization.msgpack_restore(flax.serialization.msgpack_serialize(tree))
        )
        report.atomic_write_bytes(path, flax.serialization.msgpack_serialize(tree))

    def load(self, path: Path, check: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        with checkpoint_problem(path, "the checkpoint is unreadable"):
            raw = flax.serialization.msgpack_restore(Path(path).read_bytes())
            if raw.get("format") != _FORMAT:
                raise ValueError(f"not a {_FORMAT} checkpoint (format {raw.get('format')!r})")
            verify(raw, path)  # its own CheckpointError passes through unchanged
            raw.pop(CHECKSUM_KEY)
            meta = dict(json.loads(raw["meta"]))
            int(meta["epoch"])
        check(meta)
        with checkpoint_problem(path, "it does not fit this model"):
            template = self._saved()
            restored = flax.serialization.from_state_dict(
                template, {key: raw[key] for key in template}
            )
            _check_like(template, restored)
        restored = jax.device_put(restored, self.placement)
        self.state = restored["state"]
        if "prior_encoder" in restored:
            self.prior_variables = restored["prior_encoder"]
        return meta
