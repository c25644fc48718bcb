"""The default recipe learns: one model of every family, 2 epochs of `fast` on the bundled digits."""

from __future__ import annotations

import pytest

from lenet2vit.data import load_train_val_test
from lenet2vit.engine import get_preset, train_run

# One small form per family, as `compare` with no arguments trains them.
FAMILIES = {
    "LeNet": "lenet5", "AlexNet": "alexnet_cifar", "ZFNet": "zfnet_cifar", "VGG": "vgg11_bn_cifar",
    "GoogLeNet": "googlenet_cifar", "ResNet": "resnet20", "MobileNet": "mobilenet_v2_cifar",
    "EfficientNet": "efficientnet_b0_cifar", "ViT": "vit_ti_16_cifar", "Hybrid": "r18_vit_ti_cifar",
}


@pytest.fixture(scope="module")
def digits():
    return load_train_val_test("digits", None, progress=False)


@pytest.mark.slow
@pytest.mark.parametrize("model", list(FAMILIES.values()), ids=list(FAMILIES))
def test_two_epochs_of_the_default_preset_end_well_above_chance(tmp_path, digits, model):
    cfg = get_preset("fast").replace(epochs=2, device="cpu")  # `lenet2vit train MODEL --epochs 2`, unchanged
    res = train_run(model, out=tmp_path / model, cfg=cfg, data=digits, progress=False, log=lambda s: None)
    assert res["best_val_top1"] > 0.3 and res["test_top1"] > 0.3, (model, res["best_val_top1"], res["test_top1"])
    assert all(h["train_loss"] < 2.5 for h in res["history"])  # never diverged (chance: ln 10 = 2.30)
