"""The kiosk and admin pages in real headless Chromium, with a fake camera fed from a video.

Needs Debian's chromium and chromium-driver (.ci/run installs them) and Selenium (the dev
extra); skips, saying which is missing, only where they are absent. With
SIAMESE_SERVE_SCREENSHOTS=DIR the two kiosk decisions are saved there as PNGs (docs/ holds the
committed ones).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

from tests.serve_support import start_server

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
from selenium.webdriver.chrome.service import Service as DriverService  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or DRIVER is None,
    reason="headless Chromium not installed (apt-get install -y chromium chromium-driver)")


def video_to_y4m(video: Path, out: Path, frames: int = 90) -> Path:
    """A y4m (4:2:0) file of the video's first `frames` frames: Chromium's fake camera."""
    import cv2

    capture = cv2.VideoCapture(str(video))
    images = []
    while len(images) < frames:
        ok, image = capture.read()
        if not ok:
            break
        images.append(image)
    capture.release()
    assert images, f"no frames in {video}"
    height, width = (images[0].shape[0] // 2) * 2, (images[0].shape[1] // 2) * 2
    with out.open("wb") as handle:
        handle.write(f"YUV4MPEG2 W{width} H{height} F15:1 Ip A1:1 C420jpeg\n".encode())
        for image in images:
            planar = cv2.cvtColor(np.ascontiguousarray(image[:height, :width]),
                                  cv2.COLOR_BGR2YUV_I420)
            handle.write(b"FRAME\n" + planar.tobytes())
    return out


@contextlib.contextmanager
def browser(camera: Path):
    """Headless Chromium whose profile and temporary files (its singleton socket among them)
    live in a short-named folder of their own, removed when it quits: nothing is left in the
    system's temporary folder. (A socket path must stay under 108 bytes: tmp_path is too deep.)"""
    scratch = Path(tempfile.mkdtemp(prefix="chromium-"))
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-dev-shm-usage", "--window-size=900,1000",
                 "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                 f"--use-file-for-fake-video-capture={camera}",
                 f"--user-data-dir={scratch / 'profile'}"):
        options.add_argument(flag)
    service = DriverService(executable_path=DRIVER, env={**os.environ, "TMPDIR": str(scratch)})
    try:
        driver = webdriver.Chrome(service=service, options=options)
        try:
            yield driver
        finally:
            driver.quit()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    running = start_server(tmp_path_factory.mktemp("serve-browser"))
    yield running
    running.stop()


def test_admin_page_enrols_and_kiosk_verifies_only_the_enrolled_person(server, tmp_path):
    genuine = video_to_y4m(EXAMPLES / "Abdullah_Gul.avi", tmp_path / "gul.y4m")
    impostor = video_to_y4m(EXAMPLES / "Adrien_Brody.avi", tmp_path / "brody.y4m")
    shots = Path(os.environ.get("SIAMESE_SERVE_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)

    with browser(genuine) as driver:
        driver.get(f"{server.url}/admin")
        assert server.admin not in driver.page_source
        driver.find_element(By.ID, "key").send_keys(server.admin)
        driver.find_element(By.ID, "name").send_keys("Abdullah Gul")
        photos = sorted(str(p) for p in (EXAMPLES / "Abdullah_Gul").glob("*.jpg"))
        driver.find_element(By.ID, "photos").send_keys("\n".join(photos))
        driver.find_element(By.ID, "enrol").click()
        WebDriverWait(driver, 60).until(
            lambda d: "enrolled" in d.find_element(By.ID, "message").text
            or ":" in d.find_element(By.ID, "message").text)
        assert driver.find_element(By.ID, "message").text == \
            "enrolled Abdullah Gul from 2 photos"
        WebDriverWait(driver, 30).until(
            lambda d: "Abdullah Gul" in d.find_element(By.ID, "people").text)

    for camera, expected, shot in ((genuine, "VERIFIED: Abdullah Gul", "serve-kiosk-verified"),
                                   (impostor, "NOT VERIFIED", "serve-kiosk-rejected")):
        with browser(camera) as driver:
            driver.get(f"{server.url}/kiosk")
            assert server.door not in driver.page_source
            driver.find_element(By.ID, "key").send_keys(server.door)
            driver.find_element(By.ID, "person").send_keys("Abdullah Gul")
            driver.find_element(By.ID, "start").click()
            WebDriverWait(driver, 90).until(
                lambda d: d.find_element(By.ID, "decision").text.strip())
            decision = driver.find_element(By.ID, "decision").text
            driver.save_screenshot(str(shots / f"{shot}.png"))
            assert decision.startswith(expected), decision
            session = json.loads(server.state.config.audit.read_text().splitlines()[-1])
            assert session["route"] == "session" and session["score"] is not None  # a face
