"""The ``lenet2vit`` command: a thin layer that parses flags and calls the library.

Every sub-command is one function call a user could make from Python. User errors (unknown
names, bad paths, mismatched checkpoints, invalid numbers) print one line starting with
``error:`` and exit with status 2; tracebacks are kept for bugs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings

from lenet2vit.errors import UserError

__all__ = ["main", "build_parser"]


# ----------------------------------------------------------------------------- argument types


def _number(kind: type, lowest: float, inclusive: bool):
    """An argparse type: a number of ``kind`` above ``lowest`` (or equal to it when inclusive)."""
    word = "a whole number" if kind is int else "a number"

    def parse(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {word}, got {text!r}") from None
        if v < lowest or (v == lowest and not inclusive):
            bound = f">= {lowest}" if inclusive else f"> {lowest}"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {v}")
        return v

    return parse


positive_int = _number(int, 1, True)
nonneg_int = _number(int, 0, True)
positive_float = _number(float, 0, False)
nonneg_float = _number(float, 0, True)


def float_list(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(t) for t in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


# ----------------------------------------------------------------------------- commands


def cmd_list(args) -> int:
    from lenet2vit.registry import list_models, model_info

    names = list_models(args.pattern, cifar=None if args.all else False) if not args.cifar else list_models(args.pattern, cifar=True)
    rows = [model_info(n) for n in names]
    if args.json:
        print(json.dumps([{k: v for k, v in r.__dict__.items() if k != "builder"} for r in rows], indent=2))
        return 0
    print(f"{'name':<22} {'family':<16} {'year':>4} {'params':>13} {'input':>6}  {'CIFAR form':<20} description")
    for r in rows:
        print(f"{r.name:<22} {r.family:<16} {r.year:>4} {r.ref_params:>13,} {r.input_size:>5}px  "
              f"{(r.cifar_form or '-'):<20} {r.description}")
    print(f"\n{len(rows)} models" + ("" if args.all or args.cifar else " (add --all to include the _cifar forms)"))
    return 0


def cmd_summary(args) -> int:
    from lenet2vit.profile import format_summary, summary
    from lenet2vit.registry import check_input, create_model, model_info

    info = model_info(args.model)
    model = create_model(args.model, num_classes=args.num_classes, in_chans=args.in_chans)
    size = args.input_size or info.input_size
    check_input(args.model, size, args.in_chans, args.num_classes)
    rows = summary(model, size, args.in_chans, depth=args.depth)
    print(f"{args.model} ({info.family}, {info.year}) at {size}x{size}, {model.get_classifier().out_features if hasattr(model.get_classifier(), 'out_features') else args.num_classes} classes")
    print(format_summary(rows))
    return 0


def _config_error(msg: str):
    from lenet2vit.engine import ConfigError

    return ConfigError(msg)


def _add_train_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("protocol (override single fields of the preset)")
    g.add_argument("--preset", default="fast", help="seed-paper, fast, quick, ... (default: fast)")
    g.add_argument("--epochs", type=positive_int)
    g.add_argument("--batch-size", type=positive_int)
    g.add_argument("--lr", type=positive_float)
    g.add_argument("--optimizer", choices=["sgd", "adam", "adamw"])
    g.add_argument("--weight-decay", type=nonneg_float)
    g.add_argument("--momentum", type=nonneg_float)
    g.add_argument("--schedule", choices=["none", "step", "cosine", "onecycle", "plateau"])
    g.add_argument("--milestones", type=lambda t: tuple(positive_int(v) for v in t.split(",")),
                   help="step schedule: epochs (or steps, per the preset) at which lr *= gamma, e.g. 15,23")
    g.add_argument("--tta", choices=["none", "flip", "translate", "10crop"],
                   help="test-time views averaged for the test split (translate: flip and 1 px shifts)")
    g.add_argument("--warmup-epochs", type=nonneg_float)
    g.add_argument("--label-smoothing", type=nonneg_float)
    g.add_argument("--crop-padding", type=nonneg_int, help="random-crop padding in pixels (0: off)")
    g.add_argument("--pca-lighting", type=nonneg_float, help="AlexNet's PCA colour noise: std of its weights (0: off)")
    g.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None, help="random horizontal flips")
    g.add_argument("--alternate-flip", action=argparse.BooleanOptionalAction, default=None,
                   help="flip each image in every other epoch instead of at random")
    g.add_argument("--zero-init-residual", action=argparse.BooleanOptionalAction, default=None,
                   help="residual nets: start each block's last BatchNorm at zero")
    g.add_argument("--mean", type=float_list, help="normalisation mean, e.g. 0.5,0.5,0.5")
    g.add_argument("--std", type=float_list, help="normalisation std")
    g.add_argument("--val-fraction", type=nonneg_float, help="share of train held out for validation")
    g.add_argument("--limit", type=positive_int, help="train on a class-balanced subset of this many images")
    g.add_argument("--seed", type=nonneg_int)
    g.add_argument("--device", help="auto (default), cpu, cuda, cuda:1, mps")
    g.add_argument("--amp", choices=["auto", "fp32", "bf16", "fp16"], help="autocast precision (auto: bf16 where fast)")
    g.add_argument("--channels-last", choices=["auto", "on", "off"])
    g.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None, help="torch.compile the model")
    g.add_argument("--grad-clip", type=positive_float)
    g.add_argument("--ema", type=nonneg_float, help="evaluate an exponential moving average of the weights with this "
                                                    "decay per step, e.g. 0.999 (0: off)")
    g.add_argument("--sync-bn", action=argparse.BooleanOptionalAction, default=None,
                   help="distributed (torchrun): synchronise BatchNorm statistics across processes")
    g.add_argument("--nonfinite", choices=["stop", "skip"], help="on a NaN/inf loss: stop (default) or skip the batch")


def _add_data_flags(p: argparse.ArgumentParser, required: bool = False) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--dataset", default=None if not required else "cifar10", help="cifar10 (default), folder, digits")
    g.add_argument("--data-dir", help="cifar-10-batches-py folder, image folder train/ test/, or a .tar.gz/.zip of one")
    g.add_argument("--download", action="store_true", help="download CIFAR-10 with torchvision (needs internet)")
    g.add_argument("--strict", action="store_true", help="fail on an unreadable image instead of skipping it")


def config_from_args(args):
    from lenet2vit.engine import get_preset

    cfg = get_preset(args.preset)
    return cfg.replace(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, optimizer=args.optimizer,
        weight_decay=args.weight_decay, momentum=args.momentum, schedule=args.schedule,
        warmup_epochs=args.warmup_epochs, label_smoothing=args.label_smoothing, crop_padding=args.crop_padding,
        milestones=args.milestones, tta=args.tta,
        flip=args.flip, mean=args.mean, std=args.std, val_fraction=args.val_fraction, limit=args.limit,
        seed=args.seed, device=args.device, amp=args.amp, channels_last=args.channels_last, compile=args.compile,
        grad_clip=args.grad_clip, nonfinite=args.nonfinite, sync_bn=args.sync_bn, pca_lighting=args.pca_lighting,
        ema=args.ema, alternate_flip=args.alternate_flip, zero_init_residual=args.zero_init_residual,
    )


def cmd_train(args) -> int:
    from lenet2vit.engine import train_run

    cfg = config_from_args(args)
    out = args.out or f"runs/{args.model}"
    train_run(
        args.model, out=out, cfg=cfg, dataset=args.dataset or "cifar10", data_dir=args.data_dir, form=args.form,
        input_size=args.input_size, pretrained=args.pretrained, weights_source=args.weights_source,
        init_from=args.init_from, download=args.download, strict=args.strict, resume=not args.restart,
        progress=not args.no_progress,
    )
    print(f"run saved in {out}")
    return 0


def cmd_eval(args) -> int:
    from lenet2vit.engine import evaluate_run

    res = evaluate_run(args.run, dataset=args.dataset, data_dir=args.data_dir, split=args.split,
                       device=args.device or "auto", batch_size=args.batch_size or 512,
                       progress=not args.no_progress, tta=args.tta, amp=args.amp)
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        top5 = res["top5"] is not None
        print(f"{res['model']} on {res['split']} ({res['n']} images): top-1 {res['top1']:.2%}"
              + (f"  top-5 {res['top5']:.2%}" if top5 else "")
              + f"  (error {1 - res['top1']:.2%}" + (f" / {1 - res['top5']:.2%}" if top5 else "") + ")"
              + f"  loss {res['loss']:.4f}"
              f"  [{res['amp']}, test views: {res['tta']}]")
    return 0


# ----------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lenet2vit",
        description="The milestone image classifiers from LeNet-5 to ViT: train, compare, explain.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("list", help="list registered models")
    p.add_argument("pattern", nargs="?", default="*", help="shell pattern, e.g. 'resnet*'")
    p.add_argument("--all", action="store_true", help="include the _cifar forms")
    p.add_argument("--cifar", action="store_true", help="only the _cifar forms")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("summary", help="layer table of a model: output shapes, params, MACs")
    p.add_argument("model")
    p.add_argument("--input-size", type=positive_int)
    p.add_argument("--num-classes", type=positive_int)
    p.add_argument("--in-chans", type=positive_int)
    p.add_argument("--depth", type=positive_int, default=2, help="module nesting depth to show")
    p.set_defaults(func=cmd_summary)

    p = sub.add_parser("train", help="train a model on CIFAR-10 or an image folder")
    p.add_argument("model")
    p.add_argument("--out", help="run folder (default runs/MODEL)")
    p.add_argument("--form", choices=["auto", "imagenet", "cifar"], default=None,
                   help="auto: the CIFAR form (3x3 stem, no early pooling) for images <= 64px "
                        "(default: the preset's; seed-paper: imagenet)")
    p.add_argument("--input-size", type=positive_int, help="resize inputs to this size on the fly")
    p.add_argument("--pretrained", help="imagenet (torchvision's published weights, downloaded once into the torch "
                                        "hub cache) or a torchvision/timm/lenet2vit weights file to start from")
    p.add_argument("--weights-source", default="auto", choices=["auto", "torchvision", "timm", "lenet2vit"])
    p.add_argument("--init-from", help="initialise shared layers from another run (VGG's trick)")
    p.add_argument("--restart", action="store_true", help="refuse to resume; fail if --out holds a run")
    p.add_argument("--no-progress", action="store_true")
    _add_data_flags(p, required=True)
    _add_train_flags(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="top-1 / top-5 of a trained run")
    p.add_argument("run", help="run folder written by `lenet2vit train`")
    p.add_argument("--split", default="test", choices=["train", "val", "test"],
                   help="val: the run's own held-out validation images (choose recipes on it)")
    p.add_argument("--batch-size", type=positive_int)
    p.add_argument("--device")
    p.add_argument("--tta", choices=["none", "flip", "translate", "10crop"], help="test-time views (default: the run's)")
    p.add_argument("--amp", choices=["auto", "fp32", "bf16", "fp16"], help="evaluation precision (default: the run's)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    _add_data_flags(p)
    p.set_defaults(func=cmd_eval)

    for register in _EXTRA_COMMANDS:
        register(sub)
    return parser


# Later command groups (compare, bench, explain, predict, ...) append their registration here.
_EXTRA_COMMANDS: list = []


def _load_extra_commands() -> None:
    import importlib

    _EXTRA_COMMANDS.clear()
    for mod in ("lenet2vit.experiment.cli", "lenet2vit.bench_cli", "lenet2vit.explain.cli", "lenet2vit.serving.cli"):
        try:
            m = importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name and mod.startswith(e.name):
                continue
            raise
        _EXTRA_COMMANDS.append(m.register)


def main(argv: list[str] | None = None) -> int:
    _load_extra_commands()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    shown = warnings.showwarning
    warnings.showwarning = _one_line_warning
    try:
        return args.func(args) or 0
    except UserError as e:  # every user error: one line that says what to do
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    finally:
        warnings.showwarning = shown


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings reach a user as one ``warning:`` line, without Python's category and source line."""
    print(f"warning: {message}", file=file or sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
