"""Shared fixtures: where the real data lives, and tiny synthetic data sets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets"
SHARED_CIFAR = SHARED / "cifar10-png.zip"  # the original CIFAR-10 pixels: every accuracy figure uses it
SHARED_CIFAR_JPEG = SHARED / "cifar10-jpeg.tar.gz"  # a lossy copy, kept for the .tar.gz and JPEG paths

# Under pytest-xdist each worker gets one thread: more threads than cores slows torch badly.
_default_threads = "1" if os.environ.get("PYTEST_XDIST_WORKER") else "2"
torch.set_num_threads(max(1, min(torch.get_num_threads(), int(os.environ.get("LENET2VIT_TEST_THREADS", _default_threads)))))


def _shared(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real CIFAR-10 not found at {path} (only on machines that carry the shared data)")
    return path


@pytest.fixture
def cifar_archive() -> Path:
    """The original CIFAR-10 (lossless PNG zip) beside the checkout, or a skip saying why."""
    return _shared(SHARED_CIFAR)


@pytest.fixture
def cifar_jpeg_archive() -> Path:
    """The lossy JPEG .tar.gz copy of CIFAR-10, for the tar and JPEG paths, or a skip saying why."""
    return _shared(SHARED_CIFAR_JPEG)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Keep decoded-data caches of tests out of the user's home."""
    monkeypatch.setenv("LENET2VIT_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def _make_photo_folder(root: Path, per_class: int = 8, splits=("train", "val")) -> Path:
    """An ImageNet-shaped folder: train/ + val/ of three classes, JPEGs of varied size and aspect."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in splits:
        for c_i, c in enumerate(("cat", "dog", "emu")):
            d = root / split / c
            d.mkdir(parents=True)
            for i in range(per_class if split == "train" else max(per_class // 4, 2)):
                h, w = int(rng.integers(40, 90)), int(rng.integers(40, 90))
                img = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
                img[..., c_i] = 255 - c_i * 60  # a class-coloured channel, so a net can learn it
                Image.fromarray(img).save(d / f"{i:03d}.jpg", quality=90)
    return root


@pytest.fixture
def photo_folder():
    """``photo_folder(root, per_class=8)``: writes a train/ + val/ folder of varied JPEGs at root."""
    return _make_photo_folder
