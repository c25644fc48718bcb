"""The loop's pure pieces: schedules, optimizer groups, aux losses, non-finite losses."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn as nn

from lenet2vit.engine.config import ConfigError, TrainConfig, get_preset
from lenet2vit.engine.loop import TrainingError, build_optimizer, lr_factor, train_one_epoch


class _Batches:
    """A minimal loader: fixed batches, the interface fit/train_one_epoch use."""

    def __init__(self, batches):
        self.batches = batches

    def __iter__(self):
        return iter(self.batches)

    def __len__(self):
        return len(self.batches)

    def set_epoch(self, epoch):
        pass


def test_onecycle_warms_up_then_decays_to_zero():
    cfg = TrainConfig(schedule="onecycle", epochs=10, warmup_epochs=2)
    f = [lr_factor(s, 10, cfg) for s in range(100)]
    assert f[19] == pytest.approx(1.0) and max(f) == pytest.approx(1.0)
    assert all(a <= b for a, b in zip(f[:20], f[1:20]))  # rising during warm-up
    assert all(a >= b for a, b in zip(f[20:], f[21:]))  # falling after
    assert f[-1] < 0.02


def test_step_schedule_multiplies_at_milestones():
    cfg = TrainConfig(schedule="step", epochs=10, milestones=(3, 6), gamma=0.1)
    assert lr_factor(29, 10, cfg) == 1.0
    assert lr_factor(30, 10, cfg) == pytest.approx(0.1)
    assert lr_factor(60, 10, cfg) == pytest.approx(0.01)


def test_cosine_ends_near_zero():
    cfg = TrainConfig(schedule="cosine", epochs=4)
    assert lr_factor(0, 10, cfg) == pytest.approx(1.0)
    assert lr_factor(20, 10, cfg) == pytest.approx(0.5, abs=0.05)
    assert lr_factor(39, 10, cfg) < 0.01


def test_no_weight_decay_on_biases_and_norms():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    opt = build_optimizer(model, TrainConfig(weight_decay=1e-3))
    decayed = {id(p) for p in opt.param_groups[0]["params"]}
    assert decayed == {id(model[0].weight)}
    assert opt.param_groups[1]["weight_decay"] == 0.0


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
def test_fused_update_matches_the_per_parameter_loop(optimizer):
    """The engine's fused optimizer step computes the same update as torch's reference loop."""
    torch.manual_seed(0)
    # (no conv bias before the BN: its gradient is rounding noise, which Adam would amplify)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    ref = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    ref.load_state_dict(model.state_dict())
    cfg = TrainConfig(optimizer=optimizer, lr=0.05, weight_decay=1e-2)
    opt = build_optimizer(model, cfg)
    assert all(g["fused"] for g in opt.param_groups)
    groups = [{"params": [p for p in ref.parameters() if p.ndim > 1], "weight_decay": cfg.weight_decay},
              {"params": [p for p in ref.parameters() if p.ndim <= 1], "weight_decay": 0.0}]
    kind = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[optimizer]
    extra = {"momentum": cfg.momentum, "nesterov": cfg.nesterov} if optimizer == "sgd" else {"betas": cfg.betas}
    ref_opt = kind(groups, lr=cfg.lr, foreach=False, **extra)
    x, y = torch.randn(8, 3, 8, 8), torch.randint(0, 3, (8,))
    for _ in range(3):
        for m, o in ((model, opt), (ref, ref_opt)):
            o.zero_grad()
            nn.functional.cross_entropy(m(x), y).backward()
            o.step()
    for a, b in zip(model.parameters(), ref.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_invalid_config_and_unknown_preset_are_clear():
    with pytest.raises(ConfigError, match="optimizer"):
        TrainConfig(optimizer="lbfgs")
    with pytest.raises(ConfigError, match="epochs"):
        TrainConfig(epochs=0)
    with pytest.raises(ConfigError, match="Did you mean: seed-paper"):
        get_preset("seed_paper")


def test_seed_paper_preset_is_the_study_protocol():
    p = get_preset("seed-paper")
    assert (p.optimizer, p.lr, p.epochs, p.label_smoothing) == ("adam", 1e-3, 10, 0.0)
    assert p.mean == (0.5, 0.5, 0.5) and p.std == (0.5, 0.5, 0.5)
    assert p.crop_padding == 0 and not p.flip


class _AuxNet(nn.Module):
    """Returns (logits, [aux]) in training, like GoogLeNet with aux heads."""

    def __init__(self):
        super().__init__()
        self.main = nn.Linear(4, 3)
        self.aux = nn.Linear(4, 3)

    def forward(self, x):
        x = x.flatten(1)
        return (self.main(x), [self.aux(x)]) if self.training else self.main(x)


def test_aux_heads_are_trained_with_weighted_loss():
    torch.manual_seed(0)
    model = _AuxNet()
    x, y = torch.randn(8, 4, 1, 1), torch.randint(0, 3, (8,))
    cfg = TrainConfig(optimizer="sgd", lr=0.1, momentum=0.0, weight_decay=0.0, schedule="none", amp="fp32")
    opt = build_optimizer(model, cfg)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    w0 = model.aux.weight.detach().clone()
    expected_grad = torch.autograd.grad(0.3 * nn.functional.cross_entropy(model.aux(x.flatten(1)), y), model.aux.weight)[0]
    train_one_epoch(model, _Batches([(x, y)]), opt, sched, cfg, device=torch.device("cpu"), amp_dtype=None, progress=False)
    assert torch.allclose(model.aux.weight, w0 - 0.1 * expected_grad, atol=1e-6)


def test_nonfinite_loss_stops_with_epoch_and_step_or_skips():
    model = nn.Linear(4, 3)
    bad = torch.full((4, 4, 1, 1), float("nan"))
    good = torch.randn(4, 4, 1, 1)
    y = torch.zeros(4, dtype=torch.long)
    loader = _Batches([(good.flatten(1), y), (bad.flatten(1), y)])
    cfg = TrainConfig(amp="fp32", schedule="none")
    opt = build_optimizer(model, cfg)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    with pytest.raises(TrainingError, match=r"epoch 3, step 2.*--nonfinite skip"):
        train_one_epoch(model, loader, opt, sched, cfg, device=torch.device("cpu"), amp_dtype=None, epoch=2, progress=False)
    cfg = cfg.replace(nonfinite="skip")
    before = model.weight.detach().clone()
    stats = train_one_epoch(model, _Batches([(bad.flatten(1), y)]), opt, sched, cfg, device=torch.device("cpu"),
                            amp_dtype=None, progress=False)
    assert stats["skipped_steps"] == 1 and torch.equal(model.weight, before)


def test_resnet_paper_cifar_divides_lr_at_32k_and_48k_iterations():
    cfg = get_preset("resnet-paper-cifar")
    steps = 352  # 45k images / 128
    assert lr_factor(31999, steps, cfg) == 1.0
    assert lr_factor(32000, steps, cfg) == pytest.approx(0.1)
    assert lr_factor(47999, steps, cfg) == pytest.approx(0.1)
    assert lr_factor(48000, steps, cfg) == pytest.approx(0.01)
    assert cfg.epochs * steps >= 64000 > (cfg.epochs - 1) * steps  # stops at 64k iterations


def test_googlenet_paper_lowers_lr_4_percent_every_8_epochs():
    cfg = get_preset("googlenet-paper")
    assert lr_factor(8 * 100 - 1, 100, cfg) == 1.0
    assert lr_factor(8 * 100, 100, cfg) == pytest.approx(0.96)
    assert lr_factor(16 * 100, 100, cfg) == pytest.approx(0.96**2)
    assert cfg.aux_weight == 0.3


class _ValLoader(_Batches):
    pass


def test_plateau_divides_lr_when_validation_stops_improving(tmp_path):
    from lenet2vit.engine.loop import fit

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    x, y = torch.randn(8, 4, 1, 1), torch.randint(0, 3, (8,))
    # Validation labels the model can never get right after the first epoch: accuracy stalls.
    val = _ValLoader([(torch.randn(8, 4, 1, 1), torch.randint(0, 3, (8,)))])
    cfg = TrainConfig(optimizer="sgd", lr=1e-6, momentum=0.0, schedule="plateau", patience=1, gamma=0.1,
                      epochs=6, amp="fp32", weight_decay=0.0)
    res = fit(model, _Batches([(x, y)]), val, cfg, tmp_path, device=torch.device("cpu"), progress=False,
              log=lambda s: None)
    lrs = [h["lr"] for h in res["history"]]
    assert lrs[0] == pytest.approx(1e-6)
    assert min(lrs) < 1e-6 * 0.5  # dropped at least once
    drops = [i for i in range(1, len(lrs)) if lrs[i] < lrs[i - 1] * 0.5]
    assert all(b - a >= 2 for a, b in zip(drops, drops[1:]))  # patience between drops


def test_warmup_ramps_the_step_schedule_too():
    cfg = TrainConfig(schedule="step", epochs=4, warmup_epochs=1, milestones=(2,), gamma=0.1)
    assert lr_factor(0, 10, cfg) == pytest.approx(0.1)
    assert lr_factor(9, 10, cfg) == pytest.approx(1.0)
    assert lr_factor(15, 10, cfg) == 1.0
    assert lr_factor(20, 10, cfg) == pytest.approx(0.1)


class _SlowFirstCall(nn.Linear):
    """Stands in for a freshly compiled model: its first call, and a call on a new batch size
    (a recompile), take `delay` seconds longer."""

    def __init__(self, delay: float):
        super().__init__(4, 3)
        self.delay, self.sizes = delay, set()

    def forward(self, x):
        if x.shape[0] not in self.sizes:
            import time

            self.sizes.add(x.shape[0])
            time.sleep(self.delay)
        return super().forward(x)


def test_compile_time_is_reported_apart_from_training_time():
    cfg = TrainConfig(amp="fp32", schedule="none")
    sizes = [4] * 5 + [2]  # the last, smaller batch makes a compiled model compile again
    batches = _Batches([(torch.randn(n, 4), torch.zeros(n, dtype=torch.long)) for n in sizes])
    model = _SlowFirstCall(0.4)
    opt = build_optimizer(model, cfg)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    st = train_one_epoch(model, batches, opt, sched, cfg, device=torch.device("cpu"), amp_dtype=None, progress=False,
                         compiling=True)
    assert 0.75 < st["compile_seconds"] < 1.5  # both compiles
    assert st["train_seconds"] < 0.3  # six tiny steps, the compile delays left out
    model = _SlowFirstCall(0.4)
    opt = build_optimizer(model, cfg)
    st = train_one_epoch(model, batches, opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0), cfg,
                         device=torch.device("cpu"), amp_dtype=None, progress=False)
    assert st["compile_seconds"] == 0.0 and st["train_seconds"] >= 0.8  # not compiling: all of it is training


def test_compile_is_on_by_default_only_on_cuda():
    from lenet2vit.runtime import resolve_compile

    assert resolve_compile(None, torch.device("cpu")) is False
    assert resolve_compile(True, torch.device("cpu")) is True
    assert resolve_compile(False, torch.device("cuda")) is False
    assert TrainConfig().compile is None


def test_resumed_fused_update_of_channels_last_weights_matches_the_uninterrupted_one():
    """Checkpoints hold contiguous optimizer state; the fused kernels need it in the weights' layout."""
    from lenet2vit.engine.loop import _match_param_layout

    def make():
        torch.manual_seed(0)
        m = nn.Sequential(nn.Conv2d(3, 8, 3, bias=False), nn.Flatten(), nn.Linear(8 * 6 * 6, 3))
        return m.to(memory_format=torch.channels_last)

    x = torch.randn(4, 3, 8, 8).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 3, (4,))
    cfg = TrainConfig(optimizer="sgd", lr=0.1)

    def step(m, o):
        o.zero_grad()
        nn.functional.cross_entropy(m(x), y).backward()
        o.step()

    model = make()
    opt = build_optimizer(model, cfg)
    step(model, opt)
    saved_model = {k: v.clone() for k, v in model.state_dict().items()}
    saved = opt.state_dict()
    saved["state"] = {i: {k: v.clone(memory_format=torch.contiguous_format) if torch.is_tensor(v) else v for k, v in st.items()}
                      for i, st in saved["state"].items()}  # as a checkpoint file gives them back
    step(model, opt)
    resumed = make()
    resumed.load_state_dict(saved_model)
    opt2 = build_optimizer(resumed, cfg)
    opt2.load_state_dict(saved)
    _match_param_layout(opt2)
    step(resumed, opt2)
    for a, b in zip(model.parameters(), resumed.parameters()):
        assert torch.equal(a, b)


def test_a_one_epoch_run_of_the_fast_preset_leaves_its_warm_up_and_decays():
    cfg = get_preset("fast").replace(epochs=1)  # the preset warms up for 2 epochs
    f = [lr_factor(s, 100, cfg) for s in range(100)]
    assert max(f) == pytest.approx(1.0)  # the peak is reached inside the run ...
    assert f.index(max(f)) == 29  # ... after at most 30% of its steps
    assert f[-1] < 0.02  # and the lr decays to zero by its end
    ten = get_preset("fast")
    assert [lr_factor(s, 100, ten) for s in (0, 99, 199)] == pytest.approx([0.005, 0.5, 1.0])  # 10 epochs: unchanged


def test_a_batch_larger_than_the_data_allows_shrinks_with_the_lr():
    fast = get_preset("fast")
    assert fast.fit_to_data(45_000) == (fast, None)  # CIFAR-10: as the preset says
    digits, why = fast.fit_to_data(1293)
    assert digits.batch_size == 25 and digits.lr == pytest.approx(fast.lr * 25 / fast.batch_size)  # 51 steps; linear scaling for SGD
    assert "1293 training images" in why and "batch 25" in why
    assert fast.fit_to_data(245)[0].batch_size == 16  # fewer steps rather than batches too small for BatchNorm
    adam, _ = fast.replace(optimizer="adam", lr=1e-3).fit_to_data(1293)
    assert adam.lr == pytest.approx(1e-3 * (25 / fast.batch_size) ** 0.5)  # square-root scaling for Adam
    assert fast.fit_to_data(3)[0].batch_size == 1
    assert fast.fit_to_data(50 * fast.batch_size) == (fast, None)  # from 50 batches on, the preset's own batch
    assert fast.fit_to_data(50 * fast.batch_size - 1)[0].batch_size == fast.batch_size - 1


def test_fast_clips_the_gradients_of_networks_without_normalisation_only():
    from lenet2vit.registry import create_model

    fast = get_preset("fast").replace(whiten_stem=False)  # the clip alone; the whitening rule below
    plain = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.LocalResponseNorm(5), nn.Flatten(), nn.LazyLinear(10))
    clipped, why = fast.fit_to_model(plain)  # LRN rescales nothing the way BN does: still plain
    assert clipped.grad_clip == 2.0 and "gradient norm clipped at 2" in why
    assert dataclasses.replace(clipped, grad_clip=None) == fast  # nothing else changes
    for norm in (nn.BatchNorm2d(8), nn.GroupNorm(2, 8), nn.LayerNorm(8)):
        assert fast.fit_to_model(nn.Sequential(nn.Conv2d(3, 8, 3), norm)) == (fast, None)
    assert fast.replace(grad_clip=5.0).fit_to_model(plain) == (fast.replace(grad_clip=5.0), None)  # an explicit clip wins
    assert get_preset("quick").fit_to_model(plain) == (get_preset("quick"), None)  # AdamW: no rule
    assert fast.fit_to_model(create_model("alexnet_cifar"))[0].grad_clip == 2.0
    assert fast.fit_to_model(create_model("resnet20"))[1] is None
    assert fast.replace(plain_grad_clip=0.0).fit_to_model(plain)[1] is None  # 0: off
    with pytest.raises(ConfigError, match="plain_grad_clip must be >= 0"):
        TrainConfig(plain_grad_clip=-1.0)


def test_fast_whitens_the_stem_of_networks_with_batch_norm_only():
    from lenet2vit.registry import create_model

    fast = get_preset("fast")
    assert fast.whiten_stem and fast.fit_to_model(create_model("resnet20")) == (fast, None)
    for model in (nn.Sequential(nn.Conv2d(3, 8, 3), nn.LayerNorm(8)), create_model("alexnet_cifar")):
        fitted, why = fast.fit_to_model(model)
        assert not fitted.whiten_stem and "no batch normalisation in the model: whiten_stem off" in why
    assert fast.fit_to_model(create_model("alexnet_cifar"))[0].grad_clip == 2.0  # both rules at once
    assert "; " in fast.fit_to_model(create_model("alexnet_cifar"))[1]


@pytest.mark.parametrize("other_cpus, marked", [(1.0, True), (0.1, False), (None, False)])
def test_an_epoch_taken_beside_other_work_says_so_in_its_line(tmp_path, monkeypatch, other_cpus, marked):
    """Two trainings on one small CPU slow each other (and spin their threads): the epoch's own line says so."""
    import lenet2vit.engine.loop as loop

    class _Meter:
        def read(self, restart=True):
            return other_cpus

    monkeypatch.setattr(loop, "LoadMeter", _Meter)
    x, y = torch.randn(8, 4, 1, 1), torch.randint(0, 3, (8,))
    lines = []
    res = loop.fit(nn.Sequential(nn.Flatten(), nn.Linear(4, 3)), _Batches([(x, y)]), None,
                   TrainConfig(epochs=1, amp="fp32", schedule="none"), tmp_path, device=torch.device("cpu"),
                   progress=False, log=lines.append)
    epoch_line = next(s for s in lines if s.startswith("epoch 1/1"))
    assert res["history"][0]["other_load"] == other_cpus
    assert ("(loaded: other processes kept 1.0 CPUs busy)" in epoch_line) is marked
