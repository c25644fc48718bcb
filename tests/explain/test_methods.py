"""Filters, feature maps, occlusion and Grad-CAM on small CNNs, including a task with known evidence."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from lenet2vit.explain import ExplainError, default_gradcam_layer, feature_maps, filters, gradcam, occlusion

SIZE = 16
SQUARE = (slice(3, 7), slice(9, 13))  # the only evidence of class 1: a bright 4x4 square here


def _square_batch(n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(n, 1, SIZE, SIZE, generator=gen) * 0.5
    y = torch.randint(0, 2, (n,), generator=gen)
    x[y == 1, :, SQUARE[0], SQUARE[1]] = 3.0
    return x, y


def _cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2),
    )


@pytest.fixture(scope="module")
def square_model(_one_thread) -> nn.Module:
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    model = _cnn()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(200):
        x, y = _square_batch(64, gen)
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    x, y = _square_batch(256, gen)
    with torch.no_grad():
        acc = (model(x).argmax(1) == y).float().mean().item()
    assert acc > 0.95, f"the tiny CNN did not learn the square task (accuracy {acc:.2f})"
    return model


def _positive_image(seed: int) -> torch.Tensor:
    x = torch.randn(1, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(seed)) * 0.5
    x[:, :, SQUARE[0], SQUARE[1]] = 3.0
    return x


def _in_square(m: torch.Tensor) -> bool:
    r, c = divmod(int(m.argmax()), m.shape[1])
    return SQUARE[0].start <= r < SQUARE[0].stop and SQUARE[1].start <= c < SQUARE[1].stop


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_occlusion_peaks_on_the_evidence(square_model, seed):
    m = occlusion(square_model, _positive_image(seed), target=1, patch=4, stride=1)
    assert m.shape == (SIZE, SIZE)
    assert _in_square(m)
    assert m.max() > 0.2  # covering the square removes most of the class-1 probability


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_gradcam_peaks_on_the_evidence(square_model, seed):
    assert default_gradcam_layer(square_model, _positive_image(seed)) == "3"
    m = gradcam(square_model, _positive_image(seed), target=1)
    assert m.shape == (SIZE, SIZE)
    assert (m >= 0).all() and m.max() > 0
    assert _in_square(m)


def test_occlusion_is_the_same_in_any_chunking(square_model):
    x = _positive_image(4)
    a = occlusion(square_model, x, target=1, patch=5, stride=3, batch_size=7)
    b = occlusion(square_model, x, target=1, patch=5, stride=3, batch_size=1000)
    torch.testing.assert_close(a, b)


def test_occlusion_covers_every_pixel_and_rejects_bad_patches(square_model):
    x = _positive_image(5)
    m = occlusion(square_model, x, target=0, patch=5, stride=4)  # 16 - 5 is not a multiple of 4
    assert torch.isfinite(m).all()
    with pytest.raises(ExplainError, match="patch"):
        occlusion(square_model, x, patch=17)
    with pytest.raises(ExplainError, match="target"):
        occlusion(square_model, x, target=5)


def test_gradcam_with_inplace_relu_matches_plain_autograd():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(6, 4, 3, padding=1),
                          nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).eval()
    x = torch.randn(1, 3, 8, 8)
    cam = gradcam(model, x, layer="0", target=2)
    # reference: the same Grad-CAM by hand, conv output read before the in-place ReLU
    a = model[0](x)
    score = model[2:](torch.relu(a))[0, 2]
    (g,) = torch.autograd.grad(score, a)
    ref = torch.relu((g.mean((2, 3), keepdim=True) * a).sum(1))[0].detach()
    torch.testing.assert_close(cam, ref)  # same size: no resampling needed
    assert all(not m._forward_hooks for m in model.modules())


def test_default_gradcam_layer_of_registered_cnns():
    from lenet2vit import create_model

    torch.manual_seed(0)
    resnet = create_model("resnet18_cifar", num_classes=10).eval()
    assert default_gradcam_layer(resnet, torch.randn(1, 3, 32, 32)) == "layer4"
    alexnet = create_model("alexnet_cifar", num_classes=10).eval()  # its 3x3 adaptive avgpool is the head's
    assert default_gradcam_layer(alexnet, torch.randn(1, 3, 32, 32)) == "features"
    lenet = create_model("lenet5").eval()
    layer = default_gradcam_layer(lenet, torch.randn(1, 1, 32, 32))
    assert layer == "features.s4"  # C5 maps are 1x1 at 32px: the last stage with a spatial map
    cam = gradcam(lenet, torch.randn(1, 1, 32, 32))
    assert cam.shape == (32, 32) and torch.isfinite(cam).all()


def test_filters_grid_is_normalised_per_kernel():
    conv = nn.Conv2d(3, 5, 4)
    with torch.no_grad():
        conv.weight.mul_(torch.arange(1, 6).view(5, 1, 1, 1) * 10.0)  # kernels on very different scales
    grid = filters(nn.Sequential(conv), nrow=5, padding=1)
    assert grid.shape == (3, 4 + 2, 5 * (4 + 1) + 1)
    for k in range(5):
        tile = grid[:, 1:5, 1 + 5 * k:5 + 5 * k]
        assert float(tile.min()) == pytest.approx(0.0) and float(tile.max()) == pytest.approx(1.0)
    grey = filters(nn.Sequential(nn.Conv2d(1, 4, 3)))
    assert grey.shape[0] == 1


def test_feature_maps_top_channels_by_mean():
    conv = nn.Conv2d(1, 6, 1, bias=True)
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.copy_(torch.tensor([0.0, 5.0, 1.0, 3.0, -1.0, 2.0]))  # mean activation = bias
    model = nn.Sequential(conv, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    fm = feature_maps(model, torch.randn(1, 1, 7, 7), "0", top=3)
    assert fm.channels.tolist() == [1, 3, 5]
    assert fm.maps.shape == (3, 7, 7) and fm.num_channels == 6
    with pytest.raises(ExplainError, match="Did you mean"):
        feature_maps(model, torch.randn(1, 1, 7, 7), "00")
