"""``lenet2vit explain``: figures of what one run learned, or several runs side by side."""

from __future__ import annotations

import argparse

from lenet2vit.cli.flags import nonneg_int, positive_int
from lenet2vit.explain.methods import METHODS

EXAMPLES = """examples:
  lenet2vit explain runs/r18 --image cat.jpg --method occlusion --out figs/
  lenet2vit explain runs/r18 --images test:8 --method gradcam --layer layer3
  lenet2vit explain runs/vit --images test:4 --method attention --block 5
  lenet2vit explain runs/zfnet --images test:64 --method deconv --layer features.5 --top 9
  lenet2vit explain runs/r18,runs/vit,runs/hybrid --images test:16 --method auto --wrong-only
  lenet2vit explain alexnet --method filters          # a model name: random weights
"""


def cmd_explain(args) -> int:
    from lenet2vit.runtime import resolve_device
    from lenet2vit.explain.run import explain_run

    written = explain_run(
        args.runs, method=args.method, out=args.out, image_files=args.image, images=args.images, layer=args.layer,
        top=args.top, patch=args.patch, stride=args.stride, block=args.block, target=args.target,
        wrong_only=args.wrong_only, device=resolve_device(args.device), dataset=args.dataset, data_dir=args.data_dir,
        seed=args.seed, batch_size=args.batch_size, log=(lambda _m: None) if args.quiet else print,
    )
    pngs = [p for p in written if p.suffix == ".png"]
    print(f"wrote {len(pngs)} figure(s) and {len(written) - len(pngs)} data file(s) to {args.out}")
    return 0


def add_parsers(subparsers) -> None:
    p = subparsers.add_parser(
        "explain", help="see what a network learned: filters, feature maps, occlusion, Grad-CAM, attention, deconvnet",
        description="Explain one run, or several runs side by side on the same images. Writes PNG figures with the "
                    "raw maps as .npy beside them.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("runs", help="run folder(s) of `lenet2vit train`, comma-separated; or a model name (random weights)")
    src = p.add_argument_group("images")
    src.add_argument("--image", nargs="+", metavar="FILE", help="image files (resized and centre-cropped)")
    src.add_argument("--images", metavar="SPLIT:N", help="N images of the runs' data set split, e.g. test:16")
    src.add_argument("--wrong-only", action="store_true", help="only images where the models disagree or any is wrong")
    src.add_argument("--dataset", help="data set for --images (default: the run's own)")
    src.add_argument("--data-dir", help="data folder for --dataset")
    src.add_argument("--seed", type=nonneg_int, default=0, help="which images --images picks (default 0)")
    p.add_argument("--method", default="auto", choices=METHODS,
                   help="auto: attention rollout for ViT/hybrid, Grad-CAM for CNNs (default)")
    p.add_argument("--out", default="explain", help="output folder (default: explain/)")
    p.add_argument("--layer", help="module name (see `lenet2vit summary MODEL --depth 3`) for gradcam, feature-maps, "
                                   "deconv; defaults: last conv stage, first conv, the whole features stack")
    p.add_argument("--top", type=positive_int, help="feature maps (default 16) or deconvnet activations (default 9)")
    p.add_argument("--patch", type=positive_int, help="occlusion patch size in pixels (default: input size / 8)")
    p.add_argument("--stride", type=positive_int, help="occlusion stride (default: patch / 2)")
    p.add_argument("--block", type=int, default=-1, help="transformer block for --method attention (default -1: last)")
    p.add_argument("--target", help="class the maps explain: true (default when labels are known), pred, an index or "
                                    "a class name; side-by-side panels default to each model's prediction")
    p.add_argument("--batch-size", type=positive_int, default=64, help="occluded copies per forward pass")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, mps")
    p.add_argument("--quiet", action="store_true", help="print only the summary line")
    p.set_defaults(func=cmd_explain)
