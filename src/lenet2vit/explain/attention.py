"""What a Vision Transformer attends to: per-head class-token attention and attention rollout.

The attention softmax of every block is its own ``nn.Softmax`` module (``blocks[i].attn.softmax``,
output ``(B, heads, N, N)``), so recording attention is a forward hook on it. The modules are
found generically - every ``nn.Softmax`` inside a module whose class name ends in
``Attention`` - so the hybrid ViT (tokens from a CNN grid) works the same way. Hooks exist
only inside :func:`record_attention`; while one listens, the model takes its explicit
(non-fused) attention path, which computes the same outputs.

Attention rollout (Abnar and Zuidema 2020, "Quantifying Attention Flow in Transformers"):
average the heads of each block, add the identity for the residual connection, renormalise
the rows and multiply the blocks' matrices from the first to the last. The class-token row of
the product, laid out on the token grid, says how much each patch flows into the class token.
"""

from __future__ import annotations

import contextlib
import math
from typing import Iterator, Sequence

import torch
import torch.nn as nn

from lenet2vit.explain.methods import ExplainError, as_batch, model_device, upsample

__all__ = [
    "attention_modules",
    "is_transformer",
    "record_attention",
    "attention_maps",
    "all_attention",
    "rollout",
    "rollout_map",
    "cls_grid",
    "NUM_PREFIX_TOKENS",
]

NUM_PREFIX_TOKENS = 1  # the class token


def attention_modules(model: nn.Module) -> list[tuple[str, nn.Softmax]]:
    """``(name, softmax)`` of every attention softmax, in block order.

    A softmax counts when it is an ``nn.Softmax`` inside a module whose class name ends in
    ``Attention``.
    """
    found: dict[int, tuple[str, nn.Softmax]] = {}
    for name, m in model.named_modules():
        if type(m).__name__.endswith("Attention"):
            for sub, s in m.named_modules():
                if isinstance(s, nn.Softmax) and id(s) not in found:
                    found[id(s)] = (f"{name}.{sub}" if name else sub, s)
    return list(found.values())


def is_transformer(model: nn.Module) -> bool:
    """True for models with attention softmax modules (ViT, hybrid)."""
    return bool(attention_modules(model))


def _require_attention(model: nn.Module) -> list[tuple[str, nn.Softmax]]:
    mods = attention_modules(model)
    if not mods:
        name = getattr(model, "model_name", type(model).__name__)
        raise ExplainError(f"{name} has no attention layers (it is a CNN); use --method gradcam or occlusion")
    return mods


@contextlib.contextmanager
def record_attention(model: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Context manager: a list that fills with each block's attention ``(B, heads, N, N)``.

    Forward hooks sit on the attention softmax modules only inside the ``with`` block and are
    removed on exit (also on error). Maps are detached; one forward pass appends one tensor
    per block, in block order.
    """
    mods = _require_attention(model)
    maps: list[torch.Tensor] = []

    def hook(_m, _inp, out):
        maps.append(out.detach())

    handles = [s.register_forward_hook(hook) for _, s in mods]
    try:
        yield maps
    finally:
        for h in handles:
            h.remove()


@torch.no_grad()
def all_attention(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """Every block's attention for one image: a list of ``(heads, N, N)`` CPU tensors."""
    x = as_batch(x)
    model.eval()
    with record_attention(model) as maps:
        model(x.to(model_device(model)))
    return [m[0].float().cpu() for m in maps]


def attention_maps(model: nn.Module, x: torch.Tensor, block: int = -1) -> torch.Tensor:
    """The class token's attention in block ``block`` (negative counts from the end): ``(heads, N)``.

    Row ``h`` is head ``h``'s distribution over all N tokens (class token first).
    """
    maps = all_attention(model, x)
    if not -len(maps) <= block < len(maps):
        raise ExplainError(f"block {block} does not exist; this model has blocks 0..{len(maps) - 1}")
    return maps[block][:, 0, :]


def rollout(attn_list: Sequence[torch.Tensor]) -> torch.Tensor:
    """Attention rollout ``(N, N)`` of a list of per-block attention maps (first block first).

    Each map is ``(heads, N, N)``, ``(1, heads, N, N)`` or already ``(N, N)``. Per block: mean
    over heads, plus identity (the residual path), rows renormalised to sum to 1; the result
    is ``A_L @ ... @ A_1``, whose row i is how much each input token flows into token i.
    """
    if not attn_list:
        raise ExplainError("rollout needs the attention maps of at least one block")
    result: torch.Tensor | None = None
    for a in attn_list:
        a = a.detach().float()
        if a.ndim == 4:
            if a.shape[0] != 1:
                raise ExplainError(f"rollout takes the maps of one image, got a batch of {a.shape[0]}")
            a = a[0]
        if a.ndim == 3:
            a = a.mean(0)  # average heads
        if a.ndim != 2 or a.shape[0] != a.shape[1]:
            raise ExplainError(f"attention maps must be square (N, N) per head, got {tuple(a.shape)}")
        a = a + torch.eye(a.shape[0], dtype=a.dtype, device=a.device)
        a = a / a.sum(dim=-1, keepdim=True)
        result = a if result is None else a @ result
    return result


def cls_grid(row: torch.Tensor, prefix: int = NUM_PREFIX_TOKENS) -> torch.Tensor:
    """A class-token row ``(..., N)`` without its prefix tokens, laid out as ``(..., g, g)``."""
    n = row.shape[-1] - prefix
    g = math.isqrt(n)
    if g * g != n:
        raise ExplainError(f"{row.shape[-1]} tokens minus {prefix} class token is not a square grid; "
                           "use a square input image")
    return row[..., prefix:].reshape(*row.shape[:-1], g, g)


def rollout_map(model: nn.Module, x: torch.Tensor, size: int | None = None) -> torch.Tensor:
    """Rollout of one image as the class token's map over patches: ``(g, g)``, or ``(size, size)``.

    ``size`` upsamples the token grid bilinearly to the image.
    """
    r = rollout(all_attention(model, x))
    m = cls_grid(r[0])
    return upsample(m, size) if size else m
