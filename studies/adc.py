"""The ADC study: does ADC help tuned baselines, and is it more than spreading or a prior?

Every run is built exactly as ``glf-train --method M --dataset D`` would build it (the
method's recipe for the dataset, ``glf_train.recipes``), plus the arm's settings; each arm
is paired by seed with its method's base run. ADC runs at the registry's weights for the
method (``ADC.for_method``) and the library's defaults otherwise. Three tiers:

- ``main``: the paper's methods (BYOL, SimCLR, SimSiam, W-MSE) and Barlow Twins, SwAV and
  VICReg, each without and with ADC;
- ``controls`` (one method, BYOL by default): ADC alone (``--method-weight 0``: no SSL
  loss, a parametric neighbour embedding of the prior), ADC with a frozen copy of the
  initial encoder as its prior instead of the pixels, and the uniformity term weighted to
  ADC's gradient norm at initialisation (plain spreading at ADC's strength), beside the
  method's base and ADC runs (the main tier's own runs);
- ``stress`` (BYOL, SimCLR and Barlow Twins by default) on ``mnist5k-canvas48``, digits at
  random places on a larger canvas, where pixel neighbourhoods are not semantic: base,
  ADC with the pixel prior, ADC with the frozen-encoder prior.

``--epochs`` and ``--batch-size`` override the recipe for every run (smoke tests, short
budgets); nothing else about a run departs from ``glf-train``'s. The report gives, per
method and arm, the mean and standard deviation over seeds of the linear probe, the kNN
(k = 20) and the whitened kNN on the validation and test splits, each arm's paired
difference with its base (mean, standard deviation, and on how many seeds the arm won),
and the random-encoder and raw-pixel references every run's summary holds.

The first study's tiers stay available, with the settings it pinned (batch 256, ADC at
nu = 1, upsilon = 10 with each anchor's other view in the prior): ``legacy-main``,
``legacy-ablations`` and ``legacy`` (both), and ``shares``, which trains nothing and
tabulates ADC's gradient share per method and weight scale. docs/study.md says which
command made which of its tables.

Every arm's strength is also reported as its *gradient share*: the norm of the gradient
its extra term adds to the encoder's and heads' parameters, over the norm of the whole
gradient, at initialisation, averaged over the first batches. Methods with different loss
scales compare through it.

Runs that already have a ``summary.json`` are reused (after checking that they were
trained with the same settings), so an interrupted study continues where it stopped;
``--jobs`` trains that many runs at a time, one process each; ``--report-only`` trains
nothing. Writes ``results.md``, ``results.json`` and ``study.png`` into ``--out``.
Example::

    python studies/adc.py --tier main --jobs 2 --out runs/study-recipes
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

# The redone study's methods: the paper's four (BYOL, SimCLR, SimSiam, W-MSE), then
# Barlow Twins, SwAV and VICReg.
METHODS = ("byol", "simclr", "simsiam", "wmse", "barlow_twins", "swav", "vicreg")
CONTROL_METHODS = ("byol",)
STRESS_METHODS = ("byol", "simclr", "barlow_twins")
# Where pixel neighbourhoods are not semantic: a digit's place on the canvas is random.
STRESS_DATASET = "mnist5k-canvas48"
TIERS = ("main", "controls", "stress")
LEGACY_TIERS = ("legacy-main", "legacy-ablations", "legacy")

# The redone study's arms: name -> RunConfig values over the method's recipe.
MAIN_ARMS: dict[str, dict[str, Any]] = {"base": {"adc": False}, "adc": {"adc": True}}
FROZEN_PRIOR = {"adc": True, "adc_prior": "frozen_encoder"}
CONTROL_ARMS: dict[str, dict[str, Any]] = {
    **MAIN_ARMS,
    # No SSL loss at all: ADC alone embeds the prior's neighbourhoods.
    "adc alone": {"adc": True, "method_weight": 0.0},
    "adc frozen encoder": FROZEN_PRIOR,
    # Filled in by _matched_arms from gradient norms at initialisation.
    "uniformity at adc strength": {},
}
STRESS_ARMS: dict[str, dict[str, Any]] = {**MAIN_ARMS, "adc frozen encoder": FROZEN_PRIOR}
# The defaults tier: the trials that re-decide ADC's defaults on the validation split, at
# one seed as the base recipes were chosen. Each method: ADC's weights scaled by these
# factors (1: the recommended weights, the main tier's ADC run); the methods of
# DEFAULTS_SETTING_METHODS also try each of ADC's method-independent settings.
WEIGHT_SCALES = (0.3, 3.0)
DEFAULTS_SETTING_METHODS = ("byol", "simclr")
SETTING_ARMS: dict[str, dict[str, Any]] = {
    "prior with other view": {"adc": True, "adc_prior_other_view": True},
    "perplexity 10": {"adc": True, "adc_perplexity": 10.0},
    "perplexity 60": {"adc": True, "adc_perplexity": 60.0},
    "median bandwidths": {"adc": True, "adc_bandwidth": "median",
                          "adc_prior_bandwidth": "median"},
}
TIER_ARMS = {"main": MAIN_ARMS, "controls": CONTROL_ARMS, "stress": STRESS_ARMS,
             "defaults": MAIN_ARMS}
TIER_METHODS = {"main": METHODS, "controls": CONTROL_METHODS, "stress": STRESS_METHODS,
                "defaults": METHODS}
# The seeds of a tier where --seeds is not given.
TIER_SEEDS = {"defaults": "0"}

# The first study's methods, and the settings its tiers pinned when not given.
LEGACY_METHODS = ("byol", "barlow_twins", "swav", "simclr")
LEGACY_DEFAULTS = {"seeds": "0,1,2", "epochs": 25, "batch_size": 256}

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


def _legacy_defaults(args: argparse.Namespace) -> None:
    """The first study's settings where the command line gives none (its tiers, and the
    shares table)."""
    for name, value in LEGACY_DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if not args.methods:
        args.methods = ",".join(LEGACY_METHODS)


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
    base = dataclasses.replace(config, adc=False, uniformity_weight=0.0, method_weight=1.0)
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
    """Fix the control arms' weights from gradient norms; returns every arm's norms and
    gradient share (none for an arm without the method's loss at full weight: its "extra"
    gradient is not an added term's)."""
    norms: dict[str, dict[str, float]] = json.loads(cache.read_text()) if cache.exists() else {}

    def measure(name: str, overrides: dict[str, Any]) -> dict[str, float]:
        key = json.dumps({**settings, **overrides}, sort_keys=True)
        if key not in norms:
            norms[key] = _gradient_norms({**settings, **overrides})
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_text(json.dumps(norms, indent=1))
        return norms[key]

    if "uniformity at adc strength" in arms:
        adc_norm = measure("adc", arms["adc"])["extra"]
        unit = measure("uniformity 1", {"uniformity_weight": 1.0})["extra"]
        arms["uniformity at adc strength"] = {"uniformity_weight": round(adc_norm / unit, 6)}
        if "median (both)" in arms:
            median = arms["median (both)"]
            median_norm = measure("median (both)", median)["extra"]
            arms["uniformity at median strength"] = {
                "uniformity_weight": round(median_norm / unit, 6)
            }
            scale = adc_norm / median_norm
            arms["median at adc strength"] = {
                **median, "adc_nu": round(scale, 6), "adc_upsilon": round(10.0 * scale, 6),
            }
    result = {}
    for name, overrides in arms.items():
        if name == "base" or overrides.get("method_weight", 1.0) != 1.0:
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
    if args.tier in LEGACY_TIERS:
        return _legacy_jobs(args)
    return _study_jobs(args)


def _study_fields(
    args: argparse.Namespace, dataset: str, method: str, overrides: dict[str, Any],
    seed: int,
) -> dict[str, Any]:
    """A run's RunConfig fields (without ``out``): what ``glf-train --method M --dataset D``
    makes of the recipe, under the study's overrides (``--epochs``, ``--batch-size``,
    ``--crop-min-area`` where given) and the arm's ``overrides``."""
    from glf_train import recipes
    from glf_train.config import RunConfig

    values: dict[str, Any] = {
        "method": method, "dataset": dataset, "seed": seed, "backend": "torch",
        "device": args.device, "quiet": True, "eval_every": args.eval_every,
    }
    for name in ("epochs", "batch_size", "crop_min_area"):
        if getattr(args, name) is not None:
            values[name] = getattr(args, name)
    values.update(overrides)
    defaults = {f.name: f.default for f in dataclasses.fields(RunConfig)}
    merged = recipes.with_recipe(values, defaults)
    fields = RunConfig.from_dict({**merged, "out": "/nonexistent"}).validate().to_dict()
    del fields["out"]
    return fields


def _tier_arms(tier: str, method: str) -> dict[str, dict[str, Any]]:
    """The arms of ``tier`` for ``method`` (fresh dicts: name -> RunConfig overrides),
    ADC's weights written in (see `_pin_adc_weights`)."""
    from glf_losses.adc import method_weights

    arms = {name: dict(overrides) for name, overrides in TIER_ARMS[tier].items()}
    nu, upsilon = method_weights(method)
    if tier == "defaults":
        for scale in WEIGHT_SCALES:
            # Rounded so that the weights read as a user types them (0.1 x 0.3 = 0.03).
            arms[f"adc x{scale:g}"] = {"adc": True, "adc_nu": round(nu * scale, 9),
                                       "adc_upsilon": round(upsilon * scale, 9)}
        if method in DEFAULTS_SETTING_METHODS:
            arms.update({name: dict(overrides) for name, overrides in SETTING_ARMS.items()})
    _pin_adc_weights(arms, (nu, upsilon))
    return arms


def _tier_seeds(args: argparse.Namespace, tier: str) -> str:
    return str(args.seeds or TIER_SEEDS.get(tier, "0,1,2,3,4"))


def _pin_adc_weights(arms: dict[str, dict[str, Any]], weights: tuple[float, float]) -> None:
    """Write the method's recommended ADC weights into every ADC arm that does not set
    them, so that a run's saved config says which weights trained it: a run made before
    ``method_weights`` changed then differs from the study's job and is refused rather
    than reused, and the gradient-norm cache is keyed by the weights too."""
    nu, upsilon = weights
    for overrides in arms.values():
        if overrides.get("adc"):
            overrides.setdefault("adc_nu", nu)
            overrides.setdefault("adc_upsilon", upsilon)


def _tier_methods(args: argparse.Namespace, tier: str) -> list[str]:
    return args.methods.split(",") if args.methods else list(TIER_METHODS[tier])


def _study_jobs(args: argparse.Namespace) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The redone study's runs and arms. A run lives in ``out/<dataset>/<method>/<arm>-
    seed<s>`` whichever tier asks for it, so the controls reuse the main tier's base and
    ADC runs."""
    out = Path(args.out)
    cache = out / "gradient_norms.json"
    tiers = TIERS if args.tier == "all" else (args.tier,)
    arms: list[dict[str, Any]] = []
    jobs: dict[str, dict[str, Any]] = {}
    for tier in tiers:
        dataset = args.stress_dataset if tier == "stress" else args.dataset
        seeds = [int(s) for s in _tier_seeds(args, tier).split(",")]
        for method in _tier_methods(args, tier):
            tier_arms = _tier_arms(tier, method)
            settings = _study_fields(args, dataset, method, {}, seeds[0])
            shares = _matched_arms(tier_arms, settings, cache)
            for name, overrides in tier_arms.items():
                arm = {
                    "tier": tier, "dataset": dataset, "method": method, "name": name,
                    "overrides": overrides, "share": shares.get(name, {}).get("share"),
                    "seeds": seeds,
                    "dirs": [out / dataset / method / f"{_slug(name)}-seed{s}" for s in seeds],
                }
                arms.append(arm)
                for seed, directory in zip(seeds, arm["dirs"], strict=True):
                    fields = {**_study_fields(args, dataset, method, overrides, seed),
                              "out": str(directory)}
                    known = jobs.setdefault(str(directory), fields)
                    if known != fields:  # two arms of one name must be one run
                        raise SystemExit(f"{directory}: two different runs share it")
    return list(jobs.values()), arms


def _legacy_jobs(
    args: argparse.Namespace,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The first study's runs: its pinned settings, ``out/main`` and ``out/ablations``."""
    from glf_train.config import RunConfig

    _legacy_defaults(args)
    settings = _base_settings(args)
    out = Path(args.out)
    seeds = [int(s) for s in args.seeds.split(",")]
    arms: list[dict[str, Any]] = []
    if args.tier in ("legacy-main", "legacy"):
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
    if args.tier in ("legacy-ablations", "legacy"):
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


def _mismatched_runs(jobs: list[dict[str, Any]]) -> list[str]:
    """Finished runs in the jobs' directories whose settings differ from the jobs' (a
    ``--out`` shared with another budget or recipe), each with what differs."""
    from glf_train.config import RunConfig
    from glf_train.rundir import RESUME_FREE

    found = []
    for job in jobs:
        path = Path(job["out"], "summary.json")
        if not path.exists():
            continue
        saved = RunConfig.from_dict(json.loads(path.read_text())["config"]).to_dict()
        differ = [k for k in sorted(job) if k not in RESUME_FREE and saved.get(k) != job[k]]
        if differ:
            found.append(f"{job['out']}: " + ", ".join(
                f"{k} {saved.get(k)!r} (the run) vs {job[k]!r} (this study)" for k in differ))
    return found


def _check_finished(jobs: list[dict[str, Any]]) -> None:
    """Refuse to reuse or report runs trained with other settings than the study's."""
    found = _mismatched_runs(jobs)
    if found:
        raise SystemExit(
            "finished runs in --out were trained with other settings than this command's; "
            "give another --out (or the settings they were run with):\n  "
            + "\n  ".join(found)
        )


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


def _legacy_report(
    arms: list[dict[str, Any]], args: argparse.Namespace
) -> list[dict[str, Any]]:
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


def _legacy_markdown(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
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


def _legacy_plot(rows: list[dict[str, Any]], path: Path) -> None:
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


# --- the redone study's report ---------------------------------------------------------------


# The accuracies the redone study reports (entries of _accuracies), each on both splits,
# and paired with the base run: linear probe, kNN (k = 20), whitened kNN.
_STUDY_METRICS = (("linear", "linear"), ("knn", "kNN"), ("whitened_knn", "whitened kNN"))
_STUDY_PAIRED = tuple(split + m for split in ("", "val_") for m, _ in _STUDY_METRICS)


def _spread(values: list[float | None]) -> dict[str, float] | None:
    """Mean and sample standard deviation (0 for one value); None if a value is missing."""
    if not values or any(v is None for v in values):
        return None
    known = [float(v) for v in values if v is not None]
    std = statistics.stdev(known) if len(known) > 1 else 0.0
    return {"mean": statistics.mean(known), "std": std, "n": len(known)}


def _paired_stats(arm: list[float | None], base: list[float | None]) -> dict[str, Any] | None:
    """The arm minus its base, seed by seed (both lists in seed order): the differences,
    their mean and standard deviation, and on how many seeds the arm was ahead."""
    diffs = _paired(arm, base)
    stats = _spread(diffs)
    if stats is None:
        return None
    wins = sum(1 for d in diffs if d is not None and d > 0)
    return {"diffs": diffs, **stats, "wins": wins}


def _study_row(
    arm: dict[str, Any], summaries: list[dict[str, Any]], kind: str = "arm",
    source: str = "", name: str | None = None,
) -> dict[str, Any]:
    """A table row: each accuracy per seed, and its mean and spread."""
    config = summaries[0].get("config", {})
    row: dict[str, Any] = {
        "tier": arm["tier"], "dataset": arm["dataset"], "method": arm["method"],
        "arm": name or arm["name"], "kind": kind, "seeds": arm["seeds"],
        "overrides": arm["overrides"] if kind == "arm" else {},
        "share": arm.get("share") if kind == "arm" else None,
        "epochs": config.get("epochs"), "batch_size": config.get("batch_size"),
    }
    row.update(_accuracies(summaries, source))
    row["stats"] = {entry: _spread(row[entry]) for entry, _ in _ACCURACIES} | {
        "val_" + entry: _spread(row["val_" + entry]) for entry, _ in _ACCURACIES
    }
    row["paired"] = {}
    return row


def _study_report(arms: list[dict[str, Any]], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Rows per tier and method: its arms (base first, each other arm paired by seed with
    it), then the random encoder (from the base runs' summaries), then per tier the raw
    pixels. An arm with unfinished seeds is left out and listed in a row of kind
    ``unfinished``."""
    rows: list[dict[str, Any]] = []
    cache = Path(args.out) / "effective_ranks.json"
    for tier in dict.fromkeys(a["tier"] for a in arms):
        tier_arms = [a for a in arms if a["tier"] == tier]
        raw: dict[str, Any] | None = None
        for method in dict.fromkeys(a["method"] for a in tier_arms):
            method_arms = [a for a in tier_arms if a["method"] == method]
            base_arm = next(a for a in method_arms if a["name"] == "base")
            base: dict[str, Any] | None = None
            for arm in method_arms:
                done = [d for d in arm["dirs"] if Path(d, "summary.json").exists()]
                if len(done) < len(arm["dirs"]):
                    rows.append({"tier": tier, "dataset": arm["dataset"], "method": method,
                                 "arm": arm["name"], "kind": "unfinished",
                                 "finished": len(done), "seeds": arm["seeds"]})
                    continue
                summaries = [_read_summary(d) for d in arm["dirs"]]
                row = _study_row(arm, summaries)
                row["rank"] = _effective_ranks(arm["dirs"], cache)
                if arm is base_arm:
                    base = row
                    reference = _study_row(arm, summaries, "reference", "random_encoder_",
                                           "random encoder")
                    raw = raw or _study_row(arm, summaries[:1], "reference", "raw_pixels_",
                                            "raw pixels")
                elif base is not None:
                    for entry in _STUDY_PAIRED:
                        row["paired"][entry] = _paired_stats(row[entry], base[entry])
                rows.append(row)
            if base is not None:
                rows.append(reference)
        if raw is not None:
            rows.append({**raw, "method": "", "seeds": raw["seeds"][:1]})
    return rows


def _mean_pct(stats: dict[str, Any] | None, signed: bool = False) -> str:
    """``mean ± std`` in % (the value alone for one run: no spread to show); "–" where a
    run lacks the value."""
    if stats is None:
        return "–"
    sign = "+" if signed else ""
    if stats["n"] == 1:
        return f"{100 * stats['mean']:{sign}.1f}"
    return f"{100 * stats['mean']:{sign}.1f} ± {100 * stats['std']:.1f}"


def _delta(stats: dict[str, Any] | None) -> str:
    """A paired difference: ``mean ± std (wins/n)``."""
    if stats is None:
        return ""
    return f"{_mean_pct(stats, signed=True)} ({stats['wins']}/{stats['n']})"


def _command(args: argparse.Namespace, tier: str) -> str:
    """The command that trains (or reuses) and reports one tier's runs."""
    words = ["python", "studies/adc.py", "--tier", tier]
    if args.methods:
        words += ["--methods", args.methods]
    words += ["--seeds", _tier_seeds(args, tier)]
    if tier != "stress" and args.dataset != "mnist5k":
        words += ["--dataset", args.dataset]
    if tier == "stress" and args.stress_dataset != STRESS_DATASET:
        words += ["--stress-dataset", args.stress_dataset]
    for name in ("epochs", "batch_size", "crop_min_area"):
        if getattr(args, name) is not None:
            words += ["--" + name.replace("_", "-"), f"{getattr(args, name):g}"]
    words += ["--out", args.out]
    return " ".join(shlex.quote(w) for w in words)


_TIER_TITLES = {
    "main": "every method without and with ADC",
    "controls": "ADC alone, a frozen-encoder prior, and spreading at ADC's strength",
    "stress": "a dataset where pixel neighbourhoods are not semantic",
    "defaults": "ADC's weights and settings tried for the defaults (choose on validation)",
}


def _budget(rows: list[dict[str, Any]]) -> str:
    """The runs' batch size and epochs: one phrase, or one per group of methods."""
    budgets: dict[tuple[Any, Any], list[str]] = {}
    for r in rows:
        if r["kind"] != "arm":
            continue
        methods = budgets.setdefault((r["batch_size"], r["epochs"]), [])
        if r["method"] not in methods:
            methods.append(r["method"])
    def phrase(batch: Any, epochs: Any) -> str:
        return f"batch {batch}, {epochs} epoch{'' if epochs == 1 else 's'}"

    if len(budgets) == 1:
        (batch, epochs), = budgets
        return phrase(batch, epochs)
    return "; ".join(f"{', '.join(methods)}: {phrase(b, e)}" for (b, e), methods in budgets.items())


def _study_markdown(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    """Per tier: the command, the test split's table, the validation split's table."""
    lines: list[str] = []
    for tier in dict.fromkeys(r["tier"] for r in rows):
        tier_rows = [r for r in rows if r["tier"] == tier]
        shown = [r for r in tier_rows if r["kind"] != "unfinished"]
        dataset = tier_rows[0]["dataset"]
        lines += [
            f"### {tier}: {_TIER_TITLES.get(tier, tier)} ({dataset})",
            "",
            "Regenerate (reuses finished runs; add `--report-only` to train nothing, "
            "`--jobs N` to train N runs at a time):",
            "",
            f"    {_command(args, tier)}",
            "",
        ]
        if not shown:
            lines += ["No arm has finished every seed yet.", ""]
        else:
            overridden = [n for n in ("epochs", "batch_size", "crop_min_area")
                          if getattr(args, n) is not None]
            lines += [
                f"Each method at its recipe for {dataset} ({_budget(shown)}"
                + (f"; {', '.join('--' + n.replace('_', '-') for n in overridden)} "
                   "overriding the recipe" if overridden else "")
                + f"), seeds {','.join(str(s) for s in tier_rows[0]['seeds'])}. Accuracy in "
                "%, mean ± standard deviation over seeds; kNN: k = 20, T = 0.07, on the "
                "features and on whitened features; Δ: the arm minus the method's base run "
                "of the same seed, mean ± standard deviation, and (wins/seeds) on how "
                "many seeds the arm was ahead; gradient share: the arm's extra term's part "
                "of the gradient norm at initialisation; rank: the effective rank (RankMe) "
                "of the test features, mean over seeds. The random encoder is each method's "
                "initial encoder (its base runs' seeds); raw pixels are the flattened images.",
                "",
            ]
        for split, title in (("", "Test split"), ("val_", "Validation split (held out of "
                                                         "the training images; choose on these)")):
            if not shown:
                break
            lines += [
                f"{title}:",
                "",
                "| method | arm | " + ("gradient share | " if not split else "")
                + " | ".join(label for _, label in _STUDY_METRICS) + " | "
                + " | ".join("Δ " + label for _, label in _STUDY_METRICS)
                + (" | rank |" if not split else " |"),
                "|---|---|" + ("---:|" if not split else "")
                + "---:|" * (2 * len(_STUDY_METRICS) + (0 if split else 1)),
            ]
            for r in shown:
                cells = [r["method"], r["arm"]]
                if not split:
                    cells.append("" if r["share"] is None else f"{100 * r['share']:.0f}%")
                cells += [_mean_pct(r["stats"][split + m]) for m, _ in _STUDY_METRICS]
                cells += [_delta(r["paired"].get(split + m)) for m, _ in _STUDY_METRICS]
                if not split:
                    rank = r.get("rank")
                    cells.append(f"{statistics.mean(rank):.1f}" if rank else "")
                lines.append("| " + " | ".join(cells) + " |")
            lines.append("")
        unfinished = [r for r in tier_rows if r["kind"] == "unfinished"]
        if unfinished:
            lines += ["Not finished (left out above): " + ", ".join(
                f"{r['method']} {r['arm']} ({r['finished']} of {len(r['seeds'])} seeds)"
                for r in unfinished) + ".", ""]
    return "\n".join(lines)


def _study_plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Each arm's paired differences on the test split: mean ± std, and every seed's."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [r for r in rows if r["kind"] == "arm" and r["paired"]]
    if not shown:
        return
    colours = dict(zip((*TIERS, "defaults"), ("tab:blue", "tab:orange", "tab:green", "tab:purple"),
                       strict=True))
    fig, axes = plt.subplots(1, len(_STUDY_METRICS), figsize=(15, 0.32 * len(shown) + 1.5),
                             sharey=True)
    for ax, (metric, label) in zip(axes, _STUDY_METRICS, strict=True):
        stats = [r["paired"].get(metric) for r in shown]
        ax.barh(range(len(shown)), [100 * s["mean"] if s else 0.0 for s in stats],
                xerr=[100 * s["std"] if s else 0.0 for s in stats],
                color=[colours.get(r["tier"], "tab:gray") for r in shown], alpha=0.8)
        for i, s in enumerate(stats):
            if s:
                ax.scatter([100 * d for d in s["diffs"]], [i] * len(s["diffs"]), s=7,
                           color="black", zorder=3)
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_title(f"Δ {label} (points, test)")
    axes[0].set_yticks(range(len(shown)),
                       [f"{r['tier']}: {r['method']}: {r['arm']}" for r in shown], fontsize=8)
    axes[0].invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tier", choices=(*TIERS, "all", "defaults", *LEGACY_TIERS, "shares"), default="all",
        help="main, controls, stress, or all three; defaults: the trials of ADC's weights "
             "and settings its defaults are chosen from (seed 0 unless --seeds); "
             "legacy-main, legacy-ablations and legacy: the first study's tiers; shares "
             "trains nothing: ADC's gradient share per method and weight scale (default: all)")
    parser.add_argument("--dataset", default="mnist5k",
                        help="the main and controls tiers' dataset (default: mnist5k)")
    parser.add_argument("--stress-dataset", default=STRESS_DATASET,
                        help=f"the stress tier's dataset (default: {STRESS_DATASET})")
    parser.add_argument(
        "--methods", default=None,
        help="methods separated by commas (default: main " + ",".join(METHODS)
             + "; controls " + ",".join(CONTROL_METHODS) + "; stress "
             + ",".join(STRESS_METHODS) + "; legacy tiers and shares "
             + ",".join(LEGACY_METHODS) + ")")
    parser.add_argument("--seeds", default=None,
                        help="seeds separated by commas, each arm's paired with its base's "
                             "(default: 0,1,2,3,4; legacy tiers 0,1,2)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="override the recipe's epochs for every run (default: the "
                             "recipe's; legacy tiers 25)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="override the recipe's batch size for every run (default: the "
                             "recipe's; legacy tiers and shares 256)")
    parser.add_argument("--crop-min-area", type=float, default=None,
                        help="smallest crop area of the views (default: the dataset preset's)")
    parser.add_argument("--device", default="cpu",
                        help="where the runs train: cpu, cuda or cuda:N (default: cpu)")
    parser.add_argument("--eval-every", type=int, default=5,
                        help="the runs' validation kNN every N epochs (default: 5)")
    parser.add_argument("--main-arms", default="adc",
                        help="legacy-main: arms beside each method's base, separated by "
                             "commas (ablation arm names, e.g. 'adc,prior without other view')")
    parser.add_argument("--ablation-method", default="byol")
    parser.add_argument("--ablation-epochs", type=int, default=10)
    parser.add_argument("--ablation-seeds", default="0,1")
    parser.add_argument("--arms", default="",
                        help="legacy-ablations: arms to run, separated by commas (default: all)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="runs trained at a time, one process each (default: 1)")
    parser.add_argument("--out", default="runs/study-recipes")
    parser.add_argument("--report-only", action="store_true",
                        help="train nothing: report the finished runs")
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
        _legacy_defaults(args)
        text = _shares_table(args)
        (out / "shares.md").write_text(text)
        print(text)
        return 0
    legacy = args.tier in LEGACY_TIERS
    jobs, arms = _jobs(args)
    if not legacy:
        _check_finished(jobs)
    if not args.report_only:
        _run(jobs, args.jobs)
    if legacy:
        rows = _legacy_report(arms, args)
        text = _legacy_markdown(rows, args)
        _legacy_plot(rows, out / "study.png")
    else:
        rows = _study_report(arms, args)
        text = _study_markdown(rows, args)
        _study_plot(rows, out / "study.png")
    (out / "results.md").write_text(text)
    (out / "results.json").write_text(json.dumps(rows, indent=1, default=str))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
