"""Where a training step's time goes, and how close its convolutions come to the machine's limit.

Profiles ``--steps`` training steps of a model (default the CIFAR ResNet-18 at batch 128,
32x32, our engine's defaults: ``DeviceLoader`` crop + flip, channels_last, bf16 autocast where
the CPU supports it, SGD) with ``torch.profiler`` and sorts the self time of every operator
into categories: convolution forward, convolution backward, batch norm, element-wise
(ReLU, residual adds and their gradients), precision casts, the optimizer, the loss, and the
rest. It prints each category's share of the step, the rate the convolutions alone reach
(their FLOPs over their own time), and the conv ceiling measured in the same run, so the
fraction-of-the-ceiling figure of ``train_speed.py`` splits into two factors:

    fraction of ceiling = (conv rate / ceiling) x (conv time / step time)

The first factor is how well the convolution kernels run on these shapes; the second is what
the other operators leave to them. The data are random uint8 images (speed does not depend on
their content), so the script needs no data set.

    python benchmarks/train_profile.py
    python benchmarks/train_profile.py --batch-size 512 --steps 10 --out runs/bench/train_profile.json
    python benchmarks/train_profile.py --smoke           # seconds: checks the script runs
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from harness import apply_budget, describe_machine, figure, machine, script_main  # benchmarks/harness.py

FULL = dict(batch_size=128, input_size=32, warmup=5, steps=10, timed=20, ceiling_iters=10)
SMOKE = dict(batch_size=8, input_size=32, warmup=1, steps=2, timed=2, ceiling_iters=1)

# Operator -> category, by the first pattern found in its name (checked in this order).
CATEGORIES = [
    ("conv backward", ("convolution_backward", "mkldnn_convolution_backward", "conv_backward")),
    ("conv forward", ("convolution", "conv2d")),
    ("batch norm", ("batch_norm",)),
    ("optimizer", ("_foreach", "sgd", "adam", "zero_")),
    ("loss", ("cross_entropy", "log_softmax", "nll_loss")),
    ("casts", ("aten::to", "_to_copy", "copy_", "contiguous", "clone")),
    ("linear", ("addmm", "aten::mm", "linear")),
    ("element-wise", ("relu", "threshold", "add", "mul", "div", "sub", "fill", "where")),
]


class BenchError(RuntimeError):
    """Something the user can fix; printed as one line."""


def category(op: str) -> str:
    for name, patterns in CATEGORIES:
        if any(p in op for p in patterns):
            return name
    return "other"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="resnet18_cifar", help="registered model (default resnet18_cifar)")
    p.add_argument("--batch-size", type=int, help="default 128")
    p.add_argument("--input-size", type=int, help="default 32")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto",
                   help="autocast precision (default: the engine's choice for the device)")
    p.add_argument("--device", default="auto")
    p.add_argument("--steps", type=int, help="profiled steps (default 10)")
    p.add_argument("--timed", type=int, help="steps timed without the profiler (default 20)")
    p.add_argument("--warmup", type=int, help="untimed steps first (default 5)")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    p.add_argument("--out", type=Path, help="write every figure to this JSON file")
    p.add_argument("--smoke", action="store_true", help="tiny budget: checks the script runs, figures mean nothing")
    args = p.parse_args(argv)
    apply_budget(p, args, FULL, SMOKE, positive=("batch_size", "input_size", "steps", "timed"))
    return args


def run(args: argparse.Namespace) -> dict:
    from lenet2vit.bench import conv_ceiling
    from lenet2vit.data import Augment, DeviceLoader
    from lenet2vit.data.arrays import ImageArrays
    from lenet2vit.engine import TrainConfig
    from lenet2vit.engine.loop import build_optimizer, build_scheduler, train_one_epoch
    from lenet2vit.runtime import amp_name, resolve_amp, resolve_device, use_channels_last
    from lenet2vit.profile import count_macs
    from lenet2vit.registry import create_model

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    env = machine(device)
    describe_machine(env)
    if args.smoke:
        print("smoke run: tiny budget, the figures below are not meaningful")
    cfg = TrainConfig(batch_size=args.batch_size, lr=0.01, schedule="none", crop_padding=4, flip=True, amp=args.precision)
    amp = resolve_amp(cfg.amp, device)
    precision = amp_name(amp)

    torch.manual_seed(0)
    net = create_model(args.model, num_classes=10)
    cl = use_channels_last(cfg.channels_last, net)
    net = net.to(device, memory_format=torch.channels_last if cl else torch.preserve_format).train()
    n = args.batch_size * (args.warmup + args.steps + args.timed)
    s = args.input_size
    arrays = ImageArrays(torch.randint(0, 256, (n, 3, s, s), dtype=torch.uint8), torch.randint(0, 10, (n,)),
                         [str(i) for i in range(10)])
    loader = DeviceLoader(arrays, args.batch_size, shuffle=True, device=device, augment=Augment(4, True),
                          channels_last=cl, drop_last=True)
    batches = iter(loader)
    opt = build_optimizer(net, cfg)
    sched = build_scheduler(opt, 1, cfg)
    scaler = torch.amp.GradScaler(device.type) if amp == torch.float16 else None

    def steps(k: int) -> float:
        """Run ``k`` of the engine's training steps; their seconds. The batches are drawn
        first: the loader's share (under 0.1% of a step, loader_speed.py) is left out."""
        chunk = [next(batches) for _ in range(k)]
        return train_one_epoch(net, chunk, opt, sched, cfg, device=device, amp_dtype=amp, scaler=scaler,
                               progress=False)["train_seconds"]

    steps(args.warmup)
    step_s = steps(args.timed) / args.timed

    acts = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with torch.profiler.profile(activities=acts) as prof:
        steps(args.steps)
    use_cuda = device.type == "cuda"
    shares: dict[str, float] = {}
    for e in prof.events():
        t = (e.self_device_time_total if use_cuda else e.self_cpu_time_total) / 1e6  # seconds
        if t <= 0:
            continue
        # An operator called by the optimizer's step is the optimizer's, whatever it is.
        parent, name = e.cpu_parent, category(e.name)
        while parent is not None:
            if parent.name.startswith("Optimizer.step"):
                name = "optimizer"
                break
            parent = parent.cpu_parent
        shares[name] = shares.get(name, 0.0) + t
    total = sum(shares.values())
    if total <= 0:
        raise BenchError("the profiler recorded no operator time; run without other profilers attached")

    macs = count_macs(net, s, 3)
    step_flops = 3 * 2 * macs * args.batch_size
    ips = args.batch_size / step_s
    achieved = step_flops / step_s / 1e9
    conv_share = (shares.get("conv forward", 0.0) + shares.get("conv backward", 0.0)) / total
    conv_rate = achieved / max(conv_share, 1e-9)  # the FLOPs are nearly all in the convolutions
    small = {"batch": 4, "channels": 64, "size": 16} if args.smoke else {}
    ceiling = conv_ceiling(device, precision, cl, iters=args.ceiling_iters, mode="train", **small)

    print()
    print(f"{args.model}, batch {args.batch_size}, {s}x{s}, {precision}, {'channels_last' if cl else 'NCHW'}, "
          f"{args.steps} profiled steps")
    for name, t in sorted(shares.items(), key=lambda kv: -kv[1]):
        figure(f"share of step time: {name}", 100 * t / total, "%", f"({1000 * t / args.steps:.1f} ms/step)")
    print()
    figure("training images/s (no profiler)", ips, "img/s", f"({1000 * step_s:.1f} ms/step)")
    figure(f"achieved (3 x {macs / 1e6:.1f} MMACs x 2 x images/s)", achieved, "GFLOP/s")
    figure(f"conv ceiling ({precision}, forward+backward)", ceiling, "GFLOP/s")
    figure("fraction of the ceiling", 100 * achieved / ceiling, "%")
    figure("  = conv rate / ceiling", 100 * conv_rate / ceiling, "%", f"(convolutions alone: {conv_rate:.0f} GFLOP/s)")
    figure("  x conv share of the step", 100 * conv_share, "%")
    return {
        "benchmark": "train_profile",
        "smoke": args.smoke,
        "model": args.model,
        "batch_size": args.batch_size,
        "input_size": s,
        "precision": precision,
        "channels_last": cl,
        "images_per_s": ips,
        "ms_per_step": 1000 * step_s,
        "macs": macs,
        "achieved_gflops": achieved,
        "ceiling_train_gflops": ceiling,
        "fraction_of_ceiling": achieved / ceiling,
        "conv_share": conv_share,
        "conv_gflops": conv_rate,
        "shares": {k: v / total for k, v in shares.items()},
        "machine": env,
    }


def main(argv=None) -> int:
    return script_main(run, parse_args(argv), BenchError)


if __name__ == "__main__":
    sys.exit(main())
