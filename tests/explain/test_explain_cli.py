"""`lenet2vit explain` end to end on tiny runs trained in the test (digits, 1 epoch)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import lenet2vit.data as data
from lenet2vit.cli import main


@pytest.fixture(scope="module")
def runs(tmp_path_factory, _one_thread):
    """Two LeNet-5 runs (seeds 0 and 1) trained for one epoch on 300 digits."""
    from lenet2vit.engine import get_preset, train_run

    base = tmp_path_factory.mktemp("runs")
    arrays = data.load_train_val_test("digits", None, limit=300, progress=False)  # bundled: it must load
    out = []
    for seed in (0, 1):
        cfg = get_preset("quick").replace(epochs=1, batch_size=32, seed=seed, device="cpu", amp="fp32", limit=300)
        train_run("lenet5", out=base / f"lenet{seed}", cfg=cfg, dataset="digits", data=arrays, progress=False,
                  log=lambda _m: None)
        out.append(base / f"lenet{seed}")
    return out


@pytest.fixture
def image_files(tmp_path):
    from PIL import Image

    paths = []
    for i, size in enumerate([(40, 30), (32, 32)]):
        arr = (np.random.default_rng(i).random((size[1], size[0], 3)) * 255).astype(np.uint8)
        p = tmp_path / f"img{i}.png"
        Image.fromarray(arr).save(p)
        paths.append(str(p))
    return paths


def _explain(*args: str) -> int:
    return main(["explain", *map(str, args), "--device", "cpu", "--quiet"])


def test_gradcam_on_test_images_writes_png_and_npy(runs, tmp_path):
    out = tmp_path / "figs"
    assert _explain(runs[0], "--images", "test:2", "--method", "gradcam", "--out", out) == 0
    pngs, npys = sorted(out.glob("gradcam_*.png")), sorted(out.glob("gradcam_*.npy"))
    assert len(pngs) == 2 and len(npys) == 2
    assert pngs[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    m = np.load(npys[0])
    assert m.shape == (32, 32) and np.isfinite(m).all() and (m >= 0).all()


@pytest.mark.parametrize("method,pattern,shape", [
    ("occlusion", "occlusion_img*.npy", (32, 32)),
    ("feature-maps", "feature-maps_features.c1_img*.npy", (6, 28, 28)),
])
def test_methods_on_image_files(runs, image_files, tmp_path, method, pattern, shape):
    out = tmp_path / method
    assert _explain(runs[0], "--image", *image_files, "--method", method, "--out", out) == 0
    npys = sorted(out.glob(pattern))
    assert len(npys) == 2 and np.load(npys[0]).shape == shape
    assert len(list(out.glob("*.png"))) == 2


def test_filters_and_deconv(runs, tmp_path):
    out = tmp_path / "f"
    assert _explain(runs[0], "--method", "filters", "--out", out) == 0
    assert np.load(out / "filters.npy").shape == (6, 1, 5, 5) and (out / "filters.png").exists()
    assert _explain(runs[0], "--images", "test:4", "--method", "deconv", "--layer", "features.act3", "--top", "3",
                    "--out", out) == 0
    rec = np.load(out / "deconv_features.act3.npy")
    assert rec.shape[1:] == (1, 32, 32) and 1 <= rec.shape[0] <= 3
    assert (out / "deconv_features.act3.png").exists()


def test_side_by_side_of_two_runs(runs, tmp_path):
    out = tmp_path / "sbs"
    assert _explain(f"{runs[0]},{runs[1]}", "--images", "test:3", "--method", "auto", "--out", out) == 0
    assert (out / "side_by_side.png").read_bytes()[:4] == b"\x89PNG"
    maps = np.load(out / "side_by_side.npy")
    assert maps.shape == (3, 2, 32, 32)
    info = json.loads((out / "side_by_side.json").read_text())
    assert info["models"] == ["lenet0", "lenet1"] and len(info["images"]) == 3
    rec = info["images"][0]["models"]["lenet0"]
    assert rec["method"] == "gradcam" and len(rec["top3"]) == 3
    assert rec["correct"] == (rec["top3"][0][0] == info["images"][0]["true"])


def test_wrong_only_keeps_disputed_images(runs, tmp_path):
    out = tmp_path / "wrong"
    assert _explain(f"{runs[0]},{runs[1]}", "--images", "test:4", "--wrong-only", "--out", out) == 0
    for img in json.loads((out / "side_by_side.json").read_text())["images"]:
        said = {m["top3"][0][0] for m in img["models"].values()}
        assert len(said) > 1 or img["true"] not in said


def test_side_by_side_panel_bytes(runs):
    from lenet2vit.explain import side_by_side_panel

    test = data.load_split("digits", None, "test", progress=False)
    png = side_by_side_panel([str(r) for r in runs], test.images[:6], test.labels[:6].tolist(), test.classes,
                             max_images=2)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000


def test_user_errors_exit_2_with_one_line(runs, tmp_path, capsys):
    cases = [
        ([tmp_path / "nope", "--method", "filters"], "nope"),
        ([runs[0], "--images", "test:2", "--method", "attention"], "no attention"),
        ([runs[0], "--method", "gradcam"], "needs images"),
        ([runs[0], "--images", "test:2", "--method", "gradcam", "--layer", "features.c9"], "Did you mean"),
        ([runs[0], "--images", "val:2"], "SPLIT:N"),
        ([runs[0], "--images", "test:1", "--method", "deconv", "--layer", "classifier.f6"], "deconvnet"),
    ]
    for args, needle in cases:
        assert _explain(*args, "--out", tmp_path / "e") == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and needle in err and "\n" not in err
