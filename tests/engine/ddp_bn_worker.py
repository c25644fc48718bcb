"""A net with BatchNorm and dropout, trained under augmentation; run alone or under torchrun.

Each rank writes the weights and buffers its replica ends with (rank<r>.safetensors), so the
test can check what docs/distributed.md promises for such a net.
"""

import os
import sys

import torch
import torch.nn as nn
from safetensors.torch import save_file

from lenet2vit.engine import TrainConfig, train_run
from lenet2vit.registry import Count, register_model

sys.path.insert(0, os.path.dirname(__file__))
from ddp_worker import synthetic  # noqa: E402


class BNDropoutNet(nn.Module):
    def __init__(self, num_classes=4, in_chans=1):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(in_chans, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                      nn.MaxPool2d(4), nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Sequential(nn.Dropout(0.5), nn.Linear(16, num_classes))

    def forward(self, x):
        return self.head(self.features(x))


@register_model(family="Test", paper="test", year=2000, input_size=32, params=Count.published(1_588, "arithmetic"),
                ref_num_classes=4, in_chans=1)
def bn_dropout_net(num_classes=4, in_chans=1, **kw):
    """BN and dropout."""
    return BNDropoutNet(num_classes, in_chans)


replicas = []
_init = torch.nn.parallel.DistributedDataParallel.__init__


def _keep(self, module, *args, **kwargs):  # note each rank's replica, to write it at the end
    _init(self, module, *args, **kwargs)
    replicas.append(module)


torch.nn.parallel.DistributedDataParallel.__init__ = _keep

if __name__ == "__main__":
    out = sys.argv[1]
    torch.set_num_threads(1)
    cfg = TrainConfig(optimizer="sgd", lr=0.05, momentum=0.9, schedule="onecycle", epochs=3, batch_size=16,
                      amp="fp32", device="cpu", crop_padding=2, flip=True, mean=(0.5,), std=(0.5,), seed=5)
    train_run("bn_dropout_net", out=out, cfg=cfg, data=(synthetic(96, 1), synthetic(16, 2), synthetic(16, 3)),
              progress=False)
    if replicas:
        state = {k: v.detach().contiguous() for k, v in replicas[0].state_dict().items()}
        save_file(state, os.path.join(out, f"rank{os.environ['RANK']}.safetensors"))
