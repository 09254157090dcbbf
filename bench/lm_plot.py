"""Figures for `lm_small.py`: the metric against the step, and against the attention cost."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

STYLE = {"full": "-", "combiner": "-", "sparse": "--"}


def plot(report: dict[str, Any], path: Path) -> None:
    """One row per length: mean curve over seeds per kind (left); final metric vs pairs per head (right)."""
    summary = report["summary"]
    lengths = sorted({row["L"] for row in summary})
    kinds = list(dict.fromkeys(row["kind"] for row in summary))
    colors = {kind: plt.get_cmap("tab10")(n % 10) for n, kind in enumerate(kinds)}
    metric = report["metric"]
    fig, axes = plt.subplots(len(lengths), 2, figsize=(12, 4.2 * len(lengths)), squeeze=False)
    for row_axes, L in zip(axes, lengths, strict=True):
        curve_ax, cost_ax = row_axes
        for row in (r for r in summary if r["L"] == L):
            kind = row["kind"]
            style = STYLE[row["family"]]
            width = 2.5 if kind == "full" else 1.5
            steps, values = zip(*row["mean_curve"], strict=True)
            curve_ax.plot(steps, values, style, color="black" if kind == "full" else colors[kind], lw=width, label=kind)
            cost_ax.errorbar(row["pairs_per_head"], row["mean"], yerr=[[row["mean"] - row["min"]], [row["max"] - row["mean"]]],
                             fmt="o" if row["family"] != "sparse" else "s", color="black" if kind == "full" else colors[kind], capsize=3)
            cost_ax.annotate(kind, (row["pairs_per_head"], row["mean"]), fontsize=7, xytext=(4, 3), textcoords="offset points")
        stages = next((r.get("stages", []) for r in report["runs"] if r["L"] == L), [])
        for end in [sum(n for _, n in stages[: k + 1]) for k in range(len(stages) - 1)]:  # where the curriculum moves up a length
            curve_ax.axvline(end, color="grey", lw=0.8, ls="--")
        if len(stages) > 1:
            curve_ax.text(stages[0][1], curve_ax.get_ylim()[0], f" L = {stages[0][0]} before", fontsize=7, color="grey", ha="right", va="bottom")
        if report["task"] == "needle":  # chance: a guess among the values
            for ax in (curve_ax, cost_ax):
                ax.axhline(1 / report["args"]["values"], color="grey", lw=0.8, ls=":")
        curve_ax.set(title=f"{report['task']}, L = {L}: {metric} per step (mean of {report['args']['seeds']} seeds)", xlabel="step", ylabel=metric)
        cost_ax.set(title=f"L = {L}: final {metric} vs attention cost", xlabel="pairs per head (cost model)", ylabel=metric, xscale="log")
        curve_ax.grid(alpha=0.3)
        cost_ax.grid(alpha=0.3)
        curve_ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
