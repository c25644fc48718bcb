"""Loading weights: safe formats, clear errors for files that do not fit the model."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from lenet2vit import create_model, load_weights
from lenet2vit.engine.checkpoint import save_weights
from lenet2vit.weights import WeightsError, read_state_dict


def test_checkpoint_from_another_model_is_refused_clearly(tmp_path):
    path = tmp_path / "lenet.safetensors"
    save_weights(path, create_model("lenet5").state_dict())
    with pytest.raises(WeightsError, match=r"weights do not fit resnet20.*missing key"):
        load_weights(create_model("resnet20"), path)


def test_checkpoint_with_another_class_count_names_the_shapes(tmp_path):
    path = tmp_path / "r20.safetensors"
    save_weights(path, create_model("resnet20", num_classes=10).state_dict())
    model = create_model("resnet20", num_classes=100)
    with pytest.raises(WeightsError, match=r"fc.weight: file \(10, 64\) vs model \(100, 64\)"):
        load_weights(model, path)
    # fine-tuning: everything but the classifier is taken
    report = load_weights(model, path, skip_classifier=True)
    assert set(report["skipped"]) == {"fc.weight", "fc.bias"}


def test_missing_and_unexpected_keys_are_listed(tmp_path):
    sd = create_model("lenet5").state_dict()
    first = next(iter(sd))
    sd["extra.weight"] = torch.zeros(1)
    del sd[first]
    with pytest.raises(WeightsError, match=rf"1 missing key\(s\) \['{first}'\], 1 unexpected key\(s\) \['extra.weight'\]"):
        load_weights(create_model("lenet5"), sd)
    load_weights(create_model("lenet5"), sd, strict=False)  # allowed when asked


class Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_pickled_objects_in_a_pth_file_are_never_unpickled(tmp_path, capsys):
    path = tmp_path / "evil.pth"
    torch.save({"weight": torch.zeros(2), "payload": Evil()}, path)
    with pytest.raises(WeightsError, match="weights_only=True"):
        read_state_dict(path)
    assert "this must never run" not in capsys.readouterr().out


def test_torchvision_style_pth_with_wrapper_and_prefix_loads(tmp_path):
    model = create_model("resnet20")
    path = tmp_path / "wrapped.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, path)
    other = create_model("resnet20")
    load_weights(other, path)
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(model.eval()(x), other.eval()(x))


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all"])
def test_garbage_weight_files_give_a_clear_error(tmp_path, content):
    for suffix in (".pth", ".safetensors"):
        path = tmp_path / f"bad{suffix}"
        path.write_bytes(content)
        with pytest.raises(WeightsError):
            read_state_dict(path)
    with pytest.raises(WeightsError, match="no such weights file"):
        read_state_dict(tmp_path / "missing.pth")


def test_unknown_source_is_refused():
    with pytest.raises(WeightsError, match="unknown weights source"):
        load_weights(nn.Linear(1, 1), {}, source="keras")
