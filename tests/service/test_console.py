"""The web console in a real browser (Debian's Chromium via Playwright) against a real `python -m service`.

One server for the module: a tiny active model, an API key, and the training worker started by the API so
that jobs really run. Every request each page makes is recorded; any to another host fails the test.
Set CONSOLE_SCREENSHOT_DIR (e.g. docs/img) to save a screenshot of each view on the way.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
import pytest

from fusion_testkit.browser import CHROMIUM, CHROMIUM_ARGS
from fusion_testkit.factories import make_jpeg, save_tiny_checkpoint
from fusion_testkit.jobs import TINY_JOB_PARAMS
from fusion_testkit.processes import free_port
from fusion_testkit.service_process import ServiceProcess
from fusion_testkit.zips import demo_zip, valid_entries, zip_entries
from service.runtime.model_store import ModelStore

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Locator, Page, Request

API_KEY = "console-test-key"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
# Schemes the page may use without a network request: object URLs of chosen files, inline data.
LOCAL_SCHEMES = {"blob", "data", "about"}
TIMEOUT_MS = 30_000
JOB_TIMEOUT_MS = 240_000

pytestmark = pytest.mark.slow


@dataclass
class ConsoleServer:
    """The running service: its URL, its data, and the version that was active when it started."""

    url: str
    root: Path
    first_version: str
    store: ModelStore


@dataclass
class RecordedPage:
    """A page of a fresh browser context and every request that context made."""

    page: Page
    requests: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def console_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleServer]:
    """`python -m service` on a free port with a tiny active model recorded as scoring 0 (jobs beat it)."""
    root = tmp_path_factory.mktemp("console")
    store = ModelStore(root / "models")
    zero = {"fusion": {"accuracy": 0.0, "macro_f1": 0.0, "weighted_f1": 0.0}}
    first = save_tiny_checkpoint(store.new_version_path(), ("negative", "positive"), metrics=zero).name
    store.activate(first)
    server = ServiceProcess(
        root,
        free_port(),
        {
            "FUSION_API_KEY": API_KEY,
            "FUSION_START_WORKER": "true",
            "FUSION_WORKER_POLL_INTERVAL_S": "0.2",
            "FUSION_MODEL_POLL_INTERVAL_S": "0.2",
            "FUSION_TORCH_THREADS": "1",
        },
    )
    # The server, and the worker it starts, inherit one CPU: torch's threads spin-wait each other on a
    # machine shared with other work, and a tiny job takes many times longer (see the single_cpu fixture).
    before = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {min(before)})
        try:
            server.start()
        finally:
            os.sched_setaffinity(0, before)
        yield ConsoleServer(server.url, root, first, store)
    finally:
        server.stop()
        server.kill_everything()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium driven by Playwright; the module is skipped without them."""
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="Playwright for Python is not installed (pip install playwright)"
    )
    if not CHROMIUM.is_file() and shutil.which("chromium") is None:
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install -y chromium)")
    executable = str(CHROMIUM) if CHROMIUM.is_file() else shutil.which("chromium")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def console(browser: Browser, console_server: ConsoleServer) -> Iterator[RecordedPage]:
    """The console opened at `/` in a fresh context (empty sessionStorage) that records every request."""
    context = browser.new_context(viewport=DESKTOP)
    context.set_default_timeout(TIMEOUT_MS)
    recorded = RecordedPage(context.new_page())

    def record(request: Request) -> None:
        recorded.requests.append(request.url)

    context.on("request", record)
    recorded.page.goto(console_server.url + "/")
    recorded.page.wait_for_selector("body[data-ready='1']")
    yield recorded
    context.close()
    assert_only_server(recorded.requests, console_server.url)


def assert_only_server(requests: list[str], server_url: str) -> None:
    """Every request went to the service itself (no CDN, font host or anything else)."""
    server = urlsplit(server_url).netloc
    parts = [(url, urlsplit(url)) for url in requests]
    foreign = [url for url, part in parts if part.scheme not in LOCAL_SCHEMES and part.netloc != server]
    assert not foreign, f"the console fetched from other hosts: {foreign}"


def open_view(page: Page, name: str) -> None:
    """Go to a view with the keyboard: focus its tab and press Enter."""
    page.get_by_role("link", name=name, exact=True).focus()
    page.keyboard.press("Enter")
    page.wait_for_selector(f"[data-view-panel]:not([hidden]) h1:text-is('{name}')")


def use_key(page: Page, key: str) -> None:
    """Type `key` into the API-key field and use it."""
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Use key").click()


def upload_demo(server: ConsoleServer, workdir: Path, name: str) -> None:
    """Add the demo dataset over the API (the browser's upload is tested on its own)."""
    with httpx.Client(base_url=server.url, timeout=60) as http:
        response = http.post(
            "/datasets",
            headers={"Authorization": f"Bearer {API_KEY}"},
            data={"name": name},
            files={"file": ("demo.zip", demo_zip(workdir, n_per_class=6), "application/zip")},
        )
    assert response.status_code == 201, response.text


def start_job(page: Page, dataset: str, params: dict[str, Any]) -> None:
    """Fill the job form (dataset, its dev split for validation, `params`) and press Start job."""
    page.wait_for_selector(f"#dataset-refs option[value='{dataset}:dev']", state="attached")
    job_field(page, "dataset").fill(dataset)
    job_field(page, "validation").fill(f"{dataset}:dev")
    for name, value in params.items():
        control = job_field(page, f"params.{name}")
        if isinstance(value, bool):
            control.set_checked(value)
        elif control.evaluate("el => el.tagName") == "SELECT":
            control.select_option(str(value))
        else:
            control.fill(str(value))
    page.get_by_role("button", name="Start job").click()


def job_field(page: Page, name: str) -> Locator:
    """The input of the job form's field `name` (dotted for nested ones: `params.epochs`)."""
    return page.locator(f"#job-form-area [data-field='{name}'] :is(input, select)")


def screenshot(page: Page, name: str) -> None:
    """Save docs-style screenshots when CONSOLE_SCREENSHOT_DIR is set."""
    target = os.environ.get("CONSOLE_SCREENSHOT_DIR")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(target) / f"console-{name}.png"), full_page=True)


# The innermost elements that stick out of the window on the right, outside a scrolling container.
WIDER_THAN_THE_WINDOW = """() => {
  const out = (el) => el.getBoundingClientRect().right > window.innerWidth + 1;
  return [...document.querySelectorAll("body *")]
    .filter((el) => out(el) && !el.closest(".scroll") && ![...el.children].some(out))
    .map((el) => `${el.tagName.toLowerCase()}#${el.id}.${el.className}`);
}"""


def wider_than_the_window(page: Page) -> list[str]:
    """What makes the page wider than the window (nothing when it fits)."""
    found: Any = page.evaluate(WIDER_THAN_THE_WINDOW)
    return list(found)


# ---- served by the app itself -------------------------------------------------------------------------


def test_root_redirects_to_the_console_served_from_the_package(console_server: ConsoleServer) -> None:
    with httpx.Client(base_url=console_server.url, timeout=10) as http:
        root = http.get("/")
        bare = http.get("/console")
        page = http.get("/console/")
        script = http.get("/console/js/main.js")
    assert root.status_code == 307 and root.headers["location"] == "/console/"
    assert bare.status_code == 307 and bare.headers["location"] == "/console/"
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "Content-Security-Policy" in page.text and "default-src 'self'" in page.text
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]


# ---- in the browser ------------------------------------------------------------------------------------


def test_without_a_key_changes_are_disabled_and_a_wrong_key_reads_401(console: RecordedPage) -> None:
    page = console.page
    open_view(page, "Datasets")
    upload = page.get_by_role("button", name="Upload")
    reason = page.locator("form[aria-label='Upload a dataset'] .reason")
    page.wait_for_selector("#auth-status[data-state='missing']")
    assert upload.is_disabled()
    assert "needs an API key" in reason.inner_text()
    use_key(page, "not-the-key")
    page.wait_for_selector("#auth-status[data-state='rejected']")
    assert "401 Unauthorized" in page.locator("#auth-status").inner_text()
    assert "refused (401)" in reason.inner_text()
    assert upload.is_disabled()
    use_key(page, API_KEY)
    page.wait_for_selector("#auth-status[data-state='accepted']")
    assert upload.is_enabled() and reason.inner_text() == ""
    assert page.evaluate("sessionStorage.length") == 1
    assert page.evaluate("localStorage.length") == 0 and page.evaluate("document.cookie") == ""


def test_a_refused_upload_shows_its_problem_at_the_field(console: RecordedPage, tmp_path: Path) -> None:
    page = console.page
    use_key(page, API_KEY)
    open_view(page, "Datasets")
    entries = valid_entries()
    del entries["images/1.jpg"]
    broken = tmp_path / "broken.zip"
    broken.write_bytes(zip_entries(entries))
    page.get_by_label("Name").fill("broken")
    page.get_by_label("Zip file").set_input_files(str(broken))
    page.get_by_role("button", name="Upload").click()
    field_error = page.locator("#ds-file-error")
    field_error.wait_for()
    assert field_error.inner_text().startswith("file:")
    assert page.get_by_label("Zip file").get_attribute("aria-invalid") == "true"
    box = page.locator("#ds-outcome .error")
    assert "422 invalid_dataset" in box.inner_text()
    problems = box.locator("ul.problems li").all_inner_texts()
    assert any("images/1.jpg" in problem for problem in problems), problems
    screenshot(page, "datasets-refused")
    page.get_by_label("Name").fill("bad name!")
    page.get_by_role("button", name="Upload").click()
    assert page.locator("#ds-name-error").inner_text().startswith("name: must match")
    assert not page.locator("#ds-outcome .error").count()  # refused in the page, before any upload


def test_upload_train_promote_predict_and_roll_back(
    console: RecordedPage, console_server: ConsoleServer, tmp_path: Path
) -> None:
    page = console.page
    use_key(page, API_KEY)
    page.wait_for_selector("#auth-status[data-state='accepted']")

    # Datasets: the demo zip, with upload progress, then its sample count and label chart.
    open_view(page, "Datasets")
    archive = tmp_path / "demo.zip"
    archive.write_bytes(demo_zip(tmp_path, n_per_class=6))
    page.get_by_label("Name").fill("demo")
    page.get_by_label("Zip file").set_input_files(str(archive))
    page.get_by_role("button", name="Upload").click()
    assert "uploaded" in page.locator("#ds-outcome .ok").inner_text()
    card = page.locator("article.dataset[data-name='demo']")
    assert card.locator(".samples").inner_text() == "12"
    bars = card.locator(".bars li").evaluate_all("els => els.map(e => e.dataset.name)")
    assert set(bars) == {"negative", "positive"}
    screenshot(page, "datasets")

    # Jobs: the form from the schema, tiny params, live progress to the end, promoted by if_better.
    open_view(page, "Jobs")
    assert job_field(page, "promote").input_value() == "if_better"
    assert job_field(page, "params.epochs").input_value() == "30"  # the default recipe, shown
    cv_folds = job_field(page, "cv.folds")
    assert not cv_folds.is_visible()  # cross-validation is off until asked for
    page.get_by_label("send cv").check()
    assert cv_folds.is_visible()
    page.get_by_label("send cv").uncheck()
    job_field(page, "test").fill("demo:dev")
    start_job(page, "demo", {**TINY_JOB_PARAMS, "epochs": 2})
    page.wait_for_selector("#job-status:text-is('succeeded')", timeout=JOB_TIMEOUT_MS)
    assert page.locator("#job-stage").inner_text() == "stage: done"
    assert page.locator("#job-detail .progress-line progress").evaluate("el => el.value") == 1
    assert page.locator("#job-detail figure svg path").count() >= 2  # loss and validation curves
    new_version = page.locator("#job-version").inner_text()
    assert new_version != console_server.first_version
    promotion = page.locator("#job-detail .promotion").inner_text()
    assert promotion.startswith("Promoted.") and "promote=if_better" in promotion
    assert "Test set" in page.locator("#job-metrics").inner_text()  # apart from the validation metrics
    with page.expect_popup() as popup:
        page.locator("#job-report-link").click()
    report = popup.value
    report.wait_for_load_state()
    assert report.evaluate("document.contentType") == "image/png"
    report.close()
    screenshot(page, "jobs")

    # Try it: a real JPEG and a caption answered by the new version.
    open_view(page, "Try it")
    page.wait_for_selector(f"#try-model:has-text('{new_version}')")
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(make_jpeg((220, 60, 20), size=(64, 64)))
    page.locator("#try-image").set_input_files(str(photo))
    page.get_by_label("Caption").fill("embers")
    page.get_by_role("button", name="Predict").click()
    assert page.locator("#try-label").inner_text() in {"negative", "positive"}
    assert page.locator("#try-version").inner_text() == new_version
    page.get_by_role("button", name="Explain").click()
    page.wait_for_selector("#try-explanation h3:text-is('Image only')")
    assert page.locator("#try-explanation .card").count() == 3
    screenshot(page, "try")

    # Models: both versions side by side, the new one active; roll back with the keyboard.
    open_view(page, "Models")
    header = page.locator(f"table.models th[data-version='{new_version}']")
    assert "active" in header.inner_text()
    screenshot(page, "models")
    page.locator(f"table.models button[data-version='{console_server.first_version}']").focus()
    page.keyboard.press("Enter")
    dialog = page.locator("dialog#confirm")
    assert "Roll back" in dialog.inner_text()
    page.keyboard.press("Tab")  # from Cancel to the confirming button
    page.keyboard.press("Enter")
    page.wait_for_selector(f"table.models th[data-version='{console_server.first_version}'] .active-badge")
    assert console_server.store.active_version() == console_server.first_version

    # Readable at a phone's width: nothing wider than the screen outside its scrolling table.
    page.set_viewport_size(PHONE)
    for view in ("Try it", "Datasets", "Jobs", "Models"):
        open_view(page, view)
        assert not wider_than_the_window(page), f"{view} is wider than a phone"
    screenshot(page, "models-phone")
    assert_only_server(console.requests, console_server.url)


def test_a_failed_job_says_why(console: RecordedPage, console_server: ConsoleServer, tmp_path: Path) -> None:
    upload_demo(console_server, tmp_path, "fails")
    page = console.page
    use_key(page, API_KEY)
    open_view(page, "Jobs")
    # The server and its worker have one CPU: two training processes are refused when the job starts.
    start_job(page, "fails", {**TINY_JOB_PARAMS, "epochs": 1, "nproc": 2})
    page.wait_for_selector("#job-status:text-is('failed')", timeout=JOB_TIMEOUT_MS)
    assert "nproc: 2 training processes" in page.locator("#job-error").inner_text()


def test_a_running_job_can_be_cancelled(
    console: RecordedPage, console_server: ConsoleServer, tmp_path: Path
) -> None:
    upload_demo(console_server, tmp_path, "cancels")
    page = console.page
    use_key(page, API_KEY)
    open_view(page, "Jobs")
    start_job(page, "cancels", {**TINY_JOB_PARAMS, "epochs": 500})
    page.wait_for_selector("#job-stage:text-is('stage: training')", timeout=JOB_TIMEOUT_MS)
    page.get_by_role("button", name="Cancel job").click()
    page.wait_for_selector("#job-status:text-is('cancelled')", timeout=JOB_TIMEOUT_MS)
    assert not page.locator("#job-version").count()
