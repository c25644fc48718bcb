"""ResNet: He, Zhang, Ren and Sun, "Deep Residual Learning for Image Recognition" (2015).

A residual block learns ``F(x)`` and outputs ``relu(F(x) + shortcut(x))``; the shortcut is the
identity, or a projection where the shape changes. Two families from the paper live here:

* the ImageNet networks of Table 1 (``resnet18`` ... ``resnet152``): 7x7/2 stem, 3x3/2 max-pool,
  four stages of BasicBlocks (18, 34 layers) or Bottlenecks (50, 101, 152) with projection
  shortcuts where the shape changes (option B, Sec. 3.3). Parameter names are torchvision's, so
  its state_dicts load unchanged. Each has a 32x32 form ``<name>_cifar`` (3x3 stride-1 stem and
  no max-pool, the CIFAR ResNet of kuangliu/pytorch-cifar);
* the CIFAR-10 networks of Sec. 4.2 (``resnet20`` ... ``resnet1202``): 6n+2 layers, three stages
  of n BasicBlocks with 16/32/64 filters and parameter-free identity shortcuts that subsample and
  zero-pad channels (option A), with their plain twins (``plain20`` ...) that drop the shortcuts.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from lenet2vit.registry import TORCHVISION, Count, family

__all__ = ["BasicBlock", "Bottleneck", "ResNet", "ShortcutA", "CifarBasicBlock", "CifarResNet", "cifar_resnet_params"]

PAPER = "Deep Residual Learning for Image Recognition"

# Table 1 of the paper: block type and blocks per stage (conv2_x .. conv5_x).
IMAGENET_LAYERS: dict[str, tuple[str, list[int]]] = {
    "resnet18": ("basic", [2, 2, 2, 2]),
    "resnet34": ("basic", [3, 4, 6, 3]),
    "resnet50": ("bottleneck", [3, 4, 6, 3]),
    "resnet101": ("bottleneck", [3, 4, 23, 3]),
    "resnet152": ("bottleneck", [3, 8, 36, 3]),
}

# Sec. 4.2 of the paper: depth 6n+2 -> n blocks per stage ...
CIFAR_BLOCKS: dict[int, int] = {20: 3, 32: 5, 44: 7, 56: 9, 110: 18, 1202: 200}
# ... and Table 6's parameter counts, rounded as the paper prints them.
TABLE6_PARAMS: dict[int, str] = {20: "0.27M", 32: "0.46M", 44: "0.66M", 56: "0.85M", 110: "1.7M", 1202: "19.4M"}
CIFAR_WIDTHS = (16, 32, 64)  # filters of the three stages, on 32x32, 16x16 and 8x8 maps


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution with padding 1 and no bias (a BatchNorm follows)."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution without bias (a BatchNorm follows)."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


# ---------------------------------------------------------------------------------------------
# ImageNet ResNets (Table 1)
# ---------------------------------------------------------------------------------------------


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a shortcut (Fig. 2 / Fig. 5 left); used by ResNet-18 and -34.

    ``downsample`` is the projection shortcut (1x1 conv + BN, option B) used where the stride
    or the width changes; elsewhere the shortcut is the identity.
    """

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand (x4) with a shortcut (Fig. 5 right); ResNet-50/101/152."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        # Stride on the 3x3 conv (torchvision's "ResNet v1.5"); the paper strides the first 1x1.
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


_BLOCKS: dict[str, type[BasicBlock] | type[Bottleneck]] = {"basic": BasicBlock, "bottleneck": Bottleneck}


def make_stage(
    block: type[BasicBlock] | type[Bottleneck], inplanes: int, planes: int, blocks: int, stride: int = 1
) -> nn.Sequential:
    """One stage: ``blocks`` blocks of width ``planes``, the first with ``stride``.

    Its first block gets a projection shortcut where the shape changes (option B of Sec. 3.3).
    """
    downsample = None
    if stride != 1 or inplanes != planes * block.expansion:
        downsample = nn.Sequential(conv1x1(inplanes, planes * block.expansion, stride), nn.BatchNorm2d(planes * block.expansion))
    layers = [block(inplanes, planes, stride, downsample)]
    layers += [block(planes * block.expansion, planes) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


class ResNet(nn.Module):
    """The ImageNet ResNet of Table 1, or its 32x32 form with ``cifar_stem=True``.

    ``block`` and ``layers`` are one row of :data:`IMAGENET_LAYERS`. The stem is a 7x7/2 conv
    and a 3x3/2 max-pool (224 -> 56); the CIFAR form replaces them with a 3x3 stride-1 conv and
    no pooling (32 -> 32), so the four stages see 32, 16, 8 and 4 pixel maps, as in the usual
    CIFAR ResNet-18 (kuangliu/pytorch-cifar). Only ``conv1``'s shape changes, so ImageNet
    weights without ``conv1`` and ``fc`` still load into the CIFAR form.
    ``zero_init_residual`` starts the last BN of every residual branch at zero, so each block
    begins as the identity (Goyal et al. 2017), as torchvision's option of the same name.
    """

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: list[int],
        num_classes: int = 1000,
        in_chans: int = 3,
        zero_init_residual: bool = False,
        cifar_stem: bool = False,
    ) -> None:
        super().__init__()
        self.inplanes = 64
        if cifar_stem:
            # CIFAR form: 3x3 stride-1 stem, no max-pool (not in the paper; keeps 32x32 detail).
            self.conv1 = nn.Conv2d(in_chans, 64, kernel_size=3, stride=1, padding=1, bias=False)
        else:
            self.conv1 = nn.Conv2d(in_chans, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.Identity() if cifar_stem else nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.num_features = 512 * block.expansion
        self.fc = nn.Linear(self.num_features, num_classes)

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.zeros_(m.bn3.weight)
                elif isinstance(m, BasicBlock):
                    nn.init.zeros_(m.bn2.weight)

    def _make_layer(
        self, block: type[BasicBlock] | type[Bottleneck], planes: int, blocks: int, stride: int = 1
    ) -> nn.Sequential:
        stage = make_stage(block, self.inplanes, planes, blocks, stride)
        self.inplanes = planes * block.expansion
        return stage

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Stem and the four stages: (B, in_chans, H, W) -> (B, 512 * expansion, H/32, W/32)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # (B, 64, H/4, W/4); CIFAR form (B, 64, H, W)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        return self.layer4(x)  # (B, 512 * expansion, H/32, W/32); CIFAR form H/8

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global average pool and the classifier; ``pre_logits`` stops before ``fc``."""
        x = torch.flatten(self.avgpool(x), 1)  # (B, 512 * expansion)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        """The final linear layer."""
        return self.fc

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the final layer with a freshly initialised one of ``num_classes`` outputs."""
        self.fc = nn.Linear(self.num_features, num_classes)


def _resnet(name: str, num_classes: int, in_chans: int, cifar_stem: bool = False, **kwargs) -> ResNet:
    block, layers = IMAGENET_LAYERS[name]
    return ResNet(_BLOCKS[block], layers, num_classes=num_classes, in_chans=in_chans, cifar_stem=cifar_stem, **kwargs)


register = family("ResNet", paper=PAPER, year=2015)
register_sec42 = family("ResNet (CIFAR)", paper=PAPER, year=2015)
# Every conv and pool is padded, so any input size runs (at 32 px layer4 meets a 1x1 map).
ANY_SIZE = 1


@register(input_size=224, params=Count.published(11_689_512, TORCHVISION.format("resnet18")),
          reference=("torchvision", "resnet18"), cifar_form="resnet18_cifar", min_input_size=ANY_SIZE)
def resnet18(num_classes: int = 1000, in_chans: int = 3, **kwargs) -> nn.Module:
    """ResNet-18: BasicBlock x [2, 2, 2, 2], projection shortcuts (torchvision layout)."""
    return _resnet("resnet18", num_classes, in_chans, **kwargs)


@register(input_size=224, params=Count.published(21_797_672, TORCHVISION.format("resnet34")),
          reference=("torchvision", "resnet34"), cifar_form="resnet34_cifar", min_input_size=ANY_SIZE)
def resnet34(num_classes: int = 1000, in_chans: int = 3, **kwargs) -> nn.Module:
    """ResNet-34: BasicBlock x [3, 4, 6, 3], projection shortcuts (torchvision layout)."""
    return _resnet("resnet34", num_classes, in_chans, **kwargs)


@register(input_size=224, params=Count.published(25_557_032, TORCHVISION.format("resnet50")),
          reference=("torchvision", "resnet50"), cifar_form="resnet50_cifar", min_input_size=ANY_SIZE)
def resnet50(num_classes: int = 1000, in_chans: int = 3, **kwargs) -> nn.Module:
    """ResNet-50: Bottleneck x [3, 4, 6, 3], stride on the 3x3 (torchvision v1.5)."""
    return _resnet("resnet50", num_classes, in_chans, **kwargs)


@register(input_size=224, params=Count.published(44_549_160, TORCHVISION.format("resnet101")),
          reference=("torchvision", "resnet101"), cifar_form="resnet101_cifar", min_input_size=ANY_SIZE)
def resnet101(num_classes: int = 1000, in_chans: int = 3, **kwargs) -> nn.Module:
    """ResNet-101: Bottleneck x [3, 4, 23, 3], stride on the 3x3 (torchvision v1.5)."""
    return _resnet("resnet101", num_classes, in_chans, **kwargs)


@register(input_size=224, params=Count.published(60_192_808, TORCHVISION.format("resnet152")),
          reference=("torchvision", "resnet152"), cifar_form="resnet152_cifar", min_input_size=ANY_SIZE)
def resnet152(num_classes: int = 1000, in_chans: int = 3, **kwargs) -> nn.Module:
    """ResNet-152: Bottleneck x [3, 8, 36, 3], stride on the 3x3 (torchvision v1.5)."""
    return _resnet("resnet152", num_classes, in_chans, **kwargs)


# CIFAR forms: the ImageNet count with a 3x3 stem (64x3x3x3 weights instead of 64x3x7x7:
# 7,680 fewer) and a 10-way classifier (F*990 + 990 fewer, F = 512 or 2048 features); the max-pool
# they drop holds no parameters.
def _cifar_count(base: str, features: int) -> Count:
    return Count.derived({"3x3 stem": -64 * 3 * (7 * 7 - 3 * 3),
                          f"fc {features}x1000 -> {features}x10": -(features * 990 + 990)}, base=base)


@register(input_size=32, ref_num_classes=10, params=_cifar_count("resnet18", 512), min_input_size=ANY_SIZE)
def resnet18_cifar(num_classes: int = 10, in_chans: int = 3, **kwargs) -> nn.Module:
    """ResNet-18 for 32x32: 3x3 stride-1 stem, no max-pool (kuangliu/pytorch-cifar)."""
    return _resnet("resnet18", num_classes, in_chans, cifar_stem=True, **kwargs)


@register(input_size=32, ref_num_classes=10, params=_cifar_count("resnet34", 512), min_input_size=ANY_SIZE)
def resnet34_cifar(num_classes: int = 10, in_chans: int = 3, **kwargs) -> nn.Module:
    """ResNet-34 for 32x32: 3x3 stride-1 stem, no max-pool (kuangliu/pytorch-cifar)."""
    return _resnet("resnet34", num_classes, in_chans, cifar_stem=True, **kwargs)


@register(input_size=32, ref_num_classes=10, params=_cifar_count("resnet50", 2048), min_input_size=ANY_SIZE)
def resnet50_cifar(num_classes: int = 10, in_chans: int = 3, **kwargs) -> nn.Module:
    """ResNet-50 for 32x32: 3x3 stride-1 stem, no max-pool (kuangliu/pytorch-cifar)."""
    return _resnet("resnet50", num_classes, in_chans, cifar_stem=True, **kwargs)


@register(input_size=32, ref_num_classes=10, params=_cifar_count("resnet101", 2048), min_input_size=ANY_SIZE)
def resnet101_cifar(num_classes: int = 10, in_chans: int = 3, **kwargs) -> nn.Module:
    """ResNet-101 for 32x32: 3x3 stride-1 stem, no max-pool (kuangliu/pytorch-cifar)."""
    return _resnet("resnet101", num_classes, in_chans, cifar_stem=True, **kwargs)


@register(input_size=32, ref_num_classes=10, params=_cifar_count("resnet152", 2048), min_input_size=ANY_SIZE)
def resnet152_cifar(num_classes: int = 10, in_chans: int = 3, **kwargs) -> nn.Module:
    """ResNet-152 for 32x32: 3x3 stride-1 stem, no max-pool (kuangliu/pytorch-cifar)."""
    return _resnet("resnet152", num_classes, in_chans, cifar_stem=True, **kwargs)


# ---------------------------------------------------------------------------------------------
# CIFAR-10 ResNets and plain nets (Sec. 4.2)
# ---------------------------------------------------------------------------------------------


class ShortcutA(nn.Module):
    """Option A identity shortcut: subsample by ``stride`` and zero-pad the new channels.

    It has no parameters, which is why a CIFAR ResNet has exactly as many as its plain twin.
    The zero channels are appended after the existing ones (the paper does not say where).
    """

    def __init__(self, stride: int, extra_channels: int) -> None:
        super().__init__()
        self.stride, self.extra_channels = stride, extra_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.extra_channels))  # (B, C + extra, H/stride, W/stride)

    def extra_repr(self) -> str:
        return f"stride={self.stride}, extra_channels={self.extra_channels}"


class CifarBasicBlock(nn.Module):
    """Two 3x3 conv-BN layers; ``shortcut=False`` gives the plain net's pair of layers.

    BN right after each convolution and before the ReLU (Sec. 3.4). With a shortcut the output
    is ``relu(F(x) + x)``, where ``x`` goes through :class:`ShortcutA` when the block halves
    the map and doubles the width.
    """

    def __init__(self, inplanes: int, planes: int, stride: int = 1, shortcut: bool = True) -> None:
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module | None = None
        if shortcut:
            changes = stride != 1 or inplanes != planes
            self.shortcut = ShortcutA(stride, planes - inplanes) if changes else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.shortcut is not None:
            out = out + self.shortcut(x)
        return self.relu(out)


class CifarResNet(nn.Module):
    """The CIFAR-10 network of Sec. 4.2: 6n+2 weighted layers, with or without shortcuts.

    A 3x3 conv with 16 filters, then three stages of ``n`` blocks (2n layers each) with 16, 32
    and 64 filters on 32x32, 16x16 and 8x8 maps (the first conv of stages 2 and 3 has stride
    2), global average pooling and a fully connected layer. ``shortcut=True`` adds an option A
    identity shortcut to every pair of layers (3n shortcuts); ``shortcut=False`` is the plain
    counterpart. Both have exactly the same parameters. ``zero_init_residual`` starts each
    block's last BN at zero, as :class:`ResNet`'s option (not in the paper).
    """

    def __init__(
        self, depth: int, num_classes: int = 10, in_chans: int = 3, shortcut: bool = True,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        if (depth - 2) % 6 != 0 or depth < 8:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2 (20, 32, 44, 56, 110, 1202, ...), got {depth}")
        if zero_init_residual and not shortcut:
            raise ValueError("zero_init_residual needs residual blocks; a plain net has no shortcut to pass the signal")
        n = (depth - 2) // 6
        self.depth = depth
        self.conv1 = conv3x3(in_chans, CIFAR_WIDTHS[0])
        self.bn1 = nn.BatchNorm2d(CIFAR_WIDTHS[0])
        self.relu = nn.ReLU(inplace=True)
        inplanes = CIFAR_WIDTHS[0]
        for i, planes in enumerate(CIFAR_WIDTHS):
            blocks = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(CifarBasicBlock(inplanes, planes, stride, shortcut))
                inplanes = planes
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.num_features = CIFAR_WIDTHS[-1]
        self.fc = nn.Linear(self.num_features, num_classes)

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                # He initialisation as in the paper's [13] (Caffe "msra": normal, std sqrt(2 / fan_in)).
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, CifarBasicBlock):
                    nn.init.zeros_(m.bn2.weight)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Stem and three stages: (B, in_chans, 32, 32) -> (B, 64, 8, 8)."""
        x = self.relu(self.bn1(self.conv1(x)))  # (B, 16, 32, 32)
        x = self.layer1(x)  # (B, 16, 32, 32)
        x = self.layer2(x)  # (B, 32, 16, 16)
        return self.layer3(x)  # (B, 64, 8, 8)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global average pool and the classifier; ``pre_logits`` stops before ``fc``."""
        x = torch.flatten(self.avgpool(x), 1)  # (B, 64)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        """The final linear layer."""
        return self.fc

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the final layer with a freshly initialised one of ``num_classes`` outputs."""
        self.fc = nn.Linear(self.num_features, num_classes)


def cifar_resnet_params(depth: int, num_classes: int = 10, in_chans: int = 3) -> int:
    """Parameter count of the Sec. 4.2 network of ``depth`` layers, by formula (shortcuts add none).

    Stem ``9*in_chans*16 + 2*16``; the 2n layers of width ``w`` each have ``9*c_in*w`` weights
    plus ``2w`` BN parameters, where ``c_in`` is ``w`` except for the first conv of stages 2
    and 3 (``w/2``); the classifier has ``64*num_classes + num_classes``.
    """
    return sum(_cifar_param_parts(depth, num_classes, in_chans))


def _cifar_param_parts(depth: int, num_classes: int = 10, in_chans: int = 3) -> list[int]:
    n = (depth - 2) // 6
    parts = [9 * in_chans * 16 + 2 * 16]  # stem
    c_in = 16
    for w in CIFAR_WIDTHS:
        stage = 0
        for _ in range(2 * n):
            stage += 9 * c_in * w + 2 * w
            c_in = w
        parts.append(stage)
    return parts + [64 * num_classes + num_classes]  # fc


def _sec42_count(depth: int, plain: bool = False) -> Count:
    stem, s1, s2, s3, fc = _cifar_param_parts(depth)
    layers = f"{2 * CIFAR_BLOCKS[depth]} 3x3 conv+BN"
    paper = f"the paper's Table 6 rounds ResNet-{depth}'s to {TABLE6_PARAMS[depth]}"
    return Count.derived(
        {"stem": stem, f"stage 1, {layers}": s1, f"stage 2, {layers}": s2, f"stage 3, {layers}": s3, "fc": fc},
        note=(f"ResNet-{depth}'s layers without shortcuts; " if plain else "option A shortcuts hold none; ") + paper,
    )


@register_sec42(input_size=32, ref_num_classes=10, params=_sec42_count(20), min_input_size=ANY_SIZE)
def resnet20(num_classes: int = 10, in_chans: int = 3, **kwargs) -> nn.Module:
    """ResNet-20 (CIFAR-10, Sec. 4.2): n=3, 16/32/64 filters, option A shortcuts."""
    return CifarResNet(20, num_classes, in_chans, shortcut=True, **kwargs)


@register_sec42(input_size=32, ref_num_classes=10, params=_sec42_count(32), min_input_size=ANY_SIZE)
def resnet32(num_classes: int = 10, in_chans: int = 3, **kwargs) -> nn.Module:
    """ResNet-32 (CIFAR-10, Sec. 4.2): n=5, 16/32/64 filters, option A shortcuts."""
    return CifarResNet(32, num_classes, in_chans, shortcut=True, **kwargs)


@register_sec42(input_size=32, ref_num_classes=10, params=_sec42_count(44), min_input_size=ANY_SIZE)
def resnet44(num_classes: int = 10, in_chans: int = 3, **kwargs) -> nn.Module:
    """ResNet-44 (CIFAR-10, Sec. 4.2): n=7, 16/32/64 filters, option A shortcuts."""
    return CifarResNet(44, num_classes, in_chans, shortcut=True, **kwargs)


@register_sec42(input_size=32, ref_num_classes=10, params=_sec42_count(56), min_input_size=ANY_SIZE)
def resnet56(num_classes: int = 10, in_chans: int = 3, **kwargs) -> nn.Module:
    """ResNet-56 (CIFAR-10, Sec. 4.2): n=9, 16/32/64 filters, option A shortcuts."""
    return CifarResNet(56, num_classes, in_chans, shortcut=True, **kwargs)


@register_sec42(input_size=32, ref_num_classes=10, params=_sec42_count(110), min_input_size=ANY_SIZE)
def resnet110(num_classes: int = 10, in_chans: int = 3, **kwargs) -> nn.Module:
    """ResNet-110 (CIFAR-10, Sec. 4.2): n=18, 16/32/64 filters, option A shortcuts."""
    return CifarResNet(110, num_classes, in_chans, shortcut=True, **kwargs)


@register_sec42(input_size=32, ref_num_classes=10, params=_sec42_count(1202), min_input_size=ANY_SIZE)
def resnet1202(num_classes: int = 10, in_chans: int = 3, **kwargs) -> nn.Module:
    """ResNet-1202 (CIFAR-10, Sec. 4.2): n=200, 16/32/64 filters, option A shortcuts."""
    return CifarResNet(1202, num_classes, in_chans, shortcut=True, **kwargs)


@register_sec42(input_size=32, ref_num_classes=10, params=_sec42_count(20, plain=True), min_input_size=ANY_SIZE)
def plain20(num_classes: int = 10, in_chans: int = 3, **kwargs) -> nn.Module:
    """Plain-20 (CIFAR-10, Sec. 4.2): ResNet-20's layers without shortcuts."""
    return CifarResNet(20, num_classes, in_chans, shortcut=False, **kwargs)


@register_sec42(input_size=32, ref_num_classes=10, params=_sec42_count(32, plain=True), min_input_size=ANY_SIZE)
def plain32(num_classes: int = 10, in_chans: int = 3, **kwargs) -> nn.Module:
    """Plain-32 (CIFAR-10, Sec. 4.2): ResNet-32's layers without shortcuts."""
    return CifarResNet(32, num_classes, in_chans, shortcut=False, **kwargs)


@register_sec42(input_size=32, ref_num_classes=10, params=_sec42_count(44, plain=True), min_input_size=ANY_SIZE)
def plain44(num_classes: int = 10, in_chans: int = 3, **kwargs) -> nn.Module:
    """Plain-44 (CIFAR-10, Sec. 4.2): ResNet-44's layers without shortcuts."""
    return CifarResNet(44, num_classes, in_chans, shortcut=False, **kwargs)


@register_sec42(input_size=32, ref_num_classes=10, params=_sec42_count(56, plain=True), min_input_size=ANY_SIZE)
def plain56(num_classes: int = 10, in_chans: int = 3, **kwargs) -> nn.Module:
    """Plain-56 (CIFAR-10, Sec. 4.2): ResNet-56's layers without shortcuts."""
    return CifarResNet(56, num_classes, in_chans, shortcut=False, **kwargs)


@register_sec42(input_size=32, ref_num_classes=10, params=_sec42_count(110, plain=True), min_input_size=ANY_SIZE)
def plain110(num_classes: int = 10, in_chans: int = 3, **kwargs) -> nn.Module:
    """Plain-110 (CIFAR-10, Sec. 4.2): ResNet-110's layers without shortcuts."""
    return CifarResNet(110, num_classes, in_chans, shortcut=False, **kwargs)
