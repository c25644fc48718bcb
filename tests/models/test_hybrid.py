"""Hybrid ViT: timm's R50+ViT-B/16 equivalence, the CIFAR hybrid, attention recording."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from lenet2vit import create_model, load_weights
from lenet2vit.models.hybrid import HybridEmbed, StdConv2dSame
from lenet2vit.models.vit import Attention, VisionTransformer

timm = pytest.importorskip("timm")


def _materialized(name: str, **kwargs) -> nn.Module:
    """``create_model`` on the meta device, then real (uninitialised) memory: for loading only."""
    with torch.device("meta"):
        model = create_model(name, **kwargs)
    return model.to_empty(device="cpu")


def _assert_same_outputs(ours: nn.Module, theirs: nn.Module, x: torch.Tensor) -> None:
    ours.eval()
    theirs.eval()
    with torch.no_grad():
        a, b = ours(x), theirs(x)
    assert a.shape == b.shape
    assert b.abs().max() > 1e-3
    assert torch.allclose(a, b, atol=1e-5, rtol=1e-4), f"max abs diff {(a - b).abs().max():.3g}"


def test_timm_state_dict_fits_at_full_size():
    with torch.device("meta"):
        theirs = timm.create_model("vit_base_r50_s16_224", num_classes=1000)
        ours = create_model("r50_vit_b_16")
    own, sd = ours.state_dict(), ours.convert_state_dict(theirs.state_dict(), "timm")
    assert set(sd) == set(own)
    assert all(sd[k].shape == own[k].shape for k in own)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters())


@pytest.mark.slow
def test_matches_timm_r50_vit_b_16(tmp_path):
    torch.manual_seed(0)
    theirs = timm.create_model("vit_base_r50_s16_224", num_classes=1000, img_size=64)
    path = tmp_path / "timm.pth"
    torch.save(theirs.state_dict(), path)
    ours = _materialized("r50_vit_b_16", img_size=64)
    load_weights(ours, path, source="timm")
    _assert_same_outputs(ours, theirs, torch.randn(1, 3, 64, 64))


def test_matches_timm_hybrid_at_odd_size():
    # 40 px is no multiple of 16: TF 'SAME' padding (40-20-10-10-5-3) decides the 3x3 grid.
    torch.manual_seed(0)
    theirs = timm.create_model("vit_base_r50_s16_224", num_classes=10, img_size=40, depth=2)  # 2 blocks suffice
    ours = _materialized("r50_vit_b_16", num_classes=10, img_size=40, depth=2)
    assert ours.grid_size == (3, 3)
    load_weights(ours, theirs.state_dict(), source="timm")
    _assert_same_outputs(ours, theirs, torch.randn(2, 3, 40, 40))


def test_grid_size_matches_the_backbone_output():
    cases = [("r50_vit_b_16", 224), ("r50_vit_b_16", 100), ("r50_vit_b_16", 32), ("r18_vit_ti_cifar", 30)]
    for name, img_size in cases:
        with torch.device("meta"):
            model = create_model(name, img_size=img_size, depth=1)
            tokens = model.patch_embed(torch.randn(1, 3, img_size, img_size))
        assert isinstance(model.patch_embed, HybridEmbed)
        assert tuple(tokens.shape[-2:]) == model.grid_size
        reduction = 16 if name.startswith("r50") else 4
        assert model.grid_size == (math.ceil(img_size / reduction),) * 2


def test_weight_standardisation_ignores_filter_scale_and_offset():
    torch.manual_seed(0)
    conv = StdConv2dSame(4, 6, 3, stride=2)
    x = torch.randn(2, 4, 9, 9)
    y = conv(x)
    assert y.shape == (2, 6, 5, 5)  # 'SAME': ceil(9 / 2)
    with torch.no_grad():
        scale = torch.rand(6, 1, 1, 1) + 0.5
        conv.weight.mul_(scale).add_(torch.randn(6, 1, 1, 1))
    assert torch.allclose(conv(x), y, atol=1e-4)


def test_cifar_hybrid_shapes_and_training_step():
    with torch.device("meta"):
        model = create_model("r18_vit_ti_cifar")
        x = torch.randn(4, 3, 32, 32)
        assert model.patch_embed.backbone(x).shape == (4, 256, 8, 8)
        assert model.forward_features(x).shape == (4, 1 + 64, 192)
    assert isinstance(model, VisionTransformer)
    assert len(model.blocks) == 6 and model.num_features == 192

    torch.manual_seed(0)
    model = create_model("r18_vit_ti_cifar")
    x, y = torch.randn(2, 3, 16, 16), torch.randint(0, 10, (2,))  # 4x4 tokens keep the step cheap
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_cifar_hybrid_channels_classes_and_other_sizes():
    model = create_model("r18_vit_ti_cifar", num_classes=5, in_chans=1).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 1, 16, 16)).shape == (1, 5)
        assert model(torch.randn(1, 1, 24, 20)).shape == (1, 5)  # 6x5 tokens, position grid resized
    model.reset_classifier(2)
    assert model.get_classifier().out_features == 2


def test_hybrid_attention_is_recordable():
    torch.manual_seed(0)
    model = create_model("r18_vit_ti_cifar").eval()
    assert all(isinstance(block.attn, Attention) for block in model.blocks)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        plain = model(x)
    maps: list[torch.Tensor] = []
    handles = [b.attn.softmax.register_forward_hook(lambda m, i, o: maps.append(o)) for b in model.blocks]
    with torch.no_grad():
        recorded = model(x)
    for h in handles:
        h.remove()
    assert len(maps) == 6
    for a in maps:
        assert a.shape == (1, 3, 65, 65)  # (B, heads, 1 + 8*8, 1 + 8*8)
        assert torch.allclose(a.sum(-1), torch.ones(1, 3, 65), atol=1e-5)
    assert torch.allclose(plain, recorded, atol=1e-5, rtol=1e-4)


def test_r50_vit_b_16_without_head_matches_timms_published_count():
    # timm builds vit_base_r50_s16_224 headless by default and publishes 97,890,112 parameters.
    with torch.device("meta"):
        model = create_model("r50_vit_b_16")
    head = sum(p.numel() for p in model.get_classifier().parameters())
    assert sum(p.numel() for p in model.parameters()) - head == 97_890_112
