"""End-to-end: the real app under uvicorn, driven by headless Chromium through Selenium.

Needs Debian's chromium and chromium-driver (.ci/install.sh installs them). Screenshots of the
latent page and the report are written under tmp_path and to $INTERP_TEST_ARTIFACTS if set.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.ui.conftest import PLANTED, SCRIPT_TOKEN, query

pytestmark = pytest.mark.slow  # Chromium

CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1300,1800", "--hide-scrollbars"]


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not (Path(CHROMIUM).exists() and Path(DRIVER).exists()):
        msg = f"{CHROMIUM} and {DRIVER} are needed: run .ci/install.sh (apt chromium chromium-driver)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must never download a driver
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for f in FLAGS + [f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"]:
        opts.add_argument(f)
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=opts)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def _wait(driver, css: str, timeout: float = 20):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(ec.presence_of_all_elements_located((By.CSS_SELECTOR, css)))


def _shoot(driver, dirs: list[Path], name: str) -> None:
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1300, min(max(height, 800), 6000))
    for d in dirs:
        assert driver.save_screenshot(str(d / name)), f"screenshot {name} failed"
        assert (d / name).stat().st_size > 10_000
    driver.set_window_size(1300, 1800)


def test_latent_table_loads(browser, served, ui_home):
    from selenium.webdriver.common.by import By

    browser.get(f"{served}/latents")
    rows = _wait(browser, "#latents tr.latent-row")
    n_explained = query(ui_home, "SELECT count(DISTINCT latent) FROM explanations WHERE status = 'ok'")[0][0]
    assert len(rows) == n_explained
    assert browser.find_element(By.ID, "count").text.startswith(f"{n_explained} latents")


def test_search_finds_the_planted_explanation(browser, served):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    browser.get(f"{served}/latents")
    box = browser.find_element(By.CSS_SELECTOR, "#filters input[name=q]")
    box.send_keys("elephants", Keys.ENTER)
    _wait(browser, "#latents tr.latent-row")
    rows = browser.find_elements(By.CSS_SELECTOR, "#latents tr.latent-row")
    assert len(rows) == 1 and PLANTED in rows[0].text
    # Semantic search from the header box: a paraphrase with no word in common ranks it first.
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    quick = browser.find_element(By.CSS_SELECTOR, "header form.quick input[name=s]")
    quick.send_keys("wild animals kept in captivity", Keys.ENTER)
    # The text search's table is still there until the new page replaces it: wait for that
    # (waiting for rows alone read the old single row, a flaky failure).
    WebDriverWait(browser, 20).until(ec.staleness_of(rows[0]))
    _wait(browser, "#latents tr.latent-row")
    rows = browser.find_elements(By.CSS_SELECTOR, "#latents tr.latent-row")
    assert len(rows) > 1 and PLANTED in rows[0].text


def test_latent_page_shades_tokens_and_renders_script_as_text(browser, served, ui_home, artifacts_dir):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    sae, latent = query(ui_home, "SELECT sae_key, latent FROM examples WHERE kind = 'top' AND "
                              "list_contains(tokens, ?) ORDER BY latent LIMIT 1", [SCRIPT_TOKEN])[0]
    browser.get(f"{served}/sae/{sae}/latent/{latent}")
    on = _wait(browser, "#top .tok.on")
    backgrounds = {t.value_of_css_property("background-color") for t in on}
    assert backgrounds and all(b.startswith("rgba(217, 72, 15") and not b.endswith(", 0)")
                               for b in backgrounds)
    ActionChains(browser).move_to_element(on[0]).perform()
    tip = browser.find_element(By.ID, "tip")
    assert tip.is_displayed() and tip.text == f"activation {on[0].get_attribute('title')}"
    # The corpus's script tag is a token shown as text, and it never ran.
    texts = [t.text for t in browser.find_elements(By.CSS_SELECTOR, ".tok")]
    assert SCRIPT_TOKEN in texts
    assert browser.execute_script("return window.__pwned === undefined")
    _shoot(browser, artifacts_dir, "latent_page.png")


def test_report_opens_offline_from_disk(browser, ui_home, tmp_path, artifacts_dir):
    from selenium.webdriver.common.by import By

    from interp.report import write_report

    out = write_report(ui_home, tmp_path / "report" / "run.html")
    moved = tmp_path / "elsewhere.html"  # self-contained: works wherever the file goes
    shutil.copyfile(out, moved)
    browser.get(moved.as_uri())
    plots = _wait(browser, "svg.plot")
    assert len(plots) >= 5 and all(p.size["width"] > 100 for p in plots)
    assert SCRIPT_TOKEN in browser.find_element(By.TAG_NAME, "main").text
    assert browser.execute_script("return window.__pwned === undefined")
    _shoot(browser, artifacts_dir, "report.png")
