"""One image file reaches the network as the same tensor through eval, predict, explain and serve."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lenet2vit.engine import TrainConfig, evaluate_run, train_run


def _photo(path: Path, seed: int, w: int = 500, h: int = 375) -> None:
    """A large, non-square JPEG with smooth structure (so resizing filters matter)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (h // 25, w // 25, 3), dtype=np.uint8)
    img = Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, "JPEG", quality=90)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("one-preprocessing")
    for split, n in (("train", 6), ("test", 2)):
        for c, cls in enumerate(("cat", "dog")):
            for i in range(n):
                _photo(root / "photos" / split / cls / f"{i}.jpg", seed=100 * c + 10 * i + (split == "test"))
    cfg = TrainConfig(optimizer="adam", lr=1e-3, epochs=1, batch_size=4, amp="fp32", device="cpu", mean=None,
                      std=None, val_fraction=0.25)
    # The folder is stored at 224 px and the network sees 32 px: both steps of the preprocessing matter.
    train_run("resnet20", out=root / "run", cfg=cfg, dataset="folder", data_dir=root / "photos", input_size=32,
              progress=False, log=lambda s: None)
    return root / "run", root / "photos" / "test" / "cat" / "0.jpg"


class Inputs:
    """Records what the top-level network receives (a global forward pre-hook)."""

    def __init__(self, model_class: type) -> None:
        self.model_class, self.seen = model_class, []

    def __enter__(self):
        def hook(module, args):
            if type(module) is self.model_class:
                self.seen.append(args[0].detach().float().contiguous().clone())

        self.handle = torch.nn.modules.module.register_module_forward_pre_hook(hook)
        return self

    def __exit__(self, *exc):
        self.handle.remove()


def test_the_same_file_is_the_same_tensor_on_every_path(run, tmp_path):
    from lenet2vit.engine import load_run
    from lenet2vit.explain.run import explain_run
    from lenet2vit.serving import predict_files

    run_dir, photo = run
    model, config = load_run(run_dir)
    assert config["dataset"]["image_size"] == 224 and config["input_size"] == 32
    arch = type(model)

    with Inputs(arch) as ev:  # eval's data path: the decoded, stored test split through the loader
        evaluate_run(run_dir, split="test", device="cpu", progress=False, tta="none", amp="fp32")
    eval_x = ev.seen[0][0]  # the test split is read in sorted order: test/cat/0.jpg comes first
    assert eval_x.shape == (3, 32, 32)

    with Inputs(arch) as pr:
        predict_files(run_dir, [photo], k=1)
    with Inputs(arch) as ex:
        explain_run(str(run_dir), method="gradcam", out=tmp_path / "explain", image_files=[photo], log=lambda s: None)
    fastapi = pytest.importorskip("fastapi.testclient")
    from lenet2vit.serving.app import create_app

    with Inputs(arch) as sv:
        client = fastapi.TestClient(create_app([run_dir]))
        answer = client.post("/api/predict", files={"file": ("0.jpg", photo.read_bytes(), "image/jpeg")})
        assert answer.status_code == 200, answer.text

    for name, seen in (("predict", pr.seen), ("explain", ex.seen), ("serve", sv.seen)):
        assert seen, f"{name} never ran the network"
        x = seen[0][0]
        assert torch.equal(x, eval_x), f"{name} feeds other pixels than eval (max diff {(x - eval_x).abs().max():g})"


def test_a_phone_photo_is_upright_on_every_path(tmp_path):
    from lenet2vit.data import Preprocess, decode_image_bytes, load_split
    from lenet2vit.serving import open_image

    a = np.zeros((40, 80, 3), dtype=np.uint8)
    a[:, :40] = 255  # stored landscape: white left half
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display": the white half ends up on top
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "JPEG", exif=exif, quality=95)
    for split in ("train", "test"):
        for cls in ("a", "b"):
            (tmp_path / split / cls).mkdir(parents=True)
            (tmp_path / split / cls / "p.jpg").write_bytes(buf.getvalue())
    decoded = decode_image_bytes(buf.getvalue())
    assert decoded.shape == (3, 80, 40) and decoded[:, :40].float().mean() > 200 > 50 > decoded[:, 40:].float().mean()
    assert torch.equal(open_image(buf.getvalue()), decoded)
    stored = load_split("folder", tmp_path, "test", progress=False).images[0]
    assert torch.equal(stored, Preprocess(224, (0.5,) * 3, (0.5,) * 3).crop(decoded))
