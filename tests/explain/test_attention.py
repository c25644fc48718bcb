"""Attention recording and rollout on small Vision Transformers."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from lenet2vit.explain import (
    ExplainError,
    all_attention,
    attention_maps,
    attention_modules,
    default_gradcam_layer,
    gradcam,
    record_attention,
    rollout,
    rollout_map,
)

import lenet2vit.models.vit as vit  # noqa: E402


def _tiny_vit(depth: int = 3) -> nn.Module:
    torch.manual_seed(0)
    cfg = vit.ViTConfig(width=32, depth=depth, heads=4, mlp_dim=64, patch_size=4, img_size=16)
    return vit.VisionTransformer(cfg, num_classes=5, in_chans=3).eval()


def _no_hooks(model: nn.Module) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_rollout_rows_are_distributions():
    torch.manual_seed(0)
    maps = [torch.softmax(torch.randn(3, 10, 10) * 3, dim=-1) for _ in range(4)]
    r = rollout(maps)
    assert r.shape == (10, 10)
    assert (r >= 0).all()
    torch.testing.assert_close(r.sum(-1), torch.ones(10))


def test_rollout_of_identity_attention_is_identity():
    eye = torch.eye(7).expand(2, 7, 7)
    torch.testing.assert_close(rollout([eye] * 5), torch.eye(7))


def test_rollout_of_one_block_is_half_attention_half_residual():
    a = torch.softmax(torch.randn(2, 5, 5), dim=-1)
    torch.testing.assert_close(rollout([a[None]]), 0.5 * a.mean(0) + 0.5 * torch.eye(5))


def test_rollout_multiplies_later_blocks_on_the_left():
    a1 = torch.softmax(torch.randn(4, 4), -1)
    a2 = torch.softmax(torch.randn(4, 4), -1)
    half = lambda a: 0.5 * a + 0.5 * torch.eye(4)  # noqa: E731
    torch.testing.assert_close(rollout([a1, a2]), half(a2) @ half(a1))


def test_recording_does_not_change_outputs_and_leaves_no_hooks():
    model = _tiny_vit()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        fused = model(x)
        with record_attention(model) as maps:
            recorded = model(x)
    torch.testing.assert_close(recorded, fused, atol=1e-5, rtol=1e-5)
    assert len(maps) == 3 and maps[0].shape == (2, 4, 17, 17)
    torch.testing.assert_close(maps[0].sum(-1), torch.ones(2, 4, 17))
    assert _no_hooks(model)


def test_hooks_are_removed_after_an_error():
    model = _tiny_vit()
    with pytest.raises(ValueError):
        with record_attention(model):
            model(torch.randn(1, 3, 15, 15))  # not divisible by the patch
    assert _no_hooks(model)


def test_attention_maps_and_rollout_map_shapes():
    model = _tiny_vit()
    x = torch.randn(1, 3, 16, 16)
    rows = attention_maps(model, x, block=-1)
    assert rows.shape == (4, 17)
    torch.testing.assert_close(rows.sum(-1), torch.ones(4))
    torch.testing.assert_close(rows, all_attention(model, x)[2][:, 0])
    m = rollout_map(model, x)
    assert m.shape == (4, 4) and (m >= 0).all()
    assert rollout_map(model, x, size=16).shape == (16, 16)
    with pytest.raises(ExplainError, match="block"):
        attention_maps(model, x, block=3)
    assert _no_hooks(model)


def test_softmax_modules_found_generically():
    model = _tiny_vit(depth=2)
    names = [n for n, _ in attention_modules(model)]
    assert names == ["blocks.0.attn.softmax", "blocks.1.attn.softmax"]
    with pytest.raises(ExplainError, match="no attention"):
        rollout_map(nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten()), torch.randn(1, 3, 8, 8))


def test_gradcam_on_vit_tokens():
    model = _tiny_vit()
    x = torch.randn(1, 3, 16, 16)
    assert default_gradcam_layer(model, x) == "blocks.2.norm1"  # the last block's tokens before attention
    cam = gradcam(model, x)
    assert cam.shape == (16, 16) and torch.isfinite(cam).all() and cam.max() > 0
    assert _no_hooks(model)


@pytest.mark.parametrize("name", ["vit_ti_16_cifar", "r18_vit_ti_cifar"])
def test_registered_vit_and_hybrid(name):
    from lenet2vit import create_model

    torch.manual_seed(0)
    model = create_model(name).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        ref = model(x)
    m = rollout_map(model, x)
    assert m.shape == (8, 8)
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref)
    assert _no_hooks(model)
