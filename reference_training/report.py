"""The outputs of a training run, shared by every backend.

A progress bar on stderr (rich), ``metrics.jsonl`` (one JSON object per line), an atomically
written ``summary.json`` with a printable accuracy table, and PNG plots.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

__all__ = [
    "METRICS_FILE",
    "SUMMARY_FILE",
    "MetricsLog",
    "ProgressBar",
    "atomic_write_bytes",
    "format_summary_table",
    "plot_run",
    "project_2d",
    "read_metrics",
    "read_summary",
    "upgrade_summary",
    "write_metrics",
    "write_summary",
]

METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"

PathLike = str | os.PathLike[str]


# --------------------------------------------------------------------------- files


def atomic_write_bytes(path: PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never
    a partial one: a temp file in the same directory, fsync, then ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Same directory, so os.replace stays a rename within one filesystem.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates 0600; keep an existing file's mode, else a usual 0644.
        try:
            mode = path.stat().st_mode & 0o777
        except FileNotFoundError:
            mode = 0o644
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)
    return path


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable; not every platform can open a directory.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _json_default(obj: Any) -> Any:
    # NumPy/torch/JAX/TF scalars and small arrays, as a backend's step returns them.
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    item = getattr(obj, "item", None)
    if callable(item):
        try:
            return item()
        except (TypeError, ValueError, RuntimeError):
            pass
    tolist = getattr(obj, "tolist", None)
    if callable(tolist):
        return tolist()
    numpy = getattr(obj, "numpy", None)
    if callable(numpy):
        return _json_default(np.asarray(numpy()))
    raise TypeError(f"cannot write a {type(obj).__name__} as JSON")


def _dumps(obj: Any, **kw: Any) -> str:
    # NaN/Infinity are kept (Python's json reads them back): a diverged loss should be
    # recorded, not crash the logger.
    return json.dumps(obj, default=_json_default, **kw)


class MetricsLog:
    """Append-only JSON-lines log (``metrics.jsonl``): one record per line, flushed at once.

    The training loop first rewrites the log atomically with the records it keeps
    (:func:`write_metrics`, which also drops a line a killed run left half-written), then
    appends to it through this class.
    """

    def __init__(self, path: PathLike) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            self.path = self.path / METRICS_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f: IO[str] | None = open(self.path, "a", encoding="utf-8")

    def append(self, record: Mapping[str, Any]) -> None:
        """Write one record as one line and flush it."""
        if self._f is None:
            raise ValueError(f"MetricsLog for {self.path} is closed")
        line = _dumps(dict(record), separators=(",", ":"))
        self._f.write(line + "\n")
        self._f.flush()

    def close(self) -> None:
        """Close the file; further appends raise."""
        if self._f is not None:
            self._f.close()
            self._f = None

    def __enter__(self) -> MetricsLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_metrics(path: PathLike, records: Sequence[Mapping[str, Any]]) -> Path:
    """Replace the log at ``path`` with ``records``, atomically (used when resuming)."""
    text = "".join(_dumps(dict(r), separators=(",", ":")) + "\n" for r in records)
    return atomic_write_bytes(path, text.encode("utf-8"))


def read_metrics(path: PathLike) -> list[dict[str, Any]]:
    """Records of a ``metrics.jsonl`` (or of the one in directory ``path``).

    A last line that does not parse (a crash mid-write) is skipped; a bad line anywhere
    else raises ``ValueError``. A missing file reads as no records.
    """
    path = Path(path)
    if path.is_dir():
        path = path / METRICS_FILE
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    lines = text.split("\n")
    complete_tail = text.endswith("\n")
    records: list[dict[str, Any]] = []
    last = len(lines) - 1
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            if i == last and not complete_tail:
                break
            raise ValueError(f"{path}:{i + 1}: not a JSON line: {e}") from None
        if not isinstance(rec, dict):
            raise ValueError(f"{path}:{i + 1}: expected a JSON object")
        records.append(rec)
    return records


def write_summary(out_dir: PathLike, summary: Mapping[str, Any]) -> Path:
    """Write ``summary`` to ``out_dir/summary.json`` atomically; returns the path."""
    text = _dumps(dict(summary), indent=2) + "\n"
    return atomic_write_bytes(Path(out_dir) / SUMMARY_FILE, text.encode("utf-8"))


def read_summary(out_dir: PathLike) -> dict[str, Any]:
    """The ``summary.json`` of ``out_dir`` (or the file ``out_dir`` itself)."""
    path = Path(out_dir)
    if path.is_dir():
        path = path / SUMMARY_FILE
    return json.loads(path.read_text(encoding="utf-8"))


# --------------------------------------------------------------------------- summary

_ROWS = (
    ("trained encoder", None),
    ("random encoder", "random_encoder"),
    ("raw pixels", "raw_pixels"),
)
_COLS = (
    ("linear probe", "linear_probe_accuracy"),
    ("kNN", "knn_accuracy"),
    ("kNN k=200", "knn200_accuracy"),
    ("whitened kNN", "whitened_knn_accuracy"),
)
_BASELINE_PREFIXES = ("", "random_encoder_", "raw_pixels_")


def upgrade_summary(summary: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``summary`` with the current protocol's keys.

    Summaries written before the validation split (those without an ``evaluation``
    entry) hold a kNN at k = 200, T = 0.1 under ``knn_accuracy``: it moves to
    ``knn200_accuracy``, which is the same classifier today, and the k = 20 headline,
    the whitened kNN and every ``val_`` metric are absent. Current summaries are returned
    unchanged.
    """
    out = dict(summary)
    if "evaluation" in out:
        return out

    def move(metrics: dict[str, Any], prefix: str) -> None:
        if prefix + "knn_accuracy" in metrics:
            metrics[prefix + "knn200_accuracy"] = metrics.pop(prefix + "knn_accuracy")

    for prefix in _BASELINE_PREFIXES:
        move(out, prefix)
    if isinstance(out.get("baselines"), Mapping):
        out["baselines"] = {name: dict(values) for name, values in out["baselines"].items()}
        for values in out["baselines"].values():
            move(values, "")
    return out


def _pct(value: Any) -> str:
    if value is None:
        return "-"
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "-"
    return "nan" if math.isnan(v) else f"{100.0 * v:.2f}%"


def format_summary_table(summary: Mapping[str, Any]) -> str:
    """A text table of the test accuracies (as percentages) of the trained encoder beside
    the random-encoder and raw-pixel baselines: linear probe, kNN (k = 20), kNN (k = 200)
    and whitened kNN; then, when ``summary`` records the evaluation, a line giving the
    linear probe's C and the split it was chosen on.

    Reads ``summary[key]`` (fractions) and ``summary["baselines"][name][key]`` for
    ``random_encoder`` and ``raw_pixels`` (as :func:`glf_train.evaluate.baselines`
    returns them), after :func:`upgrade_summary`; missing entries print as ``-`` and a
    baseline row that is absent altogether is left out.
    """
    summary = upgrade_summary(summary)
    base = summary.get("baselines") or {}
    rows: list[tuple[str, list[str]]] = []
    for label, key in _ROWS:
        src = summary if key is None else base.get(key)
        if src is None:
            continue
        rows.append((label, [_pct(src.get(col)) for _, col in _COLS]))
    header = ("", [name for name, _ in _COLS])
    table = [header, *rows]
    width0 = max(len(label) for label, _ in table)
    widths = [max(len(cells[j]) for _, cells in table) for j in range(len(_COLS))]
    lines = []
    for label, cells in table:
        padded = (c.rjust(w) for c, w in zip(cells, widths, strict=True))
        lines.append("  ".join([label.ljust(width0), *padded]))
    evaluation = summary.get("evaluation")
    if isinstance(evaluation, Mapping) and "test_rows" in evaluation:
        c = summary.get("linear_probe_C")
        shown_c = "-" if c is None else f"{float(c):g}"
        where = (f"chosen on {evaluation.get('val_rows')} validation images"
                 if evaluation.get("val_rows") else "(no validation split)")
        lines.append(f"test split ({evaluation['test_rows']} images); probe C = {shown_c} "
                     f"{where}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- progress


def _fmt_value(v: Any) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    if f != 0 and (abs(f) >= 1e4 or abs(f) < 1e-3):
        return f"{f:.3e}"
    return f"{f:.4f}"


class ProgressBar:
    """One epoch's progress on stderr, drawn by ``rich``: epoch, bar, step/total, the
    latest loss with its aligning and constraining parts, images/s, elapsed time and ETA.

    On a terminal the line is redrawn in place; on a pipe or file rich writes the final
    line only, so logs stay short. ``quiet=True`` writes nothing. ``console`` defaults to
    a rich console on stderr.
    """

    def __init__(
        self, total: int, *, epoch: int, n_epochs: int, quiet: bool = False,
        console: Any = None,
    ) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        if console is None:
            console = Console(stderr=True)
            if not console.is_terminal:
                # A log file has no width; rich's default of 80 columns would cut the
                # values short.
                console = Console(stderr=True, width=160)
        self._progress = Progress(
            TextColumn(f"epoch {epoch}/{n_epochs}"),
            BarColumn(bar_width=20),
            MofNCompleteColumn(),
            TextColumn("{task.fields[values]}"),
            TextColumn("{task.fields[speed]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            disable=quiet,
        )
        self._task = self._progress.add_task("train", total=max(0, int(total)), values="",
                                             speed="")
        self._images = 0
        self._progress.start()

    def update(self, n: int = 1, *, images: int = 0, **values: Any) -> None:
        """Advance by ``n`` steps covering ``images`` images; ``values`` (loss, align,
        constrain...) are shown as their latest values."""
        self._images += images
        elapsed = self._progress.tasks[0].elapsed or 0.0
        speed = f"{self._images / elapsed:,.0f} img/s" if self._images and elapsed else ""
        shown = "  ".join(f"{k} {_fmt_value(v)}" for k, v in values.items() if v is not None)
        self._progress.update(self._task, advance=n, values=shown, speed=speed)

    def close(self) -> None:
        """Draw the final state and end the line; closing twice is harmless."""
        self._progress.stop()

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------- plots


def project_2d(features: np.ndarray, method: str = "pca", *, seed: int = 0) -> np.ndarray:
    """Project (n, d) features to (n, 2) with scikit-learn: ``"pca"`` (deterministic,
    fast) or ``"tsne"`` (slower, better at showing clusters)."""
    x = np.asarray(features, dtype=np.float64)
    x = x.reshape(x.shape[0], -1)
    n, d = x.shape
    if method == "pca":
        if d < 2 or n < 2:
            # Too small for two components: the centred data, zero-padded to two columns.
            out = np.zeros((n, 2))
            out[:, : min(d, 2)] = (x - x.mean(axis=0))[:, : min(d, 2)]
            return out
        from sklearn.decomposition import PCA

        # The full SVD solver is deterministic, and scikit-learn fixes each component's
        # sign, so the same features always give the same picture.
        projected: np.ndarray = PCA(n_components=2, svd_solver="full").fit_transform(x)
        return projected
    if method == "tsne":
        from sklearn.manifold import TSNE

        perplexity = float(min(30.0, max(1.0, (n - 1) / 3)))
        return TSNE(
            n_components=2, init="pca", random_state=seed, perplexity=perplexity
        ).fit_transform(x)
    raise ValueError(f"method must be 'pca' or 'tsne', got {method!r}")


def _per_epoch(
    metrics: Iterable[Mapping[str, Any]], key: str, reduce: str
) -> tuple[list[float], list[float]]:
    # Per epoch, records without a "step" (epoch summaries) win over step records, so
    # logging both does not count an epoch's steps twice.
    steps: dict[float, list[float]] = {}
    summaries: dict[float, list[float]] = {}
    for rec in metrics:
        if "epoch" not in rec or key not in rec:
            continue
        try:
            epoch, val = float(rec["epoch"]), float(rec[key])
        except (TypeError, ValueError):
            continue
        (steps if "step" in rec else summaries).setdefault(epoch, []).append(val)
    groups = {**steps, **summaries}
    epochs = sorted(groups)
    if reduce == "mean":
        vals = [float(np.mean(groups[e])) for e in epochs]
    else:
        vals = [groups[e][-1] for e in epochs]
    return epochs, vals


def _save_figure(fig: Any, path: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    return atomic_write_bytes(path, buf.getvalue())


def plot_run(
    out_dir: PathLike,
    metrics: Sequence[Mapping[str, Any]],
    embeddings_2d: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    *,
    loss_keys: Sequence[str] = ("loss", "align", "constrain"),
    accuracy_keys: Sequence[str] = (
        "val_knn_accuracy", "knn_accuracy", "linear_probe_accuracy",
    ),
    title: str | None = None,
) -> list[Path]:
    """Write the run's PNGs into ``out_dir``; returns the paths written.

    - ``loss.png``: each of ``loss_keys`` per epoch, from records that carry an
      ``epoch``: an epoch's records without a ``step`` key (epoch summaries) if there
      are any, else the mean of its step records;
    - ``accuracy.png``: the last value per epoch of each of ``accuracy_keys``, in %;
    - ``embeddings.png``: ``embeddings_2d`` (n, 2) coloured by ``labels``, when given
      (see :func:`project_2d`).

    A plot with no data is skipped. Uses matplotlib's Agg canvas without pyplot, so it
    neither needs a display nor changes the global backend.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics = list(metrics)
    written: list[Path] = []

    def new_axes() -> tuple[Any, Any]:
        fig = Figure(figsize=(6.0, 4.0))
        FigureCanvasAgg(fig)
        return fig, fig.add_subplot(1, 1, 1)

    series = [(k, *_per_epoch(metrics, k, "mean")) for k in loss_keys]
    series = [s for s in series if s[1]]
    if series:
        fig, ax = new_axes()
        for key, epochs, vals in series:
            ax.plot(epochs, vals, marker="o" if len(epochs) < 30 else None, label=key)
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        ax.set_title(title or "training loss and its parts")
        ax.axhline(0.0, color="0.8", linewidth=0.8, zorder=0)
        ax.grid(True, alpha=0.3)
        ax.legend()
        written.append(_save_figure(fig, out / "loss.png"))

    series = [(k, *_per_epoch(metrics, k, "last")) for k in accuracy_keys]
    series = [s for s in series if s[1]]
    if series:
        fig, ax = new_axes()
        for key, epochs, vals in series:
            ax.plot(epochs, [100.0 * v for v in vals], marker="o", label=key)
        ax.set_xlabel("epoch")
        ax.set_ylabel("accuracy (%)")
        ax.set_title(title or "evaluation accuracy")
        ax.grid(True, alpha=0.3)
        ax.legend()
        written.append(_save_figure(fig, out / "accuracy.png"))

    if embeddings_2d is not None:
        emb = np.asarray(embeddings_2d, dtype=np.float64)
        if emb.ndim != 2 or emb.shape[1] != 2:
            raise ValueError(f"embeddings_2d must have shape (n, 2), got {emb.shape}")
        fig, ax = new_axes()
        fig.set_size_inches(6.0, 6.0)
        if labels is None:
            ax.scatter(emb[:, 0], emb[:, 1], s=4, alpha=0.6)
        else:
            lab = np.asarray(labels).reshape(-1)
            if lab.shape[0] != emb.shape[0]:
                raise ValueError(f"{lab.shape[0]} labels for {emb.shape[0]} embeddings")
            classes = np.unique(lab)
            cmap = _class_colours(len(classes))
            for i, c in enumerate(classes):
                m = lab == c
                ax.scatter(emb[m, 0], emb[m, 1], s=4, alpha=0.6, color=cmap[i], label=str(c))
            if len(classes) <= 20:
                ax.legend(markerscale=3, fontsize="small", loc="best", ncol=2)
        ax.set_title(title or "test embeddings (2-D projection)")
        ax.set_xticks([])
        ax.set_yticks([])
        written.append(_save_figure(fig, out / "embeddings.png"))
    return written


def _class_colours(n: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20" if n <= 20 else "viridis"]
    if n <= 20:
        return [cmap(i) for i in range(n)]
    return [cmap(i / max(n - 1, 1)) for i in range(n)]
