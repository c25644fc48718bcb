"""Zeiler and Fergus's deconvnet: project strong activations back to pixel space.

"Visualizing and Understanding Convolutional Networks" (ECCV 2014), Sec. 2.1. To see what
excites one unit, keep only that unit's activation, set every other activation of the layer to
zero and run the layers below it backwards:

* max pooling -> unpooling that puts each value back where the maximum came from (the
  "switches" recorded in the forward pass);
* ReLU -> ReLU of the reconstruction (the rectified signal stays non-negative);
* convolution -> the transposed filters of the same layer (no bias).

The reconstruction is non-zero only inside the unit's receptive field, which
:func:`receptive_field` computes from the same layers; the figure shows it beside the image
patch under that field. Supported: sequential CNNs whose ``features`` is an ``nn.Sequential``
of Conv2d / ReLU / MaxPool2d (with LRN, BatchNorm2d, Dropout, and LeNet's squash and
subsampling): LeNet-5, AlexNet, ZFNet, VGG.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.grad import conv2d_input

from lenet2vit.explain.methods import ExplainError, model_device

__all__ = ["deconv", "DeconvResult", "deconv_layers", "receptive_field"]


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _kind(m: nn.Module) -> str | None:
    """How the deconvnet treats a layer (None: not supported)."""
    name = type(m).__name__
    if isinstance(m, nn.Conv2d):
        return "conv"
    if isinstance(m, nn.MaxPool2d):
        return "maxpool"
    if isinstance(m, (nn.ReLU, nn.ReLU6)) or name == "ScaledTanh":
        # LeNet's squash is treated like a rectifier: the reconstruction is rectified, as in ZF.
        return "relu"
    if name == "Subsampling":
        return "avgpool"
    if isinstance(m, nn.BatchNorm2d):
        return "bn"
    if isinstance(m, (nn.LocalResponseNorm, nn.Dropout, nn.Identity)) or name == "LocalResponseNorm":
        return "skip"  # ZF (Sec. 2.1) leave contrast normalisation out of the backward pass
    return None


def deconv_layers(model: nn.Module, layer: str) -> list[tuple[str, nn.Module]]:
    """The ``features`` layers from the input up to and including ``layer``.

    ``layer`` is a module name such as ``"features.6"`` (or ``"features"`` for all of them).
    Raises :class:`ExplainError` for models without a plain sequential ``features`` stack.
    """
    model_name = getattr(model, "model_name", type(model).__name__)
    feats = getattr(model, "features", None)
    if not isinstance(feats, nn.Sequential):
        raise ExplainError(
            f"the deconvnet needs a sequential CNN (a `features` stack of conv/ReLU/max-pool layers, as in "
            f"lenet5, alexnet, zfnet, vgg); {model_name} is not one. Use --method gradcam or occlusion"
        )
    layers = [(f"features.{n}", m) for n, m in feats.named_children()]
    names = [n for n, _ in layers]
    if layer != "features" and layer not in names:
        raise ExplainError(f"{model_name}: the deconvnet projects from one of {', '.join(names)}; got {layer!r}")
    upto = layers if layer == "features" else layers[: names.index(layer) + 1]
    bad = [f"{n} ({type(m).__name__})" for n, m in upto if _kind(m) is None]
    if bad:
        raise ExplainError(f"{model_name}: the deconvnet cannot invert {', '.join(bad[:3])}; it handles conv, ReLU, "
                           "max-pool, LRN and batch-norm layers. Use --method gradcam or occlusion")
    return upto


def receptive_field(layers: list[tuple[str, nn.Module]]) -> tuple[int, int, int]:
    """``(size, jump, start)`` of a unit after ``layers``: unit ``i`` sees input pixels
    ``start + i * jump`` up to ``start + i * jump + size`` (exclusive; may run past the border)."""
    size, jump, start = 1, 1, 0
    for _, m in layers:
        kind = _kind(m)
        if kind in ("conv", "maxpool"):
            k, s = _pair(m.kernel_size)[0], _pair(m.stride)[0]
            p, d = _pair(m.padding)[0], _pair(m.dilation)[0]
        elif kind == "avgpool":
            k, s, p, d = 2, 2, 0, 1
        else:
            continue
        start -= p * jump
        size += d * (k - 1) * jump
        jump *= s
    return size, jump, start


@dataclass
class DeconvResult:
    """Top activations of one layer projected to pixel space.

    ``reconstructions``: ``(k, C, H, W)`` deconvnet projections, one per activation.
    ``image_index``/``channel``/``position`` ((k, 2): row, col in the layer's map)/``value``
    describe each activation; ``boxes`` ``(k, 4)`` are the receptive fields as
    ``(top, left, bottom, right)`` clipped to the image (bottom/right exclusive).
    """

    layer: str
    reconstructions: torch.Tensor
    image_index: torch.Tensor
    channel: torch.Tensor
    position: torch.Tensor
    value: torch.Tensor
    boxes: torch.Tensor
    rf_size: int


def _forward(layers, x):
    """Run the layers, recording what the backward pass needs (input shapes, switches)."""
    tape = []
    for _, m in layers:
        kind = _kind(m)
        rec = {"shape": x.shape}
        if kind == "maxpool":
            x, idx = F.max_pool2d(x, m.kernel_size, m.stride, m.padding, m.dilation, ceil_mode=m.ceil_mode,
                                  return_indices=True)
            rec["switches"] = idx
        elif kind == "relu" and isinstance(m, (nn.ReLU, nn.ReLU6)):
            x = F.relu(x) if isinstance(m, nn.ReLU) else F.relu6(x)  # never in place: we keep x
        elif kind == "skip" and isinstance(m, nn.Dropout):
            pass
        else:
            x = m(x)
        tape.append(rec)
    return x, tape


def _backward(layers, tape, y):
    for (_, m), rec in zip(reversed(layers), reversed(tape)):
        kind, shape = _kind(m), rec["shape"]
        if kind == "conv":
            y = conv2d_input(shape, m.weight, y, m.stride, m.padding, m.dilation, m.groups)
        elif kind == "maxpool":
            b, c = y.shape[:2]
            out = y.new_zeros(b, c, shape[-2] * shape[-1])
            # scatter-add, so windows that overlap and share a maximum both send their value back
            y = out.scatter_add_(2, rec["switches"].flatten(2), y.flatten(2)).view(b, c, *shape[-2:])
        elif kind == "relu":
            y = F.relu(y)
        elif kind == "avgpool":  # transposed 2x2 average: each value spread over its window
            up = y.repeat_interleave(2, -2).repeat_interleave(2, -1) / 4
            if getattr(m, "trainable", False):
                up = F.relu(up * 4 * m.weight.view(1, -1, 1, 1))  # coefficient, then the squash as a rectifier
            y = F.pad(up, (0, shape[-1] - up.shape[-1], 0, shape[-2] - up.shape[-2]))
        elif kind == "bn":
            scale = (m.weight if m.affine else 1.0) / torch.sqrt(m.running_var + m.eps)
            y = y * scale.view(1, -1, 1, 1)
    return y


@torch.no_grad()
def deconv(model: nn.Module, x: torch.Tensor, layer: str, top: int = 9) -> DeconvResult:
    """Project the ``top`` strongest activations of ``layer`` back to pixels (ZF deconvnet).

    ``x`` is a normalised batch ``(B, C, H, W)``; like ZF's top-9 over a data set, the
    strongest activations are taken over all its images, one per channel (the ``top``
    channels with the largest positive maximum; fewer when fewer fire). Each is projected alone, every other activation of
    the layer set to zero. Raises :class:`ExplainError` for non-sequential models.
    """
    if x.ndim == 3:
        x = x.unsqueeze(0)
    layers = deconv_layers(model, layer)
    model.eval()
    x = x.to(model_device(model))
    act, tape = _forward(layers, x)  # (B, C, h, w)
    if act.ndim != 4:
        raise ExplainError(f"layer {layer!r} gives no spatial maps; pick a convolutional layer")
    B, C, h, w = act.shape
    best, where = act.permute(1, 0, 2, 3).reshape(C, -1).max(dim=1)  # per channel, over images and positions
    active = int((best > 0).sum())
    if active == 0:
        raise ExplainError(f"no unit of {layer} is active on these images; pick another layer or more images")
    k = min(max(1, top), active)  # a unit that never fires has nothing to project
    chans = best.argsort(descending=True)[:k]
    flat = where[chans]
    img, pos = flat // (h * w), flat % (h * w)
    rows, cols = pos // w, pos % w
    signal = torch.zeros(k, C, h, w, device=act.device, dtype=act.dtype)
    signal[torch.arange(k, device=act.device), chans, rows, cols] = act[img, chans, rows, cols]
    sub_tape = [{key: (v[img] if key == "switches" else v) for key, v in rec.items()} for rec in tape]
    for rec in sub_tape:
        rec["shape"] = (k, *rec["shape"][1:])
    recon = _backward(layers, sub_tape, signal)
    size, jump, start = receptive_field(layers)
    H, W = x.shape[-2:]
    top_ = (start + rows * jump).clamp(0, H)
    left = (start + cols * jump).clamp(0, W)
    bottom = (start + rows * jump + size).clamp(0, H)
    right = (start + cols * jump + size).clamp(0, W)
    return DeconvResult(
        layer=layer,
        reconstructions=recon.float().cpu(),
        image_index=img.cpu(),
        channel=chans.cpu(),
        position=torch.stack([rows, cols], 1).cpu(),
        value=act[img, chans, rows, cols].float().cpu(),
        boxes=torch.stack([top_, left, bottom, right], 1).cpu(),
        rf_size=size,
    )
