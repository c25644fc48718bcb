"""What each network learned: filters, feature maps, occlusion, Grad-CAM, attention, deconvnet.

The functions take a model and a normalised image batch and return tensors; ``explain_run``
(the ``lenet2vit explain`` command) loads runs and images and writes PNG figures with the raw
maps as ``.npy`` beside them, and ``side_by_side_panel`` gives reports a PNG of several runs on
the same images. See docs/explain.md.
"""

from lenet2vit.explain.attention import (
    all_attention,
    attention_maps,
    attention_modules,
    is_transformer,
    record_attention,
    rollout,
    rollout_map,
)
from lenet2vit.explain.deconv import DeconvResult, deconv, receptive_field
from lenet2vit.explain.methods import (
    ExplainError,
    FeatureMaps,
    default_gradcam_layer,
    feature_maps,
    filters,
    gradcam,
    occlusion,
)

__all__ = [
    "ExplainError",
    "filters",
    "feature_maps",
    "FeatureMaps",
    "occlusion",
    "gradcam",
    "default_gradcam_layer",
    "attention_modules",
    "is_transformer",
    "record_attention",
    "attention_maps",
    "all_attention",
    "rollout",
    "rollout_map",
    "deconv",
    "DeconvResult",
    "receptive_field",
    "explain_run",
    "side_by_side_panel",
]

_LAZY = {"explain_run", "side_by_side_panel"}  # need matplotlib: imported on first use


def __getattr__(name: str):
    if name in _LAZY:
        from lenet2vit.explain import run

        return getattr(run, name)
    raise AttributeError(f"module 'lenet2vit.explain' has no attribute {name!r}")
