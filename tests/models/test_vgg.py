"""VGG: the paper's configurations, torchvision equivalence, CIFAR forms and init_from."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torchvision

from lenet2vit import create_model, list_models, load_weights, model_info
from lenet2vit.layers import LocalResponseNorm
from lenet2vit.models.vgg import init_from


def _convs(model: nn.Module) -> list[nn.Conv2d]:
    return [m for m in model.features if isinstance(m, nn.Conv2d)]


def _stages(model: nn.Module) -> list[list[nn.Conv2d]]:
    stages: list[list[nn.Conv2d]] = [[]]
    for m in model.features:
        if isinstance(m, nn.MaxPool2d):
            stages.append([])
        elif isinstance(m, nn.Conv2d):
            stages[-1].append(m)
    return [s for s in stages if s]


# Table 1: weight layers (conv + 3 FC) of each configuration
@pytest.mark.parametrize(
    "name, weight_layers",
    [("vgg11_cifar", 11), ("vgg11_lrn_cifar", 11), ("vgg13_cifar", 13), ("vgg16_c_cifar", 16),
     ("vgg16_cifar", 16), ("vgg19_cifar", 19)],
)
def test_depths(name: str, weight_layers: int) -> None:
    with torch.device("meta"):
        m = create_model(name)
    assert len(_convs(m)) + sum(isinstance(x, nn.Linear) for x in m.classifier) == weight_layers
    assert [s[0].out_channels for s in _stages(m)] == [64, 128, 256, 512, 512]


def test_config_c_ends_stages_3_to_5_with_1x1() -> None:
    with torch.device("meta"):
        c, d = create_model("vgg16_c"), create_model("vgg16")
    kernels = [[conv.kernel_size[0] for conv in s] for s in _stages(c)]
    assert kernels == [[3, 3], [3, 3], [3, 3, 1], [3, 3, 1], [3, 3, 1]]
    assert all(conv.padding == (0, 0) for conv in _convs(c) if conv.kernel_size == (1, 1))
    # C is D with three 3x3 convs replaced by 1x1: 8 weights fewer per (in, out) pair
    diff = sum(p.numel() for p in d.parameters()) - sum(p.numel() for p in c.parameters())
    assert diff == 8 * (256 * 256 + 512 * 512 + 512 * 512)
    x = torch.randn(1, 3, 32, 32)
    assert create_model("vgg16_c_cifar").eval()(x).shape == (1, 10)


def test_a_lrn_has_lrn_after_the_first_conv() -> None:
    m = create_model("vgg11_lrn_cifar")
    assert [type(x) for x in m.features[:4]] == [nn.Conv2d, nn.ReLU, LocalResponseNorm, nn.MaxPool2d]
    assert sum(isinstance(x, LocalResponseNorm) for x in m.features) == 1
    assert model_info("vgg11_lrn").ref_params == model_info("vgg11").ref_params  # LRN has no parameters


def test_bn_forms_normalise_every_conv() -> None:
    m = create_model("vgg16_c_bn_cifar")
    layers = list(m.features)
    for i, x in enumerate(layers):
        if isinstance(x, nn.Conv2d):
            assert isinstance(layers[i + 1], nn.BatchNorm2d) and layers[i + 1].num_features == x.out_channels
    assert "vgg11_lrn_bn" not in list_models("vgg*")  # BN replaces LRN: no such model


def _empty(name: str, **kwargs) -> nn.Module:
    # built on the meta device and given uninitialised storage: every tensor is loaded afterwards,
    # so the 100M-parameter random initialisation would only cost time
    with torch.device("meta"):
        model = create_model(name, **kwargs)
    return model.to_empty(device="cpu")


_SLOW = pytest.mark.slow
TORCHVISION = [
    "vgg11",
    "vgg11_bn",
    "vgg13",
    "vgg13_bn",
    pytest.param("vgg16", marks=_SLOW),
    pytest.param("vgg16_bn", marks=_SLOW),
    pytest.param("vgg19", marks=_SLOW),
    pytest.param("vgg19_bn", marks=_SLOW),
]


@pytest.mark.parametrize("name", TORCHVISION)
def test_matches_torchvision(name: str, tmp_path) -> None:
    assert model_info(name).reference == ("torchvision", name)
    torch.manual_seed(0)
    # init_weights=False keeps PyTorch's default init: random (not zero) biases, a stricter check
    theirs = getattr(torchvision.models, name)(num_classes=1000, init_weights=False)
    for m in theirs.modules():
        if isinstance(m, nn.BatchNorm2d):  # non-trivial BN parameters and statistics
            for t in (m.weight, m.bias, m.running_mean):
                t.data.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    theirs.eval()
    torch.save(theirs.state_dict(), tmp_path / f"{name}.pth")
    ours = _empty(name)
    load_weights(ours, tmp_path / f"{name}.pth", source="torchvision")
    ours.eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(ours(x), theirs(x), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", ["vgg11_cifar", "vgg16_bn_cifar"])
def test_cifar_forms(name: str) -> None:
    base = name.removesuffix("_cifar")
    assert model_info(base).cifar_form == name
    m = create_model(name).eval()
    with torch.device("meta"):
        ref = create_model(base)
    widths = [(c.in_channels, c.out_channels, c.kernel_size) for c in _convs(m)]
    assert widths == [(c.in_channels, c.out_channels, c.kernel_size) for c in _convs(ref)]  # same conv stack
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        feats = m.forward_features(x)
        assert feats.shape == (2, 512, 1, 1)
        assert m.forward_head(feats, pre_logits=True).shape == (2, 512)
        assert m.forward_head(feats).shape == (2, 10)
    m.reset_classifier(100)
    assert m.get_classifier() is m.classifier[6] and m(x).shape == (2, 100)


def test_imagenet_form_at_32px_copies_its_1x1_map_into_the_classifiers_7x7() -> None:
    """The seed study's VGG16 at CIFAR's own size: five max-pools leave 1x1; the pooling repeats it 49 times."""
    torch.manual_seed(0)
    m = create_model("vgg16", num_classes=10).eval()
    with torch.no_grad():
        feats = m.features(torch.randn(2, 3, 32, 32))
        pooled = m.avgpool(feats)
    assert feats.shape == (2, 512, 1, 1) and pooled.shape == (2, 512, 7, 7)
    assert torch.equal(pooled, feats.expand(-1, -1, 7, 7))
    assert m.classifier[0].in_features == 512 * 7 * 7


# ---------------------------------------------------------------------------------------------
# init_from: the paper's Sec. 3.1 initialisation of deeper nets from configuration A


def _check_init_from(target: nn.Module, source: nn.Module, mapping: dict[str, str]) -> list[str]:
    """``mapping``: target module -> source module whose tensors must be copied (besides the FC layers)."""
    src = source.state_dict()
    before = {k: v.clone() for k, v in target.state_dict().items()}
    copied = init_from(target, src)
    want = {
        t + k[len(s) :]: k for t, s in mapping.items() for k in src if k.startswith(s + ".")
    }
    for k in src:  # the three FC layers, where the shapes agree
        if k.startswith("classifier.") and src[k].shape == before[k].shape:
            want[k] = k
    assert sorted(copied) == sorted(want)
    after = target.state_dict()
    for k, v in after.items():
        if k in want:
            assert torch.equal(v, src[want[k]]), k
        else:
            assert torch.equal(v, before[k]), f"{k} changed but should not"
    return copied


def test_init_from_vgg11_into_vgg16() -> None:
    a, d = _empty("vgg11"), _empty("vgg16")
    # a distinct constant in every tensor tells where each value came from (cheaper than randn)
    for i, t in enumerate(a.state_dict().values()):
        t.fill_(i + 1)
    for i, t in enumerate(d.state_dict().values()):
        t.fill_(-i - 1)
    # A's first four convs (features 0, 3, 6, 8) are stage 1 conv 1, stage 2 conv 1 and stage 3
    # convs 1-2; in D those places are features 0, 5, 10, 12.
    mapping = {"features.0": "features.0", "features.5": "features.3", "features.10": "features.6",
               "features.12": "features.8"}
    copied = _check_init_from(d, a, mapping)
    assert len(copied) == 4 * 2 + 3 * 2


def test_init_from_with_bn_and_another_head() -> None:
    torch.manual_seed(0)
    a = create_model("vgg11_bn_cifar")
    for m in a.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_()
            m.num_batches_tracked.fill_(7)
    e = create_model("vgg19_bn_cifar", num_classes=100)  # classifier.6 has another shape: skipped
    # with BN, A's first convs sit at 0, 4, 8, 11 and E's matching ones at 0, 7, 14, 17; each
    # BN (conv index + 1) goes along with its statistics
    pairs = {0: 0, 7: 4, 14: 8, 17: 11}
    mapping = {f"features.{t + o}": f"features.{s + o}" for t, s in pairs.items() for o in (0, 1)}
    copied = _check_init_from(e, a, mapping)
    assert "features.1.running_mean" in copied and "classifier.6.weight" not in copied
    assert int(e.features[1].num_batches_tracked) == 7


def test_init_from_a_lrn_source() -> None:
    torch.manual_seed(0)
    # A-LRN shifts A's indices by one (LRN at 2); the stage-wise mapping still finds the layers
    lrn, d = create_model("vgg11_lrn_cifar"), create_model("vgg16_cifar")
    mapping = {"features.0": "features.0", "features.5": "features.4", "features.10": "features.7",
               "features.12": "features.9"}
    _check_init_from(d, lrn, mapping)


def test_init_from_rejects_other_networks() -> None:
    with pytest.raises(ValueError, match="not a VGG configuration"):
        init_from(create_model("vgg11_cifar"), create_model("alexnet_cifar").state_dict())
