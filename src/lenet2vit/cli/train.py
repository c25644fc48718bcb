"""``lenet2vit train`` and ``lenet2vit eval``: one run, trained into a folder and evaluated from it."""

from __future__ import annotations

import json

from lenet2vit.cli.flags import add_data_flags, add_train_flags, config_from_args, data_source, positive_int
from lenet2vit.engine.config import AMP, TTA


def cmd_train(args) -> int:
    from lenet2vit.engine import train_run

    cfg = config_from_args(args)
    out = args.out or f"runs/{args.model}"
    dataset, data_dir = data_source(args)
    train_run(
        args.model, out=out, cfg=cfg, dataset=dataset or "cifar10", data_dir=data_dir,
        input_size=args.input_size, pretrained=args.pretrained, weights_source=args.weights_source,
        init_from=args.init_from, download=args.download, strict=args.strict, resume=not args.restart,
        progress=not args.no_progress,
    )
    print(f"run saved in {out}")
    return 0


def cmd_eval(args) -> int:
    from lenet2vit.engine import evaluate_run

    dataset, data_dir = data_source(args)
    res = evaluate_run(args.run, dataset=dataset, data_dir=data_dir, split=args.split,
                       device=args.device or "auto", batch_size=args.batch_size or 512,
                       progress=not args.no_progress, tta=args.tta, amp=args.amp)
    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    top5 = res["top5"] is not None
    print(f"{res['model']} on {res['split']} ({res['n']} images): top-1 {res['top1']:.2%}"
          + (f"  top-5 {res['top5']:.2%}" if top5 else "")
          + f"  (error {1 - res['top1']:.2%}" + (f" / {1 - res['top5']:.2%}" if top5 else "") + ")"
          + f"  loss {res['loss']:.4f}"
          f"  [{res['amp']}, test views: {res['tta']}]")
    report = res["analysis"]
    if len(report["per_class"]) <= 20:  # ImageNet's 1000 classes: in --json only
        print(f"{'class':<16} {'precision':>9} {'recall':>7} {'F1':>6} {'images':>7}")
        for r in report["per_class"] + [dict(report["macro"], **{"class": "macro mean", "support": res["n"]})]:
            print(f"{r['class'][:16]:<16} {r['precision']:>9.2%} {r['recall']:>7.2%} {r['f1']:>6.3f} {r['support']:>7}")
    return 0


def add_parsers(sub) -> None:
    p = sub.add_parser("train", help="train a model on CIFAR-10 or an image folder")
    p.add_argument("model")
    p.add_argument("--out", help="run folder (default runs/MODEL)")
    p.add_argument("--input-size", type=positive_int, help="resize inputs to this size on the fly")
    p.add_argument("--pretrained", help="imagenet (the reference's published weights: torchvision's, or timm's for "
                                        "MobileNet v1, ViT-Ti/S and R50+ViT-B; downloaded once), timm:<name> (a timm "
                                        "model's, e.g. timm:vit_small_patch16_224.augreg_in21k_ft_in1k) or a "
                                        "torchvision/timm/lenet2vit weights file to start from")
    p.add_argument("--weights-source", default="auto", choices=["auto", "torchvision", "timm", "lenet2vit"])
    p.add_argument("--init-from", help="initialise shared layers from another run (VGG's trick)")
    p.add_argument("--restart", action="store_true", help="refuse to resume; fail if --out holds a run")
    p.add_argument("--no-progress", action="store_true")
    add_data_flags(p, required=True)
    add_train_flags(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="top-1 / top-5 of a trained run")
    p.add_argument("run", help="run folder written by `lenet2vit train`")
    p.add_argument("--split", default="test", choices=["train", "val", "test"],
                   help="val: the run's own held-out validation images (choose recipes on it)")
    p.add_argument("--batch-size", type=positive_int)
    p.add_argument("--device")
    p.add_argument("--tta", choices=TTA, help="test-time views (default: the run's)")
    p.add_argument("--amp", choices=AMP, help="evaluation precision (default: the run's)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    add_data_flags(p)
    p.set_defaults(func=cmd_eval)
