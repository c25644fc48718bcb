"""``lenet2vit explain`` as one function call: runs + images + method -> PNG figures and .npy maps.

:func:`explain_run` draws one method for one run (a figure per image, or one figure for
filters and the deconvnet), or, given several runs and a map method, one side-by-side panel
of all of them on the same images. :func:`side_by_side_panel` returns such a panel as PNG
bytes for reports.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from lenet2vit.explain.attention import attention_maps, attention_modules, cls_grid, is_transformer, rollout_map
from lenet2vit.explain.deconv import deconv
from lenet2vit.explain.figures import (
    PanelCell,
    figure_png,
    plot_attention,
    plot_deconv,
    plot_feature_maps,
    plot_filters,
    plot_heatmap,
    plot_side_by_side,
    save_figure,
)
from lenet2vit.explain.inputs import (
    Target,
    denormalize,
    load_image_files,
    load_target,
    prepare,
    split_images,
    stored_size,
)
from lenet2vit.explain.methods import (
    MAP_METHODS,
    METHODS,
    ExplainError,
    default_gradcam_layer,
    feature_maps,
    filters,
    first_conv,
    get_layer,
    gradcam,
    occlusion,
    predict,
    upsample,
)

__all__ = ["explain_run", "side_by_side_panel", "collect_images", "METHODS", "MAP_METHODS", "ImageSet"]

PAGE = 8  # images per side-by-side figure


@dataclass
class ImageSet:
    """uint8 images ``(N, C, H, W)`` with their labels (None: unknown), class names and file tags."""

    images: torch.Tensor
    labels: list[int | None]
    classes: list[str] | None
    tags: list[str]

    def true_name(self, i: int) -> str | None:
        lab = self.labels[i]
        return None if lab is None or self.classes is None else self.classes[lab]


# ----------------------------------------------------------------------------- helpers


def _resolve_method(method: str, target: Target) -> str:
    if method not in METHODS:
        raise ExplainError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if method == "auto":
        return "rollout" if is_transformer(target.model) else "gradcam"
    return method


def _occlusion_defaults(size: int, patch: int | None, stride: int | None) -> tuple[int, int]:
    patch = patch or max(2, size // 8)  # 4 px on 32 px images, 28 px on 224 px images
    return patch, stride or max(1, patch // 2)


def _class_index(target: Target, choice: str | int | None, pred: int, true_name: str | None) -> int:
    """The class a map is made for: ``"pred"``, ``"true"`` (falls back to pred), an index or a name."""
    if choice is None or choice == "pred":
        return pred
    if choice == "true":
        return target.classes.index(true_name) if true_name in target.classes else pred
    if isinstance(choice, int) or str(choice).isdigit():
        idx = int(choice)
        if not 0 <= idx < len(target.classes):
            raise ExplainError(f"--target {idx} is out of range: {target.name} has {len(target.classes)} classes")
        return idx
    if choice in target.classes:
        return target.classes.index(choice)
    raise ExplainError(f"--target {choice!r} is not a class of {target.name} ({', '.join(target.classes[:6])} ...); "
                       "use pred, true, a class index or a class name")


def _map(target: Target, x: torch.Tensor, method: str, cls: int, *, layer: str | None, patch: int | None,
         stride: int | None, batch_size: int) -> tuple[torch.Tensor, str, bool]:
    """One image's map for a map method: ``(map, colour-bar label, diverging?)``."""
    name = target.classes[cls]
    if method == "occlusion":
        p, s = _occlusion_defaults(target.input_size, patch, stride)
        m = occlusion(target.model, x, cls, patch=p, stride=s, batch_size=batch_size)
        return m, f"drop in p({name}) when a grey {p}x{p} patch covers the pixel", True
    if method == "gradcam":
        m = gradcam(target.model, x, layer, cls)
        return m, f"Grad-CAM for {name} at {layer}", False
    if method == "rollout":
        return rollout_map(target.model, x), "rollout: class-token share per patch", False
    raise ExplainError(f"method {method!r} gives no single map per image")


def _tag(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "image"


def _top3(probs: torch.Tensor, classes: Sequence[str]) -> list[tuple[str, float]]:
    p, i = probs.topk(min(3, probs.numel()))
    return [(classes[int(c)], float(v)) for v, c in zip(p, i)]


# ----------------------------------------------------------------------------- images


def _predict_names(targets: Sequence[Target], images: torch.Tensor) -> list[list[str]]:
    """Top-1 class names ``[model][image]``."""
    out = []
    for t in targets:
        pred = predict(t.model, prepare(images, t.config)).argmax(1)
        out.append([t.classes[int(i)] for i in pred])
    return out


def _disputed(targets: Sequence[Target], images: torch.Tensor, truth: Sequence[str | None]) -> list[bool]:
    names = _predict_names(targets, images)
    keep = []
    for i in range(len(images)):
        said = {names[j][i] for j in range(len(targets))}
        keep.append(len(said) > 1 or (truth[i] is not None and any(s != truth[i] for s in said)))
    return keep


def collect_images(
    targets: Sequence[Target],
    image_files: Sequence[str | Path] | None = None,
    split: str | None = None,
    *,
    dataset: str | None = None,
    data_dir: str | None = None,
    seed: int = 0,
    wrong_only: bool = False,
) -> ImageSet:
    """The images to explain: files, or ``split`` (``"test:16"``) of the runs' data set.

    With ``wrong_only`` only images where the models disagree or any is wrong are kept; for a
    split the search goes on through the shuffled split until enough are found.
    """
    if image_files and split:
        raise ExplainError("pass either --image FILE ... or --images SPLIT:N, not both")
    if image_files:
        size = max(stored_size(t.config) for t in targets)  # one model: exactly its data set's view
        chans = 3 if any(t.in_chans == 3 for t in targets) else 1
        imgs = load_image_files(image_files, size, chans)
        tags = [_tag(Path(p).stem) for p in image_files]
        if len(set(tags)) < len(tags):
            tags = [f"{i}-{t}" for i, t in enumerate(tags)]
        labels: list[int | None] = [None] * len(imgs)
        if wrong_only:
            keep = _disputed(targets, imgs, [None] * len(imgs))
            idx = [i for i, k in enumerate(keep) if k]
            imgs, tags, labels = imgs[idx], [tags[i] for i in idx], [None] * len(idx)
        return ImageSet(imgs, labels, None, tags)
    if not split:
        raise ExplainError("this method needs images: pass --image FILE [FILE ...] or --images test:16")
    config = next((t.config for t in targets if t.config.get("dataset")), targets[0].config)
    arrays, order, n = split_images(split, config, dataset, data_dir, seed)
    classes = list(arrays.classes)
    for t in targets:
        if t.from_run and t.classes != classes:
            raise ExplainError(f"{t.name} was trained on classes {t.classes[:4]}... but the images come from a data set "
                               f"with {classes[:4]}...; explain runs of the same data set together")
    all_images, all_labels = torch.as_tensor(arrays.images), torch.as_tensor(arrays.labels)
    split_name = split.split(":")[0]
    if wrong_only:
        picked: list[int] = []
        for start in range(0, len(order), 256):
            idx = order[start:start + 256]
            truth = [classes[int(all_labels[i])] for i in idx]
            picked += [int(i) for i, k in zip(idx, _disputed(targets, all_images[idx], truth)) if k]
            if len(picked) >= n:
                break
        picked = picked[:n]
        if not picked:
            raise ExplainError(f"the models agree and are right on every {split_name} image; drop --wrong-only")
    else:
        picked = [int(i) for i in order[:n]]
    return ImageSet(all_images[picked], [int(all_labels[i]) for i in picked], classes,
                    [f"{split_name}{i}" for i in picked])


# ----------------------------------------------------------------------------- side by side


def _panel(targets: Sequence[Target], imgs: ImageSet, method: str = "auto", *, target_class: str | int | None = None,
           layer: str | None = None, patch: int | None = None, stride: int | None = None, batch_size: int = 64,
           log: Callable[[str], None] | None = None):
    """Maps and top-3 of every model on every image: ``(cells, titles, maps (n, m, H, W), records)``."""
    n = len(imgs.images)
    H, W = imgs.images.shape[-2:]
    titles, cells = [], [[None] * len(targets) for _ in range(n)]
    maps = np.zeros((n, len(targets), H, W), dtype=np.float32)
    records = [{"image": imgs.tags[i], "true": imgs.true_name(i), "models": {}} for i in range(n)]
    for j, t in enumerate(targets):
        m_name = _resolve_method(method, t)
        if m_name not in MAP_METHODS:
            raise ExplainError(f"--method {m_name} has no single map per image; side by side takes auto, occlusion, "
                               "gradcam or rollout")
        x_all = prepare(imgs.images, t.config)
        probs = predict(t.model, x_all)
        t_layer = layer
        if m_name == "gradcam":
            t_layer = layer or default_gradcam_layer(t.model, x_all[:1])
            get_layer(t.model, t_layer)
        titles.append(f"{t.name}\n" + (f"Grad-CAM {t_layer}" if m_name == "gradcam" else m_name))
        if log:
            log(f"{t.name}: {m_name} on {n} image(s)")
        for i in range(n):
            pred = int(probs[i].argmax())
            truth = imgs.true_name(i)
            cls = _class_index(t, target_class, pred, truth)
            m, _, _ = _map(t, x_all[i:i + 1], m_name, cls, layer=t_layer, patch=patch, stride=stride,
                           batch_size=batch_size)
            m = upsample(m, (H, W))
            maps[i, j] = m.numpy()
            top3 = _top3(probs[i], t.classes)
            correct = None if truth is None else top3[0][0] == truth
            cells[i][j] = PanelCell(top3, correct, m)
            records[i]["models"][t.name] = {"method": m_name, "map_class": t.classes[cls], "top3": top3,
                                            "correct": correct}
    return cells, titles, maps, records


def _panel_title(imgs: ImageSet, target_class: str | int | None = None) -> str:
    marks = "green: right, red: wrong" if any(lab is not None for lab in imgs.labels) else "labels unknown"
    which = "its top-1 class" if target_class in (None, "pred") else f"class {target_class}"
    return f"Top-3 predictions ({marks}) and each model's map (class maps for {which})"


def side_by_side_panel(
    run_dirs: Sequence[str | Path | Target],
    images_uint8: torch.Tensor,
    labels: Sequence[int | None] | None,
    classes: Sequence[str] | None,
    max_images: int = 4,
    *,
    method: str = "auto",
    device: str | torch.device = "cpu",
) -> bytes:
    """PNG bytes of several runs side by side on the same images (first ``max_images`` of them).

    ``images_uint8`` is ``(N, C, H, W)`` uint8; ``labels`` index ``classes`` (None where
    unknown). Per model: top-3 with probabilities, green when right and red when wrong, and its
    map (``auto``: attention rollout for ViT/hybrid, Grad-CAM for CNNs).
    """
    targets = [r if isinstance(r, Target) else load_target(r, device) for r in run_dirs]
    images = torch.as_tensor(images_uint8)[:max_images]
    labs = list(labels[: len(images)]) if labels is not None else [None] * len(images)
    imgs = ImageSet(images, [None if lab is None else int(lab) for lab in labs],
                    list(classes) if classes is not None else None, [str(i) for i in range(len(images))])
    cells, titles, _, _ = _panel(targets, imgs, method)
    fig = plot_side_by_side(images.float() / 255, [imgs.true_name(i) for i in range(len(images))], titles, cells,
                            _panel_title(imgs))
    return figure_png(fig)


# ----------------------------------------------------------------------------- one model


def _explain_one(t: Target, method: str, imgs: ImageSet | None, out: Path, *, layer: str | None, top: int | None,
                 patch: int | None, stride: int | None, block: int, target_class, batch_size: int,
                 log: Callable[[str], None]) -> list[Path]:
    written: list[Path] = []
    model, cfg = t.model, t.config
    model_name = cfg.get("model", t.name)

    def save(fig, stem: str, array) -> None:
        written.append(save_figure(fig, out / f"{stem}.png"))
        np.save(out / f"{stem}.npy", np.asarray(array, dtype=np.float32))
        written.append(out / f"{stem}.npy")

    if method == "filters":
        name, conv = first_conv(model)
        w = conv.weight.detach().float().cpu()
        title = f"{t.name}: the {w.shape[0]} kernels of {name} ({w.shape[2]}x{w.shape[3]}, {w.shape[1]} input channels)"
        save(plot_filters(filters(model), title), "filters", w.numpy())
        return written
    assert imgs is not None
    x_all = prepare(imgs.images, cfg)
    display = denormalize(x_all, cfg["mean"], cfg["std"])
    if method == "deconv":
        lay = layer or "features"
        res = deconv(model, x_all, lay, top or 9)
        title = (f"{t.name}: the {len(res.channel)} strongest activations of {lay} over {len(x_all)} image(s), "
                 f"projected to pixels by the deconvnet (left) and the image patches in their "
                 f"{res.rf_size}px receptive fields (right)")
        save(plot_deconv(res, display, title), f"deconv_{_tag(lay)}", res.reconstructions.numpy())
        return written
    probs = predict(model, x_all)
    if method == "gradcam" and layer is None:
        layer = default_gradcam_layer(model, x_all[:1])
    if method == "feature-maps":
        layer = layer or first_conv(model)[0]
    if layer is not None and method in ("gradcam", "feature-maps"):
        get_layer(model, layer)
    for i in range(len(x_all)):
        x = x_all[i:i + 1]
        pred = int(probs[i].argmax())
        truth = imgs.true_name(i)
        caption = (f"true: {truth}, " if truth else "") + f"predicted: {t.classes[pred]} {float(probs[i, pred]):.0%}"
        tag = imgs.tags[i]
        if method == "feature-maps":
            fm = feature_maps(model, x, layer, top or 16)
            title = f"{t.name}: {len(fm.maps)} of the {fm.num_channels} channels of {layer} with the highest mean ({caption})"
            save(plot_feature_maps(fm, display[i], title), f"feature-maps_{_tag(layer)}_{tag}", fm.maps.numpy())
        elif method == "attention":
            grids = cls_grid(attention_maps(model, x, block))
            depth = len(attention_modules(model))
            b = block % depth
            title = f"{t.name}: class-token attention per head in block {b} of 0..{depth - 1} ({caption})"
            save(plot_attention(display[i], grids, title), f"attention_block{b}_{tag}", grids.numpy())
        else:
            cls = _class_index(t, "true" if target_class is None else target_class, pred, truth)
            m, label, diverging = _map(t, x, method, cls, layer=layer, patch=patch, stride=stride,
                                       batch_size=batch_size)
            what = {"occlusion": "occlusion sensitivity", "gradcam": f"Grad-CAM at {layer}",
                    "rollout": "attention rollout"}[method]
            who = t.name if model_name in t.name else f"{t.name} ({model_name})"
            title = f"{who}: {what}" + ("" if method == "rollout" else f" for class {t.classes[cls]}")
            save(plot_heatmap(display[i], m, title, label, diverging, image_title=caption), f"{method}_{tag}", m.numpy())
        log(f"{t.name}: {method} {tag}")
    return written


# ----------------------------------------------------------------------------- entry point


def explain_run(
    runs: str | Path | Sequence[str | Path],
    *,
    method: str = "auto",
    out: str | Path = "explain",
    image_files: Sequence[str | Path] | None = None,
    images: str | None = None,
    layer: str | None = None,
    top: int | None = None,
    patch: int | None = None,
    stride: int | None = None,
    block: int = -1,
    target: str | int | None = None,
    wrong_only: bool = False,
    device: str | torch.device = "cpu",
    dataset: str | None = None,
    data_dir: str | None = None,
    seed: int = 0,
    batch_size: int = 64,
    log: Callable[[str], None] = print,
) -> list[Path]:
    """Explain one or several runs (or model names) and write PNG figures and .npy maps to ``out``.

    ``runs`` is a run folder, a comma-separated string of them or a list. Images are
    ``image_files`` or ``images="test:16"`` (a split of the runs' data set). With one run every
    method is drawn for it; with several, map methods (auto, occlusion, gradcam, rollout) make
    side-by-side panels and the others one folder per run. ``target`` is the class maps are made
    for: ``"true"`` (default when labels are known), ``"pred"``, an index or a class name;
    side-by-side panels default to each model's prediction. Returns the files written.
    """
    specs = [s for s in runs.split(",") if s] if isinstance(runs, str) else [str(r) for r in runs]
    if not specs:
        raise ExplainError("no runs given; pass a run folder (or several, comma-separated)")
    if method not in METHODS:
        raise ExplainError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    targets = [load_target(s, device) for s in specs]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    imgs = None
    if method != "filters":
        imgs = collect_images(targets, image_files, images, dataset=dataset, data_dir=data_dir, seed=seed,
                              wrong_only=wrong_only)
        if len(imgs.images) == 0:
            raise ExplainError("no images left to explain (with --wrong-only the models agree on every file)")
    written: list[Path] = []
    if len(targets) > 1 and method in MAP_METHODS:
        assert imgs is not None
        cells, titles, maps, records = _panel(targets, imgs, method, target_class=target, layer=layer, patch=patch,
                                              stride=stride, batch_size=batch_size, log=log)
        n = len(imgs.images)
        pages = range(0, n, PAGE)
        for k, start in enumerate(pages):
            sl = slice(start, start + PAGE)
            fig = plot_side_by_side(imgs.images[sl].float() / 255, [imgs.true_name(i) for i in range(n)][sl], titles,
                                    cells[sl], _panel_title(imgs, target))
            written.append(save_figure(fig, out / (f"side_by_side_{k + 1}.png" if len(pages) > 1 else "side_by_side.png")))
        np.save(out / "side_by_side.npy", maps)
        (out / "side_by_side.json").write_text(json.dumps({"models": [t.name for t in targets], "images": records},
                                                          indent=2))
        written += [out / "side_by_side.npy", out / "side_by_side.json"]
        return written
    for t in targets:
        m = _resolve_method(method, t)
        folder = out if len(targets) == 1 else out / _tag(t.name)
        folder.mkdir(parents=True, exist_ok=True)
        written += _explain_one(t, m, imgs, folder, layer=layer, top=top, patch=patch, stride=stride, block=block,
                                target_class=target, batch_size=batch_size, log=log)
    return written
