"""Training configuration: one dataclass, and the named presets built from it.

A preset is a :class:`TrainConfig` with a docstring-worthy reason for every number. Flags on
the command line override single fields of the chosen preset.
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, fields, replace

import torch.nn as nn

from lenet2vit.data.augment import CROP_FILLS
from lenet2vit.data.stream import DATA_MODES
from lenet2vit.errors import UserError

__all__ = ["TrainConfig", "MIN_STEPS_PER_EPOCH", "MIN_BATCH", "MAX_WARMUP_FRACTION", "PRESETS", "get_preset", "ConfigError"]

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("none", "step", "cosine", "onecycle", "plateau")
TTA = ("none", "flip", "translate", "10crop")
AMP = ("auto", "fp32", "bf16", "fp16")
FORMS = ("auto", "imagenet", "cifar")
TRACKERS = ("none", "tensorboard", "wandb", "mlflow")  # experiment trackers (engine/trackers.py)


# A training epoch takes at least this many optimizer steps (TrainConfig.fit_to_data), in batches of
# at least MIN_BATCH images where the set allows (BatchNorm needs a few), and the warm-up at most
# this share of the run's steps (lr_factor), so short runs and small sets learn. On the bundled
# digits (1,293 training images) 16 steps an epoch left every BatchNorm family of the registry
# near chance after 2 epochs of `fast`; 50 brought GoogLeNet to 93% and MobileNet v2 to 87%.
MIN_STEPS_PER_EPOCH = 50
MIN_BATCH = 16
MAX_WARMUP_FRACTION = 0.3


class ConfigError(UserError, ValueError):
    """An invalid training setting; the message names the field and the allowed values."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines how a model is trained (the protocol), nothing about which model.

    ``mean``/``std`` of ``None`` mean "the data set's own channel statistics".
    ``channels_last`` and ``amp`` of ``"auto"`` pick the fast setting for the device:
    channels_last for CNNs, bf16 autocast on GPUs and on CPUs with AVX512-BF16/AMX;
    ``compile`` of ``None`` compiles on CUDA only (on a CPU it did not pay, docs/performance.md).
    """

    optimizer: str = "sgd"
    lr: float = 0.1
    weight_decay: float = 5e-4
    momentum: float = 0.9
    nesterov: bool = True
    betas: tuple[float, float] = (0.9, 0.999)
    schedule: str = "onecycle"
    warmup_epochs: float = 0.0
    milestones: tuple[int, ...] = ()  # when "step" multiplies the lr by gamma ...
    milestone_unit: str = "epoch"  # ... counted in epochs or optimizer steps
    step_every: int = 0  # "step": also multiply by gamma every this many epochs (0: off)
    gamma: float = 0.1
    patience: int = 2  # "plateau": epochs without a better val accuracy before lr *= gamma
    label_smoothing: float = 0.0
    epochs: int = 10
    batch_size: int = 128
    eval_batch_size: int = 512
    grad_clip: float | None = None
    plain_grad_clip: float = 0.0  # grad_clip for networks without batch/layer/group norm (fit_to_model; 0: off)
    ema: float = 0.0  # decay per step of an exponential moving average of the weights (0: off); evaluated instead
    lookahead: int = 0  # Lookahead (Zhang et al. 2019): every this many steps the slow weights move ... (0: off)
    lookahead_alpha: float = 0.5  # ... this share of the way to the optimizer's, which restart from them
    aux_weight: float = 0.3  # GoogLeNet's auxiliary losses (paper Sec. 5)
    dropout: float | None = None  # the model's own dropout layers (p > 0) drop with this probability instead (0: off)
    crop_padding: int = 0
    crop_fill: str = "zero"  # what the random crop's padding holds: zero, or reflect (the mirrored border)
    flip: bool = False
    alternate_flip: bool = False  # flip each image in every other epoch instead of at random (needs flip)
    rescale: float | None = None  # train: upscale by this ratio, then random-crop the input size
    scale_jitter: tuple[float, float] | None = None  # train: per-batch random rescale ratio in this range
    pca_lighting: float = 0.0  # AlexNet's PCA colour noise: std of the eigenvalue weights (0: off)
    tta: str = "none"  # test-time views averaged: none, flip, translate (flip and 1 px shifts), 10crop
    zero_init_residual: bool = False  # residual nets: each block's last BN starts at zero (Goyal et al. 2017)
    whiten_stem: bool = False  # the first convolution starts as the training patches' whitening (Jordan 2024)
    mean: tuple[float, ...] | None = (0.5, 0.5, 0.5)
    std: tuple[float, ...] | None = (0.5, 0.5, 0.5)
    val_fraction: float = 0.1
    limit: int | None = None  # train on a class-balanced subset of this many images
    seed: int = 0
    device: str = "auto"
    amp: str = "auto"
    channels_last: str = "auto"  # "auto" | "on" | "off"
    compile: bool | None = None  # torch.compile; None: on for CUDA (where it pays), off elsewhere
    sync_bn: bool = False  # distributed: synchronise BatchNorm statistics across processes
    deterministic: bool = False  # deterministic kernels everywhere (slower on GPUs): runtime.set_deterministic
    nonfinite: str = "stop"  # "stop" | "skip": what a NaN/inf loss does
    form: str = "auto"  # the architecture's form: auto (the CIFAR form for images <= 64 px), imagenet, cifar
    data_mode: str = "auto"  # image folders: decoded in memory, or streamed from disk (auto: by the memory budget)
    workers: int | None = None  # streaming: decoding processes per rank (None: the CPUs, shared by the local ranks)
    gpu_decode: bool = False  # streaming: decode the JPEGs of each batch on the GPU (nvJPEG); workers only read files
    logger: str = "none"  # an experiment tracker besides log.jsonl: tensorboard, wandb, mlflow

    def __post_init__(self) -> None:
        def bad(name, value, allowed):
            raise ConfigError(f"{name}={value!r} is not valid; choose one of: {', '.join(allowed)}")

        if self.optimizer not in OPTIMIZERS:
            bad("optimizer", self.optimizer, OPTIMIZERS)
        if self.schedule not in SCHEDULES:
            bad("schedule", self.schedule, SCHEDULES)
        if self.amp not in AMP:
            bad("amp", self.amp, AMP)
        if self.channels_last not in ("auto", "on", "off"):
            bad("channels_last", self.channels_last, ("auto", "on", "off"))
        if self.tta not in TTA:
            bad("tta", self.tta, TTA)
        if self.milestone_unit not in ("epoch", "step"):
            bad("milestone_unit", self.milestone_unit, ("epoch", "step"))
        if self.form not in FORMS:
            bad("form", self.form, FORMS)
        if self.logger not in TRACKERS:
            bad("logger", self.logger, TRACKERS)
        if self.data_mode not in DATA_MODES:
            bad("data_mode", self.data_mode, DATA_MODES)
        if self.crop_fill not in CROP_FILLS:
            bad("crop_fill", self.crop_fill, CROP_FILLS)
        if self.nonfinite not in ("stop", "skip"):
            bad("nonfinite", self.nonfinite, ("stop", "skip"))
        for name in ("epochs", "batch_size", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be a positive whole number, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        for name in ("weight_decay", "momentum", "label_smoothing", "warmup_epochs", "crop_padding", "pca_lighting",
                     "step_every", "patience", "plain_grad_clip"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"limit must be a positive number of images, got {self.limit}")
        if self.rescale is not None and self.rescale < 1:
            raise ConfigError(f"rescale must be >= 1 (a ratio of the input size), got {self.rescale}")
        if self.scale_jitter is not None and not 1 <= self.scale_jitter[0] <= self.scale_jitter[1]:
            raise ConfigError(f"scale_jitter must be two ratios 1 <= lo <= hi, got {self.scale_jitter}")
        if self.dropout is not None and not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must be a probability in [0, 1), got {self.dropout}")
        if not 0 <= self.ema < 1:
            raise ConfigError(f"ema must be a decay in [0, 1) (e.g. 0.999), got {self.ema}")
        if self.lookahead < 0:
            raise ConfigError(f"lookahead must be a number of steps (e.g. 5; 0: off), got {self.lookahead}")
        if not 0 < self.lookahead_alpha <= 1:
            raise ConfigError(f"lookahead_alpha must be a share in (0, 1] (e.g. 0.5), got {self.lookahead_alpha}")
        if self.alternate_flip and not self.flip:
            raise ConfigError("alternate_flip schedules the flips; it needs flip=True (--flip)")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ConfigError(f"grad_clip must be > 0, got {self.grad_clip}")

    def fit_to_data(self, n_train: int) -> tuple["TrainConfig", str | None]:
        """This protocol for a training set of ``n_train`` images, and what changed (or ``None``).

        An epoch takes at least :data:`MIN_STEPS_PER_EPOCH` optimizer steps, in batches of at
        least :data:`MIN_BATCH` images while the set has twice that: on a set too small for the
        preset's batch the batch shrinks, and the lr with it (linearly for SGD, by the square root
        for Adam and AdamW), so a recipe made for CIFAR-10 neither diverges nor stalls on a few
        hundred images. (The warm-up is capped by the run's length in :func:`lr_factor`.)
        """
        batch = max(1, min(self.batch_size, max(n_train // MIN_STEPS_PER_EPOCH, min(MIN_BATCH, n_train // 2))))
        if batch >= self.batch_size:
            return self, None
        ratio = batch / self.batch_size
        lr = self.lr * (ratio if self.optimizer == "sgd" else ratio**0.5)
        rule = "linear" if self.optimizer == "sgd" else "square-root"
        return replace(self, batch_size=batch, lr=lr), (
            f"{n_train} training images make fewer than {MIN_STEPS_PER_EPOCH} steps per epoch at batch {self.batch_size}: "
            f"batch {batch}, lr {self.lr:g} -> {lr:.4g} ({rule} scaling)"
        )

    def fit_to_model(self, model: nn.Module) -> tuple["TrainConfig", str | None]:
        """This protocol for ``model``, and what changed (or ``None``).

        A network without batch, layer or group normalisation (LeNet-5, AlexNet, ZFNet, plain
        VGG) gets its gradient norm clipped at :attr:`plain_grad_clip` where no ``grad_clip``
        is set: nothing rescales its activations, and a large SGD step can throw it onto a dead
        plateau for good. A network without batch normalisation keeps its random first
        convolution under ``whiten_stem``: the whitening filters are large, and without a
        BatchNorm to rescale them AlexNet-CIFAR fell from 52% to 22% on the digits in 2 epochs
        of `fast`. One rule for every model, so a study keeps one protocol.
        """
        cfg, changed = self, []
        if cfg.whiten_stem and not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
            cfg = replace(cfg, whiten_stem=False)
            changed.append("no batch normalisation in the model: whiten_stem off (its first convolution keeps "
                           "its random start)")
        norms = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)
        if cfg.plain_grad_clip and cfg.grad_clip is None and not any(isinstance(m, norms) for m in model.modules()):
            cfg = replace(cfg, grad_clip=cfg.plain_grad_clip)
            changed.append(f"no batch, layer or group normalisation in the model: gradient norm clipped at "
                           f"{cfg.plain_grad_clip:g} (plain_grad_clip)")
        return cfg, "; ".join(changed) or None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        clean = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in known}
        return cls(**clean)

    def replace(self, **changes) -> "TrainConfig":
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


# The presets. Each is the protocol of a study or a recipe of ours; see docs/presets.md.
PRESETS: dict[str, TrainConfig] = {
    # The comparison study this project reproduces: torchvision's ImageNet forms, Adam 1e-3,
    # cross-entropy, 10 epochs, inputs scaled to [0, 1] and normalised with mean 0.5 / std 0.5, no
    # augmentation. It names no input size: each model takes the data's own 32 px where it can,
    # else the smallest size it accepts (AlexNet: 63 px); --input-size 224 is the usual fine-tuning size.
    "seed-paper": TrainConfig(
        optimizer="adam", lr=1e-3, weight_decay=0.0, schedule="none", epochs=10, batch_size=64,
        mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), crop_padding=0, flip=False, form="imagenet",
    ),
    # Our own recipe for fast CIFAR training: SGD with Nesterov momentum, a one-cycle (linear
    # warm-up, linear decay) schedule, label smoothing, pad-4 crop + flip. Chosen on the validation
    # split of the original CIFAR-10 (docs/results.md has every run and its curves): six test views
    # (the image, its mirror, both shifted one pixel) beat the mirror pair by 0.34 points there;
    # batch 128 at lr 0.1 beat batch 256 at lr 0.2 and at 0.4 there (ResNet-18), and starting the
    # first convolution as the patch whitening beat the random start by 0.40 points over two seeds
    # each (ResNet-18; networks with BatchNorm only, fit_to_model).
    # Networks without normalisation (AlexNet, ZFNet, plain VGG, LeNet-5) clip the gradient norm
    # at 2, chosen on validation (the digits, 2 epochs): on 900 images the He-initialised
    # AlexNet-CIFAR stayed dead at 10% unclipped and reached 51, 63, 49 and 43% clipped at 1, 2, 3
    # and 5 (plain VGG-11: 28% at 2). It costs LeNet-5 a little: on all 1,293 images, over 4 seeds,
    # 84.1% at 2, 86.9% at 3, 87.2% unclipped.
    "fast": TrainConfig(
        optimizer="sgd", lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4, schedule="onecycle",
        warmup_epochs=2.0, label_smoothing=0.1, epochs=10, batch_size=128, mean=None, std=None,
        crop_padding=4, flip=True, tta="translate", plain_grad_clip=2.0, whiten_stem=True,
    ),
    # A smoke run in minutes on a CPU: 2 epochs on a small subset. 900 images (810 train, 90 val)
    # make the 50 steps of an epoch in batches of 16 (MIN_STEPS_PER_EPOCH, MIN_BATCH): the fewest
    # images that keep both floors, so the main job (every family on the digits) stays short.
    # AdamW at 1e-3 rather than 2e-3: on the digits ViT-Ti ends at 34% instead of 20% (the
    # slowest learner), and every family stays above 64% (tests/engine/test_every_family_learns.py).
    "quick": TrainConfig(
        optimizer="adamw", lr=1e-3, weight_decay=5e-4, schedule="onecycle", warmup_epochs=0.5, epochs=2,
        batch_size=64, mean=None, std=None, crop_padding=0, flip=True, limit=900,
    ),
    # --- Each paper's own recipe (docs/presets.md lists what each leaves out) -------------------
    # AlexNet, Sec. 4-5: SGD momentum 0.9, weight decay 5e-4, batch 128, lr 0.01 divided by 10 when
    # the validation error stops improving; random crops of the image rescaled by 256/224 and flips;
    # PCA colour noise (std 0.1); test: 10 views (four corners + centre, and their flips). Left out:
    # the paper's 90 epochs on ImageNet (set --epochs), its per-layer bias init of 1.
    "alexnet-paper": TrainConfig(
        optimizer="sgd", lr=0.01, momentum=0.9, nesterov=False, weight_decay=5e-4, schedule="plateau", gamma=0.1,
        patience=2, epochs=90, batch_size=128, mean=None, std=None, rescale=256 / 224, flip=True,
        pca_lighting=0.1, tta="10crop",
    ),
    # VGG, Sec. 3.1-3.2: SGD momentum 0.9, wd 5e-4, batch 256, lr 0.01 /10 on plateau; scale
    # jittering S in [256, 512] for 224 crops (ratios 256/224 .. 512/224); flips; dense/multi-crop
    # test approximated by 10 views. Deeper nets can start from a trained A (--init-from).
    # Left out: dropout schedule details, the multi-scale test over several Q.
    "vgg-paper": TrainConfig(
        optimizer="sgd", lr=0.01, momentum=0.9, nesterov=False, weight_decay=5e-4, schedule="plateau", gamma=0.1,
        patience=2, epochs=74, batch_size=256, mean=None, std=None, scale_jitter=(256 / 224, 512 / 224), flip=True,
        tta="10crop",
    ),
    # GoogLeNet, Sec. 6: SGD momentum 0.9, lr decreased by 4% every 8 epochs, auxiliary losses
    # weighted 0.3. Left out: Polyak averaging, the photometric distortions and aspect-ratio crops.
    "googlenet-paper": TrainConfig(
        optimizer="sgd", lr=0.01, momentum=0.9, nesterov=False, weight_decay=2e-4, schedule="step", step_every=8,
        gamma=0.96, epochs=250, batch_size=128, mean=None, std=None, rescale=256 / 224, flip=True, aux_weight=0.3,
    ),
    # ResNet, Sec. 4.2 (CIFAR-10): SGD 0.1, momentum 0.9, wd 1e-4, batch 128, lr /10 at 32k and 48k
    # iterations, stop at 64k (182 epochs of 352 steps on a 45k/5k split); 4-pixel padding + crop + flip.
    "resnet-paper-cifar": TrainConfig(
        optimizer="sgd", lr=0.1, momentum=0.9, nesterov=False, weight_decay=1e-4, schedule="step",
        milestones=(32000, 48000), milestone_unit="step", gamma=0.1, epochs=182, batch_size=128, mean=None,
        std=None, crop_padding=4, flip=True, val_fraction=0.1,
    ),
    # ViT, Sec. 4.1 / App. B.1.1 (fine-tuning): SGD momentum 0.9, cosine decay with warm-up,
    # gradient clipping at norm 1, batch 512, no weight decay; fine-tune at a higher resolution
    # (pass --input-size; position embeddings are interpolated). Left out: Polyak averaging.
    "vit-paper": TrainConfig(
        optimizer="sgd", lr=0.01, momentum=0.9, nesterov=False, weight_decay=0.0, schedule="cosine",
        warmup_epochs=1.0, grad_clip=1.0, epochs=10, batch_size=512, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
        crop_padding=4, flip=True,
    ),
    # The degradation study (ResNet paper, Fig. 6) on a CPU-sized budget: the paper's recipe,
    # shortened, with one warm-up epoch (the paper warms ResNet-110 up at lr 0.01, Sec. 4.2;
    # on short budgets the 56-layer nets need it too). Compare plain20/plain56/resnet20/resnet56
    # with `compare --preset degradation`.
    "degradation": TrainConfig(
        optimizer="sgd", lr=0.1, momentum=0.9, nesterov=False, weight_decay=1e-4, schedule="step",
        warmup_epochs=1.0, milestones=(15, 23), gamma=0.1, epochs=30, batch_size=128, mean=None, std=None, crop_padding=4, flip=True,
    ),
}


def get_preset(name: str) -> TrainConfig:
    """The preset ``name``; an unknown name raises :class:`ConfigError` suggesting close ones."""
    try:
        return PRESETS[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(PRESETS), n=3, cutoff=0.4)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ConfigError(f"Unknown preset {name!r}.{hint} Presets: {', '.join(PRESETS)}") from None
