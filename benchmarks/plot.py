"""Plots of the benchmarks' JSON results (``--json`` of losses.py and training.py).

``losses.py --plot PATH`` and ``training.py --plot PATH`` call these at the end of a run;
this script redraws them from saved results::

    python benchmarks/plot.py losses runs/bench/losses_cpu.json docs/benchmark_losses.png
    python benchmarks/plot.py training runs/bench/training_cpu.json docs/benchmark_training.png

The loss plot has one panel per framework: each (term, N, D) is a point at the median
ours/native ratio with its interquartile range as the bar, eager and compiled side by
side, the targets (eager 1.15, compiled 1.05) as dashed lines, on a log scale. The
training plot shows ADC's cost per step in % with its interquartile range, per backend.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

TARGETS = {"eager": 1.15, "compiled": 1.05}
_COLOURS = {"eager": "tab:blue", "compiled": "tab:orange"}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _title(machine: Mapping[str, Any]) -> str:
    frameworks = [k for k in ("torch", "jax", "tensorflow") if k in machine]
    versions = ", ".join(f"{k} {machine[k]}" for k in frameworks)
    return (f"{machine.get('device', '?')}: {machine.get('processor', '?')}, "
            f"{machine.get('cpu_count', '?')} cores; {versions}")


def plot_losses(result: Mapping[str, Any], path: str | Path) -> None:
    """Ours/native ratio per (term, N, D), one panel per framework."""
    rows: Sequence[Mapping[str, Any]] = result["rows"]
    if not rows:
        raise ValueError("no timed rows to plot")
    plt = _pyplot()
    from matplotlib.ticker import FormatStrFormatter

    frameworks = list(dict.fromkeys(r["framework"] for r in rows))
    combos = list(dict.fromkeys((r["term"], r["n"], r["d"]) for r in rows))
    fig, axes = plt.subplots(
        len(frameworks), 1, figsize=(max(6.0, 0.45 * len(combos) + 2), 2.6 * len(frameworks)),
        sharex=True, squeeze=False,
    )
    for ax, fw in zip(axes[:, 0], frameworks, strict=True):
        for offset, mode in ((-0.15, "eager"), (0.15, "compiled")):
            mine = [r for r in rows if r["framework"] == fw and r["mode"] == mode]
            if not mine:
                continue
            x = [combos.index((r["term"], r["n"], r["d"])) + offset for r in mine]
            y = [r["ratio"] for r in mine]
            err = [[r["ratio"] - r["ratio_q1"] for r in mine],
                   [r["ratio_q3"] - r["ratio"] for r in mine]]
            ax.errorbar(x, y, yerr=err, fmt="o", ms=3.5, capsize=2, color=_COLOURS[mode],
                        label=mode)
            ax.axhline(TARGETS[mode], color=_COLOURS[mode], ls="--", lw=0.8)
        ax.axhline(1.0, color="grey", lw=0.6)
        ax.set_yscale("log")
        plain = FormatStrFormatter("%g")
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(plain)
        ax.tick_params(axis="y", which="both", labelsize=7)
        ax.set_ylabel(f"{fw}\nours / native")
        ax.legend(loc="upper right", fontsize=7)
    axes[-1, 0].set_xticks(range(len(combos)))
    axes[-1, 0].set_xticklabels([f"{t} {n}x{d}" for t, n, d in combos], rotation=60,
                                ha="right", fontsize=7)
    fig.suptitle(_title(result.get("machine", {})), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_training(result: Mapping[str, Any], path: str | Path) -> None:
    """ADC's cost per training step in %, with its interquartile range, per backend."""
    rows: Sequence[Mapping[str, Any]] = result["rows"]
    if not rows:
        raise ValueError("no timed rows to plot")
    plt = _pyplot()
    labels = [r["backend"] for r in rows]
    cost = [r["adc_cost_percent"] for r in rows]
    low = [c - r["adc_cost_percent_iqr"][0] for c, r in zip(cost, rows, strict=True)]
    high = [r["adc_cost_percent_iqr"][1] - c for c, r in zip(cost, rows, strict=True)]
    fig, ax = plt.subplots(figsize=(1.6 * len(rows) + 2, 3.0))
    ax.bar(range(len(rows)), cost, yerr=[low, high], capsize=3, color="tab:green")
    ax.axhline(0.0, color="grey", lw=0.6)
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels(labels)
    args = result.get("args", {})
    ax.set_ylabel("ADC's cost per step (%)")
    ax.set_title(f"{args.get('method', '')}, {args.get('arch', '')}, batch "
                 f"{args.get('batch_size', '')}\n{_title(result.get('machine', {}))}",
                 fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=("losses", "training"))
    parser.add_argument("results", nargs="+",
                        help="the JSON files a benchmark wrote with --json (one run per "
                             "framework, say): their rows are drawn together")
    parser.add_argument("out", help="the PNG to write")
    args = parser.parse_args(argv)
    results = [json.loads(Path(path).read_text()) for path in args.results]
    result = {**results[0], "rows": [row for r in results for row in r.get("rows", [])]}
    (plot_losses if args.kind == "losses" else plot_training)(result, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
