"""`lenet2vit export`: ONNX / TorchScript files with a dynamic batch, checked against PyTorch."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lenet2vit import create_model, list_models
from lenet2vit.cli import main
from lenet2vit.engine.run_folder import load_run
from lenet2vit.serving import ServingError, export_run, read_export_config, save_run
from lenet2vit.serving.export import check_export

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

CLASSES = [f"c{i}" for i in range(10)]




def images(b: int, c: int, s: int, gen: torch.Generator) -> torch.Tensor:
    """Random images that differ in layout, not only in noise (so pooled features differ)."""
    blobs = F.interpolate(torch.randn(b, c, 4, 4, generator=gen), size=(s, s), mode="bilinear")
    return 2 * blobs + 0.5 * torch.randn(b, c, s, s, generator=gen)


def make_run(root: Path, name: str, size: int, in_chans: int = 3, **model_kwargs) -> Path:
    """A run folder with random weights whose logits depend on the input.

    Freshly initialised deep networks in eval mode give nearly the same output for every input
    (EfficientNet-B0's logits are ~1e-13), which would make any export look exact: batch-norm
    statistics are calibrated on two batches of :func:`images` and the head is re-drawn.
    """
    torch.manual_seed(0)
    model = create_model(name, num_classes=len(CLASSES), in_chans=in_chans, **model_kwargs)
    torch.nn.init.normal_(model.get_classifier().weight, std=0.2)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration batches
    model.train()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for _ in range(2):
            model(images(8, in_chans, size, gen))
    model.eval()
    return save_run(model, root / name, classes=CLASSES, input_size=size, mean=[0.5] * in_chans,
                    std=[0.25] * in_chans, model_kwargs=model_kwargs)


def _hybrid() -> str:
    small = [n for n in list_models("*vit*") if n.startswith("r") and n.endswith("_cifar")]
    return small[0] if small else "r18_vit_ti_cifar"


def _ort_vs_torch(path: Path, run: Path) -> float:
    """Largest |onnxruntime - PyTorch| logit difference at batch 1 and 3, computed here independently.

    Also checks that the logits vary between images by far more than that difference, so the
    comparison is not between two (nearly) constant outputs.
    """
    model, config = load_run(run)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    s, c = config["input_size"], config["in_chans"]
    gen = torch.Generator().manual_seed(2)
    worst, spread = 0.0, 0.0
    for b in (1, 3):
        x = images(b, c, s, gen)
        with torch.no_grad():
            ref = model(x)
        out = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
        assert out.shape == (b, len(CLASSES))
        worst = max(worst, float(np.abs(out - ref.numpy()).max()))
        if b > 1:
            spread = float(ref.std(0).max())
    assert spread > 1e-3 and worst < 0.01 * spread
    return worst


# (registered name, input size, model kwargs): the models the export must work for. Small inputs keep
# the test fast: the ImageNet forms accept 64 px, the ViT gets a native 32-px grid.
EXPORT_CASES = [
    pytest.param("resnet18", 64, {}, id="resnet18"),
    pytest.param("googlenet", 64, {"aux_logits": True}, id="googlenet", marks=pytest.mark.slow),  # as trained
    pytest.param("efficientnet_b0", 64, {}, id="efficientnet_b0", marks=pytest.mark.slow),
    pytest.param("vit_ti_16", 32, {"img_size": 32}, id="vit_ti_16"),
    pytest.param(_hybrid(), 32, {}, id="hybrid", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("name,size,kwargs", EXPORT_CASES)
def test_onnx_export_matches_pytorch_with_dynamic_batch(tmp_path, name, size, kwargs):
    run = make_run(tmp_path, name, size, **kwargs)
    res = export_run(run, format="onnx")
    path = Path(res.path)
    assert path == run / "model.onnx" and res.exporter == "legacy"
    assert res.batches == [1, 3] and res.max_abs_diff < 1e-3 * max(1.0, res.max_abs_logit)
    assert _ort_vs_torch(path, run) < 1e-3
    graph = onnx.load(str(path)).graph
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim[1:]] == [3, size, size]
    meta = read_export_config(path)
    assert meta["classes"] == CLASSES and meta["input_size"] == size and meta["mean"] == [0.5] * 3
    assert meta["stored_size"] == size  # a run saved without a data set stores at its input size


@pytest.mark.slow
def test_vit_at_another_size_falls_back_to_the_dynamo_exporter(tmp_path):
    # 32-px inputs to a 224-px ViT resize the position embeddings (antialiased bicubic), which
    # the TorchScript-based exporter cannot translate.
    run = make_run(tmp_path, "vit_ti_16", 32)
    with pytest.raises(ServingError, match="ONNX export failed.*legacy"):
        export_run(run, exporter="legacy", out=tmp_path / "legacy.onnx")
    res = export_run(run, out=tmp_path / "auto.onnx")
    assert res.exporter == "dynamo"
    assert _ort_vs_torch(Path(res.path), run) < 1e-3


def test_greyscale_run_exports(tmp_path):
    run = make_run(tmp_path, "lenet5", 32, in_chans=1)
    res = export_run(run, out=tmp_path / "lenet.onnx")
    assert _ort_vs_torch(Path(res.path), run) < 1e-3


def test_torchscript_export(tmp_path):
    run = make_run(tmp_path, "resnet20", 32)
    res = export_run(run, format="torchscript")
    assert Path(res.path) == run / "model.pt" and res.max_abs_diff is not None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated in favour of torch.export
        loaded = torch.jit.load(res.path)
    model, _ = load_run(run)
    x = torch.randn(5, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), atol=1e-4, rtol=1e-4)
    assert read_export_config(res.path)["classes"] == CLASSES


def test_check_detects_a_wrong_file(tmp_path):
    run = make_run(tmp_path, "resnet20", 32)
    res = export_run(run)
    other = create_model("resnet20", num_classes=len(CLASSES))
    torch.nn.init.normal_(other.get_classifier().weight, std=0.5)
    diff, scale = check_export(other, res.path, "onnx", (3, 32, 32))
    assert diff > 1e-2 and scale > 0


def test_export_user_errors(tmp_path):
    run = make_run(tmp_path, "resnet20", 32)
    with pytest.raises(ServingError, match="unknown export format"):
        export_run(run, format="tflite")
    with pytest.raises(ServingError, match="is a folder"):
        export_run(run, out=tmp_path)


def test_cli_export_prints_the_difference(tmp_path, capsys):
    run = make_run(tmp_path, "resnet20", 32)
    out = tmp_path / "exported" / "r20.onnx"
    assert main(["export", str(run), "--format", "onnx", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert f"wrote {out}" in text and "max abs diff" in text and out.exists()
    assert main(["export", str(run), "--format", "torchscript", "--json", "--out", str(tmp_path / "r20.pt")]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["format"] == "torchscript" and got["max_abs_diff"] <= 1e-3 * max(1.0, got["max_abs_logit"])
    assert main(["export", str(tmp_path / "nothing")]) == 2
    assert "no such run folder" in capsys.readouterr().err



def test_a_failed_check_leaves_nothing_at_the_path_and_keeps_a_good_file(tmp_path, monkeypatch):
    import lenet2vit.serving.export as export

    run = make_run(tmp_path, "resnet20", 32)
    good = export_run(run, format="torchscript")
    before = Path(good.path).read_bytes()
    real = export._run_export
    monkeypatch.setattr(export, "_run_export", lambda path, fmt, x: real(path, fmt, x) + 1.0)  # a wrong export
    with pytest.raises(ServingError, match=r"differs from PyTorch.*nothing was written to .*model\.pt"):
        export_run(run, format="torchscript")
    assert Path(good.path).read_bytes() == before  # the good file is untouched ...
    with pytest.raises(ServingError, match="differs from PyTorch"):
        export_run(run, format="onnx")
    assert not (run / "model.onnx").exists()  # ... and a bad one never appears
    assert [p.name for p in run.iterdir() if ".partial" in p.name] == []


def test_the_check_fails_a_model_whose_output_does_not_vary(tmp_path):
    from lenet2vit.serving.export import export_model

    run = make_run(tmp_path, "resnet20", 32)
    model, config = load_run(run)
    torch.nn.init.zeros_(model.get_classifier().weight)  # every input gets the classifier's bias
    with pytest.raises(ServingError, match="same output for 3 different inputs"):
        export_model(model, config, tmp_path / "dead.onnx")
    assert not (tmp_path / "dead.onnx").exists()
