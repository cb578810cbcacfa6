"""The viewer in a real headless Chromium (Debian's `chromium` and `chromium-driver`, driven
by Selenium): the run page with its plots, then one item page reached by clicking through
the list, with its diffs and judge calls rendered, and a model's `<script>` shown as text.
Screenshots go to the test's temp folder."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from tests.integration_tests.view_folders import SCRIPT, curated_folder

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1280,900",
)
ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason=f"needs Debian's Chromium at {CHROMIUM} (apt-get install chromium chromium-driver; "
    ".ci/run installs them)",
)


@pytest.fixture
def viewer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    out = curated_folder(tmp_path)
    process = subprocess.Popen(
        [sys.executable, "-m", "refine_n_judge.cli", "view", str(out)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        match = re.search(r"on (http://127\.0\.0\.1:\d+/) ", first)
        assert match, first
        yield match.group(1)
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[webdriver.Chrome]:
    # Both paths are given, so Selenium Manager has nothing to look up; offline, it could
    # not download a driver or a browser even if it tried.
    monkeypatch.setenv("SE_OFFLINE", "true")
    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def test_run_and_item_pages_in_chromium(
    viewer: str, browser: webdriver.Chrome, tmp_path: Path
) -> None:
    shots = tmp_path / "screenshots"
    shots.mkdir()

    browser.get(viewer)
    assert browser.title.startswith("Run")
    glance = browser.find_element(By.ID, "glance").text
    assert "6\nitems" in glance and "succeeded" in glance
    plots = browser.find_elements(By.CSS_SELECTOR, "svg.plot")
    assert len(plots) >= 4 and all(p.size["height"] > 20 for p in plots)
    assert browser.save_screenshot(str(shots / "run.png"))

    browser.find_element(By.LINK_TEXT, "Items").click()
    assert browser.title.startswith("Items")
    browser.find_element(By.LINK_TEXT, "hostile").click()
    assert browser.title.startswith("hostile")

    inserted = browser.find_elements(By.CSS_SELECTOR, ".diff ins")
    deleted = browser.find_elements(By.CSS_SELECTOR, ".diff del")
    assert inserted and deleted and inserted[0].is_displayed()
    assert "v1" in [e.text for e in inserted] and "v0" in [e.text for e in deleted]
    calls = browser.find_elements(By.CSS_SELECTOR, "tr.call")
    assert len(calls) == 8
    assert {"refined_first", "refined_second"} <= {c.text.split()[2] for c in calls}
    # the model's script is text on the page, not an element
    answer0 = browser.find_element(By.CSS_SELECTOR, "#answer-0 .text").text
    assert SCRIPT in answer0
    assert browser.find_elements(By.CSS_SELECTOR, "main script") == []
    assert browser.save_screenshot(str(shots / "item.png"))

    for name in ("run.png", "item.png"):
        data = (shots / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
