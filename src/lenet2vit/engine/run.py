"""A training run: data + model + protocol -> a self-describing run folder.

This is what ``lenet2vit train`` and ``lenet2vit eval`` call, and what ``compare`` calls once
per (model, seed). What the folder holds, and how it is read back, is
:mod:`lenet2vit.engine.run_folder`.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn

from lenet2vit.engine.checkpoint import FolderLock, atomic_write_json, read_metadata
from lenet2vit.engine.run_folder import (
    BEST,
    CHECKPOINT,
    CONFIG,
    MODEL_KEYS,
    RESULTS,
    RunError,
    build_model,
    diff_protocols,
    load_run,
)
from lenet2vit.engine.config import ConfigError, TrainConfig
from lenet2vit.data import describe_data_dir
from lenet2vit.engine.analysis import analyse
from lenet2vit.engine.loop import evaluate, fit
from lenet2vit.engine.trackers import check_tracker, open_tracker
from lenet2vit.profile import count_macs, count_params
from lenet2vit.registry import check_input, model_info, resolve_model_name
from lenet2vit.runtime import (
    amp_name,
    dist_info,
    environment,
    init_distributed,
    peak_memory_mb,
    reset_peak_memory,
    resolve_amp,
    resolve_device,
    set_deterministic,
    use_channels_last,
)
from lenet2vit.weights import is_published, load_weights, published_state_dict, read_state_dict

__all__ = ["train_run", "evaluate_run", "prepare_data", "make_loader"]

SPLIT_SEED = 0  # the train/val split is the same for every model and training seed


# ----------------------------------------------------------------------------- data


def prepare_data(dataset: str, data_dir, cfg: TrainConfig, *, download: bool = False, strict: bool = False,
                 progress: bool = True, log=None):
    """Train / val / test for a protocol (val held out of train with a fixed seed): arrays decoded
    in memory, or, for an image folder on disk whose decoded set would not fit the memory budget
    (or with ``data_mode="stream"``), the lists of files the streaming loader reads."""
    from lenet2vit.data import choose_mode, index_train_val_test, load_train_val_test, streamable

    if cfg.data_mode == "stream" or (cfg.data_mode == "auto" and streamable(dataset, data_dir)):
        files = index_train_val_test(dataset, data_dir, val_fraction=cfg.val_fraction, seed=SPLIT_SEED,
                                     limit=cfg.limit)
        mode, why = choose_mode(cfg.data_mode, sum(map(len, files)), files[0].image_size)
        if log is not None:
            log(f"data path: {why}")
            if mode == "stream":
                log(_stream_views(cfg))
        if mode == "stream":
            return files
    if cfg.gpu_decode and log is not None:
        log("note: --gpu-decode applies to streamed folders; this data is decoded once, into memory")
    return load_train_val_test(
        dataset, data_dir, val_fraction=cfg.val_fraction, seed=SPLIT_SEED, download=download, strict=strict,
        limit=cfg.limit, progress=progress,
    )


def _stream_views(cfg: TrainConfig) -> str:
    """What the streamed training views are: the ImageNet recipe's crops in place of the
    in-memory crop schedules (a preset's padding crop is for small stored squares)."""
    replaced = [f"{name} {getattr(cfg, name)}" for name in ("crop_padding", "alternate_flip") if getattr(cfg, name)]
    return ("train views: RandomResizedCrop (scale 0.08-1)" + (" + flip" if cfg.flip else "")
            + (f", in place of {' and '.join(replaced)} (in-memory sets only)" if replaced else "")
            + ("; JPEGs decoded on the GPU (nvJPEG)" if cfg.gpu_decode else ""))


def _is_streamed(data) -> bool:
    from lenet2vit.data import ImageFiles

    return isinstance(data, ImageFiles)


def make_loader(arrays, cfg: TrainConfig, *, train: bool, device, mean, std, channels_last: bool,
                input_size: int, seed: int | None = None, pca: dict | None = None):
    """The loader of one split: DeviceLoader for arrays in memory, StreamLoader for files on disk."""
    from lenet2vit.data import Augment, DeviceLoader, PaperAugment, StreamLoader

    rank, world = dist_info()
    paper = None
    if train and (cfg.rescale or cfg.scale_jitter or cfg.pca_lighting):
        paper = PaperAugment(
            rescale=cfg.rescale, scale_jitter=tuple(cfg.scale_jitter) if cfg.scale_jitter else None,
            pca_lighting=cfg.pca_lighting,
            eigvals=tuple(pca["eigvals"]) if pca else None,
            eigvecs=tuple(map(tuple, pca["eigvecs"])) if pca else None,
        )
    if _is_streamed(arrays):
        decode_device = None
        if cfg.gpu_decode:
            decode_device = torch.device(device)
            if decode_device.type != "cuda":
                raise ConfigError(f"--gpu-decode decodes with nvJPEG on a CUDA device, and this run's device is "
                                  f"{decode_device}; drop --gpu-decode or pass --device cuda")
        return StreamLoader(
            arrays, cfg.batch_size if train else cfg.eval_batch_size, shuffle=train,
            seed=cfg.seed if seed is None else seed, device=device, mean=mean, std=std, flip=train and cfg.flip,
            drop_last=train, channels_last=channels_last, image_size=input_size, rank=rank, world_size=world,
            paper_augment=paper, workers=cfg.workers, decode_device=decode_device,
        )
    aug = (Augment(crop_padding=cfg.crop_padding, flip=cfg.flip, alternate_flip=cfg.alternate_flip, crop_fill=cfg.crop_fill)
           if train and (cfg.crop_padding or cfg.flip) else None)
    return DeviceLoader(
        arrays, cfg.batch_size if train else cfg.eval_batch_size, shuffle=train,
        seed=cfg.seed if seed is None else seed, device=device, mean=mean, std=std, augment=aug,
        drop_last=train,  # every training step takes a full batch, on one process or N (BatchNorm needs > 1 image)
        channels_last=channels_last, image_size=None if input_size == arrays.image_size else input_size,
        rank=rank, world_size=world, paper_augment=paper,
    )


def choose_input_size(name: str, data_size: int, requested: int | None) -> tuple[int, str]:
    """The input size to train ``name`` at, and why: ``requested``, else the data's own size when
    the model accepts it, else the smallest size the model accepts."""
    info = model_info(name)
    if requested:
        return requested, f"{requested}px as requested (--input-size)"
    if info.max_input_size and data_size > info.max_input_size:
        return info.max_input_size, f"{info.max_input_size}px, the largest input {name} takes (the data is {data_size}px)"
    if data_size >= info.min_input_size:
        return data_size, f"the data's own {data_size}px"
    return info.min_input_size, (f"{info.min_input_size}px, the smallest input {name} accepts (the data is "
                                 f"{data_size}px; --input-size sets another)")


# ----------------------------------------------------------------------------- model


def _model_kwargs(name: str, cfg: TrainConfig, training: bool) -> dict:
    kwargs = dict(model_info(name).train_kwargs) if training else {}  # e.g. GoogLeNet's auxiliary heads
    if cfg.zero_init_residual:
        kwargs["zero_init_residual"] = True
    return kwargs


def _init_from(model: nn.Module, name: str, source, log) -> list[str]:
    """Initialise from another trained run's weights: the family's own way (VGG: the paper's
    layer copy) where its registry entry declares one, else every tensor of the same name and shape."""
    sd = read_state_dict(source)
    family_init = model_info(name).init_from
    if family_init is not None:
        copied = family_init(model, sd)
    else:
        own = model.state_dict()
        keep = {k: v for k, v in sd.items() if k in own and own[k].shape == v.shape}
        model.load_state_dict(keep, strict=False)
        copied = sorted(keep)
    log(f"initialised {len(copied)} tensors from {source}: {', '.join(copied[:12])}{' ...' if len(copied) > 12 else ''}")
    return copied


# ----------------------------------------------------------------------------- train / evaluate


def _check_protocol(out: Path, new: dict) -> None:
    path = out / CONFIG
    if not path.exists():
        return
    diffs = diff_protocols(json.loads(path.read_text()), new,
                           keys=("model", "model_kwargs", "num_classes", "in_chans", "input_size", "dataset", "train"))
    if diffs:
        raise RunError(
            f"{out} already holds a run with another protocol ({'; '.join(diffs[:4])}). "
            "Use another --out, or delete the folder to start over."
        )


def train_run(
    model: str,
    *,
    out: str | Path,
    cfg: TrainConfig,
    dataset: str = "cifar10",
    data_dir=None,
    form: str | None = None,
    input_size: int | None = None,
    pretrained: str | None = None,
    weights_source: str = "auto",
    init_from: str | None = None,
    download: bool = False,
    strict: bool = False,
    resume: bool = True,
    progress: bool = True,
    data=None,
    log: Callable[[str], None] = print,
    stop_after_epochs: int | None = None,
    group: str | None = None,
) -> dict:
    """Train one model under one protocol into ``out`` and evaluate it once on the test split.

    ``data`` may pass pre-loaded ``(train, val, test)`` arrays (``compare`` loads them once);
    ``group`` names the study a run belongs to, for an experiment tracker (``cfg.logger``).
    ``form`` (default: the preset's) picks the architecture's form. ``pretrained`` is a weights
    file or ``"imagenet"``, torchvision's published weights for the model (downloaded once into
    the torch hub cache). Returns the figures also written to ``out/results.json``.
    """
    out = Path(out)
    model_info(model)  # unknown names fail before anything is read or written ...
    check_tracker(cfg.logger)  # ... and so does a tracker that is not installed
    with contextlib.ExitStack() as held:
        if int(os.environ.get("RANK", "0")) == 0:  # one process owns the folder (torchrun: rank 0)
            lock = held.enter_context(FolderLock(out, "training run"))
            if lock.took_over:
                log(f"{out}: taking over from PID {lock.took_over.split(' ', 1)[0]}, which ended without releasing it")
        return _train_run(
            model, out=out, cfg=cfg, dataset=dataset, data_dir=data_dir, form=form, input_size=input_size,
            pretrained=pretrained, weights_source=weights_source, init_from=init_from, download=download,
            strict=strict, resume=resume, progress=progress, data=data, log=log, stop_after_epochs=stop_after_epochs,
            group=group,
        )


def _train_run(model, *, out: Path, cfg: TrainConfig, dataset, data_dir, form, input_size, pretrained, weights_source,
               init_from, download, strict, resume, progress, data, log, stop_after_epochs, group) -> dict:
    """The steps of one run: protocol and data, the model, the run folder, training, the test."""
    cfg = cfg.replace(form=form)
    if cfg.whiten_stem and (pretrained or init_from):  # given weights keep their own first convolution
        cfg = cfg.replace(whiten_stem=False)
        log(f"protocol: whiten_stem off: the first convolution comes from {'--pretrained' if pretrained else '--init-from'}")
    if pretrained and cfg.form == "auto":
        cfg = cfg.replace(form="imagenet")  # published weights are for the paper's form
    if data is None:
        data = prepare_data(dataset, data_dir, cfg, download=download, strict=strict, progress=progress, log=log)
    train, val, test = data
    log(("data (streamed from disk): " if _is_streamed(train) else "data: ") + ", ".join(f"{split} {len(a)} images from {a.origin}" for split, a in
                             (("train", train), ("val", val), ("test", test)) if a.origin))
    cfg, fitted = cfg.fit_to_data(len(train))
    if fitted:
        log(f"protocol: {fitted}")
    name, reason = resolve_model_name(model, train.image_size, cfg.form)
    log(f"model: {reason}")
    size, why = choose_input_size(name, train.image_size, input_size)
    log(f"input: {why}" + (f", resized from {train.image_size}px on the fly" if size != train.image_size else ""))
    device = init_distributed(cfg.device) or resolve_device(cfg.device)
    set_deterministic(cfg.deterministic)
    rank, world = dist_info()
    if rank != 0:
        log = lambda s: None  # noqa: E731  (only rank 0 speaks and writes)
        progress = False
    kwargs = _model_kwargs(name, cfg, training=True)
    _check_model_input(name, size, train, kwargs)
    net = _build_training_model(name, train, kwargs, cfg, pretrained, weights_source, init_from, log)
    cfg, fitted = cfg.fit_to_model(net)
    if fitted:
        log(f"protocol: {fitted}")
    channels_last = use_channels_last(cfg.channels_last, net)
    net = net.to(device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
    mean, std = _normalisation(cfg, train)
    pca = _pca_stats(cfg, train)
    if cfg.whiten_stem and not (resume and (out / CHECKPOINT).exists()):  # a resumed run takes its checkpoint's
        _whiten_stem(net, train, mean, std, size, log)
    config = _run_config(model, name, kwargs, size, mean, std, pca, cfg, data, dataset, data_dir, pretrained, init_from)

    if resume:
        _check_protocol(out, config)
    elif (out / CHECKPOINT).exists():
        raise RunError(f"{out} already holds a run; drop --restart to resume it, or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    env = environment(device)  # the code and machine the run starts with
    if rank == 0:
        atomic_write_json(out / CONFIG, dict(config, environment=env, world_size=world))
    if (out / RESULTS).exists() and resume:
        done = json.loads((out / RESULTS).read_text())
        if done.get("epochs_done") == cfg.epochs:
            log(f"{out}: already finished (test top-1 {done['test_top1']:.2%}); nothing to do")
            return done

    loader = lambda arr, tr: make_loader(arr, cfg, train=tr, device=device, mean=mean, std=std,  # noqa: E731
                                         channels_last=channels_last, input_size=size, pca=pca)
    train_loader, val_loader = loader(train, True), (loader(val, False) if len(val) else None)
    reset_peak_memory(device)
    tracker = _open_tracker(cfg, out, config, group, len(train_loader)) if rank == 0 else None
    try:
        result = fit(net, train_loader, val_loader, cfg, out, device=device,
                     metadata={k: config[k] for k in MODEL_KEYS}, resume=resume, progress=progress, log=log,
                     stop_after_epochs=stop_after_epochs, tracker=tracker)
        if result["epochs_done"] < cfg.epochs:
            return result
        # Test split: evaluated once, with the weights chosen on the validation split.
        load_weights(net, out / BEST, source="lenet2vit")
        amp_dtype = resolve_amp(cfg.amp, device)
        test_res = evaluate(net, loader(test, False), device=device, amp_dtype=amp_dtype, return_predictions=True,
                            tta=cfg.tta)
        res = _results(name, cfg, test_res, result, net, size, train.channels, device, amp_dtype, channels_last,
                       config["skipped_files"], env, config["classes"])
        if rank == 0:
            atomic_write_json(out / RESULTS, res)
            if world == 1:  # each rank saw only its share of the test split
                _save_predictions(out, test_res)
        top5 = f", top-5 {res['test_top5']:.2%}" if res["test_top5"] is not None else ""
        log(f"test: top-1 {res['test_top1']:.2%}{top5} (best val epoch {res['best_epoch']})")
        if tracker is not None:
            tracker.finish(config, {"test_top1": res["test_top1"], "best_val_top1": res["best_val_top1"]})
        return res
    finally:
        if tracker is not None:
            tracker.close()


def _open_tracker(cfg: TrainConfig, out: Path, config: dict, group: str | None, steps_per_epoch: int):
    """The run's experiment tracker (none by default), continuing at the checkpoint's step."""
    if cfg.logger == "none":
        return None
    done = json.loads((out / RESULTS).read_text())["epochs_done"] if (out / RESULTS).exists() else None
    start = (done if done is not None else _checkpoint_epoch(out)) * steps_per_epoch
    return open_tracker(cfg.logger, out, name=out.name if group is None else f"{out.parent.name}/{out.name}",
                        config=config, group=group, start_step=start)


def _checkpoint_epoch(out: Path) -> int:
    if not (out / CHECKPOINT).exists():
        return 0
    return int(read_metadata(out / CHECKPOINT).get("fit_state", {}).get("epoch", 0))


def _check_model_input(name: str, size: int, train, kwargs: dict) -> None:
    """One clear line, before any training, for an input the model cannot take or a kwarg it lacks."""
    try:
        check_input(name, size, train.channels, len(train.classes), **kwargs)
    except (TypeError, ValueError) as e:
        if "zero_init_residual" not in str(e):
            raise
        raise ConfigError(f"--zero-init-residual applies to residual networks; {name} has no residual "
                          "branch to start at zero (drop the flag)") from None


def _build_training_model(name: str, train, kwargs: dict, cfg: TrainConfig, pretrained, weights_source, init_from,
                          log) -> nn.Module:
    """The model with the run's seed, from published or given weights where asked."""
    torch.manual_seed(cfg.seed)
    net = build_model(name, len(train.classes), train.channels, kwargs)
    if pretrained:
        weights, what, source = pretrained, str(pretrained), weights_source
        if is_published(str(pretrained)):
            weights, what, source = published_state_dict(name, str(pretrained))
        skipped = load_weights(net, weights, source=source, skip_classifier=True)["skipped"]
        log(f"loaded pretrained weights: {what}" + (f" (new classifier: {', '.join(skipped)})" if skipped else ""))
    if init_from:
        _init_from(net, name, init_from, log)
    if cfg.dropout is not None:
        _set_dropout(net, name, cfg.dropout, log)
    if cfg.sync_bn and dist_info()[1] > 1:
        net = nn.SyncBatchNorm.convert_sync_batchnorm(net)
    return net


def _set_dropout(net: nn.Module, name: str, p: float, log) -> None:
    """Give every dropout layer the architecture uses (p > 0) the probability ``p`` instead."""
    layers = [m for m in net.modules() if isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0]
    if not layers:
        raise ConfigError(f"--dropout sets the probability of a model's dropout layers, and {name} has none "
                          "(drop the flag)")
    before = sorted({m.p for m in layers})
    for m in layers:
        m.p = p
    log(f"protocol: dropout {p:g} in {len(layers)} layer(s) instead of {', '.join(f'{b:g}' for b in before)}")


def _normalisation(cfg: TrainConfig, train) -> tuple[list[float], list[float]]:
    """The protocol's mean/std, or the training set's own; one value per channel of the data."""
    if cfg.mean is None or cfg.std is None:
        from lenet2vit.data import channel_stats

        # a streamed split is estimated on a seeded sample of its images
        mean, std = channel_stats(train.sample_batches() if _is_streamed(train) else train)
    else:
        mean, std = list(cfg.mean), list(cfg.std)
    if len(mean) != train.channels:  # e.g. grey digits with a 3-channel preset
        mean, std = [sum(mean) / len(mean)] * train.channels, [sum(std) / len(std)] * train.channels
    return mean, std


def _pca_stats(cfg: TrainConfig, train) -> dict | None:
    """AlexNet's colour noise needs the training set's RGB eigen-decomposition."""
    if not cfg.pca_lighting:
        return None
    from lenet2vit.data import pca_colour_stats

    eigvals, eigvecs = pca_colour_stats((train.sample() if _is_streamed(train) else train).images)
    return {"eigvals": eigvals, "eigvecs": eigvecs}


def _whiten_stem(net: nn.Module, train, mean, std, size: int, log) -> None:
    """Start the first convolution as the whitening of the training images' patches (Jordan 2024, Sec. 3.2).

    Its filters become ``+v / sqrt(lambda + eps)`` and ``-v / sqrt(lambda + eps)`` for the patch
    covariance's leading eigenvectors ``v``, as many as fit; filters left over keep their random
    start.
    """
    from lenet2vit.data import patch_whitening

    conv = next((m for m in net.modules() if isinstance(m, nn.Conv2d)), None)
    if conv is None or conv.groups != 1 or conv.in_channels != train.channels:
        raise ConfigError("--whiten-stem initialises a network's first convolution from the data, and this one "
                          "does not start with a full convolution over the image's channels (drop the flag)")
    images = (train.sample() if _is_streamed(train) else train).images
    _, filters = patch_whitening(images, mean, std, tuple(conv.kernel_size), size)
    k = min(len(filters), conv.out_channels // 2)
    with torch.no_grad():
        conv.weight[:k].copy_(filters[:k])
        conv.weight[k:2 * k].copy_(-filters[:k])
    log(f"init: the first convolution's {2 * k} of {conv.out_channels} filters whiten its {conv.kernel_size[0]}x"
        f"{conv.kernel_size[1]} patches (the {k} leading of {len(filters)} directions, each both signs)")


def _run_config(requested: str, name: str, kwargs: dict, size: int, mean, std, pca, cfg: TrainConfig, data, dataset,
                data_dir, pretrained, init_from) -> dict:
    """What ``config.json`` says of the run (:mod:`lenet2vit.engine.run_folder`)."""
    from lenet2vit.data import split_roles

    train, val, test = data
    return {
        "model": name,
        "requested_model": requested,
        "model_kwargs": kwargs,
        "family": model_info(name).family,
        "num_classes": len(train.classes),
        "in_chans": train.channels,
        "input_size": size,
        "mean": [round(m, 6) for m in mean],
        "std": [round(s, 6) for s in std],
        "classes": list(train.classes),
        "dataset": {
            "name": dataset,
            "data_dir": describe_data_dir(data_dir),
            "image_size": train.image_size,
            "train": len(train), "val": len(val), "test": len(test),
            "val_fraction": cfg.val_fraction, "limit": cfg.limit, "split_seed": SPLIT_SEED,
            "roles": split_roles(train, val, test),  # which folder plays which split
            "mode": "stream" if _is_streamed(train) else "memory",
        },
        "skipped_files": len(getattr(train, "skipped", [])) + len(getattr(test, "skipped", [])),
        "train": cfg.to_dict(),
        "pretrained": str(pretrained) if pretrained else None,
        "init_from": str(init_from) if init_from else None,
        "pca": pca,
    }


def _results(name: str, cfg: TrainConfig, test_res: dict, result: dict, net: nn.Module, size: int, in_chans: int,
             device, amp_dtype, channels_last: bool, skipped_files: int, env: dict, classes: list[str]) -> dict:
    """What ``results.json`` says: the test figures, the training history and the costs."""
    history = result["history"]
    return {
        "model": name,
        "seed": cfg.seed,
        "test_top1": test_res["top1"],
        "test_top5": test_res["top5"],
        "test_top1_error": 1 - test_res["top1"],
        "test_top5_error": 1 - test_res["top5"] if test_res["top5"] is not None else None,
        "tta": cfg.tta,
        "test_loss": test_res["loss"],
        "best_val_top1": result["best_val_top1"],
        "best_epoch": result["best_epoch"],
        "epochs_done": result["epochs_done"],
        "train_seconds": result["train_seconds"],
        "compile_seconds": result.get("compile_seconds", 0.0),
        "seconds_per_epoch": result["train_seconds"] / max(result["epochs_done"], 1),
        "train_images_per_s": sum(h["train_images_per_s"] for h in history) / max(len(history), 1),
        "infer_images_per_s": test_res["images_per_s"],
        "params": count_params(net),
        "macs": count_macs(net, size, in_chans),
        "input_size": size,
        "device": str(device),
        "amp": str(amp_dtype).replace("torch.", "") if amp_dtype else "fp32",  # e.g. bfloat16
        "channels_last": channels_last,
        "skipped_files": skipped_files,
        "history": history,
        "other_load_max": max((h.get("other_load") or 0.0 for h in history), default=0.0),
        "environment": env,
        "peak_memory_mb": peak_memory_mb(device),
        # per-class precision, recall and F1, the confusion matrix, the most confident right and
        # wrong answers; under torchrun each process holds only its share of the predictions
        "analysis": analyse(test_res, classes) if len(test_res["predictions"]) == test_res["n"] else None,
    }


def _save_predictions(out: Path, test_res: dict) -> None:
    from lenet2vit.engine.checkpoint import save_weights

    save_weights(out / "test_predictions.safetensors", {
        "predictions": test_res["predictions"], "targets": test_res["targets"],
        "probabilities": test_res["probabilities"].to(torch.float16),
    })


def evaluate_run(
    run_dir: str | Path,
    *,
    dataset: str | None = None,
    data_dir=None,
    split: str = "test",
    device: str = "auto",
    batch_size: int = 512,
    progress: bool = True,
    tta: str | None = None,
    amp: str | None = None,
) -> dict:
    """Top-1 / top-5 of a trained run on a data split (default: the run's own data set's test split).

    ``tta`` and ``amp`` default to the run's own settings; ``amp="fp32"`` checks what a
    lower-precision evaluation costs.
    """
    from lenet2vit.data import index_train_val_test, load_split, load_train_val_test

    dev = resolve_device(device)
    model, config = load_run(run_dir, dev)
    ds = config["dataset"]
    dataset = dataset or ds["name"]
    data_dir = data_dir or ds.get("data_dir")
    if ds.get("mode") == "stream":  # the run's own lists of files: train (without val), val, test
        arrays = index_train_val_test(dataset, data_dir, val_fraction=ds.get("val_fraction", 0.1),
                                      seed=ds.get("split_seed", SPLIT_SEED), image_size=ds.get("image_size"),
                                      limit=ds.get("limit"))[("train", "val", "test").index(split)]
        if len(arrays) == 0:
            raise RunError(f"{run_dir} has no {split} split to evaluate")
    elif split == "val" or (split == "test" and ds.get("limit") and dataset == ds["name"]):
        # the run's own held-out images, and a --limit run's own test subset: the same fraction,
        # subset and seed as in training, so eval reproduces the run's figures
        arrays = load_train_val_test(dataset, data_dir, val_fraction=ds.get("val_fraction", 0.1),
                                     seed=ds.get("split_seed", SPLIT_SEED), limit=ds.get("limit"),
                                     progress=progress)[("train", "val", "test").index(split)]
        if len(arrays) == 0:
            raise RunError(f"{run_dir} was trained without a validation split (val_fraction 0); evaluate train or test")
    else:
        arrays = load_split(dataset, data_dir, split, progress=progress)
    if list(arrays.classes) != list(config["classes"]):
        raise RunError(
            f"the {dataset} {split} split has classes {arrays.classes[:5]}... but {run_dir} was trained on "
            f"{config['classes'][:5]}...; evaluate on the data set it was trained on"
        )
    cfg = TrainConfig.from_dict(dict(config["train"], eval_batch_size=batch_size))
    cfg = cfg.replace(amp=amp, tta=tta)  # validated: a bad name gets the allowed ones
    channels_last = use_channels_last(cfg.channels_last, model)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    loader = make_loader(arrays, cfg, train=False, device=dev, mean=config["mean"], std=config["std"],
                         channels_last=channels_last, input_size=config["input_size"])
    amp_dtype = resolve_amp(cfg.amp, dev)
    res = evaluate(model, loader, device=dev, amp_dtype=amp_dtype, progress=progress, tta=cfg.tta,
                   return_predictions=True)
    return {"run": str(run_dir), "model": config["model"], "split": split, "top1": res["top1"],
            "top5": res["top5"], "loss": res["loss"], "n": res["n"], "images_per_s": res["images_per_s"],
            "tta": cfg.tta, "amp": amp_name(amp_dtype), "analysis": analyse(res, list(config["classes"]))}
