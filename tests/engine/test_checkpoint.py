"""Checkpoints are atomic, safe (no pickle) and round-trip the full training state."""

from __future__ import annotations

import errno
import json

import pytest
import torch
import torch.nn as nn

from lenet2vit.engine import checkpoint as ck
from lenet2vit.engine.checkpoint import CheckpointError, atomic_write_json, load_checkpoint, save_checkpoint


def _model_and_optimizer():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    loss = model(torch.randn(6, 4)).sum()
    loss.backward()
    opt.step()
    return model, opt


def test_checkpoint_roundtrip_restores_model_optimizer_and_rng(tmp_path):
    model, opt = _model_and_optimizer()
    rng = torch.get_rng_state()
    save_checkpoint(tmp_path / "c.safetensors", model.state_dict(), opt.state_dict(), {"epoch": 3, "note": "x"}, rng_state=rng)
    got = load_checkpoint(tmp_path / "c.safetensors")
    assert got["epoch"] == 3 and got["note"] == "x"
    assert torch.equal(got["rng"], rng)
    for k, v in model.state_dict().items():
        assert torch.equal(got["model"][k], v)
    opt2 = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    opt2.load_state_dict(got["optimizer"])
    assert opt2.param_groups[0]["lr"] == 0.1
    for (i, a), (j, b) in zip(opt.state_dict()["state"].items(), opt2.state_dict()["state"].items()):
        assert i == j and torch.equal(a["momentum_buffer"], b["momentum_buffer"])


def test_every_cuda_generator_state_round_trips_in_device_order(tmp_path):
    model, opt = _model_and_optimizer()
    states = [torch.randint(0, 256, (16,), dtype=torch.uint8, generator=torch.Generator().manual_seed(i))
              for i in range(12)]  # twelve devices: "rng.cuda.10" must not sort before "rng.cuda.2"
    save_checkpoint(tmp_path / "c.safetensors", model.state_dict(), opt.state_dict(), {}, cuda_rng_states=states)
    got = load_checkpoint(tmp_path / "c.safetensors")["cuda_rng"]
    assert len(got) == 12 and all(torch.equal(a, b) for a, b in zip(got, states))
    save_checkpoint(tmp_path / "d.safetensors", model.state_dict(), opt.state_dict(), {})
    assert load_checkpoint(tmp_path / "d.safetensors")["cuda_rng"] is None


def test_failed_write_leaves_previous_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "results.json"
    atomic_write_json(path, {"v": 1})

    def half_write_then_fail(tmp):
        with open(tmp, "w") as f:
            f.write('{"v": 2, "trunc')
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(CheckpointError, match="previous file is intact"):
        ck.atomic_write(path, half_write_then_fail)
    assert json.loads(path.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]  # no temp file left behind


def test_disk_full_during_checkpoint_save_keeps_last_checkpoint(tmp_path, monkeypatch):
    model, opt = _model_and_optimizer()
    path = tmp_path / "checkpoint.safetensors"
    save_checkpoint(path, model.state_dict(), opt.state_dict(), {"epoch": 1})
    before = path.read_bytes()

    def no_space(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ck, "save_file", no_space)
    with pytest.raises(CheckpointError, match="Free disk space"):
        save_checkpoint(path, model.state_dict(), opt.state_dict(), {"epoch": 2})
    assert path.read_bytes() == before
    assert load_checkpoint(path)["epoch"] == 1


def test_corrupt_checkpoint_gives_a_clear_error(tmp_path):
    path = tmp_path / "checkpoint.safetensors"
    path.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(CheckpointError, match="delete it"):
        load_checkpoint(path)
