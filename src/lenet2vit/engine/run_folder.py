"""The run folder: what a training run writes, how every command reads it back.

A run folder is the one contract between training and everything after it (``eval``,
``predict``, ``explain``, ``export``, ``serve``, ``compare``)::

    config.json            model name and kwargs, classes, input size, mean/std, data set, protocol, versions
    checkpoint.safetensors resumable state after the last finished epoch
    best.safetensors       weights of the best validation epoch (metadata: the model part of config.json)
    log.jsonl, log.csv     one row per epoch
    results.json           test-split figures, written once at the end
    .run.lock              held by the one process training into the folder

:func:`load_run` rebuilds the model from it, :func:`run_preprocess` gives the preprocessing it
implies (:class:`lenet2vit.data.Preprocess`), :func:`save_run` writes one for a model trained
elsewhere, and :func:`diff_protocols` says how two protocols differ (a run or a study resumes
only under its own).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
import torch.nn as nn

from lenet2vit.data import Preprocess
from lenet2vit.engine.checkpoint import atomic_write_json, read_metadata, save_weights
from lenet2vit.errors import UserError
from lenet2vit.registry import create_model, model_info
from lenet2vit.weights import load_weights

__all__ = [
    "RunError",
    "CONFIG",
    "BEST",
    "CHECKPOINT",
    "RESULTS",
    "MODEL_KEYS",
    "NOT_PROTOCOL",
    "DESCRIPTIONS",
    "build_model",
    "read_config",
    "load_run",
    "run_preprocess",
    "save_run",
    "diff_protocols",
    "flatten",
    "with_train_defaults",
]

CONFIG, BEST, CHECKPOINT, RESULTS = "config.json", "best.safetensors", "checkpoint.safetensors", "results.json"

# What rebuilding the model and feeding it needs: the part of config.json that also travels
# inside best.safetensors (and exported files).
MODEL_KEYS = ("model", "model_kwargs", "num_classes", "in_chans", "input_size", "mean", "std", "classes")

# Settings that change how fast a run goes, not what it computes: a run may resume with others.
NOT_PROTOCOL = frozenset({"device", "compile", "eval_batch_size", "nonfinite", "deterministic", "workers",
                          "gpu_decode", "logger"})
# Fields of config.json that describe a run without defining it: never a reason to refuse a resume.
DESCRIPTIONS = frozenset({"dataset.roles"})


class RunError(UserError, ValueError):
    """A run folder that cannot be used as asked; the message says what to do."""


def build_model(name: str, num_classes: int, in_chans: int, model_kwargs: dict) -> nn.Module:
    """The registered model a run config names, with random weights."""
    return create_model(name, num_classes=num_classes, in_chans=in_chans, **model_kwargs)


def read_config(run: str | os.PathLike, weights: str = "best") -> tuple[dict, Path]:
    """``(config, weights file)`` of a run folder or of a ``.safetensors`` file written by one."""
    path = Path(run)
    if path.is_dir():
        cfg_path = path / CONFIG
        if not cfg_path.exists():
            raise RunError(f"{run}: not a run folder (no {CONFIG}); pass the --out folder of `lenet2vit train`")
        try:
            config = json.loads(cfg_path.read_text())
        except json.JSONDecodeError as e:
            raise RunError(f"{cfg_path} is not valid JSON ({e}); restore it or train the run again") from None
        wfile = path / f"{weights}.safetensors"
        if not wfile.exists():
            raise RunError(f"{run}: has no {wfile.name} yet; train it first (or resume with `lenet2vit train`)")
        return config, wfile
    if path.is_file() and path.suffix == ".safetensors":
        config = read_metadata(path)
        if "model" not in config:
            raise RunError(f"{run}: weights file carries no lenet2vit config; pass its run folder instead")
        return config, path
    raise RunError(f"{run}: no such run folder or .safetensors file")


def load_run(run_dir: str | os.PathLike, device: str | torch.device = "cpu", weights: str = "best") -> tuple[nn.Module, dict]:
    """Rebuild a trained model from its run folder (or a ``best.safetensors`` file).

    Returns ``(model, config)`` in eval mode, where ``config`` holds classes, input size and
    mean/std, so a run is all a user needs to predict, explain or export.
    """
    config, wfile = read_config(run_dir, weights)
    model = build_model(config["model"], config["num_classes"], config["in_chans"], config.get("model_kwargs", {}))
    load_weights(model, wfile, source="lenet2vit")
    return model.to(device).eval(), config


def run_preprocess(config: dict) -> Preprocess:
    """The preprocessing a run implies: what eval's loader, predict, explain and serve apply."""
    try:
        return Preprocess.from_config(config)
    except KeyError as e:
        raise RunError(f"run config has no {e.args[0]!r}; it was not written by `lenet2vit train`") from None


def save_run(
    model: nn.Module,
    out: str | os.PathLike,
    *,
    classes: Sequence[str],
    input_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    model_kwargs: dict | None = None,
) -> Path:
    """Write a run folder (``config.json`` + ``best.safetensors``) for a registered model trained elsewhere.

    ``model`` must come from :func:`lenet2vit.create_model` (its ``model_name`` names the
    architecture; ``model_kwargs`` are the extra arguments it was built with). The folder then
    works with ``predict``, ``export``, ``explain`` and ``serve`` like one written by ``lenet2vit train``.
    """
    name = getattr(model, "model_name", None)
    if name is None:
        raise RunError("model has no model_name; build it with lenet2vit.create_model(name, ...)")
    in_chans = len(mean)
    if len(std) != in_chans:
        raise RunError(f"mean has {in_chans} values but std {len(std)}; give one per input channel")
    config = {
        "model": name, "model_kwargs": dict(model_kwargs or {}), "family": model_info(name).family,
        "num_classes": len(classes), "in_chans": in_chans, "input_size": int(input_size),
        "mean": [float(m) for m in mean], "std": [float(v) for v in std], "classes": list(classes),
    }
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / CONFIG, config)
    save_weights(out / BEST, model.state_dict(), metadata=config)
    return out


# ----------------------------------------------------------------------------- protocols


def flatten(d: dict, prefix: str = "") -> dict:
    """``{"train": {"lr": 0.1}}`` -> ``{"train.lr": 0.1}``."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def with_train_defaults(protocol: dict) -> dict:
    """A copy of ``protocol`` whose ``train`` section also names settings added to
    :class:`TrainConfig` after it was written, at their defaults (so a newer version of the
    library can still resume and merge older runs and studies)."""
    from lenet2vit.engine.config import TrainConfig

    out = json.loads(json.dumps(protocol))  # tuples -> lists, as stored
    train = out.get("train")
    if isinstance(train, dict):
        for k, v in json.loads(json.dumps(TrainConfig().to_dict())).items():
            train.setdefault(k, v)
    if isinstance(out.get("dataset"), dict):
        out["dataset"].setdefault("mode", "memory")  # every run before the streaming path decoded in memory
    return out


def _under(key: str, prefixes: Iterable[str]) -> bool:
    """Whether a flattened key is one of ``prefixes`` or lies under one (``dataset.roles.test``)."""
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def diff_protocols(old: dict, new: dict, keys: Iterable[str] | None = None,
                   ignore: Iterable[str] = NOT_PROTOCOL) -> list[str]:
    """Lines ``"train.epochs: 10 -> 2"`` for every field that differs between two protocols.

    Nested dicts are compared field by field; lists and tuples compare equal when their items
    do. ``keys`` limits the comparison to flattened keys starting with one of those prefixes;
    ``ignore`` names ``train`` settings that do not count (by default the speed-only ones);
    the :data:`DESCRIPTIONS` never count.
    """
    skip = {f"train.{k}" for k in ignore} | DESCRIPTIONS
    a, b = flatten(with_train_defaults(old)), flatten(with_train_defaults(new))
    out = []
    for k in sorted(set(a) | set(b)):
        if _under(k, skip) or (keys is not None and not _under(k, keys)):
            continue
        if a.get(k) != b.get(k):
            out.append(f"{k}: {a.get(k)!r} -> {b.get(k)!r}")
    return out
