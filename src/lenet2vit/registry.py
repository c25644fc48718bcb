"""Model registry: one table of every architecture lenet2vit knows.

A model file binds its family's facts once with :func:`family` and registers each public
builder with the decorator that returns, giving the facts a reader (and the test suite) needs:
the default input size and the reference parameter count as a :class:`Count`, either a figure
published elsewhere (``Count.published``) or one worked out from its terms (``Count.derived``),
so that each number is written once. ``create_model`` builds a model by name; ``list_models``
filters names with a shell pattern; ``model_info`` returns the facts.

Each architecture has one form for its paper's input size and, where the ImageNet stem would
destroy a 32x32 image, a CIFAR form registered under the suffix ``_cifar`` (for example
``resnet18_cifar``). :func:`resolve_model_name` picks the sensible form for an image size.
"""

from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Callable, Mapping

import torch.nn as nn

from lenet2vit.errors import UserError

__all__ = [
    "Count",
    "family",
    "ModelInfo",
    "UnknownModelError",
    "register_model",
    "create_model",
    "list_models",
    "model_info",
    "resolve_model_name",
    "check_input",
    "InputSizeError",
    "CIFAR_SUFFIX",
    "TORCHVISION",
]

CIFAR_SUFFIX = "_cifar"
# The source of a count read from torchvision's weight metadata, for Count.published(n, TORCHVISION.format(name)).
TORCHVISION = "torchvision {} (num_params of its IMAGENET1K_V1 weights)"


@dataclass(frozen=True)
class Count:
    """A reference parameter count and where the figure comes from.

    ``Count.published(n, source)`` is a figure read from elsewhere (torchvision's weight
    metadata, timm, a paper). ``Count.derived(terms, base=...)`` works one out: the count of an
    already registered model ``base`` (if any) plus each labelled term, and it writes the
    arithmetic into ``source`` itself, so no figure is typed twice.
    """

    params: int
    source: str

    @classmethod
    def published(cls, params: int, source: str) -> "Count":
        return cls(params, source)

    @classmethod
    def derived(cls, terms: Mapping[str, int], *, base: str | None = None, note: str = "") -> "Count":
        total, parts = 0, []
        if base is not None:
            if base not in _MODELS:
                raise ValueError(f"Count.derived: {base!r} must be registered before the models derived from it")
            total = _MODELS[base].ref_params
            parts.append(f"{base} {total:,}")
        for label, value in terms.items():
            sign = "-" if value < 0 else "+"
            parts.append(f"{sign} {abs(value):,} ({label})" if parts else f"{value:,} ({label})")
            total += value
        return cls(total, "derived: " + " ".join(parts) + (f"; {note}" if note else ""))


@dataclass(frozen=True)
class ModelInfo:
    """The facts about one registered architecture.

    ``ref_params`` is the parameter count the model must have when built with
    ``ref_num_classes`` outputs (1000 for ImageNet models) and ``in_chans`` input channels;
    ``ref_source`` says where that figure comes from (torchvision, timm, the paper, or our own
    derivation). ``reference`` names an implementation with the same function, e.g.
    ``("torchvision", "resnet18")``, used by the weight-loading tests and by ``--pretrained``.
    """

    name: str
    family: str
    paper: str
    year: int
    input_size: int
    ref_params: int
    ref_source: str
    ref_num_classes: int = 1000
    in_chans: int = 3
    reference: tuple[str, str] | None = None
    cifar_form: str | None = None  # name of this architecture's 32x32 form, if it has one
    is_cifar_form: bool = False
    min_input_size: int = 32  # smallest square input the built model accepts
    max_input_size: int | None = None  # largest (LeNet-5: 32, its only size); None: no limit
    description: str = ""
    # The family's own training behaviour, declared here so the engine needs no special cases:
    # keyword arguments the model is built with for training (GoogLeNet: its auxiliary heads) ...
    train_kwargs: dict = field(default_factory=dict, compare=False)
    # ... and how it starts from another trained run (VGG: the paper's layer copy); None copies
    # every tensor whose name and shape match.
    init_from: Callable[[nn.Module, dict], list[str]] | None = field(default=None, repr=False, compare=False)
    builder: Callable[..., nn.Module] | None = field(default=None, repr=False, compare=False)


class InputSizeError(UserError, ValueError):
    """A model that cannot take inputs of the size asked; the message names the sizes it takes."""


class UnknownModelError(UserError, KeyError):
    """Raised for a model name that is not registered; the message suggests close names."""

    def __str__(self) -> str:  # KeyError quotes its argument; we want a plain sentence
        return str(self.args[0])


_MODELS: dict[str, ModelInfo] = {}


def register_model(
    *,
    family: str,
    paper: str,
    year: int,
    input_size: int,
    params: Count,
    ref_num_classes: int = 1000,
    in_chans: int = 3,
    reference: tuple[str, str] | None = None,
    cifar_form: str | None = None,
    min_input_size: int = 32,
    max_input_size: int | None = None,
    description: str = "",
    name: str | None = None,
    train_kwargs: dict | None = None,
    init_from: Callable[[nn.Module, dict], list[str]] | None = None,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator registering a builder ``fn(num_classes=..., in_chans=..., **kwargs)``.

    ``params`` is the count the model must have with ``ref_num_classes`` outputs and
    ``in_chans`` input channels (the test suite checks it exactly). The model's name is the
    function's name unless ``name`` is given. Names ending in ``_cifar`` are marked as CIFAR forms.
    """

    def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        key = name or fn.__name__
        if key in _MODELS:
            raise ValueError(f"model {key!r} is registered twice")
        doc = description or (fn.__doc__ or "").strip().split("\n")[0]
        _MODELS[key] = ModelInfo(
            name=key,
            family=family,
            paper=paper,
            year=year,
            input_size=input_size,
            ref_params=params.params,
            ref_source=params.source,
            ref_num_classes=ref_num_classes,
            in_chans=in_chans,
            reference=reference,
            cifar_form=cifar_form,
            is_cifar_form=key.endswith(CIFAR_SUFFIX),
            min_input_size=min_input_size,
            max_input_size=max_input_size,
            description=doc,
            train_kwargs=dict(train_kwargs or {}),
            init_from=init_from,
            builder=fn,
        )
        return fn

    return wrap


def family(name: str, *, paper: str, year: int, **shared) -> Callable[..., Callable]:
    """The decorator factory a model file registers its builders with: :func:`register_model`
    with the family's name, paper, year and any facts every member shares bound once."""
    return partial(register_model, family=name, paper=paper, year=year, **shared)


def _ensure_loaded() -> None:
    # Importing the models package runs every @register_model in it.
    import lenet2vit.models  # noqa: F401


def _suggest(name: str) -> str:
    close = difflib.get_close_matches(name, list(_MODELS), n=4, cutoff=0.5)
    if not close:
        close = [n for n in _MODELS if name.lower() in n.lower()][:4]
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    return f"Unknown model {name!r}.{hint} Run `lenet2vit list` to see every model."


def model_info(name: str) -> ModelInfo:
    """Return the :class:`ModelInfo` of a registered model (error suggests close names)."""
    _ensure_loaded()
    try:
        return _MODELS[name]
    except KeyError:
        raise UnknownModelError(_suggest(name)) from None


def list_models(pattern: str = "*", *, family: str | None = None, cifar: bool | None = None) -> list[str]:
    """Names of registered models matching a shell pattern such as ``"resnet*"``.

    ``family`` filters by family (case-insensitive); ``cifar=True/False`` keeps only the
    32x32 forms or only the others. Names are returned in registration (paper) order.
    """
    _ensure_loaded()
    out = []
    for key, info in _MODELS.items():
        if not fnmatch.fnmatchcase(key, pattern):
            continue
        if family is not None and info.family.lower() != family.lower():
            continue
        if cifar is not None and info.is_cifar_form != cifar:
            continue
        out.append(key)
    return out


def create_model(name: str, num_classes: int | None = None, in_chans: int | None = None, **kwargs) -> nn.Module:
    """Build a registered model with random weights.

    ``num_classes`` defaults to the reference class count (1000 for ImageNet models) and
    ``in_chans`` to the model's default (3, or 1 for LeNet-5). Extra keyword arguments go to
    the family's constructor (e.g. ``img_size`` for ViT, ``aux_logits`` for GoogLeNet).
    """
    info = model_info(name)
    if num_classes is not None and num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if in_chans is not None and in_chans < 1:
        raise ValueError(f"in_chans must be >= 1, got {in_chans}")
    model = info.builder(
        num_classes=info.ref_num_classes if num_classes is None else num_classes,
        in_chans=info.in_chans if in_chans is None else in_chans,
        **kwargs,
    )
    model.model_name = name  # lets checkpoints and reports name the architecture
    return model


def resolve_model_name(name: str, image_size: int | None, form: str = "auto") -> tuple[str, str]:
    """Pick the ImageNet or CIFAR form of ``name`` for images of ``image_size`` pixels.

    ``form`` is ``"auto"`` (CIFAR form for images of 64 px or less when one exists),
    ``"imagenet"`` (the paper's form) or ``"cifar"``. Returns ``(name, reason)`` where
    ``reason`` is one line a CLI prints so the choice is never silent.
    """
    if form not in ("auto", "imagenet", "cifar"):
        raise ValueError(f"form must be auto, imagenet or cifar, got {form!r}")
    info = model_info(name)
    base = name[: -len(CIFAR_SUFFIX)] if info.is_cifar_form else name
    base_info = model_info(base) if base in _MODELS else info
    cifar = base_info.cifar_form
    if form == "imagenet":
        return base, f"{base}: paper form (form imagenet: set by --form or the preset)"
    if form == "cifar":
        if info.is_cifar_form:
            return name, f"{name}: CIFAR form as requested"
        if cifar is None:
            return name, f"{name}: has no separate CIFAR form; it takes {info.input_size}px inputs as it is"
        return cifar, f"{cifar}: CIFAR form of {name} as requested (--form cifar)"
    # auto
    if info.is_cifar_form:
        return name, f"{name}: CIFAR form, as named"
    if cifar is not None and image_size is not None and image_size <= 64:
        return cifar, (
            f"{cifar}: CIFAR form of {name} chosen for {image_size}px images "
            f"({model_info(cifar).description}); pass --form imagenet to keep the paper's stem"
        )
    return name, f"{name}: paper form ({info.input_size}px default input)"


def _replace_info(name: str, **changes) -> None:
    """Update a registered entry (used by tests that register throwaway models)."""
    _MODELS[name] = replace(_MODELS[name], **changes)


def _unregister(name: str) -> None:
    _MODELS.pop(name, None)


def check_input(name: str, input_size: int, in_chans: int | None = None, num_classes: int | None = None,
                **kwargs) -> None:
    """Raise :class:`InputSizeError` unless ``name`` takes ``input_size`` square images.

    The model is built and run once on the ``meta`` device (no memory, no compute), so every
    shape rule it has is checked: a pooling that meets a 1x1 map, a patch size that does not
    divide the image, LeNet-5's single size.
    """
    import torch

    info = model_info(name)
    if info.max_input_size == info.min_input_size:
        hint = f"; it takes only {info.min_input_size}px"
    else:
        hint = f"; it takes {info.min_input_size}px" + (f" to {info.max_input_size}px" if info.max_input_size else " or more")
    if info.cifar_form:
        hint += f", and its CIFAR form {info.cifar_form} takes 32px images"
    if input_size < info.min_input_size or (info.max_input_size and input_size > info.max_input_size):
        raise InputSizeError(f"{name} cannot take {input_size}px inputs{hint}: pass --input-size {info.min_input_size}"
                             + (" (training resizes the data to it)" if info.max_input_size else ""))
    with torch.device("meta"):
        model = create_model(name, num_classes=num_classes, in_chans=in_chans or info.in_chans, **kwargs).eval()
        try:
            with torch.no_grad():
                model(torch.empty(2, in_chans or info.in_chans, input_size, input_size))
        except (RuntimeError, ValueError) as e:
            why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise InputSizeError(f"{name} cannot take {input_size}px inputs ({why}){hint}") from None
