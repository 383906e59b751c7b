"""Whose files are in ``--out``: a run never overwrites another run's (or anyone's) files,
never resumes into the wrong backend, and never mixes settings silently on ``--resume``.

Imports no framework: the checks run before a backend is loaded.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from glf_train import report
from glf_train.config import RunConfig

__all__ = [
    "CHECKPOINT_NAMES",
    "RESUME_FREE",
    "RESUME_MUST_MATCH",
    "prepare_out",
    "remove_stale_temporaries",
    "resume_changes",
]

# Each backend's checkpoint in --out (its trainer's ``checkpoint_name``).
CHECKPOINT_NAMES = {
    "torch": "checkpoint.pt",
    "jax": "checkpoint.msgpack",
    "tensorflow": "checkpoint.npz",
}

# Every file a run writes into --out; --overwrite deletes these and nothing else.
RUN_OUTPUTS = (
    report.METRICS_FILE, report.SUMMARY_FILE, "loss.png", "accuracy.png", "embeddings.png",
    *CHECKPOINT_NAMES.values(),
)

# What a resumed run may not change even with --allow-changes: anything that shapes the
# model, the checkpoint's contents or the data stream.
RESUME_MUST_MATCH = (
    "backend", "method", "dataset", "seed", "batch_size", "adc", "arch", "cnn_width",
    "proj_hidden", "proj_dim", "pred_hidden", "front_end_sizes", "swav_queue", "optimizer",
    "adc_prior", "swav_freeze_prototypes_epochs",
)

# What a resumed run may change freely: where files go, where it runs, how often and on
# what it reports (the validation split serves the evaluation only). Every other field
# (including one added later) changes the trajectory, so a change needs --allow-changes.
RESUME_FREE = frozenset({
    "out", "data_root", "device", "compile", "eval_every", "val_fraction", "quiet",
})


def _flag(name: str) -> str:
    if name.startswith("loss_options."):
        return "--loss-option " + name.split(".", 1)[1]
    if name == "front_end_sizes":
        return "the loss front-end's sizes (--loss-option)"
    return "--" + name.replace("_", "-")


def _settings(config: RunConfig) -> dict[str, Any]:
    """A run's settings, flat as its flags name them: the ``adc_<field>`` keys of
    :meth:`RunConfig.to_dict`, each loss hyperparameter as ``loss_options.<name>`` (its
    value in force, given or default), and the front-end's sizes (the shapes of the
    arrays the method owns) as ``front_end_sizes``."""
    values = config.to_dict()
    del values["loss_options"]
    sizes, given = config.loss_settings()
    values["front_end_sizes"] = sizes
    for name, default in config.method_entry().hyperparameters.items():
        values[f"loss_options.{name}"] = given.get(name, default)
    return values


def remove_stale_temporaries(out: Path) -> list[Path]:
    """Delete the half-written ``.<output>.*.tmp`` files a killed run leaves behind (see
    :func:`glf_train.report.atomic_write_bytes`); returns the paths deleted."""
    removed = []
    for name in RUN_OUTPUTS:
        for path in out.glob(f".{name}.*.tmp"):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed.append(path)
    return removed


def _check_directory(out: Path) -> None:
    """``out`` can be a run directory: not a file, not under a file, writable."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a directory: choose another --out")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(
                    f"--out {out} lies under {parent}, which is a file: choose another --out"
                )
            break
    out.mkdir(parents=True, exist_ok=True)
    if not os.access(out, os.W_OK | os.X_OK):
        raise ValueError(
            f"--out {out} is not writable (read-only or not yours): choose an --out you can "
            "write to"
        )


def _is_empty(out: Path) -> bool:
    """Nothing worth keeping: no files, or only a log without a record (a run stopped
    before it finished its first epoch)."""
    for entry in out.iterdir():
        if entry.name != report.METRICS_FILE or not entry.is_file():
            return False
        try:
            if report.read_metrics(entry):
                return False
        except ValueError:
            return False
    return True


def _listing(out: Path, limit: int = 4) -> str:
    names = sorted(entry.name for entry in out.iterdir())
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def prepare_out(out: Path, backend: str, *, resume: bool, overwrite: bool) -> bool:
    """Check and prepare ``--out`` for a run; returns whether there is a checkpoint of
    ``backend`` to resume from.

    A new run needs an empty (or absent) ``--out``, unless ``overwrite``, which deletes
    the files a run writes (:data:`RUN_OUTPUTS`) and keeps any other. ``resume`` needs this
    backend's checkpoint, or an empty directory (then the run starts from scratch).
    Half-written temporaries of a killed run are deleted in every case.

    Raises ``ValueError`` naming the problem and what to do about it.
    """
    _check_directory(out)
    remove_stale_temporaries(out)
    own = out / CHECKPOINT_NAMES[backend]
    others = [
        (name, file) for name, file in CHECKPOINT_NAMES.items()
        if name != backend and (out / file).exists()
    ]
    if resume:
        if own.exists():
            return True
        if others:
            name, file = others[0]
            raise ValueError(
                f"--resume: {out} holds a {name} run ({file}), not a {backend} one: resume "
                f"it with --backend {name}, or choose another --out"
            )
        if not _is_empty(out):
            raise ValueError(
                f"--resume: {out} holds no {own.name} to resume from, but is not empty "
                f"({_listing(out)}): choose another --out, or start over in it with "
                "--overwrite (instead of --resume), which deletes a run's files there"
            )
        return False
    if _is_empty(out):
        return False
    if not overwrite:
        holds_run = own.exists() or others or (out / report.SUMMARY_FILE).exists()
        what = "another run" if holds_run else "files that are not a run's"
        raise ValueError(
            f"--out {out} already holds {what} ({_listing(out)}): choose another --out"
            + (", continue it with --resume," if own.exists() else ",")
            + " or add --overwrite to start a new run there (it deletes a run's "
            "checkpoints, metrics, summary and plots, and keeps other files)"
        )
    for name in RUN_OUTPUTS:
        with contextlib.suppress(FileNotFoundError):
            (out / name).unlink()
    return False


def resume_changes(
    saved: RunConfig, config: RunConfig, out: Path, *, allow_changes: bool
) -> dict[str, list[Any]]:
    """The settings ``config`` changes from the checkpoint's ``saved`` ones, as
    ``{name: [old, new]}``; raises ``ValueError`` unless they may change.

    Fields of :data:`RESUME_MUST_MATCH` never may; the others of the trajectory (all but
    :data:`RESUME_FREE`) only with ``allow_changes``.
    """
    old, new = _settings(saved), _settings(config)
    for name in RESUME_MUST_MATCH:
        if old[name] != new[name]:
            raise ValueError(
                f"--resume: the checkpoint in {out} was written with {name}="
                f"{old[name]!r}, this run asks for {new[name]!r}; "
                "the checkpoint cannot continue as another run: choose another --out"
            )
    changes = {
        name: [old.get(name), value] for name, value in new.items()
        if name not in RESUME_FREE and old.get(name) != value
    }
    if changes and not allow_changes:
        listed = "; ".join(
            f"{_flag(name)} {old!r} -> {new!r}" for name, (old, new) in changes.items()
        )
        raise ValueError(
            f"--resume: settings that change the training differ from the run in {out}: "
            f"{listed}. Resume with the run's values, or add --allow-changes to continue "
            "with the new ones (summary.json then records both)"
        )
    return changes
