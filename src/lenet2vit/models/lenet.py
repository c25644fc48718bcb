"""LeNet-5 from "Gradient-Based Learning Applied to Document Recognition" (LeCun et al., 1998).

The network of Sec. II.B / Fig. 2: a 32x32 single-channel image (MNIST digits padded by 2
pixels), two convolution + subsampling stages, a convolution C5 whose 5x5 kernel covers its
whole 5x5 input (so it acts as a fully connected layer at 32x32), a hidden layer F6 and the
output layer. Every unit up to F6 is squashed by the paper's scaled tanh
``f(a) = 1.7159 tanh(2a/3)`` (Appendix A).

Deviations from the paper, each also marked where it happens:

* C3 connects to all six S2 maps (the paper's Table I wires each C3 map to only 3, 4 or 6 of
  them, for 1,516 parameters).
* S2/S4 are plain 2x2 average pooling by default. The paper's subsampling units sum the four
  inputs, multiply by a trainable coefficient, add a trainable bias and squash (12 + 32 more
  parameters); ``trainable_subsampling=True`` builds that version.
* The output layer is an ordinary linear layer (84 inputs, 10 outputs) rather than the
  paper's Euclidean RBF units with fixed, hand-designed 7x12 bitmap prototypes.
* Weights start uniform in +-sqrt(3/F) (standard deviation 1/sqrt(F), F the fan-in: the
  initialisation of LeCun et al.'s "Efficient BackProp", 1998, Sec. 4.6). Appendix A's
  +-2.4/F (``init="paper"``) shrinks the signal about tenfold per layer; the paper's second-order
  optimizer made up for that, but plain SGD then stays at chance for epochs.

The parameter count of the default (plain) version at 1 input channel and 10 classes is
worked out layer by layer in :func:`lenet5`'s registration. (The paper's 60,000 trainable
parameters are those of C1, C5 and F6 plus 12 (S2), 1,516 (sparse C3) and 32 (S4): its RBF
output layer is not trained.)
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from lenet2vit.registry import Count, family

__all__ = ["LeNet5", "ScaledTanh", "Subsampling", "lenet5", "LENET5"]

PAPER = "Gradient-Based Learning Applied to Document Recognition"

# The paper's layer table (Sec. II.B): name -> (feature maps or units, kernel size).
# Map sizes at the 32x32 input: C1 28x28, S2 14x14, C3 10x10, S4 5x5, C5 1x1.
LENET5: dict[str, tuple[int, int]] = {
    "c1": (6, 5),
    "s2": (6, 2),
    "c3": (16, 5),
    "s4": (16, 2),
    "c5": (120, 5),
    "f6": (84, 1),
}

# Appendix A: f(a) = A tanh(S a) with A = 1.7159 and S = 2/3, so that f(1) = 1 and f(-1) = -1.
SQUASH_A = 1.7159
SQUASH_S = 2.0 / 3.0


class ScaledTanh(nn.Module):
    """The paper's squashing function ``A * tanh(S * a)`` with A = 1.7159, S = 2/3."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return SQUASH_A * torch.tanh(SQUASH_S * x)

    def extra_repr(self) -> str:
        return f"A={SQUASH_A}, S={SQUASH_S:.4f}"


class Subsampling(nn.Module):
    """2x2 subsampling layer S2/S4: plain average pooling or the paper's trainable form.

    The paper's unit sums its four inputs, multiplies the sum by a trainable coefficient,
    adds a trainable bias (one of each per feature map) and passes the result through the
    squashing function. ``trainable=False`` (the default of :class:`LeNet5`) is a plain
    parameter-free 2x2 average.
    """

    def __init__(self, channels: int, trainable: bool = False) -> None:
        super().__init__()
        self.trainable = trainable
        if trainable:
            self.weight = nn.Parameter(torch.ones(channels))
            self.bias = nn.Parameter(torch.zeros(channels))
            self.act = ScaledTanh()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.trainable:
            return F.avg_pool2d(x, 2)
        s = F.avg_pool2d(x, 2) * 4.0  # sum of the 2x2 receptive field
        return self.act(s * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1))

    def extra_repr(self) -> str:
        return "2x2, trainable coefficient and bias (paper)" if self.trainable else "2x2 average"


class LeNet5(nn.Module):
    """LeNet-5 with full C3 connections, scaled-tanh units and a linear output layer.

    ``features`` holds C1 ... C5 (named ``c1``, ``s2``, ... as in the paper) and ``classifier``
    holds F6 and the output layer. It is a 32x32 network: smaller inputs cannot pass C5, and
    larger ones give C5 maps bigger than 1x1, which :meth:`forward_features` returns (useful
    for feature-map views) but F6 cannot take. ``in_chans=3`` widens C1 for colour images.
    """

    def __init__(self, num_classes: int = 10, in_chans: int = 1, trainable_subsampling: bool = False,
                 init: str = "lecun") -> None:
        super().__init__()
        if init not in INITS:
            raise ValueError(f"init must be one of {', '.join(INITS)}, got {init!r}")
        self.init = init
        c1, k = LENET5["c1"]
        c3, _ = LENET5["c3"]
        c5, _ = LENET5["c5"]
        f6, _ = LENET5["f6"]
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        layers["c1"] = nn.Conv2d(in_chans, c1, k)  # (B, 6, 28, 28)
        layers["act1"] = ScaledTanh()
        # plain 2x2 average by default: the paper's coefficient, bias and squash are optional
        layers["s2"] = Subsampling(c1, trainable_subsampling)  # (B, 6, 14, 14)
        layers["c3"] = nn.Conv2d(c1, c3, k)  # full connections, not the paper's Table I: (B, 16, 10, 10)
        layers["act3"] = ScaledTanh()
        layers["s4"] = Subsampling(c3, trainable_subsampling)  # (B, 16, 5, 5)
        layers["c5"] = nn.Conv2d(c3, c5, k)  # (B, 120, 1, 1)
        layers["act5"] = ScaledTanh()
        self.features = nn.Sequential(layers)
        self.num_features = c5
        self.classifier = nn.Sequential(
            OrderedDict(
                f6=nn.Linear(c5, f6),
                act6=ScaledTanh(),
                output=nn.Linear(f6, num_classes),  # linear layer instead of the paper's fixed RBF units
            )
        )
        self.apply(INITS[init])

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)  # (B, 120, 1, 1) at 32x32

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if x.shape[-2:] != (1, 1):
            raise ValueError(
                f"LeNet-5 takes 32x32 images (its C5 maps are then 1x1); got {x.shape[-2]}x{x.shape[-1]} C5 maps. "
                "Resize or pad the images to 32x32 (pad 28x28 MNIST digits by 2 pixels)."
            )
        x = torch.flatten(x, 1)  # (B, 120)
        if pre_logits:
            return self.classifier[:-1](x)  # (B, 84): F6 after squashing
        return self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.classifier.output

    def reset_classifier(self, num_classes: int) -> None:
        self.classifier.output = nn.Linear(self.classifier.f6.out_features, num_classes)
        INITS[self.init](self.classifier.output)


def _init_lecun(m: nn.Module) -> None:
    # "Efficient BackProp" Sec. 4.6: standard deviation 1/sqrt(F), here uniform in +-sqrt(3/F)
    if isinstance(m, (nn.Conv2d, nn.Linear)):
        bound = (3.0 / m.weight[0].numel()) ** 0.5
        nn.init.uniform_(m.weight, -bound, bound)
        nn.init.zeros_(m.bias)
    elif isinstance(m, Subsampling) and m.trainable:
        nn.init.uniform_(m.weight, -(3.0 / 4) ** 0.5, (3.0 / 4) ** 0.5)
        nn.init.zeros_(m.bias)


def _init_paper(m: nn.Module) -> None:
    # Appendix A: weights uniform in [-2.4/F, 2.4/F] with F the unit's fan-in; biases zero
    # (the paper does not single them out).
    if isinstance(m, (nn.Conv2d, nn.Linear)):
        fan_in = m.weight[0].numel()
        nn.init.uniform_(m.weight, -2.4 / fan_in, 2.4 / fan_in)
        nn.init.zeros_(m.bias)
    elif isinstance(m, Subsampling) and m.trainable:
        bound = 2.4 / 4  # four inputs per subsampling unit
        nn.init.uniform_(m.weight, -bound, bound)
        nn.init.zeros_(m.bias)


register = family("LeNet", paper=PAPER, year=1998)


@register(
    input_size=32,
    params=Count.derived(
        {
            "C1 6x1x5x5 + 6": 156,
            "C3 16x6x5x5 + 16": 2_416,
            "C5 120x16x5x5 + 120": 48_120,
            "F6 84x120 + 84": 10_164,
            "output 10x84 + 10": 850,
        },
        note="paper Fig. 2 with full C3 and plain pooling",
    ),
    reference=None,
    cifar_form=None,  # already a 32x32 network
    min_input_size=32,
    max_input_size=32,  # C5 must meet 5x5 maps
    ref_num_classes=10,
    in_chans=1,
)
def lenet5(num_classes: int = 10, in_chans: int = 1, **kwargs: Any) -> LeNet5:
    """LeNet-5 (1998): 32x32 digits, scaled tanh, 2x2 average subsampling, full C3."""
    return LeNet5(num_classes=num_classes, in_chans=in_chans, **kwargs)


INITS = {"lecun": _init_lecun, "paper": _init_paper}
