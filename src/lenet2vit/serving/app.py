"""A small web app around trained runs: upload an image, compare models, see where they look.

``create_app(["runs/r18", "runs/vit"])`` returns a FastAPI application with

* ``GET /``: one HTML page with plain JavaScript (no front-end framework): drop or choose an
  image, tick models, and see each model's top-5 as bars next to its explanation map.
* ``GET /api/models``: the loaded models (id, architecture, classes, input size).
* ``POST /api/predict``: multipart form with the image in ``file``, optional ``models``
  (ids, repeated or comma-separated; default all), ``topk`` (default 5) and ``explain``
  (``1`` to add each model's explanation map as a PNG data URL). Returns per-model top-k
  classes and probabilities: the same numbers as ``lenet2vit predict``.

Bad requests (no file, an empty file, a file that is not an image, a body over the size
limit, a non-multipart body, an unknown model) get a 4xx JSON ``{"error": "..."}`` whose
message says what to do, and the server goes on serving. Each model runs under its own lock:
explanations attach hooks to the model for the length of one call.

The explanation is produced by :func:`explain_map`, which uses ``lenet2vit.explain``
(attention rollout for transformers, Grad-CAM otherwise) when that package is installed and
shows no map when it is not; pass ``explainer=`` to :func:`create_app` to swap it.
"""

from __future__ import annotations

import base64
import importlib
import io
import os
import threading
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from PIL import Image
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

import lenet2vit
from lenet2vit.serving.predict import MAX_IMAGE_PIXELS, Predictor, ServingError, open_image

__all__ = ["create_app", "load_models", "explain_map", "Explainer", "ServedModel", "DEFAULT_MAX_UPLOAD_MB",
           "predict_upload"]

DEFAULT_MAX_UPLOAD_MB = 10.0
DISPLAY_SIZE = 224  # side of the explanation overlay sent to the page, in pixels
MULTIPART_SLACK = 64 * 1024  # form boundaries and small fields around the file
GENERIC_TYPES = ("application/octet-stream", "binary/octet-stream")  # "type unknown": decided by content

# (model, x (1, C, S, S), target class) -> (method name, (h, w) map) or None for "no map".
Explainer = Callable[[torch.nn.Module, torch.Tensor, int], "tuple[str, torch.Tensor] | None"]


def _explain_function(name: str):
    """``lenet2vit.explain.<name>``, or None when the explain package is not installed."""
    try:
        return getattr(importlib.import_module("lenet2vit.explain"), name, None)
    except ImportError:
        return None


def explain_map(model: torch.nn.Module, x: torch.Tensor, target: int) -> tuple[str, torch.Tensor] | None:
    """The default explanation: attention rollout for transformers, Grad-CAM for the rest.

    ``x`` is one preprocessed image ``(1, C, S, S)`` and ``target`` the class to explain
    (rollout ignores it). Returns ``(method, map)`` with an ``(h, w)`` map of any scale, or
    ``None`` when ``lenet2vit.explain`` is not installed.
    """
    is_transformer, rollout_map = _explain_function("is_transformer"), _explain_function("rollout_map")
    if is_transformer is not None and rollout_map is not None and is_transformer(model):
        return "attention rollout", rollout_map(model, x, size=x.shape[-1])
    gradcam = _explain_function("gradcam")
    if gradcam is None:
        return None
    return "Grad-CAM", gradcam(model, x, target=target)


@dataclass
class ServedModel:
    """One loaded run in the app: its id in the API, the predictor and a lock for its hooks."""

    id: str
    predictor: Predictor
    run: str
    lock: threading.Lock = field(default_factory=threading.Lock)

    def describe(self) -> dict:
        cfg = self.predictor.config
        return {
            "id": self.id, "model": self.predictor.arch, "family": cfg.get("family"), "run": self.run,
            "classes": self.predictor.classes, "input_size": self.predictor.preprocess.input_size,
            "in_chans": self.predictor.preprocess.in_chans,
        }


def _overlay_png(crop: torch.Tensor, heat: torch.Tensor) -> str:
    """The explanation map in colour over the network's view of the image (uint8 ``(C, S, S)``), as a PNG data URL."""
    from matplotlib import colormaps

    h = heat.detach().float().cpu()
    h = torch.nan_to_num(h - h.min())
    h = h / h.max() if h.max() > 0 else h
    crop = Image.fromarray(np.ascontiguousarray(crop.expand(3, -1, -1).permute(1, 2, 0).numpy()))  # grey: shown grey
    side = max(crop.width, DISPLAY_SIZE)
    heat_img = Image.fromarray(np.uint8(h.numpy() * 255)).resize((side, side), Image.Resampling.BILINEAR)
    colour = colormaps["jet"](np.asarray(heat_img) / 255.0)[..., :3]  # (side, side, 3) in [0, 1]
    base = np.asarray(crop.resize((side, side), Image.Resampling.BICUBIC), dtype=np.float32) / 255
    blend = np.uint8(np.clip(0.55 * base + 0.45 * colour, 0, 1) * 255)
    buf = io.BytesIO()
    Image.fromarray(blend).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def predict_upload(
    served: Sequence[ServedModel],
    image: torch.Tensor,
    *,
    k: int = 5,
    explain: bool = False,
    explainer: Explainer | None = explain_map,
) -> list[dict]:
    """Top-``k`` of each served model for one decoded image (uint8 ``(3, H, W)``, as :func:`open_image`
    gives), with its explanation map if asked.

    Each result is ``{"id", "model", "top": [...], "explanation": {"method", "target",
    "image"} | None}``; an explanation that fails leaves ``explanation`` None and puts the
    reason in ``explanation_error`` rather than failing the prediction.
    """
    out = []
    for sm in served:
        p = sm.predictor
        x = p.preprocess(image).unsqueeze(0)
        with sm.lock:
            top = p.topk(p.probabilities(x), k)[0]
            row: dict = {"id": sm.id, "model": p.arch, "top": top, "explanation": None}
            if explain and explainer is not None:
                try:
                    got = explainer(p.model, x.to(p.device), top[0]["index"])
                    if got is not None:
                        method, heat = got
                        row["explanation"] = {"method": method, "target": top[0]["class"],
                                              "image": _overlay_png(p.preprocess.crop(image), heat)}
                except Exception as e:  # a broken map must not cost the user the prediction
                    row["explanation_error"] = f"{type(e).__name__}: {e}"
        out.append(row)
    return out


def _unique_ids(runs: Sequence[str | os.PathLike]) -> list[str]:
    ids: list[str] = []
    for r in runs:
        p = Path(r)
        base = (p.name if p.is_dir() else p.parent.name or p.stem) or "model"
        name, n = base, 2
        while name in ids:
            name, n = f"{base}-{n}", n + 1
        ids.append(name)
    return ids


def load_models(runs: Sequence[str | os.PathLike], device: str = "cpu") -> list[ServedModel]:
    """Load every run for serving; ids are the run folder names, made unique with ``-2``, ``-3``..."""
    if not runs:
        raise ServingError("no run given; pass one or more run folders, e.g. `lenet2vit serve runs/r18,runs/vit`")
    return [ServedModel(i, Predictor.from_run(r, device=device, name=i), str(r)) for i, r in zip(_unique_ids(runs), runs)]


def _page() -> tuple[str, int]:
    """The HTML page, or a short error page when the installation lacks it."""
    try:
        return resources.files("lenet2vit.serving").joinpath("static/index.html").read_text(encoding="utf-8"), 200
    except (FileNotFoundError, OSError):
        return ("<!doctype html><title>lenet2vit</title><p>The page file lenet2vit/serving/static/index.html is "
                "missing from this installation; reinstall lenet2vit. The JSON API (POST /api/predict) works.</p>", 500)


_PREDICT_DOC = {
    "requestBody": {
        "required": True,
        "content": {"multipart/form-data": {"schema": {
            "type": "object", "required": ["file"],
            "properties": {
                "file": {"type": "string", "format": "binary", "description": "JPEG, PNG, BMP, GIF, WebP or TIFF"},
                "models": {"type": "string", "description": "model ids, comma-separated (default: all)"},
                "topk": {"type": "integer", "default": 5},
                "explain": {"type": "boolean", "default": False, "description": "add explanation maps"},
            },
        }}},
    }
}


class _Rejected(Exception):
    """A request answered with an HTTP error and one message that says what to send instead."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


async def _read_body(request: Request, limit: int, max_upload_mb: float) -> bytes:
    """The whole request body, refused with 415 unless multipart and with 413 past the limit."""
    ctype = request.headers.get("content-type", "")
    if not ctype.lower().startswith("multipart/form-data"):
        raise _Rejected(415, f"expected a multipart/form-data upload with the image in field 'file', "
                             f"got {ctype.split(';')[0] or 'no content type'}")
    too_big = f"upload is larger than the {max_upload_mb:g} MB limit; send a smaller image"
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit + MULTIPART_SLACK:
        raise _Rejected(413, too_big)
    body = bytearray()
    async for chunk in request.stream():  # bounded even when no content-length is sent
        body += chunk
        if len(body) > limit + MULTIPART_SLACK:
            raise _Rejected(413, too_big)
    return bytes(body)


def _replay(body: bytes):
    async def receive() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


async def _read_form(form, by_id: dict, served: list, limit: int, max_upload_mb: float) -> dict:
    """What the upload asks for: the image bytes, the models, top-k, whether to explain, the file name."""
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise _Rejected(400, "no file in the upload; send the image in the multipart field 'file'")
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise _Rejected(413, f"upload is larger than the {max_upload_mb:g} MB limit; send a smaller image")
    if not data:
        raise _Rejected(400, f"{upload.filename or 'upload'} is empty; choose an image file")
    declared_type = (upload.content_type or "").split(";")[0].strip().lower()
    if declared_type and not declared_type.startswith("image/") and declared_type not in GENERIC_TYPES:
        raise _Rejected(415, f"{upload.filename or 'upload'} is {declared_type}, not an image; "
                             "choose a JPEG, PNG, BMP, GIF, WebP or TIFF file")
    wanted = [m.strip() for v in form.getlist("models") if isinstance(v, str) for m in v.split(",") if m.strip()]
    unknown = [m for m in wanted if m not in by_id]
    if unknown:
        raise _Rejected(404, f"unknown model {', '.join(map(repr, unknown))}; choose from {', '.join(by_id)}")
    try:
        k = int(form.get("topk") or 5)
    except (TypeError, ValueError):
        raise _Rejected(400, f"topk must be a whole number, got {form.get('topk')!r}") from None
    if k < 1:
        raise _Rejected(400, f"topk must be >= 1, got {k}")
    return {"data": data, "chosen": [by_id[m] for m in dict.fromkeys(wanted)] or served, "k": k,
            "explain": str(form.get("explain") or "").lower() in ("1", "true", "yes", "on"),
            "filename": upload.filename or "upload"}


def create_app(
    runs: Sequence[str | os.PathLike] | Sequence[ServedModel],
    *,
    device: str = "cpu",
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
    max_pixels: int = MAX_IMAGE_PIXELS,
    explainer: Explainer | None = explain_map,
):
    """The FastAPI app serving ``runs`` (run folders, or models already loaded with :func:`load_models`).

    ``max_upload_mb`` caps the request body (default 10 MB) and ``max_pixels`` the decoded
    image; ``explainer`` makes the explanation maps (``None``: never). Run it with any ASGI
    server, e.g. ``uvicorn.run(create_app(["runs/r18"]), host="127.0.0.1", port=8000)``.
    """
    if max_upload_mb <= 0:
        raise ServingError(f"upload limit must be > 0 MB, got {max_upload_mb}")
    served = list(runs) if runs and all(isinstance(r, ServedModel) for r in runs) else load_models(runs, device)
    by_id = {s.id: s for s in served}
    limit = int(max_upload_mb * 1024 * 1024)
    page, page_status = _page()
    app = FastAPI(title="lenet2vit", description="Predictions and explanation maps of trained lenet2vit runs.",
                  version=lenet2vit.__version__)
    app.state.models = served
    app.state.max_upload_bytes = limit

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> HTMLResponse:
        return HTMLResponse(page, status_code=page_status)

    @app.get("/api/models")
    def api_models() -> dict:
        """The loaded models and the upload limit."""
        return {"models": [s.describe() for s in served], "max_upload_mb": max_upload_mb}

    @app.post("/api/predict", openapi_extra=_PREDICT_DOC)
    async def api_predict(request: Request):
        """Top-k classes of each chosen model for one uploaded image (multipart field ``file``)."""
        try:
            body = await _read_body(request, limit, max_upload_mb)
            try:
                form = await Request(request.scope, _replay(body)).form(max_files=1, max_fields=16)
            except Exception as e:  # malformed multipart body
                raise _Rejected(400, f"could not parse the upload ({e}); send multipart/form-data with the image "
                                     "in 'file'") from None
            try:
                ask = await _read_form(form, by_id, served, limit, max_upload_mb)
            finally:
                await form.close()
            try:
                image = await run_in_threadpool(open_image, ask["data"], max_pixels=max_pixels)
            except ServingError as e:
                raise _Rejected(e.status, f"{ask['filename']}: {str(e).removeprefix('upload: ')}") from None
        except _Rejected as e:
            return error(e.status, e.message)
        results = await run_in_threadpool(predict_upload, ask["chosen"], image, k=ask["k"], explain=ask["explain"],
                                          explainer=explainer)
        return {"filename": ask["filename"], "width": int(image.shape[-1]), "height": int(image.shape[-2]),
                "results": results}

    return app
