"""``lenet2vit bench``: images/s, ms/step, GFLOP/s and memory of models, with the machine's ceiling."""

from __future__ import annotations

import argparse
import csv
import io
from pathlib import Path

from lenet2vit.cli.flags import positive_int


def add_parsers(sub) -> None:
    p = sub.add_parser("bench", help="speed and memory of models (like timm's benchmark.py)")
    p.add_argument("models", help="comma-separated model names, e.g. resnet50,vit_b_16")
    p.add_argument("--mode", choices=["infer", "train", "both"], default="infer")
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--input-size", type=positive_int)
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="default: on for CNNs")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--warmup", type=positive_int, default=3)
    p.add_argument("--iters", type=positive_int, default=10)
    p.add_argument("--out", help="write OUT.csv and OUT.json")
    p.set_defaults(func=cmd_bench)


def cmd_bench(args) -> int:
    from lenet2vit.engine.checkpoint import atomic_write_json, atomic_write_text
    from lenet2vit.bench import bench_model, conv_ceiling
    from lenet2vit.registry import check_input, model_info

    names = [n.strip() for n in args.models.split(",") if n.strip()]
    for n in names:  # unknown names and sizes a model cannot take fail before any timing
        check_input(n, args.input_size or model_info(n).input_size)
    modes = ["infer", "train"] if args.mode == "both" else [args.mode]
    cl = True if args.channels_last is None else args.channels_last
    ceilings = {m: conv_ceiling(args.device, args.precision, cl, mode=m) for m in modes}
    for m, c in ceilings.items():
        print(f"machine ceiling ({m}): {c:.1f} GFLOP/s (3x3 conv {'forward' if m == 'infer' else 'forward+backward'}, "
              f"{args.precision}, {'channels_last' if cl else 'NCHW'})")
    head = f"{'model':<20} {'mode':<6} {'img/s':>10} {'ms/step':>9} {'params':>12} {'GMACs':>8} {'GFLOP/s':>9} {'of ceil':>8} {'peak MB':>9}"
    print(head)
    rows = []
    for n in names:
        for mode in modes:
            r = bench_model(n, mode, batch_size=args.batch_size, input_size=args.input_size, device=args.device,
                            precision=args.precision, channels_last=args.channels_last, compile=args.compile,
                            warmup=args.warmup, iters=args.iters)
            r.ceiling_gflops = ceilings[mode]
            rows.append(r.to_dict())
            print(f"{n:<20} {mode:<6} {r.images_per_s:>10.1f} {r.ms_per_step:>9.2f} {r.params:>12,} "
                  f"{r.macs / 1e9:>8.3f} {r.gflops:>9.1f} {r.fraction_of_ceiling:>8.1%} {r.peak_memory_mb:>9.0f}"
                  + (f"  (compile {r.compile_s:.1f}s)" if args.compile else ""))
    if args.out:
        out = Path(args.out)
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
        atomic_write_text(out.with_suffix(".csv"), buf.getvalue())
        atomic_write_json(out.with_suffix(".json"), rows)
        print(f"wrote {out.with_suffix('.csv')} and {out.with_suffix('.json')}")
    return 0
