"""Checks every registered model, so a newly registered one is tested automatically."""

from __future__ import annotations

import pytest
import torch

from lenet2vit import create_model, list_models, model_info
from lenet2vit.profile import count_params

ALL = list_models("*")


def _small_size(name: str) -> int:
    return model_info(name).min_input_size


def _is_heavy(name: str) -> bool:
    return model_info(name).ref_params > 30_000_000


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
def test_forward_shapes_and_classifier_api(name):
    info = model_info(name)
    size = _small_size(name)
    torch.manual_seed(0)
    for num_classes, in_chans in ((7, 3), (3, 1)) if not _is_heavy(name) else ((7, 1),):
        model = create_model(name, num_classes=num_classes, in_chans=in_chans).eval()
        x = torch.randn(2, in_chans, size, size)
        with torch.no_grad():
            y = model(x)
            feats = model.forward_features(x)
            assert torch.allclose(model.forward_head(feats), y, atol=1e-5)
        assert y.shape == (2, num_classes)
        assert torch.isfinite(y).all()
        assert model.get_classifier() is not None
    model.reset_classifier(4)
    with torch.no_grad():
        assert model(x).shape == (2, 4)
    del info


@pytest.mark.parametrize("name", [n for n in ALL if not _is_heavy(n)])
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
