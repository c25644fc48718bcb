"""--logger: the event files read back with TensorBoard's own reader; the optional trackers."""

from __future__ import annotations

import importlib.util
import json

import pytest

from lenet2vit.data import load_train_val_test
from lenet2vit.engine import TrainConfig, train_run
from lenet2vit.engine.config import ConfigError
from lenet2vit.engine.trackers import check_tracker

CFG = TrainConfig(optimizer="sgd", lr=0.05, schedule="onecycle", epochs=2, batch_size=32, amp="fp32", device="cpu",
                  limit=300, flip=True)


@pytest.fixture(scope="module")
def digits():
    return load_train_val_test("digits", None, limit=300, progress=False)


def _scalars(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_tensorboard_gets_every_step_every_epoch_and_the_hparams(tmp_path, digits):
    pytest.importorskip("tensorboard")
    out = tmp_path / "run"
    res = train_run("lenet5", out=out, cfg=CFG.replace(logger="tensorboard"), data=digits, progress=False,
                    log=lambda s: None)
    tags = _scalars(out / "tensorboard")
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    steps = len(tags["train/loss"])
    assert steps > 2 and [s for s, _ in tags["train/loss"]] == list(range(steps))  # every step, in order
    assert tags["train/lr"][0][1] == pytest.approx(rows[0]["lr"])  # the lr the first step took
    assert [v for _, v in tags["epoch/val_top1"]] == pytest.approx([r["val_top1"] for r in rows])
    hparams = _scalars(next((out / "tensorboard").glob("hparams*")))
    assert hparams["hparam/test_top1"][0][1] == pytest.approx(res["test_top1"])


def test_a_resumed_run_continues_its_event_steps(tmp_path, digits):
    pytest.importorskip("tensorboard")
    out, cfg = tmp_path / "run", CFG.replace(logger="tensorboard", epochs=3)
    train_run("lenet5", out=out, cfg=cfg, data=digits, progress=False, log=lambda s: None, stop_after_epochs=1)
    train_run("lenet5", out=out, cfg=cfg, data=digits, progress=False, log=lambda s: None)
    steps = [s for s, _ in _scalars(out / "tensorboard")["train/loss"]]
    assert steps == sorted(set(steps)) and steps == list(range(len(steps)))  # no step twice, none missing


def test_a_missing_tracker_package_is_one_line(monkeypatch, tmp_path, digits):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(ConfigError, match="needs the wandb package: pip install wandb"):
        train_run("lenet5", out=tmp_path / "run", cfg=CFG.replace(logger="wandb"), data=digits, progress=False,
                  log=lambda s: None)
    assert not (tmp_path / "run").exists()  # refused before anything was written
    with pytest.raises(ConfigError, match="choose one of"):
        check_tracker("neptune")


def test_a_study_groups_its_runs(tmp_path, digits, monkeypatch):
    import lenet2vit.engine.run as run_mod
    from lenet2vit.experiment import compare

    opened = []
    monkeypatch.setattr(run_mod, "open_tracker",
                        lambda kind, out, **kw: opened.append((kind, kw["name"], kw["group"])))
    compare(["lenet5"], dataset="digits", preset="quick", seeds=[0, 1], out=tmp_path / "study", progress=False,
            overrides={"epochs": 1, "limit": 300, "logger": "tensorboard"}, log=lambda s: None)
    assert opened == [("tensorboard", "lenet5/seed0", "study"), ("tensorboard", "lenet5/seed1", "study")]


def test_mlflow_file_store_reads_back(tmp_path, digits, monkeypatch):
    mlflow = pytest.importorskip("mlflow", reason="mlflow is optional: pip install mlflow")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())  # the local file store ...
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # ... which MLflow 3 keeps behind this switch
    res = train_run("lenet5", out=tmp_path / "run", cfg=CFG.replace(logger="mlflow"), data=digits, progress=False,
                    log=lambda s: None, group="grouped")
    run_id = json.loads((tmp_path / "run" / "tracker.json").read_text())["mlflow"]
    run = mlflow.tracking.MlflowClient().get_run(run_id)
    assert run.data.metrics["test_top1"] == pytest.approx(res["test_top1"])
    assert mlflow.get_experiment(run.info.experiment_id).name == "grouped"


def test_wandb_offline_run_is_written(tmp_path, digits, monkeypatch):
    pytest.importorskip("wandb", reason="wandb is optional: pip install wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    train_run("lenet5", out=tmp_path / "run", cfg=CFG.replace(logger="wandb"), data=digits, progress=False,
              log=lambda s: None)
    assert "wandb" in json.loads((tmp_path / "run" / "tracker.json").read_text())
    assert list((tmp_path / "run" / "wandb").glob("offline-run-*"))
