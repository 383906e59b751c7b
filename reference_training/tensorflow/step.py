"""The TensorFlow trainer: Keras 3 models, one XLA-compiled train step, EMA target and a
single-file checkpoint.

Everything else (batch order, views, logging, evaluation) is the shared loop in
:mod:`glf_train.loop`.

The whole step (forward passes, loss, gradients, optimiser update, prototype
normalisation, EMA) is one ``tf.function(jit_compile=True)``. What changes per step (the
learning rate, BYOL's tau, SwAV's prototype gate) enters as scalar tensors, so the
function is traced once per run; with SwAV's queue, twice (before and after the queue is
full: the host counts its rows, as the PyTorch trainer does, and passes the choice as a
Python bool).

Optimisers follow the PyTorch trainer's choices with Keras's implementations: AdamW with
PyTorch's betas and eps (Keras adds eps to ``sqrt(v)`` after bias correction of the step
size, PyTorch after bias correction of ``v``, a difference of order eps) and decoupled
weight decay; SGD with momentum 0.9 and L2 weight decay added to the gradient, as
PyTorch's ``weight_decay`` does (Keras's momentum buffer holds ``lr * grad`` rather than
``grad``, the same updates while the learning rate is constant).
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from glf_losses.backends import tensorflow as tf_backend
from glf_train import augment, objective, report
from glf_train.checksum import CHECKSUM_KEY, tree_digest, verify
from glf_train.config import RunConfig
from glf_train.data import Dataset
from glf_train.errors import CheckpointError, checkpoint_problem
from glf_train.rundir import CHECKPOINT_NAMES
from glf_train.schedules import StepInputs
from glf_train.tensorflow.model import (
    build_encoder,
    predictor,
    projector,
    synchronized_batch_norm,
)

from glf_losses import GLFParts, registry

__all__ = ["TensorFlowTrainer", "launch"]

# Checkpoint members besides the weights: the loop's metadata and the variables' layout.
_META, _LAYOUT = "meta", "layout"


def _tf_device(name: str) -> str:
    """TensorFlow's device string for ``--device`` (``cpu``, ``cuda[:i]`` or ``gpu[:i]``)."""
    if name == "cpu":
        return "/CPU:0"
    kind, _, index = name.partition(":")
    if kind in ("cuda", "gpu") and (index or "0").isdigit():
        visible = tf.config.list_logical_devices("GPU")
        if int(index or 0) >= len(visible):
            raise RuntimeError(
                f"--device {name}: TensorFlow sees no such CUDA device ({len(visible)} visible)"
            )
        return f"/GPU:{int(index or 0)}"
    raise RuntimeError(f"--device must be 'cpu', 'cuda' or 'cuda:<index>', got {name!r}")


def _copy_of(model: keras.Model, build: Callable[[], keras.Model]) -> keras.Model:
    """A second model from ``build`` holding ``model``'s current values."""
    twin = build()
    for dst, src in zip(twin.weights, model.weights, strict=True):
        dst.assign(src)
    return twin


def _unsupported_xla_ops(message: str) -> list[str]:
    """Op names from XLA's "Detected unsupported operations" error, else []."""
    if "unsupported operations" not in message:
        return []
    return sorted(set(re.findall(r"No registered '(\w+)' OpKernel for XLA", message))) or [
        "(unnamed)"
    ]


def launch(config: RunConfig, resume: bool, options: dict[str, Any]) -> None:
    """Before the trainer: CPU data parallelism needs logical CPU devices, which
    TensorFlow accepts only before its runtime starts."""
    del resume, options
    if config.device == "cpu" and config.devices > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        with contextlib.suppress(RuntimeError):  # started already: the trainer checks
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration()] * config.devices
            )


def _strategy(config: RunConfig, first: str) -> tf.distribute.Strategy | None:
    if config.devices == 1:
        return None
    kind = "GPU" if first.startswith("/GPU") else "CPU"
    start = int(first.rsplit(":", 1)[1])
    visible = tf.config.list_logical_devices(kind)
    if len(visible) < start + config.devices:
        raise RuntimeError(
            f"--devices {config.devices}: TensorFlow sees {len(visible)} {kind} device(s)"
            + (" (logical CPU devices must be configured before TensorFlow starts)"
               if kind == "CPU" else "")
        )
    names = [f"/{kind}:{start + i}" for i in range(config.devices)]
    return tf.distribute.MirroredStrategy(
        names, cross_device_ops=tf.distribute.ReductionToOneDevice()
    )


class TensorFlowTrainer:
    """One method (optionally with ADC) on one encoder, trained with TensorFlow + Keras 3.

    With ``devices > 1`` a ``MirroredStrategy`` holds one replica per device: each takes
    its rows of the global batch, BatchNorm is synchronised, the loss (computed in the
    replica context, so over the global batch) gives each replica the exact gradient of
    its rows, and the optimiser sums the replicas' gradients. The replicated step runs as
    a TensorFlow graph (XLA does not compile the cross-replica collectives there).
    """

    xp = tf_backend.xp
    checkpoint_name = CHECKPOINT_NAMES["tensorflow"]
    batch_rows = slice(None)
    is_main = True

    def __init__(self, config: RunConfig, dataset: Dataset) -> None:
        if keras.backend.backend() != "tensorflow":
            raise RuntimeError(
                "--backend tensorflow needs Keras on its TensorFlow backend; Keras is using "
                f"{keras.backend.backend()} (set KERAS_BACKEND=tensorflow)"
            )
        self.config, self.dataset = config, dataset
        self.device = _tf_device(config.device)
        on_gpu = self.device.startswith("/GPU")
        bf16 = config.precision == "bfloat16" or (config.precision == "auto" and on_gpu)
        # bfloat16 compute with float32 variables; the losses compute in float32 anyway.
        self._dtype = "mixed_bfloat16" if bf16 else None
        keras.utils.set_random_seed(config.seed)
        self.strategy = _strategy(config, self.device)
        if self.strategy is None:
            with tf.device(self.device):
                self._build(config)
        else:
            with self.strategy.scope(), synchronized_batch_norm():
                self._build(config)
        self.jit_compile = config.compile != "off" and self.strategy is None
        self._step_fn = tf.function(self._step, jit_compile=self.jit_compile, autograph=False)
        if self.strategy is not None:
            self._step_fn = tf.function(self._replicated_step, autograph=False)
        self._encode_fns: dict[int, Any] = {}

    def _new_encoder(self) -> keras.Model:
        encoder, self._feature_dim = build_encoder(
            self.dataset.image_shape, self.config.arch, width=self.config.cnn_width,
            dtype=self._dtype,
        )
        return encoder

    def _new_head(self) -> keras.Sequential:
        c = self.config
        return projector(
            self._feature_dim, c.proj_hidden, c.proj_dim, c.method_entry().projector_layers,
            last_bn=c.method_entry().projector_last_bn, dtype=self._dtype,
        )

    def _build(self, config: RunConfig) -> None:
        # Randomly initialised parts first, copies last: building a copy draws from the
        # seeded stream too, and must not shift any other part's initial values.
        self.entry = entry = config.method_entry()
        self.encoder = self._new_encoder()
        self.head = self._new_head()
        self.predictor: keras.Sequential | None = None
        if entry.predictor:
            self.predictor = predictor(config.proj_dim, config.pred_hidden, dtype=self._dtype)
        self.loss_fn: Any = objective.front_end(config, tf_backend)
        self.target: tuple[keras.Model, keras.Sequential] | None = None
        if entry.momentum_target:
            self.target = (_copy_of(self.encoder, self._new_encoder),
                           _copy_of(self.head, self._new_head))
        self.prior_encoder: keras.Model | None = None
        if config.adc and config.adc_prior == "frozen_encoder":
            # The encoder as initialised, frozen: input-space structure seen through
            # random features (a checkpointed encoder can be loaded into it instead).
            self.prior_encoder = _copy_of(self.encoder, self._new_encoder)
        self._trainable = [*self.encoder.trainable_weights, *self.head.trainable_weights]
        if self.predictor is not None:
            self._trainable += self.predictor.trainable_weights
        self._trainable += self.loss_fn.trainable_weights
        if config.optimizer == "adamw":
            self.optimizer: keras.optimizers.Optimizer = keras.optimizers.AdamW(
                learning_rate=config.lr, weight_decay=config.weight_decay, epsilon=1e-8
            )
            # Weight decay on weight matrices and kernels only: BatchNorm's scales and
            # shifts and the biases (the 1-d variables) are not decayed, as SSL recipes do.
            self.optimizer.exclude_from_weight_decay(
                var_list=[v for v in self._trainable if len(v.shape) <= 1]
            )
        else:
            self.optimizer = keras.optimizers.SGD(learning_rate=config.lr, momentum=0.9)
        # Built now, outside the compiled step, so its variables exist for a checkpoint
        # restore before the first step.
        self.optimizer.build(self._trainable)
        # SwAV's queue: earlier projections of both views (newest first), used once full
        # (the loop decides when).
        self.queue_size = config.swav_queue
        self.queue: keras.Variable | None = None
        if self.queue_size > 0:
            self.queue = keras.Variable(
                np.zeros((2, self.queue_size, config.proj_dim), np.float32),
                trainable=False, dtype="float32", name="swav_queue",
            )

    # --- one step ----------------------------------------------------------------------

    def to_device(self, images: np.ndarray) -> tf.Tensor:
        with tf.device(self.device):
            return tf.constant(np.ascontiguousarray(images))

    def _prior(self, images: tf.Tensor) -> tf.Tensor:
        if self.prior_encoder is None:
            return images
        x = augment.center(self.xp, images, self.dataset.mean, self.dataset.std)
        return tf.stop_gradient(self.prior_encoder(x, training=False))

    def loss_parts(
        self, *args: tf.Tensor, prior: tf.Tensor | None = None, local_z: tf.Tensor | None = None
    ) -> GLFParts:
        """What the step differentiates: the method's parts (+ ADC) on its outputs.

        ``(z_a, z_b)`` projections, SwAV's ``(z_a, z_b, queue_a, queue_b)`` with its full
        queue, or BYOL's ``(p_a, p_b, t_a, t_b)``; ``prior`` as the step passes it (the
        raw batch, or frozen features); ``local_z`` the ``(L, N, D)`` online projections of
        the local crops (``--local-crops``).
        """
        local = {} if local_z is None else {str(self.entry.local_input): local_z}
        parts: GLFParts = self.loss_fn.parts(*args, prior=prior, **local)
        return objective.with_controls(
            self.config, parts, args[: len(self.entry.inputs)], prior
        )

    def _online(self, x: tf.Tensor) -> tf.Tensor:
        return self.head(self.encoder(x, training=True), training=True)

    def _step(
        self, view_a: tf.Tensor, view_b: tf.Tensor, images: tf.Tensor, lr: tf.Tensor,
        tau: tf.Tensor, prototype_gate: tf.Tensor, use_queue: bool = False,
        local_views: tuple[tf.Tensor, ...] = (),
    ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, dict[str, tf.Tensor]]:
        prior = self._prior(images) if self.config.adc else None
        views = {"a": view_a, "b": view_b}
        outputs: dict[str, tf.Tensor] = {}
        if self.target is not None:
            # The target runs in training mode (batch statistics), as BYOL's does; its own
            # BatchNorm statistics are overwritten from the online network below.
            t_enc, t_head = self.target
            for v in objective.views_through(self.config, "target"):
                outputs[f"target_{v}"] = tf.stop_gradient(
                    t_head(t_enc(views[v], training=True), training=True)
                )
        with tf.GradientTape() as tape:
            z_a, z_b = self._online(view_a), self._online(view_b)
            outputs.update(online_a=z_a, online_b=z_b)
            local_z = None
            if local_views:
                # Multi-crop: the online network alone sees the local crops, all in one
                # forward pass (one set of BatchNorm statistics), as the authors' code
                # runs the crops of one size together; (L * N, D) rows back to (L, N, D).
                z = self._online(tf.concat(local_views, axis=0))
                local_z = tf.reshape(z, (len(local_views), -1, z.shape[-1]))
            if self.predictor is not None:
                for v in objective.views_through(self.config, "predicted"):
                    outputs[f"predicted_{v}"] = self.predictor(
                        outputs[f"online_{v}"], training=True
                    )
            args = objective.method_inputs(self.config, outputs)
            if use_queue and self.queue is not None:
                queue = self.queue.value
                args = (*args, queue[0], queue[1])
            parts = self.loss_parts(*args, prior=prior, local_z=local_z)
            loss = parts.total
        # The states advance from the outputs the loss saw (MoCo: this step's keys).
        n_inputs = len(self.entry.inputs)
        new_states = registry.method_state(
            self.entry, {s.name: getattr(self.loss_fn, s.name).value for s in self.entry.states},
            *(tf.stop_gradient(tf.cast(a, tf.float32)) for a in args[:n_inputs]),
            **{p.name: getattr(self.loss_fn, p.name).value for p in self.entry.parameters},
            **self.loss_fn.hyperparameters,
        ) if self.entry.states else {}
        grads = tape.gradient(loss, self._trainable)
        if self.config.optimizer == "sgd" and self.config.weight_decay:
            # The optimiser sums the replicas' gradients: each adds its share of the decay.
            wd = self.config.weight_decay / self.config.devices
            grads = [g + wd * v.value if len(v.shape) > 1 else g
                     for g, v in zip(grads, self._trainable, strict=True)]
        owned = [getattr(self.loss_fn, p.name) for p in self.entry.parameters]
        if owned:
            # Arrays the method owns may be held still at first (SwAV's prototypes, so
            # that the codes do not chase them); a zero gradient (and AdamW's uniform
            # decay, undone by the re-normalisation) leaves them unchanged.
            grads = [g * prototype_gate if any(v is w for w in owned) else g
                     for g, v in zip(grads, self._trainable, strict=True)]
        if self.strategy is None:
            self.optimizer.learning_rate.assign(lr)
        self.optimizer.apply(grads, self._trainable)
        if self.strategy is None:
            self._after_update(tau)
            self._store_states(new_states)
            if self.queue is not None:
                # This step's projections (before the update), newest first; the oldest
                # fall off the end.
                projections = tf.stop_gradient(tf.cast(tf.stack([z_a, z_b]), tf.float32))
                self.queue.assign(
                    tf.concat([projections, self.queue.value], axis=1)[:, : self.queue_size]
                )
        return loss, parts.align, parts.constrain, new_states

    def _store_states(self, states: dict[str, tf.Tensor]) -> None:
        for name, value in states.items():
            getattr(self.loss_fn, name).assign(value)

    def _after_update(self, tau: tf.Tensor) -> None:
        self.loss_fn.after_step()
        if self.target is not None:
            online = [*self.encoder.weights, *self.head.weights]
            target = [*self.target[0].weights, *self.target[1].weights]
            for t, o in zip(target, online, strict=True):
                # Parameters follow the EMA; BatchNorm statistics are copied.
                t.assign(t.value + (1.0 - tau) * (o.value - t.value) if o.trainable else o.value)

    def _replicated_step(
        self, view_a: tf.Tensor, view_b: tf.Tensor, images: tf.Tensor, lr: tf.Tensor,
        tau: tf.Tensor, prototype_gate: tf.Tensor, local_views: tuple[tf.Tensor, ...] = (),
    ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, dict[str, tf.Tensor]]:
        assert self.strategy is not None
        rows = self.config.batch_size // self.config.devices

        def replica(*args: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, Any]:
            i = tf.distribute.get_replica_context().replica_id_in_sync_group
            local = [x[i * rows : (i + 1) * rows] for x in args[:3]]
            crops = tuple(x[i * rows : (i + 1) * rows] for x in args[6:])
            return self._step(*local, *args[3:6], local_views=crops)

        # Variables shared by the replicas change in the cross-replica context only.
        self.optimizer.learning_rate.assign(lr)
        results = self.strategy.run(
            replica, args=(view_a, view_b, images, lr, tau, prototype_gate, *local_views)
        )
        self._after_update(tau)
        # Every replica holds the global batch's loss and the same new states (the
        # states are global statistics): the first replica's are the values.
        first = self.strategy.experimental_local_results
        loss, align, constrain, states = results
        self._store_states({k: first(v)[0] for k, v in states.items()})
        return first(loss)[0], first(align)[0], first(constrain)[0], {}

    def train_step(
        self, view_a: Any, view_b: Any, prior: Any, inputs: StepInputs,
        local_views: tuple[Any, ...] = (),
    ) -> dict[str, Any]:
        lr = tf.constant(inputs.lr, tf.float32)
        tau = tf.constant(inputs.ema_rate, tf.float32)
        gate = tf.constant(1.0 if inputs.parameters_active else 0.0, tf.float32)
        args = (view_a, view_b, prior, lr, tau, gate)
        # A Python bool: part of tf.function's trace key, so two traces at most.
        options: dict[str, Any] = {"use_queue": True} if inputs.use_queue else {}
        if local_views:
            # A tuple of tensors: the number of crops is part of the trace key, not a value.
            options["local_views"] = tuple(local_views)
        with tf.device(self.device):
            try:
                loss, align, constrain, _ = self._step_fn(*args, **options)
            except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError) as err:
                ops = _unsupported_xla_ops(str(err)) if self.jit_compile else []
                if not ops:
                    raise
                # XLA compiles before anything runs, so no state has changed yet.
                print(
                    f"glf-train: XLA cannot compile {', '.join(ops)} on {self.device}; "
                    "the train step runs as a TensorFlow graph without XLA",
                    file=sys.stderr, flush=True,
                )
                self.jit_compile = False
                self._step_fn = tf.function(self._step, jit_compile=False, autograph=False)
                loss, align, constrain, _ = self._step_fn(*args, **options)
        return {"loss": loss, "align": align, "constrain": constrain}

    # --- evaluation --------------------------------------------------------------------

    def _encode(self, encoder: keras.Model, images: np.ndarray) -> np.ndarray:
        fn = self._encode_fns.get(id(encoder))
        if fn is None:

            def forward(x: tf.Tensor) -> tf.Tensor:
                x = augment.center(self.xp, x, self.dataset.mean, self.dataset.std)
                return tf.cast(encoder(x, training=False), tf.float32)

            # One trace per batch shape at most: the full batches and the last one.
            fn = self._encode_fns[id(encoder)] = tf.function(
                forward, reduce_retracing=True, autograph=False
            )
        with tf.device(self.device):
            return fn(self.to_device(images)).numpy()

    def features(self, images: np.ndarray) -> np.ndarray:
        return self._encode(self.encoder, images)

    def random_encoder_features(self, images: np.ndarray) -> np.ndarray:
        if not hasattr(self, "_random_encoder"):
            keras.utils.set_random_seed(self.config.seed + 1)
            with tf.device(self.device):
                self._random_encoder = self._new_encoder()
        return self._encode(self._random_encoder, images)

    # --- checkpoints -------------------------------------------------------------------

    def _groups(self) -> dict[str, list[Any]]:
        """Every variable of the run's state, by group, in a fixed order."""
        groups: dict[str, list[Any]] = {
            "encoder": self.encoder.weights,
            "head": self.head.weights,
            "loss_fn": self.loss_fn.weights,
            "optimizer": self.optimizer.variables,
        }
        if self.predictor is not None:
            groups["predictor"] = self.predictor.weights
        if self.target is not None:
            groups["target_encoder"] = self.target[0].weights
            groups["target_head"] = self.target[1].weights
        if self.prior_encoder is not None:
            groups["prior_encoder"] = self.prior_encoder.weights
        if self.queue is not None:
            groups["swav_queue"] = [self.queue]
        return groups

    def save(self, path: Path, meta: dict[str, Any]) -> None:
        arrays: dict[str, np.ndarray] = {}
        layout: dict[str, list[list[Any]]] = {}
        for group, variables in self._groups().items():
            layout[group] = []
            for i, v in enumerate(variables):
                value = np.asarray(v.numpy())
                arrays[f"{group}/{i}"] = value
                layout[group].append([v.path, list(value.shape), str(value.dtype)])
        arrays[_META] = np.array(json.dumps(meta))
        arrays[_LAYOUT] = np.array(json.dumps(layout))
        arrays[CHECKSUM_KEY] = np.array(tree_digest(arrays))
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)  # type: ignore[arg-type]  # the stub reads ** as flags
        report.atomic_write_bytes(path, buffer.getvalue())

    def load(self, path: Path, check: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        with checkpoint_problem(path, "the checkpoint is unreadable"):
            with np.load(path, allow_pickle=False) as npz:
                meta = json.loads(str(npz[_META]))
                int(meta["epoch"])
                # Every member is read (and its CRC checked) before anything is restored.
                members = {key: npz[key] for key in npz.files}
            # The zip CRCs miss a member rewritten whole; the checksum covers them all.
            verify({k: str(v) if k == CHECKSUM_KEY else v for k, v in members.items()}, path)
            arrays = {
                key: value for key, value in members.items()
                if key not in (_META, _LAYOUT, CHECKSUM_KEY)
            }
        check(meta)
        pairs = []
        expected = set()
        for group, variables in self._groups().items():
            for i, v in enumerate(variables):
                key = f"{group}/{i}"
                expected.add(key)
                value = arrays.get(key)
                if value is None or tuple(value.shape) != tuple(v.shape) \
                        or value.dtype != np.dtype(v.dtype):
                    found = "missing" if value is None else f"{value.dtype}{list(value.shape)}"
                    raise CheckpointError(
                        f"cannot resume from {path}: it does not fit this model ({key}, "
                        f"{v.path}: expected {v.dtype}{list(v.shape)}, found {found}). "
                        "Delete it to start over."
                    )
                pairs.append((v, value))
        extra = sorted(set(arrays) - expected)
        if extra:
            raise CheckpointError(
                f"cannot resume from {path}: it does not fit this model (unexpected "
                f"{', '.join(extra[:5])}). Delete it to start over."
            )
        for v, value in pairs:
            v.assign(value)
        return meta
