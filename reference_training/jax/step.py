"""The JAX trainer: flax.linen model, one jitted optax step, EMA target, msgpack checkpoints.

Everything else (batch order, views, logging, evaluation) is the shared loop in
:mod:`reference_training.loop`. This mirrors :mod:`reference_training.torch.step`:

- the trainer's state is one pytree (``params``, ``batch_stats``, ``opt_state`` and,
  per method, the BYOL ``target`` or the SwAV ``prototypes`` with their own optimiser
  state); :func:`make_train_step` returns the pure step on it, which the trainer jits
  once with the state's buffers donated;
- the learning rate, BYOL's EMA rate and SwAV's "prototypes may move" flag enter the
  step as traced scalars, so changing them each step never recompiles;
- SwAV's queue (``--swav-queue Q``) is a ``(2, Q, D)`` float32 array in the state,
  updated by the step; whether the step uses it (once full, as torch decides from its
  host-side count) is a static argument, so a run compiles at most two programs;
- the optimisers are torch's: AdamW (decoupled weight decay ``p -= lr * wd * p``) or SGD
  with momentum 0.9 and L2 weight decay added to the gradient; the learning rate scales
  the optimiser's output, so it is not part of the optimiser state;
- the loss is :func:`loss_parts`, a pure function of the network outputs, through
  ``glf_losses``' ``<method>_parts`` and ``with_adc`` as the torch front-ends call them.

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
from glf_losses.backends.jax import swav_scores
from jax.sharding import Mesh, NamedSharding, PartitionSpec

import glf_losses
from glf_losses._lib import GLFParts, l2_normalize
from reference_training import augment, report
from reference_training.checksum import CHECKSUM_KEY, tree_digest, verify
from reference_training.config import RunConfig
from reference_training.data import Dataset
from reference_training.errors import checkpoint_problem
from reference_training.jax.model import MLPHead, build_encoder, predictor, projector
from reference_training.rundir import CHECKPOINT_NAMES
from reference_training.schedules import byol_tau, learning_rate, projector_layers

__all__ = [
    "JaxTrainer", "loss_parts", "make_optimizer", "make_train_step", "request_host_devices",
]

State = dict[str, Any]
TrainStep = Callable[..., tuple[State, dict[str, jax.Array]]]

_FORMAT = "glf-train-jax/1"


class _Online(nn.Module):
    """Encoder then projection head; the network BYOL's target copies."""

    encoder: nn.Module
    head: nn.Module

    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        return self.head(self.encoder(x, train), train)


def loss_parts(
    config: RunConfig, outputs: Sequence[Any], prior: Any, prototypes: Any = None,
    queue: Any = None,
) -> GLFParts:
    """The method's ``GLFParts`` (ADC included when ``config.adc``) from network outputs.

    ``outputs`` is ``(z_a, z_b)``, or ``(p_a, p_b, t_a, t_b)`` for BYOL (online
    predictions, then target projections, taken under stop-gradient by the loss);
    ``prototypes`` is SwAV's ``(K, D)`` matrix, normalised here like the projections.
    ``queue`` is SwAV's earlier projections of both views, ``(queue_a, queue_b)`` of shape
    ``(Q, D)`` each (or one ``(2, Q, D)`` array): scored against the current prototypes
    like the projections and put before them in Sinkhorn's input, as torch's
    ``SwAVLoss.parts(z_a, z_b, queue_a, queue_b)`` does.
    Pure and differentiable in ``outputs`` and ``prototypes``: the same function the
    train step calls, and what a cross-framework check feeds with fixed arrays.
    """
    adc = glf_losses.ADC(**config.adc_kwargs()) if config.adc else None
    if queue is not None and config.method != "swav":
        raise ValueError(f"only swav has a queue, not {config.method!r}")
    if config.method == "byol":
        p_a, p_b, t_a, t_b = outputs
        # ADC acts on the online predictions, BYOL's only outputs that carry gradient.
        return glf_losses.with_adc(glf_losses.byol_parts(p_a, p_b, t_a, t_b), adc, p_a, p_b,
                                   prior)
    z_a, z_b = outputs
    if config.method == "barlow_twins":
        parts = glf_losses.barlow_twins_parts(z_a, z_b, config.lambd)
    elif config.method == "simclr":
        parts = glf_losses.simclr_parts(z_a, z_b, config.temperature)
    elif config.method == "swav":
        if prototypes is None:
            raise ValueError("swav needs the prototypes")
        w = prototypes.astype(z_a.dtype)
        queue_scores: list[Any] = [None, None]
        if queue is not None:
            # Each queue against the prototypes in its own dtype, as the torch front-end.
            queue_scores = [swav_scores(q, prototypes.astype(q.dtype)) for q in queue]
        parts = glf_losses.swav_parts(
            swav_scores(z_a, w), swav_scores(z_b, w), config.swav_temperature,
            config.swav_epsilon, config.swav_sinkhorn_iters,
            queue_a=queue_scores[0], queue_b=queue_scores[1],
        )
    else:
        raise ValueError(f"unknown method {config.method!r}")
    return glf_losses.with_adc(parts, adc, z_a, z_b, prior)


def make_optimizer(config: RunConfig) -> optax.GradientTransformation:
    """torch's AdamW or SGD(momentum=0.9), without the learning rate (the step applies it).

    AdamW: ``p -= lr * (adam(g) + wd * p)``; SGD: ``p -= lr * momentum_buffer(g + wd * p)``.
    """
    if config.optimizer == "adamw":
        return optax.chain(
            optax.scale_by_adam(b1=0.9, b2=0.999, eps=1e-8),
            optax.add_decayed_weights(config.weight_decay),
        )
    return optax.chain(optax.add_decayed_weights(config.weight_decay), optax.trace(decay=0.9))


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
    """The pure train step ``(state, view_a, view_b, images, lr, tau, proto_active,
    prior_variables, use_queue=False) -> (state, logs)``; ``logs`` holds 0-d ``loss``,
    ``align``, ``constrain``.

    ``images`` are the raw batch (ADC's default prior); with ``prior_encoder`` the prior
    is that encoder's eval-mode features of the centred batch under
    ``prior_variables``. ``tau`` is BYOL's EMA rate; ``proto_active`` (0 or 1) lets
    SwAV's prototypes and their optimiser state move.

    With SwAV's queue the state holds ``queue``, ``(2, Q, D)`` float32 earlier
    projections of both views, newest first. ``use_queue`` (a Python bool, static under
    jit) passes it to the loss; the caller sets it once the queue is full. Every step
    then puts this step's projections (computed before the update) in front of the queue
    and drops the oldest rows.
    """
    swav = config.method == "swav"
    queue_size = config.swav_queue if swav else 0

    def forward(module: nn.Module, params: Any, stats: Any, x: jax.Array) -> tuple[Any, Any]:
        out, updates = module.apply(
            {"params": params, "batch_stats": stats}, x, train=True, mutable=["batch_stats"]
        )
        return out, updates["batch_stats"]

    def objective(
        trainable: State, state: State, view_a: jax.Array, view_b: jax.Array, prior: Any,
        queue: jax.Array | None,
    ) -> tuple[jax.Array, tuple[GLFParts, Any, jax.Array]]:
        params, stats = trainable["params"], state["batch_stats"]
        z_a, online_stats = forward(online, params["online"], stats["online"], view_a)
        z_b, online_stats = forward(online, params["online"], online_stats, view_b)
        new_stats = {"online": online_stats}
        outputs: tuple[jax.Array, ...] = (z_a, z_b)
        if pred is not None:
            p_a, pred_stats = forward(pred, params["predictor"], stats["predictor"], z_a)
            p_b, pred_stats = forward(pred, params["predictor"], pred_stats, z_b)
            new_stats["predictor"] = pred_stats
            # The target's running averages are discarded: it always uses batch statistics.
            t_a, _ = forward(online, state["target"], stats["online"], view_a)
            t_b, _ = forward(online, state["target"], stats["online"], view_b)
            outputs = (p_a, p_b, jax.lax.stop_gradient(t_a), jax.lax.stop_gradient(t_b))
        parts = loss_parts(config, outputs, prior, trainable.get("prototypes"), queue)
        projections = jax.lax.stop_gradient(jnp.stack([z_a, z_b])).astype(jnp.float32)
        return parts.total, (parts, new_stats, projections)

    def step(
        state: State, view_a: jax.Array, view_b: jax.Array, images: jax.Array, lr: jax.Array,
        tau: jax.Array, proto_active: jax.Array, prior_variables: Any, use_queue: bool = False,
    ) -> tuple[State, dict[str, jax.Array]]:
        prior: Any = images
        if prior_encoder is not None:
            x = augment.center(jnp, images, mean, std)
            prior = jax.lax.stop_gradient(prior_encoder.apply(prior_variables, x, train=False))
        trainable = {"params": state["params"]}
        if swav:
            trainable["prototypes"] = state["prototypes"]
        queue = state["queue"] if use_queue and queue_size > 0 else None
        grads, (parts, new_stats, projections) = jax.grad(objective, has_aux=True)(
            trainable, state, view_a, view_b, prior, queue
        )
        new = dict(state, batch_stats=new_stats)
        updates, new["opt_state"] = tx.update(grads["params"], state["opt_state"], state["params"])
        new["params"] = optax.apply_updates(
            state["params"], jax.tree.map(lambda u: -lr * u, updates)
        )
        if swav:
            # Frozen prototypes neither move nor advance their optimiser state, as torch's
            # optimiser skips a parameter whose gradient is None.
            moving = proto_active > 0
            w = state["prototypes"]
            w_update, w_opt = tx.update(grads["prototypes"], state["prototypes_opt_state"], w)
            new["prototypes_opt_state"] = _where(moving, w_opt, state["prototypes_opt_state"])
            w = jnp.where(moving, w - lr * w_update, w)
            new["prototypes"] = l2_normalize(jnp, w)
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
        head = projector(
            feature_dim, config.proj_hidden, config.proj_dim, projector_layers(config.method),
            dtype=dtype,
        )
        self.online = _Online(self.encoder, head)
        self.predictor = (
            predictor(config.proj_dim, config.pred_hidden, dtype=dtype)
            if config.method == "byol" else None
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
        self.prototypes_shape = (
            (config.swav_prototypes, config.proj_dim) if config.method == "swav" else None
        )

    def init(self, seed: int) -> tuple[State, State]:
        """(params, batch_stats) of the online network (and predictor), plus prototypes."""
        with _init_random_bits():
            return _initial_params(
                jax.random.PRNGKey(seed), self.online, self.predictor,
                tuple(self.dataset.image_shape), self.prototypes_shape,
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
    prototypes_shape: tuple[int, int] | None,
) -> tuple[State, State]:
    k_online, k_pred, k_proto = jax.random.split(key, 3)
    online_vars = online.init(k_online, jnp.zeros((2, *image_shape), jnp.float32), train=False)
    params, stats = {"online": online_vars["params"]}, {"online": online_vars["batch_stats"]}
    if pred is not None:
        z = jnp.zeros((2, pred.in_dim), jnp.float32)
        pred_vars = pred.init(k_pred, z, train=False)
        params["predictor"], stats["predictor"] = pred_vars["params"], pred_vars["batch_stats"]
    if prototypes_shape is not None:
        params["prototypes"] = l2_normalize(
            jnp, jax.random.normal(k_proto, prototypes_shape, jnp.float32)
        )
    return params, stats


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
        # SwAV's queue: rows filled so far (capped at its size), counted on the host, as
        # torch does, to choose between the step without and with the queue.
        self.queue_size = config.swav_queue if config.method == "swav" else 0
        self.queue_filled = 0

    def _initial_state(self, seed: int) -> State:
        params, stats = self.programs.init(seed)
        prototypes = params.pop("prototypes", None)
        tx = self.programs.tx
        # Built outside the compiled init so that no two leaves share a buffer (the whole
        # state is donated to the step).
        state: State = {"params": params, "batch_stats": stats, "opt_state": tx.init(params)}
        if self.config.method == "byol":
            state["target"] = _copy(params["online"])
        if prototypes is not None:
            state["prototypes"] = prototypes
            state["prototypes_opt_state"] = tx.init(prototypes)
            if self.config.swav_queue > 0:
                shape = (2, self.config.swav_queue, self.config.proj_dim)
                state["queue"] = jnp.zeros(shape, jnp.float32)
        return state

    # --- one step ----------------------------------------------------------------------

    def to_device(self, images: np.ndarray) -> jax.Array:
        return jax.device_put(np.ascontiguousarray(images), self.batch_placement)

    def train_step(
        self, view_a: Any, view_b: Any, prior: Any, *, epoch: int, step: int, total_steps: int
    ) -> dict[str, Any]:
        config = self.config
        # float32 scalars: same dtype every step (no retracing), whatever x64 says.
        lr = np.float32(learning_rate(config, step, total_steps))
        tau = np.float32(byol_tau(config, step, total_steps) if config.method == "byol" else 1)
        active = np.float32(epoch >= config.swav_freeze_prototypes_epochs)
        use_queue = self.queue_filled >= self.queue_size > 0
        self.state, logs = self.programs.step(
            self.state, view_a, view_b, prior, lr, tau, active, self.prior_variables,
            use_queue=use_queue,
        )
        if self.queue_size > 0:
            self.queue_filled = min(self.queue_size, self.queue_filled + int(view_a.shape[0]))
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
        if self.queue_size > 0:
            tree["queue_filled"] = np.asarray(self.queue_filled, np.int64)
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
        queue_filled = restored.pop("queue_filled", None)
        restored = jax.device_put(restored, self.placement)
        self.state = restored["state"]
        if "prior_encoder" in restored:
            self.prior_variables = restored["prior_encoder"]
        if queue_filled is not None:
            self.queue_filled = int(queue_filled)
        return meta
