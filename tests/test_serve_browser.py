"""The kiosk and admin pages in real headless Chromium, with a fake camera fed from a video.

Needs Debian's chromium and chromium-driver (.ci/run installs them) and Selenium (the dev
extra); skips, saying which is missing, only where they are absent. With
SIAMESE_SERVE_SCREENSHOTS=DIR a prompt and the two kiosk decisions are saved there as PNGs
(docs/ holds the committed ones).
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

from tests.live_clip import read_video
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


def frames_to_y4m(images: list[np.ndarray], out: Path, fps: tuple[int, int] = (15, 1)) -> Path:
    """A y4m (4:2:0) file of `images` at `fps` (numerator, denominator): Chromium's fake
    camera, which loops it."""
    import cv2

    height, width = (images[0].shape[0] // 2) * 2, (images[0].shape[1] // 2) * 2
    with out.open("wb") as handle:
        handle.write(f"YUV4MPEG2 W{width} H{height} F{fps[0]}:{fps[1]} Ip A1:1 C420jpeg\n"
                     .encode())
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


def kiosk(driver, server, person: str, shots: Path, prompt_shot: str | None = None) -> str:
    """Start a kiosk session for `person` and return the decision shown."""
    driver.get(f"{server.url}/kiosk")
    assert server.door not in driver.page_source
    driver.find_element(By.ID, "key").send_keys(server.door)
    driver.find_element(By.ID, "person").send_keys(person)
    driver.find_element(By.ID, "start").click()
    if prompt_shot:
        WebDriverWait(driver, 60).until(
            lambda d: d.find_element(By.ID, "arrow").text.strip()
            or d.find_element(By.ID, "decision").text.strip())
        driver.save_screenshot(str(shots / f"{prompt_shot}.png"))
    WebDriverWait(driver, 90).until(lambda d: d.find_element(By.ID, "decision").text.strip())
    return driver.find_element(By.ID, "decision").text


def test_kiosk_refuses_a_filmed_photo_and_verifies_a_live_head_turn(server, tmp_path):
    import random

    import httpx
    from siamese.runtime.liveness.challenge import ChallengeConfig

    from tests.live_clip import ACTION, ENROL, FPS, live_turn

    photo_video = frames_to_y4m(read_video(EXAMPLES / "Abdullah_Gul.avi"),
                                tmp_path / "gul.y4m", (10, 1))
    live = frames_to_y4m(live_turn(hold_s=1.5), tmp_path / "live.y4m", (round(FPS * 2), 2))
    shots = Path(os.environ.get("SIAMESE_SERVE_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)

    with browser(photo_video) as driver:  # the admin page enrols from photos
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

        # the README's photo attack: the right person, refused for liveness, reason shown
        decision = kiosk(driver, server, "Abdullah Gul", shots)
        driver.save_screenshot(str(shots / "serve-kiosk-rejected.png"))
        assert decision.startswith("NOT VERIFIED: liveness failed"), decision
        session = json.loads(server.state.config.audit.read_text().splitlines()[-1])
        assert session["route"] == "session" and session["score"] is not None  # a face
        assert session["liveness"]["result"] == "failed"

    files = [("images", (p.name, p.read_bytes(), "image/jpeg")) for p in ENROL]
    made = httpx.post(f"{server.url}/v1/people/Live Person", files=files,
                      headers={"Authorization": f"Bearer {server.admin}"}, timeout=60)
    assert made.status_code == 201, made.text
    # the test-only hook: the challenge order is fixed from Python (no command line can)
    server.state.challenge = ChallengeConfig(actions=(ACTION,), steps=1)
    server.state.challenge_rng = random.Random(0)
    with browser(live) as driver:
        decision = kiosk(driver, server, "Live Person", shots, prompt_shot="serve-kiosk-prompt")
        driver.save_screenshot(str(shots / "serve-kiosk-verified.png"))
    assert decision == "VERIFIED: Live Person", decision
    session = json.loads(server.state.config.audit.read_text().splitlines()[-1])
    assert session["decision"] == "verified" and session["liveness"]["result"] == "passed"
