"""Views into a trained CNN: first-layer filters, feature maps, occlusion and Grad-CAM.

Every function takes a model and a normalised input batch ``x`` of shape ``(1, C, H, W)`` (or
``(C, H, W)``) and returns plain tensors on the CPU; the figures module draws them. Hooks
are attached only for the duration of one call and always removed, even on error.

* :func:`filters`: the kernels of the first convolution as one image grid (AlexNet Fig. 3).
* :func:`feature_maps`: activations of any named module, the ``top`` channels by mean.
* :func:`occlusion`: Zeiler and Fergus (2014) Sec. 4.2: slide a grey patch over the image
  (grey = the data set mean, which is 0 after normalisation) and map the drop in the class
  probability; every occluded copy goes through the network in batches.
* :func:`gradcam`: Selvaraju et al. (2017): ReLU of the activation maps of a layer weighted
  by their spatially averaged gradients, upsampled to the image.
"""

from __future__ import annotations

import contextlib
import difflib
import math
from typing import Iterator, NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from lenet2vit.errors import UserError

__all__ = [
    "METHODS",
    "MAP_METHODS",
    "ExplainError",
    "filters",
    "first_conv",
    "feature_maps",
    "FeatureMaps",
    "occlusion",
    "gradcam",
    "default_gradcam_layer",
    "get_layer",
    "layer_names",
    "tokens_to_grid",
    "upsample",
    "predict",
]


# The methods `lenet2vit explain --method` offers; the map methods give one (H, W) map per image.
METHODS = ("auto", "occlusion", "gradcam", "feature-maps", "filters", "attention", "rollout", "deconv")
MAP_METHODS = ("auto", "occlusion", "gradcam", "rollout")


class ExplainError(UserError, ValueError):
    """An explanation that cannot be made as asked; the message says what to do instead."""


# ----------------------------------------------------------------------------- helpers


def as_batch(x: torch.Tensor) -> torch.Tensor:
    if x.ndim == 3:
        x = x.unsqueeze(0)
    if x.ndim != 4 or x.shape[0] != 1:
        raise ExplainError(f"expected one normalised image of shape (1, C, H, W) or (C, H, W), got {tuple(x.shape)}")
    return x


def model_device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def layer_names(model: nn.Module) -> list[str]:
    """Names of every sub-module, as ``model.named_modules()`` and ``lenet2vit summary`` give them."""
    return [n for n, _ in model.named_modules() if n]


def get_layer(model: nn.Module, name: str) -> nn.Module:
    """The sub-module called ``name`` (e.g. ``"layer4"``, ``"features.3"``), or an error naming close ones."""
    modules = dict(model.named_modules())
    if name in modules and name:
        return modules[name]
    close = difflib.get_close_matches(name, list(modules), n=4, cutoff=0.4)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    model_name = getattr(model, "model_name", type(model).__name__)
    raise ExplainError(
        f"{model_name} has no layer {name!r}.{hint} `lenet2vit summary {model_name} --depth 3` lists the layer names"
    )


def tokens_to_grid(t: torch.Tensor, prefix: int = 1) -> torch.Tensor:
    """Token sequences ``(B, prefix + g*g, D)`` -> maps ``(B, D, g, g)`` (prefix tokens dropped).

    4-D tensors are returned unchanged. Raises :class:`ExplainError` when the token count
    minus the prefix is not a square number.
    """
    if t.ndim == 4:
        return t
    if t.ndim != 3:
        raise ExplainError(f"cannot show a layer output of shape {tuple(t.shape)} as maps; pick a convolutional "
                           "layer (4-D output) or a transformer block (tokens)")
    b, n, d = t.shape
    g = math.isqrt(n - prefix)
    if g * g != n - prefix:
        raise ExplainError(f"layer output has {n} tokens; {n} - {prefix} prefix token(s) is not a square grid")
    return t[:, prefix:].transpose(1, 2).reshape(b, d, g, g)


def upsample(m: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Bilinearly resize a map ``(h, w)`` (or ``(k, h, w)``) to ``size``."""
    size = (size, size) if isinstance(size, int) else tuple(size)
    squeeze = m.ndim == 2
    t = m[None, None] if squeeze else m[None]
    out = F.interpolate(t.float(), size=size, mode="bilinear", align_corners=False)[0]
    return out[0] if squeeze else out


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Class probabilities ``(N, classes)`` of a normalised batch (model in eval mode)."""
    model.eval()
    dev = model_device(model)
    return torch.cat([F.softmax(model(x[i:i + batch_size].to(dev)).float(), dim=1).cpu()
                      for i in range(0, len(x), batch_size)])


@contextlib.contextmanager
def capture(module: nn.Module) -> Iterator[dict]:
    """Record ``module``'s output (4-D maps or tokens) during a forward pass; hook removed on exit.

    The hook hands a clone downstream so that in-place operations after the module (e.g.
    ``ReLU(inplace=True)``) leave the recorded tensor and its autograd history intact.
    """
    store: dict = {}

    def hook(_m, _inp, out):
        t = out[0] if isinstance(out, (tuple, list)) else out
        store["out"] = t
        return out.clone() if isinstance(out, torch.Tensor) else out

    handle = module.register_forward_hook(hook)
    try:
        yield store
    finally:
        handle.remove()


# ----------------------------------------------------------------------------- filters


def first_conv(model: nn.Module) -> tuple[str, nn.Conv2d]:
    """Name and module of the first ``nn.Conv2d`` (for a ViT, its patch projection)."""
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            return name, m
    raise ExplainError(f"{getattr(model, 'model_name', type(model).__name__)} has no convolution to show filters of")


def filters(model: nn.Module, nrow: int | None = None, padding: int = 1) -> torch.Tensor:
    """The first conv layer's kernels as one image grid ``(3 or 1, H, W)`` with values in [0, 1].

    Each kernel is min-max normalised on its own (as in AlexNet's Fig. 3). Kernels with 3 input
    channels are shown in colour, others in grey (more than 3 inputs: their mean).
    """
    from torchvision.utils import make_grid

    _, conv = first_conv(model)
    w = conv.weight.detach().float().cpu()  # (out, in/groups, k, k)
    if w.shape[1] not in (1, 3):
        w = w.mean(dim=1, keepdim=True)
    flat = w.flatten(1)
    lo, hi = flat.min(1).values.view(-1, 1, 1, 1), flat.max(1).values.view(-1, 1, 1, 1)
    w = (w - lo) / (hi - lo).clamp_min(1e-12)
    nrow = nrow or math.ceil(math.sqrt(len(w)))
    grid = make_grid(w, nrow=nrow, padding=padding, pad_value=1.0)  # always 3 channels
    return grid if w.shape[1] == 3 else grid[:1]


# ----------------------------------------------------------------------------- feature maps


class FeatureMaps(NamedTuple):
    """The ``top`` channels of one layer for one image: maps ``(k, h, w)`` and their channel indices."""

    maps: torch.Tensor
    channels: torch.Tensor
    mean_activation: torch.Tensor
    num_channels: int


@torch.no_grad()
def feature_maps(model: nn.Module, x: torch.Tensor, layer: str, top: int = 16, prefix: int = 1) -> FeatureMaps:
    """Activations of the layer ``layer`` for one image: the ``top`` channels by mean activation.

    Works for any module with a 4-D output and for transformer blocks (token outputs are laid
    out on their square grid after dropping ``prefix`` class tokens). Returns
    :class:`FeatureMaps`, sorted strongest first.
    """
    x = as_batch(x)
    module = get_layer(model, layer)
    model.eval()
    with capture(module) as store:
        model(x.to(model_device(model)))
    if "out" not in store:
        raise ExplainError(f"layer {layer!r} did not run in the forward pass; pick another layer")
    a = tokens_to_grid(store["out"].detach(), prefix)[0].float().cpu()  # (C, h, w)
    means = a.mean(dim=(1, 2))
    order = means.argsort(descending=True)[: max(1, top)]
    return FeatureMaps(a[order], order, means[order], a.shape[0])


# ----------------------------------------------------------------------------- occlusion


def _positions(size: int, patch: int, stride: int) -> list[int]:
    last = size - patch
    pos = list(range(0, last + 1, stride))
    if pos[-1] != last:  # let the last patch touch the border so every pixel is covered
        pos.append(last)
    return pos


@torch.no_grad()
def occlusion(
    model: nn.Module,
    x: torch.Tensor,
    target: int | None = None,
    patch: int = 8,
    stride: int = 4,
    batch_size: int = 64,
    fill: float = 0.0,
) -> torch.Tensor:
    """Occlusion sensitivity (Zeiler and Fergus 2014): an ``(H, W)`` map of probability drops.

    A ``patch`` x ``patch`` square of value ``fill`` (0: the data set mean once normalised,
    i.e. grey) slides over the image with ``stride``; each pixel gets the mean drop
    ``p(target | image) - p(target | occluded image)`` over the patches that cover it.
    ``target`` defaults to the predicted class. The occluded copies run ``batch_size`` at once.
    """
    x = as_batch(x)
    _, _, H, W = x.shape
    if not 1 <= patch <= min(H, W):
        raise ExplainError(f"occlusion patch {patch} does not fit a {H}x{W} image; pick 1..{min(H, W)}")
    if stride < 1:
        raise ExplainError(f"occlusion stride must be >= 1, got {stride}")
    model.eval()
    dev = model_device(model)
    x = x.to(dev)
    base = F.softmax(model(x).float(), dim=1)[0]
    if target is None:
        target = int(base.argmax())
    if not 0 <= target < base.numel():
        raise ExplainError(f"target class {target} is out of range for a {base.numel()}-class model")
    boxes = [(i, j) for i in _positions(H, patch, stride) for j in _positions(W, patch, stride)]
    total = torch.zeros(H, W, device=dev)
    count = torch.zeros(H, W, device=dev)
    rows = torch.arange(H, device=dev).view(1, H, 1)
    cols = torch.arange(W, device=dev).view(1, 1, W)
    for start in range(0, len(boxes), batch_size):
        chunk = torch.tensor(boxes[start:start + batch_size], device=dev)  # (n, 2)
        top, left = chunk[:, 0].view(-1, 1, 1), chunk[:, 1].view(-1, 1, 1)
        mask = (rows >= top) & (rows < top + patch) & (cols >= left) & (cols < left + patch)  # (n, H, W)
        copies = torch.where(mask[:, None], torch.full_like(x, fill), x)  # (n, C, H, W)
        p = F.softmax(model(copies).float(), dim=1)[:, target]  # (n,)
        drop = base[target] - p
        total += (mask * drop.view(-1, 1, 1)).sum(0)
        count += mask.sum(0)
    return (total / count.clamp_min(1)).cpu()


# ----------------------------------------------------------------------------- Grad-CAM


def _attention_block_norm(model: nn.Module) -> str | None:
    """For a transformer: the LayerNorm feeding the last attention (timm / grad-cam convention)."""
    attns = [n for n, m in model.named_modules()
             if n and type(m).__name__.endswith("Attention") and any(isinstance(s, nn.Softmax) for s in m.modules())]
    if not attns:  # the same test as attention.attention_modules: an *Attention module with a softmax
        return None
    attn = attns[-1]
    block = attn.rsplit(".", 1)[0] if "." in attn else ""
    norm = f"{block}.norm1" if block else "norm1"
    return norm if norm in dict(model.named_modules()) else attn


@torch.no_grad()
def default_gradcam_layer(model: nn.Module, x: torch.Tensor) -> str:
    """The layer Grad-CAM uses when none is named.

    For CNNs: the module that finishes last among those with a 4-D output larger than 1x1
    (adaptive pooling layers excluded), i.e. the last convolutional stage before the head (``layer4`` of a ResNet,
    ``features`` of AlexNet/VGG/EfficientNet). For transformers: the LayerNorm before the last
    attention (``blocks.11.norm1``), whose patch tokens still carry the gradient of the class
    token.
    """
    name = _attention_block_norm(model)
    if name is not None:
        return name
    names = {m: n for n, m in model.named_modules() if n}
    order: list[str] = []

    head_pools = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)  # the head's pooling, e.g. AlexNet's 6x6 avgpool

    def hook(m, _inp, out):
        if isinstance(out, torch.Tensor) and out.ndim == 4 and out.shape[-1] * out.shape[-2] > 1:
            if not isinstance(m, head_pools):
                order.append(names[m])

    handles = [m.register_forward_hook(hook) for m in names]
    try:
        model.eval()
        model(as_batch(x).to(model_device(model)))
    finally:
        for h in handles:
            h.remove()
    if not order:
        raise ExplainError("found no layer with spatial maps larger than 1x1 for Grad-CAM; use a larger input or "
                           "--method occlusion")
    return order[-1]


def gradcam(
    model: nn.Module,
    x: torch.Tensor,
    layer: str | None = None,
    target: int | None = None,
    prefix: int = 1,
) -> torch.Tensor:
    """Grad-CAM (Selvaraju et al. 2017) at ``layer`` for one image, upsampled to ``(H, W)``.

    ``ReLU(sum_c w_c A_c)`` with ``w_c`` the spatial mean of ``d score_target / d A_c`` (the
    class score is the logit, before softmax, as in the paper). ``layer`` defaults to
    :func:`default_gradcam_layer`; ``target`` to the predicted class. Token outputs of a
    transformer layer are laid out on their grid first. Values are not rescaled.
    """
    x = as_batch(x)
    model.eval()
    name = layer or default_gradcam_layer(model, x)
    module = get_layer(model, name)
    dev = model_device(model)
    with torch.enable_grad(), capture(module) as store:
        xin = x.to(dev).detach().requires_grad_(True)  # keeps a graph even when weights are frozen
        logits = model(xin)
        if "out" not in store:
            raise ExplainError(f"layer {name!r} did not run in the forward pass; pick another layer")
        if target is None:
            target = int(logits[0].argmax())
        if not 0 <= target < logits.shape[1]:
            raise ExplainError(f"target class {target} is out of range for a {logits.shape[1]}-class model")
        act = store["out"]
        (grad,) = torch.autograd.grad(logits[0, target], act)
    act, grad = tokens_to_grid(act.detach(), prefix), tokens_to_grid(grad.detach(), prefix)
    weights = grad.float().mean(dim=(2, 3), keepdim=True)  # (1, C, 1, 1)
    cam = F.relu((weights * act.float()).sum(dim=1))[0]  # (h, w)
    return upsample(cam.cpu(), x.shape[-2:])
