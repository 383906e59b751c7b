"""The ADC study: does ADC help, and is it more than spreading or sheer strength?

Two tiers, each paired by seed against its base method trained with the same budget:

- ``main``: every method (BYOL, Barlow Twins, SwAV, SimCLR) with and without ADC at the
  library's defaults;
- ``ablations`` (one method, ``--ablation-method``): DCM only, LPM only; nu and upsilon
  in {0.1, 1, 10, 100}; rho in {2.5, 3, 5}; "median" against "perplexity" in {10, 30, 100},
  for the features and the prior separately; the prior with and without each anchor's
  other view; and two controls, the base method plus the uniformity term (plain
  spreading) at the gradient norm of ADC's default arm and of its "median" arm, and the
  "median" arm rescaled to the default arm's gradient norm (strength matched).

In every arm ADC keeps each anchor's other view in its prior (``adc_prior_other_view``
True), the formulation the study set out with, except in the arm named "prior without
other view"; that arm's results made ``False`` the library's default.

Every ADC-like arm's strength is also reported as its *gradient share*: the norm of
the gradient its extra term adds to the encoder's and heads' parameters, over the norm of
the whole gradient, at initialisation, averaged over the first batches. Methods with
different loss scales compare through it.

Runs that already have a ``summary.json`` are reused, so an interrupted study continues
where it stopped; ``--jobs`` trains that many runs at a time, one process each. Writes
``results.md``, ``results.json`` and ``study.png`` into ``--out``. Example (the figures in
docs/study.md)::

    python studies/adc.py --tier all --jobs 2 --out runs/study
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

METHODS = ("byol", "barlow_twins", "swav", "simclr")

# name -> RunConfig overrides of the arm (on top of the tier's base settings)
ABLATIONS: dict[str, dict[str, Any]] = {
    "base": {},
    "adc": {"adc": True},
    "dcm only": {"adc": True, "adc_upsilon": 0.0},
    "lpm only": {"adc": True, "adc_nu": 0.0},
    **{f"upsilon {u:g}": {"adc": True, "adc_upsilon": u} for u in (0.1, 1.0, 100.0)},
    **{f"nu {n:g}": {"adc": True, "adc_nu": n} for n in (0.1, 10.0, 100.0)},
    **{f"rho {r:g}": {"adc": True, "adc_rho": r} for r in (2.5, 5.0)},
    "median (both)": {"adc": True, "adc_bandwidth": "median", "adc_prior_bandwidth": "median"},
    "features median": {"adc": True, "adc_bandwidth": "median"},
    "prior median": {"adc": True, "adc_prior_bandwidth": "median"},
    "perplexity 10": {"adc": True, "adc_perplexity": 10.0},
    "perplexity 100": {"adc": True, "adc_perplexity": 100.0},
    "prior without other view": {"adc": True, "adc_prior_other_view": False},
    # Filled in by _matched_arms from gradient norms at initialisation.
    "uniformity at adc strength": {},
    "uniformity at median strength": {},
    "median at adc strength": {},
}


# Main-tier arms that are not ablations: ADC with both weights scaled, for methods whose
# loss scale leaves the default weights weak (Barlow Twins: a few % of the gradient).
STRENGTH_ARMS: dict[str, dict[str, Any]] = {
    "adc x100": {"adc": True, "adc_nu": 100.0, "adc_upsilon": 1000.0},
}

# Arms whose weights come from the ablation tier's gradient norms (see _matched_arms).
_CONTROLS = ("uniformity at adc strength", "uniformity at median strength",
             "median at adc strength")


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in ".-" else "_" for c in name)


def _base_settings(args: argparse.Namespace) -> dict[str, Any]:
    return {
        # Every ADC arm keeps the anchor's other view in the prior unless it says
        # otherwise: the formulation the study compared ("prior without other view" is the
        # arm without it, which became the library's default).
        "adc_prior_other_view": True,
        # and the weights the study started from, for every method (the trainer now
        # chooses Barlow Twins' from the "adc x100" arm)
        "adc_nu": 1.0, "adc_upsilon": 10.0,
        "backend": "torch", "dataset": args.dataset, "batch_size": args.batch_size,
        "quiet": True, "eval_every": args.eval_every, "crop_min_area": args.crop_min_area,
    }


# --- gradient shares -----------------------------------------------------------------------


def _gradient_norms(settings: dict[str, Any], n_batches: int = 3) -> dict[str, float]:
    """Norm of the whole gradient, and of what the arm adds to its base method's, at
    initialisation, averaged over the first batches (torch trainer)."""
    import numpy as np
    import torch
    from glf_train import augment, loop
    from glf_train.config import RunConfig
    from glf_train.data import epoch_batches, load_dataset

    config = RunConfig.from_dict({**settings, "out": "/nonexistent"}).validate()
    base = dataclasses.replace(config, adc=False, uniformity_weight=0.0)
    dataset = load_dataset(config.dataset)
    trainers = [loop.make_trainer(c, dataset) for c in (config, base)]
    aug = loop.view_config(config, dataset.name)
    whole, extra = [], []
    batches = epoch_batches(dataset.ssl_size, config.batch_size, config.seed, 0)
    for step, indices in enumerate(batches[:n_batches]):
        grads = []
        for trainer in trainers:
            rng = np.random.default_rng((config.seed, 0, step))
            images = trainer.to_device(dataset.ssl_batch(indices))
            view_a, view_b = augment.two_views(
                trainer.xp, images, rng, aug, dataset.mean, dataset.std
            )
            trainer.online.train()
            params = [p for p in trainer.params if p.requires_grad]
            for p in params:
                p.grad = None
            loss = trainer._compute_loss(view_a, view_b, trainer._prior(images))[0]
            loss.backward()
            grads.append(torch.cat([
                (p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)
                for p in params
            ]))
        whole.append(float(grads[0].norm()))
        extra.append(float((grads[0] - grads[1]).norm()))
    return {"whole": statistics.mean(whole), "extra": statistics.mean(extra)}


def _matched_arms(
    arms: dict[str, dict[str, Any]], settings: dict[str, Any], cache: Path
) -> dict[str, dict[str, float]]:
    """Fix the control arms' weights from gradient norms; returns every arm's norms."""
    norms: dict[str, dict[str, float]] = json.loads(cache.read_text()) if cache.exists() else {}

    def measure(name: str, overrides: dict[str, Any]) -> dict[str, float]:
        key = json.dumps({**settings, **overrides}, sort_keys=True)
        if key not in norms:
            norms[key] = _gradient_norms({**settings, **overrides})
            cache.write_text(json.dumps(norms, indent=1))
        return norms[key]

    if "uniformity at adc strength" in arms:
        adc_norm = measure("adc", arms["adc"])["extra"]
        median = arms["median (both)"]
        median_norm = measure("median (both)", median)["extra"]
        unit = measure("uniformity 1", {"uniformity_weight": 1.0})["extra"]
        arms["uniformity at adc strength"] = {"uniformity_weight": round(adc_norm / unit, 6)}
        arms["uniformity at median strength"] = {"uniformity_weight": round(median_norm / unit, 6)}
        scale = adc_norm / median_norm
        arms["median at adc strength"] = {
            **median, "adc_nu": round(scale, 6), "adc_upsilon": round(10.0 * scale, 6),
        }
    result = {}
    for name, overrides in arms.items():
        if name == "base":
            continue
        got = measure(name, overrides)
        result[name] = {**got, "share": got["extra"] / got["whole"]}
    return result


# Weight scales of the shares tier: nu = scale, upsilon = 10 scale (the defaults' ratio).
SHARE_SCALES = (0.1, 1.0, 10.0, 100.0)


def _shares_table(args: argparse.Namespace) -> str:
    """ADC's gradient share at initialisation for each method and weight scale."""
    settings = _base_settings(args)
    cache = Path(args.out) / "gradient_norms.json"
    lines = [
        f"ADC's gradient share at initialisation ({args.dataset}, batch {args.batch_size}"
        f"{'' if args.crop_min_area is None else f', crop area >= {args.crop_min_area:g}'}), "
        "for nu = s and upsilon = 10 s (s = 1: the default weights of BYOL, SwAV and SimCLR; "
        "s = 100: Barlow Twins'), with the anchor's other view in the prior.",
        "",
        "| method | " + " | ".join(f"s = {s:g}" for s in SHARE_SCALES) + " |",
        "|---|" + "---:|" * len(SHARE_SCALES),
    ]
    for method in args.methods.split(","):
        arms = {f"s {s:g}": {"adc": True, "adc_nu": s, "adc_upsilon": 10.0 * s}
                for s in SHARE_SCALES}
        shares = _matched_arms(arms, {**settings, "method": method}, cache)
        lines.append(f"| {method} | " + " | ".join(
            f"{100 * shares[name]['share']:.0f}%" for name in arms) + " |")
    return "\n".join(lines) + "\n"


# --- runs ---------------------------------------------------------------------------------


def _jobs(args: argparse.Namespace) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(every run's RunConfig fields, the arms: tier, method, name, overrides, dirs)."""
    from glf_train.config import RunConfig

    settings = _base_settings(args)
    out = Path(args.out)
    seeds = [int(s) for s in args.seeds.split(",")]
    arms: list[dict[str, Any]] = []
    if args.tier in ("main", "all"):
        main_names = [name for name in args.main_arms.split(",") if name]
        usable = [n for n in [*ABLATIONS, *STRENGTH_ARMS] if n not in _CONTROLS and n != "base"]
        bad = [n for n in main_names if n not in usable]
        if bad:
            raise SystemExit(f"--main-arms: not usable in the main tier: {bad}; known: {usable}")
        cache = out / "gradient_norms.json"
        for method in args.methods.split(","):
            known = {**ABLATIONS, **STRENGTH_ARMS}
            main_arms = {"base": {}, **{name: known[name] for name in main_names}}
            shares = _matched_arms(main_arms, {**settings, "method": method}, cache)
            for name, overrides in main_arms.items():
                # "adc" keeps its historical directory name, method-adc-seedN.
                tag = "" if name == "base" else f"-{_slug(name)}"
                arms.append({
                    "tier": "main", "method": method, "name": name,
                    "share": shares.get(name, {}).get("share"),
                    "overrides": {"adc": False, **overrides, "epochs": args.epochs},
                    "dirs": [out / "main" / f"{method}{tag}-seed{s}" for s in seeds],
                })
    if args.tier in ("ablations", "all"):
        method = args.ablation_method
        tier_settings = {**settings, "method": method, "epochs": args.ablation_epochs}
        ablations = {k: dict(v) for k, v in ABLATIONS.items()}
        shares = _matched_arms(ablations, tier_settings, out / "gradient_norms.json")
        ab_seeds = [int(s) for s in args.ablation_seeds.split(",")]
        chosen = set(args.arms.split(",")) if args.arms else set(ablations)
        unknown = chosen - set(ablations)
        if unknown:
            raise SystemExit(f"--arms: unknown arms {sorted(unknown)}; known: {list(ablations)}")
        for name, overrides in ablations.items():
            if name != "base" and name not in chosen:
                continue
            arms.append({
                "tier": "ablations", "method": method, "name": name,
                "overrides": {"epochs": args.ablation_epochs, **overrides},
                "share": shares.get(name, {}).get("share"),
                "dirs": [out / "ablations" / method / f"{_slug(name)}-seed{s}" for s in ab_seeds],
            })
    jobs = []
    for arm in arms:
        for directory in arm["dirs"]:
            seed = int(str(directory).rsplit("seed", 1)[1])
            fields = {**settings, "method": arm["method"], **arm["overrides"], "seed": seed,
                      "out": str(directory)}
            jobs.append(RunConfig.from_dict(fields).validate().to_dict())
    return jobs, arms


def _worker(jobs: list[dict[str, Any]]) -> None:
    from glf_train.config import RunConfig
    from glf_train.loop import train

    for job in jobs:
        if Path(job["out"], "summary.json").exists():
            continue
        print(f"-> {job['out']}", flush=True)
        train(RunConfig.from_dict(job), resume=True)


def _run(jobs: list[dict[str, Any]], n_jobs: int) -> None:
    # The main tier first, then the ablations seed by seed: a partial study is balanced.
    todo = sorted(
        (j for j in jobs if not Path(j["out"], "summary.json").exists()),
        key=lambda j: ("/ablations/" in j["out"], j["seed"]),
    )
    print(f"{len(jobs)} runs, {len(todo)} to train, {n_jobs} at a time", flush=True)
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    procs = [
        subprocess.Popen([sys.executable, __file__, "--worker"], stdin=subprocess.PIPE,
                         text=True, env=env)
        for _ in range(min(n_jobs, len(todo)))
    ]
    for i, proc in enumerate(procs):
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(todo[i::len(procs)]))
        proc.stdin.close()
    if any(proc.wait() for proc in procs):
        raise SystemExit("a worker failed; rerun the same command to continue")


# --- report -------------------------------------------------------------------------------


# Row entry -> summary key of each reported accuracy; "val_" + both for the validation
# split's.
_ACCURACIES = (
    ("linear", "linear_probe_accuracy"),
    ("knn", "knn_accuracy"),
    ("knn200", "knn200_accuracy"),
    ("whitened_knn", "whitened_knn_accuracy"),
)
# The accuracies paired with the base method, on both splits.
_PAIRED = ("linear", "knn", "val_linear", "val_knn")


def _pct(values: list[float | None], signed: bool = False) -> str:
    """Mean ± standard deviation in %; "–" when a run lacks the value (runs evaluated
    before the metric existed)."""
    if not values or any(v is None for v in values):
        return "–"
    pct = [100 * v for v in values if v is not None]
    spread = statistics.stdev(pct) if len(pct) > 1 else 0.0
    return f"{statistics.mean(pct):{'+' if signed else ''}.1f} ± {spread:.1f}"


def _read_summary(directory: Path) -> dict[str, Any]:
    """A run's summary in the current protocol's keys (an older run's k = 200 kNN under
    ``knn200_accuracy``)."""
    from glf_train.report import upgrade_summary

    return upgrade_summary(json.loads(Path(directory, "summary.json").read_text()))


def _accuracies(
    summaries: list[dict[str, Any]], source: str = "", entry: str = "", single: bool = False
) -> dict[str, Any]:
    """Entry -> each summary's accuracy, for every accuracy on both splits (``source``:
    the summary keys' prefix, such as ``raw_pixels_``; ``entry``: the entries'); the
    first summary's value alone with ``single``."""
    out: dict[str, Any] = {}
    for name, key in _ACCURACIES:
        for split in ("", "val_"):
            values = [s.get(source + split + key) for s in summaries]
            out[entry + split + name] = values[0] if single else values
    return out


def _paired(arm: list[float | None], base: list[float | None]) -> list[float | None]:
    return [None if a is None or b is None else a - b for a, b in zip(arm, base, strict=True)]


def _effective_ranks(dirs: list[Path], cache_path: Path) -> list[float]:
    """Each run's RankMe on the test features: from its summary, else computed once from
    its checkpoint (runs from before the summary recorded it) and cached."""
    cache: dict[str, float] = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    ranks = []
    for directory in dirs:
        summary = json.loads(Path(directory, "summary.json").read_text())
        if "effective_rank" in summary:
            ranks.append(float(summary["effective_rank"]))
            continue
        key = str(directory)
        if key not in cache:
            cache[key] = _rank_from_checkpoint(Path(directory), summary["config"])
            cache_path.write_text(json.dumps(cache, indent=1))
        ranks.append(cache[key])
    return ranks


def _rank_from_checkpoint(directory: Path, fields: dict[str, Any]) -> float:
    import torch
    from glf_train import evaluate, loop
    from glf_train.config import RunConfig
    from glf_train.data import load_dataset

    config = RunConfig.from_dict({**fields, "out": str(directory)})
    if config.backend != "torch":
        raise ValueError(f"{directory}: the study's runs are PyTorch runs, not {config.backend}")
    dataset = load_dataset(config.dataset, root=config.data_root)
    trainer = loop.make_trainer(config, dataset)
    # The encoder's weights only: checkpoints from before the SwAV queue lack its entries,
    # which a resume needs and this does not.
    state = torch.load(directory / trainer.checkpoint_name, map_location="cpu",
                       weights_only=True)
    trainer.online.load_state_dict(state["online"])  # type: ignore[attr-defined]
    return evaluate.effective_rank(evaluate.extract_features(trainer.features, dataset.x_test))


def _report(arms: list[dict[str, Any]], args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    bases = {(a["tier"], a["method"]): a for a in arms if a["name"] == "base"}
    for arm in arms:
        summaries = [_read_summary(d) for d in arm["dirs"] if Path(d, "summary.json").exists()]
        if len(summaries) < len(arm["dirs"]):
            continue
        base = bases[(arm["tier"], arm["method"])]
        if not all(Path(d, "summary.json").exists() for d in base["dirs"]):
            continue  # nothing to pair with yet
        base_summaries = [_read_summary(d) for d in base["dirs"]]
        row: dict[str, Any] = {
            "tier": arm["tier"], "method": arm["method"], "arm": arm["name"],
            "overrides": arm["overrides"], "share": arm.get("share"),
            "rank": _effective_ranks(arm["dirs"], Path(args.out) / "effective_ranks.json"),
        }
        row.update(_accuracies(summaries))
        row.update(_accuracies(summaries[:1], "raw_pixels_", "raw_", single=True))
        base_values = _accuracies(base_summaries)
        for name in _PAIRED:
            row["d_" + name] = _paired(row[name], base_values[name])
        rows.append(row)
    return rows


def _raw(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def _markdown(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    """Per tier, the test split's table (the reported numbers), then the validation
    split's (what a choice between arms is made on)."""
    lines = []
    for tier in ("main", "ablations"):
        tier_rows = [r for r in rows if r["tier"] == tier]
        if not tier_rows:
            continue
        epochs = args.epochs if tier == "main" else args.ablation_epochs
        seeds = args.seeds if tier == "main" else args.ablation_seeds
        views = "" if args.crop_min_area is None else f", crop area >= {args.crop_min_area:g}"
        first = tier_rows[0]
        lines += [
            f"### {tier}: {args.dataset}, {epochs} epochs, seeds {seeds}{views}",
            "",
            "Test split. Raw pixels: linear " + _raw(first["raw_linear"]) + ", kNN "
            + _raw(first["raw_knn"]) + ", kNN k=200 " + _raw(first["raw_knn200"])
            + ", whitened kNN " + _raw(first["raw_whitened_knn"]) + ". Accuracy in %, "
            "mean ± standard deviation over seeds; kNN: k = 20, T = 0.07; Δ is the arm "
            "minus its base method, paired by seed; rank: the encoder's effective rank "
            "(RankMe) on the test images, mean over seeds; –: not in the runs' summaries.",
            "",
            "| method | arm | gradient share | linear | kNN | kNN k=200 | whitened kNN "
            "| Δ linear | Δ kNN | rank |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in tier_rows:
            share = "" if r["share"] is None else f"{100 * r['share']:.0f}%"
            d_lin = "" if r["arm"] == "base" else _pct(r["d_linear"], signed=True)
            d_knn = "" if r["arm"] == "base" else _pct(r["d_knn"], signed=True)
            lines.append(f"| {r['method']} | {r['arm']} | {share} | {_pct(r['linear'])} | "
                         f"{_pct(r['knn'])} | {_pct(r['knn200'])} | "
                         f"{_pct(r['whitened_knn'])} | {d_lin} | {d_knn} | "
                         f"{statistics.mean(r['rank']):.1f} |")
        lines.append("")
        if all(v is None for r in tier_rows for v in r["val_linear"]):
            lines += ["(These runs predate the validation split: no validation table.)", ""]
            continue
        lines += [
            "Validation split (held out of the training images; choose between arms on "
            "these). Raw pixels: linear " + _raw(first["raw_val_linear"]) + ", kNN "
            + _raw(first["raw_val_knn"]) + ".",
            "",
            "| method | arm | linear | kNN | kNN k=200 | whitened kNN | Δ linear | Δ kNN |",
            "|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        for r in tier_rows:
            d_lin = "" if r["arm"] == "base" else _pct(r["d_val_linear"], signed=True)
            d_knn = "" if r["arm"] == "base" else _pct(r["d_val_knn"], signed=True)
            lines.append(f"| {r['method']} | {r['arm']} | {_pct(r['val_linear'])} | "
                         f"{_pct(r['val_knn'])} | {_pct(r['val_knn200'])} | "
                         f"{_pct(r['val_whitened_knn'])} | {d_lin} | {d_knn} |")
        lines.append("")
    return "\n".join(lines)


def _plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [r for r in rows if r["arm"] != "base"]
    if not shown:
        return
    labels = [f"{r['method']}: {r['arm']}" if r["tier"] == "main" else r["arm"] for r in shown]
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.32 * len(shown) + 1.5), sharey=True)
    for ax, key, title in ((axes[0], "d_linear", "Δ linear probe (points, test)"),
                           (axes[1], "d_knn", "Δ kNN, k = 20 (points, test)")):
        # A run without the metric (evaluated before it existed) gets no bar.
        values = [[v for v in r[key] if v is not None] for r in shown]
        means = [100 * statistics.mean(v) if v else 0.0 for v in values]
        errs = [100 * statistics.stdev(v) if len(v) > 1 else 0.0 for v in values]
        colours = ["tab:blue" if r["tier"] == "main" else "tab:orange" for r in shown]
        ax.barh(range(len(shown)), means, xerr=errs, color=colours, alpha=0.8)
        for i, v in enumerate(values):  # each seed's paired difference
            ax.scatter([100 * x for x in v], [i] * len(v), s=7, color="black", zorder=3)
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_title(title)
    axes[0].set_yticks(range(len(shown)), labels, fontsize=8)
    axes[0].invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tier", choices=("main", "ablations", "all", "shares"), default="all",
                        help="'shares' trains nothing: ADC's gradient share per method and "
                             "weight scale")
    parser.add_argument("--dataset", default="mnist5k")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--main-arms", default="adc",
                        help="arms beside each method's base in the main tier, separated by "
                             "commas (ablation arm names, e.g. 'adc,prior without other view')")
    parser.add_argument("--ablation-method", default="byol")
    parser.add_argument("--ablation-epochs", type=int, default=10)
    parser.add_argument("--ablation-seeds", default="0,1")
    parser.add_argument("--arms", default="",
                        help="ablation arms to run, separated by commas (default: all)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--eval-every", type=int, default=5)
    parser.add_argument("--crop-min-area", type=float, default=None,
                        help="smallest crop area of the views (default: the dataset preset's)")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--out", default="runs/study")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.worker:
        _worker(json.loads(sys.stdin.read()))
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.tier == "shares":
        text = _shares_table(args)
        (out / "shares.md").write_text(text)
        print(text)
        return 0
    jobs, arms = _jobs(args)
    if not args.report_only:
        _run(jobs, args.jobs)
    rows = _report(arms, args)
    text = _markdown(rows, args)
    (out / "results.md").write_text(text)
    (out / "results.json").write_text(json.dumps(rows, indent=1, default=str))
    _plot(rows, out / "study.png")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
