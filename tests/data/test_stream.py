"""The streaming data path: lists of files decoded batch by batch, never the whole split."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lenet2vit.data import (
    DataError,
    DeviceLoader,
    ImageFiles,
    StreamLoader,
    choose_mode,
    index_train_val_test,
    load_train_val_test,
    memory_budget,
    streamable,
)
from lenet2vit.data import stream as stream_mod

@pytest.fixture
def photos(tmp_path, photo_folder) -> Path:
    return photo_folder(tmp_path / "photos")


def test_index_keeps_the_roles_and_decodes_nothing(photos, monkeypatch):
    decoded = []
    monkeypatch.setattr(stream_mod, "decode_image_bytes", lambda b: decoded.append(1))
    train, val, test = index_train_val_test("folder", photos, val_fraction=0.25, image_size=32)
    assert isinstance(train, ImageFiles) and decoded == []
    assert (len(train), len(val), len(test)) == (18, 6, 6)  # 24 train images, 25% of them held out; val/ is test
    assert train.origin == "train/" and test.origin == "val/" and val.origin == "25% held out of train/"
    assert not set(train.files) & set(val.files)
    assert all(f.startswith("val/") for f in test.files)
    # varied photos store at 224, as the memory path would, unless a size is asked
    assert index_train_val_test("folder", photos)[0].image_size == 224


def test_stream_eval_batches_equal_the_memory_path(photos):
    """Both paths feed the network the same test pixels: the one preprocessing."""
    files = index_train_val_test("folder", photos, image_size=48)[2]
    arrays = load_train_val_test("folder", photos, image_size=48, progress=False)[2]
    assert files.labels.tolist() == arrays.labels.tolist()
    kw = dict(shuffle=False, mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.3), image_size=32)
    streamed = list(StreamLoader(files, 4, workers=0, **kw))
    memory = list(DeviceLoader(arrays, 4, **kw))
    assert len(streamed) == len(memory) == 2
    for (xs, ys), (xm, ym) in zip(streamed, memory):
        assert xs.shape == (xs.shape[0], 3, 32, 32) and torch.equal(ys, ym)
        torch.testing.assert_close(xs, xm, rtol=0, atol=1e-6)


def test_stream_never_holds_the_split(photos, monkeypatch):
    """Only the images of the batch at hand are decoded: the split is never materialised."""
    files = index_train_val_test("folder", photos, image_size=32)[0]
    seen = []
    real = stream_mod.decode_image_bytes
    monkeypatch.setattr(stream_mod, "decode_image_bytes", lambda b: seen.append(1) or real(b))
    it = iter(StreamLoader(files, 4, shuffle=True, workers=0))
    x, y = next(it)
    assert x.shape == (4, 3, 32, 32) and len(seen) == 4 < len(files)
    next(it)
    assert len(seen) == 8
    assert not any(isinstance(v, torch.Tensor) and v.dtype == torch.uint8 for v in vars(files).values())


def test_train_views_do_not_depend_on_workers_or_ranks(photos):
    files = index_train_val_test("folder", photos, image_size=32)[0]
    kw = dict(shuffle=True, seed=3, flip=True)
    one = torch.cat([x for x, _ in StreamLoader(files, 6, workers=0, **kw)])
    two_workers = torch.cat([x for x, _ in StreamLoader(files, 6, workers=2, **kw)])
    assert torch.equal(one, two_workers)
    ranks = [list(StreamLoader(files, 6, workers=0, rank=r, world_size=2, **kw)) for r in (0, 1)]
    joined = torch.cat([torch.cat([a[0], b[0]]) for a, b in zip(*ranks)])
    assert torch.equal(joined, one[: len(joined)])  # each rank decodes its share of every global batch
    again = StreamLoader(files, 6, workers=0, **kw)
    again.set_epoch(1)
    assert not torch.equal(torch.cat([x for x, _ in again]), one)  # a new epoch, new crops


def test_an_unreadable_file_is_replaced_and_said(photos, capfd):
    bad = photos / "train" / "cat" / "000.jpg"
    bad.write_bytes(b"not a jpeg")
    files = index_train_val_test("folder", photos, image_size=32, val_fraction=0.0)[0]
    batches = list(StreamLoader(files, 8, shuffle=False, workers=0))
    assert sum(len(y) for _, y in batches) == len(files)
    assert "cannot read train/cat/000.jpg" in capfd.readouterr().err


def test_the_memory_budget_chooses_the_path(monkeypatch):
    monkeypatch.setenv("LENET2VIT_MEMORY_BUDGET", "1M")
    assert memory_budget() == 2**20
    assert choose_mode("auto", 100, 32)[0] == "memory"  # 0.3 MB
    mode, why = choose_mode("auto", 1000, 224)  # 150 MB
    assert mode == "stream" and "over the memory budget" in why
    assert choose_mode("memory", 1000, 224)[0] == "memory"
    monkeypatch.setenv("LENET2VIT_MEMORY_BUDGET", "lots")
    with pytest.raises(DataError, match="write e.g. 8G"):
        memory_budget()
    with pytest.raises(DataError, match="choose one of"):
        choose_mode("fast", 1, 1)


def test_only_a_folder_on_disk_streams(photos, tmp_path):
    import shutil

    assert streamable("folder", photos) and not streamable("digits", None)
    archive = shutil.make_archive(str(tmp_path / "photos"), "zip", photos)
    assert not streamable("folder", archive)
    with pytest.raises(DataError, match="extract it"):
        index_train_val_test("folder", archive)


def test_train_and_eval_a_streamed_run(photos, tmp_path, monkeypatch):
    """An ImageNet-shaped folder over the memory budget trains from disk, end to end."""
    from lenet2vit.engine import evaluate_run
    from lenet2vit.engine.config import PRESETS
    from lenet2vit.engine.run import train_run

    monkeypatch.setenv("LENET2VIT_MEMORY_BUDGET", "64K")  # the folder decodes to ~2 MB at 48 px
    cfg = PRESETS["fast"].replace(epochs=1, batch_size=8, workers=0, device="cpu", tta="none")
    out = tmp_path / "run"
    lines = []
    res = train_run("resnet20", out=out, cfg=cfg, dataset="folder", data_dir=photos, input_size=48,
                    progress=False, log=lines.append)
    config = json.loads((out / "config.json").read_text())
    assert config["dataset"]["mode"] == "stream" and config["dataset"]["roles"]["test"] == "val/"
    assert any(line.startswith("data path: stream") for line in lines)
    assert any("RandomResizedCrop" in line and "crop_padding 4" in line for line in lines)
    ev = evaluate_run(out, device="cpu", progress=False)
    assert ev["n"] == 6 and abs(ev["top1"] - res["test_top1"]) < 1e-9


def test_split_folders_named_one_by_one(tmp_path, photo_folder):
    """--train-dir/--val-dir/--test-dir: three folders anywhere, each of class folders."""
    import shutil

    from lenet2vit.data import load_train_val_test as load

    src = photo_folder(tmp_path / "src", splits=("train", "val", "test"))
    dirs = {"train": tmp_path / "a" / "mine", "val": tmp_path / "b" / "held", "test": tmp_path / "c" / "exam"}
    for role, d in dirs.items():
        shutil.copytree(src / role, d)
    train, val, test = load("folder", dirs, image_size=32, progress=False)
    assert (len(train), len(val), len(test)) == (24, 6, 6)
    assert test.origin == f"{dirs['test']}/" and val.origin == f"{dirs['val']}/"
    files = index_train_val_test("folder", dirs, image_size=32)
    assert [len(f) for f in files] == [24, 6, 6] and files[0].root == dirs["train"]
    held = load("folder", {"train": dirs["train"], "test": dirs["test"]}, val_fraction=0.25, image_size=32,
                progress=False)
    assert (len(held[0]), len(held[1])) == (18, 6) and held[1].origin == f"25% held out of {dirs['train']}/"
    with pytest.raises(DataError, match="at least a train and a test folder"):
        load("folder", {"train": dirs["train"]}, progress=False)
    (dirs["test"] / "yak").mkdir()
    (dirs["test"] / "yak" / "x.jpg").write_bytes((dirs["test"] / "cat" / "000.jpg").read_bytes())
    with pytest.raises(DataError, match="yak"):
        load("folder", dirs, image_size=32, progress=False)


def test_the_cli_trains_and_evaluates_from_split_folders(tmp_path, photo_folder, capsys):
    from lenet2vit.cli import main

    src = photo_folder(tmp_path / "src", splits=("train", "test"))
    out = tmp_path / "run"
    argv = ["--train-dir", str(src / "train"), "--test-dir", str(src / "test")]
    assert main(["train", "resnet20", *argv, "--epochs", "1", "--batch-size", "8", "--input-size", "32",
                 "--device", "cpu", "--no-progress", "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["dataset"]["data_dir"] == {"train": str(src / "train"), "test": str(src / "test")}
    assert config["dataset"]["roles"]["test"] == f"{src / 'test'}/"
    capsys.readouterr()
    assert main(["eval", str(out), "--device", "cpu", "--no-progress", "--json"]) == 0  # reads the stored folders
    assert json.loads(capsys.readouterr().out)["n"] == 6
    assert main(["train", "resnet20", *argv, "--data-dir", str(src), "--out", str(tmp_path / "x")]) == 2


def _mixed_formats(photos: Path) -> None:
    """Files nvJPEG must not take: a PNG, a CMYK JPEG, an EXIF-rotated JPEG, and a broken one."""
    import io

    from PIL import Image

    rgb = Image.open(photos / "train" / "dog" / "001.jpg").convert("RGB")
    rgb.save(photos / "train" / "dog" / "001.jpg".replace(".jpg", "-png.png"))
    rgb.convert("CMYK").save(photos / "train" / "emu" / "cmyk.jpg", quality=90)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    rgb.save(photos / "train" / "cat" / "rotated.jpg", quality=90, exif=exif.tobytes())
    buf = io.BytesIO()
    rgb.save(buf, "JPEG", quality=90)
    (photos / "train" / "emu" / "broken.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 3])


@pytest.mark.parametrize("train", [False, True])
def test_decoding_on_the_device_gives_the_workers_batches(photos, train, capfd):
    """--gpu-decode's path (workers read bytes, one batched decode_jpeg on the device, the crops
    made there) run with the CPU as the device: the same views and labels, bit for bit, through
    every fallback (PNG, CMYK, EXIF rotation, a truncated JPEG)."""
    _mixed_formats(photos)
    files = index_train_val_test("folder", photos, image_size=32, val_fraction=0.0)[0]
    assert {"train/dog/001-png.png", "train/emu/cmyk.jpg", "train/cat/rotated.jpg"} <= set(files.files)
    calls = []
    real = stream_mod.decode_on_device
    kw = dict(shuffle=train, seed=5, flip=train, workers=0)
    reference = list(StreamLoader(files, 7, **kw))
    with pytest.MonkeyPatch.context() as m:
        m.setattr(stream_mod, "decode_on_device", lambda *a: calls.append(len(a[0])) or real(*a))
        on_device = list(StreamLoader(files, 7, decode_device="cpu", **kw))
    assert calls and sum(calls) == sum(len(y) for _, y in reference)
    assert len(on_device) == len(reference)
    for (xd, yd), (xr, yr) in zip(on_device, reference):
        assert torch.equal(yd, yr)
        torch.testing.assert_close(xd, xr, rtol=0, atol=0)


def test_only_plain_jpegs_go_to_the_device_decoder(photos):
    _mixed_formats(photos)
    read = lambda p: (photos / p).read_bytes()  # noqa: E731
    assert stream_mod._gpu_decodable(read("train/cat/000.jpg"))
    for name in ("train/dog/001-png.png", "train/emu/cmyk.jpg", "train/cat/rotated.jpg"):
        assert not stream_mod._gpu_decodable(read(name)), name


def test_gpu_decode_needs_a_cuda_device(photos, tmp_path, monkeypatch):
    from lenet2vit.engine.config import PRESETS, ConfigError
    from lenet2vit.engine.run import train_run

    cfg = PRESETS["fast"].replace(epochs=1, batch_size=8, workers=0, device="cpu", data_mode="stream",
                                  gpu_decode=True)
    with pytest.raises(ConfigError, match="--gpu-decode decodes with nvJPEG on a CUDA device"):
        train_run("resnet20", out=tmp_path / "run", cfg=cfg, dataset="folder", data_dir=photos, input_size=32,
                  progress=False, log=lambda *_: None)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="nvJPEG decoding needs a CUDA device")
def test_nvjpeg_batches_match_the_cpu_decoder(photos):
    """nvJPEG's IDCT is not libjpeg's, so pixels may differ by a few levels; the views are the same."""
    _mixed_formats(photos)
    files = index_train_val_test("folder", photos, image_size=32, val_fraction=0.0)[0]
    kw = dict(shuffle=True, seed=5, flip=True, workers=0, device="cuda", mean=(0.5,) * 3, std=(0.5,) * 3)
    cpu = torch.cat([x for x, _ in StreamLoader(files, 7, **kw)])
    gpu = torch.cat([x for x, _ in StreamLoader(files, 7, decode_device="cuda", **kw)])
    assert gpu.device.type == "cuda" and gpu.shape == cpu.shape
    assert (gpu - cpu).abs().mean().item() < 4 / 255 / 0.5  # a few grey levels on average


def test_channel_statistics_of_a_streamed_split_never_hold_the_sample(photos, monkeypatch):
    """The run's mean and std of a streamed split are summed batch by batch (a sample of 2,048
    images at 224 px would otherwise take gigabytes per rank) and equal those of the whole sample."""
    from lenet2vit.data import channel_stats
    from lenet2vit.engine.config import PRESETS
    from lenet2vit.engine.run import _normalisation

    files = index_train_val_test("folder", photos, image_size=40, val_fraction=0.0)[0]
    whole = channel_stats(files.sample(20, seed=1))
    assert channel_stats(files.sample_batches(20, seed=1, batch=3)) == whole
    sizes = []
    real = stream_mod.ImageFiles.sample_batches
    monkeypatch.setattr(stream_mod.ImageFiles, "sample_batches",
                        lambda self, *a, **k: (sizes.append(len(b)) or b for b in real(self, *a, **k)))
    mean, std = _normalisation(PRESETS["fast"], files)
    assert sizes and max(sizes) <= 64 and sum(sizes) == len(files)
    assert (mean, std) == channel_stats(files.sample())
