"""The Space driven in a real headless browser (Debian chromium + python playwright).

Set HF_COLORIZE_SPACE_SCREENSHOT=docs/images/space_screenshot.png to refresh the README screenshot.
"""

import os

import pytest

from test_space import EXAMPLES, assert_colorized, lab_of, served

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
TIMEOUT_MS = 180_000  # generous: CI machines may be busy; every wait ends as soon as its condition holds

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="python playwright is not installed (pip install playwright)")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"browser tests need chromium at {CHROMIUM} (apt-get install -y chromium, or set CHROMIUM=/path)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def space_url(browser, tmp_path_factory):
    with served(str(tmp_path_factory.mktemp("space_browser"))) as (_, _, url):
        yield url


@pytest.fixture
def page(browser, space_url):
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(space_url)
    page.wait_for_selector("#colorize-button")
    yield page
    page.close()


SLIDER_LOADED = """() => {
    const ims = [...document.querySelectorAll('#result-slider img')];
    return ims.length >= 2 && ims.every(i => i.complete && i.naturalWidth > 0);
}"""


def _slider_result(page, tmp_path):
    """Wait for both slider images, then download the "after" one as the browser sees it."""
    page.wait_for_function(SLIDER_LOADED)
    after = page.locator("#result-slider img").nth(1).get_attribute("src")
    out = tmp_path / "after.png"
    out.write_bytes(page.request.get(after).body())
    return out


def test_upload_colorize_and_download(page, photo_paths, tmp_path):
    photo = photo_paths[0]
    page.locator("#input-image input[type=file]").set_input_files(str(photo))
    page.wait_for_selector("#input-image img")
    page.click("#colorize-button")
    after = _slider_result(page, tmp_path)
    page.screenshot(path=str(tmp_path / "space.png"))
    assert_colorized(after, photo)
    sizes = page.evaluate("() => [...document.querySelectorAll('#result-slider img')].map(i => [i.naturalWidth, i.naturalHeight])")
    height, width = lab_of(photo).shape[1:]
    assert sizes == [[width, height], [width, height]]
    link = page.locator("#result-file a[download]").first
    assert link.get_attribute("download") == f"{photo.stem}_colorized.png"
    download = tmp_path / "download.png"
    download.write_bytes(page.request.get(link.get_attribute("href")).body())
    assert download.read_bytes() == after.read_bytes()


def test_example_click_shows_the_offline_cached_result(page, tmp_path):
    examples = sorted(EXAMPLES.iterdir())
    index = [p.name for p in examples].index("chelsea.jpg")
    page.locator("#examples button.gallery-item").nth(index).click()
    after = _slider_result(page, tmp_path)
    assert_colorized(after, examples[index])
    target = os.environ.get("HF_COLORIZE_SPACE_SCREENSHOT")
    if target:
        page.screenshot(path=target)


def test_bad_file_shows_a_friendly_error(page, tmp_path):
    bad = tmp_path / "old scan.jpg"
    bad.write_text("a text file pretending to be a JPEG")
    page.locator("#input-image input[type=file]").set_input_files(str(bad))
    page.click("#colorize-button")
    toast = page.locator("[data-testid='toast-body']").first
    toast.wait_for()
    text = toast.inner_text()
    assert "old scan.jpg: not a recognised image format" in text
    assert "Traceback" not in text and "File \"" not in text


def test_batch_tab_shows_a_gallery_and_a_zip(page, photo_paths, tmp_path):
    page.get_by_role("tab", name="Batch").click()
    page.locator("#batch-files input[type=file]").set_input_files([str(p) for p in photo_paths[:2]])
    page.click("#batch-button")
    page.wait_for_selector("#batch-zip a[download]")
    assert page.locator("#batch-zip a[download]").first.get_attribute("download") == "colorized.zip"
    assert "Colorized 2 of 2" in page.inner_text("#batch-status")
    first = page.locator("#batch-gallery img").first
    first.wait_for()
    result = tmp_path / "first.png"
    result.write_bytes(page.request.get(first.get_attribute("src")).body())
    assert_colorized(result, photo_paths[0])
