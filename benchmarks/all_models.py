"""Images/s of every registered model at its default input size, as a Markdown table.

Each model is timed with :func:`lenet2vit.bench.bench_model` (random weights, warm-up steps
excluded, CUDA events on a GPU) in bf16 autocast, channels_last for CNNs (the engine's rule),
beside the machine's conv ceiling in the same precision and layout, so every row also reads
as a fraction of what the hardware can do. The table goes to stdout and, with ``--out``, to a
Markdown file (plus the raw figures as JSON beside it) ready for ``docs/performance.md``.

On a GPU the whole registry runs at the default sizes; on a CPU ``--max-params`` and
``--input-size`` keep it bearable:

    python benchmarks/all_models.py --device cuda --batch-size 256 --mode both --out docs/perf-gpu.md
    python benchmarks/all_models.py --max-params 30 --input-size 64 --batch-size 8 --out runs/perf-cpu.md
    python benchmarks/all_models.py --models 'resnet*' --precision fp32
    python benchmarks/all_models.py --smoke --models 'lenet5,resnet20'  # seconds: checks the script runs
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from pathlib import Path

import torch

from harness import apply_budget, figure, machine, machine_line  # benchmarks/harness.py

FULL = dict(warmup=3, iters=10)
SMOKE = dict(warmup=1, iters=1)


class BenchError(RuntimeError):
    """Something the user can fix (no model matches, bad flag); printed as one line."""


def select_models(patterns: str, max_params: float | None) -> list[str]:
    """Registered names matching any of the comma-separated shell patterns, in registry order.

    ``max_params`` (millions) drops models whose reference parameter count is larger.
    """
    from lenet2vit.registry import list_models, model_info

    names: list[str] = []
    for pat in (p.strip() for p in patterns.split(",")):
        if pat:
            names += [n for n in list_models(pat) if n not in names]
    if not names:
        raise BenchError(f"no registered model matches {patterns!r}; see `lenet2vit list` for the names")
    if max_params is not None:
        names = [n for n in names if model_info(n).ref_params <= max_params * 1e6]
        if not names:
            raise BenchError(f"every model matching {patterns!r} has more than {max_params:g}M parameters; "
                             "raise --max-params")
    order = {n: i for i, n in enumerate(list_models())}
    return sorted(names, key=order.__getitem__)


def markdown_table(rows: list[dict], modes: list[str], peak_memory: bool) -> str:
    """The results as a Markdown table, one row per model (``peak_memory``: add the GPU's peak MB)."""
    head = ["model", "family", "input", "params (M)", "MMACs", "layout"]
    for m in modes:
        head += [f"{m} img/s", f"{m} ms/batch", f"{m} GFLOP/s", f"{m} % of ceiling"]
    if peak_memory:
        head.append("peak MB")
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" if i < 2 or h == "layout" else "---:"
                                                         for i, h in enumerate(head)) + "|"]
    for r in rows:
        cells = [f"`{r['model']}`", r["family"], str(r.get("input_size", "")),
                 f"{r['params'] / 1e6:.2f}" if "params" in r else "", f"{r['macs'] / 1e6:,.1f}" if "macs" in r else "",
                 r.get("layout", "")]
        for m in modes:
            res = r.get(m)
            if res is None:
                cells += [r.get(f"{m}_error", "error"), "", "", ""]
            else:
                frac = res.get("fraction_of_ceiling")
                cells += [f"{res['images_per_s']:.1f}", f"{res['ms_per_step']:.2f}", f"{res['gflops']:.1f}",
                          f"{100 * frac:.1f}" if frac is not None else ""]
        if peak_memory:
            peaks = [r[m]["peak_memory_mb"] for m in modes if r.get(m)]
            cells.append(f"{max(peaks):.0f}" if peaks else "")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="*", help="comma-separated names or shell patterns (default: all)")
    p.add_argument("--max-params", type=float, help="skip models with more than this many million parameters")
    p.add_argument("--input-size", type=int, help="override every model's default size (never below its minimum)")
    p.add_argument("--batch-size", type=int, help="default 128 on a GPU, 8 on a CPU")
    p.add_argument("--mode", choices=["infer", "train", "both"], default="infer")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="bf16")
    p.add_argument("--compile", action="store_true", help="torch.compile every model (compile time reported apart)")
    p.add_argument("--warmup", type=int, help="untimed steps per model (default 3)")
    p.add_argument("--iters", type=int, help="timed steps per model (default 10)")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    p.add_argument("--out", type=Path, help="write the Markdown table here, and the figures as JSON beside it")
    p.add_argument("--smoke", action="store_true", help="tiny budget: checks the script runs, figures mean nothing")
    args = p.parse_args(argv)
    apply_budget(p, args, FULL, SMOKE, positive=("input_size", "batch_size", "iters"))
    if args.max_params is not None and args.max_params <= 0:
        p.error(f"--max-params must be > 0 (millions), got {args.max_params}")
    return args


def run(args: argparse.Namespace) -> dict:
    from lenet2vit.bench import bench_model, conv_ceiling
    from lenet2vit.runtime import resolve_device
    from lenet2vit.registry import model_info

    names = select_models(args.models, args.max_params)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    batch = args.batch_size or (128 if device.type == "cuda" else 8)
    if args.smoke:
        batch = args.batch_size or 2
    modes = ["infer", "train"] if args.mode == "both" else [args.mode]
    env = machine(device)
    print(f"machine: {machine_line(env)}")
    load = env.get("load_average")
    if load and env["logical_cpus"] and load[0] > 0.5 * env["logical_cpus"]:
        print(f"warning: load average {load[0]:.1f} on {env['logical_cpus']} CPUs - other work is running, "
              "so these figures are not meaningful; rerun on a quiet machine")
    if args.smoke:
        print("smoke run: tiny budget, the figures below are not meaningful")
    ceiling = conv_ceiling(device, args.precision, True, iters=args.iters,
                           **({"batch": 4, "channels": 64, "size": 16} if args.smoke else {}))
    figure(f"conv ceiling ({args.precision}, channels_last)", ceiling, "GFLOP/s")
    print(f"settings: {len(names)} models, batch {batch}, {args.precision}, modes {', '.join(modes)}, "
          f"{args.warmup} warm-up + {args.iters} timed steps{', torch.compile' if args.compile else ''}")
    print()
    rows = []
    t_all = time.perf_counter()
    for name in names:
        info = model_info(name)
        size = max(args.input_size, info.min_input_size) if args.input_size else info.input_size
        row = {"model": name, "family": info.family, "input_size": size}
        for mode in modes:
            try:
                r = bench_model(name, mode, batch_size=batch, input_size=size, device=str(device),
                                precision=args.precision, channels_last=None, compile=args.compile,
                                warmup=args.warmup, iters=args.iters)
            except (RuntimeError, ValueError) as e:  # e.g. out of memory: record it and go on
                row[f"{mode}_error"] = f"error: {str(e).splitlines()[0][:80]}"
                print(f"{name:<24} {mode:<6} {row[f'{mode}_error']}", flush=True)
            else:
                r.ceiling_gflops = ceiling
                row.update(params=r.params, macs=r.macs, layout="channels_last" if r.channels_last else "NCHW")
                row[mode] = r.to_dict()
                print(f"{name:<24} {mode:<6} {r.images_per_s:>10.1f} img/s {r.ms_per_step:>9.2f} ms/batch "
                      f"{r.gflops:>9.1f} GFLOP/s {100 * r.fraction_of_ceiling:>6.1f}% of ceiling "
                      f"({size}px, {row['layout']})", flush=True)
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
        rows.append(row)
    table = markdown_table(rows, modes, peak_memory=device.type == "cuda")
    print()
    print(table, end="")
    print(f"({len(rows)} models in {time.perf_counter() - t_all:.0f}s)")
    return {
        "benchmark": "all_models",
        "smoke": args.smoke,
        "device": str(device),
        "batch_size": batch,
        "precision": args.precision,
        "input_size_override": args.input_size,
        "compile": args.compile,
        "warmup": args.warmup,
        "iters": args.iters,
        "ceiling_gflops": ceiling,
        "rows": rows,
        "machine": env,
        "table": table,
    }


def main(argv=None) -> int:
    from lenet2vit.errors import UserError

    args = parse_args(argv)
    try:
        result = run(args)
    except (BenchError, UserError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        mode = "inference and training" if args.mode == "both" else ("inference" if args.mode == "infer" else "training")
        header = (f"<!-- written by benchmarks/all_models.py -->\n\n"
                  f"Machine: {machine_line(result['machine'])}. Device `{result['device']}`, batch "
                  f"{result['batch_size']}, {result['precision']} autocast, {mode}, channels_last for CNNs"
                  f"{', torch.compile' if args.compile else ''}; conv ceiling "
                  f"{result['ceiling_gflops']:.1f} GFLOP/s.\n\n")
        args.out.write_text(header + result["table"])
        args.out.with_suffix(".json").write_text(json.dumps(result, indent=2, default=str) + "\n")
        print(f"wrote {args.out} and {args.out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
