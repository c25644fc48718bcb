"""AlexNet (Krizhevsky, Sutskever & Hinton 2012) and ZFNet (Zeiler & Fergus 2013).

Three ImageNet networks share one class and differ only in their layer table:

* ``alexnet``: torchvision's single-tower AlexNet (64-192-384-256-256 filters, the
  one-column net of Krizhevsky's 2014 "One weird trick" note), same parameter names, so
  torchvision's ImageNet weights load unchanged.
* ``alexnet_paper``: the 2012 paper's network (Sec. 3, Fig. 2): 96-256-384-384-256 filters,
  11x11/4 conv1 on 227x227 crops, conv2/4/5 split into two groups (the two-GPU towers; conv3
  and the FC layers see both), local response normalisation after the ReLUs of conv1 and
  conv2, overlapping 3x3/2 max-pooling, FC 4096-4096 with dropout 0.5 on both.
* ``zfnet``: Zeiler & Fergus' revision (Sec. 4.1, Fig. 3): conv1 7x7 stride 2 and conv2 stride 2
  instead of 11x11/4 and stride 1, and dense conv3-5 (one GPU, no tower split).

Each has a CIFAR form that keeps every layer width and the classifier but shrinks the stem
so a 32x32 image keeps its detail: conv1 at stride 1 with a 5x5 (AlexNet) or 3x3 (ZFNet)
kernel, conv2 at stride 1, the three 3x3/2 max-pools kept. A 32x32 image then gives maps of
32 -> 15 -> 7 -> 3, so all three CIFAR forms end in a 3x3x256 map (2,304 features) and differ
only in the layers the papers changed. ``alexnet_cifar`` and ``zfnet_cifar`` start from He's
fan-in initialisation (``AlexNet.__init__`` says why): they are for training from scratch on
small images, where the ImageNet forms' init left SGD at chance. ``alexnet_paper_cifar``
keeps the paper's init, biases of 1 included.

Parameter counts (weights + biases): ``alexnet`` states torchvision's published figure; the
paper's form and ZFNet sum their layers from the papers' numbers, written in their registrations
apart from :data:`SPECS` (so a slip in either shows); each CIFAR form is its ImageNet form's count
with the layers it changes.
In a grouped layer each output filter sees half of the input channels (e.g. conv2 of
``alexnet_paper`` sees 48 = 96/2 of conv1's maps).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.nn as nn

from lenet2vit.layers import LocalResponseNorm, he_init_
from lenet2vit.registry import TORCHVISION, Count, family

__all__ = [
    "AlexNet",
    "ConvSpec",
    "AlexNetSpec",
    "SPECS",
    "alexnet",
    "alexnet_cifar",
    "alexnet_paper",
    "alexnet_paper_cifar",
    "zfnet",
    "zfnet_cifar",
]

PAPER_ALEXNET = "ImageNet Classification with Deep Convolutional Neural Networks"
PAPER_ZFNET = "Visualizing and Understanding Convolutional Networks"


class ConvSpec(NamedTuple):
    """One row of a layer table: a conv + ReLU, then optionally LRN and a 3x3/2 max-pool."""

    out_channels: int
    kernel_size: int
    stride: int
    padding: int
    groups: int = 1  # 2 = the 2012 paper's two-GPU split
    lrn: bool = False  # local response normalisation after the ReLU
    pool: bool = False  # overlapping 3x3 stride-2 max-pool at the end
    init_bias: float = 0.0  # paper initialisation (ignored where PyTorch's default init is kept)


class AlexNetSpec(NamedTuple):
    """A whole network: its conv table and how the classifier and initialisation look."""

    convs: tuple[ConvSpec, ...]
    pool_size: int  # side of the last feature map at the paper's input (adaptive pool target)
    paper_classifier: bool  # True: dropout on fc6/fc7 outputs (paper); False: torchvision's order
    ceil_mode: bool = False  # max-pool output size rounding
    init_std: float | None = None  # N(0, std) weights as in the paper; None: he_init or PyTorch's default
    he_init: bool = False  # He (fan-in) init of every layer but the last (the CIFAR forms); see AlexNet
    fc_bias: float = 0.0  # initial bias of the hidden FC layers (paper init only)
    hidden: int = 4096


#                   out   k  s  p  groups lrn    pool   init_bias
SPECS: dict[str, AlexNetSpec] = {
    # torchvision's single-tower net; torchvision keeps PyTorch's default init.
    "alexnet": AlexNetSpec(
        convs=(
            ConvSpec(64, 11, 4, 2, 1, False, True),  # 224 -> 55 -> pool 27
            ConvSpec(192, 5, 1, 2, 1, False, True),  # 27 -> pool 13
            ConvSpec(384, 3, 1, 1, 1, False, False),
            ConvSpec(256, 3, 1, 1, 1, False, False),
            ConvSpec(256, 3, 1, 1, 1, False, True),  # 13 -> pool 6
        ),
        pool_size=6,
        paper_classifier=False,
    ),
    "alexnet_cifar": AlexNetSpec(
        convs=(
            ConvSpec(64, 5, 1, 2, 1, False, True),  # 5x5 stride 1 instead of 11x11/4: 32 -> pool 15
            ConvSpec(192, 5, 1, 2, 1, False, True),  # 15 -> pool 7
            ConvSpec(384, 3, 1, 1, 1, False, False),
            ConvSpec(256, 3, 1, 1, 1, False, False),
            ConvSpec(256, 3, 1, 1, 1, False, True),  # 7 -> pool 3
        ),
        pool_size=3,
        paper_classifier=False,
        he_init=True,
    ),
    # Sec. 5: weights N(0, 0.01); biases 1 in conv2, conv4, conv5 and the hidden FC layers, else 0.
    "alexnet_paper": AlexNetSpec(
        convs=(
            ConvSpec(96, 11, 4, 0, 1, True, True, 0.0),  # 227 -> 55 -> pool 27
            ConvSpec(256, 5, 1, 2, 2, True, True, 1.0),  # 27 -> pool 13
            ConvSpec(384, 3, 1, 1, 1, False, False, 0.0),  # sees both towers
            ConvSpec(384, 3, 1, 1, 2, False, False, 1.0),
            ConvSpec(256, 3, 1, 1, 2, False, True, 1.0),  # 13 -> pool 6
        ),
        pool_size=6,
        paper_classifier=True,
        init_std=0.01,
        fc_bias=1.0,
    ),
    "alexnet_paper_cifar": AlexNetSpec(
        convs=(
            ConvSpec(96, 5, 1, 2, 1, True, True, 0.0),  # 5x5 stride 1 instead of 11x11/4: 32 -> pool 15
            ConvSpec(256, 5, 1, 2, 2, True, True, 1.0),  # 15 -> pool 7
            ConvSpec(384, 3, 1, 1, 1, False, False, 0.0),
            ConvSpec(384, 3, 1, 1, 2, False, False, 1.0),
            ConvSpec(256, 3, 1, 1, 2, False, True, 1.0),  # 7 -> pool 3
        ),
        pool_size=3,
        paper_classifier=True,
        init_std=0.01,
        fc_bias=1.0,
    ),
    # Sec. 3: weights 1e-2 (read as N(0, 0.01)), biases 0. Paddings are not given in the paper;
    # these, with ceil-mode pooling (as in Caffe), reproduce Fig. 3's 110-55-26-13-13-13-6 maps.
    "zfnet": AlexNetSpec(
        convs=(
            ConvSpec(96, 7, 2, 1, 1, True, True),  # 224 -> 110 -> pool 55
            ConvSpec(256, 5, 2, 0, 1, True, True),  # 55 -> 26 -> pool 13
            ConvSpec(384, 3, 1, 1, 1, False, False),  # dense: one GPU, no tower split
            ConvSpec(384, 3, 1, 1, 1, False, False),
            ConvSpec(256, 3, 1, 1, 1, False, True),  # 13 -> pool 6
        ),
        pool_size=6,
        paper_classifier=True,
        ceil_mode=True,
        init_std=0.01,
    ),
    "zfnet_cifar": AlexNetSpec(
        convs=(
            ConvSpec(96, 3, 1, 1, 1, True, True),  # 3x3 stride 1 instead of 7x7/2: 32 -> pool 15
            ConvSpec(256, 5, 1, 2, 1, True, True),  # stride 1 instead of 2: 15 -> pool 7
            ConvSpec(384, 3, 1, 1, 1, False, False),
            ConvSpec(384, 3, 1, 1, 1, False, False),
            ConvSpec(256, 3, 1, 1, 1, False, True),  # 7 -> pool 3
        ),
        pool_size=3,
        paper_classifier=True,
        ceil_mode=False,  # floor-mode pools: the same 3x3x256 map as the AlexNet CIFAR forms
        he_init=True,
    ),
}


class AlexNet(nn.Module):
    """AlexNet-style network built from an :class:`AlexNetSpec` layer table.

    ``features`` is conv -> ReLU [-> LRN] [-> max-pool] per table row, ``avgpool`` an adaptive
    average pool to the map size the paper's input gives (the identity there; it lets other
    input sizes through, as in torchvision), ``classifier`` the three FC layers. With
    torchvision's table the module indices equal torchvision's ``AlexNet``.
    """

    def __init__(self, spec: AlexNetSpec, num_classes: int = 1000, in_chans: int = 3, dropout: float = 0.5) -> None:
        super().__init__()
        self.spec = spec
        layers: list[nn.Module] = []
        c_in = in_chans
        for row in spec.convs:
            layers += [nn.Conv2d(c_in, row.out_channels, row.kernel_size, row.stride, row.padding, groups=row.groups)]
            layers += [nn.ReLU(inplace=True)]
            if row.lrn:
                layers += [LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0)]  # paper Sec. 3.3 constants
            if row.pool:
                layers += [nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=spec.ceil_mode)]
            c_in = row.out_channels
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((spec.pool_size, spec.pool_size))
        self.num_features = c_in * spec.pool_size**2
        h = spec.hidden
        if spec.paper_classifier:
            # Sec. 4.2: dropout on the outputs of the first two FC layers
            head: list[nn.Module] = [
                nn.Linear(self.num_features, h),
                nn.ReLU(inplace=True),
                nn.Dropout(p=dropout),
                nn.Linear(h, h),
                nn.ReLU(inplace=True),
                nn.Dropout(p=dropout),
                nn.Linear(h, num_classes),
            ]
        else:
            # torchvision's order: dropout on the inputs of fc6 and fc7
            head = [
                nn.Dropout(p=dropout),
                nn.Linear(self.num_features, h),
                nn.ReLU(inplace=True),
                nn.Dropout(p=dropout),
                nn.Linear(h, h),
                nn.ReLU(inplace=True),
                nn.Linear(h, num_classes),
            ]
        self.classifier = nn.Sequential(*head)
        if spec.init_std is not None:
            self._init_paper()
        elif spec.he_init:
            # The CIFAR forms train from scratch on short recipes. PyTorch's default init scales
            # each ReLU layer's output by about 0.4: on N(0, 1) images alexnet_cifar's 4096
            # features began with a std of 0.009 (zfnet_cifar's, under N(0, 0.01), 0.0001), and
            # under SGD the net sat at the uniform prediction (loss 2.303) through 2 epochs of
            # `fast` on the digits. He's fan-in init keeps the scale (std 3.1 and 1.1).
            he_init_(self)

    def _init_paper(self) -> None:
        convs = [m for m in self.features if isinstance(m, nn.Conv2d)]
        for conv, row in zip(convs, self.spec.convs):
            nn.init.normal_(conv.weight, 0.0, self.spec.init_std)
            nn.init.constant_(conv.bias, row.init_bias)
        fcs = [m for m in self.classifier if isinstance(m, nn.Linear)]
        for fc in fcs:
            nn.init.normal_(fc.weight, 0.0, self.spec.init_std)
            nn.init.constant_(fc.bias, self.spec.fc_bias if fc is not fcs[-1] else 0.0)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)  # (B, 256, 6, 6) at the paper's input, (B, 256, 3, 3) for CIFAR forms

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = torch.flatten(self.avgpool(x), 1)  # (B, 256 * pool_size**2)
        if pre_logits:
            return self.classifier[:-1](x)  # (B, 4096)
        return self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.classifier[-1]

    def reset_classifier(self, num_classes: int) -> None:
        fc = nn.Linear(self.spec.hidden, num_classes)
        if self.spec.init_std is not None or self.spec.he_init:
            nn.init.normal_(fc.weight, 0.0, self.spec.init_std or 0.01)
            nn.init.zeros_(fc.bias)
        self.classifier[-1] = fc


register_alexnet = family("AlexNet", paper=PAPER_ALEXNET, year=2012)
register_zfnet = family("ZFNet", paper=PAPER_ZFNET, year=2013)


def _layers(convs: dict[str, tuple[int, int, int, int]], fc6_in: int, classes: int = 1000) -> dict[str, int]:
    """Weights + biases of each layer from the papers' numbers: conv rows are (filters, input
    channels each filter sees, kernel, groups); fc6-fc8 take fc6_in features to 4096-4096-classes."""
    out = {f"{name} {f}x{c}x{k}x{k}" + (f", {g} groups" if g > 1 else ""): f * c * k * k + f
           for name, (f, c, k, g) in convs.items()}
    return out | {f"fc6 {fc6_in}x4096": fc6_in * 4096 + 4096, "fc7 4096x4096": 4096 * 4096 + 4096,
                  f"fc8 4096x{classes}": 4096 * classes + classes}


def _cifar_count(base: str, conv1_filters: int, kernel: int, cifar_kernel: int) -> Count:
    """A CIFAR form's count from its ImageNet form's: a smaller conv1 kernel, a 3x3x256 map into
    fc6 instead of 6x6x256, and a 10-way fc8."""
    return Count.derived({
        f"conv1 {kernel}x{kernel} -> {cifar_kernel}x{cifar_kernel}": -conv1_filters * 3 * (kernel**2 - cifar_kernel**2),
        "fc6 from 3x3x256 instead of 6x6x256": -(6 * 6 - 3 * 3) * 256 * 4096,
        "fc8 4096x1000 -> 4096x10": -(4096 * 990 + 990),
    }, base=base)


@register_alexnet(
    input_size=224,
    params=Count.published(61_100_840, TORCHVISION.format("alexnet")),
    reference=("torchvision", "alexnet"),
    cifar_form="alexnet_cifar",
    min_input_size=63,
)
def alexnet(num_classes: int = 1000, in_chans: int = 3, **kwargs: Any) -> AlexNet:
    """AlexNet, torchvision's single-tower form (64-192-384-256-256 filters, no LRN)."""
    return AlexNet(SPECS["alexnet"], num_classes=num_classes, in_chans=in_chans, **kwargs)


@register_alexnet(
    input_size=32,
    params=_cifar_count("alexnet", 64, 11, 5),
    min_input_size=15,
    ref_num_classes=10,
)
def alexnet_cifar(num_classes: int = 10, in_chans: int = 3, **kwargs: Any) -> AlexNet:
    """AlexNet (torchvision widths) for 32x32: 5x5 stride-1 conv1, 3x3x256 final map."""
    return AlexNet(SPECS["alexnet_cifar"], num_classes=num_classes, in_chans=in_chans, **kwargs)


@register_alexnet(
    input_size=227,
    params=Count.derived(_layers({"conv1": (96, 3, 11, 1), "conv2": (256, 48, 5, 2), "conv3": (384, 256, 3, 1),
                                 "conv4": (384, 192, 3, 2), "conv5": (256, 192, 3, 2)}, 6 * 6 * 256),
                        note="paper Sec. 3 / Fig. 2 with two-tower grouping"),
    reference=None,
    cifar_form="alexnet_paper_cifar",
    min_input_size=67,
)
def alexnet_paper(num_classes: int = 1000, in_chans: int = 3, **kwargs: Any) -> AlexNet:
    """AlexNet as in the 2012 paper: 96-256-384-384-256, two-GPU groups, LRN, 227px."""
    return AlexNet(SPECS["alexnet_paper"], num_classes=num_classes, in_chans=in_chans, **kwargs)


@register_alexnet(
    input_size=32,
    params=_cifar_count("alexnet_paper", 96, 11, 5),
    min_input_size=15,
    ref_num_classes=10,
)
def alexnet_paper_cifar(num_classes: int = 10, in_chans: int = 3, **kwargs: Any) -> AlexNet:
    """AlexNet (2012 paper: groups, LRN) for 32x32: 5x5 stride-1 conv1, 3x3x256 final map."""
    return AlexNet(SPECS["alexnet_paper_cifar"], num_classes=num_classes, in_chans=in_chans, **kwargs)


@register_zfnet(
    input_size=224,
    params=Count.derived(_layers({"conv1": (96, 3, 7, 1), "conv2": (256, 96, 5, 1), "conv3": (384, 256, 3, 1),
                                 "conv4": (384, 384, 3, 1), "conv5": (256, 384, 3, 1)}, 6 * 6 * 256),
                        note="paper Sec. 4.1 / Fig. 3"),
    reference=None,
    cifar_form="zfnet_cifar",
    min_input_size=47,
)
def zfnet(num_classes: int = 1000, in_chans: int = 3, **kwargs: Any) -> AlexNet:
    """ZFNet (2013): AlexNet with a 7x7/2 conv1, stride-2 conv2 and dense conv3-5."""
    return AlexNet(SPECS["zfnet"], num_classes=num_classes, in_chans=in_chans, **kwargs)


@register_zfnet(
    input_size=32,
    params=_cifar_count("zfnet", 96, 7, 3),
    min_input_size=15,
    ref_num_classes=10,
)
def zfnet_cifar(num_classes: int = 10, in_chans: int = 3, **kwargs: Any) -> AlexNet:
    """ZFNet for 32x32: 3x3 stride-1 conv1, stride-1 conv2, 3x3x256 final map."""
    return AlexNet(SPECS["zfnet_cifar"], num_classes=num_classes, in_chans=in_chans, **kwargs)
