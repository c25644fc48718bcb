"""lenet2vit: the milestone image classifiers, from LeNet-5 to the Vision Transformer.

Faithful, verified implementations; one-command training and evaluation; controlled
side-by-side comparisons; and views into what each network learned.
"""

from lenet2vit.registry import (
    Count,
    ModelInfo,
    UnknownModelError,
    create_model,
    list_models,
    model_info,
    register_model,
    resolve_model_name,
)
from lenet2vit.weights import load_weights

__version__ = "0.1.0"

__all__ = [
    "Count",
    "ModelInfo",
    "UnknownModelError",
    "create_model",
    "list_models",
    "model_info",
    "register_model",
    "resolve_model_name",
    "load_weights",
    "__version__",
]
