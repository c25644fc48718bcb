"""The figures of a study, each written as PNG and SVG.

Built with matplotlib's object API (``Figure``, no pyplot), so making a report never touches
the global backend or opens a window. Every model keeps one colour across all figures.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

__all__ = [
    "model_colors",
    "scatter_plot",
    "SCATTERS",
    "training_curves",
    "confusion_plot",
    "lr_schedule_plot",
    "degradation_pairs",
    "degradation_plot",
    "save",
]

# The accuracy trade-off plots: (file stem, x field of the aggregate, x label, log x, bubbles = params).
SCATTERS = [
    ("accuracy_vs_macs", "macs", "multiply-accumulates per image (MACs)", True, False),
    ("accuracy_vs_params", "params", "parameters", True, False),
    ("accuracy_vs_train_time", "train_seconds_mean", "total training time (s); bubble area ~ parameters", True, True),
]


def save(fig: Figure, stem: Path) -> list[Path]:
    """Write ``stem.png`` and ``stem.svg``; returns both paths."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    fig.savefig(paths[0], dpi=110, bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight", metadata={"Date": None})
    return paths


def model_colors(models: list[str]) -> dict[str, tuple]:
    """A fixed colour per model (tab10, then tab20 for bigger studies)."""
    from matplotlib import colormaps

    cmap = colormaps["tab10" if len(models) <= 10 else "tab20"]
    return {m: cmap(i % cmap.N) for i, m in enumerate(models)}


def _finite(v) -> float:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return 0.0
    return v if math.isfinite(v) else 0.0


def _short(v: float) -> str:
    """Axis label of a count: 2e5 -> '200K', 1.5e9 -> '1.5G'."""
    for unit, div in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if v >= div:
            return f"{v / div:g}{unit}"
    return f"{v:g}"


def _lead(v: float) -> int:
    return int(round(v / 10 ** math.floor(math.log10(v)))) if v > 0 else 0


def scatter_plot(agg: list[dict], x_key: str, xlabel: str, *, log_x: bool, bubbles: bool,
                 colors: dict, title: str) -> Figure:
    """Mean test top-1 (with +-std bars) against one cost of each model, labelled by model."""
    fig = Figure(figsize=(6.4, 4.4))
    ax = fig.add_subplot()
    pts = [(a, float(a[x_key])) for a in agg if a.get(x_key) is not None and _finite(a[x_key]) > 0]
    pmax = max((_finite(a.get("params")) for a, _ in pts), default=1.0) or 1.0
    for a, x in pts:
        y, e = 100 * a["test_top1_mean"], 100 * _finite(a.get("test_top1_std"))
        size = 60 + 1400 * _finite(a.get("params")) / pmax if bubbles else 50
        ax.errorbar([x], [y], yerr=[e], fmt="none", ecolor=colors[a["model"]], capsize=3, alpha=0.8)
        ax.scatter([x], [y], s=size, color=colors[a["model"]], alpha=0.55 if bubbles else 0.9,
                   edgecolors="black", linewidths=0.6, zorder=3)
        ax.annotate(a["model"], (x, y), xytext=(6, 5), textcoords="offset points", fontsize=8)
    if log_x and pts:
        ax.set_xscale("log")
        lo, hi = min(x for _, x in pts), max(x for _, x in pts)
        ax.set_xlim(lo / 2.0, hi * 2.5)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: _short(v)))
        few_decades = math.log10(hi * 2.5) - math.log10(lo / 2.0) < 2.5
        ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: _short(v) if few_decades and _lead(v) in (2, 5) else ""))
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test top-1 accuracy (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3, which="both")
    return fig


def _curves(rows: list[dict], key: str, transform=lambda v: v) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per model: epochs, mean and std over seeds of ``history[key]``."""
    per: dict[str, list[list[float]]] = {}
    for r in rows:
        vals = [transform(h[key]) for h in r.get("history") or [] if h.get(key) is not None]
        if vals:
            per.setdefault(r["model"], []).append(vals)
    out = {}
    for m, runs in per.items():
        n = min(len(v) for v in runs)
        arr = np.array([v[:n] for v in runs], dtype=float)
        std = arr.std(axis=0, ddof=1) if len(arr) > 1 else np.zeros(n)
        out[m] = (np.arange(1, n + 1), arr.mean(axis=0), std)
    return out


def training_curves(rows: list[dict], colors: dict) -> Figure:
    """Validation top-1 and training loss per epoch for every model (mean over seeds, +-std band)."""
    fig = Figure(figsize=(11, 4.2))
    ax1, ax2 = fig.subplots(1, 2)
    has_val = any(h.get("val_top1") is not None for r in rows for h in r.get("history") or [])
    acc_key = "val_top1" if has_val else "train_acc"
    for ax, key, label, tf, hi in (
        (ax1, acc_key, ("validation" if has_val else "training") + " top-1 accuracy (%)", lambda v: 100 * v, 100.0),
        (ax2, "train_loss", "training loss", lambda v: v, np.inf),
    ):
        for m, (ep, mean, std) in _curves(rows, key, tf).items():
            ax.plot(ep, mean, marker="o", ms=3, color=colors[m], label=m)
            if std.any():
                ax.fill_between(ep, np.clip(mean - std, 0, hi), np.clip(mean + std, 0, hi), color=colors[m],
                                alpha=0.15, linewidth=0)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    ax2.legend(fontsize=8, loc="upper right")
    fig.suptitle("training curves (mean over seeds; band: ±1 sample std)", fontsize=10)
    return fig


def confusion_plot(matrix: np.ndarray, classes: list[str], title: str) -> Figure:
    """A row-normalised confusion matrix (% of each true class), counts annotated when small."""
    k = len(classes)
    side = min(max(4.0, 0.45 * k + 2), 14)
    fig = Figure(figsize=(side + 1, side))
    ax = fig.add_subplot()
    rows = matrix.sum(axis=1, keepdims=True)
    pct = 100 * matrix / np.maximum(rows, 1)
    im = ax.imshow(pct, cmap="Blues", vmin=0, vmax=100)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="% of true class")
    names = [c if len(c) <= 12 else c[:11] + "." for c in classes]
    if k <= 30:
        ax.set_xticks(range(k), names, rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(k), names, fontsize=8)
    if k <= 12:
        for i in range(k):
            for j in range(k):
                if matrix[i, j]:
                    ax.text(j, i, f"{pct[i, j]:.0f}", ha="center", va="center", fontsize=7,
                            color="white" if pct[i, j] > 55 else "black")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title, fontsize=10)
    return fig


def lr_schedule_plot(steps: np.ndarray | None, lrs: np.ndarray | None, rows: list[dict], colors: dict,
                     steps_per_epoch: int | None) -> Figure:
    """The learning rate the protocol sets at every optimizer step (the line) and the lr each
    model's first run recorded at the start of each epoch (the points; a plateau schedule's
    drops depend on the run, so only the points show it)."""
    fig = Figure(figsize=(7.5, 3.4))
    ax = fig.add_subplot()
    if steps is not None:
        ax.plot(steps, lrs, color="0.3", lw=1.5, label="the protocol, per step")
    seen = set()
    for r in sorted(rows, key=lambda r: r["seed"]):
        if r["model"] in seen or not r.get("history"):
            continue
        seen.add(r["model"])
        epochs = np.array([h["epoch"] for h in r["history"]], dtype=float)
        x = (epochs - 1) * steps_per_epoch if steps_per_epoch else epochs
        ax.plot(x, [h["lr"] for h in r["history"]], "o", ms=4, color=colors.get(r["model"]), label=r["model"])
    ax.set_xlabel("optimizer step" if steps_per_epoch else "epoch")
    ax.set_ylabel("learning rate")
    ax.set_title("learning-rate schedule", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


_DEPTH = re.compile(r"^(plain|resnet)(\d+)(?:_cifar)?$")


def degradation_pairs(models: list[str]) -> list[int]:
    """Depths N for which the study holds both plainN and resnetN."""
    found: dict[str, set[int]] = {"plain": set(), "resnet": set()}
    for m in models:
        hit = _DEPTH.match(m)
        if hit:
            found[hit.group(1)].add(int(hit.group(2)))
    return sorted(found["plain"] & found["resnet"])


def degradation_plot(rows: list[dict], depths: list[int]) -> Figure:
    """The ResNet paper's Figure 6: error per epoch of plain nets (left) and ResNets (right).

    Dashed lines are training error, solid lines validation error (mean over seeds); deeper
    nets are drawn darker, as in the paper.
    """
    fig = Figure(figsize=(11, 4.2))
    axes = fig.subplots(1, 2, sharey=True)
    tr = _curves(rows, "train_acc", lambda v: 100 * (1 - v))
    va = _curves(rows, "val_top1", lambda v: 100 * (1 - v))
    from matplotlib import colormaps

    for ax, kind in zip(axes, ("plain", "resnet")):
        cmap = colormaps["Oranges" if kind == "plain" else "Blues"]
        for i, n in enumerate(depths):
            shade = cmap(0.45 + 0.5 * (i + 1) / len(depths))
            m = next((r["model"] for r in rows if _DEPTH.match(r["model"]) and _DEPTH.match(r["model"]).groups() == (kind, str(n))), None)
            if m is None:
                continue
            if m in tr:
                ax.plot(tr[m][0], tr[m][1], "--", color=shade, label=f"{kind}-{n} train")
            if m in va:
                ax.plot(va[m][0], va[m][1], "-", color=shade, lw=2, label=f"{kind}-{n} val")
        ax.set_title("plain networks" if kind == "plain" else "residual networks (ResNets)", fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        ax.xaxis.get_major_locator().set_params(integer=True)
    axes[0].set_ylabel("error (%)")
    fig.suptitle("degradation: training (dashed) and validation (solid) error per epoch, cf. He et al. 2016, Fig. 6",
                 fontsize=10)
    return fig
