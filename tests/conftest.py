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
