"""The dashboard in real headless Chromium (Debian's chromium + chromium-driver).

One tiny guest, all through the browser: log in, upload the image (progress bar,
lint), launch from the form, watch it turn ACTIVE without a reload, see its screen
over noVNC (the canvas equals QEMU's own screendump and shows text), type into the
serial console and read the answer, snapshot, delete. Every page is saved as a
screenshot under test-artifacts/dashboard/ (KUMO_TEST_ARTIFACTS to move it).
"""

from __future__ import annotations

import base64
import io
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kumo.hypervisor.qmp import QMPClient
from tests.conftest import KumoProcess
from tests.e2e.consoles import SERIAL_SHELL, private_copy, wait_for
from tests.e2e.test_compute_cli import run

pytestmark = [pytest.mark.e2e, pytest.mark.guest]

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--window-size=1280,1100")
XTERM_TEXT = """
if (!window.kumoSerial) return "";
const b = window.kumoSerial.term.buffer.active; const out = [];
for (let i = 0; i < b.length; i++) {
    const line = b.getLine(i);
    if (line) out.push(line.translateToString(true));
}
return out.join("\\n");
"""
CANVAS_PNG = "return document.querySelector('#vnc-screen canvas').toDataURL('image/png');"


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.skip("Debian's chromium and chromium-driver are not installed (make deps)")
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must not fetch a browser or driver
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(120)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def artifacts() -> Path:
    folder = Path(os.environ.get("KUMO_TEST_ARTIFACTS", "test-artifacts")) / "dashboard"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def canvas_image(driver: Any) -> Any:
    from PIL import Image

    data = driver.execute_script(CANVAS_PNG).split(",", 1)[1]
    return Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB")


def text_rows(image: Any) -> int:
    """How many 16-pixel text rows of the screen have lit (non-black) pixels."""
    width, height = image.size
    pixels = image.load()
    rows = set()
    for y in range(0, height, 2):
        if any(sum(pixels[x, y]) > 200 for x in range(0, width, 3)):
            rows.add(y // 16)
    return len(rows)


def same_pixels(a: Any, b: Any) -> float:
    if a.size != b.size:
        return 0.0
    from PIL import ImageChops

    diff = ImageChops.difference(a, b).convert("L").point(lambda v: 255 if v > 40 else 0)
    histogram = diff.histogram()
    return histogram[0] / (a.size[0] * a.size[1])


def screendump(kumo: KumoProcess, server_id: str, dest: Path) -> Any:
    from PIL import Image

    with QMPClient.connect(kumo.data_dir / "instances" / server_id / "qmp.sock") as qmp:
        qmp.execute("screendump", {"filename": str(dest.absolute())})
    return Image.open(dest).convert("RGB")


def test_dashboard_end_to_end(kumo_up: KumoProcess, browser: Any, artifacts: Path,
                              tmp_path: Path) -> None:
    from kumo.imagebuild.tiny import cached_image

    tiny_image = private_copy(cached_image, tmp_path / "tiny.qcow2")
    try:
        _walk_through(kumo_up, tiny_image, browser, artifacts)
    finally:
        browser.save_screenshot(str(artifacts / "last.png"))
        run(kumo_up, "server", "delete", "--wait", "browser-vm", check=False)
        for image in ("browser-tiny", "browser-snap"):
            run(kumo_up, "image", "delete", image, check=False)


def _walk_through(kumo: KumoProcess, tiny_image: Path, driver: Any, artifacts: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select, WebDriverWait

    def shot(name: str) -> None:
        driver.save_screenshot(str(artifacts / f"{name}.png"))

    def text_of(css: str) -> str:
        return str(driver.find_element(By.CSS_SELECTOR, css).text)

    def until(what: str, check: Any, timeout: float = 120) -> Any:
        return WebDriverWait(driver, timeout, poll_frequency=0.5).until(
            lambda d: check(d), message=what)

    # -- log in ------------------------------------------------------------------------
    driver.get(f"{kumo.url}/login")
    shot("01-login")
    driver.find_element(By.ID, "username").send_keys("admin")
    driver.find_element(By.ID, "password").send_keys(kumo.password)
    driver.find_element(By.ID, "login").click()
    until("the overview", lambda d: "Project admin" in d.page_source)
    assert "token" not in driver.current_url
    cookie = driver.get_cookie("kumo_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    shot("02-overview")

    # -- upload the tiny image -----------------------------------------------------------
    driver.get(f"{kumo.url}/images")
    driver.find_element(By.ID, "image-file").send_keys(str(tiny_image))
    driver.find_element(By.ID, "image-name").send_keys("browser-tiny")
    Select(driver.find_element(By.ID, "disk-format")).select_by_visible_text("qcow2")
    driver.find_element(By.ID, "upload").click()
    until("the upload", lambda d: "uploaded" in text_of("#upload-text"), timeout=300)
    assert driver.find_element(By.ID, "upload-bar").get_attribute("value") == "100"
    shot("03-images-uploaded")
    driver.find_element(By.ID, "uploaded-image").click()
    until("the image page", lambda d: "Image browser-tiny" in d.page_source)
    assert "active" in driver.page_source and "Lint" in driver.page_source
    shot("04-image")

    # -- launch from the form ------------------------------------------------------------
    driver.get(f"{kumo.url}/servers/new")
    driver.find_element(By.ID, "server-name").send_keys("browser-vm")
    images = Select(driver.find_element(By.ID, "server-image"))
    images.select_by_visible_text("browser-tiny (qcow2)")
    flavors = Select(driver.find_element(By.ID, "server-flavor"))
    flavors.select_by_index(0)
    assert flavors.first_selected_option.text.startswith("m1.tiny")
    driver.find_element(By.ID, "server-user-data").send_keys(SERIAL_SHELL)
    shot("05-launch")
    driver.find_element(By.ID, "launch").click()
    until("the server page", lambda d: "Server browser-vm" in d.page_source)
    driver.execute_script("window.kumoNoReload = 42")
    until("ACTIVE", lambda d: text_of("#status") == "ACTIVE", timeout=300)
    assert driver.execute_script("return window.kumoNoReload") == 42  # htmx, not a reload
    server_id = driver.current_url.rsplit("/", 1)[1]
    shot("06-server-active")

    # -- the VGA console -----------------------------------------------------------------
    until("the serial shell", lambda d: "serial shell started" in run(
        kumo, "console", "log", "show", "browser-vm").stdout, timeout=300)
    driver.find_element(By.ID, "open-vnc").click()
    until("noVNC connected", lambda d: "connected" in text_of("#console-status"))
    until("text on the VGA screen", lambda d: text_rows(canvas_image(d)) >= 2, timeout=60)
    canvas = canvas_image(driver)
    own = screendump(kumo, server_id, artifacts / "qemu-screendump.ppm")
    canvas.save(artifacts / "vnc-canvas.png")
    assert canvas.size == own.size
    assert same_pixels(canvas, own) > 0.98, "the canvas is not the guest's screen"
    shot("07-vnc-console")

    # -- the serial console ----------------------------------------------------------------
    driver.find_element(By.ID, "open-serial").click()
    until("the log replay", lambda d: "serial shell started" in d.execute_script(XTERM_TEXT))
    terminal = driver.find_element(By.CSS_SELECTOR, "#serial-term .xterm-helper-textarea")
    terminal.send_keys("echo kumo-$((6*7))" + Keys.ENTER)
    until("the answer", lambda d: "kumo-42" in d.execute_script(XTERM_TEXT), timeout=60)
    shot("08-serial-console")
    driver.find_element(By.ID, "refresh-log").click()
    until("the console log", lambda d: "kumo-42" in text_of("#console-log"))
    shot("09-console-log")

    # -- snapshot --------------------------------------------------------------------------
    name = driver.find_element(By.ID, "snapshot-name")
    name.clear()
    name.send_keys("browser-snap")
    driver.find_element(By.ID, "action-snapshot").click()
    until("the snapshot message", lambda d: "Snapshot browser-snap is being made" in d.page_source)

    def snapshot_active(d: Any) -> bool:
        d.get(f"{kumo.url}/images")
        rows = d.find_elements(By.CSS_SELECTOR, 'tr[data-name="browser-snap"] .status')
        return bool(rows) and rows[0].text == "active"

    until("the snapshot image", snapshot_active, timeout=300)
    shot("10-images-with-snapshot")
    for page, name in (("/keypairs", "11-keypairs"), ("/security-groups", "12-security-groups"),
                       ("/networks", "13-networks"), ("/servers", "14-servers")):
        driver.get(kumo.url + page)
        shot(name)

    # -- delete --------------------------------------------------------------------------
    driver.get(f"{kumo.url}/servers/{server_id}")
    driver.find_element(By.ID, "action-delete").click()
    driver.switch_to.alert.accept()
    until("the server list", lambda d: d.current_url.endswith("/servers"))
    until("the server gone", lambda d: "browser-vm" not in text_of("#server-rows"), timeout=180)
    shot("15-servers-after-delete")
    gone = run(kumo, "server", "show", "browser-vm", check=False)
    assert gone.returncode != 0
    wait_for("the guest folder removed",
             lambda: not (kumo.data_dir / "instances" / server_id).exists(), timeout=60)
