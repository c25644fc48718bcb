"""MobileNet v1 (vs timm) and v2 (vs torchvision): weights, width multiplier, Table 1 geometry, CIFAR forms."""

from __future__ import annotations

import pytest
import timm
import torch
import torch.nn as nn
import torchvision

from lenet2vit import create_model, load_weights, model_info


def _randomize_batch_norm(model: nn.Module) -> None:
    # Fresh BN layers are the identity in eval mode; give them statistics so that a missing or
    # misplaced BN, or a wrong activation, changes the output.
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(0.1 * torch.randn(n, generator=g))
            m.running_var.copy_(0.5 + torch.rand(n, generator=g))
            with torch.no_grad():
                m.weight.copy_(0.5 + torch.rand(n, generator=g))
                m.bias.copy_(0.1 * torch.randn(n, generator=g))


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _assert_equivalent(ours: nn.Module, theirs: nn.Module, source: str, tmp_path) -> None:
    _randomize_batch_norm(theirs)
    path = tmp_path / "reference.pth"
    torch.save(theirs.state_dict(), path)
    load_weights(ours, path, source=source)
    ours.eval()
    theirs.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        got, expected = ours(x), theirs(x)
    assert got.shape == expected.shape
    assert torch.allclose(got, expected, atol=1e-5, rtol=1e-4)


# ---------------------------------------------------------------------------- MobileNet v1


def test_v1_count_matches_timm() -> None:
    with torch.device("meta"):
        ours, theirs = create_model("mobilenet_v1"), timm.create_model("mobilenetv1_100")
    assert _count(ours) == _count(theirs) == model_info("mobilenet_v1").ref_params


@pytest.mark.parametrize(("timm_name", "width_mult"), [("mobilenetv1_100", 1.0), ("mobilenetv1_125", 1.25)])
def test_v1_matches_timm(timm_name: str, width_mult: float, tmp_path) -> None:
    torch.manual_seed(0)
    theirs = timm.create_model(timm_name)
    ours = create_model("mobilenet_v1", width_mult=width_mult)
    _assert_equivalent(ours, theirs, "timm", tmp_path)


def test_v1_follows_table_1() -> None:
    model = create_model("mobilenet_v1")
    layers = [b for stage in model.blocks for b in stage]
    assert len(layers) == 13
    assert all(b.conv_dw.groups == b.conv_dw.in_channels == b.conv_dw.out_channels for b in layers)  # depthwise
    assert all(b.conv_pw.kernel_size == (1, 1) for b in layers)  # pointwise
    with torch.device("meta"):
        feats = create_model("mobilenet_v1").forward_features(torch.empty(1, 3, 224, 224))
    assert feats.shape == (1, 1024, 7, 7)  # Table 1: 7x7x1024 before the 7x7 average pool


@pytest.mark.parametrize(("alpha", "paper_millions"), [(1.0, 4.2), (0.75, 2.6), (0.5, 1.3), (0.25, 0.5)])
def test_v1_width_multiplier_thins_every_layer(alpha: float, paper_millions: float) -> None:
    full, thin = create_model("mobilenet_v1"), create_model("mobilenet_v1", width_mult=alpha)
    widths = lambda m: [c.out_channels for c in m.modules() if isinstance(c, nn.Conv2d)]  # noqa: E731
    assert widths(thin) == [int(w * alpha) for w in widths(full)]
    assert round(_count(thin) / 1e6, 1) == paper_millions  # Table 6, "Million Parameters"


# ---------------------------------------------------------------------------- MobileNet v2


def test_v2_count_matches_torchvision() -> None:
    with torch.device("meta"):
        ours, theirs = create_model("mobilenet_v2"), torchvision.models.mobilenet_v2()
    assert _count(ours) == _count(theirs) == model_info("mobilenet_v2").ref_params
    assert list(ours.state_dict()) == list(theirs.state_dict())


@pytest.mark.parametrize("width_mult", [1.0, 0.5, 1.4])
def test_v2_matches_torchvision(width_mult: float, tmp_path) -> None:
    torch.manual_seed(0)
    theirs = torchvision.models.mobilenet_v2(width_mult=width_mult)
    ours = create_model("mobilenet_v2", width_mult=width_mult)
    _assert_equivalent(ours, theirs, "torchvision", tmp_path)


def test_v2_bottlenecks_are_linear_and_residual_where_shapes_allow() -> None:
    model = create_model("mobilenet_v2")
    blocks = list(model.features)[1:-1]
    assert len(blocks) == 17  # Table 2: n = 1 + 2 + 3 + 4 + 3 + 3 + 1
    for b in blocks:
        assert isinstance(b.conv[-1], nn.BatchNorm2d)  # projection ends in BN: no activation
        depthwise = b.conv[-3][0]
        assert depthwise.groups == depthwise.in_channels
        in_ch = b.conv[0][0].in_channels
        assert b.use_res_connect == (depthwise.stride == (1, 1) and in_ch == b.out_channels)
    assert sum(b.use_res_connect for b in blocks) == 17 - 7  # every repeat after a stage's first


# ---------------------------------------------------------------------------- shared


@pytest.mark.parametrize("name", ["mobilenet_v1", "mobilenet_v2"])
def test_cifar_form_keeps_resolution_and_takes_imagenet_weights(name: str) -> None:
    cifar_name = model_info(name).cifar_form
    assert cifar_name == f"{name}_cifar"
    cifar, imagenet = create_model(cifar_name), create_model(name, num_classes=10)
    assert _count(cifar) == _count(imagenet) == model_info(cifar_name).ref_params
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert cifar.forward_features(x).shape[-2:] == (4, 4)
        assert imagenet.forward_features(x).shape[-2:] == (1, 1)
    result = load_weights(cifar, create_model(name).state_dict(), skip_classifier=True)
    assert result["missing"] == [] and len(result["skipped"]) == 2


@pytest.mark.parametrize(("name", "width"), [("mobilenet_v1", 1024), ("mobilenet_v2", 1280)])
def test_head_api_and_input_channels(name: str, width: int) -> None:
    model = create_model(name, num_classes=5, in_chans=1).eval()
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        feats = model.forward_features(x)
        assert feats.shape == (2, width, 2, 2)  # total stride 32
        assert model.forward_head(feats, pre_logits=True).shape == (2, width)
        assert torch.equal(model.forward_head(feats), model(x))
        assert model.get_classifier().out_features == 5
        model.reset_classifier(3)
        assert model.get_classifier().out_features == 3 and model(x).shape == (2, 3)
