"""Load weights: torchvision / timm state_dicts, our own checkpoints, or published weights.

A local file (e.g. torchvision's ``resnet18-f37072fd.pth``) is read as it is. ``"imagenet"``
(:func:`published_state_dict`) asks the model's reference library for its published ImageNet
weights: torchvision's weights API (downloaded once into the torch hub cache) or timm's
pretrained models (downloaded once from the Hugging Face hub into its cache). Third-party ``.pth`` files are read with
``torch.load(weights_only=True)``, so loading never unpickles arbitrary objects; our own
checkpoints are safetensors.

A model whose parameter names differ from the reference's defines
``convert_state_dict(state_dict, source) -> state_dict`` (a method on the model); this module
calls it before loading.
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import torch
import torch.nn as nn

from lenet2vit.errors import UserError

__all__ = ["load_weights", "read_state_dict", "published_state_dict", "is_published", "WeightsError", "PUBLISHED"]

SOURCES = ("auto", "lenet2vit", "torchvision", "timm")


class WeightsError(UserError, ValueError):
    """A weights file that cannot be used with this model; the message says why and what to do."""


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a state_dict from ``.safetensors``, ``.pth``/``.pt``/``.bin`` or a run folder."""
    p = Path(path)
    if p.is_dir():
        for candidate in ("best.safetensors", "model.safetensors"):
            if (p / candidate).is_file():
                p = p / candidate
                break
        else:
            raise WeightsError(f"{path}: folder has no best.safetensors or model.safetensors; pass a weights file")
    if not p.is_file():
        raise WeightsError(f"{path}: no such weights file; check the path")
    if p.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(p))
        except (SafetensorError, OSError, ValueError) as e:
            raise WeightsError(f"{path}: not a readable safetensors file ({e}); re-save or re-download it") from None
    try:
        obj = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as e:  # pickle errors come in many types
        raise WeightsError(
            f"{path}: could not be read as a plain PyTorch state_dict with weights_only=True ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}); only tensor state_dicts are accepted"
        ) from None
    for key in ("state_dict", "model", "model_state_dict", "state_dict_ema"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path}: does not hold a state_dict of tensors")
    return {k.removeprefix("module.").removeprefix("_orig_mod."): v for k, v in obj.items()}


PUBLISHED = ("imagenet", "timm")  # names of published weights --pretrained takes besides a file, and timm:<name>


def is_published(which: str) -> bool:
    """Whether ``--pretrained`` names published weights (``imagenet``, ``timm``, ``timm:<name>``), not a file."""
    return which in PUBLISHED or which.startswith("timm:")


def published_state_dict(model_name: str, which: str = "imagenet") -> tuple[dict[str, torch.Tensor], str, str]:
    """The published ImageNet weights of ``model_name``'s reference: ``(state_dict, description, source)``.

    ``which`` is ``"imagenet"`` (the reference library's weights), ``"timm"`` (a timm reference's
    weights) or ``"timm:<name>"`` (any timm model's, e.g. ``timm:resnet50.a1_in1k``, whose
    parameter names the model's ``convert_state_dict`` maps or shares).

    A torchvision reference goes through torchvision's weights API: the file is downloaded once
    into the torch hub cache (``$TORCH_HOME/hub/checkpoints``) and read from there afterwards.
    A timm reference goes through ``timm.create_model(name, pretrained=True)``, which downloads
    once from the Hugging Face hub into its cache. ``source`` says whose parameter names the
    state_dict uses. Offline, without timm, or for a model nobody publishes weights for, raises
    :class:`WeightsError` with what to do instead.
    """
    from lenet2vit.registry import model_info

    if not is_published(which):
        raise WeightsError(f"unknown published weights {which!r}; choose imagenet, timm or timm:<name>, "
                           "or pass a file")
    info = model_info(model_name)
    if which.startswith("timm"):  # timm's weights: the reference's own timm name, or the one given
        name = which.partition(":")[2] or (info.reference[1] if info.reference and info.reference[0] == "timm" else "")
        if not name:
            raise WeightsError(f"{model_name}'s reference is not a timm model; name the timm model whose weights "
                               "to load, e.g. --pretrained timm:resnet18.a1_in1k, or use --pretrained imagenet")
        return (*_timm_published(name), "timm")
    if info.reference is None or info.reference[0] not in ("torchvision", "timm"):
        raise WeightsError(
            f"torchvision and timm publish no ImageNet weights for {model_name}"
            + (f" (its reference is {info.reference[0]}'s {info.reference[1]})" if info.reference else "")
            + "; pass a local weights file with --pretrained PATH"
        )
    if info.reference[0] == "timm":
        return (*_timm_published(info.reference[1]), "timm")
    import torchvision

    weights = torchvision.models.get_model_weights(info.reference[1]).DEFAULT
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # torch.hub's own "Downloading: ..." line (torch < 2.8)
            state_dict = weights.get_state_dict(progress=False, check_hash=True)
    except OSError as e:  # URLError and friends: no network, or the host refused
        raise WeightsError(
            f"could not download {weights} from {weights.url} ({type(e).__name__}: {e}); you seem to be offline. "
            f"Download that file on a machine with internet and pass it with --pretrained PATH"
        ) from None
    return state_dict, f"torchvision {weights} ({weights.url})", "torchvision"


def _timm_published(ref: str) -> tuple[dict[str, torch.Tensor], str]:
    try:
        import timm
    except ImportError:
        raise WeightsError(f"the published weights of timm's {ref} need timm: pip install timm, or pass a weights "
                           "file with --pretrained PATH") from None
    cfg = timm.models.get_pretrained_cfg(ref)
    where = f"huggingface.co/{cfg.hf_hub_id}" if cfg is not None and cfg.hf_hub_id else (cfg.url if cfg else ref)
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            net = timm.create_model(ref, pretrained=True)
    except (OSError, ValueError) as e:  # no network (requests' errors are OSErrors), or the hub has no file
        why = " ".join(f"{type(e).__name__}: {e}".split())[:300]
        raise WeightsError(
            f"could not download timm's {ref} weights from {where} ({why}); you seem to be offline. "
            f"Download them on a machine with internet (timm.create_model({ref!r}, pretrained=True), then save "
            f"its state_dict) and pass the file with --pretrained PATH"
        ) from None
    return net.state_dict(), f"timm {ref} ({where})"


def _guess_source(state_dict: dict[str, torch.Tensor]) -> str:
    keys = set(state_dict)
    if any(k.startswith(("encoder.layers.", "conv_proj.")) for k in keys):
        return "torchvision"
    if any(k.startswith(("blocks.", "patch_embed.")) for k in keys) or "cls_token" in keys:
        return "timm"
    return "lenet2vit"


def load_weights(
    model: nn.Module,
    path: str | os.PathLike | dict,
    source: str = "auto",
    *,
    strict: bool = True,
    skip_classifier: bool = False,
) -> dict[str, list[str]]:
    """Load a weights file (or a state_dict) into ``model`` and return what was skipped.

    ``source`` says whose parameter names the file uses ("torchvision", "timm", "lenet2vit"
    or "auto" to guess). With ``skip_classifier=True`` the classifier weights are left out when
    their shape differs (fine-tuning to another class count), and an RGB first convolution is
    summed over its colour filters for a grey model. Mismatched names or shapes raise
    :class:`WeightsError` with the offending keys listed.
    """
    if source not in SOURCES:
        raise WeightsError(f"unknown weights source {source!r}; choose one of {', '.join(SOURCES)}")
    state_dict = dict(path) if isinstance(path, dict) else read_state_dict(path)
    if source == "auto":
        source = _guess_source(state_dict)
    convert = getattr(model, "convert_state_dict", None)
    if convert is not None and source != "lenet2vit":
        state_dict = convert(state_dict, source)

    own = model.state_dict()
    skipped: list[str] = []
    if skip_classifier:
        head = getattr(model, "get_classifier", lambda: None)()
        head_keys = set()
        if isinstance(head, nn.Module):
            head_ids = {id(t) for t in head.state_dict(keep_vars=True).values()}
            head_keys = {k for k, v in model.state_dict(keep_vars=True).items() if id(v) in head_ids}
        for k in list(state_dict):
            if k in head_keys and k in own and own[k].shape != state_dict[k].shape:
                skipped.append(k)
                del state_dict[k]

    if skip_classifier:  # fine-tuning RGB weights on grey images: the first conv sums its colour filters (as timm)
        for k, v in state_dict.items():
            if k in own and v.ndim == 4 and own[k].ndim == 4 and own[k].shape[1] == 1 and v.shape[1] == 3 \
                    and own[k].shape[0] == v.shape[0] and own[k].shape[2:] == v.shape[2:]:
                state_dict[k] = v.sum(dim=1, keepdim=True)
    shape_bad = [
        f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in state_dict.items()
        if k in own and own[k].shape != v.shape
    ]
    missing = [k for k in own if k not in state_dict and k not in skipped]
    unexpected = [k for k in state_dict if k not in own]
    name = getattr(model, "model_name", type(model).__name__)
    if shape_bad:
        raise WeightsError(
            f"weights do not fit {name}: {len(shape_bad)} tensor(s) have other shapes, e.g. "
            + "; ".join(shape_bad[:3])
            + ". Was it saved from another model or class count? (fine-tuning: skip_classifier=True / --pretrained with a new --num-classes)"
        )
    if strict and (missing or unexpected):
        raise WeightsError(
            f"weights do not fit {name} (source={source}): {len(missing)} missing key(s) {missing[:4]}, "
            f"{len(unexpected)} unexpected key(s) {unexpected[:4]}. Check the model name and --weights-source."
        )
    model.load_state_dict(state_dict, strict=False)
    return {"missing": missing, "unexpected": unexpected, "skipped": skipped}
