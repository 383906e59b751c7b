"""The ADC study's plan and report, and the loss benchmark's agreement check.

The study's training runs take minutes each; what is tested here is what decides their
meaning: which runs are paired, how controls get their weights, and what the report
computes from the runs' summaries. The benchmark is run at a toy size: it refuses to
time a hand-written contender that disagrees with the library, so a clean exit means
every native formula matched ours.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(path: Path, name: str) -> ModuleType:
    sys.path.insert(0, str(path.parent))  # each script imports its own helpers
    try:
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while being built
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(path.parent))
    return module


@pytest.fixture(scope="module")
def study() -> ModuleType:
    return _load(ROOT / "studies" / "adc.py", "glf_study_adc")


def _fake_norms(settings: dict[str, Any]) -> dict[str, float]:
    """Gradient norms that depend on the arm, so matched weights can be checked."""
    if settings.get("uniformity_weight"):
        return {"whole": 10.0, "extra": 2.0 * settings["uniformity_weight"]}
    if not settings.get("adc"):
        return {"whole": 10.0, "extra": 0.0}
    median = settings.get("adc_bandwidth") == "median"
    # None: the method's own weight (the redone study's runs), 10 for these methods.
    extra = (0.5 if median else 4.0) * (settings.get("adc_upsilon") or 10.0) / 10.0
    return {"whole": 10.0 + extra, "extra": extra}


def _plan(study: ModuleType, monkeypatch: pytest.MonkeyPatch, argv: list[str]) -> Any:
    monkeypatch.setattr(study, "_gradient_norms", _fake_norms)
    return study._jobs(study._parser().parse_args(argv))


def test_legacy_main_tier_pairs_every_arm_with_its_base_by_seed(
    study: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    jobs, arms = _plan(study, monkeypatch, [
        "--tier", "legacy-main", "--methods", "byol,simclr", "--seeds", "0,3", "--epochs", "7",
        "--crop-min-area", "0.2", "--main-arms", "adc,prior without other view",
        "--out", str(tmp_path),
    ])
    assert [(a["method"], a["name"]) for a in arms] == [
        (m, n) for m in ("byol", "simclr") for n in ("base", "adc", "prior without other view")
    ]
    assert len(jobs) == 2 * 3 * 2
    by_out = {Path(j["out"]).name: j for j in jobs}
    # The historical directory names of the default arms are kept, so old runs are reused.
    assert {"byol-seed0", "byol-adc-seed3", "simclr-prior_without_other_view-seed0"} <= set(by_out)
    base, arm = by_out["simclr-seed3"], by_out["simclr-prior_without_other_view-seed3"]
    assert (base["adc"], arm["adc"], arm["adc_prior_other_view"]) == (False, True, False)
    # A pair differs in the arm's settings only.
    differing = {k for k in base if base[k] != arm[k]}
    assert differing == {"adc", "adc_prior_other_view", "out"}
    assert all(j["epochs"] == 7 and j["crop_min_area"] == 0.2 for j in jobs)
    assert arms[1]["share"] == pytest.approx(4.0 / 14.0)


def test_legacy_main_tier_refuses_controls_and_unknown_arms(
    study: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for bad in ("uniformity at adc strength", "adc x7"):
        with pytest.raises(SystemExit, match="--main-arms: not usable"):
            _plan(study, monkeypatch, ["--tier", "legacy-main", "--main-arms", bad,
                                       "--out", str(tmp_path)])


def test_legacy_controls_are_weighted_to_the_gradient_norm_they_match(
    study: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _, arms = _plan(study, monkeypatch, ["--tier", "legacy-ablations", "--ablation-seeds", "0",
                                         "--out", str(tmp_path)])
    by_name = {a["name"]: a["overrides"] for a in arms}
    # Fake norms: ADC's extra gradient 4, "median" ADC's 0.5, uniformity 2 per unit weight.
    assert by_name["uniformity at adc strength"]["uniformity_weight"] == pytest.approx(2.0)
    assert by_name["uniformity at median strength"]["uniformity_weight"] == pytest.approx(0.25)
    matched = by_name["median at adc strength"]
    assert matched["adc_bandwidth"] == matched["adc_prior_bandwidth"] == "median"
    assert (matched["adc_nu"], matched["adc_upsilon"]) == pytest.approx((8.0, 80.0))
    assert _fake_norms({**matched, "adc": True})["extra"] == pytest.approx(4.0)


def test_shares_tier_tabulates_every_method_and_scale(
    study: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(study, "_gradient_norms", _fake_norms)
    assert study.main(["--tier", "shares", "--methods", "byol,swav", "--out", str(tmp_path)]) == 0
    lines = (tmp_path / "shares.md").read_text().splitlines()
    # Fake norms: ADC's extra gradient is 0.4 upsilon against a base gradient of 10.
    assert "| byol | 4% | 29% | 80% | 98% |" in lines
    assert "| swav | 4% | 29% | 80% | 98% |" in lines


def _summary(linear: float, knn: float) -> dict[str, Any]:
    """A current summary: kNN k=200 0.1 below k=20, whitened 0.05 above, and each
    validation accuracy 0.02 above its test one."""
    test = {"linear_probe_accuracy": linear, "knn_accuracy": knn,
            "knn200_accuracy": knn - 0.1, "whitened_knn_accuracy": knn + 0.05}
    raw = {"linear_probe_accuracy": 0.9, "knn_accuracy": 0.8, "knn200_accuracy": 0.7,
           "whitened_knn_accuracy": 0.6}
    return {
        **test, **{"val_" + k: v + 0.02 for k, v in test.items()},
        **{"raw_pixels_" + k: v for k, v in raw.items()},
        **{"raw_pixels_val_" + k: v + 0.02 for k, v in raw.items()},
        "effective_rank": 10 * knn, "evaluation": {"val_rows": 400},
    }


def _write_runs(root: Path, runs: dict[str, tuple[float, float]], older: bool = False) -> None:
    for name, (linear, knn) in runs.items():
        (root / "main" / name).mkdir(parents=True)
        summary: dict[str, Any] = _summary(linear, knn)
        if older:
            # Before the validation split: no "evaluation", no val_ keys, and the kNN
            # under knn_accuracy was at k = 200.
            summary = {"linear_probe_accuracy": linear, "knn_accuracy": knn,
                       "effective_rank": 10 * knn, "raw_pixels_linear_probe_accuracy": 0.9,
                       "raw_pixels_knn_accuracy": 0.8}
        (root / "main" / name / "summary.json").write_text(json.dumps(summary))


def test_legacy_report_gives_paired_differences_and_skips_unfinished_arms(
    study: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(study, "_gradient_norms", _fake_norms)
    _write_runs(tmp_path, {
        "byol-seed0": (0.80, 0.50), "byol-seed1": (0.90, 0.70),
        "byol-adc-seed0": (0.85, 0.60), "byol-adc-seed1": (0.93, 0.70),
        "simclr-seed0": (0.95, 0.80),  # seed 1 of SimCLR never finished
        "simclr-adc-seed0": (0.96, 0.85), "simclr-adc-seed1": (0.97, 0.86),
    })
    argv = ["--tier", "legacy-main", "--methods", "byol,simclr", "--seeds", "0,1",
            "--report-only", "--out", str(tmp_path)]
    assert study.main(argv) == 0
    rows = json.loads((tmp_path / "results.json").read_text())
    assert [(r["method"], r["arm"]) for r in rows] == [("byol", "base"), ("byol", "adc")]
    adc = rows[1]
    assert adc["d_linear"] == pytest.approx([0.05, 0.03])
    assert adc["d_knn"] == pytest.approx([0.10, 0.0])
    assert adc["d_val_linear"] == pytest.approx([0.05, 0.03])
    assert adc["val_knn"] == pytest.approx([0.62, 0.72])
    table = (tmp_path / "results.md").read_text()
    # test split: linear, kNN, kNN k=200, whitened kNN, Δ linear, Δ kNN, rank
    assert ("| byol | adc | 29% | 89.0 ± 5.7 | 65.0 ± 7.1 | 55.0 ± 7.1 | 70.0 ± 7.1 | "
            "+4.0 ± 1.4 | +5.0 ± 7.1 | 6.5 |") in table
    assert "Raw pixels: linear 90.0, kNN 80.0, kNN k=200 70.0, whitened kNN 60.0" in table
    # validation split, below it
    assert ("| byol | adc | 91.0 ± 5.7 | 67.0 ± 7.1 | 57.0 ± 7.1 | 72.0 ± 7.1 | +4.0 ± 1.4 "
            "| +5.0 ± 7.1 |") in table
    assert table.index("Validation split") > table.index("| byol | adc | 29%")
    assert (tmp_path / "study.png").stat().st_size > 0


def test_legacy_report_on_runs_from_before_the_validation_split(
    study: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(study, "_gradient_norms", _fake_norms)
    _write_runs(tmp_path, {"byol-seed0": (0.80, 0.50), "byol-adc-seed0": (0.85, 0.60)},
                older=True)
    assert study.main(["--tier", "legacy-main", "--methods", "byol", "--seeds", "0",
                       "--report-only", "--out", str(tmp_path)]) == 0
    table = (tmp_path / "results.md").read_text()
    # Their kNN was at k = 200: it shows in that column, and the k = 20 one is unknown.
    assert "| byol | adc | 29% | 85.0 ± 0.0 | – | 60.0 ± 0.0 | – | +5.0 ± 0.0 | – | 6.0 |" \
        in table
    assert "Raw pixels: linear 90.0, kNN –, kNN k=200 80.0" in table
    assert "no validation table" in table and "Validation split" not in table


# --- the redone study: tiers at the recipes --------------------------------------------------


def _glf_train(method: str, dataset: str, seed: int, out: Path, *flags: str) -> dict[str, Any]:
    """The fields ``glf-train`` itself makes of a command line (recipe included)."""
    from glf_train.cli import parse_config

    argv = ["--method", method, "--dataset", dataset, "--seed", str(seed), "--out", str(out),
            "--quiet", "--eval-every", "5", *flags]
    fields: dict[str, Any] = parse_config(argv).config.to_dict()
    return fields


def _adc_flags(method: str) -> tuple[str, ...]:
    """``--adc`` at the registry's weights for ``method``, written out as the study pins
    them."""
    from glf_losses.adc import method_weights

    nu, upsilon = method_weights(method)
    return ("--adc", "--adc-nu", str(nu), "--adc-upsilon", str(upsilon))


def test_main_tier_builds_each_run_as_glf_train_would(
    study: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    jobs, arms = _plan(study, monkeypatch, ["--tier", "main", "--methods", "byol,wmse",
                                            "--seeds", "0,3", "--out", str(tmp_path)])
    assert [(a["method"], a["name"]) for a in arms] == [
        (m, n) for m in ("byol", "wmse") for n in ("base", "adc")
    ]
    assert len(jobs) == 2 * 2 * 2
    by_out = {j["out"]: j for j in jobs}
    for arm in arms:
        flags = _adc_flags(arm["method"]) if arm["name"] == "adc" else ()
        for seed, directory in zip((0, 3), arm["dirs"], strict=True):
            assert directory == tmp_path / "mnist5k" / arm["method"] / f"{arm['name']}-seed{seed}"
            assert by_out[str(directory)] == _glf_train(
                arm["method"], "mnist5k", seed, directory, *flags)
    # The recipe's values, ADC at the registry's weights, written into the run's config.
    base, adc = by_out[str(arms[2]["dirs"][1])], by_out[str(arms[3]["dirs"][1])]
    assert (base["batch_size"], base["epochs"], base["proj_dim"]) == (64, 30, 32)
    assert base["loss_options"] == {"w_size": 64}
    assert (adc["adc_nu"], adc["adc_upsilon"]) == (1.0, 10.0)
    # Paired: same seed, and nothing but ADC and the directory differs.
    assert {k for k in base if base[k] != adc[k]} == {"adc", "adc_nu", "adc_upsilon", "out"}
    assert base["seed"] == adc["seed"] == 3
    assert arms[1]["share"] == pytest.approx(4.0 / 14.0)


def test_overrides_replace_only_the_recipe_values_they_name(
    study: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    jobs, _ = _plan(study, monkeypatch, [
        "--tier", "main", "--methods", "wmse", "--seeds", "1", "--epochs", "3",
        "--batch-size", "128", "--crop-min-area", "0.3", "--out", str(tmp_path)])
    for job in jobs:
        assert (job["epochs"], job["batch_size"], job["crop_min_area"]) == (3, 128, 0.3)
        # The method's own recipe values stay.
        assert job["proj_dim"] == 32 and job["loss_options"] == {"w_size": 64}
        flags = ["--epochs", "3", "--batch-size", "128", "--crop-min-area", "0.3"]
        assert job == _glf_train("wmse", "mnist5k", 1, Path(job["out"]),
                                 *flags, *(_adc_flags("wmse") if job["adc"] else ()))


def test_the_papers_datasets_plan_as_glf_train_on_a_gpu(
    study: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """docs/study.md's CIFAR-10 and STL-10 commands: every run is glf-train's on that
    dataset, on the GPU, at the given budget (no recipe there: the trainer's defaults)."""
    for dataset in ("cifar10", "stl10"):
        argv = ["--tier", "main", "--dataset", dataset, "--methods", "byol,simclr",
                "--seeds", "0,1", "--device", "cuda", "--epochs", "200", "--batch-size", "256",
                "--out", str(tmp_path / dataset)]
        jobs, arms = _plan(study, monkeypatch, argv)
        assert len(jobs) == 2 * 2 * 2
        for arm in arms:
            flags = _adc_flags(arm["method"]) if arm["name"] == "adc" else ()
            for seed, directory in zip((0, 1), arm["dirs"], strict=True):
                assert directory == tmp_path / dataset / dataset / arm["method"] / \
                    f"{arm['name']}-seed{seed}"
                job = next(j for j in jobs if j["out"] == str(directory))
                assert job == _glf_train(arm["method"], dataset, seed, directory, *flags,
                                         "--device", "cuda", "--epochs", "200",
                                         "--batch-size", "256")
                assert (job["device"], job["arch"], job["epochs"]) == ("cuda", "auto", 200)


def test_defaults_tier_tries_weight_scales_and_settings_at_seed_0(
    study: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    jobs, arms = _plan(study, monkeypatch, ["--tier", "defaults", "--methods", "simsiam,byol",
                                            "--out", str(tmp_path)])
    names = {m: [a["name"] for a in arms if a["method"] == m] for m in ("simsiam", "byol")}
    assert names["simsiam"] == ["base", "adc", "adc x0.3", "adc x3"]
    assert names["byol"] == ["base", "adc", "adc x0.3", "adc x3", "prior with other view",
                             "perplexity 10", "perplexity 60", "median bandwidths"]
    assert all(a["seeds"] == [0] for a in arms) and len(jobs) == 4 + 8
    by_out = {j["out"]: j for j in jobs}
    flags = {
        ("simsiam", "adc x0.3"): ("--adc", "--adc-nu", "0.03", "--adc-upsilon", "0.3"),
        ("simsiam", "adc x3"): ("--adc", "--adc-nu", "0.3", "--adc-upsilon", "3"),
        ("byol", "adc x3"): ("--adc", "--adc-nu", "3", "--adc-upsilon", "30"),
        ("byol", "prior with other view"): (*_adc_flags("byol"), "--adc-prior-other-view"),
        ("byol", "perplexity 10"): (*_adc_flags("byol"), "--adc-perplexity", "10"),
        ("byol", "median bandwidths"): (*_adc_flags("byol"), "--adc-bandwidth", "median",
                                        "--adc-prior-bandwidth", "median"),
    }
    for arm in arms:
        if (arm["method"], arm["name"]) in flags:
            (directory,) = arm["dirs"]
            assert directory == tmp_path / "mnist5k" / arm["method"] / \
                f"{study._slug(arm['name'])}-seed0"
            assert by_out[str(directory)] == _glf_train(
                arm["method"], "mnist5k", 0, directory, *flags[(arm["method"], arm["name"])])
    # The base and recommended-weight runs are the main tier's seed-0 runs.
    _, main_arms = _plan(study, monkeypatch, ["--tier", "main", "--methods", "simsiam",
                                              "--seeds", "0", "--out", str(tmp_path)])
    assert [a["dirs"] for a in main_arms] == [a["dirs"] for a in arms[:2]]
    assert "--tier defaults --methods simsiam,byol --seeds 0 " in study._command(
        study._parser().parse_args(["--tier", "defaults", "--methods", "simsiam,byol",
                                    "--out", str(tmp_path)]), "defaults")


def test_controls_tier_arms_and_the_runs_it_shares_with_main(
    study: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    jobs, arms = _plan(study, monkeypatch, ["--tier", "controls", "--seeds", "0,1",
                                            "--out", str(tmp_path)])
    assert [(a["method"], a["name"]) for a in arms] == [("byol", n) for n in (
        "base", "adc", "adc alone", "adc frozen encoder", "uniformity at adc strength")]
    by_name = {a["name"]: a for a in arms}
    runs = {j["out"]: j for j in jobs}
    assert len(runs) == len(jobs) == 5 * 2

    def run(name: str, seed: int) -> dict[str, Any]:
        return runs[str(by_name[name]["dirs"][seed])]

    # The base and ADC runs are the main tier's, directory for directory.
    _, main_arms = _plan(study, monkeypatch, ["--tier", "main", "--methods", "byol",
                                              "--seeds", "0,1", "--out", str(tmp_path)])
    assert [a["dirs"] for a in main_arms] == [by_name["base"]["dirs"], by_name["adc"]["dirs"]]
    base = run("base", 1)
    alone, frozen, spread = run("adc alone", 1), run("adc frozen encoder", 1), \
        run("uniformity at adc strength", 1)
    assert (alone["adc"], alone["method_weight"]) == (True, 0.0)
    assert (frozen["adc"], frozen["adc_prior"]) == (True, "frozen_encoder")
    # Fake norms: ADC adds 4 to the gradient norm, the uniformity term 2 per unit weight.
    assert (spread["adc"], spread["uniformity_weight"]) == (False, pytest.approx(2.0))
    # Each as glf-train makes it of the arm's flags.
    assert alone == _glf_train("byol", "mnist5k", 1, by_name["adc alone"]["dirs"][1],
                               *_adc_flags("byol"), "--method-weight", "0")
    assert frozen == _glf_train("byol", "mnist5k", 1, by_name["adc frozen encoder"]["dirs"][1],
                                *_adc_flags("byol"), "--adc-prior", "frozen_encoder")
    assert spread == _glf_train("byol", "mnist5k", 1,
                                by_name["uniformity at adc strength"]["dirs"][1],
                                "--uniformity-weight", "2")
    weights = {"adc", "adc_nu", "adc_upsilon"}
    for other, changed in ((alone, weights | {"method_weight"}),
                           (frozen, weights | {"adc_prior"}), (spread, {"uniformity_weight"})):
        assert {k for k in base if base[k] != other[k]} == changed | {"out"}
        assert other["seed"] == 1 and other["batch_size"] == 64 and other["epochs"] == 30
    # ADC alone has no share: without the method's loss nothing is "added" to it.
    assert by_name["adc alone"]["share"] is None
    assert by_name["adc frozen encoder"]["share"] == pytest.approx(4.0 / 14.0)


def test_stress_tier_runs_on_the_canvas_at_its_recipe(
    study: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    jobs, arms = _plan(study, monkeypatch, ["--tier", "stress", "--seeds", "2",
                                            "--out", str(tmp_path)])
    assert [(a["method"], a["name"]) for a in arms] == [
        (m, n) for m in ("byol", "simclr", "barlow_twins")
        for n in ("base", "adc", "adc frozen encoder")
    ]
    for arm in arms:
        (directory,) = arm["dirs"]
        adc = _adc_flags(arm["method"])
        flags = {"base": (), "adc": adc,
                 "adc frozen encoder": (*adc, "--adc-prior", "frozen_encoder")}[arm["name"]]
        job = next(j for j in jobs if j["out"] == str(directory))
        assert job == _glf_train(arm["method"], "mnist5k-canvas48", 2, directory, *flags)
        assert job["dataset"] == "mnist5k-canvas48" and job["batch_size"] == 64
    # --tier all: every tier's runs once (the controls reuse the main tier's).
    jobs, arms = _plan(study, monkeypatch, ["--tier", "all", "--seeds", "0",
                                            "--out", str(tmp_path)])
    assert len(jobs) == len({j["out"] for j in jobs}) == 7 * 2 + 3 + 3 * 3


def _write_study_runs(
    study: ModuleType, monkeypatch: pytest.MonkeyPatch, root: Path, argv: list[str],
    accuracies: dict[tuple[str, str], list[tuple[float, float, float]]],
) -> None:
    """Fabricated summaries for the planned runs: (method, arm) -> per seed (linear, kNN,
    whitened kNN) on the test split, the validation split 0.02 above; random encoder
    0.5, 0.4, 0.45 plus 0.01 per seed; raw pixels 0.9, 0.8, 0.7."""
    jobs, arms = _plan(study, monkeypatch, argv)
    config = {j["out"]: j for j in jobs}
    for arm in arms:
        for seed, directory in enumerate(arm["dirs"]):
            values = accuracies.get((arm["method"], arm["name"]), [])
            if seed >= len(values):
                continue  # this seed never finished
            test = dict(zip(("linear_probe_accuracy", "knn_accuracy", "whitened_knn_accuracy"),
                            values[seed], strict=True))
            test["knn200_accuracy"] = test["knn_accuracy"] - 0.1
            random = {"linear_probe_accuracy": 0.5 + 0.01 * seed,
                      "knn_accuracy": 0.4 + 0.01 * seed,
                      "whitened_knn_accuracy": 0.45 + 0.01 * seed, "knn200_accuracy": 0.3}
            raw = {"linear_probe_accuracy": 0.9, "knn_accuracy": 0.8,
                   "whitened_knn_accuracy": 0.7, "knn200_accuracy": 0.6}
            summary = {
                **test, **{"val_" + k: v + 0.02 for k, v in test.items()},
                **{p + s + k: v for p, metrics in (("random_encoder_", random),
                                                   ("raw_pixels_", raw))
                   for k, v in metrics.items() for s in ("", "val_")},
                "effective_rank": 20.0 + seed, "evaluation": {"val_rows": 400},
                "config": config[str(directory)],
            }
            directory.mkdir(parents=True)
            (directory / "summary.json").write_text(json.dumps(summary))


def test_study_report_pairs_by_seed_and_counts_wins(
    study: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    argv = ["--tier", "main", "--methods", "byol,simclr", "--seeds", "0,1,2",
            "--out", str(tmp_path)]
    _write_study_runs(study, monkeypatch, tmp_path, argv, {
        ("byol", "base"): [(0.80, 0.50, 0.60), (0.90, 0.70, 0.60), (0.85, 0.60, 0.60)],
        ("byol", "adc"): [(0.85, 0.60, 0.70), (0.88, 0.70, 0.61), (0.95, 0.65, 0.62)],
        ("simclr", "base"): [(0.95, 0.80, 0.9)] * 3,
        ("simclr", "adc"): [(0.96, 0.85, 0.9)] * 2,  # seed 2 never finished
    })
    assert study.main([*argv, "--report-only"]) == 0
    rows = json.loads((tmp_path / "results.json").read_text())
    assert [(r["method"], r["arm"], r["kind"]) for r in rows] == [
        ("byol", "base", "arm"), ("byol", "adc", "arm"), ("byol", "random encoder", "reference"),
        ("simclr", "base", "arm"), ("simclr", "adc", "unfinished"),
        ("simclr", "random encoder", "reference"), ("", "raw pixels", "reference"),
    ]
    base, adc, random, raw = rows[0], rows[1], rows[2], rows[6]
    assert base["stats"]["linear"]["mean"] == pytest.approx(0.85)
    assert base["stats"]["linear"]["std"] == pytest.approx(0.05)  # sample std, n - 1
    assert base["paired"] == {}
    linear = adc["paired"]["linear"]
    assert linear["diffs"] == pytest.approx([0.05, -0.02, 0.10])
    assert (linear["mean"], linear["std"]) == pytest.approx((0.13 / 3, 0.06027714))
    assert (linear["wins"], linear["n"]) == (2, 3)
    knn = adc["paired"]["knn"]
    assert knn["diffs"] == pytest.approx([0.10, 0.0, 0.05])
    assert knn["wins"] == 2  # a tie is not a win
    assert adc["paired"]["whitened_knn"]["wins"] == 3
    assert adc["paired"]["val_linear"]["diffs"] == pytest.approx([0.05, -0.02, 0.10])
    assert adc["epochs"] == 30 and adc["batch_size"] == 64 and adc["share"] == pytest.approx(
        4.0 / 14.0)
    assert random["stats"]["linear"]["mean"] == pytest.approx(0.51)
    assert random["stats"]["knn"]["std"] == pytest.approx(0.01)
    assert raw["stats"]["whitened_knn"] == {"mean": pytest.approx(0.7), "std": 0.0, "n": 1}

    table = (tmp_path / "results.md").read_text()
    assert ("    python studies/adc.py --tier main --methods byol,simclr --seeds 0,1,2 --out "
            f"{tmp_path}") in table
    assert "batch 64, 30 epochs" in table
    # test split: linear, kNN, whitened kNN, their Δ (wins/seeds), rank
    assert ("| byol | adc | 29% | 89.3 ± 5.1 | 65.0 ± 5.0 | 64.3 ± 4.9 | +4.3 ± 6.0 (2/3) | "
            "+5.0 ± 5.0 (2/3) | +4.3 ± 4.9 (3/3) | 21.0 |") in table
    assert "| byol | base |  | 85.0 ± 5.0 | 60.0 ± 10.0 | 60.0 ± 0.0 |  |  |  | 21.0 |" in table
    assert "| byol | random encoder |  | 51.0 ± 1.0 | 41.0 ± 1.0 | 46.0 ± 1.0 |  |  |  |  |" \
        in table
    # one value, no spread
    assert "|  | raw pixels |  | 90.0 | 80.0 | 70.0 |  |  |  |  |" in table
    # validation split, below it, 2 points higher with the same differences
    assert ("| byol | adc | 91.3 ± 5.1 | 67.0 ± 5.0 | 66.3 ± 4.9 | +4.3 ± 6.0 (2/3) | "
            "+5.0 ± 5.0 (2/3) | +4.3 ± 4.9 (3/3) |") in table
    assert table.index("Validation split") > table.index("| byol | adc | 29%")
    assert "Not finished (left out above): simclr adc (2 of 3 seeds)." in table
    assert (tmp_path / "study.png").stat().st_size > 0


def test_study_refuses_runs_trained_with_other_settings(
    study: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    argv = ["--tier", "main", "--methods", "byol", "--seeds", "0", "--out", str(tmp_path)]
    _write_study_runs(study, monkeypatch, tmp_path, argv,
                      {("byol", "base"): [(0.8, 0.5, 0.6)], ("byol", "adc"): [(0.9, 0.6, 0.7)]})
    # The same --out with another budget: the finished runs are not this study's.
    with pytest.raises(SystemExit, match=r"byol/base-seed0: epochs 30 \(the run\) vs 5 \(this "
                       r"study\)"):
        study.main([*argv, "--epochs", "5", "--report-only"])
    # ADC's recommended weights changed since the runs: the ADC run is refused, not reused
    # under the new weights' name.
    from glf_losses import adc

    monkeypatch.setattr(adc, "method_weights", lambda method: (3.0, 30.0))
    with pytest.raises(SystemExit, match=r"byol/adc-seed0: adc_nu 1.0 \(the run\) vs 3.0"):
        study.main([*argv, "--report-only"])


def test_a_tier_trains_and_reports_end_to_end(study: ModuleType, tmp_path: Path) -> None:
    """One epoch of SimCLR with and without ADC on digits, through the worker process."""
    pytest.importorskip("torch")
    argv = ["--tier", "main", "--dataset", "digits", "--methods", "simclr", "--seeds", "0",
            "--epochs", "1", "--batch-size", "128", "--out", str(tmp_path)]
    assert study.main(argv) == 0
    rows = json.loads((tmp_path / "results.json").read_text())
    assert [(r["arm"], r["kind"]) for r in rows] == [
        ("base", "arm"), ("adc", "arm"), ("random encoder", "reference"),
        ("raw pixels", "reference")]
    adc = rows[1]
    summary = json.loads((tmp_path / "digits" / "simclr" / "adc-seed0" / "summary.json")
                         .read_text())
    assert summary["config"]["adc"] and summary["config"]["epochs"] == 1
    assert adc["linear"] == [summary["linear_probe_accuracy"]]
    assert adc["paired"]["knn"]["n"] == 1 and 0.0 < adc["share"] < 1.0
    before = (tmp_path / "results.md").read_text()
    assert ("python studies/adc.py --tier main --methods simclr --seeds 0 --dataset digits "
            f"--epochs 1 --batch-size 128 --out {tmp_path}") in before
    # A second call reuses the finished runs: it trains nothing and reports the same.
    assert study.main(argv) == 0 and (tmp_path / "results.md").read_text() == before


def test_compare_table_pairs_test_and_validation_accuracies() -> None:
    from glf_train.report import upgrade_summary

    compare = _load(ROOT / "studies" / "compare.py", "glf_study_compare")

    def run(linear: float, knn: float) -> dict[str, Any]:
        return {**_summary(linear, knn), "random_encoder_linear_probe_accuracy": 0.8}

    results = {"byol": {False: [run(0.80, 0.50), run(0.90, 0.70)],
                        True: [run(0.85, 0.60), run(0.93, 0.70)]}}
    lines = compare.table(results).splitlines()
    assert lines[0] == ("| arm | linear probe | kNN | kNN k=200 | whitened kNN | val linear | "
                        "val kNN | random encoder (linear) | raw pixels (linear) |")
    assert lines[3] == ("| byol + ADC | 89.0 ± 5.7 | 65.0 ± 7.1 | 55.0 ± 7.1 | 70.0 ± 7.1 | "
                        "91.0 ± 5.7 | 67.0 ± 7.1 | 80.0 ± 0.0 | 90.0 ± 0.0 |")
    assert lines[4] == ("| byol: ADC − base, paired | 4.0 ± 1.4 | 5.0 ± 7.1 |  |  | "
                        "4.0 ± 1.4 | 5.0 ± 7.1 |  |  |")
    # A run from before the validation split: its k = 200 kNN is not the k = 20 one.
    older = upgrade_summary({"linear_probe_accuracy": 0.9, "knn_accuracy": 0.6})
    lines = compare.table({"simclr": {False: [older], True: [older]}}).splitlines()
    assert lines[2] == "| simclr | 90.0 ± 0.0 | – | 60.0 ± 0.0 | – | – | – | – | – |"


def test_effective_rank_of_an_older_run_comes_from_its_checkpoint(
    study: ModuleType, tmp_path: Path
) -> None:
    pytest.importorskip("torch")
    import train_helpers
    from glf_train.loop import train

    config = train_helpers.small_config(tmp_path, "torch", epochs=1)
    recorded = train(config)["effective_rank"]
    path = Path(config.out, "summary.json")
    older = json.loads(path.read_text())
    del older["effective_rank"]
    path.write_text(json.dumps(older))
    cache = tmp_path / "ranks.json"
    assert study._effective_ranks([Path(config.out)], cache) == [pytest.approx(recorded)]
    assert json.loads(cache.read_text()) == {config.out: pytest.approx(recorded)}


@pytest.fixture(scope="module")
def loss_benchmark() -> ModuleType:
    return _load(ROOT / "benchmarks" / "losses.py", "glf_benchmark_losses")


@pytest.mark.parametrize("framework", ["torch", "jax", "tensorflow"])
def test_loss_benchmark_natives_agree_with_the_library(
    loss_benchmark: ModuleType, framework: str, tmp_path: Path
) -> None:
    pytest.importorskip(framework)
    path = tmp_path / "bench.json"
    modes = "eager,compiled" if framework == "jax" else "eager"
    code = loss_benchmark.main([
        "--frameworks", framework, "--modes", modes, "--sizes", "16", "--dims", "8",
        "--prototypes", "6", "--prior-dim", "5", "--queue", "32", "--repeats", "2",
        "--warmup", "1", "--threads", "1", "--json", str(path),
        "--plot", str(tmp_path / "bench.png"),
    ])
    result = json.loads(path.read_text())
    assert code == 0, result["skipped"]
    terms = {(r["mode"], r["term"]) for r in result["rows"]}
    assert terms == {(m, t) for m in modes.split(",") for t in loss_benchmark.TERMS}
    assert all(r["ratio"] > 0 and r["ours_ms"] > 0 for r in result["rows"])
    assert (tmp_path / "bench.png").stat().st_size > 0


def test_loss_benchmark_wmse_sub_batches_fit_the_batch(loss_benchmark: ModuleType) -> None:
    """W-MSE's default sub-batch is the smallest divisor of N at least 2 D (N when 2 D > N),
    and a size that does not divide N, or is below D + 1, is a reason to skip."""
    size = loss_benchmark.wmse_size
    assert size(1024, 128, None) == 256
    assert size(96, 20, None) == 48
    assert size(256, 200, None) == 256
    assert "D + 1 = 2049" in size(1024, 2048, None)
    assert "does not divide" in size(1024, 128, 300)
    assert size(1024, 128, 512) == 512


def test_gradient_norms_run_on_the_torch_trainer(study: ModuleType) -> None:
    """The real measurement behind the shares tier and the matched controls (the other
    tests replace it): ADC adds a non-zero part of a finite gradient."""
    pytest.importorskip("torch")
    settings = {"method": "simclr", "dataset": "digits", "adc": True, "batch_size": 32,
                "cnn_width": 8, "proj_hidden": 32, "proj_dim": 16, "adc_perplexity": 10.0}
    norms = study._gradient_norms(settings, n_batches=1)
    assert 0.0 < norms["extra"] < float("inf") and 0.0 < norms["whole"] < float("inf")


@pytest.fixture(scope="module")
def share_benchmark() -> ModuleType:
    pytest.importorskip("torch")
    return _load(ROOT / "benchmarks" / "adc_gradient_share.py", "glf_benchmark_adc_share")


def test_gradient_share_benchmark_measures_every_registered_method(
    share_benchmark: ModuleType,
) -> None:
    import math

    from glf_losses import registry

    n, dim = 24, 8  # M = 48 rows hold ADC's default perplexity of 30
    rows = [share_benchmark.measure(m, n=n, dim=dim) for m in registry.names()]
    for row in rows:
        entry = registry.get(row.method)
        assert all(math.isfinite(v) for v in (row.loss, row.loss_grad, row.adc_grad)), row
        assert row.loss_grad > 0 and row.adc_unit_grad > 0 and 0 < row.share < 1, row
        assert row.weights == entry.adc_weights
        # The gradients are taken with respect to the ADC inputs a trainer lets carry
        # gradient: MoCo's key comes from the momentum target, so only its query counts.
        targets = {i for i, s in zip(entry.inputs, entry.sources, strict=True)
                   if s.startswith("target")}
        carrying = [i for i in entry.adc_inputs if i not in targets]
        assert row.dcm_grad.shape == row.lpm_grad.shape == (len(carrying) * n * dim,)
        assert row.adc_norm(*row.weights) == pytest.approx(row.adc_grad)
        assert row.adc_norm(1.0, 1.0) == pytest.approx(row.adc_unit_grad)
    assert registry.get("moco").adc_inputs == ("q", "k")
    assert rows[registry.names().index("moco")].dcm_grad.shape == (n * dim,)
    text = share_benchmark.table(rows)
    assert text.startswith("Reference: ADC's share beside simclr at (1.0, 10.0) = ")
    assert [line.split(" | ")[0] for line in text.splitlines()[4:]] == [
        f"| {m}" for m in registry.names()
    ]


def test_gradient_share_benchmark_suggests_the_nearest_1_3_10_weights(
    share_benchmark: ModuleType,
) -> None:
    import numpy as np

    def row(adc_at_1_10: float) -> Any:
        # |g_adc| at (s, 10 s) is s * adc_at_1_10, beside a loss gradient of norm 1.
        unit = np.array([adc_at_1_10 / 10.0, 0.0])
        return share_benchmark.Share("toy", 0.0, 1.0, 0.0, (1.0, 10.0), adc_at_1_10,
                                     dcm_grad=0.0 * unit, lpm_grad=unit)

    suggest = share_benchmark.suggested_scale
    assert row(1.0).share_at(3.0, 30.0) == pytest.approx(0.75)
    assert suggest(row(1.0), 0.75) == 3.0
    assert suggest(row(1.0), 0.5) == 1.0
    assert suggest(row(0.01), 0.5) == 100.0  # 100x the weights for a 100x weaker ADC
    assert suggest(row(30.0), 0.5) == 0.03
    # Between two steps, the nearer share in log-odds wins: 1.5 is nearer 1 than 3.
    assert suggest(row(1.0 / 1.5), 0.5) == 1.0
    assert suggest(row(1.0 / 2.0), 0.5) == 3.0
    with pytest.raises(ValueError, match="target must be a share in"):
        suggest(row(1.0), 1.0)
