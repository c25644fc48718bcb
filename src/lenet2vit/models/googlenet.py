"""GoogLeNet: Szegedy et al., "Going Deeper with Convolutions" (2014).

Nine Inception modules, each running 1x1, 3x3 and 5x5 convolutions and a 3x3 max-pool side by
side on the same input and concatenating the results; 1x1 "reduce" convolutions in front of the
3x3 and 5x5 convolutions keep the cost down. Two auxiliary classifiers on inception 4a and 4d
add their loss, weighted 0.3, during training (Sec. 5). Two forms:

* ``googlenet``: torchvision's layout, so its state_dicts load unchanged: BatchNorm after every
  convolution (not in the paper), a 3x3 kernel in the "5x5" branch (a known torchvision bug,
  kept for compatibility), a 2x2 max-pool after inception 4e and dropout 0.2;
* ``googlenet_paper``: as in the paper: convolutions with bias and no BatchNorm, local response
  normalisation in the stem, a true 5x5 branch, 3x3 max-pools throughout and dropout 0.4.

Each has a 32x32 form (``<name>_cifar``): a 3x3 stride-1 first convolution and no max-pools
before inception 3a, as in kuangliu/pytorch-cifar's GoogLeNet.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from lenet2vit.layers import LocalResponseNorm
from lenet2vit.registry import Count, family

__all__ = ["BasicConv2d", "Inception", "InceptionAux", "GoogLeNet"]

PAPER = "Going Deeper with Convolutions"

# Table 1 of the paper: #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj of each module.
# A module outputs #1x1 + #3x3 + #5x5 + pool proj channels.
INCEPTION_CFG: dict[str, tuple[int, int, int, int, int, int]] = {
    "inception3a": (64, 96, 128, 16, 32, 32),  # 28x28 -> 256
    "inception3b": (128, 128, 192, 32, 96, 64),  # 28x28 -> 480
    "inception4a": (192, 96, 208, 16, 48, 64),  # 14x14 -> 512, feeds aux1
    "inception4b": (160, 112, 224, 24, 64, 64),  # 14x14 -> 512
    "inception4c": (128, 128, 256, 24, 64, 64),  # 14x14 -> 512
    "inception4d": (112, 144, 288, 32, 64, 64),  # 14x14 -> 528, feeds aux2
    "inception4e": (256, 160, 320, 32, 128, 128),  # 14x14 -> 832
    "inception5a": (256, 160, 320, 32, 128, 128),  # 7x7 -> 832
    "inception5b": (384, 192, 384, 48, 128, 128),  # 7x7 -> 1024
}
STEM_CHANNELS = (64, 64, 192)  # conv 7x7/2, conv 1x1 (reduce), conv 3x3
AUX_LOSS_WEIGHT = 0.3  # Sec. 5: the auxiliary losses are added with weight 0.3
AUX_CHANNELS, AUX_HIDDEN = 128, 1024  # Sec. 5: 1x1 conv with 128 filters, fc with 1024 units


def _out_channels(cfg: tuple[int, int, int, int, int, int]) -> int:
    return cfg[0] + cfg[2] + cfg[4] + cfg[5]


class BasicConv2d(nn.Module):
    """Convolution, optional BatchNorm (eps 0.001, as torchvision) and ReLU.

    ``norm=False`` gives the paper's convolution with a bias and no normalisation. Names
    (``conv``, ``bn``) are torchvision's.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        norm: bool = True,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=not norm)
        # BN after every conv: torchvision's port, not in the 2014 paper.
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001) if norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)


class Inception(nn.Module):
    """One Inception module (Fig. 2b): four parallel branches, concatenated along channels.

    ``branch3`` is the "5x5" branch; ``kernel5`` is its kernel size (5 in the paper, 3 in
    torchvision).
    """

    def __init__(
        self,
        in_channels: int,
        ch1x1: int,
        ch3x3red: int,
        ch3x3: int,
        ch5x5red: int,
        ch5x5: int,
        pool_proj: int,
        norm: bool = True,
        kernel5: int = 5,
    ) -> None:
        super().__init__()
        self.branch1 = BasicConv2d(in_channels, ch1x1, 1, norm=norm)
        self.branch2 = nn.Sequential(
            BasicConv2d(in_channels, ch3x3red, 1, norm=norm), BasicConv2d(ch3x3red, ch3x3, 3, padding=1, norm=norm)
        )
        self.branch3 = nn.Sequential(
            BasicConv2d(in_channels, ch5x5red, 1, norm=norm),
            BasicConv2d(ch5x5red, ch5x5, kernel5, padding=kernel5 // 2, norm=norm),
        )
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1, ceil_mode=True),
            BasicConv2d(in_channels, pool_proj, 1, norm=norm),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = (self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x))
        return torch.cat(branches, 1)  # (B, #1x1 + #3x3 + #5x5 + pool proj, H, W)


class InceptionAux(nn.Module):
    """Auxiliary classifier of Sec. 5: avg-pool to 4x4, 1x1 conv 128, fc 1024, dropout 0.7, fc.

    The paper pools with a 5x5 window and stride 3 (14x14 -> 4x4 at 224 px); ``paper_pool=True``
    does so, then pools adaptively to 4x4 so other input sizes still give the fc its 2048
    inputs. torchvision (``paper_pool=False``) pools adaptively to 4x4 directly.
    """

    def __init__(
        self, in_channels: int, num_classes: int, norm: bool = True, paper_pool: bool = False, dropout: float = 0.7
    ) -> None:
        super().__init__()
        self.paper_pool = paper_pool
        self.conv = BasicConv2d(in_channels, AUX_CHANNELS, 1, norm=norm)
        self.fc1 = nn.Linear(AUX_CHANNELS * 4 * 4, AUX_HIDDEN)
        self.fc2 = nn.Linear(AUX_HIDDEN, num_classes)
        self.dropout = nn.Dropout(p=dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.paper_pool and min(x.shape[-2:]) >= 5:
            x = F.avg_pool2d(x, kernel_size=5, stride=3)  # (B, C, 4, 4) at 224 px input
        x = F.adaptive_avg_pool2d(x, (4, 4))  # (B, C, 4, 4)
        x = torch.flatten(self.conv(x), 1)  # (B, 2048)
        x = self.dropout(F.relu(self.fc1(x), inplace=True))  # (B, 1024)
        return self.fc2(x)  # (B, num_classes)


class GoogLeNet(nn.Module):
    """GoogLeNet (Table 1 and Fig. 3 of the paper) with optional auxiliary classifiers.

    ``paper=False`` is torchvision's layout and ``paper=True`` the paper's (see the module
    docstring for the differences); ``cifar_stem=True`` adapts the stem to 32x32 images (3x3
    stride-1 conv1, no max-pool before inception 3a, so the modules see 32, 16 and 8 pixel
    maps). With ``aux_logits=True`` the model carries the two auxiliary heads and, in training
    mode only, ``forward`` returns ``(logits, [aux1_logits, aux2_logits])``; the loss should
    add :data:`AUX_LOSS_WEIGHT` (0.3) times each auxiliary loss (``TrainConfig.aux_weight``). Otherwise, and always in eval
    mode, it returns the logits alone. ``transform_input`` rescales ImageNet-normalised inputs
    to the [-1, 1] range that torchvision's ported GoogLeNet weights expect (torchvision's option).
    """

    def __init__(
        self,
        num_classes: int = 1000,
        in_chans: int = 3,
        aux_logits: bool = False,
        paper: bool = False,
        cifar_stem: bool = False,
        transform_input: bool = False,
        dropout: float | None = None,
        dropout_aux: float = 0.7,
    ) -> None:
        super().__init__()
        if transform_input and in_chans != 3:
            raise ValueError(f"transform_input rescales the three ImageNet channels; in_chans is {in_chans}")
        self.aux_logits = aux_logits
        self.transform_input = transform_input
        self.paper = paper
        norm = not paper
        c1, c2, c3 = STEM_CHANNELS

        if cifar_stem:
            # CIFAR form: 3x3 stride-1 conv1 and no max-pools before inception 3a (not in the paper).
            self.conv1 = BasicConv2d(in_chans, c1, 3, padding=1, norm=norm)
            self.maxpool1: nn.Module = nn.Identity()
        else:
            self.conv1 = BasicConv2d(in_chans, c1, 7, stride=2, padding=3, norm=norm)
            self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        # LRN after the first pool and after conv3 (Fig. 3); torchvision has none. The paper gives no
        # constants: these are its Caffe model's (bvlc_googlenet: n=5, alpha=1e-4 averaged over n, k=1).
        self.lrn1 = LocalResponseNorm(5, alpha=1e-4 / 5, beta=0.75, k=1.0) if paper else nn.Identity()
        self.conv2 = BasicConv2d(c1, c2, 1, norm=norm)
        self.conv3 = BasicConv2d(c2, c3, 3, padding=1, norm=norm)
        self.lrn2 = LocalResponseNorm(5, alpha=1e-4 / 5, beta=0.75, k=1.0) if paper else nn.Identity()
        self.maxpool2 = nn.Identity() if cifar_stem else nn.MaxPool2d(3, stride=2, ceil_mode=True)

        # The "5x5" branch has a 3x3 kernel in torchvision (pytorch/vision#906), kept so its weights load.
        kernel5 = 5 if paper else 3
        channels = c3
        for name, cfg in INCEPTION_CFG.items():
            self.add_module(name, Inception(channels, *cfg, norm=norm, kernel5=kernel5))
            channels = _out_channels(cfg)
            if name == "inception3b":
                self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
            elif name == "inception4e":
                # torchvision pools 2x2/2 here; the paper's Table 1 has 3x3/2 (same 14 -> 7).
                self.maxpool4 = nn.MaxPool2d(3 if paper else 2, stride=2, ceil_mode=True)

        self.aux1: InceptionAux | None = None
        self.aux2: InceptionAux | None = None
        if aux_logits:
            aux_in = (_out_channels(INCEPTION_CFG["inception4a"]), _out_channels(INCEPTION_CFG["inception4d"]))
            self.aux1 = InceptionAux(aux_in[0], num_classes, norm=norm, paper_pool=paper, dropout=dropout_aux)
            self.aux2 = InceptionAux(aux_in[1], num_classes, norm=norm, paper_pool=paper, dropout=dropout_aux)

        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))  # the paper's 7x7/1 average pool, for any input size
        # Dropout 0.4 in the paper; torchvision's default is 0.2.
        self.dropout = nn.Dropout(p=(0.4 if paper else 0.2) if dropout is None else dropout)
        self.num_features = channels  # 1024
        self.fc = nn.Linear(self.num_features, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if self.paper and isinstance(m, (nn.Conv2d, nn.Linear)):
                # The paper gives no initialisation; its Caffe model uses "xavier" (uniform, variance
                # 1 / fan_in), bias 0.2 before a ReLU and 0 on the classifiers.
                nn.init.kaiming_uniform_(m.weight, a=1.0, mode="fan_in")
                nn.init.constant_(m.bias, 0.2)
            elif isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, mean=0.0, std=0.01, a=-2, b=2)  # torchvision's init
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if self.paper:
            for fc in [self.fc] + [aux.fc2 for aux in (self.aux1, self.aux2) if aux is not None]:
                nn.init.zeros_(fc.bias)

    def _transform_input(self, x: torch.Tensor) -> torch.Tensor:
        if not self.transform_input:
            return x
        mean = x.new_tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        std = x.new_tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        return x * (std / 0.5) + (mean - 0.5) / 0.5  # ImageNet-normalised -> (pixel - 0.5) / 0.5

    def _features(self, x: torch.Tensor, with_aux: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
        aux: list[torch.Tensor] = []
        x = self._transform_input(x)  # (B, 3, 224, 224)
        x = self.lrn1(self.maxpool1(self.conv1(x)))  # (B, 64, 56, 56)
        x = self.conv3(self.conv2(x))  # (B, 192, 56, 56)
        x = self.maxpool2(self.lrn2(x))  # (B, 192, 28, 28)
        x = self.inception3b(self.inception3a(x))  # (B, 480, 28, 28)
        x = self.inception4a(self.maxpool3(x))  # (B, 512, 14, 14)
        if with_aux:
            aux.append(self.aux1(x))
        x = self.inception4d(self.inception4c(self.inception4b(x)))  # (B, 528, 14, 14)
        if with_aux:
            aux.append(self.aux2(x))
        x = self.maxpool4(self.inception4e(x))  # (B, 832, 7, 7)
        x = self.inception5b(self.inception5a(x))  # (B, 1024, 7, 7)
        return x, aux

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Stem and inception modules: (B, in_chans, 224, 224) -> (B, 1024, 7, 7); no aux heads."""
        return self._features(x, with_aux=False)[0]

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global average pool, dropout and the classifier; ``pre_logits`` stops after pooling."""
        x = torch.flatten(self.avgpool(x), 1)  # (B, 1024)
        return x if pre_logits else self.fc(self.dropout(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        if self.training and self.aux_logits:
            x, aux = self._features(x, with_aux=True)
            return self.forward_head(x), aux  # (logits, [aux1_logits, aux2_logits])
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        """The final linear layer (the auxiliary heads have their own ``fc2``)."""
        return self.fc

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the final layer, and the auxiliary heads' last layers, with fresh ones."""
        self.fc = nn.Linear(self.num_features, num_classes)
        for aux in (self.aux1, self.aux2):
            if aux is not None:
                aux.fc2 = nn.Linear(AUX_HIDDEN, num_classes)

    def convert_state_dict(self, state_dict: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
        """Drop the auxiliary heads' weights when this model has none.

        torchvision's published GoogLeNet file carries ``aux1.*``/``aux2.*``; a model built with
        ``aux_logits=False`` loads the rest. Names are otherwise torchvision's already.
        """
        if self.aux_logits:
            return state_dict
        return {k: v for k, v in state_dict.items() if not k.startswith(("aux1.", "aux2."))}


# Sec. 5: trained with the two auxiliary classifiers.
register = family("GoogLeNet", paper=PAPER, year=2014, train_kwargs={"aux_logits": True})

# Output channels of every convolution outside the auxiliary heads: the stem and each module's six.
CONV_CHANNELS = sum(STEM_CHANNELS) + sum(sum(cfg) for cfg in INCEPTION_CFG.values())
# The paper's true 5x5 "5x5" branch adds 5*5 - 3*3 = 16 weights per (#5x5 reduce, #5x5) channel pair.
EXTRA_5X5 = sum((5 * 5 - 3 * 3) * cfg[3] * cfg[4] for cfg in INCEPTION_CFG.values())


# CIFAR forms: a 3x3 conv1 (64x3x3x3 weights instead of 64x3x7x7; the max-pools they drop hold no
# parameters) and a 10-way classifier on the 1024 pooled features.
def _cifar_count(base: str) -> Count:
    c1, features = STEM_CHANNELS[0], _out_channels(INCEPTION_CFG["inception5b"])
    return Count.derived({f"conv1 {c1}x3x7x7 -> {c1}x3x3x3": -c1 * 3 * (7 * 7 - 3 * 3),
                          f"fc {features}x1000 -> {features}x10": -(features * 990 + 990)}, base=base)


# Counts are without the auxiliary heads (aux_logits=False, the default).
@register(
    input_size=224,
    params=Count.published(
        6_624_904, "torchvision googlenet (num_params of its IMAGENET1K_V1 weights, aux heads excluded)"
    ),
    reference=("torchvision", "googlenet"),
    cifar_form="googlenet_cifar",
    min_input_size=15,  # torchvision's min_size; the ceil-mode pools need a 1x1 map before maxpool4
)
def googlenet(num_classes: int = 1000, in_chans: int = 3, **kwargs) -> nn.Module:
    """GoogLeNet, torchvision layout: BN after every conv, 3x3 kernel in the "5x5" branch."""
    return GoogLeNet(num_classes, in_chans, paper=False, **kwargs)


@register(
    input_size=224,
    params=Count.derived(
        {
            f"no BN: 2 x {CONV_CHANNELS:,} conv channels": -2 * CONV_CHANNELS,
            "conv biases": CONV_CHANNELS,
            "5x5 instead of 3x3: 16 x #5x5 reduce x #5x5 summed over Table 1": EXTRA_5X5,
        },
        base="googlenet",
    ),
    reference=None,
    cifar_form="googlenet_paper_cifar",
    min_input_size=31,  # the 3x3/2 ceil-mode maxpool4 needs a 2x2 map
)
def googlenet_paper(num_classes: int = 1000, in_chans: int = 3, **kwargs) -> nn.Module:
    """GoogLeNet as in the paper: no BN, conv biases, LRN, true 5x5 branch, dropout 0.4."""
    return GoogLeNet(num_classes, in_chans, paper=True, **kwargs)


@register(
    input_size=32,
    params=_cifar_count("googlenet"),
    min_input_size=2,  # maxpool4 (2x2/2, ceil mode) needs a 1x1 map
    ref_num_classes=10,
)
def googlenet_cifar(num_classes: int = 10, in_chans: int = 3, **kwargs) -> nn.Module:
    """GoogLeNet (torchvision layout) for 32x32: 3x3 stride-1 conv1, no early max-pools."""
    return GoogLeNet(num_classes, in_chans, paper=False, cifar_stem=True, **kwargs)


@register(
    input_size=32,
    params=_cifar_count("googlenet_paper"),
    min_input_size=4,  # the 3x3/2 ceil-mode maxpool4 needs a 2x2 map
    ref_num_classes=10,
)
def googlenet_paper_cifar(num_classes: int = 10, in_chans: int = 3, **kwargs) -> nn.Module:
    """GoogLeNet as in the paper for 32x32: 3x3 stride-1 conv1, no early max-pools."""
    return GoogLeNet(num_classes, in_chans, paper=True, cifar_stem=True, **kwargs)
