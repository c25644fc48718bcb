"""The training loop: pure step functions and a resumable ``fit``.

``train_one_epoch`` and ``evaluate`` take every piece of state as an argument and return
plain dicts of figures; ``fit`` strings epochs together, writes the log and an atomic
checkpoint after every epoch, and resumes from that checkpoint to exactly the result an
uninterrupted run would reach (the loader's randomness is a function of seed and epoch, and
the global RNG used by dropout is stored in the checkpoint).
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from lenet2vit.engine.checkpoint import atomic_write_text, load_checkpoint, save_checkpoint, save_weights
from lenet2vit.engine.config import MAX_WARMUP_FRACTION, TrainConfig
from lenet2vit.errors import UserError
from lenet2vit.runtime import LOADED_CPUS, LoadMeter, autocast, dist_info, resolve_amp, resolve_compile

__all__ = [
    "build_optimizer",
    "build_scheduler",
    "train_one_epoch",
    "evaluate",
    "fit",
    "TrainingError",
    "FitState",
]


class TrainingError(UserError, RuntimeError):
    """Training cannot go on (non-finite loss, out of memory); the message says what to do."""


# ----------------------------------------------------------------------------- distributed


def _all_reduce_sum(*tensors: torch.Tensor) -> None:
    if dist_info()[1] > 1:
        for t in tensors:
            torch.distributed.all_reduce(t)


# ----------------------------------------------------------------------------- optimizer & schedule


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD/Adam/AdamW; weight decay is not applied to biases and norm parameters.

    The update runs as one fused kernel over all parameters when they all sit on one CPU or
    CUDA device (on a CPU the CIFAR ResNet-18's SGD step takes a fifth of the time of the
    per-parameter loop; ``benchmarks/train_profile.py`` shows its share of a step).
    """
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    devices = {p.device for p in decay + no_decay}
    fused = {"fused": True} if len(devices) == 1 and next(iter(devices)).type in ("cpu", "cuda") else {}
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0, **fused)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, betas=cfg.betas, **fused)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, **fused)


def lr_factor(step: int, steps_per_epoch: int, cfg: TrainConfig) -> float:
    """Multiplier of the base lr after ``step`` optimizer steps (a pure function of the config)."""
    total = max(cfg.epochs * steps_per_epoch, 1)
    warm = int(min(cfg.warmup_epochs * steps_per_epoch, MAX_WARMUP_FRACTION * total))  # a short run leaves its warm-up
    ramp = (step + 1) / warm if warm and step < warm else 1.0  # linear warm-up, any schedule
    if cfg.schedule in ("none", "plateau"):  # plateau: fit() scales the lr from validation results
        return ramp
    if cfg.schedule == "step":
        epoch = step // steps_per_epoch
        at = step if cfg.milestone_unit == "step" else epoch
        drops = sum(1 for m in cfg.milestones if at >= m) + (epoch // cfg.step_every if cfg.step_every else 0)
        return ramp * cfg.gamma**drops
    if warm and step < warm:
        return ramp
    progress = min((step - warm) / max(total - warm, 1), 1.0)
    if cfg.schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * progress))
    return max(1.0 - progress, 0.0)  # onecycle: linear warm-up then linear decay to zero


def _match_param_layout(optimizer: torch.optim.Optimizer) -> None:
    """Give every loaded state tensor (momentum, Adam moments) its parameter's memory layout.

    A checkpoint stores them contiguous, but a channels_last parameter's live buffers are
    channels_last, and the fused update kernels pair elements by memory position, not by index.
    """
    for group in optimizer.param_groups:
        for p in group["params"]:
            for k, v in optimizer.state.get(p, {}).items():
                if torch.is_tensor(v) and v.shape == p.shape and v.stride() != p.stride():
                    optimizer.state[p][k] = torch.empty_like(p, dtype=v.dtype).copy_(v)


def build_ema(model: nn.Module, decay: float):
    """An exponential moving average of ``model``'s weights and buffers (BatchNorm statistics too).

    Its decay warms up as ``min(decay, (1 + n) / (10 + n))`` over the first updates ``n``, so
    the average does not drag the random initial weights along (timm's ModelEma does the same).
    """
    from torch.optim.swa_utils import AveragedModel

    @torch.no_grad()
    def avg(averaged: list[torch.Tensor], current: list[torch.Tensor], n: torch.Tensor) -> None:
        if not torch.is_floating_point(averaged[0]):  # BatchNorm's num_batches_tracked: the current count
            torch._foreach_copy_(averaged, current)
            return
        k = int(n)
        d = min(decay, (1 + k) / (10 + k))
        torch._foreach_lerp_(averaged, current, 1 - d)

    ema = AveragedModel(model, multi_avg_fn=avg, use_buffers=True)
    ema.eval()
    return ema


class Lookahead:
    """Lookahead (Zhang et al. 2019, Algorithm 1): the optimizer's weights are the fast ones; every
    ``k`` steps the slow weights move ``alpha`` of the way to them, and the fast weights restart
    from the slow. The inner optimizer keeps its state (momentum) across the restarts, as in the
    paper. Parameters only: BatchNorm's statistics follow the fast weights.
    """

    def __init__(self, model: nn.Module, k: int, alpha: float):
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.slow = [p.detach().clone() for p in self.params]
        self.k, self.alpha = k, alpha

    @torch.no_grad()
    def step(self, steps: int) -> None:
        """After the run's ``steps``-th optimizer step (the scheduler's count: a run resumes on it)."""
        if steps % self.k == 0:
            fast = [p.detach() for p in self.params]
            torch._foreach_lerp_(self.slow, fast, self.alpha)
            torch._foreach_copy_(fast, self.slow)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {str(i): t for i, t in enumerate(self.slow)}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for i, t in enumerate(self.slow):
            t.copy_(state[str(i)])


def build_scheduler(optimizer: torch.optim.Optimizer, steps_per_epoch: int, cfg: TrainConfig, state=None):
    """Per-step LambdaLR; ``state.lr_scale`` (the plateau rule's factor) multiplies it when given."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, steps_per_epoch, cfg) * (state.lr_scale if state is not None else 1.0)
    )


# ----------------------------------------------------------------------------- one epoch


def _split_output(out) -> tuple[torch.Tensor, list[torch.Tensor]]:
    # GoogLeNet returns (logits, [aux1, aux2]) in training with aux heads on.
    if isinstance(out, tuple):
        return out[0], list(out[1])
    return out, []


def _forward_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """The logits and the loss of one batch; auxiliary heads (GoogLeNet) add theirs with ``cfg.aux_weight``."""
    logits, aux = _split_output(model(x))
    loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
    if aux:
        loss = loss + cfg.aux_weight * sum(F.cross_entropy(a, y, label_smoothing=cfg.label_smoothing) for a in aux)
    return logits, loss


def _update(model: nn.Module, loss: torch.Tensor, optimizer, scaler, grad_clip: float | None) -> None:
    """One optimizer step from ``loss``: scaled for fp16, with the gradient norm clipped where asked."""
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        if grad_clip:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        scaler.step(optimizer)
        scaler.update()
        return
    loss.backward()
    if grad_clip:
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()


def _compile_seconds(step_times: list[float]) -> float:
    """Time beyond the median step of every step over 5x the median: compiling, not training."""
    if len(step_times) <= 1:
        return 0.0
    median = statistics.median(step_times)
    return sum(t - median for t in step_times if t > 5 * median)


def train_one_epoch(
    model: nn.Module,
    loader,
    optimizer: torch.optim.Optimizer,
    scheduler,
    cfg: TrainConfig,
    *,
    device: torch.device,
    amp_dtype: torch.dtype | None,
    scaler: torch.amp.GradScaler | None = None,
    epoch: int = 0,
    progress: bool = True,
    on_bad_loss: Callable[[int, float], str] | None = None,
    compiling: bool = False,
    ema=None,
    lookahead: Lookahead | None = None,
    on_step: Callable[[int, float, float], None] | None = None,
) -> dict:
    """Train for one pass over ``loader``; returns loss, accuracy, images/s and skipped steps.

    ``on_step(step, loss, lr)`` hears each step whose loss is read anyway (every step on a
    CPU, every 25th on a GPU) with the lr that step takes: an experiment tracker's feed.

    A non-finite loss raises :class:`TrainingError` (``cfg.nonfinite == "stop"``) or skips
    that batch's update (``"skip"``). With ``compiling`` (the model was just wrapped by
    ``torch.compile``) every step is timed, and the time beyond the median step of each step
    that took over 5x the median (the first compile, and the recompile a last, smaller batch
    causes) is reported as ``compile_seconds`` and left out of ``train_seconds`` and images/s.
    """
    model.train()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen, skipped = 0, 0
    step_times: list[float] = []  # per-step seconds, kept when compiling
    check_every = 1 if (device.type == "cpu" or cfg.nonfinite == "skip") else 25
    bar = tqdm(total=len(loader), desc=f"epoch {epoch + 1}", leave=False, disable=not progress, unit="batch")
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = last = time.perf_counter()
    for step, (x, y) in enumerate(loader):
        with autocast(device, amp_dtype):
            logits, loss = _forward_loss(model, x, y, cfg)
        if step % check_every == 0 and on_step is not None:
            on_step(step, loss.item(), optimizer.param_groups[0]["lr"])
        if step % check_every == 0 and not torch.isfinite(loss).item():
            if cfg.nonfinite == "skip":
                skipped += 1
                optimizer.zero_grad(set_to_none=True)
                scheduler.step()
                bar.update(1)
                continue
            where = on_bad_loss(step, loss.item()) if on_bad_loss else ""
            raise TrainingError(
                f"loss became {loss.item()} at epoch {epoch + 1}, step {step + 1}. {where}"
                "Lower --lr, use --amp fp32, or pass --nonfinite skip to skip bad batches."
            )
        _update(model, loss, optimizer, scaler, cfg.grad_clip)
        scheduler.step()
        if lookahead is not None:
            lookahead.step(scheduler.last_epoch)  # LambdaLR counts the optimizer steps
        if ema is not None:
            ema.update_parameters(model)
        if compiling:
            if device.type == "cuda":
                torch.cuda.synchronize()
            now = time.perf_counter()
            step_times.append(now - last)
            last = now
        n = y.shape[0]
        loss_sum += loss.detach().float() * n
        correct += (logits.detach().argmax(1) == y).sum()
        seen += n
        bar.update(1)
        if progress and step % 20 == 0:
            bar.set_postfix(loss=f"{loss_sum.item() / seen:.3f}")
    if device.type == "cuda":
        torch.cuda.synchronize()
    compile_seconds = _compile_seconds(step_times)
    seconds = time.perf_counter() - t0 - compile_seconds
    bar.close()
    seen_t = torch.tensor(seen, device=device, dtype=torch.long)
    _all_reduce_sum(loss_sum, correct, seen_t)
    seen = int(seen_t.item())
    mean_loss = loss_sum.item() / max(seen, 1)
    if not math.isfinite(mean_loss) and cfg.nonfinite == "stop":
        where = on_bad_loss(-1, mean_loss) if on_bad_loss else ""
        raise TrainingError(
            f"loss became {mean_loss} during epoch {epoch + 1}. {where}"
            "Lower --lr, use --amp fp32, or pass --nonfinite skip to skip bad batches."
        )
    return {
        "train_loss": mean_loss,
        "train_acc": correct.item() / max(seen, 1),
        "train_seconds": seconds,
        "train_images_per_s": seen / max(seconds, 1e-9),
        "skipped_steps": skipped,
        "compile_seconds": compile_seconds,
    }


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    loader,
    *,
    device: torch.device,
    amp_dtype: torch.dtype | None = None,
    return_predictions: bool = False,
    progress: bool = False,
    tta: str = "none",
) -> dict:
    """Loss, top-1 and top-5 accuracy over ``loader`` (optionally the predictions too).

    ``tta`` averages the softmax over test-time views: ``flip`` or AlexNet's ``10crop``.
    """
    from lenet2vit.data import eval_views

    model.eval()
    loss_sum = torch.zeros((), device=device, dtype=torch.float32 if device.type == "mps" else torch.float64)
    top1 = torch.zeros((), device=device, dtype=torch.long)
    top5 = torch.zeros((), device=device, dtype=torch.long)
    seen = 0
    preds, targets, probs = [], [], []
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for x, y in tqdm(loader, desc="eval", leave=False, disable=not progress, unit="batch"):
        if tta == "none":
            with autocast(device, amp_dtype):
                logits = model(x).float()
        else:  # log of the mean probability over the views: a proper log-probability
            fmt = torch.channels_last if not x.is_contiguous() else torch.contiguous_format
            views = eval_views(x, tta)
            probs_sum = 0
            for v in views:
                with autocast(device, amp_dtype):
                    probs_sum = probs_sum + model(v.contiguous(memory_format=fmt)).float().softmax(1)
            logits = (probs_sum / len(views)).clamp_min(1e-12).log()
        loss_sum += F.cross_entropy(logits, y, reduction="sum").double()
        n_classes = logits.shape[1]
        top = logits.topk(min(5, n_classes), dim=1).indices
        hit = top == y[:, None]
        top1 += hit[:, 0].sum()
        top5 += hit.any(dim=1).sum()
        seen += y.shape[0]
        if return_predictions:
            preds.append(top[:, 0].cpu())
            targets.append(y.cpu())
            probs.append(logits.softmax(1).cpu())
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    seen_t = torch.tensor(seen, device=device, dtype=torch.long)
    _all_reduce_sum(loss_sum, top1, top5, seen_t)  # every rank evaluated its share
    seen = int(seen_t.item())
    out = {
        "loss": loss_sum.item() / max(seen, 1),
        "top1": top1.item() / max(seen, 1),
        "top5": top5.item() / max(seen, 1) if seen and n_classes > 5 else None,  # top-k only for k < classes
        "n": seen,
        "seconds": seconds,
        "images_per_s": seen / max(seconds, 1e-9),
    }
    if return_predictions:
        out["predictions"] = torch.cat(preds) if preds else torch.empty(0, dtype=torch.long)
        out["targets"] = torch.cat(targets) if targets else torch.empty(0, dtype=torch.long)
        out["probabilities"] = torch.cat(probs) if probs else torch.empty(0)
    return out


# ----------------------------------------------------------------------------- fit


@dataclass
class FitState:
    """What ``fit`` carries from epoch to epoch (and stores in the checkpoint)."""

    epoch: int = 0  # epochs completed
    best_val_top1: float = -1.0
    best_epoch: int = 0
    train_seconds: float = 0.0
    compile_seconds: float = 0.0  # torch.compile's time (see train_one_epoch), kept out of train_seconds
    history: list | None = None
    lr_scale: float = 1.0  # the plateau rule's factor
    bad_epochs: int = 0  # epochs since the validation accuracy last improved


LOG_FIELDS = [
    "epoch", "lr", "train_loss", "train_acc", "val_loss", "val_top1", "val_top5",
    "epoch_seconds", "train_images_per_s", "skipped_steps", "compile_seconds",
]


def _write_logs(out_dir: Path, history: list[dict]) -> None:
    atomic_write_text(out_dir / "log.jsonl", "".join(json.dumps(h) + "\n" for h in history))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=LOG_FIELDS, extrasaction="ignore")
    w.writeheader()
    w.writerows(history)
    atomic_write_text(out_dir / "log.csv", buf.getvalue())


def _resume(ckpt_path: Path, model, optimizer, scheduler, scaler, ema, lookahead, state: FitState) -> None:
    """Load every piece of training state a checkpoint holds back into the live objects."""
    ck = load_checkpoint(ckpt_path)
    model.load_state_dict(ck["model"])
    optimizer.load_state_dict(ck["optimizer"])
    _match_param_layout(optimizer)
    scheduler.load_state_dict(ck["scheduler"])
    if scaler is not None and ck.get("scaler"):
        scaler.load_state_dict(ck["scaler"])
    if ck["rng"] is not None:
        torch.set_rng_state(ck["rng"])
    if ck.get("cuda_rng") and torch.cuda.is_available():
        states = ck["cuda_rng"][: torch.cuda.device_count()]
        for i, st in enumerate(states):
            torch.cuda.set_rng_state(st, i)
    if ema is not None and ck.get("ema"):
        ema.load_state_dict(ck["ema"])
    for k, v in ck["fit_state"].items():
        setattr(state, k, v)  # the same object the scheduler reads lr_scale from
    if lookahead is not None:  # the run folder's protocol check keeps a checkpoint without them from here
        lookahead.load_state_dict(ck["slow"])


def _training_form(model: nn.Module, cfg: TrainConfig, device: torch.device, world: int) -> tuple[nn.Module, bool]:
    """The module the steps run: DDP-wrapped under torchrun, compiled where asked; and whether it compiles."""
    train_model = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        train_model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    compiling = resolve_compile(cfg.compile, device)
    if compiling:
        if cfg.compile is None:  # compiled by default: a model dynamo cannot take runs eagerly instead
            import torch._dynamo as dynamo

            dynamo.config.suppress_errors = True
        train_model = torch.compile(train_model)
    return train_model, compiling


def _judge(state: FitState, row: dict, cfg: TrainConfig, log) -> bool:
    """Whether this epoch is the best so far (by val top-1, else train accuracy); the plateau schedule's lr drop."""
    score = row.get("val_top1", row["train_acc"])
    improved = score > state.best_val_top1
    state.bad_epochs = 0 if improved else state.bad_epochs + 1
    if cfg.schedule == "plateau" and state.bad_epochs > cfg.patience:
        state.lr_scale *= cfg.gamma
        state.bad_epochs = 0
        log(f"validation accuracy has not improved for {cfg.patience + 1} epochs: lr x {cfg.gamma}")
    if improved:
        state.best_val_top1, state.best_epoch = score, row["epoch"]
    return improved


def _epoch_line(row: dict, epochs: int, improved: bool) -> str:
    val_txt = ""
    if "val_top1" in row:
        val_txt = f" val {row['val_top1']:.2%}" + (f" (top-5 {row['val_top5']:.2%})" if row["val_top5"] is not None else "")
    compiled_txt = f" (+ {row['compile_seconds']:.1f}s compiling)" if row.get("compile_seconds") else ""
    other = row.get("other_load") or 0.0
    loaded_txt = f" (loaded: other processes kept {other:.1f} CPUs busy)" if other > LOADED_CPUS else ""
    return (f"epoch {row['epoch']}/{epochs}: loss {row['train_loss']:.4f} train {row['train_acc']:.2%}{val_txt} "
            f"| {row['train_images_per_s']:.0f} img/s, {row['epoch_seconds']:.1f}s{compiled_txt}{loaded_txt}"
            f"{' *' if improved else ''}")


def fit(
    model: nn.Module,
    train_loader,
    val_loader,
    cfg: TrainConfig,
    out_dir: str | Path,
    *,
    device: torch.device,
    metadata: dict | None = None,
    resume: bool = True,
    progress: bool = True,
    log: Callable[[str], None] = print,
    stop_after_epochs: int | None = None,
    tracker=None,
) -> dict:
    """Train ``model`` for ``cfg.epochs`` epochs, checkpointing atomically after each one.

    Writes ``checkpoint.safetensors`` (resumable state), ``best.safetensors`` (weights of the
    best validation epoch, with ``metadata``), ``log.jsonl`` and ``log.csv`` into ``out_dir``.
    With ``resume`` a checkpoint already in ``out_dir`` is continued. Returns the history and
    best epoch. ``stop_after_epochs`` ends early (used to test resumption). A ``tracker``
    (:mod:`lenet2vit.engine.trackers`) hears every step's loss and lr and every epoch's row.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = out_dir / "checkpoint.safetensors"
    amp_dtype = resolve_amp(cfg.amp, device)
    scaler = torch.amp.GradScaler(device.type) if amp_dtype == torch.float16 else None
    optimizer = build_optimizer(model, cfg)
    state = FitState(history=[])
    scheduler = build_scheduler(optimizer, len(train_loader), cfg, state)
    ema = build_ema(model, cfg.ema) if cfg.ema else None
    judged = ema.module if ema is not None else model  # the weights validation, best.safetensors and the test use
    lookahead = Lookahead(model, cfg.lookahead, cfg.lookahead_alpha) if cfg.lookahead else None

    if resume and ckpt_path.exists():
        _resume(ckpt_path, model, optimizer, scheduler, scaler, ema, lookahead, state)
        if state.epoch < cfg.epochs:
            log(f"resuming from {ckpt_path} after epoch {state.epoch}")

    rank, world = dist_info()
    main = rank == 0
    if not main:
        log = lambda s: None  # noqa: E731  (only rank 0 speaks and writes)
        progress = False
    train_model, compiling = _training_form(model, cfg, device, world)

    def last_good(step: int, value: float) -> str:
        if ckpt_path.exists():
            return f"The last good checkpoint is {ckpt_path} (epoch {state.epoch}). "
        return "No checkpoint was written yet. "

    meta = dict(metadata or {})
    while state.epoch < cfg.epochs:
        epoch = state.epoch
        train_loader.set_epoch(epoch)
        lr = optimizer.param_groups[0]["lr"]
        load = LoadMeter()
        t0 = time.perf_counter()
        try:
            stats = train_one_epoch(
                train_model, train_loader, optimizer, scheduler, cfg, device=device, amp_dtype=amp_dtype,
                scaler=scaler, epoch=epoch, progress=progress, on_bad_loss=last_good, compiling=compiling, ema=ema,
                lookahead=lookahead,
                on_step=None if tracker is None or not main else
                lambda step, loss, lr, first=epoch * len(train_loader): tracker.log_step(first + step, loss, lr),
            )
            compiling = False  # compiled once, in this process's first epoch
        except torch.OutOfMemoryError:
            raise TrainingError(
                f"out of memory at batch size {cfg.batch_size}; try --batch-size {max(cfg.batch_size // 2, 1)}"
            ) from None
        row = {"epoch": epoch + 1, "lr": lr, **stats}
        if val_loader is not None and len(val_loader) > 0:
            val = evaluate(judged, val_loader, device=device, amp_dtype=amp_dtype)
            row.update(val_loss=val["loss"], val_top1=val["top1"], val_top5=val["top5"])
        row["epoch_seconds"] = time.perf_counter() - t0
        row["other_load"] = load.read()  # CPUs other processes kept busy: > LOADED_CPUS marks a loaded timing
        state.train_seconds += stats["train_seconds"]
        state.compile_seconds += stats["compile_seconds"]
        state.epoch = epoch + 1
        state.history.append(row)
        improved = _judge(state, row, cfg, log)
        if improved:
            if main:
                save_weights(out_dir / "best.safetensors", judged.state_dict(),
                             dict(meta, epoch=epoch + 1, ema=cfg.ema or None))
        if main:
            save_checkpoint(
                ckpt_path,
                model.state_dict(),
                optimizer.state_dict(),
                {"scheduler": scheduler.state_dict(), "fit_state": state.__dict__, "config": cfg.to_dict()},
                rng_state=torch.get_rng_state(),
                cuda_rng_states=torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                scaler_state=scaler.state_dict() if scaler is not None else None,
                ema_state=ema.state_dict() if ema is not None else None,
                slow_state=lookahead.state_dict() if lookahead is not None else None,
            )
            _write_logs(out_dir, state.history)
            if tracker is not None:
                tracker.log_epoch(epoch + 1, (epoch + 1) * len(train_loader), row)
        if world > 1:
            torch.distributed.barrier()  # nobody reads a checkpoint rank 0 is still writing
        log(_epoch_line(row, cfg.epochs, improved))
        if stop_after_epochs is not None and state.epoch >= stop_after_epochs:
            break
    return {
        "history": state.history,
        "best_epoch": state.best_epoch,
        "best_val_top1": state.best_val_top1,
        "train_seconds": state.train_seconds,
        "compile_seconds": state.compile_seconds,
        "epochs_done": state.epoch,
    }
