"""EfficientNet B0-B7: torchvision equivalence, compound-scaling counts, stochastic depth, CIFAR form."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torchvision

from lenet2vit import create_model, load_weights, model_info

VARIANTS = [f"b{i}" for i in range(8)]


def _randomize_batch_norm(model: nn.Module) -> None:
    # Fresh BN layers are the identity in eval mode; give them statistics so that a wrong eps,
    # a missing BN or a swapped affine parameter changes the output.
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


@pytest.mark.parametrize("variant", VARIANTS)
def test_structure_matches_torchvision(variant: str) -> None:
    name = f"efficientnet_{variant}"
    with torch.device("meta"):
        ours = create_model(name)
        theirs = getattr(torchvision.models, name)()
    assert _count(ours) == _count(theirs) == model_info(name).ref_params
    ours_sd, theirs_sd = ours.state_dict(), theirs.state_dict()
    assert list(ours_sd) == list(theirs_sd)
    assert all(ours_sd[k].shape == theirs_sd[k].shape for k in ours_sd)
    # batch-norm constants (TensorFlow's for B5-B7) and per-block stochastic-depth rates
    bn = lambda m: [(x.eps, x.momentum) for x in m.modules() if isinstance(x, nn.BatchNorm2d)]  # noqa: E731
    assert bn(ours) == bn(theirs)
    sd_theirs = [x.p for x in theirs.modules() if type(x).__name__ == "StochasticDepth"]
    sd_ours = [x.stochastic_depth.p for x in ours.modules() if type(x).__name__ == "MBConv"]
    assert sd_ours == pytest.approx(sd_theirs)
    assert isinstance(ours.classifier[0], nn.Dropout) and ours.classifier[0].p == theirs.classifier[0].p


@pytest.mark.parametrize(
    "variant", [v if v in ("b0", "b1", "b2") else pytest.param(v, marks=pytest.mark.slow) for v in VARIANTS]
)
def test_matches_torchvision(variant: str, tmp_path) -> None:
    name = f"efficientnet_{variant}"
    torch.manual_seed(0)
    theirs = getattr(torchvision.models, name)()
    _randomize_batch_norm(theirs)
    theirs.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = theirs(x)
    path = tmp_path / f"{name}.pth"
    torch.save(theirs.state_dict(), path)
    del theirs

    ours = create_model(name)
    load_weights(ours, path, source="torchvision")
    ours.eval()
    with torch.no_grad():
        got = ours(x)
    assert got.shape == (1, 1000)
    assert torch.isfinite(got).all()
    assert torch.allclose(got, expected, atol=1e-5, rtol=1e-4)


def test_stochastic_depth_rises_linearly_and_drops_in_training() -> None:
    model = create_model("efficientnet_b0", num_classes=10, stochastic_depth_prob=0.2)
    rates = [b.stochastic_depth.p for b in model.modules() if type(b).__name__ == "MBConv"]
    assert len(rates) == 16  # B0: 1 + 2 + 2 + 3 + 3 + 4 + 1 blocks (Table 1)
    assert rates[0] == 0.0
    steps = [b - a for a, b in zip(rates, rates[1:])]
    assert steps == pytest.approx([0.2 / 16] * 15)

    model = create_model("efficientnet_b0_cifar", num_classes=10, stochastic_depth_prob=0.9, dropout=0.0)
    x = torch.randn(4, 3, 16, 16)
    torch.manual_seed(0)
    with torch.no_grad():
        model.train()
        a, b = model(x), model(x)
        assert not torch.allclose(a, b)  # residual branches dropped at random
        model.eval()
        assert torch.equal(model(x), model(x))


def test_cifar_form_keeps_resolution_and_takes_b0_weights() -> None:
    cifar, imagenet = create_model("efficientnet_b0_cifar"), create_model("efficientnet_b0", num_classes=10)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert cifar.forward_features(x).shape == (2, 1280, 4, 4)
        assert imagenet.forward_features(x).shape == (2, 1280, 1, 1)
    assert _count(cifar) == _count(imagenet) == model_info("efficientnet_b0_cifar").ref_params
    assert model_info("efficientnet_b0").cifar_form == "efficientnet_b0_cifar"
    # ImageNet weights fit the CIFAR form; only the classifier is left out
    skipped = load_weights(cifar, create_model("efficientnet_b0").state_dict(), skip_classifier=True)["skipped"]
    assert sorted(skipped) == ["classifier.1.bias", "classifier.1.weight"]


def test_head_api_and_input_channels() -> None:
    model = create_model("efficientnet_b0", num_classes=5, in_chans=1).eval()
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        feats = model.forward_features(x)
        assert feats.shape == (2, 1280, 2, 2)  # total stride 32
        assert model.forward_head(feats, pre_logits=True).shape == (2, 1280)
        assert torch.equal(model.forward_head(feats), model(x))
        assert model.get_classifier().out_features == 5
        model.reset_classifier(3)
        assert model.get_classifier().out_features == 3 and model(x).shape == (2, 3)
