"""MobileNet v1 (Howard et al. 2017) and MobileNet v2 (Sandler et al. 2018).

MobileNet v1 replaces every standard convolution after the stem by a *depthwise-separable*
convolution: a 3x3 depthwise convolution (one filter per channel) followed by a 1x1
pointwise convolution that mixes channels, each followed by batch norm and a ReLU (Fig. 3).
A 3x3 kernel then costs roughly 8-9 times fewer multiply-adds than a full convolution. The
width multiplier alpha thins every layer uniformly (Sec. 4.2).

MobileNet v2 builds on the same depthwise convolution but wraps it in an *inverted residual
with a linear bottleneck* (Fig. 3b, Table 1): a 1x1 convolution expands a thin tensor by a
factor t, the 3x3 depthwise convolution filters it, and a 1x1 convolution projects it back to a
thin tensor **without** a non-linearity (ReLU would destroy information in a low-dimensional
space). The residual connection joins the thin bottlenecks, not the wide expansions.

v1 uses timm's parameter names (``conv_stem``, ``bn1``, ``blocks.<stage>.<layer>.conv_dw``...)
so its ``mobilenetv1_100`` state_dicts load as they are; v2 uses torchvision's
(``features``, ``classifier``).

CIFAR forms (``mobilenet_v1_cifar``, ``mobilenet_v2_cifar``): the ImageNet network reduces a
32x32 image to 1x1 after its stride-2 stem and first stride-2 stage. The usual CIFAR adaptation
sets both strides to 1, so a 32x32 image leaves the last stage as a 4x4 map (total stride 8, as
ResNet's CIFAR form). No weight changes shape, so the parameter count is the ImageNet one with
a 10-way classifier, and ImageNet weights load into the CIFAR form unchanged.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from lenet2vit.layers import ConvNormAct, make_divisible
from lenet2vit.registry import TORCHVISION, Count, family

__all__ = ["MobileNetV1", "DepthwiseSeparableConv", "MobileNetV2", "InvertedResidual"]

_V1_PAPER = "MobileNets: Efficient Convolutional Neural Networks for Mobile Vision Applications"
_V2_PAPER = "MobileNetV2: Inverted Residuals and Linear Bottlenecks"

# MobileNet v1, Table 1: the stem is a full 3x3 conv, stride 2, 32 filters; then thirteen
# depthwise-separable layers, one row each: (output channels, stride of the depthwise conv),
# grouped into stages of equal output resolution (timm's grouping, hence its parameter names).
MOBILENET_V1_STEM = 32
MOBILENET_V1_STAGES: list[list[tuple[int, int]]] = [
    [(64, 1)],
    [(128, 2), (128, 1)],
    [(256, 2), (256, 1)],
    [(512, 2), (512, 1), (512, 1), (512, 1), (512, 1), (512, 1)],
    [(1024, 2), (1024, 1)],  # Table 1 prints "s2" for the last row, a known typo: the 7x7 map keeps its size
]

# MobileNet v2, Table 2: the stem is a full 3x3 conv, stride 2, 32 filters; then bottleneck
# stages, one row each: expansion t, output channels c, repeats n, stride s of the first repeat;
# then a 1x1 conv to 1280 channels, global average pooling and the classifier.
MOBILENET_V2_STEM = 32
MOBILENET_V2_SETTING: list[tuple[int, int, int, int]] = [
    # t, c, n, s
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
]
MOBILENET_V2_LAST = 1280


def _init_weights(model: nn.Module) -> None:
    # torchvision's MobileNetV2 initialisation (the v1 paper gives none; v1 uses it as well).
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


# --------------------------------------------------------------------------------------
# MobileNet v1
# --------------------------------------------------------------------------------------


class DepthwiseSeparableConv(nn.Module):
    """One depthwise-separable layer (Fig. 3 right): 3x3 depthwise conv-BN-ReLU, 1x1 conv-BN-ReLU.

    Names follow timm's ``DepthwiseSeparableConv`` (``conv_dw``, ``bn1``, ``conv_pw``,
    ``bn2``) so its MobileNet v1 weights load unchanged.
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        self.conv_dw = nn.Conv2d(in_ch, in_ch, 3, stride, 1, groups=in_ch, bias=False)
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.act1 = nn.ReLU6(inplace=True)  # ReLU6 as the TF-slim reference and timm; the paper says ReLU
        self.conv_pw = nn.Conv2d(in_ch, out_ch, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.act2 = nn.ReLU6(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.bn1(self.conv_dw(x)))  # filter each channel on its own
        return self.act2(self.bn2(self.conv_pw(x)))  # mix channels


class MobileNetV1(nn.Module):
    """MobileNet v1: a strided 3x3 stem, thirteen depthwise-separable layers, pooling, one FC.

    ``stages`` is a Table-1-style list of stages, each a list of ``(out_channels, stride)``
    rows, built as ``blocks.<stage>.<layer>``. ``width_mult`` is the paper's alpha; channels
    are rounded to multiples of 8 as in the reference code (a no-op for the paper's alphas
    1, 0.75, 0.5 and 0.25).
    """

    def __init__(
        self,
        num_classes: int = 1000,
        in_chans: int = 3,
        width_mult: float = 1.0,
        stages: list[list[tuple[int, int]]] | None = None,
        stem_stride: int = 2,
    ) -> None:
        super().__init__()
        stages = MOBILENET_V1_STAGES if stages is None else stages
        if width_mult <= 0:
            raise ValueError(f"width_mult must be positive, got {width_mult}")
        channels = make_divisible(MOBILENET_V1_STEM * width_mult)
        self.conv_stem = nn.Conv2d(in_chans, channels, 3, stem_stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.act1 = nn.ReLU6(inplace=True)

        blocks: list[nn.Module] = []
        for rows in stages:
            stage: list[nn.Module] = []
            for out_ch, stride in rows:
                out_ch = make_divisible(out_ch * width_mult)
                stage.append(DepthwiseSeparableConv(channels, out_ch, stride))
                channels = out_ch
            blocks.append(nn.Sequential(*stage))
        self.blocks = nn.Sequential(*blocks)

        self.num_features = channels
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(channels, num_classes)  # no dropout: the paper uses little regularisation
        _init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.bn1(self.conv_stem(x)))  # (B, 32a, H/2, W/2)
        return self.blocks(x)  # (B, 1024a, H/32, W/32)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = torch.flatten(self.global_pool(x), 1)  # (B, 1024a)
        return x if pre_logits else self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.classifier

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier by a freshly initialised one with ``num_classes`` outputs."""
        self.classifier = nn.Linear(self.num_features, num_classes)
        nn.init.normal_(self.classifier.weight, 0, 0.01)
        nn.init.zeros_(self.classifier.bias)


# --------------------------------------------------------------------------------------
# MobileNet v2
# --------------------------------------------------------------------------------------


class InvertedResidual(nn.Module):
    """Bottleneck residual block (Table 1): 1x1 expand-ReLU6, 3x3 depthwise-ReLU6, 1x1 linear project.

    The expansion is left out when t = 1. The shortcut is used when the block keeps both the
    resolution and the channel count. Children are numbered as torchvision's ``conv``.
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        hidden = int(round(in_ch * expand_ratio))
        self.use_res_connect = stride == 1 and in_ch == out_ch
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvNormAct(in_ch, hidden, 1, act=nn.ReLU6))  # expand
        layers += [
            ConvNormAct(hidden, hidden, 3, stride, groups=hidden, act=nn.ReLU6),  # depthwise
            nn.Conv2d(hidden, out_ch, 1, bias=False),  # project: linear bottleneck, no activation
            nn.BatchNorm2d(out_ch),
        ]
        self.conv = nn.Sequential(*layers)
        self.out_channels = out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    """MobileNet v2: strided stem, inverted-residual stages from a (t, c, n, s) table, 1x1 head conv.

    ``width_mult`` scales every layer, channels rounded to multiples of 8; as in the paper
    (Sec. 6.1) the last 1280-channel conv is not thinned for multipliers below one.
    """

    def __init__(
        self,
        num_classes: int = 1000,
        in_chans: int = 3,
        width_mult: float = 1.0,
        setting: list[tuple[int, int, int, int]] | None = None,
        stem_stride: int = 2,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        setting = MOBILENET_V2_SETTING if setting is None else setting
        if width_mult <= 0:
            raise ValueError(f"width_mult must be positive, got {width_mult}")
        channels = make_divisible(MOBILENET_V2_STEM * width_mult)
        self.last_channel = make_divisible(MOBILENET_V2_LAST * max(1.0, width_mult))

        features: list[nn.Module] = [ConvNormAct(in_chans, channels, 3, stem_stride, act=nn.ReLU6)]
        for t, c, n, s in setting:
            out_ch = make_divisible(c * width_mult)
            for i in range(n):
                features.append(InvertedResidual(channels, out_ch, s if i == 0 else 1, t))
                channels = out_ch
        features.append(ConvNormAct(channels, self.last_channel, 1, act=nn.ReLU6))
        self.features = nn.Sequential(*features)

        self.num_features = self.last_channel
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout),  # dropout before the classifier: from the reference training code, not Table 2
            nn.Linear(self.last_channel, num_classes),
        )
        _init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)  # (B, 1280, H/32, W/32)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = torch.flatten(self.avgpool(x), 1)  # (B, 1280)
        return x if pre_logits else self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.classifier[1]

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the final linear layer by a freshly initialised one with ``num_classes`` outputs."""
        fc = nn.Linear(self.last_channel, num_classes)
        nn.init.normal_(fc.weight, 0, 0.01)
        nn.init.zeros_(fc.bias)
        self.classifier[1] = fc


# --------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------


register_v1 = family("MobileNet", paper=_V1_PAPER, year=2017)
register_v2 = family("MobileNet", paper=_V2_PAPER, year=2018)


@register_v1(input_size=224, params=Count.published(4_231_976, "timm mobilenetv1_100"),
             reference=("timm", "mobilenetv1_100"), cifar_form="mobilenet_v1_cifar")
def mobilenet_v1(num_classes: int = 1000, in_chans: int = 3, **kwargs) -> nn.Module:
    """MobileNet v1 (1.0, 224): depthwise-separable convolutions."""
    return MobileNetV1(num_classes=num_classes, in_chans=in_chans, **kwargs)


@register_v1(input_size=32, ref_num_classes=10,
             params=Count.derived({"FC 1024x1000 -> 1024x10": -(1024 * 990 + 990)}, base="mobilenet_v1",
                                  note="strides hold no weights"))
def mobilenet_v1_cifar(num_classes: int = 10, in_chans: int = 3, **kwargs) -> nn.Module:
    """MobileNet v1 for 32x32: stride-1 stem and first stride-2 layer at stride 1 (4x4 final map)."""
    stages = [list(rows) for rows in MOBILENET_V1_STAGES]
    stages[1][0] = (128, 1)  # 32x32 input: keep full resolution into the 128-channel stage
    return MobileNetV1(num_classes=num_classes, in_chans=in_chans, stages=stages, stem_stride=1, **kwargs)


@register_v2(input_size=224,
             params=Count.published(3_504_872, TORCHVISION.format("mobilenet_v2")),
             reference=("torchvision", "mobilenet_v2"), cifar_form="mobilenet_v2_cifar")
def mobilenet_v2(num_classes: int = 1000, in_chans: int = 3, **kwargs) -> nn.Module:
    """MobileNet v2 (1.0, 224): inverted residuals with linear bottlenecks."""
    return MobileNetV2(num_classes=num_classes, in_chans=in_chans, **kwargs)


@register_v2(input_size=32, ref_num_classes=10,
             params=Count.derived({"FC 1280x1000 -> 1280x10": -(1280 * 990 + 990)}, base="mobilenet_v2",
                                  note="strides hold no weights"))
def mobilenet_v2_cifar(num_classes: int = 10, in_chans: int = 3, **kwargs) -> nn.Module:
    """MobileNet v2 for 32x32: stride-1 stem and 24-channel stage at stride 1 (4x4 final map)."""
    setting = list(MOBILENET_V2_SETTING)
    t, c, n, _ = setting[1]
    setting[1] = (t, c, n, 1)  # 32x32 input: keep full resolution through the 24-channel stage
    return MobileNetV2(num_classes=num_classes, in_chans=in_chans, setting=setting, stem_stride=1, **kwargs)
