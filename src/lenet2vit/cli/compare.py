"""``lenet2vit compare`` and ``lenet2vit report``: a controlled study, and its tables, plots and report."""

from __future__ import annotations

import argparse
from dataclasses import fields

from lenet2vit.cli.flags import add_data_flags, add_train_flags, data_source, positive_int


def _studies_epilog() -> str:
    from lenet2vit.experiment.study import STUDIES

    lines = ["studies (--preset):"]
    for s in STUDIES.values():
        lines.append(f"  {s.name:<12} {s.description}")
        lines.append(f"  {'':<12} models {','.join(s.models)}; {s.dataset}; {s.seeds} seed(s); "
                     f"training preset {s.train_preset}")
    lines.append("any other training preset works too, with --models.")
    lines.append("with no arguments: the quick study on the bundled digits, written to runs/compare-quick.")
    return "\n".join(lines)


def cmd_compare(args) -> int:
    from lenet2vit.engine.config import TrainConfig
    from lenet2vit.experiment import CompareError, compare

    if args.seed is not None:
        raise CompareError("a study trains several seeds: use --seeds 3 (seeds 0,1,2) or --seeds 0,5,9 instead of --seed")
    overrides = {f.name: getattr(args, f.name) for f in fields(TrainConfig)
                 if f.name != "seed" and getattr(args, f.name, None) is not None}
    dataset, data_dir = data_source(args)
    compare(
        args.models, dataset=dataset, data_dir=data_dir, preset=args.preset or "quick", seeds=args.seeds,
        out=args.out, shard=args.shard, overrides=overrides, input_size=args.input_size,
        pretrained_dir=args.pretrained_dir, pretrained=args.pretrained, download=args.download, strict=args.strict,
        report=not args.no_report, progress=not args.no_progress,
    )
    return 0


def cmd_report(args) -> int:
    from lenet2vit.experiment import build_report

    build_report(args.dirs, args.out)
    return 0


def add_parsers(sub) -> None:
    p = sub.add_parser(
        "compare", help="train several models under one protocol and seeds; tables, plots, report.html",
        description="Train every model with the same data, split, preset, epochs, batch size and seeds "
                    "(only the model differs), then write results.csv/json, table.md, plots and report.html. "
                    "Rerun the same command to resume an interrupted study.",
        epilog=_studies_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--models", help="comma-separated model names (default: the study's models)")
    p.add_argument("--seeds", help="number of seeds (3 means seeds 0,1,2) or a list such as 0,5,9 (default: the study's)")
    p.add_argument("--out", help="study folder (default runs/compare-PRESET)")
    p.add_argument("--shard", help="i/n: run only the jobs whose index modulo n is i (merge with `lenet2vit report`)")
    p.add_argument("--pretrained", choices=["imagenet", "timm"],
                   help="start every model from its reference's published ImageNet weights (imagenet: torchvision's "
                        "or timm's, downloaded once; timm: the timm references' only)")
    p.add_argument("--pretrained-dir", help="folder of torchvision ImageNet weights (resnet18-*.pth, ...) to start every model from")
    p.add_argument("--input-size", type=positive_int, help="resize inputs to this size on the fly")
    p.add_argument("--no-report", action="store_true", help="skip the plots and report.html at the end")
    p.add_argument("--no-progress", action="store_true")
    add_data_flags(p)
    add_train_flags(p, preset_default=None, hide=("seed",),  # a study has --seeds
                    preset_help="study (quick, fast, seed-paper, degradation) or training preset (default: quick)")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser(
        "report", help="(re)build the tables, plots and report.html of study folders; merge shards",
        description="Rebuild table.md, results_agg.csv, the plots and a self-contained report.html from stored "
                    "results. Several folders (shards of one study) are merged into --out after checking that "
                    "they share one protocol.",
    )
    p.add_argument("dirs", nargs="+", help="study folders written by `lenet2vit compare`")
    p.add_argument("--out", help="where to write (required with several folders; default: the folder itself)")
    p.set_defaults(func=cmd_report)
