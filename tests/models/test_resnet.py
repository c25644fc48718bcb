"""ResNet: torchvision equivalence, the CIFAR forms, and the paper's CIFAR-10 nets and plain twins."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torchvision

from lenet2vit import create_model, load_weights, model_info
from lenet2vit.models.resnet import (
    CIFAR_BLOCKS,
    BasicBlock,
    Bottleneck,
    CifarBasicBlock,
    CifarResNet,
    ShortcutA,
    cifar_resnet_params,
)

IMAGENET = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"]

# Table 6 of the paper: rounded parameter counts of the CIFAR-10 networks.
PAPER_TABLE6 = {20: "0.27M", 32: "0.46M", 44: "0.66M", 56: "0.85M", 110: "1.7M", 1202: "19.4M"}


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _meta(name: str, **kwargs) -> nn.Module:
    with torch.device("meta"):
        return create_model(name, **kwargs)


@pytest.mark.parametrize("name", IMAGENET)
def test_matches_torchvision(name, tmp_path):
    torch.manual_seed(0)
    theirs = getattr(torchvision.models, name)().eval()
    path = tmp_path / f"{name}.pth"
    torch.save(theirs.state_dict(), path)
    ours = create_model(name)
    load_weights(ours, path, source="torchvision")
    ours.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(ours(x), theirs(x), atol=1e-5, rtol=1e-4)
    assert model_info(name).reference == ("torchvision", name)


def test_bottleneck_strides_on_the_3x3_conv():
    block = create_model("resnet50").layer2[0]
    assert isinstance(block, Bottleneck)
    assert block.conv1.stride == (1, 1) and block.conv2.stride == (2, 2)
    assert block.downsample[0].kernel_size == (1, 1) and block.downsample[0].stride == (2, 2)  # option B


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_zero_init_residual_makes_blocks_start_as_identity(name):
    torch.manual_seed(0)
    model = create_model(name, zero_init_residual=True).eval()
    blocks = [m for m in model.modules() if isinstance(m, (BasicBlock, Bottleneck))]
    last_bns = [m.bn3 if isinstance(m, Bottleneck) else m.bn2 for m in blocks]
    assert last_bns and all(torch.all(bn.weight == 0) for bn in last_bns)
    block = model.layer1[1]  # no downsample: output = relu(0 + x)
    x = torch.randn(2, block.conv1.in_channels, 8, 8)
    with torch.no_grad():
        assert torch.equal(block(x), torch.relu(x))
    default = create_model(name)
    assert all(torch.all(m.bn2.weight == 1) for m in default.modules() if isinstance(m, BasicBlock | Bottleneck))


def test_paper_cifar_net_zero_init_residual_and_its_plain_twin_refuses_it():
    from lenet2vit.models.resnet import CifarBasicBlock

    model = create_model("resnet20", zero_init_residual=True).eval()
    blocks = [m for m in model.modules() if isinstance(m, CifarBasicBlock)]
    assert len(blocks) == 9 and all(torch.all(b.bn2.weight == 0) for b in blocks)
    x = torch.randn(2, 16, 8, 8).relu()
    with torch.no_grad():
        assert torch.equal(model.layer1[0](x), x)  # relu(0 + x) for x >= 0: the block is the identity
    assert all(torch.all(b.bn2.weight == 1) for b in create_model("resnet20").modules() if isinstance(b, CifarBasicBlock))
    with pytest.raises(ValueError, match="plain net has no shortcut"):
        create_model("plain20", zero_init_residual=True)


@pytest.mark.parametrize("name, features", [("resnet18", 512), ("resnet50", 2048)])
def test_feature_map_sizes_imagenet_and_cifar_forms(name, features):
    with torch.device("meta"):
        assert _meta(name).forward_features(torch.empty(2, 3, 224, 224)).shape == (2, features, 7, 7)
        cifar = _meta(f"{name}_cifar")
        assert cifar.forward_features(torch.empty(2, 3, 32, 32)).shape == (2, features, 4, 4)
        assert cifar.forward_head(torch.empty(2, features, 4, 4), pre_logits=True).shape == (2, features)
    assert isinstance(cifar.maxpool, nn.Identity) and cifar.conv1.kernel_size == (3, 3) and cifar.conv1.stride == (1, 1)
    assert model_info(name).cifar_form == f"{name}_cifar"


@pytest.mark.parametrize("name", IMAGENET)
def test_cifar_form_count_derivation(name):
    full, cifar = _meta(name), _meta(f"{name}_cifar")
    f = full.fc.in_features
    stem = 64 * 3 * (7 * 7 - 3 * 3)
    fc = (f * 1000 + 1000) - (f * 10 + 10)
    assert _count(cifar) == _count(full) - stem - fc == model_info(f"{name}_cifar").ref_params
    # same parameter names, so ImageNet weights without stem and classifier fit the CIFAR form
    assert list(full.state_dict()) == list(cifar.state_dict())


def test_cifar_form_loads_imagenet_weights_without_stem_and_fc(tmp_path):
    torch.manual_seed(0)
    state = torchvision.models.resnet18().state_dict()
    body = {k: v for k, v in state.items() if not k.startswith(("conv1.", "fc."))}
    model = create_model("resnet18_cifar")
    report = load_weights(model, body, source="torchvision", strict=False)
    assert sorted(report["missing"]) == ["conv1.weight", "fc.bias", "fc.weight"]
    assert torch.equal(model.layer3[1].conv2.weight, state["layer3.1.conv2.weight"])


@pytest.mark.parametrize("depth", sorted(CIFAR_BLOCKS))
def test_paper_cifar_counts_match_formula_and_table6(depth):
    res = _meta(f"resnet{depth}")
    plain = _meta(f"plain{depth}") if depth != 1202 else None  # the paper has no plain-1202
    count = _count(res)
    assert count == cifar_resnet_params(depth) == model_info(f"resnet{depth}").ref_params
    figure = PAPER_TABLE6[depth]
    decimals = len(figure.split(".")[1]) - 1
    assert f"{count / 1e6:.{decimals}f}M" == figure
    if plain is not None:  # option A shortcuts have no parameters: plain twin has the same ones
        assert _count(plain) == count and list(plain.state_dict()) == list(res.state_dict())


@pytest.mark.parametrize("name", ["resnet20", "plain56"])
def test_paper_cifar_net_has_6n_plus_2_layers_and_8x8_output(name):
    model = create_model(name)
    depth = int(name.removeprefix("resnet").removeprefix("plain"))
    weighted = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(weighted) == depth == 6 * CIFAR_BLOCKS[depth] + 2
    widths = [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert sorted(set(widths)) == [16, 32, 64]
    x = torch.randn(2, 3, 32, 32)
    assert model.forward_features(x).shape == (2, 64, 8, 8)
    shortcuts = [m.shortcut for m in model.modules() if isinstance(m, CifarBasicBlock)]
    if name.startswith("plain"):
        assert all(s is None for s in shortcuts)
    else:
        assert len(shortcuts) == 3 * CIFAR_BLOCKS[depth] and sum(isinstance(s, ShortcutA) for s in shortcuts) == 2


def test_option_a_shortcut_subsamples_and_zero_pads():
    x = torch.randn(2, 16, 8, 8)
    y = ShortcutA(stride=2, extra_channels=16)(x)
    assert y.shape == (2, 32, 4, 4)
    assert torch.equal(y[:, :16], x[:, :, ::2, ::2])
    assert torch.all(y[:, 16:] == 0)


@pytest.mark.parametrize("shortcut", [True, False])
def test_cifar_block_with_silent_branch_passes_only_the_shortcut(shortcut):
    torch.manual_seed(0)
    block = CifarBasicBlock(16, 32, stride=2, shortcut=shortcut).eval()
    nn.init.zeros_(block.conv2.weight)  # residual branch F(x) = bn2(0) = 0 in eval mode
    x = torch.randn(2, 16, 8, 8)
    with torch.no_grad():
        out = block(x)
    if shortcut:
        expected = torch.relu(torch.cat([x[:, :, ::2, ::2], torch.zeros(2, 16, 4, 4)], 1))
        assert torch.equal(out, expected)
    else:
        assert torch.all(out == 0)


def test_paper_cifar_net_rejects_depth_not_6n_plus_2():
    with pytest.raises(ValueError, match="6n\\+2"):
        CifarResNet(21)


@pytest.mark.parametrize("name", ["resnet18", "resnet20", "resnet50_cifar"])
def test_reset_classifier(name):
    model = create_model(name).eval()
    old = model.get_classifier()
    model.reset_classifier(3)
    assert model.get_classifier() is not old and model.get_classifier().out_features == 3
    with torch.no_grad():
        assert model(torch.randn(1, 3, 32, 32)).shape == (1, 3)


def test_single_channel_input():
    model = create_model("resnet18_cifar", num_classes=10, in_chans=1).eval()
    assert model.conv1.in_channels == 1
    with torch.no_grad():
        assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
