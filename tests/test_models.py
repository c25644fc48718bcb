"""Checks every registered model, so a newly registered one is tested automatically."""

from __future__ import annotations

import pytest
import torch

from lenet2vit import create_model, list_models, model_info
from lenet2vit.profile import count_params

ALL = list_models("*")


def _small_size(name: str) -> int:
    return max(model_info(name).min_input_size, 8) if model_info(name).family != "LeNet" else 32


def _is_heavy(name: str) -> bool:
    """Models whose real forward/backward at small size still costs seconds on 2 cores.

    Their shapes are checked on the meta device here; their real outputs by their family's
    reference-equivalence tests (tests/models/).
    """
    info = model_info(name)
    return info.ref_params > 25_000_000 or name in HEAVY


HEAVY = {"resnet1202", "efficientnet_b3", "efficientnet_b4", "googlenet_paper_cifar", "resnet101_cifar"}
LIGHT = [n for n in ALL if not _is_heavy(n)]


@pytest.mark.parametrize("name", ALL)
def test_exact_parameter_count(name):
    info = model_info(name)
    with torch.device("meta"):
        model = create_model(name)  # reference class count and channels
    assert count_params(model) == info.ref_params, f"{name}: {count_params(model):,} != {info.ref_params:,} ({info.ref_source})"


@pytest.mark.parametrize("name", ALL)
def test_info_is_complete(name):
    info = model_info(name)
    assert info.paper and info.family and 1989 <= info.year <= 2026
    assert info.input_size >= info.min_input_size > 0
    if info.cifar_form:
        cifar = model_info(info.cifar_form)
        assert cifar.is_cifar_form and cifar.input_size == 32 and cifar.min_input_size <= 32


@pytest.mark.parametrize("name", ALL)
def test_output_shapes_for_any_class_count_and_channels(name):
    size = _small_size(name)
    for num_classes, in_chans in ((7, 3), (3, 1)):
        with torch.device("meta"):
            model = create_model(name, num_classes=num_classes, in_chans=in_chans).eval()
            y = model(torch.empty(2, in_chans, size, size))
            assert y.shape == (2, num_classes)
            assert model.forward_head(model.forward_features(torch.empty(2, in_chans, size, size))).shape == y.shape
            model.reset_classifier(4)
            assert model(torch.empty(2, in_chans, size, size)).shape == (2, 4)
            assert model.get_classifier() is not None


@pytest.mark.parametrize("name", LIGHT)
def test_real_forward_is_finite_and_split_consistently(name):
    size = _small_size(name)
    torch.manual_seed(0)
    model = create_model(name, num_classes=7).eval()
    x = torch.randn(2, model_info(name).in_chans, size, size)
    with torch.no_grad():
        y = model(x)
        assert torch.isfinite(y).all()
        assert torch.allclose(model.forward_head(model.forward_features(x)), y, atol=1e-5)


@pytest.mark.parametrize("name", LIGHT)
def test_every_parameter_gets_a_gradient(name):
    size = _small_size(name)
    torch.manual_seed(0)
    model = create_model(name, num_classes=5).train()
    in_chans = model_info(name).in_chans
    x = torch.randn(2, in_chans, size, size)
    out = model(x)
    logits, aux = (out[0], out[1]) if isinstance(out, tuple) else (out, [])
    loss = logits.float().pow(2).mean() + sum(a.float().pow(2).mean() for a in aux)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not torch.isfinite(p.grad).all())]
    assert not missing, f"{name}: no (finite) gradient for {missing[:5]}"
    zero = [n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() == 0]
    assert len(zero) < max(1, len(list(model.parameters())) // 10), f"{name}: all-zero gradients for {zero[:5]}"


@pytest.mark.parametrize("name", ["alexnet_cifar", "zfnet_cifar", "vgg11_cifar", "vgg16_cifar", "vgg19_bn_cifar"])
def test_cifar_forms_start_with_the_signal_at_the_scale_of_the_input(name):
    # He's fan-in init: the features reaching the classifier keep the input's scale (PyTorch's
    # default and torchvision's N(0, 0.01) took them to 0.0001-0.009 of it, and SGD sat at chance)
    torch.manual_seed(0)
    model = create_model(name, num_classes=10).eval()
    with torch.no_grad():
        x = torch.randn(16, 3, 32, 32)
        features = model.forward_head(model.forward_features(x), pre_logits=True)
        logits = model(x)
    assert 0.3 < features.std() < 10, float(features.std())
    assert logits.std() < 5  # the last layer keeps N(0, 0.01): no confident start
    last = model.get_classifier()
    assert float(last.weight.detach().std()) == pytest.approx(0.01, rel=0.1) and not last.bias.any()
