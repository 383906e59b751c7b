"""The training loop every backend shares: data order, views, logging, checkpoints,
divergence handling, evaluation and the run's outputs.

A backend contributes a *trainer* object (see
[`BackendTrainer`][reference_training.loop.BackendTrainer]): its model, its
optimiser step and its checkpoint format. Everything that decides *what* is trained on
(the batch order, the augmentation parameters, the schedules' inputs) is drawn here from
``(seed, epoch, step)`` alone, so a run resumed from a checkpoint replays exactly the
steps an uninterrupted run would have taken.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from glf_train import augment, evaluate, report, rundir
from glf_train.config import RunConfig
from glf_train.data import Dataset, epoch_batches, load_dataset, validation_split
from glf_train.errors import TrainingDiverged
from glf_train.schedules import StepInputs, step_inputs

__all__ = ["BackendTrainer", "local_view_config", "make_trainer", "train", "view_config"]

# Host round trips (for the progress bar and the divergence check) every this many steps.
_LOG_EVERY = 10


class BackendTrainer(Protocol):
    """What a backend provides to [`train`][reference_training.loop.train].

    Under data parallelism with one process per device (PyTorch), ``batch_rows`` is the
    slice of the global batch this process feeds and only the ``is_main`` process writes
    outputs and evaluates; a trainer that shards global arrays itself (JAX, TensorFlow)
    keeps the defaults, ``slice(None)`` and ``True``.
    """

    xp: Any
    checkpoint_name: str
    batch_rows: slice
    is_main: bool

    def to_device(self, images: np.ndarray) -> Any: ...

    def train_step(
        self, view_a: Any, view_b: Any, prior: Any, inputs: StepInputs,
        local_views: tuple[Any, ...] = (),
    ) -> dict[str, Any]:
        """One optimiser step on two views of a batch; ``prior`` is the raw batch (ADC's
        prior). ``inputs`` are the host's decisions for the step (learning rate, EMA rate,
        owned arrays' freeze, queue use), computed by `step_inputs`. ``local_views`` are
        the batch's local crops (``--local-crops``), passed only when there are any.
        Returns the step's ``loss``, ``align`` and ``constrain`` as 0-d device arrays."""
        ...

    def features(self, images: np.ndarray) -> np.ndarray: ...

    def random_encoder_features(self, images: np.ndarray) -> np.ndarray: ...

    def save(self, path: Path, meta: dict[str, Any]) -> None: ...

    def load(self, path: Path, check: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        """Read the checkpoint's metadata, pass it to ``check``, then restore the state."""
        ...


# backend -> (module, trainer class, what to install)
_TRAINERS = {
    "torch": ("glf_train.torch.step", "TorchTrainer", "glf-losses[torch,train]"),
    "jax": ("glf_train.jax.step", "JaxTrainer", "glf-losses[jax,train]"),
    "tensorflow": (
        "glf_train.tensorflow.step", "TensorFlowTrainer",
        "glf-losses[tensorflow,train]",
    ),
}


def _trainer_module(config: RunConfig) -> Any:
    module_name, _, extra = _TRAINERS[config.backend]
    try:
        return importlib.import_module(module_name)
    except ImportError as err:
        raise RuntimeError(
            f"--backend {config.backend} needs a package that is not installed ({err}); "
            f"install it with: pip install '{extra}'"
        ) from None


def make_trainer(config: RunConfig, dataset: Dataset) -> BackendTrainer:
    """Import the chosen backend's trainer; a clear error if its framework is missing."""
    trainer: BackendTrainer = getattr(_trainer_module(config), _TRAINERS[config.backend][1])(
        config, dataset
    )
    return trainer


def view_config(config: RunConfig, dataset_name: str) -> augment.AugmentConfig:
    """The views a run draws: the dataset's preset, with ``--crop-min-area`` applied."""
    aug = augment.AugmentConfig.for_dataset(dataset_name)
    if config.crop_min_area is None:
        return aug
    return dataclasses.replace(
        aug, crop_scale=(config.crop_min_area, 1.0), crop_ratio=(3 / 4, 4 / 3)
    )


def local_view_config(
    config: RunConfig, dataset_name: str, view_hw: tuple[int, int]
) -> augment.AugmentConfig:
    """The local crops a run draws (``--local-crops``): the dataset's preset views, resized
    to ``--local-crop-size`` (by default 96/224 of the views' side ``view_hw``, SwAV's
    and DINO's ratio) from an area in ``[--local-crop-min-area, --local-crop-max-area]``,
    with the aspect ratio in [3/4, 4/3] as the usual random-resized crop."""
    size = config.local_crop_size
    hw = (size, size) if size is not None else tuple(
        max(1, round(side * 96 / 224)) for side in view_hw
    )
    return dataclasses.replace(
        augment.AugmentConfig.for_dataset(dataset_name), out_hw=(int(hw[0]), int(hw[1])),
        crop_scale=(config.local_crop_min_area, config.local_crop_max_area),
        crop_ratio=(3 / 4, 4 / 3),
    )


def _mean_logs(logs: list[dict[str, float]]) -> dict[str, float]:
    return {key: float(np.mean([entry[key] for entry in logs])) for key in logs[0]}


def _finite(values: dict[str, float]) -> bool:
    return all(math.isfinite(v) for v in values.values())


def _val_knn(config: RunConfig, trainer: BackendTrainer, dataset: Dataset) -> float | None:
    """The headline kNN accuracy on the validation split (the test split is left for the
    final evaluation); ``None`` without a validation split."""
    fit, val = validation_split(dataset.y_train, config.val_fraction)
    if not len(val):
        return None
    feats = evaluate.extract_features(trainer.features, dataset.x_train)
    return evaluate.knn_accuracy(
        feats[fit], dataset.y_train[fit], feats[val], dataset.y_train[val]
    )


def train(
    config: RunConfig, *, resume: bool = False, allow_changes: bool = False,
    overwrite: bool = False, prepared_out: bool = False,
) -> dict[str, Any]:
    """Train, evaluate and write the run's outputs in ``config.out``; returns the summary.

    ``config.out`` must be empty or absent for a new run (``overwrite`` deletes another
    run's files there instead), and hold this backend's checkpoint (or nothing) for
    ``resume``; settings that change the training may differ from the checkpoint's only
    with ``allow_changes``, and ``summary.json`` then records both values (see
    `glf_train.rundir`).

    A backend that runs one process per device (PyTorch with ``devices > 1``) provides
    ``launch(config, resume, options)`` in its trainer module: it starts the processes,
    each of which comes back here with ``prepared_out=True`` (the launcher has checked
    ``--out``), and returns the main process's summary.
    """
    config.validate()
    out = Path(config.out)
    if not prepared_out:
        rundir.prepare_out(out, config.backend, resume=resume, overwrite=overwrite)
    launch = getattr(_trainer_module(config), "launch", None)
    if launch is not None:
        launched: dict[str, Any] | None = launch(
            config, resume, {"allow_changes": allow_changes}
        )
        if launched is not None:
            return launched
    dataset = _load(config)
    trainer = make_trainer(config, dataset)
    ckpt = out / trainer.checkpoint_name
    start_epoch, changes = _resume(config, trainer, ckpt, resume, allow_changes)
    metrics_path = _metrics_up_to(out, start_epoch, trainer.is_main)
    started = time.perf_counter()
    with report.MetricsLog(metrics_path) if trainer.is_main else _NoLog() as metrics:
        for epoch in range(start_epoch, config.epochs):
            record = _train_epoch(config, trainer, dataset, epoch, ckpt)
            if trainer.is_main:
                _end_epoch(config, trainer, dataset, record, metrics, ckpt, changes)
    if not trainer.is_main:
        return {}
    return _finish(config, dataset, trainer, out, time.perf_counter() - started, changes)


def _load(config: RunConfig) -> Dataset:
    """The run's dataset, checked against the batch size."""
    dataset = load_dataset(config.dataset, root=config.data_root)
    if dataset.ssl_size < config.batch_size:
        raise ValueError(
            f"--batch-size {config.batch_size} is larger than the {dataset.ssl_size} training "
            f"images of {config.dataset}"
        )
    return dataset


def _resume(
    config: RunConfig, trainer: BackendTrainer, ckpt: Path, resume: bool, allow_changes: bool
) -> tuple[int, list[dict[str, Any]]]:
    """``(first epoch to train, settings changed on resumes)``: the checkpoint's state is
    restored into ``trainer`` if the run resumes one.

    Changes (with ``--allow-changes``) are one entry per resume, ``{"epoch": where it
    resumed, "settings": {name: [old, new]}}``, kept in every checkpoint after it.
    """
    changes: list[dict[str, Any]] = []
    if not resume or not ckpt.exists():
        if resume and trainer.is_main and not config.quiet:
            print(f"--resume: no checkpoint in {ckpt.parent}; starting from scratch")
        return 0, changes

    def same_run(meta: dict[str, Any]) -> None:
        saved = RunConfig.from_dict(meta["config"])
        changed = rundir.resume_changes(saved, config, ckpt.parent, allow_changes=allow_changes)
        changes.extend(meta.get("changes", []))
        if changed:
            changes.append({"epoch": int(meta["epoch"]), "settings": changed})

    return int(trainer.load(ckpt, same_run)["epoch"]), changes


def _metrics_up_to(out: Path, start_epoch: int, main: bool) -> Path:
    """The metrics log holding the records of the epochs before ``start_epoch`` only.

    Records of epochs after the checkpoint (a killed run's partial work, and a line it
    left half-written) are dropped, so the log matches the weights being resumed.
    """
    path = out / report.METRICS_FILE
    if main:
        kept = [r for r in report.read_metrics(path) if r.get("epoch", 0) < start_epoch] \
            if start_epoch > 0 else []
        report.write_metrics(path, kept)
    return path


def _train_epoch(
    config: RunConfig, trainer: BackendTrainer, dataset: Dataset, epoch: int, ckpt: Path
) -> dict[str, Any]:
    """One epoch of steps; its record (mean losses, throughput). Stops a diverged run."""
    aug = view_config(config, dataset.name)
    local_aug = local_view_config(
        config, dataset.name, aug.out_hw or tuple(dataset.image_shape[1:])
    )
    steps_per_epoch = dataset.ssl_size // config.batch_size
    total_steps = steps_per_epoch * config.epochs
    bar = report.ProgressBar(
        steps_per_epoch, epoch=epoch + 1, n_epochs=config.epochs,
        quiet=config.quiet or not trainer.is_main,
    )
    pending: list[dict[str, Any]] = []
    logs: list[dict[str, float]] = []
    epoch_start = time.perf_counter()
    batches = epoch_batches(dataset.ssl_size, config.batch_size, config.seed, epoch)
    for step, indices in enumerate(batches):
        rng = np.random.default_rng((config.seed, epoch, step))
        images = trainer.to_device(dataset.ssl_batch(indices[trainer.batch_rows]))
        view_a, view_b = augment.two_views(
            trainer.xp, images, rng, aug, dataset.mean, dataset.std,
            global_size=len(indices), rows=trainer.batch_rows,
        )
        inputs = step_inputs(config, epoch, epoch * steps_per_epoch + step, total_steps)
        if config.local_crops:
            # Drawn after the two views, which stay the same as a run without them.
            local = augment.local_views(
                trainer.xp, images, rng, local_aug, config.local_crops, dataset.mean,
                dataset.std, global_size=len(indices), rows=trainer.batch_rows,
            )
            pending.append(trainer.train_step(view_a, view_b, images, inputs, local_views=local))
        else:
            pending.append(trainer.train_step(view_a, view_b, images, inputs))
        # The host reads the device's losses every few steps only.
        if len(pending) < _LOG_EVERY and step < steps_per_epoch - 1:
            continue
        values = [{k: float(v) for k, v in entry.items()} for entry in pending]
        logs.extend(values)
        if not all(_finite(v) for v in values):
            bar.close()
            raise TrainingDiverged(
                f"the loss became non-finite at epoch {epoch + 1}, step {step + 1}: "
                f"{values[-1]}; stopping. " + _after_divergence(ckpt, epoch, trainer.is_main)
            )
        bar.update(
            len(pending), images=len(pending) * config.batch_size, loss=values[-1]["loss"],
            align=values[-1]["align"], constrain=values[-1]["constrain"],
        )
        pending = []
    bar.close()
    record: dict[str, Any] = {"epoch": epoch, **_mean_logs(logs)}
    record["images_per_second"] = steps_per_epoch * config.batch_size / (
        time.perf_counter() - epoch_start
    )
    return record


def _end_epoch(
    config: RunConfig, trainer: BackendTrainer, dataset: Dataset, record: dict[str, Any],
    metrics: Any, ckpt: Path, changes: list[dict[str, Any]],
) -> None:
    """The main process's end of an epoch: the validation kNN when due, the record, the
    checkpoint."""
    epoch = record["epoch"]
    if config.eval_every and ((epoch + 1) % config.eval_every == 0 or epoch + 1 == config.epochs):
        val_knn = _val_knn(config, trainer, dataset)
        if val_knn is not None:
            record["val_knn_accuracy"] = val_knn
    metrics.append(record)
    meta: dict[str, Any] = {"epoch": epoch + 1, "config": config.to_dict()}
    if changes:
        meta["changes"] = changes
    trainer.save(ckpt, meta)
    if not config.quiet:
        shown = ", ".join(f"{k} {v:.4g}" for k, v in record.items() if k != "epoch")
        print(f"epoch {epoch + 1}/{config.epochs}: {shown}", flush=True)


def _after_divergence(ckpt: Path, epoch: int, main: bool) -> str:
    """What a diverged run keeps, and how to go on: only a checkpoint that exists."""
    if ckpt.exists() or not main:
        return (
            f"The last good checkpoint ({ckpt}, end of epoch {epoch}) is kept; lower --lr "
            "or the loss weights and rerun with --resume --allow-changes."
        )
    return (
        f"It diverged before its first checkpoint, so there is none to resume from; lower "
        f"--lr or the loss weights and start again (with --overwrite if {ckpt.parent} "
        "holds other files)."
    )


class _NoLog:
    """A worker that is not the main process keeps no metrics."""

    def __enter__(self) -> _NoLog:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def append(self, record: dict[str, Any]) -> None:
        pass


def _finish(
    config: RunConfig, dataset: Dataset, trainer: BackendTrainer, out: Path, seconds: float,
    changes: list[dict[str, Any]],
) -> dict[str, Any]:
    _, val = validation_split(dataset.y_train, config.val_fraction)
    train_feats = evaluate.extract_features(trainer.features, dataset.x_train)
    test_feats = evaluate.extract_features(trainer.features, dataset.x_test)
    result = evaluate.evaluate_features(
        train_feats, dataset.y_train, test_feats, dataset.y_test, val_indices=val
    )
    splits = (dataset.x_train, dataset.y_train, dataset.x_test, dataset.y_test)
    base = evaluate.baselines(splits, trainer.random_encoder_features, val_indices=val)
    summary: dict[str, Any] = {
        **result,
        # Every metric of each baseline, flat: random_encoder_knn_accuracy, ...
        **{f"{name}_{key}": value for name, metrics in base.items()
           for key, value in metrics.items()},
        "baselines": base,
        "evaluation": {
            **evaluate.protocol(), "fit_rows": len(dataset.y_train) - len(val),
            "val_rows": len(val), "test_rows": len(dataset.y_test),
        },
        "train_seconds": seconds,
        "config": config.to_dict(),
    }
    if changes:
        # --resume --allow-changes: the settings each part of the run trained with.
        summary["changes"] = changes
    report.write_summary(out, summary)
    report.plot_run(
        out, report.read_metrics(out / "metrics.jsonl"), report.project_2d(test_feats),
        dataset.y_test, title=f"{config.method}{' + ADC' if config.adc else ''} on "
        f"{config.dataset} ({config.backend})",
    )
    if not config.quiet:
        print(report.format_summary_table(summary), flush=True)
    return summary
