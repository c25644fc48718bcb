"""Trains a small model on synthetic data; run alone or under torchrun by test_faults_and_scale.py."""

import sys

import torch

from lenet2vit.data import ImageArrays
from lenet2vit.engine import TrainConfig, train_run


def synthetic(n, seed):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 4
    base = torch.rand(4, 1, 1, 1, generator=torch.Generator().manual_seed(9)) * 255
    images = (base[labels] + torch.randn(n, 1, 32, 32, generator=g) * 30).clamp(0, 255).to(torch.uint8)
    return ImageArrays(images=images, labels=labels.long(), classes=["a", "b", "c", "d"])


if __name__ == "__main__":
    out = sys.argv[1]
    torch.set_num_threads(1)
    cfg = TrainConfig(optimizer="sgd", lr=0.05, momentum=0.9, schedule="onecycle", epochs=2, batch_size=16,
                      amp="fp32", device="cpu", crop_padding=2, flip=True, mean=(0.5,), std=(0.5,), seed=5)
    train_run("lenet5", out=out, cfg=cfg, data=(synthetic(64, 1), synthetic(16, 2), synthetic(16, 3)), progress=False)
