"""Data pipeline alone: images/s of ``DeviceLoader`` vs the training step it feeds.

``DeviceLoader`` holds the CIFAR-10 train split (or, with ``--synthetic``, a random uint8
50000x3x32x32 tensor) on the device and yields normalised, channels_last batches with random
crop (pad 4) and flip, as training uses it. Its images/s are measured at batch 512 and 128
over whole passes (after one untimed pass). In the same run a few training steps of a CIFAR
ResNet-18 with the engine's defaults (``train_one_epoch``, channels_last, bf16 autocast where
``resolve_amp("auto")`` picks it) give the training images/s; the ratio loader / training says
how far the data pipeline is from ever being the bottleneck (target: at least 50x).

    python benchmarks/loader_speed.py                     # real CIFAR-10 train split
    python benchmarks/loader_speed.py --synthetic         # no data needed
    python benchmarks/loader_speed.py --device cuda --passes 5 --out runs/loader_speed.json
    python benchmarks/loader_speed.py --smoke --synthetic # seconds: checks the script runs
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from harness import apply_budget, describe_machine, figure, machine, script_main  # benchmarks/harness.py

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "cifar10-png.zip"

FULL = dict(images=50_000, batch_sizes="512,128", passes=3, train_batch=128, train_warmup=3, train_steps=10)
SMOKE = dict(images=1_000, batch_sizes="256,64", passes=1, train_batch=16, train_warmup=1, train_steps=2)


class BenchError(RuntimeError):
    """Something the user can fix (missing data, bad flag); printed as one line."""


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def loader_images_per_s(loader, passes: int, device: torch.device) -> float:
    """Images/s of whole passes over ``loader`` (one untimed pass first)."""
    for _ in loader:
        pass
    _sync(device)
    seen = 0
    t0 = time.perf_counter()
    for _ in range(passes):
        for _x, y in loader:
            seen += y.shape[0]
    _sync(device)
    return seen / (time.perf_counter() - t0)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"CIFAR-10 archive or folder (default {DEFAULT_DATA})")
    p.add_argument("--synthetic", action="store_true", help="random uint8 images instead of CIFAR-10 (no data needed)")
    p.add_argument("--images", type=int, help="synthetic images (default 50000)")
    p.add_argument("--batch-sizes", help="loader batch sizes, comma-separated (default 512,128)")
    p.add_argument("--passes", type=int, help="timed passes over the data per batch size (default 3)")
    p.add_argument("--model", default="resnet18_cifar", help="the model whose training step is the yardstick")
    p.add_argument("--train-batch", type=int, help="batch of the training steps (default 128)")
    p.add_argument("--train-warmup", type=int, help="untimed training steps (default 3)")
    p.add_argument("--train-steps", type=int, help="timed training steps (default 10)")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="write every figure to this JSON file")
    p.add_argument("--smoke", action="store_true", help="tiny budget: checks the script runs, figures mean nothing")
    args = p.parse_args(argv)
    apply_budget(p, args, FULL, SMOKE, positive=("images", "passes", "train_batch", "train_steps"))
    try:
        args.batch_sizes = [int(b) for b in str(args.batch_sizes).split(",") if b.strip()]
    except ValueError:
        p.error(f"--batch-sizes takes whole numbers separated by commas, e.g. 512,128; got {args.batch_sizes!r}")
    if not args.batch_sizes or min(args.batch_sizes) < 1:
        p.error("--batch-sizes needs numbers >= 1, e.g. 512,128")
    return args


def run(args: argparse.Namespace) -> dict:
    from lenet2vit.data import ImageArrays, load_split
    from lenet2vit.engine import TrainConfig
    from lenet2vit.data import CIFAR_MEAN, CIFAR_STD
    from lenet2vit.engine.loop import build_optimizer, build_scheduler, train_one_epoch
    from lenet2vit.runtime import amp_name, resolve_amp, resolve_device, use_channels_last
    from lenet2vit.engine.run import make_loader
    from lenet2vit.registry import create_model, model_info

    model_info(args.model)  # an unknown name fails before any work
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    if args.synthetic:
        g = torch.Generator().manual_seed(args.seed)
        arrays = ImageArrays(torch.randint(0, 256, (args.images, 3, 32, 32), dtype=torch.uint8, generator=g),
                             torch.randint(0, 10, (args.images,), generator=g), [str(i) for i in range(10)])
        source = f"synthetic uint8 {args.images}x3x32x32"
    else:
        if not args.data.exists():
            raise BenchError(f"CIFAR-10 not found at {args.data}; pass --data with cifar10-png.zip (or "
                             "cifar-10-batches-py), or --synthetic to use random images")
        t0 = time.perf_counter()
        arrays = load_split("cifar10", args.data, "train", progress=False)
        source = f"CIFAR-10 train split, {len(arrays)} images from {args.data} ({time.perf_counter() - t0:.1f}s to load)"
    env = machine(device)
    describe_machine(env)
    if args.smoke:
        print("smoke run: tiny budget, the figures below are not meaningful")
    print(f"data: {source}")

    torch.manual_seed(args.seed)
    net = create_model(args.model, num_classes=len(arrays.classes), in_chans=arrays.channels)
    base = TrainConfig(crop_padding=4, flip=True, mean=CIFAR_MEAN, std=CIFAR_STD, epochs=1, seed=args.seed,
                       device=str(device))
    cl = use_channels_last(base.channels_last, net)
    amp = resolve_amp(base.amp, device)
    precision = amp_name(amp)

    def loader(batch_size: int):
        return make_loader(arrays, base.replace(batch_size=batch_size), train=True, device=device, mean=CIFAR_MEAN,
                           std=CIFAR_STD, channels_last=cl, input_size=arrays.image_size)

    print()
    loader_ips = {}
    for b in args.batch_sizes:
        loader_ips[b] = loader_images_per_s(loader(b), args.passes, device)
        figure(f"loader: images/s (DeviceLoader, batch {b}, crop+flip, {'channels_last' if cl else 'NCHW'})",
               loader_ips[b], "img/s")

    # The yardstick: the engine's training step on batches from the same loader.
    cfg = base.replace(batch_size=args.train_batch)
    net = net.to(device, memory_format=torch.channels_last if cl else torch.preserve_format)
    train_loader = loader(args.train_batch)
    opt = build_optimizer(net, cfg)
    sched = build_scheduler(opt, len(train_loader), cfg)
    scaler = torch.amp.GradScaler(device.type) if amp == torch.float16 else None
    batches = iter(train_loader)

    class Take:  # the next n batches as a sized iterable (what train_one_epoch expects)
        def __init__(self, n: int) -> None:
            self.n = n

        def __len__(self) -> int:
            return self.n

        def __iter__(self):
            nonlocal batches
            for _ in range(self.n):
                try:
                    yield next(batches)
                except StopIteration:
                    batches = iter(train_loader)
                    yield next(batches)

    if args.train_warmup:
        train_one_epoch(net, Take(args.train_warmup), opt, sched, cfg, device=device, amp_dtype=amp, scaler=scaler,
                        progress=False)
    st = train_one_epoch(net, Take(args.train_steps), opt, sched, cfg, device=device, amp_dtype=amp, scaler=scaler,
                         progress=False)
    train_ips = st["train_images_per_s"]
    figure(f"training: images/s ({args.model}, batch {args.train_batch}, {precision})", train_ips, "img/s")
    for b in args.batch_sizes:
        figure(f"ratio: loader (batch {b}) / training", loader_ips[b] / train_ips, "x", "(target >= 50x)")
    return {
        "benchmark": "loader_speed",
        "smoke": args.smoke,
        "data": source,
        "device": str(device),
        "channels_last": cl,
        "loader_images_per_s": {str(b): v for b, v in loader_ips.items()},
        "passes": args.passes,
        "model": args.model,
        "train_batch": args.train_batch,
        "train_steps": args.train_steps,
        "precision": precision,
        "train_images_per_s": train_ips,
        "ratio": {str(b): v / train_ips for b, v in loader_ips.items()},
        "machine": env,
    }


def main(argv=None) -> int:
    return script_main(run, parse_args(argv), BenchError)


if __name__ == "__main__":
    sys.exit(main())
