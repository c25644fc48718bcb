"""Figures for the explanations: matplotlib (Agg, no pyplot state), PNG files and PNG bytes.

Each ``plot_*`` function takes tensors made by the methods and returns a
:class:`matplotlib.figure.Figure` whose titles and colour bars say what is shown;
:func:`save_figure` writes it, :func:`figure_png` returns the bytes (for reports). Images are
shown de-normalised (values in [0, 1]); maps are drawn over them with their own colour scale.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from lenet2vit.explain.deconv import DeconvResult
from lenet2vit.explain.methods import FeatureMaps, upsample

__all__ = [
    "save_figure",
    "figure_png",
    "plot_filters",
    "plot_feature_maps",
    "plot_heatmap",
    "plot_attention",
    "plot_deconv",
    "PanelCell",
    "plot_side_by_side",
    "RIGHT",
    "WRONG",
]

RIGHT, WRONG = "#1a9850", "#d73027"  # green / red marks for right and wrong answers
MAP_CMAP = "jet"
DPI = 110


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as a PNG (parent folders created) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=DPI, bbox_inches="tight")
    return path


def figure_png(fig: Figure) -> bytes:
    """The PNG bytes of ``fig``."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    return buf.getvalue()


def _np_image(img: torch.Tensor) -> np.ndarray:
    a = img.detach().float().cpu().clamp(0, 1).numpy()
    return a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0)


def _show_image(ax, img: torch.Tensor) -> None:
    a = _np_image(img)
    if a.ndim == 2:
        ax.imshow(a, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    else:
        ax.imshow(a, interpolation="nearest")
    _bare(ax)


def _bare(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


def _overlay(ax, img: torch.Tensor, m: torch.Tensor, vmin: float, vmax: float, cmap: str = MAP_CMAP, alpha: float = 0.5):
    _show_image(ax, img)
    h, w = img.shape[-2:]
    if tuple(m.shape) != (h, w):
        m = upsample(m, (h, w))
    ax.imshow(m.numpy(), cmap=cmap, vmin=vmin, vmax=vmax, alpha=alpha, interpolation="bilinear")
    return ScalarMappable(Normalize(vmin, vmax), cmap)  # for colour bars: the map's colours without the alpha


def _limits(m: torch.Tensor, diverging: bool) -> tuple[float, float]:
    if diverging:
        v = float(m.abs().max()) or 1.0
        return -v, v
    lo, hi = float(m.min()), float(m.max())
    return lo, (hi if hi > lo else lo + 1e-6)


# ----------------------------------------------------------------------------- single-model figures


def plot_filters(grid: torch.Tensor, title: str) -> Figure:
    """The first-layer kernel grid made by :func:`lenet2vit.explain.filters`."""
    fig = Figure(figsize=(6.5, 6.5))
    ax = fig.add_subplot()
    a = _np_image(grid)
    if a.ndim == 2:
        im = ax.imshow(a, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="weight, min-max normalised per kernel")
    else:
        ax.imshow(a, interpolation="nearest")
        ax.set_xlabel("RGB weights, min-max normalised per kernel (0: the kernel's min, 1: its max)")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title)
    return fig


def plot_feature_maps(fm: FeatureMaps, image: torch.Tensor, title: str) -> Figure:
    """The input image followed by the ``top`` feature maps, one shared colour scale."""
    k = len(fm.maps)
    cols = min(6, k + 1)
    rows = math.ceil((k + 1) / cols)
    fig = Figure(figsize=(2.2 * cols + 0.8, 2.3 * rows + 0.6))
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    _show_image(axes[0], image)
    axes[0].set_title("input", fontsize=9)
    vmin, vmax = _limits(fm.maps, diverging=False)
    im = None
    for i in range(k):
        ax = axes[i + 1]
        im = ax.imshow(fm.maps[i].numpy(), cmap="viridis", vmin=vmin, vmax=vmax, interpolation="nearest")
        ax.set_title(f"ch {int(fm.channels[i])} (mean {float(fm.mean_activation[i]):.2g})", fontsize=8)
        _bare(ax)
    for ax in axes[k + 1:]:
        ax.axis("off")
    if im is not None:
        fig.colorbar(im, ax=list(axes), fraction=0.025, pad=0.02, label="activation")
    fig.suptitle(title)
    return fig


def plot_heatmap(image: torch.Tensor, m: torch.Tensor, title: str, label: str, diverging: bool = False,
                 image_title: str = "input") -> Figure:
    """Image, the raw map and the map over the image; ``label`` names the colour bar's quantity."""
    fig = Figure(figsize=(10.5, 3.6))
    axes = fig.subplots(1, 3)
    _show_image(axes[0], image)
    axes[0].set_title(image_title, fontsize=9)
    vmin, vmax = _limits(m, diverging)
    cmap = "RdBu_r" if diverging else MAP_CMAP
    im = axes[1].imshow(m.numpy(), cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    _bare(axes[1])
    axes[1].set_title(f"map ({m.shape[0]}x{m.shape[1]})", fontsize=9)
    _overlay(axes[2], image, m, vmin, vmax, cmap)
    axes[2].set_title("map over the input", fontsize=9)
    fig.colorbar(im, ax=list(axes), fraction=0.02, pad=0.02, label=label)
    fig.suptitle(title)
    return fig


def plot_attention(image: torch.Tensor, grids: torch.Tensor, title: str) -> Figure:
    """The class token's attention per head ``(heads, g, g)`` over the image, shared scale."""
    k = grids.shape[0]
    cols = min(6, k + 1)
    rows = math.ceil((k + 1) / cols)
    fig = Figure(figsize=(2.3 * cols + 0.8, 2.4 * rows + 0.6))
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    _show_image(axes[0], image)
    axes[0].set_title("input", fontsize=9)
    vmax = float(grids.max()) or 1.0
    im = None
    for h in range(k):
        im = _overlay(axes[h + 1], image, grids[h], 0.0, vmax, alpha=0.6)
        axes[h + 1].set_title(f"head {h}", fontsize=9)
    for ax in axes[k + 1:]:
        ax.axis("off")
    fig.colorbar(im, ax=list(axes), fraction=0.025, pad=0.02, label="class-token attention weight")
    fig.suptitle(title)
    return fig


def _minmax(t: torch.Tensor) -> torch.Tensor:
    lo, hi = t.min(), t.max()
    return (t - lo) / (hi - lo) if hi > lo else torch.zeros_like(t)


def plot_deconv(res: DeconvResult, images: torch.Tensor, title: str) -> Figure:
    """Each projected activation (min-max normalised) beside the image patch under its receptive field."""
    k = len(res.channel)
    pairs = min(3, k)
    rows = math.ceil(k / pairs)
    fig = Figure(figsize=(4.4 * pairs, 2.5 * rows + 0.8))
    axes = fig.subplots(rows, 2 * pairs, squeeze=False)
    for i in range(rows * pairs):
        a_rec, a_img = axes[i // pairs, 2 * (i % pairs)], axes[i // pairs, 2 * (i % pairs) + 1]
        if i >= k:
            a_rec.axis("off")
            a_img.axis("off")
            continue
        t, l, b, r = (int(v) for v in res.boxes[i])
        rec = _minmax(res.reconstructions[i][:, t:b, l:r])
        patch = images[int(res.image_index[i])][:, t:b, l:r]
        _show_image(a_rec, rec)
        _show_image(a_img, patch)
        a_rec.set_title(f"ch {int(res.channel[i])}: act {float(res.value[i]):.3g}", fontsize=8)
        a_img.set_title(f"image {int(res.image_index[i])} at ({t},{l})", fontsize=8)
    fig.suptitle(title)
    return fig


# ----------------------------------------------------------------------------- side by side


@dataclass
class PanelCell:
    """One model's view of one image: top-3 ``(class, probability)``, right or wrong, its map."""

    top3: list[tuple[str, float]]
    correct: bool | None
    map: torch.Tensor  # (H, W) at display size


def plot_side_by_side(
    images: torch.Tensor,
    true_names: Sequence[str | None],
    model_titles: Sequence[str],
    cells: Sequence[Sequence[PanelCell]],
    title: str,
) -> Figure:
    """Rows of images; per model its map over the image and its top-3, green when right, red when wrong.

    ``images`` are display images ``(N, C, H, W)`` in [0, 1]; ``cells[i][j]`` is model ``j`` on
    image ``i``. Each map is scaled from its own minimum to its maximum, so the models' maps
    compare in shape, not in absolute size.
    """
    n, m = len(images), len(model_titles)
    fig = Figure(figsize=(2.5 * (m + 1) + 1.0, 3.0 * n + 0.8))
    axes = fig.subplots(n, m + 1, squeeze=False)
    im = None
    for i in range(n):
        _show_image(axes[i, 0], images[i])
        truth = true_names[i]
        axes[i, 0].set_xlabel(f"true: {truth}" if truth is not None else "label unknown", fontsize=9)
        for j in range(m):
            cell = cells[i][j]
            ax = axes[i, j + 1]
            im = _overlay(ax, images[i], _minmax(cell.map), 0.0, 1.0, alpha=0.5)
            colour = "black" if cell.correct is None else (RIGHT if cell.correct else WRONG)
            text = "\n".join(f"{name} {p:.0%}" for name, p in cell.top3)
            ax.set_xlabel(text, fontsize=8, color=colour)
            for spine in ax.spines.values():
                spine.set_edgecolor(colour)
                spine.set_linewidth(3 if cell.correct is not None else 1)
    axes[0, 0].set_title("image", fontsize=9)
    for j, t in enumerate(model_titles):
        axes[0, j + 1].set_title(t, fontsize=9)
    if im is not None:
        fig.colorbar(im, ax=list(axes.ravel()), fraction=0.02, pad=0.02,
                     label="map strength (each map scaled from its min to its max)")
    fig.suptitle(title)
    return fig
