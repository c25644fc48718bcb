"""The speed benchmarks run end to end with a tiny budget and print their figure lines.

No timing is asserted: only that each script finishes, prints every labelled figure with a
number, writes its JSON, and that the subset extraction of train_speed.py is class-balanced
and never writes outside its folder.
"""

from __future__ import annotations

import importlib.util
import io
import json
import math
import os
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
sys.path.insert(0, str(BENCH))  # the scripts import their shared harness.py as a sibling module
NUMBER = r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?"


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_script(name: str, *args: str, timeout: int = 240) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    proc = subprocess.run([sys.executable, str(BENCH / f"{name}.py"), *args, "--threads", "1"], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=ROOT)
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def figure_value(stdout: str, label: str) -> float:
    """The figure printed on the line that starts with ``label`` (right-aligned after the label)."""
    m = re.search(rf"^{re.escape(label)}[^\n]*?\s{{2,}}({NUMBER})(?:\s|$)", stdout, re.MULTILINE)
    assert m, f"no figure line starting with {label!r} in:\n{stdout}"
    value = float(m.group(1))
    assert math.isfinite(value)
    return value


def _jpeg(rng: np.random.Generator) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes = b"", **kw) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for k, v in kw.items():
        setattr(info, k, v)
    tar.addfile(info, io.BytesIO(data) if data else None)


@pytest.fixture
def tiny_archive(tmp_path: Path) -> Path:
    """A CIFAR-like ImageFolder .tar.gz (3 classes, 10 train / 4 test each) with hostile members."""
    rng = np.random.default_rng(0)
    path = tmp_path / "tiny.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for split, n in (("train", 10), ("test", 4)):
            for c in ("cat", "dog", "ship"):
                for i in range(n):
                    _add(tar, f"{split}/{c}/{i:04d}.jpg", _jpeg(rng))
        _add(tar, "../escape.jpg", _jpeg(rng))
        _add(tar, "/tmp/lenet2vit-absolute.jpg", _jpeg(rng))
        _add(tar, "train/cat/../../../escape2.jpg", _jpeg(rng))
        _add(tar, "train/cat/link.jpg", type=tarfile.SYMTYPE, linkname="/etc/passwd")
        _add(tar, "train/dog/hard.jpg", type=tarfile.LNKTYPE, linkname="train/dog/0000.jpg")
        _add(tar, "train/.hidden/0000.jpg", _jpeg(rng))
    return path


def test_extract_subset_is_balanced_and_stays_inside(tiny_archive: Path, tmp_path: Path) -> None:
    mod = load_script("train_speed")
    dest = tmp_path / "work" / "subset"
    counts = mod.extract_subset(tiny_archive, dest, train_images=12, test_images=6, seed=1)
    assert counts == {"train": {"images": 12, "classes": 3}, "test": {"images": 6, "classes": 3}}
    files = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
    assert len(files) == 18
    for split, per_class in (("train", 4), ("test", 2)):
        for c in ("cat", "dog", "ship"):
            assert len([f for f in files if f.startswith(f"{split}/{c}/")]) == per_class
    assert not any("link" in f or "hard" in f or "hidden" in f for f in files)
    assert all(not p.is_symlink() for p in dest.rglob("*"))
    assert not (tmp_path / "escape.jpg").exists() and not (tmp_path / "work" / "escape.jpg").exists()
    assert not (tmp_path / "escape2.jpg").exists() and not Path("/tmp/lenet2vit-absolute.jpg").exists()
    again = tmp_path / "again"
    mod.extract_subset(tiny_archive, again, train_images=12, test_images=6, seed=1)
    assert sorted(p.relative_to(again).as_posix() for p in again.rglob("*") if p.is_file()) == files  # seeded


def test_extract_subset_reads_a_zip_too_and_stays_inside(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    path = tmp_path / "tiny.zip"
    with zipfile.ZipFile(path, "w") as z:
        for split, n in (("train", 6), ("test", 2)):
            for c in ("cat", "dog"):
                for i in range(n):
                    z.writestr(f"{split}/{c}/{i:04d}.png", _jpeg(rng))
        z.writestr("../escape.png", _jpeg(rng))
        z.writestr("train/cat/../../../escape2.png", _jpeg(rng))
    dest = tmp_path / "work" / "subset"
    counts = load_script("train_speed").extract_subset(path, dest, train_images=8, test_images=4, seed=0)
    assert counts == {"train": {"images": 8, "classes": 2}, "test": {"images": 4, "classes": 2}}
    assert len([p for p in dest.rglob("*") if p.is_file()]) == 12
    assert not (tmp_path / "escape.png").exists() and not (tmp_path / "escape2.png").exists()


def test_train_speed_says_what_to_do_without_data(tmp_path: Path, capsys) -> None:
    mod = load_script("train_speed")
    assert mod.main(["--smoke", "--data", str(tmp_path / "absent.tar.gz")]) == 2
    err = capsys.readouterr().err
    assert "absent.tar.gz" in err and "--data" in err and len(err.strip().splitlines()) == 1


def test_train_speed_refuses_what_it_cannot_use(tiny_archive: Path, tmp_path: Path, capsys) -> None:
    mod = load_script("train_speed")
    assert mod.main(["--smoke", "--data", str(tiny_archive), "--model", "resnet_nope"]) == 2
    assert "resnet_nope" in capsys.readouterr().err
    assert mod.main(["--smoke", "--data", str(tmp_path)]) == 2  # a folder, not an archive
    assert "is not a file; pass --data with cifar10-png.zip" in capsys.readouterr().err


def test_loader_speed_says_what_to_do_without_data(tmp_path: Path, capsys) -> None:
    mod = load_script("loader_speed")
    assert mod.main(["--smoke", "--data", str(tmp_path / "absent")]) == 2
    err = capsys.readouterr().err
    assert "--synthetic" in err and "--data" in err


@pytest.mark.slow
def test_train_speed_smoke(tiny_archive: Path, tmp_path: Path) -> None:
    out = tmp_path / "train_speed.json"
    proc = run_script("train_speed", "--smoke", "--data", str(tiny_archive), "--model", "resnet20", "--accuracy",
                      "--accuracy-seeds", "0,1", "--workers", "2,0", "--out", str(out))
    s = proc.stdout
    ours = figure_value(s, "ours: images/s")
    for w in (2, 0):
        assert figure_value(s, f"usual: images/s (DataLoader num_workers={w}") > 0
        ratio = figure_value(s, f"speed-up: ours / usual (num_workers={w})")
        assert ratio == pytest.approx(ours / figure_value(s, f"usual: images/s (DataLoader num_workers={w}"), rel=0.02)
    assert figure_value(s, "conv ceiling") > 0
    assert figure_value(s, "ours: fraction of conv ceiling") > 0
    for seed in (0, 1):
        assert 0 <= figure_value(s, f"ours: test accuracy, seed {seed}") <= 100
        assert 0 <= figure_value(s, f"usual: test accuracy, seed {seed}") <= 100
    ours_mean, usual_mean = figure_value(s, "ours: test accuracy, mean"), figure_value(s, "usual: test accuracy, mean")
    assert figure_value(s, "accuracy: ours - usual") == pytest.approx(ours_mean - usual_mean, abs=0.02)
    res = json.loads(out.read_text())
    assert res["train_images"] == 30 and res["ours"]["images_per_s"] > 0
    assert set(res["usual"]) == {"2", "0"}
    assert res["achieved_gflops"] == pytest.approx(3 * res["macs"] * 2 * res["ours"]["images_per_s"] / 1e9)
    acc = res["accuracy"]
    assert acc["seeds"] == [0, 1] and [r["seed"] for r in acc["runs"]["ours"]] == [0, 1]
    assert acc["ours_mean"] == pytest.approx(50 * sum(r["top1"] for r in acc["runs"]["ours"]))
    assert acc["within_noise"] == (abs(acc["difference"]) <= acc["noise"])


@pytest.mark.slow
@pytest.mark.data
def test_train_speed_finds_the_shared_archive(cifar_archive: Path, tmp_path: Path) -> None:
    proc = run_script("train_speed", "--smoke", "--model", "resnet20", "--workers", "0")  # no --data: the default
    assert str(cifar_archive.name) in proc.stdout
    assert figure_value(proc.stdout, "speed-up: ours / fastest usual") > 0


@pytest.mark.slow
def test_stream_memory_smoke(tmp_path: Path) -> None:
    out = tmp_path / "stream.json"
    proc = run_script("stream_memory", "--smoke", "--root", str(tmp_path / "folders"), "--workers", "1",
                      "--out", str(out))
    s = proc.stdout
    res = json.loads(out.read_text())
    ours = figure_value(s, "stream 60 images: images/s")
    ref = figure_value(s, "reference ImageFolder + DataLoader 60 images: images/s")
    assert figure_value(s, "stream / reference images/s") == pytest.approx(ours / ref, rel=0.02)
    assert res["folders"]["120"]["stream"]["images"] == 100  # one epoch of the train split (20% is held out as test)
    assert len(list((tmp_path / "folders").glob("photos-120-*/train/*/*.jpg"))) == 120


@pytest.mark.slow
def test_stream_torchrun_smoke(tmp_path: Path) -> None:
    """Two torchrun processes stream a train/ + val/ folder of varied JPEGs; the memory is sampled."""
    out = tmp_path / "torchrun.json"
    proc = run_script("stream_torchrun", "--smoke", "--root", str(tmp_path / "folders"), "--out", str(out))
    s = proc.stdout
    res = json.loads(out.read_text())
    for n in (60, 120):
        row = res["folders"][str(n)]
        assert row["mode"] == "stream" and row["processes"] >= 3  # torchrun and its two ranks (and their workers)
        assert row["train_images"] + row["val_images"] == n  # 10% of train/ held out; val/ is the test split
        assert figure_value(s, f"{n} + {n // 10} images: peak memory") == pytest.approx(row["peak_tree_pss_mb"], abs=0.01)
        assert row["peak_tree_pss_mb"] > 50
    sizes = {Image.open(p).size for p in (tmp_path / "folders").glob("photos-120+12-*/*/*/*.jpg")}
    assert len(sizes) > 20  # every image its own size and aspect
    assert figure_value(s, "peak memory, largest / smallest folder") == pytest.approx(
        res["folders"]["120"]["peak_tree_pss_mb"] / res["folders"]["60"]["peak_tree_pss_mb"], rel=0.01)


def test_loader_speed_smoke(tmp_path: Path) -> None:
    out = tmp_path / "loader.json"
    proc = run_script("loader_speed", "--smoke", "--synthetic", "--images", "600", "--batch-sizes", "256,64",
                      "--model", "resnet20", "--out", str(out))
    s = proc.stdout
    train = figure_value(s, "training: images/s")
    for b in (256, 64):
        loader = figure_value(s, f"loader: images/s (DeviceLoader, batch {b}")
        assert figure_value(s, f"ratio: loader (batch {b}) / training") == pytest.approx(loader / train, rel=0.02)
    res = json.loads(out.read_text())
    assert set(res["loader_images_per_s"]) == {"256", "64"} and res["train_images_per_s"] > 0


@pytest.mark.slow
def test_infer_vs_reference_smoke(tmp_path: Path) -> None:
    out = tmp_path / "infer.json"
    proc = run_script("infer_vs_reference", "--smoke", "--models", "resnet50", "--out", str(out))
    s = proc.stdout
    ours = figure_value(s, "resnet50: ours (lenet2vit) images/s")
    theirs = figure_value(s, "resnet50: torchvision images/s")
    assert figure_value(s, "resnet50: ratio ours / torchvision") == pytest.approx(ours / theirs, rel=0.02)
    res = json.loads(out.read_text())["models"]["resnet50"]
    assert res["max_abs_logit_diff"] < 1e-3  # the same weights give the same function: we time the same work
    assert len(res["round_ratios"]) == 2


@pytest.mark.slow
def test_all_models_smoke(tmp_path: Path) -> None:
    out = tmp_path / "table.md"
    proc = run_script("all_models", "--smoke", "--models", "lenet5,resnet2*", "--max-params", "1", "--mode", "both",
                      "--out", str(out))
    s = proc.stdout
    assert figure_value(s, "conv ceiling") > 0
    table = out.read_text()
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    assert [r.split("|")[1].strip() for r in rows] == ["`lenet5`", "`resnet20`"]  # registry order, --max-params
    for r in rows:
        cells = [c.strip() for c in r.strip("|").split("|")]
        assert float(cells[6]) > 0 and float(cells[10]) > 0  # infer and train img/s
    res = json.loads(out.with_suffix(".json").read_text())
    assert {r["model"] for r in res["rows"]} == {"lenet5", "resnet20"}


def test_train_profile_categories() -> None:
    mod = load_script("train_profile")
    assert mod.category("aten::convolution_backward") == "conv backward"
    assert mod.category("aten::mkldnn_convolution") == "conv forward"
    assert mod.category("aten::native_batch_norm_backward") == "batch norm"
    assert mod.category("aten::addmm") == "linear"
    assert mod.category("aten::threshold_backward") == "element-wise"
    assert mod.category("aten::_to_copy") == "casts"
    assert mod.category("aten::some_new_op") == "other"


@pytest.mark.slow
def test_train_profile_smoke(tmp_path: Path) -> None:
    out = tmp_path / "profile.json"
    proc = run_script("train_profile", "--smoke", "--model", "resnet20", "--out", str(out))
    s = proc.stdout
    res = json.loads(out.read_text())
    assert sum(res["shares"].values()) == pytest.approx(1.0)
    assert res["shares"]["conv backward"] > 0 and res["shares"]["optimizer"] > 0
    assert figure_value(s, "share of step time: conv backward") == pytest.approx(100 * res["shares"]["conv backward"], abs=0.01)
    # the fraction of the ceiling splits into (conv rate / ceiling) x (conv share)
    frac, rate, share = (figure_value(s, k) for k in ("fraction of the ceiling", "  = conv rate", "  x conv share"))
    assert frac == pytest.approx(rate * share / 100, rel=0.01)
    assert res["achieved_gflops"] == pytest.approx(3 * res["macs"] * 2 * res["images_per_s"] / 1e9)


def test_apply_budget_fills_unset_flags_and_refuses_non_positive(capsys) -> None:
    import argparse

    from harness import apply_budget

    p = argparse.ArgumentParser(prog="bench")
    p.add_argument("--steps", type=int)
    p.add_argument("--warmup", type=int)
    p.add_argument("--smoke", action="store_true")
    full, smoke = {"steps": 30, "warmup": 5}, {"steps": 2, "warmup": 1}
    args = p.parse_args(["--warmup", "7"])
    apply_budget(p, args, full, smoke, positive=("steps",))
    assert (args.steps, args.warmup) == (30, 7)
    args = p.parse_args(["--smoke"])
    apply_budget(p, args, full, smoke)
    assert (args.steps, args.warmup) == (2, 1)
    with pytest.raises(SystemExit):
        apply_budget(p, p.parse_args(["--steps", "0"]), full, smoke, positive=("steps",))
    assert "--steps must be a positive number, got 0" in capsys.readouterr().err


def test_the_gpu_check_script_parses_and_names_only_real_flags(tmp_path: Path) -> None:
    """benchmarks/gpu_check.sh runs only where a GPU is; here: its syntax, every flag it passes to
    `lenet2vit train` exists, and without a GPU it stops at once with one error line."""
    script = BENCH / "gpu_check.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    from lenet2vit.cli import build_parser

    train_flags = {a for action in build_parser()._subparsers._group_actions[0].choices["train"]._actions
                   for a in action.option_strings}
    commands = [line for line in script.read_text().replace("\\\n", " ").splitlines()
                if re.search(r"\btrain [a-z]", line)]  # the `lenet2vit train MODEL ...` lines, joined
    used = set(re.findall(r"\s(--[a-z][a-z0-9-]+)", " ".join(commands)))
    assert used and used <= train_flags | {"--standalone", "--nproc-per-node"}, used - train_flags
    if not __import__("torch").cuda.is_available():
        env = dict(os.environ, PYTHON=sys.executable)
        proc = subprocess.run(["bash", str(script), "data.zip", str(tmp_path / "out")], capture_output=True,
                              text=True, env=env, timeout=120)
        assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1] == "error: no CUDA device"
