"""Distributed training equals one process; a SIGKILLed run resumes to the same weights."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

HERE = Path(__file__).resolve().parent
ENV = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return {k: v for k, v in load_file(str(run / "checkpoint.safetensors")).items() if k.startswith("model.")}


@pytest.mark.slow
def test_two_gloo_processes_match_one_process_with_the_same_global_batch(tmp_path):
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun not found beside the Python interpreter")
    one = subprocess.run([sys.executable, str(HERE / "ddp_worker.py"), str(tmp_path / "one")], env=ENV,
                         capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run([torchrun, "--nproc-per-node", "2", "--master-port", str(_free_port()), str(HERE / "ddp_worker.py"),
                          str(tmp_path / "two")], env=ENV, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-2000:]
    a, b = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5, rtol=1e-4), k
    cfg = json.loads((tmp_path / "two" / "config.json").read_text())
    assert cfg["world_size"] == 2
    # only rank 0 wrote: one log line per epoch, no duplicates
    assert len((tmp_path / "two" / "log.jsonl").read_text().splitlines()) == 2


EPOCHS = 4


def _train_cmd(out: Path, epochs: int = EPOCHS, device: str = "cpu") -> list[str]:
    extra = ["--deterministic"] if device == "cuda" else []  # docs/distributed.md: bit-identical on CUDA with it
    return [sys.executable, "-m", "lenet2vit", "train", "lenet5", "--dataset", "digits", "--preset", "quick",
            "--epochs", str(epochs), "--limit", "1600", "--batch-size", "4", "--amp", "fp32", "--device", device,
            "--no-progress", "--out", str(out), *extra]


@pytest.mark.slow
@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=[
    pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")])])
def test_sigkill_mid_epoch_then_resume_gives_the_same_weights(tmp_path, device):
    full = subprocess.run(_train_cmd(tmp_path / "full", device=device), env=ENV, capture_output=True, text=True,
                          timeout=300)
    assert full.returncode == 0, full.stderr[-2000:]
    proc = subprocess.Popen(_train_cmd(tmp_path / "cut", device=device), env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    log = tmp_path / "cut" / "log.jsonl"
    deadline = time.time() + 240
    # The progress marker: the first epoch's log row. Kill at once, inside a later epoch.
    while time.time() < deadline and proc.poll() is None and not (log.exists() and log.read_text().count("\n") >= 1):
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before it could be killed; give it more work"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    done_at_kill = log.read_text().count("\n")
    assert 1 <= done_at_kill < EPOCHS, done_at_kill
    assert not (tmp_path / "cut" / "results.json").exists()
    again = subprocess.run(_train_cmd(tmp_path / "cut", device=device), env=ENV, capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"resuming from {tmp_path / 'cut' / 'checkpoint.safetensors'} after epoch" in again.stdout
    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "cut")
    for k in a:
        assert torch.equal(a[k], b[k]), k
    ra = json.loads((tmp_path / "full" / "results.json").read_text())
    rb = json.loads((tmp_path / "cut" / "results.json").read_text())
    assert ra["test_top1"] == rb["test_top1"]


@pytest.mark.slow
def test_a_second_process_on_a_busy_run_folder_gets_one_line_naming_the_first(tmp_path):
    cmd = _train_cmd(tmp_path / "run", epochs=40)  # long enough to outlive a second process's start
    first = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    log = tmp_path / "run" / "log.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and first.poll() is None and not log.exists():
        time.sleep(0.01)
    assert first.poll() is None, "the first run ended before the second started; give it more work"
    second = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=120)
    lines = second.stderr.strip().splitlines()
    assert second.returncode == 2 and len(lines) == 1, second.stderr[-2000:]
    assert lines[0].startswith(f"error: {tmp_path / 'run'} is in use by another training run (PID {first.pid}:")
    first.send_signal(signal.SIGKILL)  # a lock left behind by SIGKILL is stale: the next process takes it over
    first.wait(timeout=30)
    third = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert third.returncode == 0, third.stderr[-2000:]
    assert f"taking over from PID {first.pid}" in third.stdout and (tmp_path / "run" / "results.json").exists()


def test_a_study_folder_belongs_to_one_compare_per_shard(tmp_path):
    from lenet2vit.engine.checkpoint import FolderBusyError, FolderLock
    from lenet2vit.experiment import compare

    with FolderLock(tmp_path / "study", "study", ".study.lock"):  # as a live `compare` holds it
        with pytest.raises(FolderBusyError, match=rf"{tmp_path / 'study'} is in use by another study \(PID {os.getpid()}"):
            compare("lenet5", preset="quick", out=tmp_path / "study", progress=False, log=lambda s: None)
    with FolderLock(tmp_path / "study", "process running shard 0/2", ".study-shard-0-of-2.lock"):
        with pytest.raises(FolderBusyError, match="another process running shard 0/2"):
            compare("lenet5", preset="quick", out=tmp_path / "study", shard="0/2", progress=False, log=lambda s: None)


@pytest.mark.slow
def test_a_streamed_photo_folder_trains_under_torchrun_as_one_process(tmp_path, photo_folder):
    """train/ + val/ of variable-size JPEGs, streamed: 2 gloo ranks reach one process's weights."""
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun not found beside the Python interpreter")
    photos = photo_folder(tmp_path / "photos", per_class=24)
    env = dict(ENV, LENET2VIT_MEMORY_BUDGET="1M")  # the folder decodes to 13 MB at 224 px: auto streams it

    def train(out: Path, *launcher: str) -> subprocess.CompletedProcess:
        cmd = [*launcher, "-m", "lenet2vit", "train", "lenet5", "--dataset", "folder", "--data-dir", str(photos),
               "--preset", "quick", "--epochs", "2", "--batch-size", "8", "--workers", "1", "--amp", "fp32",
               "--device", "cpu", "--no-progress", "--out", str(out)]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc

    one = train(tmp_path / "one", sys.executable)
    assert "data path: stream" in one.stdout and "RandomResizedCrop" in one.stdout
    train(tmp_path / "two", torchrun, "--nproc-per-node", "2", "--master-port", str(_free_port()))
    a, b = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5, rtol=1e-4), k
    cfg = json.loads((tmp_path / "two" / "config.json").read_text())
    assert cfg["world_size"] == 2 and cfg["dataset"]["mode"] == "stream" and cfg["dataset"]["roles"]["test"] == "val/"


def _scheduler_steps(run: Path) -> int:
    from safetensors import safe_open

    with safe_open(str(run / "checkpoint.safetensors"), "pt") as f:
        return json.loads(f.metadata()["lenet2vit"])["scheduler"]["last_epoch"]


def _torchrun() -> str:
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun not found beside the Python interpreter")
    return torchrun


@pytest.mark.slow
def test_bn_and_dropout_under_two_processes_keep_what_the_docs_promise(tmp_path):
    """docs/distributed.md: the same steps and lr schedule as one process, replicas that stay
    identical (weights and BN buffers), and BN statistics of each process's share (so not one
    process's weights)."""
    worker = str(HERE / "ddp_bn_worker.py")
    one = subprocess.run([sys.executable, worker, str(tmp_path / "one")], env=ENV, capture_output=True, text=True,
                         timeout=300)
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run([_torchrun(), "--nproc-per-node", "2", "--master-port", str(_free_port()), worker,
                          str(tmp_path / "two")], env=ENV, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-2000:]
    rows = [[json.loads(line) for line in (tmp_path / run / "log.jsonl").read_text().splitlines()]
            for run in ("one", "two")]
    assert [r["lr"] for r in rows[0]] == [r["lr"] for r in rows[1]] and len(rows[1]) == 3
    steps = [_scheduler_steps(tmp_path / run) for run in ("one", "two")]
    batch = json.loads((tmp_path / "two" / "config.json").read_text())["train"]["batch_size"]  # as fitted to 96 images
    assert steps[0] == steps[1] == 3 * (96 // batch)  # full batches only, on one process as on two
    r0, r1 = (load_file(str(tmp_path / "two" / f"rank{r}.safetensors")) for r in (0, 1))
    for k in r0:
        assert torch.equal(r0[k], r1[k]), f"replicas differ in {k}"
    a = _weights(tmp_path / "one")
    differs = [k for k in a if "bn" in k or "features.1" in k or "features.5" in k]
    assert differs and any(not torch.allclose(a[k], _weights(tmp_path / "two")[k]) for k in differs)


@pytest.mark.slow
def test_two_nodes_on_localhost_match_one_process(tmp_path):
    """The multi-node recipe of docs/distributed.md: two torchrun --nnodes 2 invocations (gloo)."""
    torchrun, port = _torchrun(), str(_free_port())
    one = subprocess.run([sys.executable, str(HERE / "ddp_worker.py"), str(tmp_path / "one")], env=ENV,
                         capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-2000:]
    nodes = [subprocess.Popen([torchrun, "--nnodes", "2", "--node-rank", str(r), "--nproc-per-node", "1",
                               "--master-addr", "127.0.0.1", "--master-port", port, str(HERE / "ddp_worker.py"),
                               str(tmp_path / "two")], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) for r in (0, 1)]
    for node in nodes:
        out, _ = node.communicate(timeout=300)
        assert node.returncode == 0, out[-2000:]
    a, b = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5, rtol=1e-4), k
    assert json.loads((tmp_path / "two" / "config.json").read_text())["world_size"] == 2
