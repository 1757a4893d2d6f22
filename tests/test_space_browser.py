"""The Space driven in a real headless browser (Debian chromium + python playwright).

Set HF_COLORIZE_SPACE_SCREENSHOT=docs/images/space_screenshot.png to refresh the README screenshot.
"""

import os

import pytest

from test_space import EXAMPLES, assert_colorized, lab_of, lab_of_colour, served

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


# --------------------------------------------------------------------------------------------------
# The "Hints & reference" tab
# --------------------------------------------------------------------------------------------------
def _image_src_changed(page, selector, old_src):
    """Wait until the image at `selector` shows a new, loaded file; return its src."""
    page.wait_for_function("""([sel, old]) => {
        const im = document.querySelector(sel);
        return im && im.src && im.src !== old && im.complete && im.naturalWidth > 0;
    }""", arg=[selector, old_src])
    return page.locator(selector).first.get_attribute("src")


def _hint_rows(page):
    """The hint list as [(x, y, "#rrggbb"), ...]."""
    rows = page.locator("#hint-list table tr").all_inner_texts()[1:]
    return [(int(x), int(y), colour.strip()) for _, x, y, colour in (r.split("\t") for r in rows)]


def _fetch_lab(page, src, path):
    path.write_bytes(page.request.get(src).body())
    return lab_of(path)


def _open_guided_tab(page, photo):
    page.get_by_role("tab", name="Hints & reference").click()
    page.locator("#guide-image input[type=file]").set_input_files(str(photo))
    return _image_src_changed(page, "#guided-result img", None)


def test_hint_click_colour_undo_and_clear(page, photo_paths, tmp_path):
    photo = photo_paths[1]  # coffee, 300x200: shown scaled up to neither side, clicks map 1:1 or through the canvas copy
    width, height = lab_of(photo).shape[2], lab_of(photo).shape[1]
    src = _open_guided_tab(page, photo)
    before = _fetch_lab(page, src, tmp_path / "before.png")
    assert_colorized(tmp_path / "before.png", photo)
    assert "No hints yet" in page.inner_text("#hint-list")

    # click at 30% / 40% of the shown photo: a hint at that pixel of the photo, coloured as predicted
    shown = page.locator("#guide-image img").first
    box = shown.bounding_box()
    shown.click(position={"x": box["width"] * 0.3, "y": box["height"] * 0.4})
    page.wait_for_selector("#hint-list table")
    [(x, y, predicted)] = _hint_rows(page)
    assert abs(x - 0.3 * width) <= 1.5 and abs(y - 0.4 * height) <= 1.5, (x, y)
    assert predicted.startswith("#") and len(predicted) == 7
    src = _image_src_changed(page, "#guided-result img", src)

    # the colour picker sets the hint's colour: type a blue into its hex field
    page.click("#hint-color button.dialog-button")
    field = page.locator("#hint-color input[type=text]")
    field.fill("#1f3fff")
    field.press("Enter")
    page.wait_for_function("() => document.querySelector('#hint-list').innerText.includes('#1f3fff')")
    assert _hint_rows(page) == [(x, y, "#1f3fff")]
    src = _image_src_changed(page, "#guided-result img", src)
    after = _fetch_lab(page, src, tmp_path / "after.png")
    assert after.shape == before.shape
    assert (after[0] - before[0]).abs().mean().item() < 1.0  # a hint never changes L

    blue = lab_of_colour("#1f3fff")
    near = (slice(max(0, y - 2), y + 3), slice(max(0, x - 2), x + 3))

    def distance_to_blue(lab):
        return (lab[1:, near[0], near[1]] - blue[1:, None, None]).norm(dim=0).mean().item()

    # the result moved towards the hint's colour at the hint (distances in ab units)
    assert distance_to_blue(after) < 0.5 * distance_to_blue(before), (distance_to_blue(before), distance_to_blue(after))
    assert (after[1:, near[0], near[1]] - before[1:, near[0], near[1]]).norm(dim=0).mean().item() > 10

    # undo: no hints, the automatic result again
    page.click("#hint-undo")
    page.wait_for_function("() => document.querySelector('#hint-list').innerText.includes('No hints yet')")
    src = _image_src_changed(page, "#guided-result img", src)
    undone = _fetch_lab(page, src, tmp_path / "undone.png")
    assert (undone[1:] - before[1:]).abs().max().item() < 1.0

    # two hints, then clear all
    for fx in (0.2, 0.7):
        count = len(page.locator("#hint-list table tr").all()) if page.locator("#hint-list table").count() else 1
        shown.click(position={"x": box["width"] * fx, "y": box["height"] * 0.5})
        page.wait_for_function("(n) => document.querySelectorAll('#hint-list table tr').length === n + 1", arg=count)
    assert len(_hint_rows(page)) == 2
    page.click("#hint-clear")
    page.wait_for_function("() => document.querySelector('#hint-list').innerText.includes('No hints yet')")


def test_reference_upload_steers_the_result(page, photo_paths, tmp_path):
    """A reference photo (here the colour original itself: the SIGGRAPH 2017 "ground truth as reference"
    case) moves the result's colours towards it; L stays the photo's."""
    photo = photo_paths[1]
    truth = lab_of(photo)
    src = _open_guided_tab(page, photo)
    automatic = _fetch_lab(page, src, tmp_path / "automatic.png")
    page.locator("#reference-image input[type=file]").set_input_files(str(photo))
    src = _image_src_changed(page, "#guided-result img", src)
    guided = _fetch_lab(page, src, tmp_path / "guided.png")
    assert_colorized(tmp_path / "guided.png", photo)

    def ab_error(lab):
        return (lab[1:] - truth[1:]).norm(dim=0).mean().item()

    assert ab_error(guided) < ab_error(automatic) - 1.0, (ab_error(automatic), ab_error(guided))
    assert (guided[0] - automatic[0]).abs().mean().item() < 1.0
