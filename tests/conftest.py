"""Shared fixtures: where the real data lives, and tiny synthetic data sets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED_CIFAR = ROOT.parent / "shared" / "datasets" / "cifar10-jpeg.tar.gz"

# Under pytest-xdist each worker gets one thread: more threads than cores slows torch badly.
_default_threads = "1" if os.environ.get("PYTEST_XDIST_WORKER") else "2"
torch.set_num_threads(max(1, min(torch.get_num_threads(), int(os.environ.get("LENET2VIT_TEST_THREADS", _default_threads)))))


@pytest.fixture
def cifar_archive() -> Path:
    """The real CIFAR-10 archive beside the checkout, or a skip saying why."""
    if not SHARED_CIFAR.exists():
        pytest.skip(f"real CIFAR-10 not found at {SHARED_CIFAR} (only on machines that carry the shared data)")
    return SHARED_CIFAR


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Keep decoded-data caches of tests out of the user's home."""
    monkeypatch.setenv("LENET2VIT_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
