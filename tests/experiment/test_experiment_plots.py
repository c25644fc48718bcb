"""Figures of a study drawn from stored rows (no training needed)."""

from __future__ import annotations

import numpy as np

from lenet2vit.experiment import plots
from lenet2vit.experiment.store import aggregate


def _rows():
    rows = []
    for model, base in (("plain20", 0.6), ("plain56", 0.5), ("resnet20", 0.65), ("resnet56", 0.7)):
        for seed in (0, 1):
            hist = [{"epoch": e + 1, "train_loss": 2.0 / (e + 1), "train_acc": base * (e + 1) / 3,
                     "val_top1": base * (e + 1) / 3.2} for e in range(3)]
            rows.append({"model": model, "variant": model, "seed": seed, "test_top1": base, "test_top5": 1.0,
                         "params": 1000 * len(model), "macs": 10 ** 6 * (seed + 1), "train_seconds": 5.0 + seed,
                         "history": hist})
    return rows


def test_degradation_pairs_need_both_kinds_of_net():
    assert plots.degradation_pairs(["plain20", "plain56", "resnet20", "resnet56"]) == [20, 56]
    assert plots.degradation_pairs(["plain20", "resnet56", "resnet18"]) == []
    assert plots.degradation_pairs(["plain20_cifar", "resnet20"]) == [20]


def test_figures_are_written_as_png_and_svg(tmp_path):
    rows = _rows()
    agg = aggregate(rows)
    colors = plots.model_colors([a["model"] for a in agg])
    figs = {stem: plots.scatter_plot(agg, key, label, log_x=lx, bubbles=b, colors=colors, title=stem)
            for stem, key, label, lx, b in plots.SCATTERS}
    figs["curves"] = plots.training_curves(rows, colors)
    figs["degradation"] = plots.degradation_plot(rows, [20, 56])
    figs["confusion"] = plots.confusion_plot(np.array([[5, 1], [0, 4]]), ["cat", "dog"], "m")
    for stem, fig in figs.items():
        png, svg = plots.save(fig, tmp_path / stem)
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert "<svg" in svg.read_text()[:2000]
    # the degradation figure draws a train and a val line per net, split into plain | ResNet panels
    left, right = figs["degradation"].axes[:2]
    assert len(left.lines) == 4 and len(right.lines) == 4
    # the training curves average the seeds: one line per model
    assert len(figs["curves"].axes[0].lines) == 4
