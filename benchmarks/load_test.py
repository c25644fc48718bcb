"""Load test of `lenet2vit serve`: requests/s and latency of POST /api/predict on CPU.

Starts the server as a subprocess on 127.0.0.1 (loopback only) with a small model, sends a
bounded number of requests from a few concurrent clients, prints throughput and p50/p95/p99
latency, and stops the server. Without ``--run`` it serves a CIFAR ResNet-20 with random
weights (prediction cost does not depend on the weights).

    python benchmarks/load_test.py                       # 200 requests, 4 concurrent
    python benchmarks/load_test.py --run runs/r20 --requests 400 --concurrency 8 --explain

The request loop is bounded both in count (--requests) and in time (--max-seconds).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

HOST = "127.0.0.1"  # never anything but loopback


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def make_run(root: Path, model: str) -> Path:
    import torch

    from lenet2vit import create_model
    from lenet2vit.data import CIFAR10_CLASSES
    from lenet2vit.serving import save_run

    torch.manual_seed(0)
    net = create_model(model, num_classes=len(CIFAR10_CLASSES))
    return save_run(net, root / model, classes=list(CIFAR10_CLASSES), input_size=32,
                    mean=[0.4914, 0.4822, 0.4465], std=[0.247, 0.2435, 0.2616])


def sample_png(width: int, height: int) -> bytes:
    yy, xx = np.mgrid[0:height, 0:width]
    noise = np.random.default_rng(0).integers(0, 40, (height, width, 3))
    rgb = (np.stack([xx * 255 // width, yy * 255 // height, 255 - xx * 255 // width], -1) + noise).clip(0, 255)
    buf = io.BytesIO()
    Image.fromarray(rgb.astype(np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", help="run folder to serve (default: a random-weight resnet20 in a temp folder)")
    ap.add_argument("--model", default="resnet20", help="model of the default run (default resnet20)")
    ap.add_argument("--requests", type=int, default=200, help="timed requests (default 200)")
    ap.add_argument("--warmup", type=int, default=10, help="untimed requests first (default 10)")
    ap.add_argument("--concurrency", type=int, default=4, help="clients sending at once (default 4)")
    ap.add_argument("--image-size", type=int, nargs=2, default=(64, 48), metavar=("W", "H"),
                    help="size of the uploaded PNG (default 64 48)")
    ap.add_argument("--explain", action="store_true", help="ask for explanation maps too")
    ap.add_argument("--server-threads", type=int, help="PyTorch CPU threads in the server (default: PyTorch's)")
    ap.add_argument("--max-seconds", type=float, default=300, help="stop sending after this long (default 300)")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args()
    if not (1 <= args.requests <= 100_000 and 1 <= args.concurrency <= 64):
        ap.error("--requests must be 1..100000 and --concurrency 1..64")

    tmp = tempfile.TemporaryDirectory(prefix="lenet2vit-load-")
    run = Path(args.run) if args.run else make_run(Path(tmp.name), args.model)
    port = free_port()
    cmd = [sys.executable, "-m", "lenet2vit", "serve", str(run), "--host", HOST, "--port", str(port),
           "--log-level", "warning", "--device", "cpu"]
    if args.server_threads:
        cmd += ["--threads", str(args.server_threads)]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://{HOST}:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if server.poll() is not None:
                print(f"server exited with status {server.returncode}:\n{server.stderr.read()}", file=sys.stderr)
                return 1
            try:
                models = httpx.get(f"{base}/api/models", timeout=2).json()["models"]
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    print("server did not answer within 120 s", file=sys.stderr)
                    return 1
                time.sleep(0.2)

        png = sample_png(*args.image_size)
        form = {"explain": "1" if args.explain else "0"}
        latencies: list[float] = []
        errors: list[str] = []
        lock = threading.Lock()
        stop_at = time.monotonic() + args.max_seconds

        def one(client: httpx.Client, timed: bool) -> None:
            if time.monotonic() > stop_at:
                return
            t0 = time.perf_counter()
            try:
                r = client.post(f"{base}/api/predict", files={"file": ("img.png", png, "image/png")}, data=form)
                ok = r.status_code == 200 and len(r.json()["results"]) == len(models)
                err = None if ok else f"HTTP {r.status_code}: {r.text[:120]}"
            except httpx.HTTPError as e:
                err = f"{type(e).__name__}: {e}"
            dt = time.perf_counter() - t0
            with lock:
                if err:
                    errors.append(err)
                elif timed:
                    latencies.append(dt)

        with httpx.Client(timeout=60, limits=httpx.Limits(max_connections=args.concurrency)) as client:
            with ThreadPoolExecutor(args.concurrency) as pool:
                list(pool.map(lambda _: one(client, False), range(args.warmup)))
                t0 = time.perf_counter()
                list(pool.map(lambda _: one(client, True), range(args.requests)))
                wall = time.perf_counter() - t0
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        tmp.cleanup()

    import torch

    figures = {
        "model": ", ".join(m["model"] for m in models),
        "input_size": models[0]["input_size"],
        "explain": args.explain,
        "requests": len(latencies),
        "errors": len(errors),
        "concurrency": args.concurrency,
        "wall_s": round(wall, 3),
        "requests_per_s": round(len(latencies) / wall, 2) if wall > 0 else None,
        "latency_ms": {q: round(1000 * percentile(latencies, p), 1) for q, p in (("p50", 50), ("p95", 95), ("p99", 99))}
        if latencies else None,
        "mean_ms": round(1000 * statistics.fmean(latencies), 1) if latencies else None,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "server_threads": args.server_threads or "PyTorch default",
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "torch": torch.__version__,
    }
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print(f"{figures['model']} at {figures['input_size']} px, explain={args.explain}: "
              f"{figures['requests']} requests, {args.concurrency} concurrent, {figures['errors']} errors")
        if latencies:
            lat = figures["latency_ms"]
            print(f"throughput {figures['requests_per_s']:.1f} requests/s over {wall:.1f} s; "
                  f"latency p50 {lat['p50']:.1f} ms, p95 {lat['p95']:.1f} ms, p99 {lat['p99']:.1f} ms")
        print(f"CPU: {figures['cpu_count']} cores, server threads {figures['server_threads']}, "
              f"load average {figures['load_average']}, torch {figures['torch']}")
    for e in errors[:5]:
        print("error:", e, file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
