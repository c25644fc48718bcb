"""The web page in headless Chromium: upload an image, read each model's predictions off the page.

Needs Debian's ``chromium`` and ``chromium-driver`` (``/usr/bin/chromium``, ``/usr/bin/chromedriver``)
and ``pip install selenium``; skipped with the reason otherwise. The server listens on 127.0.0.1
only, on a port the OS picks. Set ``LENET2VIT_SCREENSHOT=path.png`` to keep a screenshot.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium "
                                                     "(apt-get install chromium chromium-driver)"),
    pytest.mark.skipif(not CHROMEDRIVER.exists(), reason="needs /usr/bin/chromedriver (apt-get install chromium-driver)"),
]
webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (pip install selenium)")
pytest.importorskip("uvicorn")

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from lenet2vit import create_model  # noqa: E402
from lenet2vit.serving import predict_files, save_run  # noqa: E402
from lenet2vit.serving.app import create_app  # noqa: E402

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1280,800"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("runs")
    out = []
    for name, kwargs in (("resnet20", {}), ("vit_ti_16_cifar", {"depth": 2})):
        torch.manual_seed(0)
        model = create_model(name, num_classes=len(CLASSES), **kwargs)
        torch.nn.init.normal_(model.get_classifier().weight, std=0.05)
        out.append(save_run(model, root / name, classes=CLASSES, input_size=32, mean=[0.5] * 3, std=[0.25] * 3,
                            model_kwargs=kwargs))
    return out


@pytest.fixture(scope="module")
def server(runs):
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))  # loopback only; the OS picks a free port
    srv = uvicorn.Server(uvicorn.Config(create_app(runs), log_level="warning"))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("the app server did not start within 30 s")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/"
    srv.should_exit = True
    thread.join(10)
    sock.close()


@pytest.fixture(scope="module")
def browser():
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="lenet2vit-chromium-")
    opts = Options()
    opts.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS + [f"--user-data-dir={profile}"]:
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def _image(path: Path) -> Path:
    yy, xx = np.mgrid[0:96, 0:128]
    rgb = np.stack([xx * 2, yy * 2, 255 - xx], axis=-1).clip(0, 255).astype(np.uint8)
    Image.fromarray(rgb).save(path)
    return path


def _read_cards(driver) -> dict[str, list[tuple[str, str]]]:
    cards = {}
    for card in driver.find_elements(By.CSS_SELECTOR, "#results .model-card"):
        rows = card.find_elements(By.CSS_SELECTOR, ".pred-row")
        cards[card.get_attribute("data-model")] = [
            (r.find_element(By.CSS_SELECTOR, ".cls").text, r.find_element(By.CSS_SELECTOR, ".prob").text) for r in rows
        ]
    return cards


def test_upload_shows_each_models_top5(server, browser, runs, tmp_path):
    img = _image(tmp_path / "gradient.png")
    browser.get(server)
    wait = WebDriverWait(browser, 60)
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#models input")) == 2)
    browser.find_element(By.ID, "file").send_keys(str(img))
    wait.until(lambda d: d.find_element(By.ID, "results").get_attribute("data-done"))
    cards = _read_cards(browser)
    assert set(cards) == {"resnet20", "vit_ti_16_cifar"}
    for run in runs:
        want = predict_files(run, [img], k=5)[0]["top"]
        assert cards[run.name] == [(t["class"], f"{100 * t['probability']:.1f}%") for t in want]
    maps = browser.find_elements(By.CSS_SELECTOR, "#results figure.explanation img")
    try:
        import lenet2vit.explain  # noqa: F401

        assert len(maps) == 2 and all(m.get_attribute("naturalWidth") == "224" for m in maps)
    except ImportError:
        assert not maps
    if os.environ.get("LENET2VIT_SCREENSHOT"):
        browser.save_screenshot(os.environ["LENET2VIT_SCREENSHOT"])


def test_unticking_a_model_and_a_bad_file(server, browser, tmp_path):
    browser.get(server)
    wait = WebDriverWait(browser, 60)
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#models input")) == 2)
    browser.find_element(By.CSS_SELECTOR, "#models input[value='resnet20']").click()
    browser.find_element(By.ID, "file").send_keys(str(_image(tmp_path / "img.png")))
    wait.until(lambda d: d.find_element(By.ID, "results").get_attribute("data-done"))
    assert set(_read_cards(browser)) == {"vit_ti_16_cifar"}
    bad = tmp_path / "fake.png"
    bad.write_bytes(b"this is not a PNG")
    browser.find_element(By.ID, "file").send_keys(str(bad))
    wait.until(lambda d: d.find_element(By.ID, "error").is_displayed())
    assert "fake.png: not an image" in browser.find_element(By.ID, "error").text
    assert not _read_cards(browser)
