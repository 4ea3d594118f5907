"""The page at `/` in a real browser: headless Chromium (Debian's `chromium`) driven by Playwright opens
it, generates an image, sees the progress, the time left and a preview per image, gets the result in the
gallery with its parameters and a download link, and can cancel a long job; the results survive a reload,
each gives its settings back or copies its parameters, Ctrl+Enter generates, the model picker switches
models; /docs renders with no internet.

Screenshots go to $LATENTDIFF_SCREENSHOTS when set (docs/screenshots/ holds the committed ones)."""

from __future__ import annotations

import io
import json
import os
import shutil
import time
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
        # a preview of each of the 2 images, and the time left
        page.wait_for_function("() => !document.getElementById('previews').hidden && "
                               "[...document.querySelectorAll('#previews img')].filter(i => i.naturalWidth > 0)"
                               ".length == 2")
        page.wait_for_function("() => /step \\d+ \\/ 40, \\d+ (s|min \\d+ s) left/"
                               ".test(document.getElementById('status').textContent)")
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

        # cancel a long job from the page: 4 images of 150 steps at 64x64, 8x the work of the job above, so it is
        # still running when the click lands (150 steps of 2 images at 32x32 once finished first on an idle CPU)
        page.fill("#steps", "150")
        page.fill("#width", "64")
        page.fill("#height", "64")
        page.fill("#num_images", "4")
        page.click("#generate")
        page.wait_for_function("() => /step \\d+ \\/ 150/.test(document.getElementById('status').textContent)",
                               timeout=60_000)
        page.wait_for_function("() => !document.getElementById('previews').hidden")

        # The cancel request's answer is held back a second after the server has cancelled, so the job's final
        # event reaches the page first: "cancelled" must stay, not be overwritten by a late "cancelling".
        def answer_late(route):
            answer = route.fetch()
            time.sleep(1.0)
            route.fulfill(response=answer)

        page.route("**/api/jobs/*/cancel", answer_late)
        page.click("#cancel")
        page.wait_for_function("() => document.getElementById('status').textContent === 'cancelled'", timeout=60_000)
        page.wait_for_timeout(1500)  # the held-back answer has arrived
        assert page.inner_text("#status") == "cancelled"
        page.unroute("**/api/jobs/*/cancel")
        assert page.locator("#gallery figure.result").count() == 2
        assert page.locator("#previews img").count() == 0 and page.is_hidden("#previews")  # no half-formed image
        assert not console_errors, console_errors


def save_screenshot(png: bytes, name: str, tmp_path: Path) -> Path:
    """Write a screenshot as a small PNG (64 colours are plenty for a page) under $LATENTDIFF_SCREENSHOTS."""
    from PIL import Image

    folder = Path(os.environ.get("LATENTDIFF_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    Image.open(io.BytesIO(png)).convert("RGB").quantize(64).save(path, optimize=True)
    return path


OTHER_MODEL = {"title": "shapes-run-2 [0123abcd]", "model_name": "shapes-run-2", "hash": "0123abcd",
               "sha256": None, "filename": "shapes-run-2", "config": None}


@pytest.mark.slow
def test_history_reuse_copy_shortcut_and_model_picker(browser, tiny_pipeline_dir, tmp_path):
    with live_server(tiny_pipeline_dir) as server:
        context = browser.new_context(viewport={"width": 1000, "height": 760})
        context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
        page = context.new_page()
        console_errors = []
        page.on("console", lambda msg: console_errors.append(msg.text) if msg.type == "error" else None)
        page.goto(server.url + "/")
        page.wait_for_function("() => document.querySelectorAll('#scheduler option').length > 0")
        assert page.is_hidden("#model-box")  # one model: no picker

        # Ctrl+Enter generates (a batch of 2, then a single image)
        for prompt, seed, images, shown in (("a red circle", 7, 2, 2), ("a blue square", 20, 1, 3)):
            page.fill("#prompt", prompt)
            page.fill("#steps", "3")
            page.fill("#width", "32")
            page.fill("#height", "32")
            page.fill("#seed", str(seed))
            page.fill("#num_images", str(images))
            page.focus("#prompt")
            page.keyboard.press("Control+Enter")
            page.wait_for_function(f"() => document.querySelectorAll('#gallery figure.result').length == {shown}",
                                   timeout=120_000)

        # a reload shows the results again: newest job first, seed order within a batch
        page.reload()
        page.wait_for_function("() => document.querySelectorAll('#gallery figure.result img').length == 3 && "
                               "[...document.querySelectorAll('#gallery figure.result img')]"
                               ".every(img => img.complete && img.naturalWidth == 32)", timeout=60_000)
        seeds = page.locator("#gallery figure.result").evaluate_all("fs => fs.map(f => f.dataset.seed)")
        assert seeds == ["20", "7", "8"]
        captions = page.locator("#gallery figcaption").all_inner_texts()
        assert captions[0].startswith("a blue square") and "Seed: 8," in captions[2]
        save_screenshot(page.screenshot(full_page=True), "history-after-reload", tmp_path)

        # "Reuse settings" of the second image of the batch puts its settings and own seed in the form
        page.wait_for_function("() => document.querySelectorAll('#scheduler option').length > 0")
        page.locator("#gallery figure.result").nth(2).get_by_role("button", name="Reuse settings").click()
        assert page.input_value("#prompt") == "a red circle" and page.input_value("#seed") == "8"
        assert page.input_value("#steps") == "3" and page.input_value("#width") == "32"
        assert page.input_value("#num_images") == "1"
        assert "seed 8" in page.inner_text("#status")
        save_screenshot(page.screenshot(full_page=True), "reuse-settings", tmp_path)

        # "Copy parameters" puts the image's infotext on the clipboard
        page.locator("#gallery figure.result").first.get_by_role("button", name="Copy parameters").click()
        page.wait_for_function("() => document.getElementById('status').textContent === 'parameters copied'")
        assert page.evaluate("() => navigator.clipboard.readText()") == captions[0]

        # the model picker: shown when /sdapi/v1/sd-models lists several models; choosing one posts
        # sd_model_checkpoint to /sdapi/v1/options. The list (and the switch) are faked in the browser:
        # the tiny test server has one model, and the switch is the multi-model server's to test.
        real_models = page.evaluate("() => fetch('/sdapi/v1/sd-models').then(r => r.json())")
        switches = []

        def models_route(route):
            route.fulfill(json=real_models + [OTHER_MODEL])

        def options_route(route):
            if route.request.method == "POST":
                switches.append(json.loads(route.request.post_data))
                route.fulfill(json={})
            else:
                route.continue_()

        page.route("**/sdapi/v1/sd-models", models_route)
        page.route("**/sdapi/v1/options", options_route)
        page.reload()
        page.wait_for_selector("#model-box:not([hidden])")
        assert page.locator("#model option").all_inner_texts() == [real_models[0]["model_name"], "shapes-run-2"]
        assert page.input_value("#model") == real_models[0]["title"]  # the server's current model
        page.select_option("#model", OTHER_MODEL["title"])
        page.wait_for_function("() => /model shapes-run-2 loaded/.test(document.getElementById('status').textContent)")
        assert switches == [{"sd_model_checkpoint": OTHER_MODEL["title"]}]
        assert page.is_enabled("#generate")
        save_screenshot(page.screenshot(), "model-picker", tmp_path)
        assert not console_errors, console_errors
        context.close()


@pytest.mark.slow
def test_docs_render_without_the_internet(browser, tiny_pipeline_dir):
    with live_server(tiny_pipeline_dir) as server:
        page = browser.new_page()
        outside = []

        def offline(route):  # this machine's browser has no internet: refuse every request elsewhere
            if route.request.url.startswith(server.url):
                route.continue_()
            else:
                # ReDoc's sidebar badge shows a logo from its CDN: a missing picture, not a blank page
                if route.request.resource_type != "image":
                    outside.append(route.request.url)
                route.abort()

        page.route("**/*", offline)
        for path, rendered in (("/docs", ".swagger-ui .opblock"), ("/redoc", "[data-section-id]")):
            page.goto(server.url + path)
            page.wait_for_selector(rendered, timeout=60_000)
            if path == "/docs":
                assert "/api/history" in page.inner_text(".swagger-ui")
        assert not outside, outside
