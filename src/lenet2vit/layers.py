"""Building blocks shared by several model families.

Each block is small and named after the paper idea it implements. Transformer blocks
(patch embedding, attention, MLP) live in ``models/vit.py`` beside the ViT that defines them.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["LocalResponseNorm", "ConvNormAct", "SqueezeExcite", "DropPath", "make_divisible", "he_init_"]


class LocalResponseNorm(nn.Module):
    """Local response normalisation as written in the AlexNet paper (Sec. 3.3).

    ``b[c] = a[c] / (k + alpha * sum_{c' in window of n around c} a[c']^2) ** beta`` with the
    paper's constants k=2, n=5, alpha=1e-4, beta=0.75. ``alpha`` multiplies the plain sum, as
    in the paper; :class:`torch.nn.LocalResponseNorm` divides alpha by n, so we pass it
    ``alpha * n`` to compute exactly the paper's formula.
    """

    def __init__(self, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0) -> None:
        super().__init__()
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.local_response_norm(x, self.size, alpha=self.alpha * self.size, beta=self.beta, k=self.k)

    def extra_repr(self) -> str:
        return f"size={self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k} (paper convention)"


class ConvNormAct(nn.Sequential):
    """Conv2d -> BatchNorm2d -> activation, with 'same' padding for odd kernels.

    Children are numbered 0, 1, 2 like torchvision's ``Conv2dNormActivation`` so its
    state_dicts load unchanged. ``act=None`` leaves the activation out (linear bottlenecks).
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel_size: int = 3,
        stride: int = 1,
        groups: int = 1,
        act: type[nn.Module] | None = nn.ReLU,
        norm: bool = True,
        eps: float = 1e-5,
        momentum: float = 0.1,
    ) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(in_ch, out_ch, kernel_size, stride, (kernel_size - 1) // 2, groups=groups, bias=not norm)
        ]
        if norm:
            layers.append(nn.BatchNorm2d(out_ch, eps=eps, momentum=momentum))
        if act is not None:
            layers.append(act(inplace=True) if act in (nn.ReLU, nn.ReLU6, nn.SiLU, nn.Hardswish) else act())
        super().__init__(*layers)
        self.out_channels = out_ch


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation (Hu et al. 2018): channel gates from globally pooled features.

    Parameter names ``fc1``/``fc2`` match torchvision's ``SqueezeExcitation``.
    """

    def __init__(self, channels: int, squeeze_channels: int, act: type[nn.Module] = nn.SiLU) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze_channels, 1)
        self.fc2 = nn.Conv2d(squeeze_channels, channels, 1)
        self.activation = act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.fc2(self.activation(self.fc1(self.avgpool(x))))
        return x * torch.sigmoid(s)


class DropPath(nn.Module):
    """Stochastic depth (Huang et al. 2016): drop a whole residual branch per sample.

    In training each sample's branch is zeroed with probability ``p`` and the survivors are
    scaled by ``1/(1-p)``; in evaluation it is the identity.
    """

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round a channel count to a multiple of ``divisor`` without losing more than 10%.

    The rule of the MobileNet/EfficientNet reference code, needed to reproduce their exact
    channel widths under a width multiplier.
    """
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def he_init_(model: nn.Module) -> None:
    """He et al. 2015's fan-in init for a ReLU network without normalisation, in place: every
    conv and linear layer but the last ~ N(0, 2 / fan_in), the last ~ N(0, 0.01) so the logits
    start small; biases zero. It keeps the activations' scale from layer to layer."""
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    for m in layers[:-1]:
        nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
    nn.init.normal_(layers[-1].weight, 0.0, 0.01)
    for m in layers:
        if m.bias is not None:
            nn.init.zeros_(m.bias)
