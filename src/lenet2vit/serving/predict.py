"""Predict with a trained run: image files in, top-k classes with probabilities out.

Every run folder stores its own preprocessing (stored and input size, mean/std, channel count)
and class names, so a prediction needs nothing but the run. The image file is decoded and
turned into the network's input by the same code as the run's data set
(:class:`lenet2vit.data.Preprocess`), so predict sees what eval sees. :class:`Predictor` holds a
loaded model with its preprocessing; :func:`predict_files` walks files and folders, predicts
every readable image and reports unreadable ones per file.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import torch
import torch.nn as nn
from PIL import Image, UnidentifiedImageError

from lenet2vit.data import IMAGE_EXTENSIONS, Preprocess, decode_image_bytes
from lenet2vit.engine.run_folder import RunError, load_run, run_preprocess, save_run

__all__ = [
    "ServingError",
    "IMAGE_EXTENSIONS",
    "IMAGE_FORMATS",
    "MAX_IMAGE_PIXELS",
    "Preprocess",
    "Predictor",
    "open_image",
    "find_images",
    "predict_files",
    "format_predictions",
    "save_run",
]

# Decoders PIL may use: the common raster formats only (PIL's EPS plugin, for one, runs
# Ghostscript, which a server must never do on an uploaded file).
IMAGE_FORMATS = ("JPEG", "PNG", "BMP", "GIF", "WEBP", "TIFF", "PPM")

# Largest decoded image accepted (width * height): a small compressed file can expand to
# gigabytes of pixels (a "decompression bomb"); 40 MP is a 7300 x 5500 photo.
MAX_IMAGE_PIXELS = 40_000_000


class ServingError(RunError):
    """A prediction, export or serving request that cannot be done as asked; the message says what to do.

    ``status`` is the HTTP status the web app answers with (400 unless a more exact one fits).
    """

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


# ----------------------------------------------------------------------------- images


def open_image(source: str | os.PathLike | bytes, *, max_pixels: int = MAX_IMAGE_PIXELS) -> torch.Tensor:
    """Decode an image file (or its bytes) into a uint8 ``(3, H, W)`` RGB tensor, upright.

    The file's header is read first: only the common raster formats are accepted and the
    image's size is checked against ``max_pixels`` before anything is decoded, so a tiny file
    that expands to an enormous image is refused instead of exhausting memory. The pixels then
    come from the data sets' own decoder (EXIF rotation applied), so predict and serve see
    what eval sees. Anything wrong raises :class:`ServingError`.
    """
    name = "upload" if isinstance(source, (bytes, bytearray)) else str(source)
    if isinstance(source, (bytes, bytearray)) and not source:
        raise ServingError("empty file; send a JPEG, PNG, BMP, GIF, WebP or TIFF image")
    try:
        data = bytes(source) if isinstance(source, (bytes, bytearray)) else Path(source).read_bytes()
    except OSError as e:
        raise ServingError(f"{name}: cannot read ({e.strerror or e})") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as img:  # the header only
                if img.width * img.height > max_pixels:
                    raise ServingError(
                        f"{name}: image is {img.width}x{img.height} pixels, more than the {max_pixels:,} accepted; "
                        "downscale it first", status=413,
                    )
                img.load()  # a truncated or corrupt file fails here, whatever the decoder below forgives
    except ServingError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError) as e:
        raise ServingError(f"{name}: not an image PIL can read ({type(e).__name__}); "
                           "use JPEG, PNG, BMP, GIF, WebP or TIFF", status=415) from None
    except (OSError, ValueError, SyntaxError, EOFError) as e:  # truncated or corrupt data
        raise ServingError(f"{name}: image data is damaged ({e})") from None
    try:
        return decode_image_bytes(data)
    except ValueError as e:
        raise ServingError(f"{name}: image data is damaged ({e})") from None


def find_images(paths: Iterable[str | os.PathLike]) -> list[tuple[Path, str | None]]:
    """Expand files and folders into image files, in the order given: ``[(path, problem), ...]``.

    Folders are walked recursively (sorted, hidden entries skipped) and give the files whose
    extension is in :data:`IMAGE_EXTENSIONS`. Files named explicitly are kept whatever their
    extension (they are tried, and reported if unreadable). ``problem`` is None for a file to
    predict, else a message: the path does not exist, or the folder holds no images.
    """
    out: list[tuple[Path, str | None]] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = []
            for root, dirs, files in os.walk(p):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                found += [Path(root) / f for f in sorted(files)
                          if not f.startswith(".") and f.lower().endswith(IMAGE_EXTENSIONS)]
            if not found:
                out.append((p, "folder holds no image files (" + ", ".join(IMAGE_EXTENSIONS[:5]) + ", ...)"))
            out += [(f, None) for f in found]
        elif p.is_file():
            out.append((p, None))
        else:
            out.append((p, "no such file or folder"))
    return out


# ----------------------------------------------------------------------------- the model


@dataclass
class Predictor:
    """A trained model ready to predict: the network, its preprocessing and its class names.

    Build one from a run folder with :meth:`from_run`. ``name`` labels the model in tables
    and in the web app (the run folder's name by default).
    """

    model: nn.Module
    preprocess: Preprocess
    classes: list[str]
    name: str = "model"
    config: dict = field(default_factory=dict)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @classmethod
    def from_run(cls, run: str | os.PathLike, device: str | torch.device = "cpu", name: str | None = None) -> "Predictor":
        """Load a run folder (or its ``best.safetensors``) for prediction on ``device``."""
        from lenet2vit.runtime import resolve_device

        try:
            dev = resolve_device(str(device))
        except RuntimeError as e:  # torch.device() of a malformed name
            raise ServingError(f"unknown device {str(device)!r} ({e}); use cpu, cuda, cuda:1, mps or auto") from None
        model, config = load_run(run, device=dev)
        path = Path(run)
        label = name or (path.name if path.is_dir() else path.parent.name) or config["model"]
        return cls(model.eval(), run_preprocess(config), list(config["classes"]), label, config, dev)

    @property
    def arch(self) -> str:
        """The registered architecture name (e.g. ``resnet18_cifar``)."""
        return self.config.get("model", type(self.model).__name__)

    @torch.inference_mode()
    def probabilities(self, batch: torch.Tensor) -> torch.Tensor:
        """Class probabilities ``(B, num_classes)`` for a preprocessed batch ``(B, C, S, S)``."""
        logits = self.model(batch.to(self.device))
        if isinstance(logits, (tuple, list)):  # e.g. auxiliary heads: keep the main output
            logits = logits[0]
        return logits.float().softmax(-1).cpu()

    def topk(self, probs: torch.Tensor, k: int = 5) -> list[list[dict]]:
        """Rows of ``{"class", "index", "probability"}``, most likely first, for each row of ``probs``."""
        k = max(1, min(k, probs.shape[-1]))
        values, indices = probs.topk(k, dim=-1)
        return [
            [{"class": self.classes[i], "index": int(i), "probability": float(v)} for v, i in zip(vs.tolist(), ix.tolist())]
            for vs, ix in zip(values, indices)
        ]

    def predict_images(self, images: Sequence[torch.Tensor | Image.Image], k: int = 5) -> list[list[dict]]:
        """Top-``k`` for each image: a uint8 ``(C, H, W)`` tensor (:func:`open_image`) or a PIL image."""
        if not images:
            return []
        batch = torch.stack([self.preprocess(im) for im in images])
        return self.topk(self.probabilities(batch), k)


# ----------------------------------------------------------------------------- files


def predict_files(
    run: str | os.PathLike | Predictor,
    paths: Iterable[str | os.PathLike],
    *,
    k: int = 5,
    batch_size: int = 64,
    device: str = "cpu",
) -> list[dict]:
    """Top-``k`` predictions for image files and folders, one result per file in walk order.

    Each result is ``{"path", "top": [{"class", "index", "probability"}, ...]}``, or
    ``{"path", "error"}`` for a file that could not be read; one bad file never stops the
    others. ``run`` is a run folder or a loaded :class:`Predictor`.
    """
    if batch_size < 1:
        raise ServingError(f"batch size must be >= 1, got {batch_size}")
    predictor = run if isinstance(run, Predictor) else Predictor.from_run(run, device=device)
    results: list[dict] = []
    pending: list[tuple[dict, torch.Tensor]] = []

    def flush() -> None:
        if pending:
            tops = predictor.topk(predictor.probabilities(torch.stack([x for _, x in pending])), k)
            for (row, _), top in zip(pending, tops):
                row["top"] = top
            pending.clear()

    for path, problem in find_images(paths):
        row: dict = {"path": str(path)}
        results.append(row)
        if problem:
            row["error"] = problem
            continue
        try:
            pending.append((row, predictor.preprocess(open_image(path))))
        except ServingError as e:
            row["error"] = str(e).removeprefix(f"{path}: ")
        if len(pending) >= batch_size:
            flush()
    flush()
    return results


def format_predictions(results: list[dict], k: int = 5) -> str:
    """A plain-text table: one block per file, its top-k classes with probabilities and bars."""
    lines = []
    for row in results:
        if "error" in row:
            lines.append(f"{row['path']}: error: {row['error']}")
            continue
        lines.append(row["path"])
        width = max(len(t["class"]) for t in row["top"][:k])
        for rank, t in enumerate(row["top"][:k], 1):
            bar = "#" * round(t["probability"] * 20)
            lines.append(f"  {rank}. {t['class']:<{width}}  {t['probability']:7.2%}  {bar}")
    return "\n".join(lines)
