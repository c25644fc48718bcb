"""VGG from "Very Deep Convolutional Networks for Large-Scale Image Recognition" (Simonyan &
Zisserman, 2014).

The six configurations of the paper's Table 1 are rows of :data:`cfgs`: an int is a 3x3 conv
(stride 1, padding 1) with that many filters followed by ReLU, ``(n, 1)`` a 1x1 conv
(configuration C), ``"M"`` a 2x2/2 max-pool and ``"LRN"`` local response normalisation
(configuration A-LRN, AlexNet's constants). Every network ends with FC-4096, FC-4096 and
FC-classes, dropout 0.5 on the first two (Sec. 3.1). Module names equal torchvision's
(``features``, ``avgpool``, ``classifier``), so torchvision's VGG weights load unchanged.

``*_bn`` models add batch normalisation after every conv, as torchvision's ``vgg*_bn`` do;
BN is not in the 2014 paper. There is no ``vgg11_lrn_bn``: BN normalises what LRN did, so the
pair would be redundant and has no reference.

The CIFAR forms (``vgg11_cifar`` ...) keep the conv stack: its five pools take a 32x32 image
to a 1x1x512 map, so the classifier becomes 512-512-classes (same three FC layers and
dropout, same module indices, so :func:`init_from` works on them too) instead of
25088-4096-4096-classes on a 7x7 map tiled from one pixel. The CIFAR forms start from He's
fan-in init, not torchvision's, which shrinks their narrow layers' signal (see ``VGG``).

Parameter counts: torchvision's published figures for the eight configurations it ships; each
registration of the others works its count out from those. LRN holds no parameters (A-LRN has
A's), C is B with a 1x1 conv added at the end of stages 3-5, BN adds a weight and a bias per
conv channel, and a CIFAR form is its ImageNet form with the 512-512-classes head in place
of the 25088-4096-4096-classes one.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Union

import torch
import torch.nn as nn

from lenet2vit.layers import LocalResponseNorm, he_init_
from lenet2vit.registry import TORCHVISION, Count, family

__all__ = [
    "VGG",
    "cfgs",
    "make_layers",
    "init_from",
    "vgg11",
    "vgg11_bn",
    "vgg11_lrn",
    "vgg13",
    "vgg13_bn",
    "vgg16_c",
    "vgg16_c_bn",
    "vgg16",
    "vgg16_bn",
    "vgg19",
    "vgg19_bn",
    "vgg11_cifar",
    "vgg11_bn_cifar",
    "vgg11_lrn_cifar",
    "vgg13_cifar",
    "vgg13_bn_cifar",
    "vgg16_c_cifar",
    "vgg16_c_bn_cifar",
    "vgg16_cifar",
    "vgg16_bn_cifar",
    "vgg19_cifar",
    "vgg19_bn_cifar",
]

PAPER = "Very Deep Convolutional Networks for Large-Scale Image Recognition"

Layer = Union[int, tuple[int, int], str]

# Table 1 of the paper. int: conv3x3-n; (n, 1): conv1x1-n; "M": maxpool; "LRN": local response norm.
cfgs: dict[str, list[Layer]] = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "A-LRN": [64, "LRN", "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "C": [64, 64, "M", 128, 128, "M", 256, 256, (256, 1), "M", 512, 512, (512, 1), "M", 512, 512, (512, 1), "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


def make_layers(cfg: list[Layer], batch_norm: bool = False, in_chans: int = 3) -> nn.Sequential:
    """The conv stack of one configuration, numbered like torchvision's ``make_layers``."""
    layers: list[nn.Module] = []
    c_in = in_chans
    for v in cfg:
        if v == "M":
            layers += [nn.MaxPool2d(kernel_size=2, stride=2)]
        elif v == "LRN":
            layers += [LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0)]  # A-LRN: AlexNet's LRN
        else:
            c_out, k = v if isinstance(v, tuple) else (v, 3)
            conv = nn.Conv2d(c_in, c_out, kernel_size=k, padding=k // 2)
            if batch_norm:
                layers += [conv, nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]  # BN: not in the 2014 paper
            else:
                layers += [conv, nn.ReLU(inplace=True)]
            c_in = c_out
    return nn.Sequential(*layers)


class VGG(nn.Module):
    """A VGG network: conv stack ``features``, adaptive ``avgpool``, three-layer ``classifier``.

    ``pool_size`` is the side of the map the classifier expects (7 for 224x224 ImageNet input,
    1 for the CIFAR forms); the adaptive pool is the identity at that input and lets other
    sizes through, as in torchvision. ``hidden`` is the width of the two hidden FC layers.
    """

    def __init__(
        self,
        features: nn.Sequential,
        num_classes: int = 1000,
        hidden: int = 4096,
        pool_size: int = 7,
        dropout: float = 0.5,
        he_init: bool = False,
    ) -> None:
        super().__init__()
        self.features = features
        c = [m for m in features if isinstance(m, nn.Conv2d)][-1].out_channels
        self.avgpool = nn.AdaptiveAvgPool2d((pool_size, pool_size))
        self.num_features = c * pool_size * pool_size
        self.classifier = nn.Sequential(
            nn.Linear(self.num_features, hidden),
            nn.ReLU(True),
            nn.Dropout(p=dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(True),
            nn.Dropout(p=dropout),
            nn.Linear(hidden, num_classes),
        )
        # torchvision's initialisation (the paper drew N(0, 0.01) and seeded deeper nets from A)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.constant_(m.bias, 0)
        if he_init:
            # The CIFAR forms start from He's fan-in init instead. torchvision's keeps the scale
            # through its wide FC layers (0.01 * sqrt(fan-in) = 1.6 and 0.64) but shrinks it about
            # 6x in each 512-wide one of the CIFAR head, and its fan-out convs shrink it at every
            # widening: on N(0, 1) images plain VGG-11's hidden features began with a std of
            # 0.003 (He: 1.8), and it sat at loss 2.303 through 2 epochs on the digits, under SGD
            # and AdamW alike. The last layer keeps N(0, 0.01), so the logits start small.
            he_init_(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)  # (B, 512, H/32, W/32)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = torch.flatten(self.avgpool(x), 1)  # (B, 512 * pool_size**2)
        if pre_logits:
            return self.classifier[:-1](x)  # (B, hidden)
        return self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.classifier[-1]

    def reset_classifier(self, num_classes: int) -> None:
        fc = nn.Linear(self.classifier[-1].in_features, num_classes)
        nn.init.normal_(fc.weight, 0, 0.01)
        nn.init.constant_(fc.bias, 0)
        self.classifier[-1] = fc


# ----------------------------------------------------------------------------------------------
# Initialising a deeper configuration from a trained configuration A (paper Sec. 3.1)


class _ConvSlot(NamedTuple):
    stage: int  # 0..4, the block between two max-pools
    position: int  # index of the conv within its stage
    index: int  # module index in ``features``
    batch_norm: bool


def _conv_slots(cfg: list[Layer], batch_norm: bool) -> list[_ConvSlot]:
    slots, index, stage, position = [], 0, 0, 0
    for v in cfg:
        if v == "M":
            index, stage, position = index + 1, stage + 1, 0
        elif v == "LRN":
            index += 1
        else:
            slots.append(_ConvSlot(stage, position, index, batch_norm))
            index, position = index + (3 if batch_norm else 2), position + 1
    return slots


def _expected_shapes(cfg: list[Layer], batch_norm: bool) -> dict[str, tuple[int, ...]]:
    # features.* shapes of a configuration; the first conv's input channels are left as -1
    shapes: dict[str, tuple[int, ...]] = {}
    convs = [v if isinstance(v, tuple) else (v, 3) for v in cfg if v not in ("M", "LRN")]
    c_in = -1
    for slot, (c_out, k) in zip(_conv_slots(cfg, batch_norm), convs):
        shapes[f"features.{slot.index}.weight"] = (c_out, c_in, k, k)
        shapes[f"features.{slot.index}.bias"] = (c_out,)
        if batch_norm:
            for name in ("weight", "bias", "running_mean", "running_var"):
                shapes[f"features.{slot.index + 1}.{name}"] = (c_out,)
            shapes[f"features.{slot.index + 1}.num_batches_tracked"] = ()
        c_in = c_out
    return shapes


def _identify(state_dict: dict[str, torch.Tensor], what: str) -> list[_ConvSlot]:
    got = {k: tuple(v.shape) for k, v in state_dict.items() if k.startswith("features.")}
    first = next((k for k in got if k.endswith(".weight") and len(got[k]) == 4), None)
    if first is not None:
        got[first] = (got[first][0], -1) + got[first][2:]
    for cfg in cfgs.values():
        for bn in (False, True):
            if got == _expected_shapes(cfg, bn):
                return _conv_slots(cfg, bn)
    raise ValueError(
        f"init_from: the {what} is not a VGG configuration of the paper (A, A-LRN, B, C, D, E, with or "
        "without BN); pass a lenet2vit or torchvision VGG model / state_dict"
    )


def init_from(model: VGG, source_state_dict: dict[str, torch.Tensor], num_conv: int = 4) -> list[str]:
    """Initialise ``model`` from a trained shallower VGG, the paper's Sec. 3.1 recipe.

    The paper trained configuration A from random weights, then started the deeper nets
    with "the first four convolutional layers and the last three fully-connected layers" of A,
    the rest random. Here the first ``num_conv`` conv layers of the source (configuration A,
    A-LRN or any other, found from the state_dict's shapes) go to the conv at the same place
    in the target (same stage, same position within the stage: A's conv 1-4 are the first
    convs of stages 1, 2, 3 and the second of stage 3), and ``classifier.0/3/6`` go to the
    same FC layers. A layer is copied only where all its shapes match (a head with another
    class count is skipped); BN statistics go along when both networks have BN. Returns the
    state_dict keys that were copied; every other tensor of ``model`` is left as it was.
    """
    src_slots = _identify(source_state_dict, "source state_dict")
    dst_slots = {(s.stage, s.position): s for s in _identify(model.state_dict(), "model")}
    own = model.state_dict()
    update: dict[str, torch.Tensor] = {}

    def copy_if_fits(pairs: list[tuple[str, str]]) -> None:
        if all(s in source_state_dict and d in own for s, d in pairs) and all(
            source_state_dict[s].shape == own[d].shape for s, d in pairs
        ):
            update.update({d: source_state_dict[s] for s, d in pairs})

    for src in src_slots[:num_conv]:
        dst = dst_slots.get((src.stage, src.position))
        if dst is None:
            continue
        names = ["weight", "bias"]
        pairs = [(f"features.{src.index}.{n}", f"features.{dst.index}.{n}") for n in names]
        if src.batch_norm and dst.batch_norm:
            bn = ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
            pairs += [(f"features.{src.index + 1}.{n}", f"features.{dst.index + 1}.{n}") for n in bn]
        copy_if_fits(pairs)
    for i in (0, 3, 6):
        copy_if_fits([(f"classifier.{i}.{n}", f"classifier.{i}.{n}") for n in ("weight", "bias")])

    model.load_state_dict(update, strict=False)
    return list(update)


# ----------------------------------------------------------------------------------------------
# Builders: one row of Table 1 each


def _vgg(cfg: str, batch_norm: bool, num_classes: int, in_chans: int, cifar: bool = False, **kwargs: Any) -> VGG:
    features = make_layers(cfgs[cfg], batch_norm=batch_norm, in_chans=in_chans)
    if cifar:
        # 32x32 -> 1x1x512 after five pools: 512-512-classes head instead of 25088-4096-4096
        return VGG(features, num_classes=num_classes, hidden=512, pool_size=1, he_init=True, **kwargs)
    return VGG(features, num_classes=num_classes, **kwargs)


# Sec. 3.1: deeper configurations start from a trained configuration A (`--init-from`).
register = family("VGG", paper=PAPER, year=2014, init_from=init_from)
MIN_SIZE = 32  # the five 2x2/2 max-pools take 32 px to a 1x1 map


def _fc_params(features: int, hidden: int, classes: int) -> int:
    # the three-layer classifier: features-hidden-hidden-classes, with biases
    return (features + 1) * hidden + (hidden + 1) * hidden + (hidden + 1) * classes


def _conv_widths(cfg: str) -> list[int]:
    # output channels of every conv (3x3 or 1x1) of a configuration
    return [v[0] if isinstance(v, tuple) else v for v in cfgs[cfg] if v not in ("M", "LRN")]


def _cifar_count(base: str) -> Count:
    # the ImageNet form's count with the head for the 1x1x512 map in place of the one for 7x7x512
    return Count.derived({"FC 25088-4096-4096-1000 head": -_fc_params(512 * 7 * 7, 4096, 1000),
                          "FC 512-512-512-10 head": _fc_params(512, 512, 10)}, base=base)


@register(input_size=224, params=Count.published(132_863_336, TORCHVISION.format("vgg11")),
          reference=("torchvision", "vgg11"), cifar_form="vgg11_cifar", min_input_size=MIN_SIZE)
def vgg11(num_classes: int = 1000, in_chans: int = 3, **kwargs: Any) -> VGG:
    """VGG-11, configuration A: 8 conv + 3 FC layers."""
    return _vgg("A", False, num_classes, in_chans, **kwargs)


@register(input_size=224, params=Count.published(132_868_840, TORCHVISION.format("vgg11_bn")),
          reference=("torchvision", "vgg11_bn"), cifar_form="vgg11_bn_cifar", min_input_size=MIN_SIZE)
def vgg11_bn(num_classes: int = 1000, in_chans: int = 3, **kwargs: Any) -> VGG:
    """VGG-11 (A) with batch normalisation after every conv (torchvision; not in the paper)."""
    return _vgg("A", True, num_classes, in_chans, **kwargs)


@register(input_size=224, params=Count.derived({}, base="vgg11", note="LRN has no parameters, so A-LRN has A's"),
          reference=None, cifar_form="vgg11_lrn_cifar", min_input_size=MIN_SIZE)
def vgg11_lrn(num_classes: int = 1000, in_chans: int = 3, **kwargs: Any) -> VGG:
    """VGG-11 with LRN after the first conv, configuration A-LRN."""
    return _vgg("A-LRN", False, num_classes, in_chans, **kwargs)


@register(input_size=224, params=Count.published(133_047_848, TORCHVISION.format("vgg13")),
          reference=("torchvision", "vgg13"), cifar_form="vgg13_cifar", min_input_size=MIN_SIZE)
def vgg13(num_classes: int = 1000, in_chans: int = 3, **kwargs: Any) -> VGG:
    """VGG-13, configuration B: 10 conv + 3 FC layers."""
    return _vgg("B", False, num_classes, in_chans, **kwargs)


@register(input_size=224, params=Count.published(133_053_736, TORCHVISION.format("vgg13_bn")),
          reference=("torchvision", "vgg13_bn"), cifar_form="vgg13_bn_cifar", min_input_size=MIN_SIZE)
def vgg13_bn(num_classes: int = 1000, in_chans: int = 3, **kwargs: Any) -> VGG:
    """VGG-13 (B) with batch normalisation after every conv (torchvision; not in the paper)."""
    return _vgg("B", True, num_classes, in_chans, **kwargs)


# C is B with a 1x1 conv added at the end of stages 3-5 (Table 1): 256-256, 512-512 and 512-512.
@register(input_size=224,
          params=Count.derived({"1x1 convs ending stages 3-5, 256-256, 512-512, 512-512":
                                (256 * 256 + 256) + 2 * (512 * 512 + 512)}, base="vgg13"),
          reference=None, cifar_form="vgg16_c_cifar", min_input_size=MIN_SIZE)
def vgg16_c(num_classes: int = 1000, in_chans: int = 3, **kwargs: Any) -> VGG:
    """VGG-16, configuration C: 1x1 convs as the last conv of stages 3-5."""
    return _vgg("C", False, num_classes, in_chans, **kwargs)


@register(input_size=224,
          params=Count.derived({f"BN after every conv, weight and bias for {sum(_conv_widths('C')):,} channels":
                                2 * sum(_conv_widths("C"))}, base="vgg16_c"),
          reference=None, cifar_form="vgg16_c_bn_cifar", min_input_size=MIN_SIZE)
def vgg16_c_bn(num_classes: int = 1000, in_chans: int = 3, **kwargs: Any) -> VGG:
    """VGG-16 (C, 1x1 convs) with batch normalisation after every conv (not in the paper)."""
    return _vgg("C", True, num_classes, in_chans, **kwargs)


@register(input_size=224, params=Count.published(138_357_544, TORCHVISION.format("vgg16")),
          reference=("torchvision", "vgg16"), cifar_form="vgg16_cifar", min_input_size=MIN_SIZE)
def vgg16(num_classes: int = 1000, in_chans: int = 3, **kwargs: Any) -> VGG:
    """VGG-16, configuration D: 13 conv + 3 FC layers."""
    return _vgg("D", False, num_classes, in_chans, **kwargs)


@register(input_size=224, params=Count.published(138_365_992, TORCHVISION.format("vgg16_bn")),
          reference=("torchvision", "vgg16_bn"), cifar_form="vgg16_bn_cifar", min_input_size=MIN_SIZE)
def vgg16_bn(num_classes: int = 1000, in_chans: int = 3, **kwargs: Any) -> VGG:
    """VGG-16 (D) with batch normalisation after every conv (torchvision; not in the paper)."""
    return _vgg("D", True, num_classes, in_chans, **kwargs)


@register(input_size=224, params=Count.published(143_667_240, TORCHVISION.format("vgg19")),
          reference=("torchvision", "vgg19"), cifar_form="vgg19_cifar", min_input_size=MIN_SIZE)
def vgg19(num_classes: int = 1000, in_chans: int = 3, **kwargs: Any) -> VGG:
    """VGG-19, configuration E: 16 conv + 3 FC layers."""
    return _vgg("E", False, num_classes, in_chans, **kwargs)


@register(input_size=224, params=Count.published(143_678_248, TORCHVISION.format("vgg19_bn")),
          reference=("torchvision", "vgg19_bn"), cifar_form="vgg19_bn_cifar", min_input_size=MIN_SIZE)
def vgg19_bn(num_classes: int = 1000, in_chans: int = 3, **kwargs: Any) -> VGG:
    """VGG-19 (E) with batch normalisation after every conv (torchvision; not in the paper)."""
    return _vgg("E", True, num_classes, in_chans, **kwargs)


# CIFAR forms: the same conv stacks, 512-512-classes head on the 1x1x512 map.


@register(input_size=32, ref_num_classes=10, params=_cifar_count("vgg11"), min_input_size=MIN_SIZE)
def vgg11_cifar(num_classes: int = 10, in_chans: int = 3, **kwargs: Any) -> VGG:
    """VGG-11 (A) for 32x32: 512-512 FC head on the 1x1x512 map."""
    return _vgg("A", False, num_classes, in_chans, cifar=True, **kwargs)


@register(input_size=32, ref_num_classes=10, params=_cifar_count("vgg11_bn"), min_input_size=MIN_SIZE)
def vgg11_bn_cifar(num_classes: int = 10, in_chans: int = 3, **kwargs: Any) -> VGG:
    """VGG-11 (A) with BN for 32x32: 512-512 FC head on the 1x1x512 map."""
    return _vgg("A", True, num_classes, in_chans, cifar=True, **kwargs)


@register(input_size=32, ref_num_classes=10, params=_cifar_count("vgg11_lrn"), min_input_size=MIN_SIZE)
def vgg11_lrn_cifar(num_classes: int = 10, in_chans: int = 3, **kwargs: Any) -> VGG:
    """VGG-11 with LRN (A-LRN) for 32x32: 512-512 FC head on the 1x1x512 map."""
    return _vgg("A-LRN", False, num_classes, in_chans, cifar=True, **kwargs)


@register(input_size=32, ref_num_classes=10, params=_cifar_count("vgg13"), min_input_size=MIN_SIZE)
def vgg13_cifar(num_classes: int = 10, in_chans: int = 3, **kwargs: Any) -> VGG:
    """VGG-13 (B) for 32x32: 512-512 FC head on the 1x1x512 map."""
    return _vgg("B", False, num_classes, in_chans, cifar=True, **kwargs)


@register(input_size=32, ref_num_classes=10, params=_cifar_count("vgg13_bn"), min_input_size=MIN_SIZE)
def vgg13_bn_cifar(num_classes: int = 10, in_chans: int = 3, **kwargs: Any) -> VGG:
    """VGG-13 (B) with BN for 32x32: 512-512 FC head on the 1x1x512 map."""
    return _vgg("B", True, num_classes, in_chans, cifar=True, **kwargs)


@register(input_size=32, ref_num_classes=10, params=_cifar_count("vgg16_c"), min_input_size=MIN_SIZE)
def vgg16_c_cifar(num_classes: int = 10, in_chans: int = 3, **kwargs: Any) -> VGG:
    """VGG-16 (C, 1x1 convs) for 32x32: 512-512 FC head on the 1x1x512 map."""
    return _vgg("C", False, num_classes, in_chans, cifar=True, **kwargs)


@register(input_size=32, ref_num_classes=10, params=_cifar_count("vgg16_c_bn"), min_input_size=MIN_SIZE)
def vgg16_c_bn_cifar(num_classes: int = 10, in_chans: int = 3, **kwargs: Any) -> VGG:
    """VGG-16 (C, 1x1 convs) with BN for 32x32: 512-512 FC head on the 1x1x512 map."""
    return _vgg("C", True, num_classes, in_chans, cifar=True, **kwargs)


@register(input_size=32, ref_num_classes=10, params=_cifar_count("vgg16"), min_input_size=MIN_SIZE)
def vgg16_cifar(num_classes: int = 10, in_chans: int = 3, **kwargs: Any) -> VGG:
    """VGG-16 (D) for 32x32: 512-512 FC head on the 1x1x512 map."""
    return _vgg("D", False, num_classes, in_chans, cifar=True, **kwargs)


@register(input_size=32, ref_num_classes=10, params=_cifar_count("vgg16_bn"), min_input_size=MIN_SIZE)
def vgg16_bn_cifar(num_classes: int = 10, in_chans: int = 3, **kwargs: Any) -> VGG:
    """VGG-16 (D) with BN for 32x32: 512-512 FC head on the 1x1x512 map."""
    return _vgg("D", True, num_classes, in_chans, cifar=True, **kwargs)


@register(input_size=32, ref_num_classes=10, params=_cifar_count("vgg19"), min_input_size=MIN_SIZE)
def vgg19_cifar(num_classes: int = 10, in_chans: int = 3, **kwargs: Any) -> VGG:
    """VGG-19 (E) for 32x32: 512-512 FC head on the 1x1x512 map."""
    return _vgg("E", False, num_classes, in_chans, cifar=True, **kwargs)


@register(input_size=32, ref_num_classes=10, params=_cifar_count("vgg19_bn"), min_input_size=MIN_SIZE)
def vgg19_bn_cifar(num_classes: int = 10, in_chans: int = 3, **kwargs: Any) -> VGG:
    """VGG-19 (E) with BN for 32x32: 512-512 FC head on the 1x1x512 map."""
    return _vgg("E", True, num_classes, in_chans, cifar=True, **kwargs)
