"""Inference throughput of our models vs torchvision's same architectures, in the same run.

For each pair (our ``resnet50``, ``vgg16``, ``vit_b_16`` and torchvision's) both models get
the same weights (torchvision's, loaded into ours - the outputs are checked to agree), the same
batch, input size, precision (autocast) and memory layout (channels_last for CNNs by the
engine's rule), and both run in ``eval()`` under ``torch.inference_mode()``. Timed runs are
interleaved - ours, theirs, theirs, ours, ... for ``--rounds`` rounds of ``--iters`` batches -
so drift in the machine's speed hits both alike. Prints images/s of each (median over rounds)
and the ratio ours / theirs per model, with the spread of the per-round ratios.

Defaults are sized for a CPU (batch 8, 224 px, a few batches per round); on a GPU raise them:

    python benchmarks/infer_vs_reference.py
    python benchmarks/infer_vs_reference.py --device cuda --batch-size 256 --precision bf16 --iters 20 --rounds 7
    python benchmarks/infer_vs_reference.py --models resnet50 --compile --out runs/infer_vs_ref.json
    python benchmarks/infer_vs_reference.py --smoke --models resnet50   # seconds: checks the script runs
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import statistics
import sys
import time
from pathlib import Path

import torch

from harness import apply_budget, describe_machine, figure, machine, script_main  # benchmarks/harness.py
import torch.nn as nn

# our registered name -> torchvision builder of the same architecture
REFERENCES = {"resnet50": "resnet50", "vgg16": "vgg16", "vit_b_16": "vit_b_16"}
TRANSFORMERS = {"vit_b_16"}  # built for the input size (a fixed token grid)

FULL = dict(batch_size=8, input_size=224, warmup=2, iters=3, rounds=5)
SMOKE = dict(batch_size=1, input_size=32, warmup=1, iters=1, rounds=2)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build_pair(name: str, input_size: int, seed: int) -> tuple[nn.Module, nn.Module]:
    """(ours, torchvision's) for ``name``, ours holding torchvision's (random) weights."""
    import torchvision

    from lenet2vit.registry import create_model
    from lenet2vit.weights import load_weights

    torch.manual_seed(seed)
    vit = name in TRANSFORMERS
    theirs = getattr(torchvision.models, REFERENCES[name])(**({"image_size": input_size} if vit else {}))
    ours = create_model(name, **({"img_size": input_size} if vit else {}))
    load_weights(ours, theirs.state_dict(), source="torchvision")
    return ours.eval(), theirs.eval()


def time_batches(model, x: torch.Tensor, iters: int, device: torch.device, dtype) -> float:
    """Seconds for ``iters`` forward passes of ``x`` (eval, inference mode, autocast ``dtype``)."""
    ctx = torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
    with torch.inference_mode(), ctx:
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(iters):
            model(x)
        _sync(device)
    return time.perf_counter() - t0


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=",".join(REFERENCES), help=f"comma-separated, from {', '.join(REFERENCES)}")
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, help="default 8")
    p.add_argument("--input-size", type=int, help="default 224")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], default="auto",
                   help="autocast dtype; auto = the engine's choice for the device (bf16 on GPUs and bf16-capable CPUs)")
    p.add_argument("--channels-last", choices=["auto", "on", "off"], default="auto",
                   help="auto = the engine's rule (on for CNNs, off for ViT), applied to both models")
    p.add_argument("--compile", action="store_true", help="torch.compile both models (compile time is not timed)")
    p.add_argument("--warmup", type=int, help="untimed batches per model first (default 2)")
    p.add_argument("--iters", type=int, help="timed batches per model per round (default 3)")
    p.add_argument("--rounds", type=int, help="interleaved rounds (default 5)")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="write every figure to this JSON file")
    p.add_argument("--smoke", action="store_true", help="tiny budget: checks the script runs, figures mean nothing")
    args = p.parse_args(argv)
    apply_budget(p, args, FULL, SMOKE, positive=("batch_size", "input_size", "iters", "rounds"))
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in args.models if m not in REFERENCES]
    if unknown or not args.models:
        p.error(f"--models: {', '.join(unknown) or 'none given'} - choose from {', '.join(REFERENCES)}")
    return args


def run(args: argparse.Namespace) -> dict:
    from lenet2vit.runtime import amp_name, resolve_amp, resolve_device, use_channels_last

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    dtype = resolve_amp(args.precision, device)
    precision = amp_name(dtype)
    env = machine(device)
    describe_machine(env)
    if args.smoke:
        print("smoke run: tiny budget, the figures below are not meaningful")
    print(f"settings: batch {args.batch_size}, {args.input_size}px, {precision}, eval + inference_mode, "
          f"{args.rounds} interleaved rounds of {args.iters} batches{', torch.compile' if args.compile else ''}")
    results = {}
    for name in args.models:
        print()
        ours, theirs = build_pair(name, args.input_size, args.seed)
        cl = use_channels_last(args.channels_last, ours)
        fmt = torch.channels_last if cl else torch.preserve_format
        x = torch.randn(args.batch_size, 3, args.input_size, args.input_size, generator=torch.Generator().manual_seed(0))
        with torch.inference_mode():  # same weights, same function: a check that we time the same work
            diff = (ours(x[:1]) - theirs(x[:1])).abs().max().item()
        x = x.to(device, memory_format=fmt)
        ours, theirs = ours.to(device, memory_format=fmt), theirs.to(device, memory_format=fmt)
        runners = {"ours": ours, "theirs": theirs}
        if args.compile:
            runners = {k: torch.compile(m) for k, m in runners.items()}
        for m in runners.values():
            if args.warmup:
                time_batches(m, x, args.warmup, device, dtype)
        per_round = {"ours": [], "theirs": []}
        for r in range(args.rounds):
            order = ("ours", "theirs") if r % 2 == 0 else ("theirs", "ours")
            for k in order:
                per_round[k].append(args.batch_size * args.iters / time_batches(runners[k], x, args.iters, device, dtype))
        ours_ips, theirs_ips = statistics.median(per_round["ours"]), statistics.median(per_round["theirs"])
        ratios = [o / t for o, t in zip(per_round["ours"], per_round["theirs"])]
        layout = "channels_last" if cl else "NCHW"
        print(f"{name + ': max |ours - torchvision| of the logits (fp32, same weights)':<66} {diff:>12.2e}")
        figure(f"{name}: ours (lenet2vit) images/s ({layout}, {precision})", ours_ips, "img/s")
        figure(f"{name}: torchvision images/s ({layout}, {precision})", theirs_ips, "img/s")
        figure(f"{name}: ratio ours / torchvision", ours_ips / theirs_ips, "x",
               f"(per round {min(ratios):.2f}..{max(ratios):.2f})")
        results[name] = {
            "ours_images_per_s": ours_ips, "torchvision_images_per_s": theirs_ips, "ratio": ours_ips / theirs_ips,
            "round_ratios": ratios, "channels_last": cl, "max_abs_logit_diff": diff,
        }
        del ours, theirs, runners, x
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return {
        "benchmark": "infer_vs_reference",
        "smoke": args.smoke,
        "device": str(device),
        "batch_size": args.batch_size,
        "input_size": args.input_size,
        "precision": precision,
        "compile": args.compile,
        "iters": args.iters,
        "rounds": args.rounds,
        "models": results,
        "machine": env,
    }


def main(argv=None) -> int:
    return script_main(run, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
