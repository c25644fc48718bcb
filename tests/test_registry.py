"""Registry round-trips, name suggestions, CIFAR-form choice, the README table, MACs."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch.nn as nn

from lenet2vit import create_model, list_models, model_info, resolve_model_name
from lenet2vit.profile import model_macs
from lenet2vit.registry import Count, UnknownModelError, _unregister, family, register_model

ROOT = Path(__file__).resolve().parents[1]


class _Tiny(nn.Module):
    def __init__(self, num_classes=10, in_chans=3):
        super().__init__()
        self.fc = nn.Linear(in_chans, num_classes)

    def forward(self, x):
        return self.fc(x.mean((2, 3)))


def test_register_create_list_roundtrip():
    @register_model(family="Test", paper="A test", year=2000, input_size=8, params=Count.published(33, "arithmetic"),
                    ref_num_classes=8)
    def tiny_test_net(num_classes=10, in_chans=3, **kw):
        """A tiny network."""
        return _Tiny(num_classes, in_chans)

    try:
        assert "tiny_test_net" in list_models("tiny_*")
        info = model_info("tiny_test_net")
        assert info.description == "A tiny network." and info.ref_num_classes == 8
        m = create_model("tiny_test_net")  # defaults to the reference class count
        assert m.fc.out_features == 8 and m.model_name == "tiny_test_net"
        assert create_model("tiny_test_net", num_classes=3, in_chans=1).fc.weight.shape == (3, 1)
        with pytest.raises(ValueError, match="registered twice"):
            register_model(family="Test", paper="x", year=2000, input_size=8, params=Count.published(1, "x"))(tiny_test_net)
    finally:
        _unregister("tiny_test_net")
    assert "tiny_test_net" not in list_models()


def test_derived_count_adds_its_terms_to_its_base_and_writes_the_arithmetic():
    base = model_info("resnet18").ref_params
    c = Count.derived({"3x3 stem": -7_680, "fc": -507_870}, base="resnet18", note="strides hold none")
    assert c.params == base - 7_680 - 507_870
    assert c.source == f"derived: resnet18 {base:,} - 7,680 (3x3 stem) - 507,870 (fc); strides hold none"
    assert Count.derived({"C1": 156, "C3": 2_416}).source == "derived: 156 (C1) + 2,416 (C3)"
    with pytest.raises(ValueError, match="registered before"):
        Count.derived({"x": 1}, base="no_such_net")


def test_family_binds_its_facts_once():
    register = family("Test family", paper="A test", year=2001, ref_num_classes=8)

    @register(input_size=8, params=Count.published(33, "arithmetic"))
    def tiny_family_net(num_classes=10, in_chans=3, **kw):
        """Tiny."""
        return _Tiny(num_classes, in_chans)

    try:
        info = model_info("tiny_family_net")
        assert (info.family, info.paper, info.year, info.ref_num_classes) == ("Test family", "A test", 2001, 8)
        assert (info.ref_params, info.ref_source) == (33, "arithmetic")
    finally:
        _unregister("tiny_family_net")


def test_every_model_file_registers_in_one_idiom():
    """Each file binds its family with ``family(...)`` and decorates with it; no other idiom."""
    for path in sorted((ROOT / "src" / "lenet2vit" / "models").glob("*.py")):
        if path.name == "__init__.py":
            continue
        text = path.read_text()
        assert "family(" in text, f"{path.name} does not bind its family with registry.family"
        for other in ("register_model", "partial(", "ref_params=", "ref_source=", "**_"):
            assert other not in text, f"{path.name} uses {other!r}: register with @register(..., params=Count...)"


def test_unknown_name_suggests_close_names():
    with pytest.raises(UnknownModelError) as e:
        create_model("resnet19")
    assert "resnet18" in str(e.value) and "lenet2vit list" in str(e.value)


def test_list_patterns_and_cifar_filter():
    resnets = list_models("resnet*")
    assert {"resnet18", "resnet50", "resnet152"} <= set(resnets)
    assert all(n.endswith("_cifar") for n in list_models(cifar=True))
    assert not any(n.endswith("_cifar") for n in list_models(cifar=False))


def test_cifar_form_is_chosen_for_small_images_and_said():
    name, why = resolve_model_name("resnet18", 32)
    assert name == "resnet18_cifar" and "--form imagenet" in why
    assert resolve_model_name("resnet18", 224)[0] == "resnet18"
    assert resolve_model_name("resnet18", 32, form="imagenet")[0] == "resnet18"
    assert resolve_model_name("resnet18_cifar", 224, form="imagenet")[0] == "resnet18"
    assert resolve_model_name("resnet18", 224, form="cifar")[0] == "resnet18_cifar"
    with pytest.raises(ValueError):
        resolve_model_name("resnet18", 32, form="tiny")


# torchvision's published GFLOPS (which are multiply-accumulates) at 224px.
PUBLISHED_GMACS = {
    "resnet50": 4.09, "vgg16": 15.47, "vit_b_16": 17.56, "efficientnet_b0": 0.39, "googlenet": 1.50, "alexnet": 0.71,
}


@pytest.mark.parametrize("name,gmacs", sorted(PUBLISHED_GMACS.items()))
def test_macs_agree_with_published_figures(name, gmacs):
    macs = model_macs(name)
    assert abs(macs / 1e9 - gmacs) / gmacs < 0.02, f"{name}: {macs / 1e9:.3f} GMACs vs published {gmacs}"


def test_readme_model_table_is_up_to_date():
    spec = importlib.util.spec_from_file_location("model_table", ROOT / "scripts" / "model_table.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    text = (ROOT / "README.md").read_text()
    assert mod.render(text) == text, "README.md model table is stale: run `python scripts/model_table.py`"


@pytest.mark.parametrize("name", list_models(cifar=None))
def test_every_model_takes_its_default_and_its_smallest_input(name):
    from lenet2vit.registry import check_input

    info = model_info(name)
    check_input(name, info.input_size)  # on the meta device: no memory, no compute
    check_input(name, info.min_input_size)


def test_check_input_names_the_sizes_a_model_takes():
    from lenet2vit.registry import InputSizeError, check_input

    with pytest.raises(InputSizeError, match=r"alexnet cannot take 32px inputs; it takes 63px or more, and its CIFAR "
                                             r"form alexnet_cifar takes 32px images: pass --input-size 63"):
        check_input("alexnet", 32)
    with pytest.raises(InputSizeError, match="lenet5 cannot take 28px inputs; it takes only 32px"):
        check_input("lenet5", 28)
    with pytest.raises(InputSizeError, match=r"vit_b_32 cannot take 240px inputs \(input 240x240 is not divisible"):
        check_input("vit_b_32", 240)
