"""The flags the commands share: number types, the data flags, and the training protocol's
flags, made from :class:`~lenet2vit.engine.config.TrainConfig`'s fields (one flag per field, so
a setting added to the protocol is on the command line at once)."""

from __future__ import annotations

import argparse
from dataclasses import fields

from lenet2vit.data.arrays import DataError
from lenet2vit.data.augment import CROP_FILLS
from lenet2vit.data.stream import DATA_MODES
from lenet2vit.engine.config import AMP, FORMS, OPTIMIZERS, SCHEDULES, TRACKERS, TTA, TrainConfig

__all__ = [
    "positive_int", "nonneg_int", "positive_float", "nonneg_float", "float_list", "int_list", "port",
    "add_data_flags", "data_source", "add_train_flags", "config_from_args",
]


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


def int_list(text: str) -> tuple[int, ...]:
    return tuple(positive_int(v) for v in text.split(","))


def port(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= v <= 65535:
        raise argparse.ArgumentTypeError(f"port must be between 0 and 65535, got {v}")
    return v


def add_data_flags(p: argparse.ArgumentParser, required: bool = False) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--dataset", default=None if not required else "cifar10", help="cifar10 (default), folder, digits")
    g.add_argument("--data-dir", help="cifar-10-batches-py folder, image folder train/ test/, or a .tar.gz/.zip of one")
    g.add_argument("--train-dir", help="the training split's folder of class folders (with --test-dir; "
                                       "instead of --data-dir's layouts)")
    g.add_argument("--val-dir", help="the validation split's folder (default: held out of the training folder)")
    g.add_argument("--test-dir", help="the test split's folder of class folders")
    g.add_argument("--download", action="store_true", help="download CIFAR-10 with torchvision (needs internet)")
    g.add_argument("--strict", action="store_true", help="fail on an unreadable image instead of skipping it")


def data_source(args) -> tuple[str | None, object]:
    """``(dataset, data_dir)`` of the data flags: split folders named one by one (``--train-dir``,
    ``--val-dir``, ``--test-dir``) make a folder data set whose data_dir maps each split to its folder."""
    dirs = {r: getattr(args, f"{r}_dir", None) for r in ("train", "val", "test")}
    if not any(dirs.values()):
        return args.dataset, args.data_dir
    if args.data_dir:
        raise DataError("pass either --data-dir or --train-dir/--val-dir/--test-dir, not both")
    return args.dataset or "folder", {r: d for r, d in dirs.items() if d}


# ----------------------------------------------------------------------------- the protocol's flags

# One line of help per TrainConfig field (the field's comment in engine/config.py says more).
HELP = {
    "optimizer": "sgd, adam or adamw",
    "lr": "base learning rate",
    "weight_decay": "L2 penalty (not on biases and norm parameters)",
    "momentum": "SGD momentum",
    "nesterov": "SGD: Nesterov momentum",
    "betas": "Adam/AdamW betas, e.g. 0.9,0.999",
    "schedule": "lr schedule (onecycle: linear warm-up and decay to zero)",
    "warmup_epochs": "linear lr warm-up, in epochs (at most 30%% of the run)",
    "milestones": "step schedule: epochs (or steps, per the preset) at which lr *= gamma, e.g. 15,23",
    "milestone_unit": "milestones count epochs or optimizer steps",
    "step_every": "step schedule: also multiply the lr by gamma every this many epochs (0: off)",
    "gamma": "lr factor of the step and plateau schedules",
    "patience": "plateau schedule: epochs without a better val accuracy before lr *= gamma",
    "label_smoothing": "cross-entropy label smoothing",
    "epochs": "training epochs",
    "batch_size": "training batch (the global batch under torchrun)",
    "eval_batch_size": "evaluation batch",
    "grad_clip": "clip the gradient norm at this value",
    "plain_grad_clip": "clip the gradient norm at this value in networks without batch/layer/group norm "
                       "(where --grad-clip is unset; fast: 2; 0: off)",
    "ema": "evaluate an exponential moving average of the weights with this decay per step, e.g. 0.999 (0: off)",
    "lookahead": "Lookahead: every this many steps the slow weights move toward the optimizer's, which restart "
                 "from them, e.g. 5 (0: off)",
    "lookahead_alpha": "Lookahead: the share of the way the slow weights move (the paper's 0.5)",
    "aux_weight": "GoogLeNet: weight of each auxiliary loss",
    "dropout": "the probability of every dropout layer the model has, in place of the architecture's (0: off)",
    "crop_padding": "random-crop padding in pixels (0: off)",
    "crop_fill": "what the crop's padding holds: zero, or reflect (the image mirrored at its border)",
    "flip": "random horizontal flips",
    "alternate_flip": "flip each image in every other epoch instead of at random",
    "rescale": "upscale by this ratio, then random-crop the input size (AlexNet: 1.1429)",
    "scale_jitter": "per-batch random rescale ratio in LO,HI (VGG: 1.1429,2.2857)",
    "pca_lighting": "AlexNet's PCA colour noise: std of its weights (0: off)",
    "tta": "test-time views averaged for the test split (translate: flip and 1 px shifts)",
    "zero_init_residual": "residual nets: start each block's last BatchNorm at zero",
    "whiten_stem": "start the first convolution's filters as the whitening of the training images' patches",
    "mean": "normalisation mean, e.g. 0.5,0.5,0.5 (default: the preset's, or the data's own)",
    "std": "normalisation std",
    "val_fraction": "share of train held out for validation",
    "limit": "train on a class-balanced subset of this many images",
    "seed": "training seed (weights, batches, augmentation)",
    "device": "auto (default), cpu, cuda, cuda:1, mps",
    "amp": "autocast precision (auto: bf16 where fast)",
    "channels_last": "memory layout (auto: channels_last for CNNs)",
    "compile": "torch.compile the model (default: on CUDA only)",
    "sync_bn": "distributed (torchrun): synchronise BatchNorm statistics across processes",
    "deterministic": "deterministic kernels (cuDNN, cuBLAS, torch.use_deterministic_algorithms); slower on GPUs",
    "nonfinite": "on a NaN/inf loss: stop (default) or skip the batch",
    "data_mode": "image folders: decode into memory, or stream from disk with worker processes (auto: stream "
                 "when the decoded set would pass $LENET2VIT_MEMORY_BUDGET, default half the RAM)",
    "logger": "also report to an experiment tracker: tensorboard (RUN/tensorboard), wandb or mlflow when installed",
    "workers": "streaming: decoding processes per rank (default: the CPUs, shared by the local ranks)",
    "gpu_decode": "streaming: decode each batch's JPEGs on the GPU with nvJPEG (the workers only read the files)",
    "form": "auto: the CIFAR form (3x3 stem, no early pooling) for images <= 64px (seed-paper: imagenet)",
}
CHOICES = {
    "optimizer": OPTIMIZERS, "schedule": SCHEDULES, "tta": TTA, "amp": AMP, "form": FORMS,
    "channels_last": ("auto", "on", "off"), "data_mode": DATA_MODES, "crop_fill": CROP_FILLS, "logger": TRACKERS, "milestone_unit": ("epoch", "step"), "nonfinite": ("stop", "skip"),
}
POSITIVE = {"lr", "epochs", "batch_size", "eval_batch_size"}  # zero is no value for these
ZERO_OK = {"dropout"}  # optional values for which zero is a setting (dropout 0: off)


def _flag_type(name: str, annotation: str):
    """``add_argument`` keywords for a TrainConfig field, from its annotation."""
    kind = annotation.replace(" | None", "")
    if kind == "bool":
        return {"action": argparse.BooleanOptionalAction, "default": None}
    if name in CHOICES:
        return {"choices": CHOICES[name]}
    if kind.startswith("tuple[int"):
        return {"type": int_list}
    if kind.startswith("tuple[float"):
        return {"type": float_list}
    optional = annotation.endswith("| None")  # e.g. limit, grad_clip, rescale: a value, or absent
    if kind == "int":
        return {"type": positive_int if name in POSITIVE or optional else nonneg_int}
    if kind == "float":
        return {"type": positive_float if name in POSITIVE or (optional and name not in ZERO_OK) else nonneg_float}
    return {"type": str}


def add_train_flags(p: argparse.ArgumentParser, *, preset_default: str | None = "fast",
                    preset_help: str = "seed-paper, fast, quick, ... (default: fast)", hide=()) -> None:
    """``--preset`` and one flag per TrainConfig field (``--batch-size`` for ``batch_size``);
    each overrides that field of the preset. ``hide`` keeps fields accepted but out of ``--help``."""
    g = p.add_argument_group("protocol (override single fields of the preset)")
    g.add_argument("--preset", default=preset_default, help=preset_help)
    for f in fields(TrainConfig):
        help_text = argparse.SUPPRESS if f.name in hide else HELP.get(f.name)
        g.add_argument("--" + f.name.replace("_", "-"), dest=f.name, help=help_text, **_flag_type(f.name, str(f.type)))


def config_from_args(args) -> TrainConfig:
    """The preset named by ``--preset`` with every field given on the command line replaced."""
    from lenet2vit.engine import get_preset

    given = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if getattr(args, f.name, None) is not None}
    return get_preset(args.preset).replace(**given)
