"""A real (tiny) study end to end: outputs, aggregation, resumption, protocol checks, shards, report."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn

import lenet2vit.experiment.study as study_mod
from lenet2vit import registry
from lenet2vit.cli import main
from lenet2vit.data import ImageArrays
from lenet2vit.experiment import CompareError, build_report, compare, jobs_for
from lenet2vit.experiment.store import ROW_FIELDS

MODELS = ["exp_tiny_a", "exp_tiny_b"]
SEEDS = [0, 1]
ONE_EPOCH = {"epochs": 1, "batch_size": 32, "device": "cpu", "amp": "fp32", "flip": False}
CHROMIUM = Path("/usr/bin/chromium")


class _Tiny(nn.Module):
    """A conv, a pooling and a linear layer: trains in milliseconds."""

    def __init__(self, num_classes: int = 4, in_chans: int = 3, width: int = 4):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(in_chans, width, 3, padding=1), nn.ReLU(),
                                      nn.Conv2d(width, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4),
                                      nn.Flatten())
        self.fc = nn.Linear(width * 16, num_classes)

    def forward(self, x):
        return self.fc(self.features(x))

    def get_classifier(self):
        return self.fc


@pytest.fixture(scope="module")
def tiny_models():
    """Two tiny registered models, removed again after this module (other tests list the registry)."""
    for name, width in zip(MODELS, (4, 8)):
        if name not in registry.list_models(name):
            def build(num_classes=4, in_chans=3, _w=width, **kw):
                return _Tiny(num_classes, in_chans, _w)

            registry.register_model(family="Test", paper="-", year=2024, input_size=16, params=registry.Count.published(0, "test"), ref_num_classes=4, min_input_size=8, name=name)(build)
    yield MODELS
    for name in MODELS:
        registry._MODELS.pop(name, None)


def _arrays(n: int, seed: int) -> ImageArrays:
    """Four classes, each a bright bar in its own place on noise: learnable in one epoch."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 4
    x = torch.randint(0, 80, (n, 3, 16, 16), generator=g, dtype=torch.uint8)
    for c in range(4):
        x[y == c, c % 3, c * 4:(c + 1) * 4, :] = 230
    return ImageArrays(x, y, ["top", "upper", "lower", "bottom"])


@pytest.fixture(scope="module")
def data():
    return _arrays(96, 0), _arrays(24, 1), _arrays(40, 2)


@pytest.fixture(scope="module")
def study(tmp_path_factory, tiny_models, data):
    """One study run as two shards into two folders, then merged by the report."""
    root = tmp_path_factory.mktemp("study")
    logs: list[str] = []
    run = partial(compare, MODELS, data=data, seeds=2, overrides=ONE_EPOCH, progress=False, log=logs.append)
    rows_a = run(out=root / "a", shard="0/2")
    rows_b = run(out=root / "b", shard="1/2", report=False)
    report = build_report([root / "a", root / "b"], out=root / "merged", log=logs.append)
    return SimpleNamespace(root=root, a=root / "a", b=root / "b", merged=root / "merged", rows_a=rows_a,
                           rows_b=rows_b, report=report, logs=logs)


def _read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# ----------------------------------------------------------------------------- outputs


def test_shards_run_each_job_once_and_the_report_merges_them(study):
    a = {(r["model"], r["seed"]) for r in study.rows_a}
    b = {(r["model"], r["seed"]) for r in study.rows_b}
    assert a == set(jobs_for(MODELS, SEEDS, (0, 2))) and b == set(jobs_for(MODELS, SEEDS, (1, 2)))
    assert not a & b and a | b == set(jobs_for(MODELS, SEEDS))
    merged = json.loads((study.merged / "results.json").read_text())["rows"]
    assert sorted((r["model"], r["seed"]) for r in merged) == sorted(a | b)
    for r in merged:  # run folders stay reachable from the merged folder
        assert (study.merged / r["run_dir"] / "test_predictions.safetensors").exists()
    proto = json.loads((study.merged / "protocol.json").read_text())
    assert proto["study"]["models"] == MODELS and proto["study"]["seeds"] == SEEDS
    assert len(proto["merged_from"]) == 2


def test_study_writes_every_output_with_the_right_columns(study):
    out = study.merged
    rows = _read_csv(out / "results.csv")
    assert list(rows[0]) == ROW_FIELDS and len(rows) == 4
    for r in rows:
        assert 0 <= float(r["test_top1"]) <= 1 and float(r["test_top1_err"]) == pytest.approx(1 - float(r["test_top1"]))
        assert int(r["params"]) > 0 and int(r["macs"]) > 0 and float(r["train_images_per_s"]) > 0
        assert float(r["infer_images_per_s"]) > 0 and float(r["peak_memory_mb"]) > 0 and r["best_epoch"] == "1"
    agg = _read_csv(out / "results_agg.csv")
    assert sorted(a["model"] for a in agg) == MODELS and all(a["n_seeds"] == "2" for a in agg)
    doc = json.loads((out / "results.json").read_text())
    assert {"rows", "aggregate", "std"} <= set(doc) and "ddof=1" in doc["std"]
    assert all(len(r["history"]) == 1 and "val_top1" in r["history"][0] for r in doc["rows"])
    table = (out / "table.md").read_text()
    order = [a["model"] for a in doc["aggregate"]]
    assert table.index(f"| {order[0]} ") < table.index(f"| {order[1]} ")
    means = [a["test_top1_mean"] for a in doc["aggregate"]]
    assert means == sorted(means, reverse=True)
    for stem in ("accuracy_vs_macs", "accuracy_vs_params", "accuracy_vs_train_time", "training_curves",
                 *(f"confusion_{m}" for m in MODELS)):
        assert (out / "plots" / f"{stem}.png").stat().st_size > 1000, stem
        assert (out / "plots" / f"{stem}.svg").exists(), stem
    assert not (out / "plots" / "degradation.png").exists()  # no plainN/resnetN pair here
    proto = json.loads((study.a / "protocol.json").read_text())
    assert proto["protocol"]["train"]["epochs"] == 1 and "seed" not in proto["protocol"]["train"]
    assert proto["protocol"]["data"]["sizes"] == {"train": 96, "val": 24, "test": 40}
    assert {"torch", "torchvision", "device", "git_commit"} <= set(proto["environments"][0])
    for r in study.rows_a:  # each shard folder has its own report too
        run = study.a / r["run_dir"]
        assert (run / "samples.safetensors").exists() and (run / "best.safetensors").exists()
    assert (study.a / "report.html").exists() and not (study.b / "report.html").exists()


def test_aggregate_equals_mean_and_sample_std_of_the_rows(study):
    doc = json.loads((study.merged / "results.json").read_text())
    agg_csv = {a["model"]: a for a in _read_csv(study.merged / "results_agg.csv")}
    for a in doc["aggregate"]:
        rows = [r for r in doc["rows"] if r["model"] == a["model"]]
        for metric in ("test_top1", "test_top5", "train_seconds", "infer_images_per_s", "best_val_top1"):
            vals = [r[metric] for r in rows]
            if metric == "test_top5" and vals[0] is None:  # the tiny data set has <= 5 classes: no top-5
                assert vals == [None] * len(vals) and a[f"{metric}_mean"] is None
                continue
            assert a[f"{metric}_mean"] == pytest.approx(statistics.mean(vals))
            assert a[f"{metric}_std"] == pytest.approx(statistics.stdev(vals), rel=1e-9, abs=1e-12)
            assert float(agg_csv[a["model"]][f"{metric}_mean"]) == pytest.approx(statistics.mean(vals))
        assert a["params"] == rows[0]["params"]


def test_report_html_is_self_contained(study):
    page = study.report.read_text()
    assert study.report == study.merged / "report.html"
    srcs = re.findall(r'src="([^"]*)"', page)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert len(re.findall(r"<tr class='model-row'", page)) == 2
    assert "Protocol" in page and "fingerprint" in page and "ddof=1" in page
    assert page.count('class="thumb') >= 2  # sample predictions with thumbnails
    for m in MODELS:
        assert f"data-model='{m}'" in page


# ----------------------------------------------------------------------------- safety


def test_changed_protocol_is_refused_before_training(study, data, monkeypatch):
    def no_training(*a, **k):
        raise AssertionError("nothing may be trained")

    monkeypatch.setattr(study_mod, "train_run", no_training)
    with pytest.raises(CompareError, match=r"train\.epochs: 1 -> 2"):
        compare(MODELS, data=data, seeds=2, out=study.a, overrides=dict(ONE_EPOCH, epochs=2), progress=False,
                log=lambda m: None)
    other = (data[0], data[1], _arrays(40, 9))  # other test images, same sizes
    with pytest.raises(CompareError, match=r"data\.fingerprint"):
        compare(MODELS, data=other, seeds=2, out=study.a, overrides=ONE_EPOCH, progress=False, log=lambda m: None)
    # an unchanged protocol is fine: every job is done, nothing is trained
    rows = compare(MODELS, data=data, seeds=2, shard="0/2", out=study.a, overrides=ONE_EPOCH, progress=False,
                   report=False, log=lambda m: None)
    assert len(rows) == 2


def test_merging_studies_of_different_protocols_is_refused(study, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(study.b, other)
    doc = json.loads((other / "protocol.json").read_text())
    doc["protocol"]["train"]["lr"] = 1.0
    (other / "protocol.json").write_text(json.dumps(doc))
    with pytest.raises(CompareError, match=r"other.*train\.lr"):
        build_report([study.a, other], out=tmp_path / "merged", log=lambda m: None)
    with pytest.raises(CompareError, match="not a study folder"):
        build_report([tmp_path], log=lambda m: None)


def test_cli_report_merges_and_reports_user_errors(study, tmp_path, capsys):
    assert main(["report", str(study.a), str(study.b), "--out", str(tmp_path / "m")]) == 0
    assert (tmp_path / "m" / "report.html").exists()
    assert main(["report", str(study.a), str(study.b)]) == 2
    assert "pass --out" in capsys.readouterr().err
    assert main(["compare", "--seed", "1", "--no-progress"]) == 2
    assert "--seeds" in capsys.readouterr().err
    assert main(["compare", "--preset", "nope"]) == 2
    assert "unknown preset" in capsys.readouterr().err


class _Killed(Exception):
    pass


def test_interrupted_study_resumes_without_redoing_finished_rows(tiny_models, data, tmp_path, monkeypatch):
    out = tmp_path / "s"
    real = study_mod.train_run
    calls: list[str] = []

    def dies_mid_second_job(model, **kw):
        calls.append(model)
        if len(calls) == 2:  # train one epoch of two, leave its checkpoint, then "crash"
            real(model, stop_after_epochs=1, **kw)
            raise _Killed
        return real(model, **kw)

    monkeypatch.setattr(study_mod, "train_run", dies_mid_second_job)
    two_epochs = dict(ONE_EPOCH, epochs=2)
    run = partial(compare, MODELS, data=data, seeds=1, out=out, overrides=two_epochs, progress=False, report=False)
    with pytest.raises(_Killed):
        run(log=lambda m: None)
    first = out / "runs" / MODELS[0] / "seed0"
    assert [r["model"] for r in json.loads((out / "results.json").read_text())["rows"]] == [MODELS[0]]
    assert (out / "runs" / MODELS[1] / "seed0" / "checkpoint.safetensors").exists()
    stamp = {p.name: p.stat().st_mtime_ns for p in first.iterdir()}

    calls.clear()
    logs: list[str] = []
    rows = run(log=logs.append)
    assert calls == [MODELS[1]]  # the finished job is skipped
    assert any("resuming from" in m and "after epoch 1" in m for m in logs)  # the cut-off one resumes
    assert {p.name: p.stat().st_mtime_ns for p in first.iterdir()} == stamp
    assert sorted(r["model"] for r in rows) == MODELS
    assert all(len(r["history"]) == 2 for r in rows)
    # Only a process that got to the end records its wall time, naming the jobs it ran itself.
    (inv,) = json.loads((out / "protocol.json").read_text())["invocations"]
    assert inv["trained"] == [f"{MODELS[1]}/seed0"]
    assert 0 < inv["wall_seconds"] < 600 and inv["started"] <= inv["finished"]


def test_on_row_exception_keeps_the_rows_already_stored(tiny_models, data, tmp_path):
    out = tmp_path / "s"

    def stop(row):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        compare(MODELS[:1], data=data, seeds=2, out=out, overrides=ONE_EPOCH, progress=False, report=False,
                on_row=stop, log=lambda m: None)
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert [(r["model"], r["seed"]) for r in rows] == [(MODELS[0], 0)]
    assert len(_read_csv(out / "results.csv")) == 1


# ----------------------------------------------------------------------------- in a real browser and process


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium (apt-get install -y chromium)")
def test_report_renders_in_chromium(study, tmp_path):
    # Copy the report with a script that records, after load, whether each image decoded.
    # ... and clicks the params header twice (the results table sorts by it, up, then down).
    probe = ("<script>window.addEventListener('load',()=>{const d=document.createElement('pre');d.id='probe';"
             "const order=()=>[...document.querySelectorAll('#results tbody tr')].map(r=>r.dataset.model);"
             "const th=[...document.querySelectorAll('#results th')].find(h=>h.textContent==='params');"
             "const rows=order();th.click();const up=order();th.click();const down=order();"
             "d.textContent=JSON.stringify({imgs:[...document.images].map(i=>i.complete?i.naturalWidth:0),"
             "rows,up,down,perClass:document.querySelectorAll('table.per-class').length});"
             "document.body.appendChild(d);});</script></body>")
    page = tmp_path / "report.html"
    page.write_text(study.report.read_text().replace("</body>", probe))
    cmd = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000", "--dump-dom", page.as_uri()]
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S)
    assert found, "the page did not finish loading in Chromium"
    probe_doc = json.loads(found.group(1).replace("&quot;", '"'))
    assert sorted(probe_doc["rows"]) == MODELS
    assert len(probe_doc["imgs"]) >= 6 and all(w > 0 for w in probe_doc["imgs"])
    assert probe_doc["up"] == MODELS and probe_doc["down"] == MODELS[::-1]  # exp_tiny_a is the narrower net
    assert probe_doc["perClass"] == len(MODELS)


@pytest.mark.slow
def test_sigkilled_cli_study_resumes(tmp_path):
    """`lenet2vit compare` killed with SIGKILL after its first row; the same command finishes the rest."""
    out = tmp_path / "study"
    cmd = [sys.executable, "-m", "lenet2vit", "compare", "--models", "lenet5", "--seeds", "4", "--epochs", "1",
           "--limit", "200", "--device", "cpu", "--out", str(out), "--no-progress", "--no-report"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    results = out / "results.json"
    try:
        while proc.poll() is None:
            if results.exists() and len(json.loads(results.read_text())["rows"]) >= 1:
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.05)
    finally:
        proc.wait(timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    rows = json.loads(results.read_text())["rows"]
    done = {(r["model"], r["seed"]) for r in rows}
    stamps = {r["seed"]: (out / r["run_dir"] / "results.json").stat().st_mtime_ns for r in rows}
    assert len(done) < 4
    finished = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert finished.returncode == 0, finished.stderr[-2000:]
    rows = json.loads(results.read_text())["rows"]
    assert sorted(r["seed"] for r in rows) == [0, 1, 2, 3]
    for seed, stamp in stamps.items():  # finished runs were not trained again
        assert (out / "runs" / "lenet5" / f"seed{seed}" / "results.json").stat().st_mtime_ns == stamp
    assert f"{len(done)} of 4 jobs already done" in finished.stdout
