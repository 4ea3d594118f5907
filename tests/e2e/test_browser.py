"""The page at `/` in a real browser: headless Chromium (Debian's `chromium`) driven by Playwright opens
it, generates an image, sees the progress and the preview, gets the result in the gallery with its
parameters and a download link, and can cancel a long job."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from helpers.live_server import live_server

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--headless", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    playwright_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.skip("Debian's chromium is not installed (scripts/setup.sh installs it)")
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.mark.slow
def test_page_generates_shows_progress_and_the_result(browser, tiny_pipeline_dir):
    with live_server(tiny_pipeline_dir) as server:
        # predicates are passed as functions: the page's CSP (no 'unsafe-eval') refuses string evaluation
        page = browser.new_page(accept_downloads=True)
        console_errors = []
        page.on("console", lambda msg: console_errors.append(msg.text) if msg.type == "error" else None)
        page.goto(server.url + "/")
        page.wait_for_function("() => document.querySelectorAll('#scheduler option').length > 0")
        assert "tiny" in page.inner_text("#model-name")
        assert page.input_value("#width") == "64"  # the model's default size, from /api/info

        page.fill("#prompt", "a red circle on a white background")
        page.fill("#steps", "40")
        page.fill("#width", "32")
        page.fill("#height", "32")
        page.fill("#seed", "7")
        page.fill("#num_images", "2")
        page.select_option("#scheduler", "euler-a")
        page.click("#generate")

        # live progress: a step counter, the progress bar moving, the preview image shown
        page.wait_for_function("() => /step \\d+ \\/ 40/.test(document.getElementById('status').textContent)",
                               timeout=60_000)
        page.wait_for_function("() => document.getElementById('progress').value > 0")
        page.wait_for_function("() => !document.getElementById('preview').hidden && "
                               "document.getElementById('preview').naturalWidth > 0")
        assert page.is_disabled("#generate") and page.is_enabled("#cancel")

        page.wait_for_selector("#gallery figure.result img", timeout=120_000)
        page.wait_for_function("() => document.querySelectorAll('#gallery figure.result').length == 2")
        page.wait_for_function("() => [...document.querySelectorAll('#gallery figure.result img')]"
                               ".every(img => img.complete && img.naturalWidth == 32)")
        captions = page.locator("#gallery figcaption").all_inner_texts()
        assert sorted("Seed: 7," in c for c in captions) == [False, True]
        assert all("Sampler: Euler a" in c and "Steps: 40" in c for c in captions)
        downloads = page.locator("#gallery figure.result a")
        assert sorted(downloads.evaluate_all("links => links.map(a => a.download)")) == \
            ["latentdiff-7.png", "latentdiff-8.png"]
        with page.expect_download() as download_info:
            downloads.first.click()
        assert download_info.value.suggested_filename.startswith("latentdiff-")
        assert "done" in page.inner_text("#status") and page.is_enabled("#generate")

        # cancel a long job from the page
        page.fill("#steps", "150")
        page.click("#generate")
        page.wait_for_function("() => /step \\d+ \\/ 150/.test(document.getElementById('status').textContent)",
                               timeout=60_000)
        page.click("#cancel")
        page.wait_for_function("() => document.getElementById('status').textContent === 'cancelled'", timeout=60_000)
        assert page.locator("#gallery figure.result").count() == 2
        assert not console_errors, console_errors
