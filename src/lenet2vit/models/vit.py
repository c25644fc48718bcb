"""Vision Transformer (Dosovitskiy et al., 2020).

"An Image is Worth 16x16 Words: Transformers for Image Recognition at Scale", ICLR 2021
(arXiv 2010.11929). The image is cut into P x P patches, each patch is linearly projected to a
D-dimensional token (Eq. 1), a learnable class token is prepended and learned 1-D position
embeddings are added; L pre-norm Transformer encoder blocks (Eq. 2-3: LayerNorm -> multi-head
self-attention -> residual, LayerNorm -> 2-layer GELU MLP -> residual) follow, and the class
token after a final LayerNorm (Eq. 4) feeds a linear head.

Parameter names are timm's (``patch_embed.proj``, ``cls_token``, ``pos_embed``,
``blocks.N.attn.qkv`` ...) so its state_dicts load as they are; torchvision's ``vit_*``
state_dicts are renamed by :meth:`VisionTransformer.convert_state_dict`. The attention softmax
is its own module: a forward hook on ``blocks[i].attn.softmax`` records the attention maps
(B, heads, N, N), which is all attention rollout needs. Without such a hook the fused
``F.scaled_dot_product_attention`` kernel computes the same function faster.

Inputs of any size divisible by the patch are accepted: the position embeddings are resized
bicubically on the fly when the token grid differs from the native one (timm's
``dynamic_img_size``), and :func:`resize_pos_embed` adapts a loaded checkpoint to a model
built for another ``img_size`` (e.g. 224-trained weights into a 384 model, paper Sec. 3.2).

The hybrid (CNN feature map as the patch embedding, Sec. 3.1) is this same class with another
``patch_embed`` module; see ``models/hybrid.py``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, fields

import torch
import torch.nn as nn
import torch.nn.functional as F

from lenet2vit.layers import DropPath
from lenet2vit.registry import TORCHVISION, Count, family

__all__ = [
    "ViTConfig",
    "VIT_SIZES",
    "PatchEmbed",
    "Attention",
    "Mlp",
    "Block",
    "VisionTransformer",
    "resize_pos_embed",
    "vit_ti_16",
    "vit_s_16",
    "vit_b_16",
    "vit_b_32",
    "vit_l_16",
    "vit_ti_16_cifar",
    "vit_s_16_cifar",
]

PAPER = "An Image is Worth 16x16 Words: Transformers for Image Recognition at Scale"

# Model sizes (paper Table 1; Ti and S are from DeiT, Touvron et al. 2021, used by timm and
# "How to train your ViT?", Steiner et al. 2021).
#        (width D, depth L, heads, MLP size); the registrations below give each model's count
VIT_SIZES: dict[str, tuple[int, int, int, int]] = {
    "Ti": (192, 12, 3, 768),
    "S": (384, 12, 6, 1536),
    "B": (768, 12, 12, 3072),
    "L": (1024, 24, 16, 4096),
}


@dataclass(frozen=True)
class ViTConfig:
    """The sizes of one Vision Transformer.

    ``width``/``depth``/``heads``/``mlp_dim`` are a row of :data:`VIT_SIZES`; ``patch_size`` and
    ``img_size`` fix the native token grid (``img_size // patch_size`` per side) and so the
    number of position embeddings. ``dropout`` follows every dense layer except the qkv
    projection, and the position-embedding sum (paper Appendix B.1); ``attn_dropout`` drops attention
    weights and ``drop_path`` is the largest stochastic-depth rate, reached by the last block
    (both later additions, off by default like the paper).
    """

    width: int = 768
    depth: int = 12
    heads: int = 12
    mlp_dim: int = 3072
    patch_size: int = 16
    img_size: int = 224
    dropout: float = 0.0
    attn_dropout: float = 0.0
    drop_path: float = 0.0

    @classmethod
    def from_size(cls, size: str, **overrides) -> "ViTConfig":
        """The config of a :data:`VIT_SIZES` row ("Ti", "S", "B", "L") with fields overridden."""
        if size not in VIT_SIZES:
            raise ValueError(f"unknown ViT size {size!r}; choose one of {', '.join(VIT_SIZES)}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise TypeError(f"unknown ViT option(s) {', '.join(unknown)}; the options are {', '.join(sorted(known))}")
        width, depth, heads, mlp_dim = VIT_SIZES[size]
        return cls(**{**dict(width=width, depth=depth, heads=heads, mlp_dim=mlp_dim), **overrides})

    def __post_init__(self) -> None:
        if self.width % self.heads:
            raise ValueError(f"width {self.width} is not divisible by heads {self.heads}; pick sizes that divide")
        if self.img_size % self.patch_size:
            raise ValueError(
                f"img_size {self.img_size} is not divisible by patch_size {self.patch_size}; "
                f"use a multiple of {self.patch_size}"
            )


def _as_grid(grid: int | tuple[int, int]) -> tuple[int, int]:
    return (grid, grid) if isinstance(grid, int) else (int(grid[0]), int(grid[1]))


def resize_pos_embed(
    pos_embed: torch.Tensor,
    new_grid: int | tuple[int, int],
    num_prefix_tokens: int = 1,
    old_grid: int | tuple[int, int] | None = None,
) -> torch.Tensor:
    """Resize position embeddings ``(1, prefix + h*w, D)`` to another token grid.

    The first ``num_prefix_tokens`` rows (the class token's) are kept; the grid part is
    reshaped to ``old_grid`` (assumed square when not given), resized bicubically
    (align_corners=False, antialiased when shrinking, computed in float32: timm's
    ``resample_abs_pos_embed``) and flattened back. Returns the input unchanged when the
    grid already matches.
    """
    new_h, new_w = _as_grid(new_grid)
    n_grid = pos_embed.shape[1] - num_prefix_tokens
    if old_grid is None:
        side = math.isqrt(n_grid)
        if side * side != n_grid:
            raise ValueError(
                f"pos_embed has {n_grid} grid tokens, not a square number; pass old_grid=(h, w) explicitly"
            )
        old_grid = side
    old_h, old_w = _as_grid(old_grid)
    if old_h * old_w != n_grid:
        raise ValueError(f"old_grid {old_h}x{old_w} does not match the {n_grid} grid tokens of pos_embed")
    if (old_h, old_w) == (new_h, new_w):
        return pos_embed
    prefix, grid = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
    dim = pos_embed.shape[-1]
    grid = grid.float().reshape(1, old_h, old_w, dim).permute(0, 3, 1, 2)  # (1, D, h, w)
    grid = F.interpolate(grid, size=(new_h, new_w), mode="bicubic", align_corners=False, antialias=True)
    grid = grid.permute(0, 2, 3, 1).reshape(1, new_h * new_w, dim).to(pos_embed.dtype)
    return torch.cat([prefix, grid], dim=1)


class PatchEmbed(nn.Module):
    """Split the image into P x P patches and project each to D dims (paper Eq. 1).

    A convolution with kernel = stride = P is exactly "flatten each patch, multiply by E".
    Returns the token map ``(B, D, H/P, W/P)``; ``grid_size`` is the map at ``img_size``.
    """

    def __init__(self, img_size: int = 224, patch_size: int = 16, in_chans: int = 3, embed_dim: int = 768) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.grid_size = (img_size // patch_size, img_size // patch_size)
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        # torchvision's init: truncated normal with std sqrt(1 / fan_in) (LeCun normal), zero bias.
        fan_in = in_chans * patch_size * patch_size
        nn.init.trunc_normal_(self.proj.weight, std=math.sqrt(1 / fan_in))
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        p = self.patch_size
        if h % p or w % p:
            raise ValueError(
                f"input {h}x{w} is not divisible by the patch size {p}; resize or crop to a multiple of {p}"
            )
        return self.proj(x)  # (B, D, H/P, W/P)


def _has_hooks(module: nn.Module) -> bool:
    """True when someone listens to ``module``'s forward (its own or global forward hooks)."""
    glob = nn.modules.module
    return bool(
        module._forward_hooks
        or module._forward_pre_hooks
        or getattr(glob, "_global_forward_hooks", None)
        or getattr(glob, "_global_forward_pre_hooks", None)
    )


class Attention(nn.Module):
    """Multi-head self-attention (paper Appendix A, Eq. 5-8).

    ``softmax(q k^T / sqrt(d)) v`` per head, heads concatenated and projected. The softmax is the
    submodule ``self.softmax``: register a forward hook on it to record the maps
    ``(B, heads, N, N)``. When no hook listens (and ``fused`` is True) the same function runs as
    one ``F.scaled_dot_product_attention`` call; the two paths agree to float rounding.
    """

    def __init__(self, dim: int, heads: int, attn_drop: float = 0.0, proj_drop: float = 0.0) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.scale = self.head_dim**-0.5
        self.fused = True  # set False to always take the explicit path
        self.qkv = nn.Linear(dim, dim * 3)  # q, k, v stacked in that order, as torchvision's in_proj
        self.softmax = nn.Softmax(dim=-1)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        # torchvision's nn.MultiheadAttention init: Xavier-uniform in_proj, zero biases.
        nn.init.xavier_uniform_(self.qkv.weight)
        nn.init.zeros_(self.qkv.bias)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (B, heads, N, head_dim)
        if self.fused and not _has_hooks(self.softmax):
            p = self.attn_drop.p if self.training else 0.0
            x = F.scaled_dot_product_attention(q, k, v, dropout_p=p)  # (B, heads, N, head_dim)
        else:
            attn = self.softmax((q * self.scale) @ k.transpose(-2, -1))  # (B, heads, N, N)
            x = self.attn_drop(attn) @ v  # (B, heads, N, head_dim)
        x = x.transpose(1, 2).reshape(B, N, C)  # heads concatenated
        return self.proj_drop(self.proj(x))


class Mlp(nn.Module):
    """The block's MLP: Linear -> GELU -> Linear with dropout after each dense layer."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.drop1 = nn.Dropout(drop)
        self.fc2 = nn.Linear(hidden, dim)
        self.drop2 = nn.Dropout(drop)
        for fc in (self.fc1, self.fc2):  # torchvision's MLPBlock init
            nn.init.xavier_uniform_(fc.weight)
            nn.init.normal_(fc.bias, std=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop2(self.fc2(self.drop1(self.act(self.fc1(x)))))


class Block(nn.Module):
    """Pre-norm Transformer encoder block (paper Eq. 2-3)."""

    def __init__(
        self, dim: int, heads: int, mlp_dim: int, drop: float = 0.0, attn_drop: float = 0.0, drop_path: float = 0.0
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads, attn_drop=attn_drop, proj_drop=drop)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, mlp_dim, drop=drop)
        self.drop_path = DropPath(drop_path)  # stochastic depth: not in the paper (DeiT's recipe)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


# torchvision's VisionTransformer parameter names -> ours (timm's).
_TORCHVISION_NAMES: list[tuple[str, str]] = [
    (r"^conv_proj\.", "patch_embed.proj."),
    (r"^class_token$", "cls_token"),
    (r"^encoder\.pos_embedding$", "pos_embed"),
    (r"^encoder\.layers\.encoder_layer_(\d+)\.ln_1\.", r"blocks.\1.norm1."),
    (r"^encoder\.layers\.encoder_layer_(\d+)\.self_attention\.in_proj_(weight|bias)$", r"blocks.\1.attn.qkv.\2"),
    (r"^encoder\.layers\.encoder_layer_(\d+)\.self_attention\.out_proj\.", r"blocks.\1.attn.proj."),
    (r"^encoder\.layers\.encoder_layer_(\d+)\.ln_2\.", r"blocks.\1.norm2."),
    (r"^encoder\.layers\.encoder_layer_(\d+)\.mlp\.(0|linear_1)\.", r"blocks.\1.mlp.fc1."),
    (r"^encoder\.layers\.encoder_layer_(\d+)\.mlp\.(3|linear_2)\.", r"blocks.\1.mlp.fc2."),
    (r"^encoder\.ln\.", "norm."),
    (r"^heads\.head\.", "head."),
]


class VisionTransformer(nn.Module):
    """ViT: patch embedding, class token, position embeddings, L blocks, LayerNorm, linear head.

    ``patch_embed`` replaces the linear patch projection with any module that maps an image to
    a token map ``(B, width, h, w)`` and has a ``grid_size`` attribute (the hybrid's CNN, paper
    Sec. 3.1); ``in_chans`` is then that module's business. The head reads the class token.
    """

    def __init__(
        self,
        config: ViTConfig,
        num_classes: int = 1000,
        in_chans: int = 3,
        patch_embed: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        D = self.num_features = config.width
        if patch_embed is None:
            patch_embed = PatchEmbed(config.img_size, config.patch_size, in_chans, D)
        self.patch_embed = patch_embed
        self.grid_size: tuple[int, int] = tuple(self.patch_embed.grid_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D))  # torchvision: zeros
        self.pos_embed = nn.Parameter(torch.empty(1, 1 + self.grid_size[0] * self.grid_size[1], D))
        nn.init.normal_(self.pos_embed, std=0.02)  # torchvision: N(0, 0.02)
        self.pos_drop = nn.Dropout(config.dropout)
        rates = [config.drop_path * i / max(config.depth - 1, 1) for i in range(config.depth)]  # linear rule
        self.blocks = nn.Sequential(
            *[
                Block(D, config.heads, config.mlp_dim, config.dropout, config.attn_dropout, rates[i])
                for i in range(config.depth)
            ]
        )
        self.norm = nn.LayerNorm(D, eps=1e-6)
        self.head = self._new_head(num_classes)

    def _new_head(self, num_classes: int) -> nn.Module:
        if num_classes <= 0:
            return nn.Identity()
        head = nn.Linear(self.num_features, num_classes)
        # Truncated normal (0.02) as timm: torchvision and the paper's fine-tuning zero the head,
        # which leaves every other parameter without gradient on the first step.
        nn.init.trunc_normal_(head.weight, std=0.02)
        nn.init.zeros_(head.bias)
        return head

    def pos_embed_for(self, grid: tuple[int, int]) -> torch.Tensor:
        """Position embeddings for a token grid, resized from the native grid when it differs."""
        if tuple(grid) == self.grid_size:
            return self.pos_embed
        return resize_pos_embed(self.pos_embed, grid, num_prefix_tokens=1, old_grid=self.grid_size)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Tokens after the last block and the final LayerNorm, class token first: (B, 1+N, D)."""
        x = self.patch_embed(x)  # (B, D, h, w)
        B, _, h, w = x.shape
        x = x.flatten(2).transpose(1, 2)  # (B, N, D), N = h*w
        x = torch.cat([self.cls_token.expand(B, -1, -1), x], dim=1)  # (B, 1+N, D)
        x = self.pos_drop(x + self.pos_embed_for((h, w)))
        x = self.blocks(x)
        return self.norm(x)  # (B, 1+N, D)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Class-token representation (``pre_logits=True``) or the head's logits."""
        x = x[:, 0]  # class token, (B, D)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        """The final linear layer."""
        return self.head

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the head with a freshly initialised one of ``num_classes`` outputs (0: none)."""
        self.head = self._new_head(num_classes).to(device=self.pos_embed.device, dtype=self.pos_embed.dtype)

    def convert_state_dict(self, state_dict: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
        """Rename a torchvision / timm state_dict to ours and fit its position embeddings.

        torchvision names (``conv_proj``, ``encoder.layers.encoder_layer_i.self_attention
        .in_proj_weight`` ...) are mapped by the table ``_TORCHVISION_NAMES``; timm's are ours.
        A ``pos_embed`` trained for another grid (e.g. 224 px weights into an ``img_size=384``
        model) is resized with :func:`resize_pos_embed`.
        """
        out = {}
        for key, value in state_dict.items():
            if source == "torchvision":
                for pattern, repl in _TORCHVISION_NAMES:
                    key, n = re.subn(pattern, repl, key)
                    if n:
                        break
            out[key] = value
        pe = out.get("pos_embed")
        if pe is not None and pe.ndim == 3 and pe.shape != self.pos_embed.shape and pe.shape[-1] == self.num_features:
            n_grid = pe.shape[1] - 1
            if math.isqrt(n_grid) ** 2 == n_grid:  # otherwise leave it for load_weights to report
                out["pos_embed"] = resize_pos_embed(pe, self.grid_size, num_prefix_tokens=1)
        return out


def _vit(size: str, patch_size: int, num_classes: int, in_chans: int, **kwargs) -> VisionTransformer:
    kwargs.setdefault("patch_size", patch_size)
    return VisionTransformer(ViTConfig.from_size(size, **kwargs), num_classes, in_chans)


# CIFAR forms: a 16-px patch leaves a 32x32 image 2x2 = 4 tokens, so they use 4-px patches
# (8x8 = 64 tokens), the usual choice for ViTs trained from scratch on CIFAR. The name keeps the
# ImageNet model's (`<name>_cifar`) so `--form cifar` finds it.


def _block_params(width: int, mlp_dim: int) -> int:
    """One encoder block: qkv and output projections, the MLP's two dense layers, two LayerNorms."""
    attn = (width * 3 * width + 3 * width) + (width * width + width)
    mlp = (width * mlp_dim + mlp_dim) + (mlp_dim * width + width)
    return attn + mlp + 2 * (2 * width)


def vit_count(size: str, embed: dict[str, int], tokens: int, num_classes: int, depth: int | None = None,
              note: str = "") -> Count:
    """The count of a ViT of a :data:`VIT_SIZES` row, term by term: the patch embedding's ``embed``
    terms, the class token, ``tokens`` position embeddings, ``depth`` blocks (the row's unless
    given), the final LayerNorm and a ``num_classes`` head."""
    width, size_depth, _, mlp_dim = VIT_SIZES[size]
    depth = size_depth if depth is None else depth
    block = _block_params(width, mlp_dim)
    return Count.derived({
        **embed,
        "class token": width,
        f"position embedding, {tokens} tokens x {width}": tokens * width,
        f"{depth} blocks x {block:,}": depth * block,
        "final LayerNorm": 2 * width,
        f"head {width}x{num_classes}": width * num_classes + num_classes,
    }, note=note)


def _cifar_count(size: str, patch: int, img_size: int) -> Count:
    width = VIT_SIZES[size][0]
    embed = {f"patch embedding, 3x{patch}x{patch} -> {width}": 3 * patch * patch * width + width}
    return vit_count(size, embed, tokens=1 + (img_size // patch) ** 2, num_classes=10,
                     note=f"ViT-{size} with {patch}-px patches at {img_size} px")


register = family("ViT", paper=PAPER, year=2020)


@register(input_size=224, params=Count.published(5_717_416, "timm vit_tiny_patch16_224"),
          reference=("timm", "vit_tiny_patch16_224"), cifar_form="vit_ti_16_cifar", min_input_size=16)
def vit_ti_16(num_classes: int = 1000, in_chans: int = 3, **kwargs) -> VisionTransformer:
    """ViT-Ti/16: D=192, 12 blocks, 3 heads (DeiT-Ti size)."""
    return _vit("Ti", 16, num_classes, in_chans, **kwargs)


@register(input_size=224, params=Count.published(22_050_664, "timm vit_small_patch16_224"),
          reference=("timm", "vit_small_patch16_224"), cifar_form="vit_s_16_cifar", min_input_size=16)
def vit_s_16(num_classes: int = 1000, in_chans: int = 3, **kwargs) -> VisionTransformer:
    """ViT-S/16: D=384, 12 blocks, 6 heads (DeiT-S size)."""
    return _vit("S", 16, num_classes, in_chans, **kwargs)


@register(input_size=224,
          params=Count.published(86_567_656, TORCHVISION.format("vit_b_16") + "; the paper's Table 1 rounds to 86M"),
          reference=("torchvision", "vit_b_16"), min_input_size=16)
def vit_b_16(num_classes: int = 1000, in_chans: int = 3, **kwargs) -> VisionTransformer:
    """ViT-B/16: D=768, 12 blocks, 12 heads, 16-px patches (paper Table 1)."""
    return _vit("B", 16, num_classes, in_chans, **kwargs)


@register(input_size=224, params=Count.published(88_224_232, TORCHVISION.format("vit_b_32")),
          reference=("torchvision", "vit_b_32"), min_input_size=32)
def vit_b_32(num_classes: int = 1000, in_chans: int = 3, **kwargs) -> VisionTransformer:
    """ViT-B/32: D=768, 12 blocks, 12 heads, 32-px patches (paper Table 1)."""
    return _vit("B", 32, num_classes, in_chans, **kwargs)


@register(input_size=224,
          params=Count.published(304_326_632, TORCHVISION.format("vit_l_16") + "; the paper's Table 1 says 307M"),
          reference=("torchvision", "vit_l_16"), min_input_size=16)
def vit_l_16(num_classes: int = 1000, in_chans: int = 3, **kwargs) -> VisionTransformer:
    """ViT-L/16: D=1024, 24 blocks, 16 heads, 16-px patches (paper Table 1)."""
    return _vit("L", 16, num_classes, in_chans, **kwargs)


@register(input_size=32, ref_num_classes=10, params=_cifar_count("Ti", patch=4, img_size=32), min_input_size=4)
def vit_ti_16_cifar(num_classes: int = 10, in_chans: int = 3, **kwargs) -> VisionTransformer:
    """ViT-Ti for CIFAR: D=192, 12 blocks, 3 heads, patch 4 at 32 px (64 tokens).

    The CIFAR form of ``vit_ti_16``: same width, depth and heads, but 4-px patches at
    ``img_size=32`` so the image becomes an 8x8 token grid instead of 2x2.
    """
    kwargs.setdefault("img_size", 32)
    return _vit("Ti", 4, num_classes, in_chans, **kwargs)


@register(input_size=32, ref_num_classes=10, params=_cifar_count("S", patch=4, img_size=32), min_input_size=4)
def vit_s_16_cifar(num_classes: int = 10, in_chans: int = 3, **kwargs) -> VisionTransformer:
    """ViT-S for CIFAR: D=384, 12 blocks, 6 heads, patch 4 at 32 px (64 tokens).

    The CIFAR form of ``vit_s_16``: same width, depth and heads, but 4-px patches at
    ``img_size=32`` so the image becomes an 8x8 token grid instead of 2x2.
    """
    kwargs.setdefault("img_size", 32)
    return _vit("S", 4, num_classes, in_chans, **kwargs)
