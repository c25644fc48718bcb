"""torch.hub.load(<this checkout>, name, source="local") gives our model for every registered name."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lenet2vit import create_model, list_models

ROOT = Path(__file__).resolve().parents[1]


def _hubconf():
    """hubconf.py imported as torch.hub imports it (torch.hub.list reads GitHub repositories only)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("hubconf", ROOT / "hubconf.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_registered_name_is_a_hub_entry_point():
    hub = _hubconf()
    entries = {f for f in dir(hub) if callable(getattr(hub, f)) and not f.startswith("_")}  # as torch.hub.list
    assert entries == set(list_models())
    assert "parameters" in getattr(hub, "resnet18_cifar").__doc__  # what torch.hub.help shows


@pytest.mark.parametrize("name", ["lenet5", "resnet18_cifar", "vit_ti_16_cifar"])
def test_hub_load_builds_our_model_with_its_keywords(name):
    torch.manual_seed(0)
    ours = create_model(name, num_classes=7)
    torch.manual_seed(0)
    hub = torch.hub.load(str(ROOT), name, source="local", num_classes=7)
    assert type(hub) is type(ours) and hub.model_name == name
    for (k, a), (k2, b) in zip(ours.state_dict().items(), hub.state_dict().items()):
        assert k == k2 and torch.equal(a, b)


def test_hub_pretrained_loads_the_published_weights(monkeypatch):
    """pretrained=True goes through the same published-weights path as --pretrained imagenet."""
    import torchvision

    import lenet2vit.weights as weights

    reference = torchvision.models.resnet18()  # random weights, standing in for the download
    asked = []

    def fake(name, which):
        asked.append((name, which))
        return reference.state_dict(), "resnet18 weights", "torchvision"

    monkeypatch.setattr(weights, "published_state_dict", fake)
    model = torch.hub.load(str(ROOT), "resnet18", source="local", pretrained=True).eval()
    assert asked == [("resnet18", "imagenet")]
    x = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(model(x), reference.eval()(x))
