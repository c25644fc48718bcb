"""Zeiler and Fergus's deconvnet: projections stay in the receptive field; the linear part is a transpose."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from lenet2vit.explain import ExplainError, deconv, receptive_field
from lenet2vit.explain.deconv import deconv_layers


class Seq(nn.Module):
    def __init__(self, *layers: nn.Module) -> None:
        super().__init__()
        self.features = nn.Sequential(*layers)

    def forward(self, x):
        return self.features(x).mean((2, 3))


def _tiny() -> Seq:
    torch.manual_seed(0)
    return Seq(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
        nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(inplace=True),
    ).eval()


def test_receptive_field_of_the_tiny_net():
    # by hand: conv3/p1 -> size 3, start -1; pool2 -> size 4, jump 2; conv3 -> size 8;
    # pool3/2 -> size 12, jump 4; conv3/p1 -> size 20, start -1 - 4 = -5
    assert receptive_field(deconv_layers(_tiny(), "features.7")) == (20, 4, -5)
    assert receptive_field(deconv_layers(_tiny(), "features.2")) == (4, 2, -1)


@pytest.mark.parametrize("layer", ["features.2", "features.4", "features.7"])
def test_projection_of_one_activation_stays_in_its_receptive_field(layer):
    model = _tiny()
    x = torch.randn(2, 3, 24, 24)
    res = deconv(model, x, layer, top=6)
    assert res.reconstructions.shape == (len(res.channel), 3, 24, 24)
    assert len(set(res.channel.tolist())) == len(res.channel)  # one activation per channel
    assert 1 <= len(res.channel) <= 6 and (res.value > 0).all()
    for i in range(len(res.channel)):
        t, l, b, r = res.boxes[i].tolist()
        nz = res.reconstructions[i].abs().sum(0) > 0
        assert nz.any(), "the projection is empty"
        outside = nz.clone()
        outside[t:b, l:r] = False
        assert not outside.any(), f"projection {i} leaks outside its receptive field {t, l, b, r}"


def test_strongest_activations_are_reported():
    model = _tiny()
    x = torch.randn(3, 3, 24, 24)
    res = deconv(model, x, "features.4", top=4)
    with torch.no_grad():
        act = model.features[:5](x.clone())
    best = act.amax(dim=(0, 2, 3))
    assert res.channel.tolist() == best.argsort(descending=True)[: len(res.channel)].tolist()
    torch.testing.assert_close(res.value, best[res.channel])
    i, c, (r, q) = int(res.image_index[0]), int(res.channel[0]), res.position[0].tolist()
    assert act[i, c, r, q] == res.value[0]


def test_without_relu_the_deconvnet_is_the_gradient():
    # unpooling with switches and transposed (grouped) filters are exactly backprop of conv/max-pool
    torch.manual_seed(0)
    model = Seq(nn.Conv2d(2, 4, 3, padding=1), nn.MaxPool2d(3, 2), nn.Conv2d(4, 6, 3, stride=2, groups=2)).eval()
    x = torch.randn(1, 2, 17, 17)
    res = deconv(model, x, "features.2", top=3)
    for i in range(3):
        c, (r, q) = int(res.channel[i]), res.position[i].tolist()
        xg = x.clone().requires_grad_(True)
        unit = model.features(xg)[0, c, r, q]
        (g,) = torch.autograd.grad(unit, xg)
        torch.testing.assert_close(res.reconstructions[i], (g * unit.detach())[0], atol=1e-5, rtol=1e-4)


def test_registered_sequential_cnns():
    from lenet2vit import create_model

    torch.manual_seed(0)
    lenet = create_model("lenet5").eval()
    res = deconv(lenet, torch.randn(2, 1, 32, 32), "features.c3", top=4)
    assert res.reconstructions.shape == (4, 1, 32, 32) and res.rf_size == 14
    assert all(res.reconstructions[i].abs().sum() > 0 for i in range(4))


def test_clear_errors_for_other_models():
    from lenet2vit import create_model

    resnet = create_model("resnet18_cifar", num_classes=10)
    with pytest.raises(ExplainError, match="sequential CNN"):
        deconv(resnet, torch.randn(1, 3, 32, 32), "layer4")
    with pytest.raises(ExplainError, match="features.0"):
        deconv(_tiny(), torch.randn(1, 3, 24, 24), "features.9")
    odd = Seq(nn.Conv2d(3, 4, 3), nn.Sigmoid())
    with pytest.raises(ExplainError, match="Sigmoid"):
        deconv(odd, torch.randn(1, 3, 8, 8), "features.1")
