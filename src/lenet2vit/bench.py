"""Speed and memory of models: images/s, ms per step, achieved GFLOP/s, peak memory.

Like timm's ``benchmark.py`` for our registry. Warm-up iterations are excluded; on CUDA the
time comes from device events, on CPU from ``perf_counter``. A training step counts as three
forward passes of FLOPs (forward, and backward for activations and weights). The machine's
own ceiling - the achieved GFLOP/s of one large 3x3 convolution in the same precision and
memory layout - is measured beside the models, so each figure reads as a fraction of what the
hardware can do.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from lenet2vit.runtime import autocast, peak_memory_mb, reset_peak_memory, resolve_device, use_channels_last
from lenet2vit.profile import count_macs, count_params
from lenet2vit.registry import check_input, create_model, model_info

__all__ = ["BenchResult", "bench_model", "conv_ceiling", "PRECISIONS"]

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class BenchResult:
    model: str
    mode: str
    batch_size: int
    input_size: int
    device: str
    precision: str
    channels_last: bool
    compile: bool
    images_per_s: float
    ms_per_step: float
    params: int
    macs: int
    gflops: float  # achieved GFLOP/s (2 FLOPs per MAC; training counts 3 forward passes)
    peak_memory_mb: float
    compile_s: float = 0.0
    ceiling_gflops: float | None = None

    @property
    def fraction_of_ceiling(self) -> float | None:
        return self.gflops / self.ceiling_gflops if self.ceiling_gflops else None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["fraction_of_ceiling"] = self.fraction_of_ceiling
        return d


class _Timer:
    """Wall time on CPU, CUDA events on GPU."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"

    def __enter__(self):
        if self.cuda:
            self.start, self.end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            self.start.record()
        else:
            self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        if self.cuda:
            self.end.record()
            torch.cuda.synchronize()
            self.seconds = self.start.elapsed_time(self.end) / 1000
        else:
            self.seconds = time.perf_counter() - self.t0


def conv_ceiling(device: str | torch.device = "auto", precision: str = "fp32", channels_last: bool = True,
                 batch: int = 32, channels: int = 256, size: int = 28, iters: int = 10, mode: str = "infer") -> float:
    """Achieved GFLOP/s of one large 3x3 convolution - the machine's practical limit.

    ``mode="infer"`` times the forward pass; ``mode="train"`` forward and backward (input and
    weight gradients), counted as three forward passes like a training step.
    """
    dev = resolve_device(str(device))
    dtype = PRECISIONS[precision]
    conv = nn.Conv2d(channels, channels, 3, padding=1, bias=False).to(dev)
    x = torch.randn(batch, channels, size, size, device=dev)
    if channels_last:
        conv, x = conv.to(memory_format=torch.channels_last), x.to(memory_format=torch.channels_last)
    flops = 2 * batch * channels * channels * 9 * size * size
    if mode == "train":
        x.requires_grad_(True)

        def step():
            with autocast(dev, dtype):
                y = conv(x)
            y.backward(torch.ones_like(y))

        flops *= 3
        ctx = contextlib.nullcontext()
    else:

        def step():
            with autocast(dev, dtype):
                conv(x)

        ctx = torch.inference_mode()
    with ctx:
        for _ in range(3):
            step()
        with _Timer(dev) as t:
            for _ in range(iters):
                step()
    return flops * iters / t.seconds / 1e9


def bench_model(
    name: str,
    mode: str = "infer",
    *,
    batch_size: int = 64,
    input_size: int | None = None,
    device: str = "auto",
    precision: str = "fp32",
    channels_last: bool | None = None,
    compile: bool = False,
    warmup: int = 3,
    iters: int = 10,
    num_classes: int | None = None,
    model: nn.Module | None = None,
) -> BenchResult:
    """Time ``iters`` inference or training steps of a model after ``warmup`` steps.

    ``channels_last=None`` uses the engine's rule (on for CNNs). ``model`` may pass a ready
    module (e.g. torchvision's, to compare implementations under the same settings).
    """
    if mode not in ("infer", "train"):
        raise ValueError(f"mode must be infer or train, got {mode!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    dev = resolve_device(device)
    dtype = PRECISIONS[precision]
    if model is None:
        info = model_info(name)
        input_size = input_size or info.input_size
        check_input(name, input_size, info.in_chans, num_classes)
        model = create_model(name, num_classes=num_classes)
        in_chans = info.in_chans
    else:
        input_size = input_size or 224
        first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
        in_chans = first.in_channels if first is not None else 3
    cl = use_channels_last("auto", model) if channels_last is None else channels_last
    params = count_params(model)
    macs = count_macs(model, input_size, in_chans)
    model = model.to(dev, memory_format=torch.channels_last if cl else torch.preserve_format)
    x = torch.randn(batch_size, in_chans, input_size, input_size, device=dev)
    if cl:
        x = x.to(memory_format=torch.channels_last)
    n_out = 0
    if mode == "train":  # the class count, from two images in eval mode (BatchNorm refuses one 1x1 map in training)
        model.eval()
        with torch.no_grad():
            out = model(x[:2])
        n_out = (out[0] if isinstance(out, tuple) else out).shape[-1]
    y = torch.randint(0, max(n_out, 1), (batch_size,), device=dev)

    reset_peak_memory(dev)
    run = torch.compile(model) if compile else model
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9) if mode == "train" else None

    def step():
        if mode == "infer":
            with torch.inference_mode(), autocast(dev, dtype):
                run(x)
        else:
            with autocast(dev, dtype):
                out = run(x)
                out = out[0] if isinstance(out, tuple) else out
                loss = F.cross_entropy(out.float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    model.train(mode == "train")
    with _Timer(dev) as first:
        step()
    for _ in range(max(warmup - 1, 0)):
        step()
    with _Timer(dev) as t:
        for _ in range(iters):
            step()
    per_step = t.seconds / iters
    flops = 2 * macs * batch_size * (3 if mode == "train" else 1)
    return BenchResult(
        model=name, mode=mode, batch_size=batch_size, input_size=input_size, device=str(dev), precision=precision,
        channels_last=cl, compile=compile, images_per_s=batch_size / per_step, ms_per_step=per_step * 1000,
        params=params, macs=macs, gflops=flops / per_step / 1e9, peak_memory_mb=peak_memory_mb(dev),
        compile_s=max(first.seconds - per_step, 0.0) if compile else 0.0,
    )
