"""End-to-end training speed: our engine's defaults vs "the usual way", in the same run.

The model is a CIFAR ResNet-18 (``resnet18_cifar``) trained at batch 128 on 32x32 images
with random crop (pad 4) and horizontal flip, on a class-balanced 10,000-image subset of the
CIFAR-10 train split (extracted once to a temporary folder with the standard ``tarfile``
module: only regular files under ``train/`` and ``test/`` are read).

* **ours**: the engine's defaults - the uint8 images held in memory by ``DeviceLoader`` with
  batched crop + flip, channels_last, bf16 autocast where ``resolve_amp("auto")`` picks it,
  SGD from ``build_optimizer``, each step run by ``train_one_epoch``.
* **usual**: a torchvision ``DataLoader`` over a PIL ``ImageFolder`` with
  ``Compose([RandomCrop(32, padding=4), RandomHorizontalFlip(), ToTensor(), Normalize()])``,
  NCHW float32, eager, ``num_workers`` 2 (and 0), and the tutorial training loop.

Both use the same optimizer and lr schedule, so only the data pipeline, memory layout and
precision differ. Images/s are taken over ``--steps`` steps after ``--warmup`` steps,
interleaved in ``--rounds`` rounds (ours, usual, usual, ours ...) so drift in the machine's
load hits both alike; before each of its rounds a DataLoader first uses up, untimed, the
batches its workers queued while the other side ran. The script also prints the fraction of the machine's conv ceiling
(``lenet2vit.bench.conv_ceiling`` in the same precision and layout) that our training step
reaches, counting a training step as three forward passes: ``3 * MACs * 2 * images/s``.
``--accuracy`` also trains a short fixed budget each way (default: one epoch with a quarter-epoch
linear warm-up, seeds 0, 1, 2), each seed from the same initial weights both ways, evaluates
both on the test images, and prints the mean and standard deviation of each way and whether
their difference is within two standard errors (the noise).

    python benchmarks/train_speed.py                      # speed, 30 steps each
    python benchmarks/train_speed.py --accuracy --out runs/train_speed.json
    python benchmarks/train_speed.py --device cuda --steps 100 --workers 8,4
    python benchmarks/train_speed.py --smoke              # seconds: checks the script runs
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
import shutil
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

import torch

from harness import apply_budget, describe_machine, figure, machine, script_main  # benchmarks/harness.py
import torch.nn as nn
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "cifar10-png.zip"
IMAGE_EXT = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")

# Budgets: the full measurement, and a tiny one that only checks the script runs (--smoke).
FULL = dict(train_images=10_000, test_images=2_000, batch_size=128, warmup=5, steps=30, rounds=3, ceiling_iters=10)
SMOKE = dict(train_images=200, test_images=50, batch_size=16, warmup=1, steps=2, rounds=1, ceiling_iters=1)


def mean_sd(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    m = sum(values) / len(values)
    return m, (math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0)


class BenchError(RuntimeError):
    """Something the user can fix (missing data, bad flag); printed as one line."""


# ----------------------------------------------------------------------------- reporting


# ----------------------------------------------------------------------------- data


def _safe(part: str) -> bool:
    return bool(SAFE_NAME.fullmatch(part)) and part not in (".", "..")


def _archive_members(archive: Path):
    """(name, order, open) for every regular file of a tar or zip archive; order is its position."""
    if zipfile.is_zipfile(archive):
        z = zipfile.ZipFile(archive)
        return z, [(i.filename, i.header_offset, lambda i=i: z.open(i)) for i in z.infolist() if not i.is_dir()]
    if tarfile.is_tarfile(archive):
        t = tarfile.open(archive, "r:*")
        return t, [(m.name, m.offset_data, lambda m=m: t.extractfile(m)) for m in t.getmembers() if m.isreg()]
    raise BenchError(f"{archive} is neither a zip nor a tar archive; pass --data with cifar10-png.zip "
                     "(an ImageFolder tree: train/<class>/*.png, test/<class>/*.png)")


def extract_subset(archive: Path, dest: Path, train_images: int, test_images: int, seed: int = 0) -> dict:
    """Extract a class-balanced random subset of ``train/`` and ``test/`` of an ImageFolder archive.

    The archive is a zip or a tar. Only regular files named exactly ``<split>/<class>/<image>``
    (plain names, no links, no ``..``, nothing absolute) are read; each is written under ``dest``
    by our own path, never by the member's, so the archive cannot write outside ``dest``.
    Returns the number of images and classes per split.
    """
    wanted = {"train": train_images, "test": test_images}
    if not archive.is_file():
        raise BenchError(f"{archive} is not a file; pass --data with cifar10-png.zip "
                         "(an ImageFolder tree: train/<class>/*.png, test/<class>/*.png)")
    handle, listing = _archive_members(archive)
    with handle:
        members: dict[str, dict[str, list]] = {s: {} for s in wanted}
        for name, order, opener in listing:
            name = name[2:] if name.startswith("./") else name
            parts = name.split("/")
            if len(parts) != 3 or parts[0] not in wanted or not all(_safe(p) for p in parts[1:]):
                continue
            if parts[2].lower().endswith(IMAGE_EXT):
                members[parts[0]].setdefault(parts[1], []).append((name, order, opener))
        if not members["train"]:
            raise BenchError(f"{archive} holds no train/<class>/<image> files; pass --data with the CIFAR-10 "
                             "ImageFolder archive (train/<class>/*.png, test/<class>/*.png)")
        rng = random.Random(seed)
        chosen: list[tuple[str, str, tuple]] = []
        counts = {}
        for split, n in wanted.items():
            classes = sorted(members[split])
            if not classes:
                raise BenchError(f"{archive} holds no {split}/<class>/<image> files; it needs train/ and test/")
            per_class = max(n // len(classes), 1)
            for c in classes:
                files = sorted(members[split][c], key=lambda m: m[0])
                chosen += [(split, c, m) for m in rng.sample(files, min(per_class, len(files)))]
            counts[split] = {"images": sum(1 for s, _, _ in chosen if s == split), "classes": len(classes)}
        chosen.sort(key=lambda t: t[2][1])  # one forward pass through the (compressed) archive
        for split, c, (name, _, opener) in chosen:
            out = dest / split / c / name.rsplit("/", 1)[1]
            out.parent.mkdir(parents=True, exist_ok=True)
            src = opener()
            if src is None:
                continue
            with src, open(out, "wb") as f:
                shutil.copyfileobj(src, f)
    return counts


class Stream:
    """An endless supply of batches from a loader, handed out ``n`` at a time.

    A new pass over the loader starts when one ends, so steps can be timed in rounds that
    continue where the last round stopped.
    """

    def __init__(self, loader) -> None:
        self.loader = loader
        self.it = iter(loader)

    def next(self):
        try:
            return next(self.it)
        except StopIteration:
            self.it = iter(self.loader)
            return next(self.it)

    def take(self, n: int) -> "_Take":
        return _Take(self, n)


class _Take:
    def __init__(self, stream: Stream, n: int) -> None:
        self.stream, self.n = stream, n

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        for _ in range(self.n):
            yield self.stream.next()


# ----------------------------------------------------------------------------- the two ways


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def usual_train(model: nn.Module, batches, optimizer, scheduler, device: torch.device) -> tuple[int, float]:
    """The tutorial training loop (batches from a DataLoader); returns (images, seconds)."""
    model.train()
    seen, running = 0, 0.0
    _sync(device)
    t0 = time.perf_counter()
    for x, y in batches:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        running += loss.item()
        seen += y.shape[0]
    _sync(device)
    return seen, time.perf_counter() - t0


@torch.inference_mode()
def usual_evaluate(model: nn.Module, loader, device: torch.device) -> float:
    """Top-1 accuracy with the tutorial evaluation loop."""
    model.eval()
    correct = total = 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        correct += (model(x).argmax(1) == y).sum().item()
        total += y.shape[0]
    return correct / max(total, 1)


def usual_loaders(folder: Path, batch_size: int, workers: int, device: torch.device, seed: int):
    """(train, test) torchvision DataLoaders over PIL ImageFolders, the usual way."""
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    from lenet2vit.data import CIFAR_MEAN, CIFAR_STD

    norm = transforms.Normalize(CIFAR_MEAN, CIFAR_STD)
    train_tf = transforms.Compose([transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(),
                                   transforms.ToTensor(), norm])
    test_tf = transforms.Compose([transforms.ToTensor(), norm])
    pin = device.type == "cuda"
    g = torch.Generator().manual_seed(seed)
    train = DataLoader(datasets.ImageFolder(folder / "train", train_tf), batch_size=batch_size, shuffle=True,
                       num_workers=workers, pin_memory=pin, generator=g)
    test = DataLoader(datasets.ImageFolder(folder / "test", test_tf), batch_size=512, shuffle=False,
                      num_workers=workers, pin_memory=pin)
    return train, test


# ----------------------------------------------------------------------------- main


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"CIFAR-10 ImageFolder archive (default {DEFAULT_DATA})")
    p.add_argument("--model", default="resnet18_cifar", help="registered model (default resnet18_cifar)")
    p.add_argument("--device", default="auto")
    p.add_argument("--train-images", type=int, help="size of the class-balanced train subset (default 10000)")
    p.add_argument("--test-images", type=int, help="test images for --accuracy (default 2000)")
    p.add_argument("--batch-size", type=int, help="default 128")
    p.add_argument("--steps", type=int, help="timed steps per way (default 30)")
    p.add_argument("--warmup", type=int, help="untimed steps per way first (default 5)")
    p.add_argument("--rounds", type=int, help="interleaved rounds the timed steps are split into (default 3)")
    p.add_argument("--workers", default="2,0", help="num_workers of the usual DataLoader, comma-separated (default 2,0)")
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--accuracy", action="store_true",
                   help="also train a short budget each way, over several seeds, and evaluate on the test images")
    p.add_argument("--accuracy-seeds", default="0,1,2", help="seeds of the accuracy check, comma-separated (default 0,1,2)")
    p.add_argument("--accuracy-epochs", type=int, default=1, help="epochs of the accuracy check (default 1)")
    p.add_argument("--accuracy-warmup", type=float, default=0.25,
                   help="linear lr warm-up of the accuracy check, in epochs (default 0.25; without it lr 0.1 from "
                        "scratch spikes the loss in the first steps either way and the figures are mostly noise)")
    p.add_argument("--threads", type=int, help="torch threads of the main process (default: torch's)")
    p.add_argument("--workdir", type=Path, help="keep the extracted subset here (default: a temporary folder)")
    p.add_argument("--out", type=Path, help="write every figure to this JSON file")
    p.add_argument("--smoke", action="store_true", help="tiny budget: checks the script runs, figures mean nothing")
    args = p.parse_args(argv)
    apply_budget(p, args, FULL, SMOKE)
    try:
        args.workers = [int(w) for w in str(args.workers).split(",") if w.strip()]
    except ValueError:
        p.error(f"--workers takes whole numbers separated by commas, e.g. 2,0; got {args.workers!r}")
    try:
        args.accuracy_seeds = [int(x) for x in str(args.accuracy_seeds).split(",") if x.strip()]
    except ValueError:
        p.error(f"--accuracy-seeds takes whole numbers separated by commas, e.g. 0,1,2; got {args.accuracy_seeds!r}")
    if not args.accuracy_seeds:
        p.error("--accuracy-seeds needs at least one seed, e.g. 0,1,2")
    if args.accuracy_epochs < 1 or args.accuracy_warmup < 0:
        p.error("--accuracy-epochs must be >= 1 and --accuracy-warmup >= 0")
    for name in ("train_images", "test_images", "batch_size", "steps", "warmup", "rounds"):
        if getattr(args, name) < (0 if name == "warmup" else 1):
            p.error(f"--{name.replace('_', '-')} must be a positive number, got {getattr(args, name)}")
    if not args.workers or min(args.workers) < 0:
        p.error("--workers needs at least one number >= 0, e.g. 2,0")
    return args


def run(args: argparse.Namespace) -> dict:
    from lenet2vit.bench import conv_ceiling
    from lenet2vit.data import load_split
    from lenet2vit.engine import TrainConfig
    from lenet2vit.data import CIFAR_MEAN, CIFAR_STD
    from lenet2vit.engine.loop import build_optimizer, build_scheduler, evaluate, train_one_epoch
    from lenet2vit.runtime import amp_name, resolve_amp, resolve_device, use_channels_last
    from lenet2vit.engine.run import make_loader
    from lenet2vit.profile import count_macs
    from lenet2vit.registry import create_model, model_info

    if not args.data.exists():
        raise BenchError(f"CIFAR-10 archive not found at {args.data}; pass --data with the path of cifar10-png.zip "
                         "(an ImageFolder tree: train/<class>/*.png, test/<class>/*.png)")
    info = model_info(args.model)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    env = machine(device)
    describe_machine(env)
    if args.smoke:
        print("smoke run: tiny budget, the figures below are not meaningful")

    tmp = None
    if args.workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="lenet2vit-train-speed-")
        work = Path(tmp.name)
    else:
        work = args.workdir
        work.mkdir(parents=True, exist_ok=True)
    try:
        folder = work / f"cifar-subset-{args.train_images}-{args.test_images}-{args.seed}"
        marker = folder / ".complete"
        t0 = time.perf_counter()
        stat = args.data.stat()
        source = {"archive": str(args.data.resolve()), "size": stat.st_size, "mtime": stat.st_mtime}
        done = json.loads(marker.read_text()) if marker.exists() else {}
        if done.get("source") != source:
            shutil.rmtree(folder, ignore_errors=True)
            counts = extract_subset(args.data, folder, args.train_images, args.test_images, args.seed)
            marker.write_text(json.dumps({"source": source, "counts": counts}))
        counts = json.loads(marker.read_text())["counts"]
        train_arr = load_split("cifar10", folder, "train", cache_dir=work / "cache", progress=False)
        test_arr = load_split("cifar10", folder, "test", cache_dir=work / "cache", progress=False)
        print(f"data: {counts['train']['images']} train / {counts['test']['images']} test images in "
              f"{counts['train']['classes']} classes from {args.data} ({time.perf_counter() - t0:.1f}s to extract and decode)")

        cfg = TrainConfig(batch_size=args.batch_size, lr=args.lr, crop_padding=4, flip=True, mean=CIFAR_MEAN,
                          std=CIFAR_STD, epochs=1, seed=args.seed, device=str(device))
        amp = resolve_amp(cfg.amp, device)
        precision = amp_name(amp)
        num_classes = len(train_arr.classes)

        def build(ours: bool, seed: int = args.seed) -> tuple[nn.Module, bool]:
            torch.manual_seed(seed)  # the same initial weights both ways
            net = create_model(args.model, num_classes=num_classes, in_chans=train_arr.channels)
            cl = ours and use_channels_last(cfg.channels_last, net)
            return net.to(device, memory_format=torch.channels_last if cl else torch.preserve_format), cl

        def our_loader(arrays, train: bool, cl: bool):
            return make_loader(arrays, cfg, train=train, device=device, mean=CIFAR_MEAN, std=CIFAR_STD,
                               channels_last=cl, input_size=train_arr.image_size)

        scaler = torch.amp.GradScaler(device.type) if amp == torch.float16 else None

        # ---- speed: both ways prepared, then timed in interleaved rounds
        ours_net, cl = build(True)
        ours_loader = our_loader(train_arr, True, cl)
        ours_opt = build_optimizer(ours_net, cfg)
        ours_sched = build_scheduler(ours_opt, len(ours_loader), cfg)
        ours_stream = Stream(ours_loader)

        def ours_steps(n: int) -> tuple[int, float]:
            st = train_one_epoch(ours_net, ours_stream.take(n), ours_opt, ours_sched, cfg, device=device, amp_dtype=amp,
                                 scaler=scaler, progress=False)
            return round(st["train_images_per_s"] * st["train_seconds"]), st["train_seconds"]

        usual = {}
        for w in args.workers:
            net, _ = build(False)
            train_dl, _ = usual_loaders(folder, args.batch_size, w, device, args.seed)
            opt = build_optimizer(net, cfg)
            sched = build_scheduler(opt, len(train_dl), cfg)
            stream = Stream(train_dl)

            def usual_steps(n: int, net=net, stream=stream, opt=opt, sched=sched, w=w) -> tuple[int, float]:
                # The workers filled their queue (2 batches each) while the other side ran; use
                # those batches up untimed so the timed steps see the steady state.
                if w:
                    usual_train(net, stream.take(2 * w), opt, sched, device)
                return usual_train(net, stream.take(n), opt, sched, device)

            usual[w] = usual_steps

        runners = {"ours": ours_steps, **{f"usual_w{w}": usual[w] for w in args.workers}}
        for fn in runners.values():
            if args.warmup:
                fn(args.warmup)
        totals = {k: [0, 0.0] for k in runners}
        per_round = [args.steps // args.rounds + (1 if r < args.steps % args.rounds else 0) for r in range(args.rounds)]
        for r, n in enumerate(per_round):
            order = list(runners) if r % 2 == 0 else list(reversed(runners))
            for k in order:
                if n:
                    imgs, secs = runners[k](n)
                    totals[k][0] += imgs
                    totals[k][1] += secs
        ips = {k: imgs / max(secs, 1e-9) for k, (imgs, secs) in totals.items()}
        del usual, runners  # stop the DataLoader workers (their streams go with them)

        print()
        figure(f"ours: images/s (DeviceLoader, {'channels_last' if cl else 'NCHW'}, {precision})", ips["ours"], "img/s")
        for w in args.workers:
            figure(f"usual: images/s (DataLoader num_workers={w}, NCHW, fp32)", ips[f"usual_w{w}"], "img/s")
        for w in args.workers:
            figure(f"speed-up: ours / usual (num_workers={w})", ips["ours"] / ips[f"usual_w{w}"], "x")
        best = max(args.workers, key=lambda w: ips[f"usual_w{w}"])
        figure("speed-up: ours / fastest usual", ips["ours"] / ips[f"usual_w{best}"], "x", f"(num_workers={best})")

        macs = count_macs(ours_net, train_arr.image_size, train_arr.channels)
        achieved = 3 * macs * 2 * ips["ours"] / 1e9
        small = {"batch": 4, "channels": 64, "size": 16} if args.smoke else {}
        ceiling = conv_ceiling(device, precision, True, iters=args.ceiling_iters, **small)
        ceiling_train = conv_ceiling(device, precision, True, iters=args.ceiling_iters, mode="train", **small)
        figure(f"conv ceiling ({precision}, channels_last, forward)", ceiling, "GFLOP/s")
        figure(f"conv ceiling ({precision}, channels_last, forward+backward)", ceiling_train, "GFLOP/s")
        figure(f"ours: achieved (3 x {macs / 1e6:.1f} MMACs x 2 x images/s)", achieved, "GFLOP/s")
        figure("ours: fraction of conv ceiling (forward)", 100 * achieved / ceiling, "%")
        figure("ours: fraction of conv ceiling (forward+backward)", 100 * achieved / ceiling_train, "%")

        result = {
            "benchmark": "train_speed",
            "smoke": args.smoke,
            "model": args.model,
            "family": info.family,
            "device": str(device),
            "batch_size": args.batch_size,
            "train_images": counts["train"]["images"],
            "steps": args.steps,
            "warmup": args.warmup,
            "rounds": args.rounds,
            "ours": {"images_per_s": ips["ours"], "channels_last": cl, "precision": precision},
            "usual": {str(w): {"images_per_s": ips[f"usual_w{w}"], "num_workers": w} for w in args.workers},
            "speedup": {str(w): ips["ours"] / ips[f"usual_w{w}"] for w in args.workers},
            "speedup_vs_fastest_usual": ips["ours"] / ips[f"usual_w{best}"],
            "macs": macs,
            "achieved_gflops": achieved,
            "ceiling_gflops": ceiling,
            "fraction_of_ceiling": achieved / ceiling,
            "ceiling_train_gflops": ceiling_train,
            "fraction_of_train_ceiling": achieved / ceiling_train,
            "machine": env,
        }

        if args.accuracy:
            # ---- accuracy: a short fixed budget each way, from the same weights and lr schedule, over seeds
            print()
            acfg = cfg.replace(epochs=args.accuracy_epochs, warmup_epochs=args.accuracy_warmup)
            w = args.workers[0]
            n_test = counts["test"]["images"]
            runs = {"ours": [], "usual": []}
            for seed in args.accuracy_seeds:
                scfg = acfg.replace(seed=seed)
                net, cl = build(True, seed)
                loader = make_loader(train_arr, scfg, train=True, device=device, mean=CIFAR_MEAN, std=CIFAR_STD,
                                     channels_last=cl, input_size=train_arr.image_size)
                opt = build_optimizer(net, scfg)
                sched = build_scheduler(opt, len(loader), scfg)
                secs = 0.0
                for epoch in range(scfg.epochs):
                    secs += train_one_epoch(net, loader, opt, sched, scfg, device=device, amp_dtype=amp, scaler=scaler,
                                            epoch=epoch, progress=False)["train_seconds"]
                top1 = evaluate(net, our_loader(test_arr, False, cl), device=device, amp_dtype=amp)["top1"]
                runs["ours"].append({"seed": seed, "top1": top1, "train_seconds": secs})
                figure(f"ours: test accuracy, seed {seed}", 100 * top1, "%", f"({secs:.1f}s to train)")

                net, _ = build(False, seed)
                train_dl, test_dl = usual_loaders(folder, args.batch_size, w, device, seed)
                opt = build_optimizer(net, scfg)
                sched = build_scheduler(opt, len(train_dl), scfg)
                secs = sum(usual_train(net, train_dl, opt, sched, device)[1] for _ in range(scfg.epochs))
                top1 = usual_evaluate(net, test_dl, device)
                runs["usual"].append({"seed": seed, "top1": top1, "train_seconds": secs})
                figure(f"usual: test accuracy, seed {seed} (num_workers={w})", 100 * top1, "%", f"({secs:.1f}s to train)")

            stats = {k: mean_sd([100 * r["top1"] for r in v]) for k, v in runs.items()}
            n = len(args.accuracy_seeds)
            diff = stats["ours"][0] - stats["usual"][0]
            # Two standard errors of the difference of the means: the "noise" the gap is held to.
            noise = 2 * math.sqrt((stats["ours"][1] ** 2 + stats["usual"][1] ** 2) / n) if n > 1 else float("nan")
            budget = f"{acfg.epochs} epoch(s), {n} seed(s), {n_test} test images"
            figure(f"ours: test accuracy, mean ({budget})", stats["ours"][0], "%", f"sd {stats['ours'][1]:.2f}")
            figure(f"usual: test accuracy, mean ({budget})", stats["usual"][0], "%", f"sd {stats['usual'][1]:.2f}")
            figure("accuracy: ours - usual", diff, "points",
                   f"noise (2 standard errors) {noise:.2f}: {'within' if abs(diff) <= noise else 'beyond'} noise"
                   if n > 1 else "one seed: run several (--accuracy-seeds) to judge noise")
            result["accuracy"] = {
                "epochs": acfg.epochs, "warmup_epochs": acfg.warmup_epochs, "lr": acfg.lr, "test_images": n_test,
                "seeds": list(args.accuracy_seeds), "usual_num_workers": w, "runs": runs,
                "ours_mean": stats["ours"][0], "ours_sd": stats["ours"][1],
                "usual_mean": stats["usual"][0], "usual_sd": stats["usual"][1],
                "difference": diff, "noise": noise if n > 1 else None,
                "within_noise": bool(abs(diff) <= noise) if n > 1 else None,
            }
    finally:
        if tmp is not None:
            tmp.cleanup()
    return result


def main(argv=None) -> int:
    return script_main(run, parse_args(argv), BenchError)


if __name__ == "__main__":
    sys.exit(main())
