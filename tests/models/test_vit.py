"""Vision Transformer: equivalence with timm and torchvision, attention recording, FLOPs, sizes."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from lenet2vit import create_model, load_weights, resolve_model_name
from lenet2vit.models.vit import VisionTransformer, resize_pos_embed

timm = pytest.importorskip("timm")
import torchvision  # noqa: E402  (a hard dependency)


def _assert_same_outputs(ours: nn.Module, theirs: nn.Module, x: torch.Tensor) -> None:
    ours.eval()
    theirs.eval()
    with torch.no_grad():
        a, b = ours(x), theirs(x)
    assert a.shape == b.shape
    assert b.abs().max() > 1e-3  # a zero output would make the comparison empty
    assert torch.allclose(a, b, atol=1e-5, rtol=1e-4), f"max abs diff {(a - b).abs().max():.3g}"


def _randomize_torchvision_head(model: nn.Module) -> None:
    # torchvision zero-initialises the head, which would hide every difference before it.
    nn.init.normal_(model.heads.head.weight, std=0.02)
    nn.init.normal_(model.heads.head.bias, std=0.02)


def _softmax_modules(model: VisionTransformer) -> list[nn.Module]:
    return [block.attn.softmax for block in model.blocks]


def _materialized(name: str, **kwargs) -> nn.Module:
    """``create_model`` on the meta device, then real (uninitialised) memory: for loading only."""
    with torch.device("meta"):
        model = create_model(name, **kwargs)
    return model.to_empty(device="cpu")


@pytest.fixture(scope="module")
def timm_tiny(tmp_path_factory):
    """timm's ViT-Ti at 64 px (dynamic input size), its weights file, and ours loaded from it."""
    torch.manual_seed(0)
    theirs = timm.create_model("vit_tiny_patch16_224", img_size=64, dynamic_img_size=True).eval()
    path = tmp_path_factory.mktemp("timm") / "vit_tiny.pth"
    torch.save(theirs.state_dict(), path)
    ours = create_model("vit_ti_16", img_size=64)
    load_weights(ours, path, source="timm")
    return ours.eval(), theirs, path


def test_matches_timm_vit_tiny(timm_tiny):
    ours, theirs, _ = timm_tiny
    _assert_same_outputs(ours, theirs, torch.randn(2, 3, 64, 64))


def test_matches_timm_vit_small(tmp_path):
    torch.manual_seed(0)
    theirs = timm.create_model("vit_small_patch16_224", img_size=64, depth=4)  # 4 of 12 blocks: same layout
    path = tmp_path / "timm.pth"
    torch.save(theirs.state_dict(), path)
    ours = create_model("vit_s_16", img_size=64, depth=4)
    load_weights(ours, path, source="timm")
    _assert_same_outputs(ours, theirs, torch.randn(2, 3, 64, 64))


@pytest.mark.parametrize(
    "name, timm_name", [("vit_ti_16", "vit_tiny_patch16_224"), ("vit_s_16", "vit_small_patch16_224")]
)
def test_timm_state_dict_fits_at_full_size(name, timm_name):
    with torch.device("meta"):
        theirs = timm.create_model(timm_name)
        ours = create_model(name)
    own, sd = ours.state_dict(), ours.convert_state_dict(theirs.state_dict(), "timm")
    assert set(sd) == set(own)
    assert all(sd[k].shape == own[k].shape for k in own)


def test_matches_torchvision_vit_b_16(tmp_path):
    torch.manual_seed(0)
    theirs = torchvision.models.vit_b_16(image_size=64)
    _randomize_torchvision_head(theirs)
    path = tmp_path / "tv.pth"
    torch.save(theirs.state_dict(), path)
    ours = _materialized("vit_b_16", img_size=64)
    load_weights(ours, path, source="torchvision")
    _assert_same_outputs(ours, theirs, torch.randn(1, 3, 64, 64))


def test_matches_torchvision_vit_b_32_and_loads_into_384(tmp_path):
    torch.manual_seed(0)
    theirs = torchvision.models.vit_b_32()  # native 224 px: 7x7 grid
    _randomize_torchvision_head(theirs)
    path = tmp_path / "tv.pth"
    torch.save(theirs.state_dict(), path)
    ours = _materialized("vit_b_32")
    load_weights(ours, path, source="torchvision")
    _assert_same_outputs(ours, theirs, torch.randn(1, 3, 224, 224))

    # 224-trained weights into a 384 model: the 7x7 position grid is resized to 12x12.
    big = _materialized("vit_b_32", img_size=384)
    load_weights(big, path, source="torchvision")
    assert big.pos_embed.shape == (1, 1 + 12 * 12, 768)
    expected = resize_pos_embed(theirs.encoder.pos_embedding.detach(), 12)
    assert torch.equal(big.pos_embed.detach(), expected)
    assert torch.equal(big.cls_token.detach(), theirs.class_token.detach())
    assert torch.equal(big.blocks[5].attn.qkv.weight, ours.blocks[5].attn.qkv.weight)


@pytest.mark.slow
def test_matches_torchvision_vit_l_16():
    torch.manual_seed(0)
    theirs = torchvision.models.vit_l_16(image_size=32)  # 2x2 patches + class token keeps it fast
    _randomize_torchvision_head(theirs)
    ours = _materialized("vit_l_16", img_size=32)
    load_weights(ours, theirs.state_dict(), source="torchvision")  # 1.2 GB: passed in memory, not saved
    _assert_same_outputs(ours, theirs, torch.randn(1, 3, 32, 32))


@pytest.mark.parametrize("name", ["vit_b_16", "vit_b_32", "vit_l_16"])
def test_torchvision_state_dict_fits_at_full_size(name):
    # Names and shapes at the published 224 px size, on the meta device (no memory, no time).
    with torch.device("meta"):
        theirs = getattr(torchvision.models, name)()
        ours = create_model(name)
    converted = ours.convert_state_dict(theirs.state_dict(), "torchvision")
    own = ours.state_dict()
    assert set(converted) == set(own)
    assert all(converted[k].shape == own[k].shape for k in own)


def test_old_torchvision_mlp_names_are_converted():
    with torch.device("meta"):
        theirs = torchvision.models.vit_b_32()
        ours = create_model("vit_b_32")
    renamed = {"mlp.0.": "mlp.linear_1.", "mlp.3.": "mlp.linear_2."}  # names before torchvision 0.13
    sd = {}
    for k, v in theirs.state_dict().items():
        for old, new in renamed.items():
            k = k.replace(old, new)
        sd[k] = v
    assert any("linear_1" in k for k in sd)
    assert set(ours.convert_state_dict(sd, "torchvision")) == set(ours.state_dict())


def test_fused_and_explicit_attention_agree():
    torch.manual_seed(0)
    model = create_model("vit_ti_16", img_size=64, depth=4).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        fused = model(x)
        for block in model.blocks:
            block.attn.fused = False
        explicit = model(x)
    assert torch.allclose(fused, explicit, atol=1e-5, rtol=1e-4)


def test_hook_records_attention_maps_without_changing_outputs():
    torch.manual_seed(0)
    model = create_model("vit_ti_16", img_size=64, depth=4).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        plain = model(x)
    maps: list[torch.Tensor] = []
    handles = [m.register_forward_hook(lambda mod, inp, out: maps.append(out)) for m in _softmax_modules(model)]
    with torch.no_grad():
        recorded = model(x)
    for h in handles:
        h.remove()
    assert len(maps) == 4
    n = 1 + (64 // 16) ** 2
    for a in maps:
        assert a.shape == (2, 3, n, n)  # (B, heads, N, N)
        assert torch.allclose(a.sum(-1), torch.ones(2, 3, n), atol=1e-5)
        assert (a >= 0).all()
    assert torch.allclose(plain, recorded, atol=1e-5, rtol=1e-4)


def test_fused_kernel_runs_only_where_no_hook_listens(monkeypatch):
    calls = []
    sdpa = F.scaled_dot_product_attention

    def counting_sdpa(*args, **kwargs):
        calls.append(1)
        return sdpa(*args, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", counting_sdpa)
    model = create_model("vit_ti_16", img_size=32, depth=3).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        model(x)
        assert len(calls) == 3
        handle = model.blocks[1].attn.softmax.register_forward_pre_hook(lambda mod, inp: None)
        model(x)
        assert len(calls) == 3 + 2
        handle.remove()
        model(x)
        assert len(calls) == 3 + 2 + 3


def test_vit_b_16_macs_match_torchvision_figure():
    # torchvision publishes 17.56 "GFLOPS" for vit_b_16 at 224 px; they are multiply-adds.
    with torch.device("meta"):
        model = create_model("vit_b_16").eval()
        x = torch.randn(1, 3, 224, 224)
        with FlopCounterMode(display=False) as fused:
            model(x)
        for block in model.blocks:
            block.attn.fused = False
        with FlopCounterMode(display=False) as explicit:
            model(x)
    macs = fused.get_total_flops() / 2
    assert abs(macs - 17.56e9) / 17.56e9 < 0.02, f"{macs / 1e9:.3f} GMACs"
    assert fused.get_total_flops() == explicit.get_total_flops()


def test_fused_attention_is_counted_on_cpu():
    # On CPU the fused kernel is another aten op than on CUDA; its matmuls must still count.
    model = create_model("vit_ti_16", img_size=32, depth=2).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad(), FlopCounterMode(display=False) as fused:
        model(x)
    for block in model.blocks:
        block.attn.fused = False
    with torch.no_grad(), FlopCounterMode(display=False) as explicit:
        model(x)
    assert fused.get_total_flops() == explicit.get_total_flops()


@pytest.mark.parametrize("size", [(96, 80), (32, 32)])
def test_other_input_sizes_match_timm_dynamic_img_size(timm_tiny, size):
    ours, theirs, _ = timm_tiny
    _assert_same_outputs(ours, theirs, torch.randn(1, 3, *size))


def test_loading_into_another_grid_equals_resizing_on_the_fly():
    torch.manual_seed(0)
    small = create_model("vit_ti_16", img_size=64, depth=2).eval()
    large = create_model("vit_ti_16", img_size=96, depth=2).eval()
    load_weights(large, small.state_dict(), source="timm")
    assert large.pos_embed.shape == (1, 1 + 6 * 6, 192)
    assert torch.equal(large.pos_embed.detach(), resize_pos_embed(small.pos_embed.detach(), (6, 6)))
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        assert torch.allclose(small(x), large(x), atol=1e-6)


def test_resize_pos_embed():
    torch.manual_seed(0)
    pe = torch.randn(1, 1 + 4 * 4, 8)
    assert resize_pos_embed(pe, 4) is pe
    out = resize_pos_embed(pe, (3, 6))
    assert out.shape == (1, 1 + 18, 8)
    assert torch.equal(out[:, :1], pe[:, :1])  # class token untouched
    constant = torch.cat([torch.zeros(1, 1, 8), torch.full((1, 16, 8), 0.5)], dim=1)
    for grid in [(7, 7), (2, 2), (3, 5)]:  # bicubic keeps a constant field constant, up or down
        assert torch.allclose(resize_pos_embed(constant, grid)[:, 1:], torch.tensor(0.5), atol=1e-6)
    two_prefix = resize_pos_embed(torch.randn(1, 2 + 9, 4), 5, num_prefix_tokens=2)
    assert two_prefix.shape == (1, 2 + 25, 4)
    with pytest.raises(ValueError, match="square"):
        resize_pos_embed(torch.randn(1, 1 + 12, 4), 4)
    assert resize_pos_embed(torch.randn(1, 1 + 12, 4), 4, old_grid=(3, 4)).shape == (1, 17, 4)


def test_input_not_divisible_by_patch_is_a_clear_error():
    model = create_model("vit_ti_16", img_size=32, depth=1)
    with pytest.raises(ValueError, match="not divisible by the patch size 16"):
        model(torch.randn(1, 3, 40, 32))
    with pytest.raises(ValueError, match="multiple of 16"):
        create_model("vit_ti_16", img_size=100)
    with pytest.raises(TypeError, match="unknown ViT option"):
        create_model("vit_ti_16", aux_logits=True)


def test_classifier_api_and_feature_shapes():
    model = create_model("vit_ti_16", num_classes=7, in_chans=1, img_size=32, depth=2)
    x = torch.randn(2, 1, 32, 32)
    feats = model.forward_features(x)
    assert feats.shape == (2, 1 + 4, 192)
    assert model.forward_head(feats, pre_logits=True).shape == (2, 192)
    assert isinstance(model.get_classifier(), nn.Linear) and model.get_classifier().out_features == 7
    model.reset_classifier(3)
    assert model.get_classifier().out_features == 3
    assert model(x).shape == (2, 3)


@pytest.mark.parametrize("name, width, heads", [("vit_ti_16_cifar", 192, 3), ("vit_s_16_cifar", 384, 6)])
def test_cifar_forms_use_4px_patches(name, width, heads):
    base = name.removesuffix("_cifar")
    assert resolve_model_name(base, 32)[0] == name
    with torch.device("meta"):
        model = create_model(name)
        feats = model.forward_features(torch.randn(2, 3, 32, 32))
    assert feats.shape == (2, 1 + 8 * 8, width)
    assert model.blocks[0].attn.heads == heads and len(model.blocks) == 12
    assert model.get_classifier().out_features == 10


def test_cifar_form_trains_one_step():
    torch.manual_seed(0)
    model = create_model("vit_ti_16_cifar", depth=2, dropout=0.1, drop_path=0.1)
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
