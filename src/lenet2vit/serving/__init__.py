"""Use a trained run: predict on image files, export to ONNX / TorchScript, serve a web app.

* :func:`predict_files` / :class:`Predictor`: top-k classes for images with the run's own
  preprocessing (``lenet2vit predict``).
* :func:`export_run`: a standalone ONNX or TorchScript file, checked against PyTorch
  (``lenet2vit export``).
* :func:`create_app`: a FastAPI app with one HTML page and a JSON API (``lenet2vit serve``).

FastAPI and uvicorn are only imported by :func:`create_app` and ``lenet2vit serve``, onnx and
onnxruntime only by ONNX export, so prediction needs neither.
"""

from lenet2vit.serving.export import ExportResult, export_model, export_run, read_export_config
from lenet2vit.serving.predict import (
    IMAGE_EXTENSIONS,
    Predictor,
    Preprocess,
    ServingError,
    find_images,
    format_predictions,
    open_image,
    predict_files,
    save_run,
)

__all__ = [
    "ServingError",
    "Predictor",
    "Preprocess",
    "IMAGE_EXTENSIONS",
    "find_images",
    "open_image",
    "predict_files",
    "format_predictions",
    "save_run",
    "ExportResult",
    "export_model",
    "export_run",
    "read_export_config",
    "create_app",
]


def create_app(*args, **kwargs):
    """The web app; see :func:`lenet2vit.serving.app.create_app` (imported lazily: needs FastAPI)."""
    from lenet2vit.serving.app import create_app as _create_app

    return _create_app(*args, **kwargs)
