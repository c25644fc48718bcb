"""Experiment trackers, opt-in: what a run reports besides its own log.jsonl and log.csv.

``--logger tensorboard`` writes event files into ``RUN/tensorboard`` with
``torch.utils.tensorboard``; ``--logger wandb`` and ``--logger mlflow`` report to those
services when their packages are installed (they are not dependencies). Each gets the same:
the training loss and lr per step (every step on a CPU, every 25th on a GPU, where reading the
loss waits for the device), every numeric column of the epoch's log row, and at the end the
run's hyper-parameters with its test and best validation figures. Runs of one ``compare`` study
share a group (wandb's group, MLflow's experiment, one TensorBoard log folder above them).
A resumed run continues where it stopped: TensorBoard purges the steps after the checkpoint,
wandb and MLflow continue the same run (its id is kept in ``RUN/tracker.json``).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from lenet2vit.engine.checkpoint import atomic_write_json
from lenet2vit.engine.config import TRACKERS, ConfigError
from lenet2vit.engine.run_folder import flatten

__all__ = ["TRACKERS", "Tracker", "check_tracker", "open_tracker"]

_PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}
_IDS = "tracker.json"


def check_tracker(kind: str) -> None:
    """One clear line, before any work, for a tracker whose package is not installed."""
    if kind not in TRACKERS:
        raise ConfigError(f"logger={kind!r} is not valid; choose one of: {', '.join(TRACKERS)}")
    package = _PACKAGES.get(kind)
    if package and importlib.util.find_spec(package) is None:
        extra = ' (or pip install "lenet2vit[track]")' if kind == "tensorboard" else ""
        raise ConfigError(f"--logger {kind} needs the {package} package: pip install {package}{extra}, "
                          "or drop --logger")


def _flat(d: dict) -> dict:
    """Nested config -> flat ``{"train.lr": 0.1}`` of numbers, strings and booleans (what trackers take)."""
    return {k: v if isinstance(v, (int, float, str, bool)) else json.dumps(v)[:250]
            for k, v in flatten(d).items() if v is not None}


def _numbers(row: dict) -> dict:
    return {k: float(v) for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
            and k != "epoch"}


class Tracker:
    """The three things a run reports; each backend writes them its own way."""

    def log_step(self, step: int, loss: float, lr: float) -> None:
        raise NotImplementedError

    def log_epoch(self, epoch: int, step: int, row: dict) -> None:
        raise NotImplementedError

    def finish(self, hparams: dict, metrics: dict) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class _TensorBoard(Tracker):
    def __init__(self, out: Path, start_step: int) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(out / "tensorboard"), purge_step=start_step or None)

    def log_step(self, step, loss, lr):
        self.writer.add_scalar("train/loss", loss, step)
        self.writer.add_scalar("train/lr", lr, step)

    def log_epoch(self, epoch, step, row):
        for k, v in _numbers(row).items():
            self.writer.add_scalar(f"epoch/{k}", v, epoch)
        self.writer.flush()

    def finish(self, hparams, metrics):
        self.writer.add_hparams(_flat(hparams), {f"hparam/{k}": v for k, v in metrics.items()}, run_name="hparams")
        self.writer.flush()

    def close(self):
        self.writer.close()


class _Wandb(Tracker):
    def __init__(self, out: Path, name: str, group: str | None, config: dict, run_id: str | None) -> None:
        import wandb

        self.wandb = wandb
        self.run = wandb.init(project="lenet2vit", name=name, group=group, config=_flat(config), dir=str(out),
                              id=run_id, resume="allow")
        self.id = self.run.id

    def log_step(self, step, loss, lr):
        self.run.log({"train/loss": loss, "train/lr": lr}, step=step)

    def log_epoch(self, epoch, step, row):
        self.run.log({f"epoch/{k}": v for k, v in _numbers(row).items()} | {"epoch": epoch}, step=step)

    def finish(self, hparams, metrics):
        self.run.summary.update(metrics)

    def close(self):
        self.run.finish()


class _MLflow(Tracker):
    def __init__(self, name: str, group: str | None, config: dict, run_id: str | None) -> None:
        import mlflow

        self.mlflow = mlflow
        if run_id is None:
            mlflow.set_experiment(group or "lenet2vit")
        self.run = mlflow.start_run(run_id=run_id, run_name=None if run_id else name)
        self.id = self.run.info.run_id
        if run_id is None:
            mlflow.log_params({k: str(v)[:500] for k, v in _flat(config).items()})

    def log_step(self, step, loss, lr):
        self.mlflow.log_metrics({"train_loss": loss, "train_lr": lr}, step=step)

    def log_epoch(self, epoch, step, row):
        self.mlflow.log_metrics({f"epoch_{k}": v for k, v in _numbers(row).items()}, step=epoch)

    def finish(self, hparams, metrics):
        self.mlflow.log_metrics(metrics)

    def close(self):
        self.mlflow.end_run()


def open_tracker(kind: str, out: str | Path, *, name: str, config: dict, group: str | None = None,
                 start_step: int = 0) -> Tracker | None:
    """The tracker ``kind`` for the run in ``out`` (None for ``"none"``); ``start_step`` is the
    optimizer step a resumed run continues from."""
    check_tracker(kind)
    if kind == "none":
        return None
    out = Path(out)
    if kind == "tensorboard":
        return _TensorBoard(out, start_step)
    ids_path = out / _IDS
    ids = json.loads(ids_path.read_text()) if ids_path.exists() else {}
    tracker = (_Wandb(out, name, group, config, ids.get(kind)) if kind == "wandb"
               else _MLflow(name, group, config, ids.get(kind)))
    if ids.get(kind) != tracker.id:
        atomic_write_json(ids_path, dict(ids, **{kind: tracker.id}))
    return tracker
