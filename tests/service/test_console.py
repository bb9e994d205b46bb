"""The web console in real browsers (Debian's Chromium and Firefox ESR, both through Playwright) against a
real `python -m service`.

One server for the module: a tiny active model, an API key, and the training worker started by the API so
that jobs really run. Every test runs in each browser (Firefox over WebDriver BiDi, which a stock Firefox
speaks: see fusion_testkit.browser); a browser that is not installed skips its tests with the reason.
Every request each page makes is recorded, and so is every error the page shows (a script's, or what its
Content-Security-Policy refuses: Chromium logs those as console errors, Firefox as page errors); a request to
another host or any such error fails the test.
Set CONSOLE_SCREENSHOT_DIR (e.g. docs/img) to save screenshots on the way: each view in Chromium, the Try it
view in Firefox (console-firefox.png).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
import pytest

from fusion_testkit.browser import CHROMIUM_BROWSER, FIREFOX_BROWSER, SystemBrowser
from fusion_testkit.factories import make_jpeg, save_tiny_checkpoint
from fusion_testkit.jobs import TINY_JOB_PARAMS
from fusion_testkit.processes import free_port
from fusion_testkit.service_process import ServiceProcess
from fusion_testkit.zips import demo_zip, valid_entries, zip_entries
from model.config import TrainConfig
from service.runtime.model_store import ModelStore

if TYPE_CHECKING:
    from playwright.sync_api import Browser, ConsoleMessage, Locator, Page, Request, Response

API_KEY = "console-test-key"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
# Schemes the page may use without a network request: object URLs of chosen files, inline data.
LOCAL_SCHEMES = {"blob", "data", "about"}
# How Chromium logs any HTTP error answer, e.g. the 401 or 404 the key check asks for on purpose: the
# console's own files answering an error are recorded from the responses instead.
HTTP_ERROR_NOTE = "Failed to load resource: the server responded with a status of"
# Playwright's screenshots in Firefox put a <style> of their own into the page, which its CSP refuses.
SCREENSHOT_STYLE_REFUSAL = "settings blocked an inline style (style-src-elem)"
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
    """A page of a fresh browser context, every request that context made and every error its page showed."""

    page: Page
    browser: str  # Playwright's name of the browser: chromium or firefox
    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    screenshots: bool = False  # whether `screenshot` took any (CONSOLE_SCREENSHOT_DIR)

    def page_errors(self) -> list[str]:
        """The errors that are the console's (not those of Playwright's own screenshot styles)."""
        return [e for e in self.errors if not (self.screenshots and SCREENSHOT_STYLE_REFUSAL in e)]

    def unique(self, name: str) -> str:
        """`name` for this browser's run (a dataset per browser: the server is shared by both runs)."""
        return f"{name}-{self.browser}"


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


@pytest.fixture(scope="module", params=[CHROMIUM_BROWSER, FIREFOX_BROWSER], ids=lambda system: system.name)
def browser(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    """Debian's Chromium, then Firefox ESR, driven by Playwright; each is skipped where it is missing."""
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="Playwright for Python is not installed (pip install playwright)"
    )
    system: SystemBrowser = request.param
    missing = system.missing()
    if missing:
        pytest.skip(missing)
    with sync_api.sync_playwright() as playwright:
        options = system.launch_options(tmp_path_factory.mktemp(system.name))
        launched = getattr(playwright, system.name).launch(**options)
        yield launched
        launched.close()


@pytest.fixture
def console(browser: Browser, console_server: ConsoleServer) -> Iterator[RecordedPage]:
    """The console opened at `/` in a fresh context (empty sessionStorage) that records every request and
    every error of the page; at the end, any request to another host or any error fails the test."""
    context = browser.new_context(viewport=DESKTOP)
    context.set_default_timeout(TIMEOUT_MS)
    recorded = RecordedPage(context.new_page(), browser.browser_type.name)

    def record(request: Request) -> None:
        recorded.requests.append(request.url)

    def note_console(message: ConsoleMessage) -> None:
        if message.type == "error" and not message.text.startswith(HTTP_ERROR_NOTE):
            recorded.errors.append(message.text)

    def note_response(response: Response) -> None:
        if urlsplit(response.url).path.startswith("/console/") and response.status >= 400:
            recorded.errors.append(f"{response.status} for {response.url}")

    def note_page_error(error: Exception) -> None:
        recorded.errors.append(str(error))

    context.on("request", record)
    context.on("response", note_response)
    recorded.page.on("console", note_console)
    recorded.page.on("pageerror", note_page_error)
    recorded.page.goto(console_server.url + "/")
    recorded.page.wait_for_selector("body[data-ready='1']")
    yield recorded
    context.close()
    assert_only_server(recorded.requests, console_server.url)
    errors = recorded.page_errors()
    assert not errors, f"the console showed errors in {recorded.browser}: {errors}"


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


def upload_demo(server: ConsoleServer, workdir: Path, name: str, n_per_class: int = 6) -> None:
    """Add the demo dataset over the API (the browser's upload is tested on its own)."""
    with httpx.Client(base_url=server.url, timeout=60) as http:
        response = http.post(
            "/datasets",
            headers={"Authorization": f"Bearer {API_KEY}"},
            data={"name": name},
            files={"file": ("demo.zip", demo_zip(workdir, n_per_class=n_per_class), "application/zip")},
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
            # Emptied first: over WebDriver BiDi, Playwright's fill cannot select the default in a number
            # input of a stock Firefox and would append to it (224 -> 22432); a person's Ctrl+A works.
            control.clear()
            control.fill(str(value))
    page.get_by_role("button", name="Start job").click()


def job_field(page: Page, name: str) -> Locator:
    """The input of the job form's field `name` (dotted for nested ones: `params.epochs`)."""
    return page.locator(f"#job-form-area [data-field='{name}'] :is(input, select)")


def screenshot(console: RecordedPage, view: str) -> None:
    """With CONSOLE_SCREENSHOT_DIR set, save the docs' picture of `view`: console-<view>.png from Chromium,
    and one from Firefox, of Try it, as console-firefox.png."""
    target = os.environ.get("CONSOLE_SCREENSHOT_DIR")
    if console.browser == CHROMIUM_BROWSER.name:
        name = f"console-{view}.png"
    elif view == "try":
        name = f"console-{console.browser}.png"
    else:
        return
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        console.screenshots = True
        console.page.screenshot(path=str(Path(target) / name), full_page=True)


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


# The focused element as `tag#id`, or `tag:its text` without an id (null: nothing in the page is).
FOCUSED = """() => {
  const el = document.activeElement;
  if (!el || el === document.body) return null;
  const text = (el.getAttribute("aria-label") || el.textContent || "").trim().replace(/\\s+/g, " ");
  return el.id ? `${el.tagName.toLowerCase()}#${el.id}` : `${el.tagName.toLowerCase()}:${text.slice(0, 60)}`;
}"""
MAX_TABS = 120


def tab_stops(page: Page) -> list[str]:
    """What Tab focuses, in order, from the page's first link (Skip to content) until it comes round again."""
    page.get_by_role("link", name="Skip to content").focus()
    stops: list[str] = [page.evaluate(FOCUSED)]
    for _ in range(MAX_TABS):
        page.keyboard.press("Tab")
        stop = page.evaluate(FOCUSED)
        if stop == stops[0]:
            break
        if stop is not None:  # past the last element, focus may be in the browser's own toolbar
            stops.append(stop)
    return stops


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


def test_every_view_renders_styled_and_without_errors(
    console: RecordedPage, console_server: ConsoleServer
) -> None:
    page = console.page
    active = console_server.store.active_version()
    assert page.locator(".tabs").evaluate("el => getComputedStyle(el).display") == "flex"  # console.css
    open_view(page, "Try it")
    page.wait_for_selector(f"#try-model:has-text('Active model {active}')")
    open_view(page, "Datasets")
    page.wait_for_selector("#ds-list > :is(.cards, p.muted)")
    open_view(page, "Jobs")
    assert job_field(page, "params.epochs").input_value() == str(TrainConfig().epochs)
    page.wait_for_selector("#job-list > *")
    open_view(page, "Models")
    page.wait_for_selector(f"table.models th[data-version='{active}'] .active-badge")
    assert page.title() == "Models · Fusion console"
    assert not console.page_errors()


def test_try_it_predicts_a_jpeg_and_draws_the_probabilities(
    console: RecordedPage, console_server: ConsoleServer, tmp_path: Path
) -> None:
    page = console.page
    active = console_server.store.active_version()
    open_view(page, "Try it")
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(make_jpeg((30, 90, 200), size=(64, 48)))
    page.locator("#try-image").set_input_files(str(photo))
    preview = page.locator("img.preview")
    preview.wait_for()
    page.wait_for_function("document.querySelector('img.preview').naturalWidth === 64")  # the blob: URL
    page.get_by_label("Caption").fill("a calm blue sea")
    page.get_by_role("button", name="Predict").click()
    label = page.locator("#try-label").inner_text()
    assert page.locator("#try-version").inner_text() == active
    bars = page.locator("#try-result .bars li")
    names = bars.evaluate_all("els => els.map(e => e.dataset.name)")
    assert sorted(names) == ["negative", "positive"] and label in names
    assert page.locator("#try-result .bars li.best-bar").get_attribute("data-name") == label
    # Each bar's fill is its share of the track: the percentage shown, drawn through the CSSOM.
    shown = [float(text.rstrip(" %")) for text in bars.locator(".bar-value").all_inner_texts()]
    assert abs(sum(shown) - 100) < 0.2, shown
    drawn = bars.evaluate_all(
        """els => els.map(e => e.querySelector('.bar-fill').getBoundingClientRect().width
                          / e.querySelector('.bar-track').clientWidth)"""
    )
    assert all(abs(100 * fraction - value) < 2 for fraction, value in zip(drawn, shown, strict=True)), drawn


def test_the_keyboard_reaches_the_main_controls(console: RecordedPage) -> None:
    page = console.page
    use_key(page, API_KEY)
    page.wait_for_selector("#auth-status[data-state='accepted']")
    everywhere = {"a:Try it", "a:Datasets", "a:Jobs", "a:Models", "input#api-key", "button:Use key"}
    controls = {
        "Try it": {"label:Drop a photo here, or press to choose one", "textarea#try-text", "button:Predict"},
        "Datasets": {"input#ds-name", "input#ds-file", "input#ds-skip", "button#ds-upload"},
        "Jobs": {
            "input#field-dataset",
            "input#field-params-epochs",
            "select#field-promote",
            "button#job-start",
        },
    }
    for view, expected in controls.items():
        open_view(page, view)
        stops = tab_stops(page)
        missing = (everywhere | expected) - set(stops)
        assert not missing, f"Tab never reaches {missing} in {view}: {stops}"


@pytest.mark.parametrize("key", ["Enter", " "], ids=["enter", "space"])
@pytest.mark.parametrize("viewport", [None, PHONE], ids=["desktop", "phone"])
def test_enter_or_space_on_the_drop_zone_opens_the_file_picker(
    console: RecordedPage, viewport: dict[str, int] | None, key: str, tmp_path: Path
) -> None:
    page = console.page
    jpeg_file = tmp_path / "picked.jpg"
    jpeg_file.write_bytes(make_jpeg())
    if viewport:
        page.set_viewport_size(viewport)
    # A listener from the start: expect_file_chooser alone turns interception on only as the key goes down,
    # and a picker the browser opens before that is a real one. One picker per page: over WebDriver BiDi,
    # Firefox's stays open after set_files and blocks the next.
    page.on("filechooser", lambda _chooser: None)
    open_view(page, "Try it")
    page.locator("label.drop").focus()
    with page.expect_file_chooser(timeout=10_000) as chooser:
        page.keyboard.press(key)
    chooser.value.set_files(str(jpeg_file))
    page.wait_for_selector(f"label.drop:has-text('{jpeg_file.name} · drop or press to change')")
    assert page.locator("img.preview").is_visible()


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
    screenshot(console, "datasets-refused")
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
    demo = console.unique("demo")
    page.get_by_label("Name").fill(demo)
    page.get_by_label("Zip file").set_input_files(str(archive))
    page.get_by_role("button", name="Upload").click()
    assert "uploaded" in page.locator("#ds-outcome .ok").inner_text()
    card = page.locator(f"article.dataset[data-name='{demo}']")
    assert card.locator(".samples").inner_text() == "12"
    bars = card.locator(".bars li").evaluate_all("els => els.map(e => e.dataset.name)")
    assert set(bars) == {"negative", "positive"}
    screenshot(console, "datasets")

    # Jobs: the form from the schema, tiny params, live progress to the end, promoted by if_better.
    open_view(page, "Jobs")
    assert job_field(page, "promote").input_value() == "if_better"
    assert job_field(page, "params.epochs").input_value() == str(TrainConfig().epochs)  # the default, shown
    assert job_field(page, "params.finetune_layers").input_value() == str(TrainConfig().finetune_layers)
    cv_folds = job_field(page, "cv.folds")
    assert not cv_folds.is_visible()  # cross-validation is off until asked for
    page.get_by_label("send cv").check()
    assert cv_folds.is_visible()
    page.get_by_label("send cv").uncheck()
    job_field(page, "test").fill(f"{demo}:dev")
    start_job(page, demo, {**TINY_JOB_PARAMS, "epochs": 2})
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
    screenshot(console, "jobs")

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
    screenshot(console, "try")

    # Models: both versions side by side, the new one active; roll back with the keyboard.
    open_view(page, "Models")
    header = page.locator(f"table.models th[data-version='{new_version}']")
    assert "active" in header.inner_text()
    screenshot(console, "models")
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
    screenshot(console, "models-phone")
    assert_only_server(console.requests, console_server.url)


def test_a_failed_job_says_why(console: RecordedPage, console_server: ConsoleServer, tmp_path: Path) -> None:
    fails = console.unique("fails")
    upload_demo(console_server, tmp_path, fails)
    page = console.page
    use_key(page, API_KEY)
    open_view(page, "Jobs")
    # The server and its worker have one CPU: two training processes are refused when the job starts.
    start_job(page, fails, {**TINY_JOB_PARAMS, "epochs": 1, "nproc": 2})
    page.wait_for_selector("#job-status:text-is('failed')", timeout=JOB_TIMEOUT_MS)
    assert "nproc: 2 training processes" in page.locator("#job-error").inner_text()


def test_a_running_job_can_be_cancelled(
    console: RecordedPage, console_server: ConsoleServer, tmp_path: Path
) -> None:
    cancels = console.unique("cancels")
    # 60 samples a class: 500 tiny epochs of 12 samples can end within seconds on a fast machine, before
    # the page has shown the training stage; of 120 they take over a minute on the server's one CPU.
    upload_demo(console_server, tmp_path, cancels, n_per_class=60)
    page = console.page
    use_key(page, API_KEY)
    open_view(page, "Jobs")
    start_job(page, cancels, {**TINY_JOB_PARAMS, "epochs": 500})
    page.wait_for_selector("#job-stage:text-is('stage: training')", timeout=JOB_TIMEOUT_MS)
    # Progress events redraw the detail several times a second; the button and an opened recipe stay the
    # same elements through them (a button replaced between mouse-down and mouse-up loses the click).
    cancel = page.locator("#job-cancel").element_handle()
    page.locator("#job-detail summary").click()
    epoch = page.locator("#job-epoch").inner_text()
    changed = "before => document.querySelector('#job-epoch')?.textContent !== before"
    page.wait_for_function(changed, arg=epoch, timeout=JOB_TIMEOUT_MS)
    assert cancel.evaluate("el => el.isConnected")
    assert page.locator("#job-detail details").evaluate("el => el.open")
    page.get_by_role("button", name="Cancel job").click()
    page.wait_for_selector("#job-status:text-is('cancelled')", timeout=JOB_TIMEOUT_MS)
    assert not page.locator("#job-version").count()
