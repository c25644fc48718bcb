"""`lenet2vit predict`: the run's own preprocessing, folder walks, per-file errors, table and JSON."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms.v2 as T
from PIL import Image

from lenet2vit import create_model
from lenet2vit.cli import main
from lenet2vit.engine.run_folder import load_run
from lenet2vit.serving import Predictor, Preprocess, ServingError, find_images, open_image, predict_files, save_run

CLASSES = ["airplane", "automobile", "bird", "cat", "deer"]
MEAN, STD = [0.49, 0.48, 0.45], [0.25, 0.24, 0.26]


def _image(path: Path, w: int, h: int, seed: int = 0, mode: str = "RGB") -> Path:
    rng = np.random.default_rng(seed)
    shape = (h, w, 3) if mode == "RGB" else (h, w)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(path)
    return path


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = create_model("resnet20", num_classes=len(CLASSES))
    nn_head = model.get_classifier()
    torch.nn.init.normal_(nn_head.weight, std=0.05)  # distinct, untied probabilities
    return save_run(model, tmp_path_factory.mktemp("runs") / "r20", classes=CLASSES, input_size=32, mean=MEAN, std=STD)




@pytest.fixture
def images(tmp_path) -> Path:
    d = tmp_path / "imgs"
    _image(d / "wide.png", 60, 40, seed=1)
    _image(d / "tall.jpg", 33, 50, seed=2)
    _image(d / "nested" / "deep" / "grey.png", 32, 32, seed=3, mode="L")
    (d / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG")
    (d / "notes.txt").write_text("not an image, and not picked up by the folder walk")
    (d / ".hidden.png").write_bytes(b"skipped: hidden")
    return d


# ----------------------------------------------------------------------------- preprocessing


@pytest.mark.parametrize("w,h", [(60, 40), (61, 40), (33, 50), (32, 32), (20, 27)])
def test_preprocess_matches_torchvision_resize_and_center_crop(w, h):
    a = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    pre = Preprocess(32, tuple(MEAN), tuple(STD), 3)
    ref = T.Compose([T.Resize(32, antialias=True), T.CenterCrop(32), T.ToDtype(torch.float32, scale=True),
                     T.Normalize(MEAN, STD)])(torch.from_numpy(a).permute(2, 0, 1))
    x = pre(Image.fromarray(a))
    assert x.shape == (3, 32, 32)
    # the same sizes, offsets and filter; an upscale may round a pixel one level the other way
    torch.testing.assert_close(x, ref, atol=1.001 / 255 / min(STD), rtol=0)
    torch.testing.assert_close(pre(torch.from_numpy(a).permute(2, 0, 1)), x, atol=0, rtol=0)  # tensor or PIL alike


def test_exif_rotation_is_applied(tmp_path):
    a = np.zeros((20, 40, 3), dtype=np.uint8)  # stored landscape ...
    exif = Image.Exif()
    exif[0x0112] = 6  # ... with "rotate 90 degrees clockwise to display"
    Image.fromarray(a).save(tmp_path / "phone.jpg", exif=exif)
    assert open_image(tmp_path / "phone.jpg").shape == (3, 40, 20)


def test_preprocess_normalises_with_the_run_statistics():
    pre = Preprocess(16, tuple(MEAN), tuple(STD), 3)
    x = pre(Image.new("RGB", (20, 16), (200, 100, 0)))
    want = (torch.tensor([200, 100, 0]) / 255 - torch.tensor(MEAN)) / torch.tensor(STD)
    torch.testing.assert_close(x.mean(dim=(1, 2)), want, atol=1e-5, rtol=0)
    assert x.std(dim=(1, 2)).max() < 1e-5  # a flat image stays flat


def test_preprocess_one_channel_models_get_greyscale():
    pre = Preprocess(32, (0.5,), (0.5,), 1)
    x = pre(Image.new("RGB", (64, 48), (255, 0, 0)))
    assert x.shape == (1, 32, 32)
    grey = Image.new("RGB", (1, 1), (255, 0, 0)).convert("L").getpixel((0, 0))
    torch.testing.assert_close(x[0, 0, 0], torch.tensor((grey / 255 - 0.5) / 0.5), atol=1e-5, rtol=0)


def test_center_crop_keeps_the_middle_of_a_wide_image():
    a = np.zeros((32, 96, 3), dtype=np.uint8)
    a[:, 32:64] = 255  # white middle third, black sides
    crop = Preprocess(32, (0, 0, 0), (1, 1, 1)).crop(Image.fromarray(a))
    assert crop.shape == (3, 32, 32) and crop.dtype == torch.uint8
    assert int(crop.min()) == 255


# ----------------------------------------------------------------------------- files


def test_find_images_walks_folders_in_order(images, tmp_path):
    found = find_images([images / "wide.png", images, tmp_path / "missing.png"])
    paths = [p for p, problem in found if problem is None]
    assert paths[0] == images / "wide.png"
    walked = {p.relative_to(images).as_posix() for p in paths[1:]}
    assert walked == {"broken.jpg", "tall.jpg", "wide.png", "nested/deep/grey.png"}
    assert found[-1] == (tmp_path / "missing.png", "no such file or folder")


def test_open_image_errors_are_clear(tmp_path):
    good = _image(tmp_path / "ok.png", 50, 40)
    with pytest.raises(ServingError, match="not an image"):
        open_image(b"GIF89a? not really")
    with pytest.raises(ServingError, match="empty"):
        open_image(b"")
    with pytest.raises(ServingError, match="damaged"):
        open_image(good.read_bytes()[:80])  # truncated PNG
    with pytest.raises(ServingError, match="pixels") as e:
        open_image(good, max_pixels=1000)
    assert e.value.status == 413
    assert open_image(good).shape == (3, 40, 50)


def test_predictions_match_the_model_on_the_preprocessed_image(run_dir, images):
    results = predict_files(run_dir, [images / "wide.png", images / "tall.jpg"], k=3, batch_size=1)
    model, config = load_run(run_dir)
    pre = Preprocess.from_config(config)
    for row in results:
        with torch.no_grad():
            probs = model(pre(Image.open(row["path"])).unsqueeze(0)).softmax(-1)[0]
        order = probs.argsort(descending=True)[:3]
        assert [t["class"] for t in row["top"]] == [CLASSES[i] for i in order]
        torch.testing.assert_close(torch.tensor([t["probability"] for t in row["top"]]), probs[order], atol=1e-5, rtol=0)


def test_bad_files_are_reported_and_the_rest_predicted(run_dir, images):
    results = predict_files(run_dir, [images, images / "notes.txt", images / "nope.png"], k=10)
    by_name = {Path(r["path"]).name: r for r in results}
    assert set(by_name) == {"broken.jpg", "tall.jpg", "wide.png", "grey.png", "notes.txt", "nope.png"}
    assert "damaged" in by_name["broken.jpg"]["error"]  # a JPEG header, then garbage
    assert "not an image" in by_name["notes.txt"]["error"]
    assert by_name["nope.png"]["error"] == "no such file or folder"
    for good in ("tall.jpg", "wide.png", "grey.png"):
        top = by_name[good]["top"]
        assert len(top) == len(CLASSES)  # k is capped at the class count
        probs = [t["probability"] for t in top]
        assert probs == sorted(probs, reverse=True) and abs(sum(probs) - 1) < 1e-4


def test_batching_does_not_change_results(run_dir, images):
    one = predict_files(run_dir, [images], batch_size=1)
    many = predict_files(run_dir, [images], batch_size=64)
    assert [(r["path"], r.get("error")) for r in one] == [(r["path"], r.get("error")) for r in many]
    for r1, r2 in zip(one, many):
        assert [t["class"] for t in r1.get("top", [])] == [t["class"] for t in r2.get("top", [])]
        assert [t["probability"] for t in r1.get("top", [])] == pytest.approx([t["probability"] for t in r2.get("top", [])], abs=1e-5)


def test_greyscale_run(tmp_path, images):
    torch.manual_seed(0)
    run = save_run(create_model("lenet5", num_classes=3), tmp_path / "lenet", classes=["0", "1", "2"],
                   input_size=32, mean=[0.5], std=[0.5])
    p = Predictor.from_run(run)
    assert p.preprocess.in_chans == 1 and p.name == "lenet"
    rows = predict_files(p, [images / "wide.png", images / "nested"], k=2)
    assert all(len(r["top"]) == 2 for r in rows)


# ----------------------------------------------------------------------------- command line


def test_cli_table_and_exit_code(run_dir, images, capsys):
    code = main(["predict", str(run_dir), str(images / "wide.png"), str(images / "broken.jpg"), "-k", "2"])
    out, err = capsys.readouterr()
    assert code == 1  # one file failed
    assert "wide.png" in out and "broken.jpg: error: image data is damaged" in out
    ranked = [line.split()[1] for line in out.splitlines() if line.strip().startswith(("1.", "2."))]
    assert len(ranked) == 2 and set(ranked) <= set(CLASSES)
    assert "1 of 2 file(s)" in err


def test_cli_json_equals_library(run_dir, images, capsys):
    assert main(["predict", str(run_dir), str(images / "tall.jpg"), "--json", "--topk", "3"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got == predict_files(run_dir, [images / "tall.jpg"], k=3)


def test_cli_user_errors(tmp_path, images, capsys):
    assert main(["predict", str(tmp_path / "no-run"), str(images)]) == 2
    assert "no such run folder" in capsys.readouterr().err
    assert main(["predict", str(tmp_path), str(images / "wide.png")]) == 2
    assert "not a run folder" in capsys.readouterr().err


def test_cli_bad_device(run_dir, images, capsys):
    assert main(["predict", str(run_dir), str(images / "wide.png"), "--device", "gpu9"]) == 2
    assert "unknown device 'gpu9'" in capsys.readouterr().err
