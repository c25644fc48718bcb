"""torch.hub entry points: every registered lenet2vit model, by its registry name.

    import torch
    model = torch.hub.load("path/to/lenet2vit", "resnet18_cifar", source="local", num_classes=10)
    model = torch.hub.load("path/to/lenet2vit", "resnet50", source="local", pretrained=True)  # torchvision's weights

Keyword arguments go to :func:`lenet2vit.create_model` (``num_classes``, ``in_chans``, the
family's own such as ``img_size``). ``pretrained=True`` loads the published ImageNet weights of
the model's reference (torchvision's or timm's, through their caches), as ``--pretrained
imagenet`` does; a new class count keeps them for every layer but the classifier.
"""

import os as _os
import sys as _sys

dependencies = ["torch", "torchvision", "safetensors"]

_SRC = _os.path.join(_os.path.dirname(_os.path.abspath(__file__)), "src")
if _os.path.isdir(_SRC) and _SRC not in _sys.path:  # a checkout that is not installed
    _sys.path.insert(0, _SRC)

from lenet2vit.registry import create_model as _create_model  # noqa: E402
from lenet2vit.registry import list_models as _list_models  # noqa: E402
from lenet2vit.registry import model_info as _model_info  # noqa: E402


def _entry(name: str):
    def build(pretrained: bool = False, **kwargs):
        model = _create_model(name, **kwargs)
        if pretrained:
            from lenet2vit.weights import load_weights, published_state_dict

            state, _, source = published_state_dict(name, "imagenet")
            load_weights(model, state, source=source, skip_classifier=True)
        return model

    build.__name__ = build.__qualname__ = name
    info = _model_info(name)
    build.__doc__ = f"{info.description} ({info.family}, {info.year}; {info.ref_params:,} parameters)"
    return build


for _name in _list_models():
    globals()[_name] = _entry(_name)
