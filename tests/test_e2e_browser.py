"""End to end in a real browser: `streamlit run app.py`, Debian's Chromium through Playwright.

Upload a photo, wait for the annotated image and the probability chart, save it
under a new person, and find the capture on the History page.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import PROJECT_DIR, astronaut, jpeg_bytes

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
ARTIFACTS_DIR = PROJECT_DIR / "test-artifacts"
SERVER_START_TIMEOUT_S = 120
# The first analysis loads MTCNN and the VGG-16 on a possibly busy machine.
RESULT_TIMEOUT_MS = 180_000
STEP_TIMEOUT_MS = 30_000


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_healthy(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"streamlit exited with code {process.returncode}:\n{log.read_text(errors='replace')}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.25)
    raise TimeoutError(f"streamlit did not answer {url}/_stcore/health within {SERVER_START_TIMEOUT_S} s")


def start_streamlit(folder: Path, *, extra_env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str, Path]:
    """Start `streamlit run app.py` on a free local port with its history database in ``folder``.

    Returns the process, its URL and the file that receives its output.
    """
    log = folder / "streamlit.log"
    port = free_port()
    env = {**os.environ, "FED_DATABASE_URL": f"sqlite:///{folder / 'history.sqlite3'}", **(extra_env or {})}
    command = [
        sys.executable, "-m", "streamlit", "run", "app.py",
        "--server.headless", "true", "--server.port", str(port), "--server.address", "127.0.0.1",
        "--browser.gatherUsageStats", "false",
    ]  # fmt: skip
    with log.open("wb") as output:
        process = subprocess.Popen(command, cwd=PROJECT_DIR, env=env, stdout=output, stderr=subprocess.STDOUT)
    return process, f"http://127.0.0.1:{port}", log


def stop_streamlit(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found; install Debian's chromium package (`.ci/chromium.sh` does)")
    pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")
    process, url, log = start_streamlit(tmp_path_factory.mktemp("e2e"), extra_env={"FED_DISPLAY_TIMEZONE": "Europe/Berlin"})
    try:
        wait_until_healthy(url, process, log)
        yield url
    finally:
        stop_streamlit(process)


def wait_until_idle(page) -> None:
    """Wait until the app's script has finished its run, as the frontend reports on the root element."""
    page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]').wait_for()


def test_browser_upload_save_history(server: str, tmp_path: Path):
    from playwright.sync_api import expect, sync_playwright

    photo = tmp_path / "ASTRONAUT.JPG"
    photo.write_bytes(jpeg_bytes(astronaut()))
    ARTIFACTS_DIR.mkdir(exist_ok=True)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(STEP_TIMEOUT_MS)
        expect.set_options(timeout=STEP_TIMEOUT_MS)
        try:
            page.goto(server)
            expect(page.get_by_role("heading", name="Analyze")).to_be_visible()
            page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(photo)

            caption = page.get_by_text("ASTRONAUT.JPG: faces numbered from left to right")
            expect(caption).to_be_visible(timeout=RESULT_TIMEOUT_MS)
            expect(page.locator('[data-testid="stImage"] img').first).to_be_visible()
            chart = page.locator('[data-testid="stPlotlyChart"]')
            expect(chart).to_have_count(1)
            expect(chart.locator(".main-svg").first).to_be_visible()
            expect(page.locator("strong", has_text="Face 1")).to_be_visible()

            name_input = page.get_by_label("Display name (optional)")
            name_input.fill("Browser check")
            name_input.press("Enter")
            wait_until_idle(page)
            save_button = page.get_by_role("button", name="Save to history")
            expect(save_button).to_be_enabled()
            save_button.click()
            expect(page.get_by_text("ASTRONAUT.JPG: Saved face 1 to capture 1 of P-0001.")).to_be_visible()
            page.screenshot(path=str(ARTIFACTS_DIR / "e2e-analyze.png"), full_page=True)

            # A click that lands while the script still runs can be lost, so wait for it to finish.
            wait_until_idle(page)
            page.get_by_role("link", name="History").click()
            page.wait_for_url("**/history")
            expect(page.get_by_role("heading", name="History")).to_be_visible()
            expect(page.get_by_role("combobox", name="Person")).to_have_value("P-0001 — Browser check")
            captures = page.locator('[data-testid="stMetric"]').filter(has_text="Captures")
            expect(captures.locator('[data-testid="stMetricValue"]')).to_have_text("1")
            expect(page.locator('[data-testid="stPlotlyChart"]')).to_have_count(3)
            expect(page.get_by_role("button", name="Download CSV of the whole history")).to_be_visible()
            page.screenshot(path=str(ARTIFACTS_DIR / "e2e-history.png"), full_page=True)
        except Exception:
            page.screenshot(path=str(ARTIFACTS_DIR / "e2e-failure.png"), full_page=True)
            raise
        finally:
            browser.close()
