"""The streaming data path: peak memory as the folder grows, and images/s against torchvision.

Synthetic ImageNet-shaped folders (``train/<class>/*.jpg``, 10 classes, photos of 500x375 by
default) of 2k, 8k and 32k images are made once under ``--root``. For each, a fresh process
runs one training epoch of :class:`lenet2vit.data.StreamLoader` over the folder's train split
(80%: a folder without test/ holds 20% out) with RandomResizedCrop to 224 + flip,
``--workers`` decoding processes and batch 64, and reports its images/s and the peak RSS of
the training process and of its largest worker. The streamed peak should stay flat as the
folder grows; beside it the memory path's need (the decoded uint8 set) grows with it, and on
folders up to ``--memory-path-max`` images the memory path's real peak is measured too.

The baseline, measured in the same run on the smallest folder: torchvision's ``ImageFolder`` +
``DataLoader`` with the same crop, flip, workers and batch, then ``ToTensor`` + ``Normalize``
in the workers: the usual reference loop, giving the normalised float batches StreamLoader gives. The ratio stream / reference is the figure to read.

    python benchmarks/stream_memory.py --out runs/bench/stream_memory.json
    python benchmarks/stream_memory.py --sizes 2000,8000 --workers 2
    python benchmarks/stream_memory.py --smoke        # seconds: checks the script runs
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

from harness import apply_budget, describe_machine, figure, machine, script_main  # benchmarks/harness.py

FULL = dict(sizes="2000,8000,32000", width=500, height=375, crop=224, batch=64, memory_path_max=8000)
SMOKE = dict(sizes="60,120", width=64, height=48, crop=32, batch=16, memory_path_max=120)
CLASSES = 10


def _make_images(job: tuple[str, str, int, int, int, int, bool]) -> None:
    import numpy as np
    from PIL import Image

    folder, split, start, stop, width, height, vary = job
    rng = np.random.default_rng(start)
    for i in range(start, stop):
        d = Path(folder) / split / f"class{i % CLASSES}"
        path = d / f"{i:06d}.jpg"
        # a photo's size, or (vary) anything from half to the full width and height, any aspect
        w, h = (int(rng.integers(width // 2, width + 1)), int(rng.integers(height // 2, height + 1))) if vary \
            else (width, height)
        if path.exists():
            continue
        d.mkdir(parents=True, exist_ok=True)
        # smooth noise, upscaled: JPEGs of a photo's size (tens of kB), not of white noise
        small = rng.integers(0, 255, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
        Image.fromarray(small).resize((w, h), Image.BILINEAR).save(path, quality=85)


def make_folder(root: Path, n: int, width: int, height: int, workers: int, val: int = 0, vary: bool = False) -> Path:
    """A folder of ``n`` JPEGs in ``train/`` (and ``val`` more in ``val/``), made only once.

    ``vary`` draws each image's width and height independently from half to the full size, so
    the folder holds every aspect ratio, as photos do.
    """
    folder = root / f"photos-{n}{f'+{val}' if val else ''}-{width}x{height}{'-varied' if vary else ''}"
    done = folder / ".complete"
    if not done.exists():
        step = max((n + val) // (4 * max(workers, 1)), 1)
        jobs = [(str(folder), "train" if s < n else "val", s, min(s + step, n if s < n else n + val), width, height,
                 vary) for s in [*range(0, n, step), *range(n, n + val, step)]]
        with ProcessPoolExecutor(max(workers, 1)) as pool:
            list(pool.map(_make_images, jobs))
        done.write_text("ok")
    return folder


_CHILD = r"""
import json, resource, sys, time
import torch
args = json.loads(sys.argv[1])
torch.set_num_threads(1)
if args["loop"] == "stream":
    from lenet2vit.data import StreamLoader, index_train_val_test
    train = index_train_val_test("folder", args["folder"], val_fraction=0.0, image_size=args["crop"])[0]
    loader = StreamLoader(train, args["batch"], shuffle=True, flip=True, workers=args["workers"])
elif args["loop"] == "reference":
    import torchvision.transforms as T
    from torchvision.datasets import ImageFolder
    # the usual loop: normalised float batches, as StreamLoader delivers them
    tf = T.Compose([T.RandomResizedCrop(args["crop"]), T.RandomHorizontalFlip(), T.ToTensor(),
                    T.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))])
    data = ImageFolder(str(__import__("pathlib").Path(args["folder"]) / "train"), transform=tf)
    loader = torch.utils.data.DataLoader(data, args["batch"], shuffle=True, num_workers=args["workers"],
                                         drop_last=True)
else:  # the memory path: the whole split decoded into one uint8 tensor
    from lenet2vit.data import load_train_val_test
    t0 = time.perf_counter()
    train = load_train_val_test("folder", args["folder"], val_fraction=0.0, image_size=args["crop"],
                                cache_dir=args["cache"], progress=False)[0]
    loader = None
n, t0 = 0, time.perf_counter()
for x, y in loader or ():
    n += len(y)
seconds = time.perf_counter() - t0
kb = lambda who: resource.getrusage(who).ru_maxrss  # kB on Linux
print(json.dumps({"images": n if loader else len(train), "seconds": seconds,
                  "peak_rss_mb": kb(resource.RUSAGE_SELF) / 1024, "worker_peak_rss_mb": kb(resource.RUSAGE_CHILDREN) / 1024}))
"""


def measure(loop: str, folder: Path, args, cache: str) -> dict:
    spec = dict(loop=loop, folder=str(folder), crop=args.crop, batch=args.batch, workers=args.workers, cache=cache)
    proc = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(spec)], capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"{loop} on {folder} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(args) -> dict:
    env = machine(torch.device("cpu"))
    describe_machine(env)
    root = Path(args.root) if args.root else Path(tempfile.gettempdir()) / "lenet2vit-stream-bench"
    sizes = [int(s) for s in args.sizes.split(",")]
    out = {"machine": env, "settings": {k: getattr(args, k) for k in ("sizes", "width", "height", "crop", "batch",
                                                                        "workers")}, "folders": {}}
    print(f"folders: {', '.join(map(str, sizes))} JPEGs of {args.width}x{args.height} under {root}; "
          f"batch {args.batch}, {args.workers} workers, crop {args.crop}")
    with tempfile.TemporaryDirectory() as cache:
        for n in sizes:
            t0 = time.perf_counter()
            folder = make_folder(root, n, args.width, args.height, max(args.workers, 1))
            made = time.perf_counter() - t0
            row = {"made_seconds": made, "stream": measure("stream", folder, args, cache),
                   "memory_path_need_mb": n * 3 * args.crop**2 / 2**20}
            s = row["stream"]
            figure(f"stream {n} images: images/s", s["images"] / s["seconds"], "img/s")
            figure(f"stream {n} images: peak RSS, training process", s["peak_rss_mb"], "MB")
            figure(f"stream {n} images: peak RSS, largest worker", s["worker_peak_rss_mb"], "MB")
            figure(f"memory path {n} images: decoded set alone", row["memory_path_need_mb"], "MB")
            if n <= args.memory_path_max:
                m = row["memory"] = measure("memory", folder, args, cache)
                figure(f"memory path {n} images: peak RSS (decode into one tensor)", m["peak_rss_mb"], "MB")
            out["folders"][n] = row
        smallest = make_folder(root, sizes[0], args.width, args.height, max(args.workers, 1))  # made above
        ref = out["reference"] = measure("reference", smallest, args, cache)
    ours = out["folders"][sizes[0]]["stream"]
    ratio = (ours["images"] / ours["seconds"]) / (ref["images"] / ref["seconds"])
    figure(f"reference ImageFolder + DataLoader {sizes[0]} images: images/s", ref["images"] / ref["seconds"], "img/s")
    figure("stream / reference images/s (same folder, crop, workers, batch)", ratio, "x")
    peaks = [out["folders"][n]["stream"]["peak_rss_mb"] for n in sizes]
    figure(f"stream peak RSS, largest / smallest folder ({sizes[-1]} vs {sizes[0]} images)", peaks[-1] / peaks[0], "x",
           f"(the decoded set grows {sizes[-1] / sizes[0]:.0f}x)")
    out["ratio_stream_over_reference"] = ratio
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", help="folder sizes, comma-separated (default 2000,8000,32000)")
    p.add_argument("--width", type=int)
    p.add_argument("--height", type=int)
    p.add_argument("--crop", type=int, help="the stored/crop size (default 224)")
    p.add_argument("--batch", type=int)
    p.add_argument("--workers", type=int, default=2, help="decoding processes, both loops (default 2)")
    p.add_argument("--memory-path-max", type=int, help="also measure the memory path on folders up to this size")
    p.add_argument("--threads", type=int, help="torch threads of this process (each loop's process takes 1)")
    p.add_argument("--root", help="where the synthetic folders are kept (default: the temp folder)")
    p.add_argument("--smoke", action="store_true", help="tiny folders: checks the script runs")
    p.add_argument("--out", help="write the figures as JSON here")
    args = p.parse_args(argv)
    apply_budget(p, args, FULL, SMOKE, positive=("width", "height", "crop", "batch"))
    if args.threads:
        torch.set_num_threads(args.threads)
    return script_main(run, args, RuntimeError)


if __name__ == "__main__":
    sys.exit(main())
