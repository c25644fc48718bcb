"""EfficientNet B0-B7 (Tan & Le 2019, "EfficientNet: Rethinking Model Scaling for CNNs").

The baseline B0 (Table 1, found by neural architecture search) is a stack of MBConv blocks:
MobileNet v2's inverted residual (1x1 expand, kxk depthwise, 1x1 linear project) with a
squeeze-and-excitation gate on the expanded tensor and the SiLU ("swish") activation.
Residual branches are dropped per sample with stochastic depth whose probability rises
linearly from 0 at the first block to 0.2 at the last.

*Compound scaling* (Sec. 3.3) then grows B0 in width, depth and resolution together: with
alpha = 1.2, beta = 1.1, gamma = 1.15 the depth, width and resolution multipliers are
alpha^phi, beta^phi, gamma^phi. The published B1-B7 round these into the table below; widths
are rounded to multiples of 8 and every stage's repeat count becomes ``ceil(n * depth)``.

Parameter names are torchvision's (``features.<stage>.<block>.block.<i>``, ``classifier``),
so its ``efficientnet_b0`` ... ``efficientnet_b7`` state_dicts load unchanged.

CIFAR form (``efficientnet_b0_cifar``): the stride-2 stem and the first stride-2 stage are set
to stride 1, so a 32x32 image leaves the last stage as a 4x4 map (total stride 8) instead of
1x1. Strides hold no weights: the parameter count is B0's with a 10-way classifier.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from lenet2vit.layers import ConvNormAct, DropPath, SqueezeExcite, make_divisible
from lenet2vit.registry import TORCHVISION, Count, family

__all__ = ["EfficientNet", "MBConv", "B0_STAGES", "COMPOUND_SCALING"]

_PAPER = "EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks"

# Table 1: the B0 baseline. Stage 1 is a 3x3 conv, stride 2, 32 channels; stages 2-8 are MBConv
# stages, one row each; stage 9 is a 1x1 conv to 1280 channels, pooling and the FC layer.
B0_STEM = 32
B0_STAGES: list[tuple[int, int, int, int, int, int]] = [
    # expand ratio, kernel, stride, in channels, out channels, layers
    (1, 3, 1, 32, 16, 1),  # MBConv1, k3x3
    (6, 3, 2, 16, 24, 2),  # MBConv6, k3x3
    (6, 5, 2, 24, 40, 2),  # MBConv6, k5x5
    (6, 3, 2, 40, 80, 3),  # MBConv6, k3x3
    (6, 5, 1, 80, 112, 3),  # MBConv6, k5x5
    (6, 5, 2, 112, 192, 4),  # MBConv6, k5x5
    (6, 3, 1, 192, 320, 1),  # MBConv6, k3x3
]
B0_HEAD = 1280
SE_RATIO = 0.25  # squeeze width = 1/4 of the block's input channels (reference code)

# Compound scaling of B0 (reference code's table): width, depth, resolution, dropout.
COMPOUND_SCALING: dict[str, tuple[float, float, int, float]] = {
    "b0": (1.0, 1.0, 224, 0.2),
    "b1": (1.0, 1.1, 240, 0.2),
    "b2": (1.1, 1.2, 260, 0.3),
    "b3": (1.2, 1.4, 300, 0.3),
    "b4": (1.4, 1.8, 380, 0.4),
    "b5": (1.6, 2.2, 456, 0.4),
    "b6": (1.8, 2.6, 528, 0.5),
    "b7": (2.0, 3.1, 600, 0.5),
}

RESOLUTION = {variant: row[2] for variant, row in COMPOUND_SCALING.items()}  # the scaled input side

# torchvision's B5-B7 weights are ported from TensorFlow and keep its batch-norm constants
# (eps 1e-3, momentum 0.01 in PyTorch's convention); its B0-B4 use PyTorch's defaults.
_TF_BN = {"eps": 1e-3, "momentum": 0.01}
BATCH_NORM: dict[str, dict[str, float]] = {"b5": _TF_BN, "b6": _TF_BN, "b7": _TF_BN}


class MBConv(nn.Module):
    """Mobile inverted bottleneck with squeeze-and-excitation (Fig. 2 of the MnasNet paper).

    1x1 expand-BN-SiLU (left out when the expand ratio is 1), kxk depthwise-BN-SiLU, SE gate,
    1x1 project-BN (linear). With a shortcut the branch passes through stochastic depth first.
    Children are numbered as torchvision's ``block``.
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel: int,
        stride: int,
        expand_ratio: int,
        drop_path: float = 0.0,
        bn: dict[str, float] | None = None,
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        bn = bn or {}
        self.use_res_connect = stride == 1 and in_ch == out_ch
        hidden = make_divisible(in_ch * expand_ratio)
        layers: list[nn.Module] = []
        if hidden != in_ch:
            layers.append(ConvNormAct(in_ch, hidden, 1, act=nn.SiLU, **bn))  # expand
        layers += [
            ConvNormAct(hidden, hidden, kernel, stride, groups=hidden, act=nn.SiLU, **bn),  # depthwise
            SqueezeExcite(hidden, max(1, int(in_ch * SE_RATIO)), act=nn.SiLU),
            ConvNormAct(hidden, out_ch, 1, act=None, **bn),  # project: linear bottleneck
        ]
        self.block = nn.Sequential(*layers)
        self.stochastic_depth = DropPath(drop_path)
        self.out_channels = out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_res_connect:
            return x + self.stochastic_depth(self.block(x))
        return self.block(x)


class EfficientNet(nn.Module):
    """EfficientNet: B0's stages scaled by ``width_mult`` and ``depth_mult`` (compound scaling).

    ``stages`` is a Table-1-style list of (expand, kernel, stride, in, out, layers) rows;
    ``stochastic_depth_prob`` is the drop probability reached at the last block (block i of N
    drops with ``p * i / N``); ``bn_eps``/``bn_momentum`` set every batch norm.
    """

    def __init__(
        self,
        width_mult: float = 1.0,
        depth_mult: float = 1.0,
        dropout: float = 0.2,
        num_classes: int = 1000,
        in_chans: int = 3,
        stochastic_depth_prob: float = 0.2,
        stages: list[tuple[int, int, int, int, int, int]] | None = None,
        stem_stride: int = 2,
        bn_eps: float = 1e-5,
        bn_momentum: float = 0.1,
    ) -> None:
        super().__init__()
        stages = B0_STAGES if stages is None else stages
        bn = {"eps": bn_eps, "momentum": bn_momentum}

        def width(c: int) -> int:
            return make_divisible(c * width_mult)

        def depth(n: int) -> int:
            return int(math.ceil(n * depth_mult))

        features: list[nn.Module] = [ConvNormAct(in_chans, width(B0_STEM), 3, stem_stride, act=nn.SiLU, **bn)]
        total_blocks = sum(depth(row[5]) for row in stages)
        block_id = 0
        for expand, kernel, stride, in_ch, out_ch, n in stages:
            in_ch, out_ch = width(in_ch), width(out_ch)
            stage: list[nn.Module] = []
            for _ in range(depth(n)):
                p = stochastic_depth_prob * block_id / total_blocks  # linear in depth, 0 at the first block
                stage.append(MBConv(in_ch, out_ch, kernel, stride, expand, p, bn))
                in_ch, stride = out_ch, 1  # repeats after the first keep the shape
                block_id += 1
            features.append(nn.Sequential(*stage))
        self.num_features = width(B0_HEAD)
        features.append(ConvNormAct(width(stages[-1][4]), self.num_features, 1, act=nn.SiLU, **bn))
        self.features = nn.Sequential(*features)

        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout), nn.Linear(self.num_features, num_classes))

        # torchvision's initialisation
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                self._init_linear(m)

    @staticmethod
    def _init_linear(fc: nn.Linear) -> None:
        init_range = 1.0 / math.sqrt(fc.out_features)
        nn.init.uniform_(fc.weight, -init_range, init_range)
        nn.init.zeros_(fc.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)  # (B, 1280w, H/32, W/32)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = torch.flatten(self.avgpool(x), 1)  # (B, 1280w)
        return x if pre_logits else self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.classifier[1]

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the final linear layer by a freshly initialised one with ``num_classes`` outputs."""
        fc = nn.Linear(self.num_features, num_classes)
        self._init_linear(fc)
        self.classifier[1] = fc


def _efficientnet(variant: str, num_classes: int, in_chans: int, **kwargs) -> EfficientNet:
    width, depth, _, dropout = COMPOUND_SCALING[variant]
    bn = BATCH_NORM.get(variant, {})
    kwargs.setdefault("dropout", dropout)
    kwargs.setdefault("bn_eps", bn.get("eps", 1e-5))
    kwargs.setdefault("bn_momentum", bn.get("momentum", 0.1))
    return EfficientNet(width, depth, num_classes=num_classes, in_chans=in_chans, **kwargs)


register = family("EfficientNet", paper=_PAPER, year=2019)


@register(input_size=RESOLUTION["b0"], params=Count.published(5_288_548, TORCHVISION.format("efficientnet_b0")),
          reference=("torchvision", "efficientnet_b0"), cifar_form="efficientnet_b0_cifar")
def efficientnet_b0(num_classes: int = 1000, in_chans: int = 3, **kwargs) -> nn.Module:
    """EfficientNet-B0 (224 px): the searched MBConv baseline."""
    return _efficientnet("b0", num_classes, in_chans, **kwargs)


@register(input_size=RESOLUTION["b1"], params=Count.published(7_794_184, TORCHVISION.format("efficientnet_b1")),
          reference=("torchvision", "efficientnet_b1"))
def efficientnet_b1(num_classes: int = 1000, in_chans: int = 3, **kwargs) -> nn.Module:
    """EfficientNet-B1 (240 px): B0 x1.1 deeper."""
    return _efficientnet("b1", num_classes, in_chans, **kwargs)


@register(input_size=RESOLUTION["b2"], params=Count.published(9_109_994, TORCHVISION.format("efficientnet_b2")),
          reference=("torchvision", "efficientnet_b2"))
def efficientnet_b2(num_classes: int = 1000, in_chans: int = 3, **kwargs) -> nn.Module:
    """EfficientNet-B2 (260 px): B0 x1.1 wider, x1.2 deeper."""
    return _efficientnet("b2", num_classes, in_chans, **kwargs)


@register(input_size=RESOLUTION["b3"], params=Count.published(12_233_232, TORCHVISION.format("efficientnet_b3")),
          reference=("torchvision", "efficientnet_b3"))
def efficientnet_b3(num_classes: int = 1000, in_chans: int = 3, **kwargs) -> nn.Module:
    """EfficientNet-B3 (300 px): B0 x1.2 wider, x1.4 deeper."""
    return _efficientnet("b3", num_classes, in_chans, **kwargs)


@register(input_size=RESOLUTION["b4"], params=Count.published(19_341_616, TORCHVISION.format("efficientnet_b4")),
          reference=("torchvision", "efficientnet_b4"))
def efficientnet_b4(num_classes: int = 1000, in_chans: int = 3, **kwargs) -> nn.Module:
    """EfficientNet-B4 (380 px): B0 x1.4 wider, x1.8 deeper."""
    return _efficientnet("b4", num_classes, in_chans, **kwargs)


@register(input_size=RESOLUTION["b5"], params=Count.published(30_389_784, TORCHVISION.format("efficientnet_b5")),
          reference=("torchvision", "efficientnet_b5"))
def efficientnet_b5(num_classes: int = 1000, in_chans: int = 3, **kwargs) -> nn.Module:
    """EfficientNet-B5 (456 px): B0 x1.6 wider, x2.2 deeper."""
    return _efficientnet("b5", num_classes, in_chans, **kwargs)


@register(input_size=RESOLUTION["b6"], params=Count.published(43_040_704, TORCHVISION.format("efficientnet_b6")),
          reference=("torchvision", "efficientnet_b6"))
def efficientnet_b6(num_classes: int = 1000, in_chans: int = 3, **kwargs) -> nn.Module:
    """EfficientNet-B6 (528 px): B0 x1.8 wider, x2.6 deeper."""
    return _efficientnet("b6", num_classes, in_chans, **kwargs)


@register(input_size=RESOLUTION["b7"], params=Count.published(66_347_960, TORCHVISION.format("efficientnet_b7")),
          reference=("torchvision", "efficientnet_b7"))
def efficientnet_b7(num_classes: int = 1000, in_chans: int = 3, **kwargs) -> nn.Module:
    """EfficientNet-B7 (600 px): B0 x2 wider, x3.1 deeper."""
    return _efficientnet("b7", num_classes, in_chans, **kwargs)


@register(input_size=32, ref_num_classes=10,
          params=Count.derived({"FC 1280x1000 -> 1280x10": -(1280 * 990 + 990)}, base="efficientnet_b0",
                               note="strides hold no weights"))
def efficientnet_b0_cifar(num_classes: int = 10, in_chans: int = 3, **kwargs) -> nn.Module:
    """EfficientNet-B0 for 32x32: stride-1 stem and 24-channel stage at stride 1 (4x4 final map)."""
    stages = list(B0_STAGES)
    e, k, _, i, o, n = stages[1]
    stages[1] = (e, k, 1, i, o, n)  # 32x32 input: keep full resolution through the 24-channel stage
    return _efficientnet("b0", num_classes, in_chans, stages=stages, stem_stride=1, **kwargs)
