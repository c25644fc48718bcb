"""Export a trained run to a standalone model file: ONNX or TorchScript.

The exported graph takes a normalised float batch ``(batch, C, S, S)`` named ``image`` with a
dynamic batch dimension and returns ``logits`` ``(batch, num_classes)``. The run's
preprocessing and class names travel inside the file (ONNX ``metadata_props`` /
TorchScript extra file ``config.json``), so the file alone is enough to deploy.

ONNX is written by the TorchScript-based exporter (``torch.onnx.export(dynamo=False)``:
several times faster) and, when it meets an operator it cannot translate (the antialiased
bicubic position-embedding resize of a ViT run at a size other than its native one), by the
``torch.export``-based exporter (``dynamo=True``). Every export is checked: the file is run
on random batches of 1 and 3 images (onnxruntime for ONNX) and compared with PyTorch; the
largest absolute difference of the logits is reported, and an export that differs by more
than ``tolerance`` is an error.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from lenet2vit.engine.checkpoint import atomic_write
from lenet2vit.engine.run_folder import RunError, load_run, run_preprocess
from lenet2vit.serving.predict import ServingError

__all__ = ["FORMATS", "EXPORTERS", "ExportResult", "export_model", "export_run", "check_export", "read_export_config"]

FORMATS = {"onnx": ".onnx", "torchscript": ".pt"}  # format -> default file suffix
EXPORTERS = ("auto", "legacy", "dynamo")  # ONNX: legacy = TorchScript-based, dynamo = torch.export-based
CHECK_BATCHES = (1, 3)  # the batch sizes every export is run at (the batch dimension is dynamic)
CONFIG_KEYS = ("model", "num_classes", "in_chans", "input_size", "mean", "std", "classes")


@dataclass
class ExportResult:
    """What :func:`export_run` wrote: the file, how, and how closely it matches PyTorch.

    ``max_abs_diff`` is the largest absolute logit difference over the check batches
    (``None`` when the check was skipped) and ``max_abs_logit`` the largest logit, for scale.
    """

    path: str
    format: str
    exporter: str
    max_abs_diff: float | None = None
    max_abs_logit: float | None = None
    batches: list[int] = field(default_factory=list)
    opset: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)


class _MainOutput(nn.Module):
    """Keep only the main logits of models that return a tuple (e.g. auxiliary heads)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        return out[0] if isinstance(out, (tuple, list)) else out


@contextlib.contextmanager
def _quiet():
    # The exporters print progress and warn about tracing Python conditionals on shapes, all
    # of which are constants for a fixed input size; keep the command's output to its figures.
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def _config_subset(config: dict) -> dict:
    """What a consumer of the file needs to feed it: the run's preprocessing and classes.

    ``stored_size`` is the square the run's data set stored images at before the loader
    resized them to ``input_size`` (see :class:`lenet2vit.data.Preprocess`).
    """
    out = {k: config[k] for k in CONFIG_KEYS if k in config}
    try:
        pre = run_preprocess(config)
        out["stored_size"] = pre.stored_size or pre.input_size
    except RunError:
        pass
    return out


def _export_onnx(model: nn.Module, x: torch.Tensor, path: Path, exporter: str, opset: int | None, config: dict) -> tuple[str, int]:
    try:
        import onnx
    except ImportError:
        raise ServingError("ONNX export needs the onnx package: pip install 'lenet2vit[export]'") from None
    names = dict(input_names=["image"], output_names=["logits"])

    def legacy(tmp: str) -> None:
        torch.onnx.export(model, (x,), tmp, dynamo=False, opset_version=opset or 17,
                          dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}}, **names)

    def dynamo(tmp: str) -> None:
        from torch.export import Dim

        prog = torch.onnx.export(model, (x,), dynamo=True, opset_version=opset,
                                 dynamic_shapes=({0: Dim("batch", min=1, max=4096)},), **names)
        prog.save(tmp, external_data=False)

    tries = {"legacy": [legacy], "dynamo": [dynamo], "auto": [legacy, dynamo]}[exporter]
    errors = []
    for fn in tries:
        try:
            with _quiet():
                atomic_write(path, fn)
            used = fn.__name__
            break
        except torch.onnx.errors.UnsupportedOperatorError as e:
            errors.append(f"{fn.__name__}: {str(e).splitlines()[0]}")
        except Exception as e:  # the exporters raise many types; report the first line
            if isinstance(e, ServingError):
                raise
            errors.append(f"{fn.__name__}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    else:
        raise ServingError(f"ONNX export failed ({'; '.join(errors)}); try --format torchscript or --exporter dynamo")
    proto = onnx.load(str(path))
    meta = {"lenet2vit": json.dumps(_config_subset(config)), "exporter": used}
    for k, v in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    atomic_write(path, lambda tmp: onnx.save(proto, tmp))
    return used, int(next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")))


def _export_torchscript(model: nn.Module, x: torch.Tensor, path: Path, config: dict) -> str:
    with _quiet(), torch.no_grad():
        traced = torch.jit.trace(model, x, check_trace=False)
        extra = {"config.json": json.dumps(_config_subset(config))}
        atomic_write(path, lambda tmp: torch.jit.save(traced, tmp, _extra_files=extra))
    return "trace"


def _run_export(path: Path, fmt: str, batch: torch.Tensor):
    if fmt == "onnx":
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = torch.get_num_threads()  # follow torch's thread setting
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        return torch.from_numpy(sess.run(["logits"], {"image": batch.numpy()})[0])
    with _quiet():
        loaded = torch.jit.load(str(path), map_location="cpu")
    with torch.no_grad():
        return loaded(batch)


def check_export(model: nn.Module, path: str | os.PathLike, fmt: str, input_shape: tuple[int, int, int],
                 batches: tuple[int, ...] = CHECK_BATCHES, seed: int = 0) -> tuple[float, float]:
    """Run an exported file and the PyTorch model on the same random batches; return ``(max_abs_diff, max_abs_logit)``.

    ``input_shape`` is ``(C, S, S)``. ONNX files run in onnxruntime on CPU, TorchScript files
    in ``torch.jit``; one random batch per size in ``batches`` (default 1 and 3, proving the
    batch dimension is dynamic).
    """
    gen = torch.Generator().manual_seed(seed)
    model = _MainOutput(model).eval().cpu()
    diff, scale = 0.0, 0.0
    for b in batches:
        x = torch.randn(b, *input_shape, generator=gen)
        with torch.no_grad():
            ref = model(x).float()
        try:
            out = _run_export(Path(path), fmt, x).float()
        except Exception as e:
            raise ServingError(f"{path}: the exported model fails to run on a batch of {b} ({type(e).__name__}: "
                               f"{str(e).splitlines()[0] if str(e) else ''}); report this with the model name") from None
        if out.shape != ref.shape:
            raise ServingError(f"{path}: exported model returns shape {tuple(out.shape)} for a batch of {b}, "
                               f"PyTorch {tuple(ref.shape)}")
        if b > 1 and (out - out[:1]).abs().max().item() <= 1e-6 * max(1.0, out.abs().max().item()):
            raise ServingError(f"{path}: the exported model gives the same output for {b} different inputs, so the "
                               "check cannot tell it from a broken export; is the model trained?")
        diff = max(diff, (out - ref).abs().max().item())
        scale = max(scale, ref.abs().max().item())
    return diff, scale


def export_model(
    model: nn.Module,
    config: dict,
    out: str | os.PathLike,
    *,
    format: str = "onnx",
    exporter: str = "auto",
    opset: int | None = None,
    check: bool = True,
    tolerance: float = 1e-3,
) -> ExportResult:
    """Export a model built for ``config`` (``in_chans``, ``input_size``; see :func:`export_run`) to ``out``."""
    if format not in FORMATS:
        raise ServingError(f"unknown export format {format!r}; choose one of {', '.join(FORMATS)}")
    if exporter not in EXPORTERS:
        raise ServingError(f"unknown exporter {exporter!r}; choose one of {', '.join(EXPORTERS)}")
    out = Path(out)
    if out.is_dir():
        raise ServingError(f"{out} is a folder; pass a file name such as {out / ('model' + FORMATS[format])}")
    shape = (int(config["in_chans"]), int(config["input_size"]), int(config["input_size"]))
    wrapped = _MainOutput(model).eval().cpu()
    example = torch.randn(2, *shape)  # batch 2 at export, so batch 1 and 3 prove it is dynamic
    # Written beside `out` under a temporary name and moved into place only once checked: a failed
    # export or check never leaves a bad file at `out` (nor replaces a good one there).
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.partial-{os.getpid()}{out.suffix}")
    try:
        if format == "onnx":
            used, opset_used = _export_onnx(wrapped, example, tmp, exporter, opset, config)
        else:
            used, opset_used = _export_torchscript(wrapped, example, tmp, config), None
        result = ExportResult(str(out), format, used, opset=opset_used)
        if check:
            diff, scale = check_export(model, tmp, format, shape)
            result.max_abs_diff, result.max_abs_logit, result.batches = diff, scale, list(CHECK_BATCHES)
            if not diff <= tolerance * max(1.0, scale):
                raise ServingError(f"{out}: exported model differs from PyTorch by up to {diff:.3g} (logits up to "
                                   f"{scale:.3g}, tolerance {tolerance:g}); try --exporter dynamo or legacy")
        os.replace(tmp, out)
    except ServingError as e:
        raise ServingError(str(e).replace(str(tmp), str(out)) + f"; nothing was written to {out}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return result


def export_run(
    run: str | os.PathLike,
    *,
    format: str = "onnx",
    out: str | os.PathLike | None = None,
    exporter: str = "auto",
    opset: int | None = None,
    check: bool = True,
    tolerance: float = 1e-3,
) -> ExportResult:
    """Export a run folder's best weights to ONNX or TorchScript and check the file against PyTorch.

    ``out`` defaults to ``<run>/model.onnx`` (or ``model.pt``). ``exporter`` picks the ONNX
    exporter: ``legacy`` (TorchScript-based), ``dynamo`` (``torch.export``-based) or ``auto``
    (legacy, then dynamo if legacy cannot translate an operator). With ``check`` the file is
    run at batch sizes 1 and 3 and must match PyTorch to ``tolerance`` (relative to the
    largest logit when that exceeds 1).
    """
    if format not in FORMATS:
        raise ServingError(f"unknown export format {format!r}; choose one of {', '.join(FORMATS)}")
    model, config = load_run(run, device="cpu")
    run_path = Path(run)
    if out is None:
        out = (run_path if run_path.is_dir() else run_path.parent) / f"model{FORMATS[format]}"
    return export_model(model, config, out, format=format, exporter=exporter, opset=opset, check=check,
                        tolerance=tolerance)


def read_export_config(path: str | os.PathLike) -> dict:
    """The run config (classes, input size, mean/std ...) stored inside an exported file."""
    path = Path(path)
    if path.suffix == ".onnx":
        import onnx

        props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        return json.loads(props.get("lenet2vit", "{}"))
    extra = {"config.json": ""}
    with _quiet():
        torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    return json.loads(extra["config.json"] or "{}")
