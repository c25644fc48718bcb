"""The recipes for short runs learn: one model of every family, 2 epochs of `quick` on the digits,
and the default `fast` (SGD) on the networks without normalisation.

These are the models `lenet2vit compare` trains with no arguments (the main job), so this is
also the main job's promise: every family ends at least twice as good as chance (10%), on the
main job's own 900 images. Most end far above it (GoogLeNet 95%, LeNet-5 84%, the hybrid 82%);
ViT-Ti, which learns slowest from few images, ends near 28%.
"""

from __future__ import annotations

import pytest

from lenet2vit.data import load_train_val_test
from lenet2vit.engine import get_preset, train_run
from lenet2vit.experiment.study import STUDIES
from lenet2vit.registry import model_info

MAIN_JOB = STUDIES["quick"].models


def test_the_main_job_has_one_model_of_every_family():
    families = {model_info(m).family.split(" ")[0] for m in MAIN_JOB}
    assert families == {"LeNet", "AlexNet", "VGG", "GoogLeNet", "ResNet", "MobileNet", "EfficientNet", "ViT", "Hybrid"}


@pytest.fixture(scope="module")
def digits():
    return load_train_val_test("digits", None, limit=get_preset("quick").limit, progress=False)  # as the main job


@pytest.mark.slow
@pytest.mark.parametrize("model", MAIN_JOB)
def test_two_epochs_of_quick_end_well_above_chance(tmp_path, digits, model):
    cfg = get_preset("quick").replace(device="cpu")  # `lenet2vit train MODEL --preset quick --dataset digits`
    lines = []
    res = train_run(model, out=tmp_path / model, cfg=cfg, dataset="digits", data=digits, progress=False,
                    log=lines.append)
    assert res["test_top1"] > 0.2, (model, res["test_top1"], [h["train_loss"] for h in res["history"]], lines)
    assert res["history"][-1]["train_loss"] < res["history"][0]["train_loss"]  # it learned, it did not diverge


@pytest.mark.slow
@pytest.mark.parametrize("model", ["alexnet_cifar", "vgg11_cifar"])
def test_the_default_sgd_recipe_trains_the_networks_without_normalisation(tmp_path, digits, model):
    # `lenet2vit train MODEL --dataset digits --limit 900 --epochs 2`: the default preset, fast (SGD).
    # These sat at loss 2.303 (10%) before He's init of the CIFAR forms and fast's gradient clip for plain nets.
    cfg = get_preset("fast").replace(device="cpu", epochs=2, limit=900)
    lines = []
    res = train_run(model, out=tmp_path / model, cfg=cfg, dataset="digits", data=digits, progress=False,
                    log=lines.append)
    assert any("gradient norm clipped at 2" in line for line in lines), lines
    assert res["test_top1"] > 0.2, (model, res["test_top1"], [h["train_loss"] for h in res["history"]], lines)
    assert res["history"][-1]["train_loss"] < res["history"][0]["train_loss"]
