"""Data sources: the three CIFAR-10 forms, image folders and their bad inputs, digits, the cache."""

from __future__ import annotations

import io
import os
import pickle
import tarfile
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import lenet2vit.data.sources as sources
from lenet2vit.data import CIFAR10_CLASSES, DataError, ImageArrays, load_split, load_train_val_test

# ------------------------------------------------------------------------------- fixtures


def cifar_like(per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random (N, 3, 32, 32) uint8 images grouped by class, with their labels."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(10), per_class)
    return rng.integers(0, 256, (len(labels), 3, 32, 32), dtype=np.uint8), labels


def write_batches(folder: Path, train: tuple, test: tuple) -> Path:
    """A cifar-10-batches-py folder in the official pickled format."""
    folder.mkdir(parents=True)
    parts = zip(np.array_split(train[0], 5), np.array_split(train[1], 5))
    for i, (x, y) in enumerate(parts, 1):
        batch = {b"batch_label": b"training batch", b"labels": y.tolist(), b"data": x.reshape(len(x), -1)}
        (folder / f"data_batch_{i}").write_bytes(pickle.dumps(batch, protocol=2))
    batch = {b"batch_label": b"testing batch", b"labels": test[1].tolist(), b"data": test[0].reshape(len(test[0]), -1)}
    (folder / "test_batch").write_bytes(pickle.dumps(batch, protocol=2))
    meta = {b"label_names": [c.encode() for c in CIFAR10_CLASSES], b"num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return folder


def write_tree(root: Path, splits: dict[str, tuple], classes=CIFAR10_CLASSES, fmt: str = "PNG") -> Path:
    """An ImageFolder tree root/<split>/<class>/NNNN.<fmt> of (N, C, H, W) arrays."""
    ext = {"PNG": "png", "JPEG": "jpg"}[fmt]
    for split, (x, y) in splits.items():
        for i, (img, label) in enumerate(zip(x, y)):
            d = root / split / classes[label]
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img.transpose(1, 2, 0)).save(d / f"{i:04d}.{ext}", fmt)
    return root


def encoded(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def rgb(seed: int = 0, size=(16, 16)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)


def small_folder(root: Path, n: int = 3, size: int = 16, classes=("cat", "dog")) -> Path:
    for c_i, c in enumerate(classes):
        for split in ("train", "test"):
            d = root / split / c
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.fromarray(rgb(100 * c_i + i, (size, size))).save(d / f"{i}.png")
    return root


def load(path, split="train", **kw) -> ImageArrays:
    kw.setdefault("cache_dir", path.parent / "cache" if isinstance(path, Path) else None)
    kw.setdefault("progress", False)
    return load_split(kw.pop("dataset", "folder"), path, split, **kw)


@pytest.fixture
def cifar_forms(tmp_path) -> dict:
    train, test = cifar_like(3, 0), cifar_like(1, 1)
    batches = write_batches(tmp_path / "official" / "cifar-10-batches-py", train, test)
    tree = write_tree(tmp_path / "tree" / "cifar10", {"train": train, "test": test})
    tgz = tmp_path / "cifar10.tar.gz"
    with tarfile.open(tgz, "w:gz") as tf:
        tf.add(tree, arcname="cifar10")  # one top-level folder inside
    zpath = tmp_path / "cifar10.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for f in sorted(tree.rglob("*.png")):
            zf.write(f, f.relative_to(tree).as_posix())  # no top-level folder
    official_tgz = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(official_tgz, "w:gz") as tf:
        tf.add(batches, arcname="cifar-10-batches-py")
    return {
        "expected": (train, test),
        "forms": {
            "batches": batches,
            "batches parent": batches.parent,
            "tree": tree,
            "tree parent": tree.parent,
            "tar.gz": tgz,
            "zip": zpath,
            "official tar.gz": official_tgz,
        },
    }


# ------------------------------------------------------------------------------- CIFAR-10


def test_all_cifar10_forms_give_the_same_arrays(cifar_forms, tmp_path):
    train, test = cifar_forms["expected"]
    for name, path in cifar_forms["forms"].items():
        for split, (x, y) in (("train", train), ("test", test)):
            a = load_split("cifar10", path, split, cache_dir=tmp_path / "cache" / name, progress=False)
            assert a.classes == CIFAR10_CLASSES, name
            assert a.images.dtype == torch.uint8 and a.images.is_contiguous()
            assert torch.equal(a.images, torch.from_numpy(x)), (name, split)
            assert torch.equal(a.labels, torch.from_numpy(y).long()), (name, split)
            assert a.skipped == [] and a.image_size == 32 and a.channels == 3


def test_cifar10_batches_can_be_resized(cifar_forms, tmp_path):
    path = cifar_forms["forms"]["batches"]
    a = load_split("cifar10", path, "test", image_size=48, cache_dir=tmp_path / "c", progress=False)
    assert a.images.shape == (10, 3, 48, 48)


def test_cifar10_pickles_cannot_run_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.mkdir, (str(tmp_path / "pwned"),))

    folder = write_batches(tmp_path / "cifar-10-batches-py", cifar_like(1, 0), cifar_like(1, 1))
    (folder / "data_batch_1").write_bytes(pickle.dumps({b"data": Evil(), b"labels": [0]}))
    with pytest.raises(DataError, match="not a readable CIFAR-10 batch"):
        load_split("cifar10", folder, "train", cache_dir=tmp_path / "c", progress=False)
    assert not (tmp_path / "pwned").exists()


def test_cifar10_download_offline_is_a_clear_error(tmp_path, monkeypatch):
    import torchvision.datasets

    def offline(*args, **kwargs):
        raise OSError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    with pytest.raises(DataError, match=r"could not download CIFAR-10 \(no network\?\).*--data-dir"):
        load_split("cifar10", tmp_path / "fresh", "train", download=True, cache_dir=tmp_path / "c")
    with pytest.raises(DataError, match="could not download CIFAR-10"):
        load_split("cifar10", None, "train", download=True, cache_dir=tmp_path / "c")


def test_cifar10_download_uses_existing_data_and_the_cache_folder(cifar_forms, tmp_path, monkeypatch):
    import torchvision.datasets

    calls = []

    def fake_download(root, train, download):
        calls.append(root)
        write_batches(Path(root) / "cifar-10-batches-py", cifar_like(1, 0), cifar_like(1, 1))

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", fake_download)
    # data already there: nothing is fetched
    there = cifar_forms["forms"]["batches parent"]
    load_split("cifar10", there, "test", download=True, cache_dir=tmp_path / "c", progress=False)
    assert calls == []
    # no data_dir: fetched into the cache folder once, found there afterwards without download
    a = load_split("cifar10", None, "test", download=True, cache_dir=tmp_path / "c", progress=False)
    b = load_split("cifar10", None, "test", cache_dir=tmp_path / "c", progress=False)
    assert calls == [str(tmp_path / "c")] and torch.equal(a.images, b.images)


def test_cifar10_without_location_or_test_split(tmp_path):
    with pytest.raises(DataError, match="no CIFAR-10 location given"):
        load_split("cifar10", None, "train", cache_dir=tmp_path / "c")
    tree = write_tree(tmp_path / "t", {"train": cifar_like(1, 0)})
    with pytest.raises(DataError, match="no test/ folder"):
        load_split("cifar10", tree, "train", cache_dir=tmp_path / "c", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no CIFAR-10 data"):
        load_split("cifar10", tmp_path / "empty", "train", cache_dir=tmp_path / "c")


def test_unknown_dataset_and_split(tmp_path):
    with pytest.raises(DataError, match="unknown dataset 'mnist'"):
        load_split("mnist", tmp_path, "train")
    with pytest.raises(DataError, match="unknown split 'val'"):
        load_split("digits", None, "val")
    assert sources.canonical_dataset("CIFAR-10") == "cifar10"


# ------------------------------------------------------------------------------- folders


@pytest.fixture(params=["torchvision", "pil"])
def decoder(request, monkeypatch) -> str:
    """Run a test with torchvision's decoders, and with PIL alone (the fallback)."""
    if request.param == "pil":
        import lenet2vit.data.decode

        monkeypatch.setattr(lenet2vit.data.decode, "_tv_decode_image", None)
    return request.param


def test_folder_modes_are_converted_to_rgb(tmp_path, decoder):
    base = rgb(1)
    d = tmp_path / "data" / "train" / "a"
    d.mkdir(parents=True)
    img = Image.fromarray(base)
    (d / "rgb.png").write_bytes(encoded(img))
    (d / "rgba.png").write_bytes(encoded(img.convert("RGBA")))
    pal = img.convert("P")
    (d / "palette.png").write_bytes(encoded(pal))
    (d / "gray.png").write_bytes(encoded(img.convert("L")))
    (d / "cmyk.jpg").write_bytes(encoded(img.convert("CMYK"), "JPEG", quality=100))
    sixteen = (base[..., 0].astype(np.uint16) * 257 + 100).astype(np.uint16)  # 16-bit grey
    (d / "sixteen.png").write_bytes(encoded(Image.fromarray(sixteen)))
    (tmp_path / "data" / "train" / "b").mkdir()
    Image.fromarray(rgb(2)).save(tmp_path / "data" / "train" / "b" / "x.bmp")
    (tmp_path / "data" / "test" / "b").mkdir(parents=True)  # a test split, so train keeps every image
    Image.fromarray(rgb(3)).save(tmp_path / "data" / "test" / "b" / "y.png")

    a = load(tmp_path / "data")
    assert a.skipped == [] and len(a) == 7 and a.images.shape[1:] == (3, 16, 16)
    names = ["cmyk", "gray", "palette", "rgb", "rgba", "sixteen"]  # sorted file names in class a
    got = {n: a.images[i].permute(1, 2, 0).numpy() for i, n in enumerate(names)}
    assert np.array_equal(got["rgb"], base)
    assert np.array_equal(got["rgba"], base)
    assert np.array_equal(got["palette"], np.asarray(pal.convert("RGB")))
    grey = np.asarray(img.convert("L"))
    assert all(np.array_equal(got["gray"][..., c], grey) for c in range(3))
    assert np.abs(got["cmyk"].astype(int) - base).mean() < 12  # JPEG is lossy
    expected16 = np.round(sixteen / 257).astype(np.uint8)
    assert all(np.abs(got["sixteen"][..., c].astype(int) - expected16).max() <= 1 for c in range(3))
    assert got["sixteen"].max() > 200  # scaled, not clipped to 255 or cut to the low byte
    assert torch.equal(a.labels, torch.tensor([0] * 6 + [1]))


def test_unreadable_files_are_skipped_with_one_warning(tmp_path, decoder):
    root = small_folder(tmp_path / "data", n=4)
    cat = root / "train" / "cat"
    good_png = encoded(Image.fromarray(rgb(5)))
    (cat / "truncated.png").write_bytes(good_png[: len(good_png) // 2])
    (cat / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4)
    (cat / "text.jpg").write_bytes(b"this is not an image\n")
    (cat / "zero.png").write_bytes(b"")
    (cat / "README.txt").write_text("not an image extension: ignored")
    with pytest.warns(UserWarning, match="skipped 4 unreadable") as rec:
        a = load(root)
    assert len([w for w in rec if "unreadable" in str(w.message)]) == 1
    bad = ("truncated.png", "corrupt.jpg", "text.jpg", "zero.png")
    assert sorted(a.skipped) == sorted(f"train/cat/{n}" for n in bad)
    assert len(a) == 8 and torch.equal(torch.bincount(a.labels), torch.tensor([4, 4]))

    with pytest.raises(DataError, match=r"cannot read image train/cat/(corrupt|text)\.jpg"):
        load(root, strict=True, cache_dir=tmp_path / "other-cache")
    # strict also applies when the arrays come from the cache
    with pytest.raises(DataError, match="cannot read image train/cat/"):
        load(root, strict=True)


def test_hidden_files_and_folders_are_ignored(tmp_path):
    root = small_folder(tmp_path / "data", n=2)
    (root / "train" / ".cache").mkdir()
    Image.fromarray(rgb(9)).save(root / "train" / ".cache" / "x.png")
    (root / "train" / "cat" / ".DS_Store").write_bytes(b"\x00\x01junk")
    (root / "train" / "cat" / "._0.png").write_bytes(b"\x00\x05\x16\x07 apple double")
    (root / "train" / "cat" / ".hidden").mkdir()
    Image.fromarray(rgb(9)).save(root / "train" / "cat" / ".hidden" / "y.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        a = load(root)
    assert len(a) == 4 and a.classes == ["cat", "dog"] and a.skipped == []


def test_folder_structure_errors(tmp_path):
    root = small_folder(tmp_path / "empty-class")
    (root / "train" / "emu").mkdir()
    with pytest.raises(DataError, match="class folder train/emu .* has no images"):
        load(root)

    single = tmp_path / "single"
    (single / "train" / "cat").mkdir(parents=True)
    Image.fromarray(rgb()).save(single / "train" / "cat" / "a.png")
    with pytest.raises(DataError, match="need at least 2 classes, found only 'cat'"):
        load(single)

    flat = tmp_path / "flat"
    (flat / "train").mkdir(parents=True)
    Image.fromarray(rgb()).save(flat / "train" / "a.png")
    with pytest.raises(DataError, match="holds images but no class folders"):
        load(flat)

    extra = small_folder(tmp_path / "extra")
    (extra / "test" / "emu").mkdir()
    Image.fromarray(rgb()).save(extra / "test" / "emu" / "a.png")
    with pytest.raises(DataError, match="emu that train/ lacks"):
        load(extra, "test")

    with pytest.raises(DataError, match="does not exist"):
        load(tmp_path / "nowhere")
    fake = tmp_path / "data.tar.gz"
    fake.write_bytes(b"\x1f\x8b definitely not a gzipped tar")
    with pytest.raises(DataError, match="is not a folder or a tar/zip archive"):
        load(fake)
    truncated = tmp_path / "cut.tar.gz"
    with tarfile.open(truncated, "w:gz") as tf:
        tf.add(small_folder(tmp_path / "to-cut", n=20), arcname="d")
    truncated.write_bytes(truncated.read_bytes()[:3000])
    with pytest.raises(DataError, match="cannot read archive"):
        load(truncated)
    with pytest.raises(DataError, match="needs data_dir"):
        load_split("folder", None, "train")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root can read any file")
def test_files_without_read_permission_are_skipped(tmp_path):
    root = small_folder(tmp_path / "data", n=2)
    locked = root / "train" / "cat" / "0.png"
    locked.chmod(0)
    try:
        with pytest.warns(UserWarning, match="skipped 1 unreadable"):
            a = load(root)
        assert a.skipped == ["train/cat/0.png"]
    finally:
        locked.chmod(0o644)


def test_image_size_rules(tmp_path):
    same = small_folder(tmp_path / "same", size=20)
    assert load(same).image_size == 20  # one square size: kept

    mixed = small_folder(tmp_path / "mixed", size=20)
    Image.fromarray(rgb(3, (30, 40))).save(mixed / "train" / "dog" / "wide.png")
    a = load(mixed)
    assert a.image_size == 224 and load(mixed, "test").image_size == 224  # both splits share it
    assert load(mixed, image_size=24).images.shape[1:] == (3, 24, 24)

    # shorter side to the size, then a center crop
    wide = np.zeros((20, 40, 3), np.uint8)
    wide[:, 6:34] = 200
    one = small_folder(tmp_path / "crop", size=20)
    Image.fromarray(wide).save(one / "train" / "dog" / "wide.png")
    b = load(one, image_size=10)
    img = b.images[len(b) - 1]
    assert b.image_size == 10 and int(img.min()) >= 190  # only the bright middle is left


def test_train_only_folder_holds_out_a_stratified_test_split(tmp_path):
    root = tmp_path / "data"
    for c in ("a", "b", "c"):
        (root / "train" / c).mkdir(parents=True)
        for i in range(10):
            Image.fromarray(rgb(i, (8, 8))).save(root / "train" / c / f"{i}.png")
    tr, te = load(root, "train"), load(root, "test")
    assert len(tr) == 24 and len(te) == 6
    assert torch.equal(torch.bincount(te.labels), torch.tensor([2, 2, 2]))
    images, labels = torch.cat([tr.images, te.images]), torch.cat([tr.labels, te.labels])
    pairs = {(bytes(x.flatten().numpy()), int(y)) for x, y in zip(images, labels)}
    assert len(pairs) == 30  # disjoint, nothing lost
    again = load(root, "test", cache_dir=tmp_path / "fresh-cache")
    assert torch.equal(again.images, te.images)  # fixed by the seed

    flat = tmp_path / "flat" / "pets"  # class folders with no train/ level, inside one top folder
    for c in ("a", "b"):
        (flat / c).mkdir(parents=True)
        for i in range(5):
            Image.fromarray(rgb(i, (8, 8))).save(flat / c / f"{i}.png")
    f_tr, f_te = load(flat.parent, "train"), load(flat.parent, "test")
    assert f_tr.classes == ["a", "b"] and len(f_tr) == 8 and len(f_te) == 2


# ------------------------------------------------------------------------------- digits


def test_digits_offline(tmp_path):
    tr, te = load_split("digits", None, "train"), load_split("digits", None, "test")
    assert len(tr) + len(te) == 1797 and abs(len(te) - 0.2 * 1797) < 10
    assert tr.images.shape[1:] == (1, 32, 32) and tr.classes == [str(i) for i in range(10)]
    assert int(tr.images.max()) == 255 and int(tr.images.min()) == 0
    counts = torch.bincount(te.labels, minlength=10).float() / torch.bincount(torch.cat([tr.labels, te.labels])).float()
    assert bool(((counts - 0.2).abs() < 0.02).all())  # stratified
    assert torch.equal(load_split("digits", tmp_path, "test").images, te.images)  # data_dir ignored, fixed split
    assert load_split("digits", None, "train", image_size=16).image_size == 16


def test_load_train_val_test_with_limit():
    train, val, test = load_train_val_test("digits", None, val_fraction=0.1, seed=3, limit=200)
    assert len(train) + len(val) == 200 and len(test) == 40
    assert torch.equal(torch.bincount(torch.cat([train.labels, val.labels])), torch.full((10,), 20))
    assert torch.equal(torch.bincount(val.labels), torch.full((10,), 2))
    assert torch.equal(torch.bincount(test.labels), torch.full((10,), 4))
    again = load_train_val_test("digits", None, val_fraction=0.1, seed=3, limit=200)
    assert all(torch.equal(a.images, b.images) for a, b in zip((train, val, test), again))
    full_train, _, full_test = load_train_val_test("digits", None)
    assert len(full_test) == len(load_split("digits", None, "test"))
    with pytest.raises(DataError, match="limit must be"):
        load_train_val_test("digits", None, limit=0)


# ------------------------------------------------------------------------------- cache


def test_cache_hit_and_corrupt_cache_rebuilt(cifar_forms, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    path = cifar_forms["forms"]["tar.gz"]
    first = load_split("cifar10", path, "train", cache_dir=cache, progress=False)
    files = sorted(cache.glob("*.safetensors"))
    assert len(files) == 3  # every split comes from one pass over the archive (val: empty, it has no val/)

    def no_decoding(*a, **k):
        raise AssertionError("decoded although cached")

    with monkeypatch.context() as m:
        m.setattr(sources._Source, "build", no_decoding)
        hit = load_split("cifar10", path, "train", cache_dir=cache)
        test = load_split("cifar10", path, "test", cache_dir=cache)
    assert torch.equal(hit.images, first.images) and torch.equal(hit.labels, first.labels)
    assert hit.classes == first.classes and len(test) == 10

    train_file = next(f for f in files if f.name.startswith("cifar10-train"))
    for damage in (b"garbage", train_file.read_bytes()[:-100]):
        train_file.write_bytes(damage)
        with pytest.warns(UserWarning, match="ignoring the unreadable data cache"):
            again = load_split("cifar10", path, "train", cache_dir=cache, progress=False)
        assert torch.equal(again.images, first.images)
    data = bytearray(train_file.read_bytes())
    data[-500] ^= 0xFF  # one flipped bit pattern inside the pixels: caught by the checksum
    train_file.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="ignoring the unreadable data cache"):
        again = load_split("cifar10", path, "train", cache_dir=cache, progress=False)
    assert torch.equal(again.images, first.images)
    assert not list(cache.glob("*.tmp"))


def test_cache_notices_new_files_and_uses_the_env_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("LENET2VIT_CACHE", str(tmp_path / "env-cache"))
    root = small_folder(tmp_path / "data", n=2)
    assert len(load_split("folder", root, "train", progress=False)) == 4
    assert list((tmp_path / "env-cache").glob("folder-train-*.safetensors"))
    Image.fromarray(rgb(7)).save(root / "train" / "dog" / "new.png")
    os.utime(root / "train" / "dog", ns=(1, 1))  # an mtime that surely differs
    assert len(load_split("folder", root, "train", progress=False)) == 5


def test_unwritable_cache_only_warns(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    root = small_folder(tmp_path / "data", n=1)
    with pytest.warns(UserWarning, match="could not write the data cache"):
        a = load_split("folder", root, "train", cache_dir=blocker / "sub", progress=False)
    assert len(a) == 2


# ------------------------------------------------------------------------------- the real data


@pytest.mark.data
@pytest.mark.slow
@pytest.mark.parametrize("archive", ["cifar_archive", "cifar_jpeg_archive"], ids=["png-zip", "jpeg-tar-gz"])
def test_real_cifar10_archives(tmp_path, request, archive):
    path = request.getfixturevalue(archive)
    train = load_split("cifar10", path, "train", cache_dir=tmp_path, progress=False)
    test = load_split("cifar10", path, "test", cache_dir=tmp_path, progress=False)
    assert train.images.shape == (50000, 3, 32, 32) and test.images.shape == (10000, 3, 32, 32)
    assert train.classes == test.classes == CIFAR10_CLASSES
    assert torch.equal(torch.bincount(train.labels), torch.full((10,), 5000))
    assert torch.equal(torch.bincount(test.labels), torch.full((10,), 1000))
    assert train.skipped == [] and test.skipped == []
    mean = train.images.double().div(255).mean(dim=(0, 2, 3))
    official = torch.tensor([0.49139968, 0.48215841, 0.44653091], dtype=torch.float64)
    if archive == "cifar_archive":  # lossless: the official batches' channel means to eight digits
        assert torch.allclose(mean, official, atol=5e-9)
    else:  # JPEG moves the pixels, a little
        assert torch.allclose(mean, official, atol=5e-3) and not torch.allclose(mean, official, atol=5e-9)


def _split_folder(root: Path, splits: dict[str, int], size: int = 8) -> Path:
    """root/<split>/<class>/<i>.png; each image's grey level encodes (split, class, index)."""
    for k, (split, n) in enumerate(splits.items()):
        for c, cls in enumerate(("a", "b")):
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                level = 40 * k + 10 * c + i + 1
                Image.fromarray(np.full((size, size, 3), level, np.uint8)).save(root / split / cls / f"{i}.png")
    return root


@pytest.mark.parametrize("layout", ["train+val", "train+val+test", "train+test", "train"])
def test_folder_roles_follow_the_layout_and_are_named(tmp_path, layout):
    from lenet2vit.data import load_train_val_test, split_roles

    counts = {"train": 10, "val": 3, "test": 4}
    root = _split_folder(tmp_path / "d", {s: counts[s] for s in layout.split("+")})
    train, val, test = load_train_val_test("folder", root, val_fraction=0.2, seed=0, cache_dir=tmp_path / "c",
                                           progress=False)
    roles = split_roles(train, val, test)

    def levels(a):  # the split each image came from, by its grey level
        return {int(v) // 40 for v in a.images[:, 0, 0, 0]}

    if layout == "train+val":  # ImageNet's and torchvision's convention: val/ is the evaluation split
        assert roles == {"train": "train/", "val": "20% held out of train/", "test": "val/"}
        assert len(test) == 6 and levels(test) == {1} and len(train) + len(val) == 20
    elif layout == "train+val+test":  # val/ is the validation split; val_fraction is not used
        assert roles == {"train": "train/", "val": "val/", "test": "test/"}
        assert (len(train), len(val), len(test)) == (20, 6, 8) and levels(val) == {1} and levels(test) == {2}
    elif layout == "train+test":
        assert roles == {"train": "train/", "val": "20% held out of train/", "test": "test/"}
        assert len(test) == 8 and levels(test) == {1}
    else:
        assert roles["test"] == "20% held out of train/" and levels(test) == {0}
    assert levels(train) == {0}
    again = load_train_val_test("folder", root, val_fraction=0.2, seed=0, cache_dir=tmp_path / "c", progress=False)
    assert split_roles(*again) == roles and all(torch.equal(x.images, y.images) for x, y in zip(again, (train, val, test)))
