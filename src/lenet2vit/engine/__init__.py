"""Training engine: configuration, the loop, checkpoints and whole runs."""

from lenet2vit.engine.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from lenet2vit.engine.config import PRESETS, ConfigError, TrainConfig, get_preset
from lenet2vit.engine.loop import TrainingError, evaluate, fit, train_one_epoch
from lenet2vit.engine.run import evaluate_run, train_run
from lenet2vit.engine.run_folder import RunError, load_run, save_run

__all__ = [
    "PRESETS", "ConfigError", "TrainConfig", "get_preset", "TrainingError", "evaluate", "fit",
    "train_one_epoch", "RunError", "evaluate_run", "load_run", "save_run", "train_run",
    "CheckpointError", "load_checkpoint", "save_checkpoint",
]
