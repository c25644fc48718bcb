"""What the explanations look at: trained runs (or bare architectures) and the images.

A *target* is a run folder (loaded with :func:`lenet2vit.engine.run.load_run`, so it knows its
classes, input size and normalisation) or a registered model name (random weights; enough
for filter and feature-map demonstrations). Images come as uint8 tensors ``(N, C, H, W)``
from files or from a data set split (``test:16``); :func:`prepare` turns them into each
model's normalised input with the run's own preprocessing (:class:`lenet2vit.data.Preprocess`,
the one eval and predict use) and :func:`denormalize` back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
import torch.nn as nn

from lenet2vit.data import IMAGENET_MEAN, IMAGENET_STD, decode_image_bytes, fit_square, match_channels
from lenet2vit.engine.run_folder import load_run, run_preprocess
from lenet2vit.explain.methods import ExplainError

__all__ = [
    "Target",
    "load_target",
    "load_image_files",
    "prepare",
    "denormalize",
    "parse_split_spec",
    "split_images",
    "stored_size",
]


@dataclass
class Target:
    """One model to explain: a short display name, the model (eval mode) and its run config."""

    name: str
    model: nn.Module
    config: dict = field(repr=False)
    from_run: bool = True

    @property
    def classes(self) -> list[str]:
        return list(self.config["classes"])

    @property
    def input_size(self) -> int:
        return int(self.config["input_size"])

    @property
    def in_chans(self) -> int:
        return int(self.config["in_chans"])


def load_target(spec: str | Path, device: str | torch.device = "cpu") -> Target:
    """A run folder (or ``best.safetensors`` file), or a registered model name with random weights.

    A model name gets the model's default input size, ImageNet mean/std (0.5 for grey models)
    and classes named ``class 0`` ... so the same figures can be drawn before any training.
    """
    from lenet2vit.registry import UnknownModelError, create_model, model_info

    path = Path(spec)
    if path.exists():
        model, config = load_run(path, device)
        folder = path.stem if path.is_file() else (path.name or str(path))
        # Study folders are named seedN: say which model they hold.
        name = f"{config['model']} ({folder})" if folder.startswith("seed") or folder == "best" else folder
        return Target(name, model, config, True)
    try:
        info = model_info(str(spec))
    except UnknownModelError as e:
        raise ExplainError(f"{spec}: not a run folder, and {e}") from None
    torch.manual_seed(0)  # the same random weights every time
    model = create_model(info.name).to(device).eval()
    c = info.in_chans
    mean, std = (list(IMAGENET_MEAN), list(IMAGENET_STD)) if c == 3 else ([0.5] * c, [0.5] * c)
    config = {
        "model": info.name, "family": info.family, "num_classes": info.ref_num_classes, "in_chans": c,
        "input_size": info.input_size, "mean": mean, "std": std,
        "classes": [f"class {i}" for i in range(info.ref_num_classes)], "dataset": None,
    }
    return Target(f"{info.name} (random weights)", model, config, False)


def stored_size(config: dict) -> int:
    """The square side a run's data set stores its images at (its input size for a bare model)."""
    pre = run_preprocess(config)
    return pre.stored_size or pre.input_size


def load_image_files(paths: Sequence[str | Path], size: int, in_chans: int = 3) -> torch.Tensor:
    """Read image files into a uint8 tensor ``(N, in_chans, size, size)``.

    Each file is decoded as the data sets decode theirs (EXIF rotation applied), its channels
    matched (grey repeated, colour to luma), its shorter side resized to ``size`` and the
    centre cropped square: for ``size`` = a run's :func:`stored_size`, exactly what its data
    set would hold for the file.
    """
    if in_chans not in (1, 3):
        raise ExplainError(f"images can be read as 1 or 3 channels, the model wants {in_chans}")
    out = []
    for p in paths:
        try:
            data = Path(p).read_bytes()
        except FileNotFoundError:
            raise ExplainError(f"{p}: no such image file") from None
        except OSError as e:
            raise ExplainError(f"{p}: cannot read ({e.strerror or e})") from None
        try:
            x = decode_image_bytes(data)
        except ValueError as e:
            raise ExplainError(f"{p}: {e}; pass a JPEG or PNG file") from None
        out.append(fit_square(match_channels(x, in_chans), size))
    if not out:
        raise ExplainError("no image files given; pass --image FILE [FILE ...] or --images test:N")
    return torch.stack(out)


def prepare(images: torch.Tensor, config: dict) -> torch.Tensor:
    """uint8 images ``(N, C, H, W)`` -> the run's normalised input ``(N, in_chans, S, S)``.

    The run's own preprocessing (:class:`lenet2vit.data.Preprocess`): channels matched,
    fitted to the square its data set stores, scaled, normalised with the run's mean and std
    and resized to its input size, as eval's loader does.
    """
    if images.ndim == 3:
        images = images[None]
    try:
        return run_preprocess(config)(images)
    except ValueError as e:  # a channel count neither repeated nor reduced
        raise ExplainError(str(e)) from None


def denormalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Undo the run's normalisation: values back in [0, 1] for display (same shape as ``x``)."""
    shape = (-1, 1, 1) if x.ndim == 3 else (1, -1, 1, 1)
    m = torch.tensor(mean, dtype=torch.float32).view(shape)
    s = torch.tensor(std, dtype=torch.float32).view(shape)
    return (x.detach().float().cpu() * s + m).clamp(0, 1)


def parse_split_spec(spec: str) -> tuple[str, int]:
    """``"test:16"`` -> ``("test", 16)``; ``"test"`` alone means 16 images."""
    m = re.fullmatch(r"(train|test)(?::(\d+))?", spec.strip())
    if not m or (m.group(2) is not None and int(m.group(2)) < 1):
        raise ExplainError(f"--images {spec!r}: expected SPLIT:N with SPLIT train or test and N >= 1, e.g. test:16")
    return m.group(1), int(m.group(2) or 16)


def split_images(
    spec: str,
    config: dict | None,
    dataset: str | None = None,
    data_dir: str | None = None,
    seed: int = 0,
):
    """Images of a data set split in a fixed random order: ``(arrays, order, n)``.

    The data set is the run's own (``config["dataset"]``) unless ``dataset``/``data_dir`` are
    given. ``order`` is a seeded permutation of the split; the first ``n`` are the picks, the
    rest is the pool ``--wrong-only`` searches.
    """
    from lenet2vit.data import load_split

    split, n = parse_split_spec(spec)
    ds = (config or {}).get("dataset") or {}
    name = dataset or ds.get("name")
    if not name:
        raise ExplainError(f"--images {spec}: this model has no data set of its own; pass --dataset (and --data-dir)")
    arrays = load_split(name, data_dir or ds.get("data_dir"), split, progress=False)
    if len(arrays) == 0:
        raise ExplainError(f"the {name} {split} split is empty; pick another split or data set")
    order = torch.randperm(len(arrays), generator=torch.Generator().manual_seed(seed))
    return arrays, order, min(n, len(arrays))
