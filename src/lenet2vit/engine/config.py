"""Training configuration: one dataclass, and the named presets built from it.

A preset is a :class:`TrainConfig` with a docstring-worthy reason for every number. Flags on
the command line override single fields of the chosen preset.
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, fields, replace

__all__ = ["TrainConfig", "PRESETS", "get_preset", "ConfigError", "CIFAR_MEAN", "CIFAR_STD", "IMAGENET_MEAN", "IMAGENET_STD"]

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("none", "step", "cosine", "onecycle")
AMP = ("auto", "fp32", "bf16", "fp16")


class ConfigError(ValueError):
    """An invalid training setting; the message names the field and the allowed values."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines how a model is trained (the protocol), nothing about which model.

    ``mean``/``std`` of ``None`` mean "the data set's own channel statistics".
    ``channels_last`` and ``amp`` of ``"auto"`` pick the fast setting for the device:
    channels_last for CNNs, bf16 autocast on GPUs and on CPUs with AVX512-BF16/AMX.
    """

    optimizer: str = "sgd"
    lr: float = 0.1
    weight_decay: float = 5e-4
    momentum: float = 0.9
    nesterov: bool = True
    betas: tuple[float, float] = (0.9, 0.999)
    schedule: str = "onecycle"
    warmup_epochs: float = 0.0
    milestones: tuple[int, ...] = ()  # epochs at which "step" multiplies the lr by gamma
    gamma: float = 0.1
    label_smoothing: float = 0.0
    epochs: int = 10
    batch_size: int = 128
    eval_batch_size: int = 512
    grad_clip: float | None = None
    aux_weight: float = 0.3  # GoogLeNet's auxiliary losses (paper Sec. 5)
    crop_padding: int = 0
    flip: bool = False
    mean: tuple[float, ...] | None = (0.5, 0.5, 0.5)
    std: tuple[float, ...] | None = (0.5, 0.5, 0.5)
    val_fraction: float = 0.1
    limit: int | None = None  # train on a class-balanced subset of this many images
    seed: int = 0
    device: str = "auto"
    amp: str = "auto"
    channels_last: str = "auto"  # "auto" | "on" | "off"
    compile: bool = False
    nonfinite: str = "stop"  # "stop" | "skip": what a NaN/inf loss does

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
        if self.nonfinite not in ("stop", "skip"):
            bad("nonfinite", self.nonfinite, ("stop", "skip"))
        for name in ("epochs", "batch_size", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be a positive whole number, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        for name in ("weight_decay", "momentum", "label_smoothing", "warmup_epochs", "crop_padding"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"limit must be a positive number of images, got {self.limit}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ConfigError(f"grad_clip must be > 0, got {self.grad_clip}")

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
    # The comparison study this project reproduces: Adam 1e-3, cross-entropy, 10 epochs,
    # inputs scaled to [0, 1] and normalised with mean 0.5 / std 0.5, no augmentation.
    "seed-paper": TrainConfig(
        optimizer="adam", lr=1e-3, weight_decay=0.0, schedule="none", epochs=10, batch_size=64,
        mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), crop_padding=0, flip=False,
    ),
    # Our own recipe for fast, strong CIFAR training: SGD with Nesterov momentum, a one-cycle
    # (linear warm-up, linear decay) schedule, label smoothing, pad-4 crop + flip, large batch.
    "fast": TrainConfig(
        optimizer="sgd", lr=0.4, momentum=0.9, nesterov=True, weight_decay=5e-4, schedule="onecycle",
        warmup_epochs=2.0, label_smoothing=0.1, epochs=10, batch_size=512, mean=None, std=None,
        crop_padding=4, flip=True,
    ),
    # A smoke run in minutes on a CPU: few epochs on a small subset.
    "quick": TrainConfig(
        optimizer="adamw", lr=2e-3, weight_decay=5e-4, schedule="onecycle", warmup_epochs=0.5, epochs=2,
        batch_size=64, mean=None, std=None, crop_padding=0, flip=True, limit=2000,
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
