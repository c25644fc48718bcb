"""Whole runs: overfitting, exact resumption, protocol checks, self-describing folders."""

from __future__ import annotations

import json
import os

import pytest
import torch
import torch.nn as nn
from safetensors.torch import load_file

from lenet2vit.data import ImageArrays
from lenet2vit.engine import ConfigError, RunError, TrainConfig, load_run, train_run
from lenet2vit.registry import Count, _unregister, register_model


class TinyNet(nn.Module):
    """Conv -> dropout -> linear: small, with randomness in the forward pass (dropout)."""

    def __init__(self, num_classes=10, in_chans=3):
        super().__init__()
        self.conv = nn.Conv2d(in_chans, 8, 3, padding=1)
        self.drop = nn.Dropout(0.3)
        self.fc = nn.Linear(8, num_classes)

    def forward_features(self, x):
        return torch.relu(self.conv(x)).mean((2, 3))

    def forward_head(self, x, pre_logits=False):
        return x if pre_logits else self.fc(self.drop(x))

    def forward(self, x):
        return self.forward_head(self.forward_features(x))

    def get_classifier(self):
        return self.fc

    def reset_classifier(self, num_classes):
        self.fc = nn.Linear(8, num_classes)


@pytest.fixture(scope="module", autouse=True)
def tiny_model():
    @register_model(family="Test", paper="test", year=2000, input_size=8, params=Count.published(0, "test"),
                    min_input_size=8)
    def tiny_run_net(num_classes=10, in_chans=3, **kw):
        """Tiny test net."""
        return TinyNet(num_classes, in_chans)

    yield "tiny_run_net"
    _unregister("tiny_run_net")


def synthetic(n, size=8, classes=3, seed=0):
    """Images whose colour encodes the class: learnable in a few steps."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    base = torch.rand(classes, 3, 1, 1, generator=torch.Generator().manual_seed(123)) * 255  # same in every split
    noise = torch.randn(n, 3, size, size, generator=g) * 20
    images = (base[labels] + noise).clamp(0, 255).to(torch.uint8)
    return ImageArrays(images=images, labels=labels.long(), classes=[f"c{i}" for i in range(classes)])


def data(n=256):
    return synthetic(n, seed=0), synthetic(24, seed=1), synthetic(30, seed=2)


CFG = TrainConfig(optimizer="adam", lr=1e-2, weight_decay=0.0, schedule="onecycle", epochs=4, batch_size=16,
                  amp="fp32", flip=True, crop_padding=1, device="cpu", seed=3)


def test_training_overfits_and_writes_a_self_describing_run(tmp_path):
    res = train_run("tiny_run_net", out=tmp_path / "r", cfg=CFG.replace(epochs=8), data=data(), progress=False, log=lambda s: None)
    assert res["test_top1"] > 0.9 and res["best_val_top1"] > 0.9
    files = {p.name for p in (tmp_path / "r").iterdir()}
    assert {"config.json", "best.safetensors", "checkpoint.safetensors", "log.jsonl", "log.csv", "results.json"} <= files
    lines = (tmp_path / "r" / "log.jsonl").read_text().splitlines()
    assert len(lines) == 8 and {"train_loss", "val_top1", "val_top5", "lr", "epoch_seconds", "train_images_per_s"} <= set(json.loads(lines[0]))
    model, config = load_run(tmp_path / "r")
    assert config["classes"] == ["c0", "c1", "c2"] and config["input_size"] == 8
    assert isinstance(model, TinyNet) and not model.training
    # The CPU's vector level a timing depends on, as PyTorch's kernels see it.
    assert config["environment"]["cpu_capability"].startswith(torch.backends.cpu.get_cpu_capability())


def test_resume_equals_uninterrupted(tmp_path):
    full = train_run("tiny_run_net", out=tmp_path / "full", cfg=CFG, data=data(), progress=False, log=lambda s: None)
    part = train_run("tiny_run_net", out=tmp_path / "part", cfg=CFG, data=data(), progress=False, log=lambda s: None,
                     stop_after_epochs=2)
    assert part["epochs_done"] == 2 and not (tmp_path / "part" / "results.json").exists()
    resumed = train_run("tiny_run_net", out=tmp_path / "part", cfg=CFG, data=data(), progress=False, log=lambda s: None)
    a = load_file(str(tmp_path / "full" / "checkpoint.safetensors"))
    b = load_file(str(tmp_path / "part" / "checkpoint.safetensors"))
    for k in a:
        if k.startswith("model."):
            assert torch.equal(a[k], b[k]), k
    assert resumed["test_top1"] == full["test_top1"]
    assert [h["train_loss"] for h in resumed["history"]] == [h["train_loss"] for h in full["history"]]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_resume_on_cuda_equals_uninterrupted(tmp_path):
    """Dropout draws from the CUDA generator: its state must come back with the checkpoint."""
    cfg = CFG.replace(device="cuda", deterministic=True)
    full = train_run("tiny_run_net", out=tmp_path / "full", cfg=cfg, data=data(), progress=False, log=lambda s: None)
    train_run("tiny_run_net", out=tmp_path / "part", cfg=cfg, data=data(), progress=False, log=lambda s: None,
              stop_after_epochs=2)
    torch.cuda.manual_seed_all(12345)  # a resuming process starts with another CUDA generator state
    resumed = train_run("tiny_run_net", out=tmp_path / "part", cfg=cfg, data=data(), progress=False, log=lambda s: None)
    a = load_file(str(tmp_path / "full" / "checkpoint.safetensors"))
    b = load_file(str(tmp_path / "part" / "checkpoint.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a if k.startswith("model."))
    assert [h["train_loss"] for h in resumed["history"]] == [h["train_loss"] for h in full["history"]]


def test_deterministic_flag_sets_the_deterministic_kernels(monkeypatch):
    from lenet2vit.runtime import set_deterministic

    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    before = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark,
              torch.backends.cudnn.deterministic)
    try:
        set_deterministic(False)
        assert not torch.are_deterministic_algorithms_enabled()
        set_deterministic(True)
        assert torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.deterministic
        assert not torch.backends.cudnn.benchmark and os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    finally:
        torch.use_deterministic_algorithms(before[0])
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = before[1], before[2]


def test_changed_protocol_in_same_folder_is_refused(tmp_path):
    train_run("tiny_run_net", out=tmp_path / "r", cfg=CFG.replace(epochs=1), data=data(), progress=False, log=lambda s: None)
    with pytest.raises(RunError, match=r"another protocol.*lr: 0.01 -> 0.02"):
        train_run("tiny_run_net", out=tmp_path / "r", cfg=CFG.replace(epochs=1, lr=0.02), data=data(), progress=False,
                  log=lambda s: None)


def test_load_run_errors_are_clear(tmp_path):
    with pytest.raises(RunError, match="no such run"):
        load_run(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunError, match="not a run folder"):
        load_run(tmp_path / "empty")


@pytest.mark.data
@pytest.mark.slow
def test_short_epoch_on_real_cifar10_is_well_above_chance(tmp_path, cifar_archive):
    cfg = TrainConfig(optimizer="adamw", lr=2e-3, weight_decay=5e-4, schedule="onecycle", warmup_epochs=0.2,
                      epochs=1, batch_size=64, mean=None, std=None, flip=True, limit=3000, amp="auto", device="cpu")
    res = train_run("resnet20", out=tmp_path / "r20", cfg=cfg, dataset="cifar10", data_dir=cifar_archive,
                    progress=False, log=lambda s: None)
    assert res["test_top1"] > 0.2  # chance is 0.1
    assert res["test_top5"] > res["test_top1"]


def test_ema_weights_are_what_is_validated_kept_and_resumed(tmp_path):
    cfg = CFG.replace(ema=0.9)
    full = train_run("tiny_run_net", out=tmp_path / "full", cfg=cfg, data=data(), progress=False, log=lambda s: None)
    plain = train_run("tiny_run_net", out=tmp_path / "plain", cfg=CFG, data=data(), progress=False, log=lambda s: None)
    ck = load_file(str(tmp_path / "full" / "checkpoint.safetensors"))
    ema = {k[len("ema.module."):]: v for k, v in ck.items() if k.startswith("ema.module.")}
    live = {k[len("model."):]: v for k, v in ck.items() if k.startswith("model.")}
    assert ema.keys() == live.keys() and any(not torch.equal(ema[k], live[k]) for k in live)
    if full["best_epoch"] == CFG.epochs:  # best.safetensors holds the average, not the live weights
        best = load_file(str(tmp_path / "full" / "best.safetensors"))
        assert all(torch.equal(best[k], ema[k]) for k in ema)
    assert [h["val_top1"] for h in full["history"]] != [h["val_top1"] for h in plain["history"]] or \
        [h["val_loss"] for h in full["history"]] != [h["val_loss"] for h in plain["history"]]
    part = train_run("tiny_run_net", out=tmp_path / "part", cfg=cfg, data=data(), progress=False, log=lambda s: None,
                     stop_after_epochs=2)
    assert part["epochs_done"] == 2
    resumed = train_run("tiny_run_net", out=tmp_path / "part", cfg=cfg, data=data(), progress=False, log=lambda s: None)
    again = load_file(str(tmp_path / "part" / "checkpoint.safetensors"))
    for k, v in ck.items():
        if k.startswith(("ema.", "model.")):
            assert torch.equal(v, again[k]), k  # the average resumes to the same tensors
    assert resumed["test_top1"] == full["test_top1"]


def test_ema_decay_is_checked():
    with pytest.raises(ConfigError, match="ema must be a decay in"):
        TrainConfig(ema=1.5)


def test_lookahead_moves_the_slow_weights_alpha_of_the_way_every_k_steps():
    from lenet2vit.engine.loop import Lookahead

    net = nn.Linear(3, 2)
    start = [p.detach().clone() for p in net.parameters()]
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    look = Lookahead(net, k=2, alpha=0.25)
    x = torch.randn(8, 3)
    for step in (1, 2):
        opt.zero_grad()
        net(x).square().sum().backward()
        opt.step()
        fast = [p.detach().clone() for p in net.parameters()]
        look.step(step)
    # Step 1 left the fast weights alone; step 2 moved the slow ones a quarter of the way and restarted from them.
    for p, s0, f in zip(net.parameters(), start, fast):
        assert torch.allclose(p, s0 + 0.25 * (f - s0)) and not torch.allclose(p, f)
    assert all(torch.equal(p, s) for p, s in zip(net.parameters(), look.state_dict().values()))


def test_lookahead_trains_resumes_exactly_and_at_alpha_one_is_the_plain_optimizer(tmp_path):
    def run(name, stop=None, **cfg):
        train_run("tiny_run_net", out=tmp_path / name, cfg=CFG.replace(**cfg), data=data(), progress=False,
                  log=lambda s: None, stop_after_epochs=stop)
        return load_file(str(tmp_path / name / "checkpoint.safetensors"))

    plain, full = run("plain"), run("full", lookahead=5, lookahead_alpha=0.5)
    weights = [k for k in plain if k.startswith("model.")]
    assert any(not torch.equal(plain[k], full[k]) for k in weights)  # the slow weights changed the run
    assert sorted(k for k in full if k.startswith("slow.")) and not any(k.startswith("slow.") for k in plain)
    run("part", stop=2, lookahead=5, lookahead_alpha=0.5)
    resumed = run("part", lookahead=5, lookahead_alpha=0.5)
    for k in full:
        if k.startswith(("slow.", "model.")):
            assert torch.equal(full[k], resumed[k]), k  # the slow weights resume to the same tensors
    one = run("one", lookahead=5, lookahead_alpha=1.0)  # the slow weights are the fast ones: nothing changes
    assert all(torch.equal(plain[k], one[k]) for k in weights)


@pytest.mark.parametrize("bad, message", [({"lookahead": -1}, "lookahead must be a number of steps"),
                                          ({"lookahead_alpha": 0.0}, "lookahead_alpha must be a share in")])
def test_lookahead_settings_are_checked(bad, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**bad)


def test_eval_on_the_val_split_sees_the_images_validation_saw(tmp_path):
    from lenet2vit.engine import evaluate_run

    cfg = CFG.replace(epochs=1, val_fraction=0.2)
    res = train_run("tiny_run_net", out=tmp_path / "r", cfg=cfg, dataset="digits", progress=False, log=lambda s: None)
    val = evaluate_run(tmp_path / "r", split="val", progress=False, device="cpu")
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert val["split"] == "val" and val["n"] == config["dataset"]["val"] > 0
    assert val["top1"] == pytest.approx(res["best_val_top1"], abs=1e-9)  # the same images and weights
    test = evaluate_run(tmp_path / "r", split="test", progress=False, device="cpu", tta="translate")
    assert test["n"] == config["dataset"]["test"] and test["tta"] == "translate"


def test_dropout_replaces_the_architectures_and_is_refused_where_there_is_none(tmp_path, monkeypatch):
    import lenet2vit.engine.run as run_mod

    built = []
    real = run_mod._build_training_model
    monkeypatch.setattr(run_mod, "_build_training_model", lambda *a, **k: built.append(real(*a, **k)) or built[-1])
    big = (synthetic(64, size=32), synthetic(16, size=32, seed=1), synthetic(16, size=32, seed=2))
    logs: list[str] = []
    train_run("vgg11", out=tmp_path / "v", cfg=CFG.replace(epochs=1, dropout=0.0), data=big, progress=False,
              log=logs.append)
    drops = [m.p for m in built[-1].modules() if isinstance(m, nn.Dropout)]
    assert drops == [0.0, 0.0]  # VGG's two head dropouts (0.5 in the paper) are off
    assert any("dropout 0 in 2 layer(s) instead of 0.5" in m for m in logs)
    assert json.loads((tmp_path / "v" / "config.json").read_text())["train"]["dropout"] == 0.0
    with pytest.raises(ConfigError, match="resnet20 has none"):
        train_run("resnet20", out=tmp_path / "r", cfg=CFG.replace(epochs=1, dropout=0.1), data=big, progress=False,
                  log=lambda s: None)
    assert not (tmp_path / "r" / "config.json").exists()
    with pytest.raises(ConfigError, match="dropout must be a probability"):
        CFG.replace(dropout=1.0)


def test_whiten_stem_starts_the_first_convolution_as_the_patch_whitening(tmp_path):
    from lenet2vit.data import patch_whitening
    from lenet2vit.engine.run import _whiten_stem

    train, mean, std = synthetic(64, size=12), [0.5, 0.4, 0.6], [0.2, 0.25, 0.3]
    net = nn.Sequential(nn.Conv2d(3, 10, 2), nn.ReLU(), nn.Conv2d(10, 4, 3))
    first, second = net[0].weight.detach().clone(), net[2].weight.detach().clone()
    lines = []
    _whiten_stem(net, train, mean, std, 12, lines.append)
    _, filters = patch_whitening(train.images, mean, std, (2, 2), 12)
    w = net[0].weight.detach()
    assert torch.equal(w[:5], filters[:5]) and torch.equal(w[5:10], -filters[:5])  # 5 leading of 12 directions
    assert torch.equal(net[2].weight, second) and not torch.equal(w, first)
    assert "10 of 10 filters whiten its 2x2 patches (the 5 leading of 12 directions" in lines[0]
    wide = nn.Conv2d(3, 30, 2)
    left = wide.weight.detach().clone()
    _whiten_stem(wide, train, mean, std, 12, lines.append)
    assert torch.equal(wide.weight[24:], left[24:]) and "24 of 30 filters" in lines[1]  # all 12 directions, both signs
    with pytest.raises(ConfigError, match="first convolution"):
        _whiten_stem(nn.Conv2d(3, 6, 3, groups=3), train, mean, std, 12, lines.append)
    big = (synthetic(64, size=32), synthetic(16, size=32, seed=1), synthetic(16, size=32, seed=2))
    train_run("resnet20", out=tmp_path / "r", cfg=CFG.replace(epochs=1, whiten_stem=True), data=big, progress=False,
              log=lines.append)
    assert json.loads((tmp_path / "r" / "config.json").read_text())["train"]["whiten_stem"]
    assert any("the first convolution's 16 of 16 filters whiten its 3x3 patches" in line for line in lines)
    lines.clear()  # given weights keep their own first convolution
    train_run("resnet20", out=tmp_path / "i", cfg=CFG.replace(epochs=1, whiten_stem=True), data=big,
              init_from=tmp_path / "r", progress=False, log=lines.append)
    assert not json.loads((tmp_path / "i" / "config.json").read_text())["train"]["whiten_stem"]
    assert "protocol: whiten_stem off: the first convolution comes from --init-from" in lines
    assert not any("filters whiten" in line for line in lines)


def test_zero_init_residual_reaches_the_model_and_is_refused_where_there_is_no_branch(tmp_path):
    big = (synthetic(64, size=32), synthetic(16, size=32, seed=1), synthetic(16, size=32, seed=2))
    cfg = CFG.replace(epochs=1, zero_init_residual=True)
    train_run("resnet20", out=tmp_path / "r", cfg=cfg, data=big, progress=False, log=lambda s: None)
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert config["model_kwargs"] == {"zero_init_residual": True} and config["train"]["zero_init_residual"]
    with pytest.raises(ConfigError, match="applies to residual networks; vgg11_cifar"):
        train_run("vgg11", out=tmp_path / "v", cfg=cfg, data=big, progress=False, log=lambda s: None)
    assert not (tmp_path / "v" / "config.json").exists()
