"""LeNet-5, AlexNet (torchvision form, 2012 paper form), ZFNet and their CIFAR forms."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torchvision

from lenet2vit import create_model, load_weights, model_info
from lenet2vit.layers import LocalResponseNorm
from lenet2vit.models.lenet import ScaledTanh, Subsampling


def _n(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _conv_count(c_in: int, c_out: int, k: int, groups: int = 1) -> int:
    return c_in // groups * k * k * c_out + c_out


def _map_sizes(model: nn.Module, x: torch.Tensor, types: tuple[type, ...]) -> list[int]:
    sizes = []
    with torch.no_grad():
        for layer in model.features:
            x = layer(x)
            if isinstance(layer, types):
                sizes.append(x.shape[-1])
    return sizes


# ---------------------------------------------------------------------------------------------
# LeNet-5


def test_lenet5_layers_follow_the_paper() -> None:
    m = create_model("lenet5").eval()
    f = m.features
    # paper Sec. II.B, with C3 fully connected
    assert _n(f.c1) == _conv_count(1, 6, 5) == 156
    assert _n(f.c3) == _conv_count(6, 16, 5) == 2416
    assert _n(f.c5) == _conv_count(16, 120, 5) == 48120
    assert _n(m.classifier.f6) == 120 * 84 + 84
    assert _n(m.classifier.output) == 84 * 10 + 10
    assert _n(m) == 61_706 == model_info("lenet5").ref_params
    # C1 28x28, S2 14x14, C3 10x10, S4 5x5, C5 1x1
    assert _map_sizes(m, torch.randn(1, 1, 32, 32), (nn.Conv2d, Subsampling)) == [28, 14, 10, 5, 1]
    assert sum(isinstance(x, ScaledTanh) for x in m.modules()) == 4  # C1, C3, C5, F6 are squashed


def test_lenet5_scaled_tanh_is_the_papers_squash() -> None:
    f = ScaledTanh()
    x = torch.linspace(-3, 3, 13)
    assert torch.allclose(f(x), 1.7159 * torch.tanh(2 * x / 3))
    assert torch.allclose(f(torch.tensor([1.0, -1.0])), torch.tensor([1.0, -1.0]), atol=1e-3)  # f(+-1) = +-1


def test_lenet5_trainable_subsampling() -> None:
    m = create_model("lenet5", trainable_subsampling=True).eval()
    assert _n(m) == 61_706 + 2 * 6 + 2 * 16  # one coefficient and one bias per S2/S4 map
    s2 = m.features.s2
    with torch.no_grad():
        s2.weight.copy_(torch.arange(1.0, 7.0) / 10)
        s2.bias.copy_(torch.linspace(-0.5, 0.5, 6))
        x = torch.randn(1, 6, 4, 4)
        got = s2(x)
    block_sum = x[..., 0:2, 0:2].sum(dim=(-1, -2))  # top-left 2x2 of each map
    want = 1.7159 * torch.tanh(2 / 3 * (block_sum * s2.weight + s2.bias))
    assert torch.allclose(got[..., 0, 0], want, atol=1e-6)


def test_lenet5_init_and_input_checks() -> None:
    torch.manual_seed(0)
    m = create_model("lenet5")
    paper = create_model("lenet5", init="paper")
    for name in ("features.c1", "features.c3", "features.c5", "classifier.f6", "classifier.output"):
        layer, p_layer = m.get_submodule(name), paper.get_submodule(name)
        fan_in = layer.weight[0].numel()
        assert p_layer.weight.abs().max() <= 2.4 / fan_in  # Appendix A
        bound = (3 / fan_in) ** 0.5  # Efficient BackProp: std 1/sqrt(fan-in)
        assert layer.weight.abs().max() <= bound and layer.weight.abs().max() > 0.9 * bound
    with pytest.raises(ValueError, match="init must be one of lecun, paper"):
        create_model("lenet5", init="xavier")
    rgb = create_model("lenet5", num_classes=100, in_chans=3)
    assert rgb(torch.randn(2, 3, 32, 32)).shape == (2, 100)
    assert _n(rgb) == 61_706 + 2 * 6 * 25 + 90 * (84 + 1)  # wider C1, wider output
    with pytest.raises(ValueError, match="32x32"):
        m(torch.randn(1, 1, 64, 64))
    assert m.forward_features(torch.randn(1, 1, 64, 64)).shape == (1, 120, 9, 9)  # C5 maps of a bigger image


def test_lenet5_head_api() -> None:
    m = create_model("lenet5").eval()
    x = torch.randn(2, 1, 32, 32)
    assert m.forward_head(m.forward_features(x), pre_logits=True).shape == (2, 84)
    assert m.get_classifier() is m.classifier.output
    m.reset_classifier(26)
    assert m(x).shape == (2, 26) and m.get_classifier().out_features == 26


# ---------------------------------------------------------------------------------------------
# Local response normalisation


def test_lrn_matches_the_paper_formula() -> None:
    torch.manual_seed(0)
    a = torch.randn(2, 11, 4, 3) * 20  # large activations so the denominator matters
    k, n, alpha, beta = 2.0, 5, 1e-4, 0.75
    got = LocalResponseNorm(size=n, alpha=alpha, beta=beta, k=k)(a)
    want = torch.empty_like(a)
    N = a.shape[1]
    for i in range(N):  # Sec. 3.3: sum over j = max(0, i - n/2) ... min(N - 1, i + n/2)
        lo, hi = max(0, i - n // 2), min(N - 1, i + n // 2)
        s = sum(a[:, j] ** 2 for j in range(lo, hi + 1))
        want[:, i] = a[:, i] / (k + alpha * s) ** beta
    assert torch.allclose(got, want, atol=1e-6, rtol=1e-5)
    assert not torch.allclose(got, a / k**beta, rtol=1e-3)  # the neighbour term is not negligible here


# ---------------------------------------------------------------------------------------------
# AlexNet


def test_alexnet_matches_torchvision(tmp_path) -> None:
    torch.manual_seed(0)
    theirs = torchvision.models.alexnet(num_classes=1000).eval()
    torch.save(theirs.state_dict(), tmp_path / "alexnet.pth")
    ours = create_model("alexnet")
    load_weights(ours, tmp_path / "alexnet.pth", source="torchvision")
    ours.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(ours(x), theirs(x), atol=1e-5, rtol=1e-4)


def _convs(model: nn.Module) -> list[nn.Conv2d]:
    return [m for m in model.features if isinstance(m, nn.Conv2d)]


def test_alexnet_paper_structure() -> None:
    with torch.device("meta"):
        m = create_model("alexnet_paper")
    convs = _convs(m)
    assert [c.out_channels for c in convs] == [96, 256, 384, 384, 256]
    assert [c.groups for c in convs] == [1, 2, 1, 2, 2]  # conv2, conv4, conv5 stay on their GPU
    assert (convs[0].kernel_size, convs[0].stride) == ((11, 11), (4, 4))
    want = (
        _conv_count(3, 96, 11)
        + _conv_count(96, 256, 5, groups=2)
        + _conv_count(256, 384, 3)
        + _conv_count(384, 384, 3, groups=2)
        + _conv_count(384, 256, 3, groups=2)
        + (256 * 6 * 6 * 4096 + 4096)
        + (4096 * 4096 + 4096)
        + (4096 * 1000 + 1000)
    )
    assert _n(m) == want == 60_965_224
    # LRN right after the ReLUs of conv1 and conv2 and nowhere else; then the pool
    kinds = [type(x).__name__ for x in m.features]
    assert kinds[:8] == ["Conv2d", "ReLU", "LocalResponseNorm", "MaxPool2d"] * 2
    assert kinds.count("LocalResponseNorm") == 2
    lrn = m.features[2]
    assert (lrn.size, lrn.k, lrn.alpha, lrn.beta) == (5, 2.0, 1e-4, 0.75)
    pools = [x for x in m.features if isinstance(x, nn.MaxPool2d)]
    assert len(pools) == 3 and all(p.kernel_size == 3 and p.stride == 2 for p in pools)  # overlapping
    # dropout on the two hidden FC layers
    assert sum(isinstance(x, nn.Dropout) and x.p == 0.5 for x in m.classifier) == 2


def test_alexnet_paper_groups_split_the_towers() -> None:
    torch.manual_seed(0)
    conv2 = _convs(create_model("alexnet_paper_cifar"))[1]
    x = torch.randn(1, 96, 7, 7)
    y = x.clone()
    y[:, 48:] += torch.randn(1, 48, 7, 7)  # change only the second GPU's conv1 maps
    with torch.no_grad():
        a, b = conv2(x), conv2(y)
    assert torch.equal(a[:, :128], b[:, :128])  # the first tower does not see them
    assert not torch.allclose(a[:, 128:], b[:, 128:])


def test_alexnet_paper_map_sizes_at_227() -> None:
    m = create_model("alexnet_paper").eval()
    sizes = _map_sizes(m, torch.randn(1, 3, 227, 227), (nn.Conv2d, nn.MaxPool2d))
    assert sizes == [55, 27, 27, 13, 13, 13, 13, 6]  # Fig. 2 (with 227 px input)


def test_alexnet_paper_initialisation() -> None:
    torch.manual_seed(0)
    m = create_model("alexnet_paper_cifar")
    convs = _convs(m)
    fcs = [x for x in m.classifier if isinstance(x, nn.Linear)]
    # Sec. 5: biases 1 in conv2, conv4, conv5 and the hidden FC layers, 0 in the rest
    assert [float(c.bias.detach().mean()) for c in convs] == [0.0, 1.0, 0.0, 1.0, 1.0]
    assert [float(f.bias.detach().mean()) for f in fcs] == [1.0, 1.0, 0.0]
    for layer in convs[1:] + fcs:  # weights N(0, 0.01)
        assert abs(float(layer.weight.detach().std()) - 0.01) < 1e-3
    m.reset_classifier(5)
    assert abs(float(m.get_classifier().weight.detach().std()) - 0.01) < 2e-3


# ---------------------------------------------------------------------------------------------
# ZFNet


def test_zfnet_structure_and_count() -> None:
    with torch.device("meta"):
        m = create_model("zfnet")
    convs = _convs(m)
    assert [(c.out_channels, c.kernel_size[0], c.stride[0], c.groups) for c in convs] == [
        (96, 7, 2, 1),
        (256, 5, 2, 1),
        (384, 3, 1, 1),
        (384, 3, 1, 1),
        (256, 3, 1, 1),
    ]
    want = (
        _conv_count(3, 96, 7)
        + _conv_count(96, 256, 5)
        + _conv_count(256, 384, 3)
        + _conv_count(384, 384, 3)
        + _conv_count(384, 256, 3)
        + (6 * 6 * 256 * 4096 + 4096)
        + (4096 * 4096 + 4096)
        + (4096 * 1000 + 1000)
    )
    assert _n(m) == want == model_info("zfnet").ref_params


def test_zfnet_map_sizes_follow_fig3() -> None:
    m = create_model("zfnet").eval()
    sizes = _map_sizes(m, torch.randn(1, 3, 224, 224), (nn.Conv2d, nn.MaxPool2d))
    assert sizes == [110, 55, 26, 13, 13, 13, 13, 6]


# ---------------------------------------------------------------------------------------------
# CIFAR forms


@pytest.mark.parametrize(
    "name, imagenet", [("alexnet_cifar", "alexnet"), ("alexnet_paper_cifar", "alexnet_paper"), ("zfnet_cifar", "zfnet")]
)
def test_cifar_forms(name: str, imagenet: str) -> None:
    assert model_info(imagenet).cifar_form == name
    m = create_model(name).eval()
    with torch.device("meta"):
        ref = create_model(imagenet)
    # same layer widths, groups and LRN placement; only kernels/strides of the stem change
    assert [(c.out_channels, c.groups) for c in _convs(m)] == [(c.out_channels, c.groups) for c in _convs(ref)]
    assert [type(x) for x in m.features] == [type(x) for x in ref.features]
    assert all(c.stride == (1, 1) for c in _convs(m))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        feats = m.forward_features(x)
        assert feats.shape == (2, 256, 3, 3)
        assert m.forward_head(feats).shape == (2, 10)
        assert m.forward_head(feats, pre_logits=True).shape == (2, 4096)
    assert _n(m) == model_info(name).ref_params
    m.reset_classifier(3)
    assert m.get_classifier() is m.classifier[-1] and m(x).shape == (2, 3)
