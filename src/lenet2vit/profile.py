"""Static figures of a model: parameters, MACs and a per-layer summary table.

MACs are counted with :class:`torch.utils.flop_counter.FlopCounterMode` (a multiply-add is two
FLOPs, so MACs = FLOPs / 2) over one forward pass of a single image, on the ``meta`` device
where possible, so even ViT-L costs no real compute. Convolutions, linear layers and the
attention matmuls (plain or fused) are all counted; element-wise ops are not, as in the
published figures.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.utils import flop_counter
from torch.utils.flop_counter import FlopCounterMode

from lenet2vit.registry import create_model, model_info

__all__ = ["count_params", "count_macs", "model_macs", "summary", "LayerRow", "format_summary"]


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (shared tensors counted once)."""
    seen, total = set(), 0
    for p in model.parameters():
        if id(p) in seen or (trainable_only and not p.requires_grad):
            continue
        seen.add(id(p))
        total += p.numel()
    return total


def _input(model: nn.Module, input_size: int, in_chans: int | None, device) -> torch.Tensor:
    if in_chans is None:
        first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
        in_chans = first.in_channels if first is not None else 3
    return torch.zeros(1, in_chans, input_size, input_size, device=device)


# Count the fused attention kernel of CPU in torch.utils.flop_counter: torch registers formulas
# only for the CUDA kernels, so FlopCounterMode would see no attention matmuls on CPU.
def _register_cpu_sdpa_flops() -> None:
    registry = getattr(flop_counter, "flop_registry", None)
    pairs = [
        ("_scaled_dot_product_flash_attention_for_cpu", "sdpa_flop"),
        ("_scaled_dot_product_flash_attention_for_cpu_backward", "sdpa_backward_flop"),
    ]
    for op_name, formula_name in pairs:
        op = getattr(torch.ops.aten, op_name, None)
        formula = getattr(flop_counter, formula_name, None)
        if registry is not None and op is not None and formula is not None and op not in registry:
            registry[op] = formula  # the formula torch uses for its CUDA flash-attention kernel


_register_cpu_sdpa_flops()  # every FLOP count goes through this module


def count_macs(model: nn.Module, input_size: int, in_chans: int | None = None) -> int:
    """Multiply-accumulates of one forward pass of a single ``input_size`` square image."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(_input(model, input_size, in_chans, device))
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2


def model_macs(name: str, input_size: int | None = None, num_classes: int | None = None, **kwargs) -> int:
    """MACs of a registered model, built on the meta device (no memory, no compute)."""
    info = model_info(name)
    with torch.device("meta"):
        model = create_model(name, num_classes=num_classes, **kwargs)
    return count_macs(model, input_size or info.input_size, info.in_chans)


@dataclass
class LayerRow:
    name: str
    kind: str
    output_shape: tuple[int, ...]
    params: int
    macs: int
    depth: int


def summary(model: nn.Module, input_size: int, in_chans: int | None = None, depth: int = 2) -> list[LayerRow]:
    """A torchinfo-like table: every module down to ``depth`` with its output shape, params and MACs.

    Module names are the ones ``explain --layer`` and ``load_weights`` use.
    """
    rows: dict[str, LayerRow] = {}
    hooks = []
    names = {m: n for n, m in model.named_modules()}

    def hook(module, _inp, out):
        name = names[module]
        t = out[0] if isinstance(out, (tuple, list)) else out
        shape = tuple(t.shape) if isinstance(t, torch.Tensor) else ()
        if name not in rows:
            rows[name] = LayerRow(name, type(module).__name__, shape, count_params(module), 0, name.count(".") + 1)

    for name, m in model.named_modules():
        if name and name.count(".") < depth:
            hooks.append(m.register_forward_hook(hook))
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with FlopCounterMode(display=False, depth=depth + 1) as counter, torch.no_grad():
            model(_input(model, input_size, in_chans, device))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    # FlopCounterMode keys modules as "<RootClass>.<name>" (name with dots).
    root = type(model).__name__
    flops = {k: sum(v.values()) for k, v in counter.get_flop_counts().items()}
    for name, row in rows.items():
        row.macs = flops.get(f"{root}.{name}", 0) // 2
    ordered = [rows[n] for n, _ in model.named_modules() if n in rows]
    ordered.append(LayerRow("(total)", root, (), count_params(model), counter.get_total_flops() // 2, 0))
    return ordered


def _human(n: float) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.2f}{unit}"
    return str(int(n))


def format_summary(rows: list[LayerRow]) -> str:
    """Render :func:`summary` rows as a fixed-width text table."""
    head = f"{'layer':<40} {'type':<22} {'output shape':<22} {'params':>12} {'MACs':>10}"
    lines = [head, "-" * len(head)]
    for r in rows:
        label = ("  " * max(r.depth - 1, 0) + r.name)[:40]
        shape = "x".join(map(str, r.output_shape)) if r.output_shape else ""
        lines.append(f"{label:<40} {r.kind[:22]:<22} {shape:<22} {r.params:>12,} {_human(r.macs):>10}")
    return "\n".join(lines)
