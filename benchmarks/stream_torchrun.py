"""Distributed training over an ImageNet-shaped folder larger than the decoded-set budget.

Synthetic folders of ``train/<class>/*.jpg`` + ``val/<class>/*.jpg`` (10 classes; each image's
width and height drawn from half to the full 500x375, so every aspect ratio occurs) are made
once under ``--root``, e.g. 1,000 + 100 and 4,000 + 400 images. On each, the command a user
runs:

    torchrun --standalone --nproc-per-node 2 -m lenet2vit train resnet18 --dataset folder \\
        --data-dir FOLDER --data-mode stream --input-size 64 --epochs 1 ...

trains for ``--epochs`` with 2 CPU processes (gloo), each reading its own shard through
decoding workers. A sampler reads ``/proc`` four times a second and records the peak of the
whole process tree's memory (the sum of PSS, so pages shared between processes count once)
and the largest single process's RSS. The figure to read: the peak stays flat while the folder
grows, beside the memory path's need (the decoded uint8 set), which grows with it.

    python benchmarks/stream_torchrun.py --out runs/bench/stream_torchrun.json
    python benchmarks/stream_torchrun.py --sizes 4000 --model resnet18 --input-size 112
    python benchmarks/stream_torchrun.py --smoke        # seconds: checks the script runs
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from harness import apply_budget, describe_machine, figure, machine, script_main  # benchmarks/harness.py
from stream_memory import make_folder  # benchmarks/stream_memory.py

FULL = dict(sizes="1000,4000", width=500, height=375, model="resnet18", input_size=64, epochs=1, batch=32)
SMOKE = dict(sizes="60,120", width=64, height=48, model="lenet5", input_size=32, epochs=1, batch=8)


def _tree(root: int) -> list[int]:
    """``root`` and every process below it, from /proc."""
    parent = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parent[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [root], [root]
    while frontier:
        frontier = [p for p, pp in parent.items() if pp in frontier]
        found += frontier
    return found


def _kb(pid: int, path: str, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/{path}").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def train_and_sample(folder: Path, args, out: Path) -> dict:
    """Run torchrun over ``folder`` and sample the memory of its process tree until it ends."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={args.nproc}",
           "-m", "lenet2vit", "train", args.model, "--dataset", "folder", "--data-dir", str(folder),
           "--data-mode", "stream", "--input-size", str(args.input_size), "--epochs", str(args.epochs),
           "--batch-size", str(args.batch), "--workers", str(args.workers), "--no-progress", "--restart",
           "--out", str(out)]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), PYTHONUNBUFFERED="1")
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    peak_pss = peak_rss = processes = 0
    while proc.poll() is None:
        pids = _tree(proc.pid)
        processes = max(processes, len(pids))
        peak_pss = max(peak_pss, sum(_kb(p, "smaps_rollup", "Pss:") for p in pids))
        peak_rss = max(peak_rss, max(_kb(p, "status", "VmRSS:") for p in pids))
        time.sleep(0.25)
    wall = time.perf_counter() - t0
    log = proc.stdout.read()
    if proc.returncode:
        raise RuntimeError(f"torchrun on {folder} failed ({proc.returncode}):\n{log[-3000:]}")
    res = json.loads((out / "results.json").read_text())
    cfg = json.loads((out / "config.json").read_text())
    return {"command": " ".join(cmd[1:]), "wall_seconds": wall, "peak_tree_pss_mb": peak_pss / 1024,
            "peak_process_rss_mb": peak_rss / 1024, "processes": processes, "mode": cfg["dataset"].get("mode"),
            "train_images": cfg["dataset"].get("train"), "val_images": cfg["dataset"].get("val"),
            "test_images": cfg["dataset"].get("test"), "stored_size": cfg["dataset"].get("image_size"),
            "train_images_per_s": res.get("train_images_per_s"), "test_top1": res.get("test_top1"),
            "log_tail": log.splitlines()[-6:]}


def run(args) -> dict:
    env = machine(torch.device("cpu"))
    describe_machine(env)
    root = Path(args.root) if args.root else Path(tempfile.gettempdir()) / "lenet2vit-stream-bench"
    sizes = [int(s) for s in args.sizes.split(",")]
    out = {"machine": env, "settings": {k: getattr(args, k) for k in ("sizes", "width", "height", "model",
                                                                        "input_size", "epochs", "batch", "nproc",
                                                                        "workers", "threads")}, "folders": {}}
    print(f"folders: {', '.join(f'{n} + {n // 10}' for n in sizes)} JPEGs (train/ + val/) of up to "
          f"{args.width}x{args.height}, every aspect, under {root}; {args.model} at {args.input_size} px, "
          f"{args.nproc} processes x {args.workers} decoding workers, batch {args.batch} per process")
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            folder = make_folder(root, n, args.width, args.height, 2, val=n // 10, vary=True)
            row = train_and_sample(folder, args, Path(tmp) / f"run-{n}")
            # what the memory path would decode into uint8 tensors in every process: all three splits at
            # the stored size (224 px for photos of varied size, as the streamed run records it)
            stored = row["stored_size"] or args.input_size
            row["memory_path_need_mb"] = (n + n // 10) * 3 * stored**2 / 2**20 * args.nproc
            out["folders"][n] = row
            if row["mode"] != "stream":
                raise RuntimeError(f"the run took the {row['mode']} path, not the stream path")
            figure(f"{n} + {n // 10} images: peak memory, all {row['processes']} processes (PSS)",
                   row["peak_tree_pss_mb"], "MB")
            figure(f"{n} + {n // 10} images: peak RSS, largest process", row["peak_process_rss_mb"], "MB")
            figure(f"{n} + {n // 10} images: the memory path's decoded sets ({args.nproc} ranks, {stored} px)",
                   row["memory_path_need_mb"], "MB")
            figure(f"{n} + {n // 10} images: training images/s ({args.nproc} processes)",
                   row["train_images_per_s"] or 0.0, "img/s")
            figure(f"{n} + {n // 10} images: wall time of the torchrun command", row["wall_seconds"], "s")
    peaks = [out["folders"][n]["peak_tree_pss_mb"] for n in sizes]
    if len(sizes) > 1:
        figure(f"peak memory, largest / smallest folder ({sizes[-1]} vs {sizes[0]} images)", peaks[-1] / peaks[0], "x",
               f"(the folder grows {sizes[-1] / sizes[0]:.0f}x)")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", help="training images of each folder, comma-separated (val/ gets a tenth more)")
    p.add_argument("--width", type=int, help="largest image width (each is drawn from half to this)")
    p.add_argument("--height", type=int, help="largest image height")
    p.add_argument("--model", help="the registered model to train (default resnet18)")
    p.add_argument("--input-size", type=int, help="the model's input size (default 64: a short benchmark)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch", type=int, help="batch per process")
    p.add_argument("--nproc", type=int, default=2, help="torchrun processes (default 2)")
    p.add_argument("--workers", type=int, default=1, help="decoding workers per process (default 1)")
    p.add_argument("--threads", type=int, default=1, help="torch threads of each training process (default 1)")
    p.add_argument("--root", help="where the synthetic folders are kept (default: the temp folder)")
    p.add_argument("--smoke", action="store_true", help="tiny folders and LeNet-5: checks the script runs")
    p.add_argument("--out", help="write the figures as JSON here")
    args = p.parse_args(argv)
    apply_budget(p, args, FULL, SMOKE, positive=("width", "height", "input_size", "epochs", "batch", "nproc",
                                                       "threads"))
    return script_main(run, args, RuntimeError)


if __name__ == "__main__":
    sys.exit(main())
