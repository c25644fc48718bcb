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


# ----------------------------------------------------------------------------- published weights
# Only the download call (torch.hub.download_url_to_file) is replaced: torchvision's weights API,
# the hub cache and our loading run as they do online.


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """A fresh torch hub cache and a fake download that serves a randomly initialised torchvision model."""
    import torch.hub
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    calls: list[str] = []
    served: dict[str, nn.Module] = {}

    def download(url, dst, hash_prefix=None, progress=True):
        calls.append(url)
        name = url.rsplit("/", 1)[1].split("-")[0]  # resnet18-f37072fd.pth -> resnet18
        torch.manual_seed(0)
        served[name] = torchvision.models.get_model(name, weights=None).eval()
        torch.save(served[name].state_dict(), dst)

    monkeypatch.setattr(torch.hub, "download_url_to_file", download)
    return calls, served, tmp_path / "torch-home"


def test_imagenet_weights_come_from_torchvisions_api_once_and_match_its_model(hub):
    from lenet2vit.weights import published_state_dict

    calls, served, home = hub
    sd, what, source = published_state_dict("resnet18")
    assert source == "torchvision"
    assert calls == ["https://download.pytorch.org/models/resnet18-f37072fd.pth"] and "IMAGENET1K_V1" in what
    assert (home / "hub" / "checkpoints" / "resnet18-f37072fd.pth").is_file()
    published_state_dict("resnet18")
    assert len(calls) == 1  # the second time it is read from the hub cache
    ours = create_model("resnet18").eval()
    load_weights(ours, sd, source="torchvision")
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(ours(x), served["resnet18"](x), atol=1e-5)


def test_imagenet_weights_offline_is_one_line_that_says_what_to_do(monkeypatch, tmp_path):
    import urllib.error

    import torch.hub

    from lenet2vit.weights import published_state_dict

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(url, dst, hash_prefix=None, progress=True):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(WeightsError) as e:
        published_state_dict("alexnet")
    msg = str(e.value)
    assert "offline" in msg and "alexnet-owt-7be5be79.pth" in msg and "--pretrained PATH" in msg and "\n" not in msg


def test_imagenet_weights_for_a_model_torchvision_does_not_publish_are_refused():
    from lenet2vit.weights import published_state_dict

    with pytest.raises(WeightsError, match="torchvision and timm publish no ImageNet weights for resnet18_cifar"):
        published_state_dict("resnet18_cifar")
    with pytest.raises(WeightsError, match="unknown published weights"):
        published_state_dict("resnet18", "imagenet22k")


def test_train_pretrained_imagenet_fine_tunes_the_paper_form(hub, tmp_path):
    from lenet2vit.engine import TrainConfig, train_run

    calls, _, _ = hub
    cfg = TrainConfig(optimizer="adam", lr=1e-3, epochs=1, batch_size=64, limit=128, device="cpu", amp="fp32")
    logs: list[str] = []
    res = train_run("resnet18", out=tmp_path / "run", cfg=cfg, dataset="digits", pretrained="imagenet",
                    progress=False, log=logs.append)
    assert len(calls) == 1 and res["model"] == "resnet18"  # the ImageNet form, not resnet18_cifar
    assert any("loaded pretrained weights: torchvision ResNet18_Weights.IMAGENET1K_V1" in m and "new classifier: fc.weight"
               in m for m in logs)
    import json

    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["pretrained"] == "imagenet" and config["train"]["form"] == "imagenet" and config["input_size"] == 32


def test_cli_pretrained_imagenet_offline_prints_one_error_line(monkeypatch, tmp_path, capsys):
    import urllib.error

    import torch.hub

    from lenet2vit.cli import main

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "home"))

    def offline(url, dst, hash_prefix=None, progress=True):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    code = main(["train", "resnet18", "--dataset", "digits", "--pretrained", "imagenet", "--epochs", "1",
                 "--out", str(tmp_path / "run"), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: could not download") and "--pretrained PATH" in err[0]
    assert not (tmp_path / "run" / "checkpoint.safetensors").exists()


def test_imagenet_weights_of_a_timm_reference_come_from_timm_and_match_its_model(monkeypatch, tmp_path):
    """``--pretrained imagenet`` for ViT-Ti: timm's pretrained model, with only the hub download mocked."""
    timm = pytest.importorskip("timm")
    from safetensors.torch import save_file
    from timm.models import _hub

    from lenet2vit.weights import published_state_dict

    calls: list[tuple[str, str]] = []
    torch.manual_seed(0)
    served = timm.create_model("vit_tiny_patch16_224", pretrained=False).eval()
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in served.state_dict().items()}, str(path))

    def download(repo_id, filename, **kw):
        calls.append((repo_id, filename))
        return str(path)

    monkeypatch.setattr(_hub, "hf_hub_download", download)
    sd, what, source = published_state_dict("vit_ti_16")
    assert source == "timm" and calls and calls[0][0] == "timm/vit_tiny_patch16_224.augreg_in21k_ft_in1k"
    assert "huggingface.co/timm/vit_tiny_patch16_224" in what
    ours = create_model("vit_ti_16").eval()
    load_weights(ours, sd, source="timm")
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(ours(x), served(x), atol=1e-4)


def test_imagenet_weights_of_a_timm_reference_offline_is_one_line(monkeypatch):
    pytest.importorskip("timm")
    from huggingface_hub.errors import LocalEntryNotFoundError
    from timm.models import _hub

    from lenet2vit.weights import published_state_dict

    def offline(repo_id, filename, **kw):  # what the hub raises offline, once its own cache has nothing
        raise LocalEntryNotFoundError("An error happened while trying to locate the file on the Hub and we cannot "
                                      "find the requested files in the local cache.\nCheck your connection.")

    monkeypatch.setattr(_hub, "hf_hub_download", offline)
    with pytest.raises(WeightsError) as e:
        published_state_dict("mobilenet_v1")
    msg = str(e.value)
    assert "offline" in msg and "huggingface.co/timm/mobilenetv1_100" in msg and "--pretrained PATH" in msg
    assert "\n" not in msg


def test_timm_named_weights_load_any_timm_model_with_only_the_download_mocked(monkeypatch, tmp_path):
    """``--pretrained timm:<name>``: another timm checkpoint of the same architecture (ViT-S here)."""
    timm = pytest.importorskip("timm")
    from safetensors.torch import save_file
    from timm.models import _hub

    from lenet2vit.weights import is_published, published_state_dict

    torch.manual_seed(1)
    served = timm.create_model("vit_small_patch16_224", pretrained=False).eval()
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in served.state_dict().items()}, str(path))
    calls = []
    monkeypatch.setattr(_hub, "hf_hub_download", lambda repo_id, filename, **kw: calls.append(repo_id) or str(path))
    assert is_published("timm:vit_small_patch16_224.augreg_in1k") and not is_published("weights.pth")
    sd, what, source = published_state_dict("vit_s_16", "timm:vit_small_patch16_224.augreg_in1k")
    assert calls == ["timm/vit_small_patch16_224.augreg_in1k"] and source == "timm"
    ours = create_model("vit_s_16").eval()
    load_weights(ours, sd, source="timm")
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(ours(x), served(x), atol=1e-4)
    with pytest.raises(WeightsError, match="timm:"):
        published_state_dict("resnet18", "timm")  # torchvision's reference: name the timm model
