"""The web app: the HTML page, the JSON API, explanation maps, and clear 4xx answers to bad uploads."""

from __future__ import annotations

import base64
import io
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

import lenet2vit.cli  # noqa: E402
from lenet2vit import create_model  # noqa: E402
from lenet2vit.serving import predict_files, save_run  # noqa: E402
from lenet2vit.serving.app import create_app, explain_map, load_models  # noqa: E402

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _run(root: Path, name: str, **kwargs) -> Path:
    torch.manual_seed(0)
    model = create_model(name, num_classes=len(CLASSES), **kwargs)
    torch.nn.init.normal_(model.get_classifier().weight, std=0.05)
    return save_run(model, root / name, classes=CLASSES, input_size=32, mean=[0.5] * 3, std=[0.25] * 3,
                    model_kwargs=kwargs)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("runs")
    # A CNN and a tiny ViT (2 blocks: enough for attention rollout, fast to run).
    return [_run(root, "resnet20"), _run(root, "vit_ti_16_cifar", depth=2)]


@pytest.fixture(scope="module")
def client(runs) -> TestClient:
    return TestClient(create_app(runs))


def _png(w: int = 48, h: int = 40, seed: int = 0) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _post(client, data: bytes, name="x.png", ctype="image/png", **form):
    return client.post("/api/predict", files={"file": (name, data, ctype)}, data=form)


def test_page_and_model_list(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for needle in ('id="file"', 'type="file"', "api/predict", 'id="results"'):
        assert needle in page.text
    models = client.get("/api/models").json()
    assert [m["id"] for m in models["models"]] == ["resnet20", "vit_ti_16_cifar"]
    assert models["models"][0]["classes"] == CLASSES and models["max_upload_mb"] == 10


def test_api_predictions_equal_the_predict_command(client, runs, tmp_path):
    data = _png(60, 45, seed=3)
    (tmp_path / "img.png").write_bytes(data)
    got = _post(client, data, topk="5")
    assert got.status_code == 200
    body = got.json()
    assert (body["filename"], body["width"], body["height"]) == ("x.png", 60, 45)
    for res, run in zip(body["results"], runs):
        want = predict_files(run, [tmp_path / "img.png"], k=5)[0]["top"]
        assert [t["class"] for t in res["top"]] == [t["class"] for t in want]
        assert [t["probability"] for t in res["top"]] == pytest.approx([t["probability"] for t in want], abs=1e-6)
        assert res["explanation"] is None  # not asked for


def test_choose_models_and_topk(client):
    body = _post(client, _png(), models="vit_ti_16_cifar", topk="3").json()
    assert [r["id"] for r in body["results"]] == ["vit_ti_16_cifar"]
    assert len(body["results"][0]["top"]) == 3
    body = client.post("/api/predict", files={"file": ("x.png", _png(), "image/png")},
                       data={"models": ["vit_ti_16_cifar", "resnet20"]}).json()
    assert [r["id"] for r in body["results"]] == ["vit_ti_16_cifar", "resnet20"]


def _decode(data_url: str) -> Image.Image:
    assert data_url.startswith("data:image/png;base64,")
    return Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1])))


def test_explanation_maps_from_the_explain_package(client):
    body = _post(client, _png(), explain="1").json()
    methods = {r["id"]: r["explanation"]["method"] for r in body["results"]}
    assert methods == {"resnet20": "Grad-CAM", "vit_ti_16_cifar": "attention rollout"}
    for r in body["results"]:
        assert r["explanation"]["target"] == r["top"][0]["class"]
        assert _decode(r["explanation"]["image"]).size == (224, 224)


def test_explainer_is_swappable_and_failures_keep_the_prediction(runs):
    seen = []

    def hot_corner(model, x, target):
        seen.append((x.shape, target))
        m = torch.zeros(8, 8)
        m[0, 0] = 1
        return "test map", m

    served = load_models(runs[:1])
    body = _post(TestClient(create_app(served, explainer=hot_corner)), _png(), explain="1").json()
    res = body["results"][0]
    assert seen == [((1, 3, 32, 32), res["top"][0]["index"])]
    img = np.asarray(_decode(res["explanation"]["image"]))
    assert img[0, 0, 0] > img[0, 0, 2] and img[-1, -1, 2] > img[-1, -1, 0]  # red where the map is hot, blue elsewhere

    def broken(model, x, target):
        raise RuntimeError("boom")

    res = _post(TestClient(create_app(served, explainer=broken)), _png(), explain="1").json()["results"][0]
    assert res["explanation"] is None and "boom" in res["explanation_error"] and len(res["top"]) == 5


@pytest.mark.parametrize(
    "kind,status,message",
    [
        ("not_image", 415, "not an image"),
        ("empty", 400, "is empty"),
        ("pdf", 415, "application/pdf, not an image"),
        ("truncated", 400, "damaged"),
        ("no_file", 400, "no file"),
        ("json_body", 415, "multipart/form-data"),
        ("unknown_model", 404, "unknown model 'alexnet'"),
        ("bad_topk", 400, "topk"),
    ],
)
def test_bad_requests_get_clear_errors_and_the_server_keeps_serving(client, kind, status, message):
    png = _png()
    if kind == "not_image":
        r = _post(client, b"just some text", name="notes.txt", ctype="text/plain")
    elif kind == "empty":
        r = _post(client, b"")
    elif kind == "pdf":
        r = _post(client, b"%PDF-1.4 ...", name="doc.pdf", ctype="application/pdf")
    elif kind == "truncated":
        r = _post(client, png[: len(png) // 2])
    elif kind == "no_file":
        r = client.post("/api/predict", files={"other": ("x.png", png, "image/png")})
    elif kind == "json_body":
        r = client.post("/api/predict", json={"image": "x"})
    elif kind == "unknown_model":
        r = _post(client, png, models="resnet20,alexnet")
    else:
        r = _post(client, png, topk="many")
    assert r.status_code == status
    assert message in r.json()["error"]
    assert _post(client, png).status_code == 200  # still serving


def test_upload_limits(runs):
    served = load_models(runs[:1])
    small = TestClient(create_app(served, max_upload_mb=0.01))  # about 10 kB
    big = _png(120, 100)  # ~36 kB of noise
    r = _post(small, big)
    assert r.status_code == 413 and "0.01 MB limit" in r.json()["error"]
    # A body sent without content-length (chunked) is cut off as well.
    boundary = "b0undary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.png\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode() + big * 3 + f"\r\n--{boundary}--\r\n".encode()
    r = small.post("/api/predict", content=iter([body[i:i + 4096] for i in range(0, len(body), 4096)]),
                   headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    assert r.status_code == 413
    assert _post(small, _png(20, 20)).status_code == 200
    few_pixels = TestClient(create_app(served, max_pixels=100))
    r = _post(few_pixels, _png(48, 40))
    assert r.status_code == 413 and "pixels" in r.json()["error"]


def test_duplicate_run_names_get_distinct_ids(runs, tmp_path):
    copy = tmp_path / "other" / runs[0].name
    copy.mkdir(parents=True)
    for f in runs[0].iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    assert [m.id for m in load_models([runs[0], copy])] == ["resnet20", "resnet20-2"]


def test_serve_command_wires_runs_and_flags(runs, monkeypatch, capsys):
    import uvicorn

    got = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: got.update(app=app, **kw))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # free now; serve checks it can listen there
    code = lenet2vit.cli.main(["serve", f"{runs[0]},{runs[1]}", "--port", str(port), "--max-upload-mb", "2",
                               "--no-explain"])
    assert code == 0 and got["host"] == "127.0.0.1" and got["port"] == port
    assert [m.id for m in got["app"].state.models] == ["resnet20", "vit_ti_16_cifar"]
    assert got["app"].state.max_upload_bytes == 2 * 1024 * 1024
    assert f"http://127.0.0.1:{port}/" in capsys.readouterr().out
    body = _post(TestClient(got["app"]), _png(), explain="1").json()
    assert all(r["explanation"] is None for r in body["results"])  # --no-explain
    assert lenet2vit.cli.main(["serve", "no/such/run", "--port", str(port)]) == 2
    assert "no such run folder" in capsys.readouterr().err
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        taken = s.getsockname()[1]
        assert lenet2vit.cli.main(["serve", str(runs[0]), "--port", str(taken)]) == 2
    assert "cannot listen on 127.0.0.1" in capsys.readouterr().err


def test_default_explainer_without_the_explain_package(monkeypatch, runs):
    import lenet2vit.serving.app as app_mod

    monkeypatch.setattr(app_mod, "_explain_function", lambda name: None)
    served = load_models(runs[:1])
    assert explain_map(served[0].predictor.model, torch.zeros(1, 3, 32, 32), 0) is None
