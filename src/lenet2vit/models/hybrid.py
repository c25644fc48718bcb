"""Hybrid Vision Transformer: a CNN feature map as the patch embedding (Dosovitskiy et al., 2020).

"An Image is Worth 16x16 Words", Sec. 3.1 "Hybrid Architecture": instead of raw image patches
the input sequence is formed from a CNN feature map, with "patches" of 1x1 pixel, i.e. every
feature-map position is one token, projected to D dims (Eq. 1 with E applied to CNN features).
The rest is the plain ViT: this file only builds another ``patch_embed`` for
:class:`~lenet2vit.models.vit.VisionTransformer` (timm's design: one class, two embeddings), so
the attention maps are recorded the same way (hook ``blocks[i].attn.softmax``).

``r50_vit_b_16`` is the paper's R50+ViT-B/16 (Sec. 4.1, option (ii)): BiT's ResNet-50 (Kolesnikov
et al. 2020: weight-standardised convolutions, GroupNorm, TF "SAME" padding) with stage 4 removed
and its 3 blocks moved to stage 3 (3, 4, 9 blocks), output stride 16, so a 224-px image gives a
14x14 grid of 1024-channel features. Parameter names are timm's ``vit_base_r50_s16_224``.

``r18_vit_ti_cifar`` is a small hybrid that trains on CIFAR-10 in minutes: the first three
stages of the CIFAR ResNet-18 turn a 32x32 image into an 8x8x256 map, i.e. 64 tokens for a
6-block ViT-Ti.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F

from lenet2vit.models.resnet import BasicBlock, make_stage
from lenet2vit.models.vit import PAPER, VIT_SIZES, VisionTransformer, ViTConfig, vit_count
from lenet2vit.registry import Count, family

__all__ = [
    "pad_same",
    "StdConv2dSame",
    "MaxPool2dSame",
    "Bottleneck",
    "ResNetV2",
    "BasicBlock",
    "CifarResNetStages",
    "HybridEmbed",
    "r50_vit_b_16",
    "r18_vit_ti_cifar",
]

# ResNet-50 for the hybrid (paper Sec. 4.1, option (ii)): stage 4 removed, its 3 blocks moved to
# stage 3 (6 + 3 = 9). (blocks per stage, output channels per stage; bottleneck width = channels / 4)
R50_STAGES = ((3, 4, 9), (256, 512, 1024))

# The CIFAR hybrid: ResNet-18's CIFAR stem (3x3, stride 1, no max-pool) and stages 1-3.
R18_CIFAR_STAGES = ((2, 2, 2), (64, 128, 256))
R18_VIT_TI_DEPTH = 6  # ViT-Ti width and heads, half its depth: the CNN already mixed the pixels


def pad_same(
    x: torch.Tensor, kernel_size: tuple[int, int], stride: tuple[int, int], value: float = 0.0
) -> torch.Tensor:
    """TensorFlow's 'SAME' padding: output = ceil(input / stride), extra pixel on the bottom/right."""
    pads = []
    for size, k, s in zip(x.shape[:-3:-1], kernel_size[::-1], stride[::-1]):  # width first, as F.pad wants
        total = max((math.ceil(size / s) - 1) * s + k - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads, value=value) if any(pads) else x


class StdConv2dSame(nn.Conv2d):
    """Conv2d with weight standardisation (Qiao et al. 2019) and TF 'SAME' padding, as in BiT.

    Each filter is normalised to zero mean and unit variance before the convolution:
    ``w = (w - mean) / sqrt(var + eps)`` over its fan-in. No bias (a GroupNorm follows).
    """

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, stride: int = 1, eps: float = 1e-8) -> None:
        # eps 1e-8 as timm's vit_base_r50_s16_224, whose weights this model loads.
        super().__init__(in_ch, out_ch, kernel_size, stride, padding=0, bias=False)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        var, mean = torch.var_mean(w, dim=(1, 2, 3), keepdim=True, correction=0)
        w = (w - mean) / torch.sqrt(var + self.eps)
        return F.conv2d(pad_same(x, self.kernel_size, self.stride), w, None, self.stride)


class MaxPool2dSame(nn.MaxPool2d):
    """Max-pooling with TF 'SAME' padding (padded with -inf), as the BiT stem."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, s = (self.kernel_size,) * 2, (self.stride,) * 2
        return F.max_pool2d(pad_same(x, k, s, value=float("-inf")), k, s)


def _gn(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(32, channels, eps=1e-5)  # BiT: GroupNorm with 32 groups instead of BatchNorm


class Bottleneck(nn.Module):
    """ResNet bottleneck 1x1 -> 3x3 -> 1x1 (stride on the 3x3, "v1.5"), post-activation.

    timm's ``resnetv2.Bottleneck`` with StdConv + GroupNorm: the hybrid's backbone keeps the
    original ordering (conv -> norm -> ReLU), not BiT's pre-activation.
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        mid = out_ch // 4
        self.downsample = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(
                OrderedDict(conv=StdConv2dSame(in_ch, out_ch, 1, stride), norm=_gn(out_ch))
            )
        self.conv1 = StdConv2dSame(in_ch, mid, 1)
        self.norm1 = _gn(mid)
        self.conv2 = StdConv2dSame(mid, mid, 3, stride)
        self.norm2 = _gn(mid)
        self.conv3 = StdConv2dSame(mid, out_ch, 1)
        self.norm3 = _gn(out_ch)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        x = self.relu(self.norm1(self.conv1(x)))
        x = self.relu(self.norm2(self.conv2(x)))
        x = self.norm3(self.conv3(x))
        return self.relu(x + shortcut)


class ResNetStage(nn.Module):
    """One stage: ``depth`` bottlenecks, the first one changing width and stride."""

    def __init__(self, in_ch: int, out_ch: int, depth: int, stride: int) -> None:
        super().__init__()
        self.blocks = nn.Sequential(
            *[Bottleneck(in_ch if i == 0 else out_ch, out_ch, stride if i == 0 else 1) for i in range(depth)]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


class ResNetV2(nn.Module):
    """BiT-style ResNet trunk without head: 7x7/2 stem + 3x3/2 max-pool, then bottleneck stages.

    The first stage keeps the stem's stride 4, every later one halves the map, so (3, 4, 9)
    stages give output stride 16. Names follow timm (``stem.conv``, ``stages.i.blocks.j``).
    """

    def __init__(
        self, layers: tuple[int, ...], channels: tuple[int, ...], in_chans: int = 3, stem_width: int = 64
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            OrderedDict(
                conv=StdConv2dSame(in_chans, stem_width, 7, 2),
                norm=_gn(stem_width),
                act=nn.ReLU(inplace=True),
                pool=MaxPool2dSame(3, 2),
            )
        )
        stages, prev = [], stem_width
        for i, (depth, out_ch) in enumerate(zip(layers, channels)):
            stages.append(ResNetStage(prev, out_ch, depth, stride=1 if i == 0 else 2))
            prev = out_ch
        self.stages = nn.Sequential(*stages)
        self.num_features = prev
        self.reduction = 4 * 2 ** (len(layers) - 1)
        for m in self.modules():  # timm's ResNetV2 init
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.GroupNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))  # (B, C, ceil(H/16), ceil(W/16))


class CifarResNetStages(nn.Module):
    """ResNet-18's CIFAR form cut after stage 3: 3x3/1 stem (no max-pool), basic-block stages.

    The stem and stages are ``resnet.py``'s (its :class:`~lenet2vit.models.resnet.BasicBlock`
    and :func:`~lenet2vit.models.resnet.make_stage`), so the names match ``resnet18_cifar``'s.

    BatchNorm as torchvision's ResNet (the paper's hybrids use BiT's GroupNorm + weight
    standardisation, chosen for large-batch transfer; BatchNorm trains faster on CIFAR).
    Output stride 4: a 32x32 image gives an 8x8x256 map.
    """

    def __init__(self, layers: tuple[int, ...], channels: tuple[int, ...], in_chans: int = 3) -> None:
        super().__init__()
        width = channels[0]
        self.conv1 = nn.Conv2d(in_chans, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        prev = width
        for i, (depth, out_ch) in enumerate(zip(layers, channels)):
            self.add_module(f"layer{i + 1}", make_stage(BasicBlock, prev, out_ch, depth, stride=1 if i == 0 else 2))
            prev = out_ch
        self.num_layers = len(layers)
        self.num_features = prev
        self.reduction = 2 ** (len(layers) - 1)
        for m in self.modules():  # torchvision's ResNet init
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))  # (B, 64, H, W)
        for i in range(self.num_layers):
            x = getattr(self, f"layer{i + 1}")(x)
        return x  # (B, 256, H/4, W/4)


class HybridEmbed(nn.Module):
    """CNN backbone + 1x1 convolution: every feature-map position becomes one token (Sec. 3.1).

    ``grid_size`` is the backbone's map at ``img_size`` (``ceil(img_size / reduction)``, exact for
    'SAME' and for 3x3/2 convs with padding 1). Any input size works; the ViT resizes its position
    embeddings when the map differs.
    """

    def __init__(self, backbone: nn.Module, embed_dim: int, img_size: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.proj = nn.Conv2d(backbone.num_features, embed_dim, kernel_size=1)  # the patch size 1 projection E
        side = math.ceil(img_size / backbone.reduction)
        self.grid_size = (side, side)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.backbone(x))  # (B, D, h, w)


def _hybrid(backbone: nn.Module, size: str, num_classes: int, **kwargs) -> VisionTransformer:
    if "patch_size" in kwargs:
        raise TypeError("a hybrid's tokens are the CNN's feature-map positions (patch size 1); drop patch_size")
    # patch_size=1: each feature-map position is one token (Sec. 3.1); the stride lives in the CNN.
    config = ViTConfig.from_size(size, patch_size=1, **kwargs)
    return VisionTransformer(config, num_classes, patch_embed=HybridEmbed(backbone, config.width, config.img_size))


register = family("Hybrid", paper=PAPER, year=2020)


@register(input_size=224,
          params=Count.published(98_659_112, "timm vit_base_r50_s16_224 with num_classes=1000 "
                                             "(timm's default num_classes=0 gives 97,890,112; + head 768*1000+1000)"),
          reference=("timm", "vit_base_r50_s16_224"), min_input_size=32)
def r50_vit_b_16(num_classes: int = 1000, in_chans: int = 3, **kwargs) -> VisionTransformer:
    """R50+ViT-B/16 hybrid: BiT ResNet-50 stages (3, 4, 9), stride 16, into ViT-B (paper Sec. 3.1)."""
    kwargs.setdefault("img_size", 224)
    return _hybrid(ResNetV2(*R50_STAGES, in_chans=in_chans), "B", num_classes, **kwargs)


def _basic_block_params(in_ch: int, out_ch: int) -> int:
    """resnet.py's BasicBlock: two 3x3 conv + BN, and a 1x1 projection + BN where the width changes."""
    convs = 3 * 3 * in_ch * out_ch + 3 * 3 * out_ch * out_ch + 2 * (2 * out_ch)
    return convs + (in_ch * out_ch + 2 * out_ch if in_ch != out_ch else 0)


def _r18_vit_ti_cifar_count(img_size: int) -> Count:
    # The CIFAR ResNet-18 trunk layer by layer, the 1x1 projection E, then ViT-Ti's terms.
    layers, channels = R18_CIFAR_STAGES
    width = VIT_SIZES["Ti"][0]
    embed = {f"ResNet-18 CIFAR stem, 3x3 conv 3 -> {channels[0]} + BN": 3 * 3 * 3 * channels[0] + 2 * channels[0]}
    prev = channels[0]
    for i, (depth, out_ch) in enumerate(zip(layers, channels)):
        embed[f"stage {i + 1}, {depth} basic blocks {prev} -> {out_ch}"] = (
            _basic_block_params(prev, out_ch) + (depth - 1) * _basic_block_params(out_ch, out_ch))
        prev = out_ch
    embed[f"projection 1x1 {prev} -> {width}"] = prev * width + width
    side = math.ceil(img_size / 2 ** (len(layers) - 1))  # output stride 4
    return vit_count("Ti", embed, tokens=1 + side * side, num_classes=10, depth=R18_VIT_TI_DEPTH)


@register(input_size=32, ref_num_classes=10, params=_r18_vit_ti_cifar_count(img_size=32), min_input_size=8)
def r18_vit_ti_cifar(num_classes: int = 10, in_chans: int = 3, **kwargs) -> VisionTransformer:
    """Hybrid for CIFAR: ResNet-18 CIFAR stem + stages 1-3 (8x8x256 at 32 px) -> 6-block ViT-Ti.

    The paper's hybrid idea at CIFAR scale: the CIFAR ResNet-18 (3x3 stride-1 stem, no max-pool)
    up to stage 3 gives output stride 4, so a 32x32 image becomes 64 tokens (plus the class
    token) of width 192 for 6 ViT-Ti blocks (3 heads, MLP 768).
    """
    kwargs.setdefault("img_size", 32)
    backbone = CifarResNetStages(*R18_CIFAR_STAGES, in_chans=in_chans)
    kwargs.setdefault("depth", R18_VIT_TI_DEPTH)
    return _hybrid(backbone, "Ti", num_classes, **kwargs)
