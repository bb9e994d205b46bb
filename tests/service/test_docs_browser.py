"""The docs pages in a real headless Chromium, offline: try POST /predict on /docs, find it on /redoc."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from fusion_testkit.browser import CHROMIUM, CHROMIUM_ARGS
from fusion_testkit.factories import make_jpeg
from fusion_testkit.live_server import serve
from service.app import create_app
from service.settings import Settings

# Set to a folder (e.g. docs/img) to keep the screenshot of /docs taken by the test there.
SCREENSHOT_DIR = os.environ.get("FUSION_SCREENSHOT_DIR")

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (dev extra)")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.is_file(), reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    ),
]


@pytest.fixture
def server_url(active_version: str, make_settings: Callable[..., Settings]) -> Iterator[str]:
    with serve(create_app(make_settings())) as url:
        yield url


@pytest.fixture
def page(server_url: str) -> Iterator[Any]:
    """A Chromium page that may reach the server only: every other request is recorded and refused."""
    foreign: list[str] = []

    def only_local(route: Any) -> None:
        url = urlsplit(route.request.url)
        if url.scheme in ("data", "blob") or url.hostname == "127.0.0.1":
            route.continue_()
        else:
            foreign.append(route.request.url)
            route.abort()

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 1600})
            context.route("**/*", only_local)
            page = context.new_page()
            page.set_default_timeout(30_000)
            yield page
        finally:
            browser.close()
    assert not foreign, f"the docs page asked for other hosts: {foreign}"


def test_try_out_predict_on_the_docs_page_with_a_real_jpeg(
    page: Any, server_url: str, tmp_path: Path
) -> None:
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(make_jpeg((240, 180, 40), (96, 96)))
    page.goto(f"{server_url}/docs")
    operation = page.locator("#operations-predict-predict_predict_post")
    operation.locator(".opblock-summary").click()
    operation.locator("button.try-out__btn").click()
    operation.locator("input[type=file]").set_input_files(str(photo))
    operation.locator("button.execute").click()

    status = operation.locator(".live-responses-table .response .response-col_status")
    sync_api.expect(status.first).to_have_text("200")
    body = operation.locator(".live-responses-table .response-col_description pre").first.inner_text()
    assert '"label"' in body and '"model_version"' in body
    screenshot = page.screenshot(full_page=True)
    (tmp_path / "docs-page.png").write_bytes(screenshot)
    if SCREENSHOT_DIR:
        Path(SCREENSHOT_DIR).mkdir(parents=True, exist_ok=True)
        (Path(SCREENSHOT_DIR) / "docs-page.png").write_bytes(screenshot)


def test_redoc_renders_the_predict_operation(page: Any, server_url: str) -> None:
    page.goto(f"{server_url}/redoc")
    # ReDoc renders the whole spec in the browser before it shows anything: slow on a busy machine.
    operation = page.locator("[data-section-id='tag/predict/operation/predict_predict_post']")
    sync_api.expect(operation).to_be_visible(timeout=120_000)
    sync_api.expect(operation.get_by_text("Classify one image + text pair").first).to_be_visible()
    sync_api.expect(operation.get_by_text("unsupported_image_type").first).to_be_attached()
