"""GoogLeNet: torchvision equivalence (with and without aux heads), the training contract, paper form."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

from lenet2vit import create_model, load_weights, model_info
from lenet2vit.layers import LocalResponseNorm
from lenet2vit.models.googlenet import INCEPTION_CFG, Inception, InceptionAux


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _torchvision(tmp_path, **kwargs) -> tuple[nn.Module, str]:
    torch.manual_seed(0)
    theirs = torchvision.models.googlenet(init_weights=True, **kwargs)
    path = tmp_path / "googlenet.pth"
    torch.save(theirs.state_dict(), path)
    return theirs, str(path)


def test_matches_torchvision(tmp_path):
    theirs, path = _torchvision(tmp_path, aux_logits=False, transform_input=False)
    ours = create_model("googlenet")
    load_weights(ours, path, source="torchvision")
    theirs.eval(), ours.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(ours(x), theirs(x), atol=1e-5, rtol=1e-4)
    assert model_info("googlenet").reference == ("torchvision", "googlenet")


def test_matches_torchvision_with_aux_heads_in_training(tmp_path):
    theirs, path = _torchvision(tmp_path, aux_logits=True, transform_input=False)
    ours = create_model("googlenet", aux_logits=True)
    load_weights(ours, path, source="torchvision")
    theirs.train(), ours.train()
    x = torch.randn(2, 3, 64, 64)
    torch.manual_seed(1)  # both draw the dropout masks in the same order: aux1, aux2, main head
    ref = theirs(x)
    torch.manual_seed(1)
    logits, (aux1, aux2) = ours(x)
    for a, b in ((logits, ref.logits), (aux1, ref.aux_logits1), (aux2, ref.aux_logits2)):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-4)
    theirs.eval(), ours.eval()  # the aux heads are ignored in evaluation
    with torch.no_grad():
        assert torch.allclose(ours(x), theirs(x), atol=1e-5, rtol=1e-4)


def test_transform_input_matches_torchvision(tmp_path):
    theirs, path = _torchvision(tmp_path, aux_logits=False, transform_input=True)
    ours = create_model("googlenet", transform_input=True)
    load_weights(ours, path, source="torchvision")
    theirs.eval(), ours.eval()
    x = torch.randn(1, 3, 48, 48)
    with torch.no_grad():
        assert torch.allclose(ours(x), theirs(x), atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="in_chans"):
        create_model("googlenet", in_chans=1, transform_input=True)


def test_torchvision_file_with_aux_heads_loads_into_model_without_them(tmp_path):
    _, path = _torchvision(tmp_path, aux_logits=True)
    ours = create_model("googlenet")  # aux_logits=False: the file's aux1.*/aux2.* are dropped
    report = load_weights(ours, path, source="torchvision")
    assert report["missing"] == [] and report["unexpected"] == []


def test_training_contract_and_reset_classifier():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32)
    model = create_model("googlenet", num_classes=7, aux_logits=True)
    from lenet2vit.engine import TrainConfig
    from lenet2vit.models.googlenet import AUX_LOSS_WEIGHT
    from lenet2vit.registry import model_info

    assert AUX_LOSS_WEIGHT == TrainConfig().aux_weight == 0.3  # Sec. 5, and the protocol's default
    assert model_info("googlenet_cifar").train_kwargs == {"aux_logits": True}  # the engine trains with the heads
    out = model.train()(x)
    assert isinstance(out, tuple) and len(out) == 2
    logits, aux = out
    assert isinstance(aux, list) and len(aux) == 2
    assert logits.shape == aux[0].shape == aux[1].shape == (2, 7)
    target = torch.zeros(2, dtype=torch.long)
    loss = F.cross_entropy(logits, target) + AUX_LOSS_WEIGHT * sum(F.cross_entropy(a, target) for a in aux)
    loss.backward()
    assert model.aux1.fc2.weight.grad.abs().sum() > 0 and model.aux2.conv.conv.weight.grad.abs().sum() > 0
    with torch.no_grad():
        y = model.eval()(x)  # evaluation ignores the heads
        assert isinstance(y, torch.Tensor) and y.shape == (2, 7)

    old = (model.fc, model.aux1.fc2, model.aux2.fc2)
    model.reset_classifier(5)
    new = (model.fc, model.aux1.fc2, model.aux2.fc2)
    assert all(a is not b and b.out_features == 5 for a, b in zip(old, new))
    assert model.get_classifier() is model.fc
    with torch.no_grad():
        logits, aux = model.train()(x)
    assert logits.shape == aux[0].shape == aux[1].shape == (2, 5)


def test_paper_cifar_form_with_aux_heads():
    torch.manual_seed(0)
    model = create_model("googlenet_paper_cifar", aux_logits=True).train()
    with torch.no_grad():
        logits, aux = model(torch.randn(2, 3, 32, 32))  # aux heads see 16x16 maps: 5x5/3 pool -> 4x4
        assert logits.shape == aux[0].shape == aux[1].shape == (2, 10)
        assert torch.isfinite(logits).all() and all(torch.isfinite(a).all() for a in aux)
    plain = create_model("googlenet_paper_cifar").train()  # no aux heads: a tensor in training too
    assert plain.aux1 is None and plain.aux2 is None
    with torch.no_grad():
        assert isinstance(plain(torch.randn(2, 3, 16, 16)), torch.Tensor)


def _paper_count_from_table1(num_classes: int, in_chans: int = 3, stem_kernel: int = 7) -> int:
    """Weights + biases of every conv (Table 1, true 5x5) and the classifier; no BN, no aux."""

    def conv(k: int, cin: int, cout: int) -> int:
        return k * k * cin * cout + cout

    total = conv(stem_kernel, in_chans, 64) + conv(1, 64, 64) + conv(3, 64, 192)
    cin = 192
    for c1, r3, c3, r5, c5, pp in INCEPTION_CFG.values():
        total += conv(1, cin, c1) + conv(1, cin, r3) + conv(3, r3, c3) + conv(1, cin, r5) + conv(5, r5, c5)
        total += conv(1, cin, pp)
        cin = c1 + c3 + c5 + pp
    return total + cin * num_classes + num_classes


@pytest.mark.parametrize("name, num_classes, stem", [("googlenet_paper", 1000, 7), ("googlenet_paper_cifar", 10, 3)])
def test_paper_form_count_from_table1(name, num_classes, stem):
    with torch.device("meta"):
        model = create_model(name)
    assert _count(model) == _paper_count_from_table1(num_classes, stem_kernel=stem) == model_info(name).ref_params


def test_paper_form_layers():
    model = create_model("googlenet_paper")
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(c.bias is not None for c in convs)
    inceptions = [m for m in model.modules() if isinstance(m, Inception)]
    assert len(inceptions) == 9 and all(m.branch3[1].conv.kernel_size == (5, 5) for m in inceptions)
    lrns = [m for m in model.modules() if isinstance(m, LocalResponseNorm)]
    assert len(lrns) == 2 and model.dropout.p == 0.4 and model.maxpool4.kernel_size == 3
    tv = create_model("googlenet")  # torchvision layout: BN, "5x5" branch with a 3x3 kernel, dropout 0.2
    assert all(m.branch3[1].conv.kernel_size == (3, 3) for m in tv.modules() if isinstance(m, Inception))
    assert not any(isinstance(m, LocalResponseNorm) for m in tv.modules()) and tv.dropout.p == 0.2


def test_paper_lrn_uses_caffe_constants():
    lrn = create_model("googlenet_paper").lrn1
    x = torch.randn(2, 64, 6, 6)
    # bvlc_googlenet: local_size 5, alpha 1e-4, beta 0.75, k 1 in Caffe's convention (alpha / n)
    assert torch.allclose(lrn(x), nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)(x), atol=1e-6)


@pytest.mark.parametrize("name", ["googlenet", "googlenet_paper"])
def test_module_widths_follow_table1_at_224(name):
    with torch.device("meta"):
        model = create_model(name)
    shapes = {}
    for n in INCEPTION_CFG:
        getattr(model, n).register_forward_hook(lambda m, i, o, n=n: shapes.__setitem__(n, o.shape))
    out = model.forward_features(torch.empty(1, 3, 224, 224, device="meta"))
    for n, (c1, _, c3, _, c5, pp) in INCEPTION_CFG.items():
        side = 28 if n.startswith("inception3") else 14 if n.startswith("inception4") else 7
        assert tuple(shapes[n][1:]) == (c1 + c3 + c5 + pp, side, side)
    assert tuple(out.shape) == (1, 1024, 7, 7)


def test_paper_aux_head_pools_5x5_stride_3():
    torch.manual_seed(0)
    head = InceptionAux(512, 10, norm=False, paper_pool=True).eval()
    x = torch.randn(2, 512, 14, 14)
    pooled = F.avg_pool2d(x, 5, 3)  # 14x14 -> 4x4 as in the paper
    hidden = torch.relu(head.fc1(torch.flatten(torch.relu(head.conv.conv(pooled)), 1)))
    with torch.no_grad():
        assert torch.allclose(head(x), head.fc2(hidden), atol=1e-6)
        assert head(torch.randn(2, 512, 3, 3)).shape == (2, 10)  # small maps fall back to adaptive pooling


@pytest.mark.parametrize("name", ["googlenet_cifar", "googlenet_paper_cifar"])
def test_cifar_forms(name):
    base = name.removesuffix("_cifar")
    assert model_info(base).cifar_form == name and model_info(name).ref_num_classes == 10
    with torch.device("meta"):
        model, full = create_model(name), create_model(base)
        assert model.forward_features(torch.empty(2, 3, 32, 32)).shape == (2, 1024, 8, 8)
    assert model.conv1.conv.kernel_size == (3, 3) and model.conv1.conv.stride == (1, 1)
    assert isinstance(model.maxpool1, nn.Identity) and isinstance(model.maxpool2, nn.Identity)
    stem = 64 * 3 * (7 * 7 - 3 * 3)
    fc = (1024 * 1000 + 1000) - (1024 * 10 + 10)
    assert _count(model) == _count(full) - stem - fc == model_info(name).ref_params


def test_cifar_form_loads_imagenet_weights_without_stem_and_fc():
    torch.manual_seed(0)
    state = torchvision.models.googlenet(aux_logits=False, init_weights=True).state_dict()
    body = {k: v for k, v in state.items() if not k.startswith(("conv1.", "fc."))}
    model = create_model("googlenet_cifar")
    report = load_weights(model, body, source="torchvision", strict=False)
    assert sorted(report["missing"]) == sorted(k for k in state if k.startswith(("conv1.", "fc.")))
    assert torch.equal(model.inception4c.branch3[1].conv.weight, state["inception4c.branch3.1.conv.weight"])
