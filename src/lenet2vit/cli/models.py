"""``lenet2vit list`` and ``lenet2vit summary``: the registered models and their layers."""

from __future__ import annotations

import json

from lenet2vit.cli.flags import positive_int


def cmd_list(args) -> int:
    from lenet2vit.registry import list_models, model_info

    names = list_models(args.pattern, cifar=None if args.all else False) if not args.cifar else list_models(args.pattern, cifar=True)
    rows = [model_info(n) for n in names]
    if args.json:
        hidden = ("builder", "init_from")
        print(json.dumps([{k: v for k, v in r.__dict__.items() if k not in hidden} for r in rows], indent=2))
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
    head = model.get_classifier()
    classes = head.out_features if hasattr(head, "out_features") else args.num_classes
    print(f"{args.model} ({info.family}, {info.year}) at {size}x{size}, {classes} classes")
    print(format_summary(rows))
    return 0


def add_parsers(sub) -> None:
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
