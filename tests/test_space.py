"""The Gradio Space (spaces_app/app.py) served on localhost and called through gradio_client.

The helpers at the top are shared with test_space_browser.py and test_space_load.py.
"""

import contextlib
import importlib.util
import os
import pathlib
import shutil
import socket
import struct
import subprocess
import sys
import time
import zipfile
import zlib

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
APP = ROOT / "spaces_app" / "app.py"
EXAMPLES = ROOT / "spaces_app" / "examples"
STARTUP_TIMEOUT_S = 600  # importing torch + gradio on a busy 2-core machine can take minutes
MIN_CHROMA = 2.0  # mean ab chroma of a colour result; 8-bit gray images measure < 0.5


# --------------------------------------------------------------------------------------------------
# Helpers (shared by the Space tests)
# --------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def env(**values):
    """Temporarily set environment variables (None removes one)."""
    old = {k: os.environ.get(k) for k in values}
    try:
        for k, v in values.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = str(v)
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def load_app():
    """Import spaces_app/app.py afresh (it reads its settings from the environment at import)."""
    pytest.importorskip("gradio", reason="gradio is not installed (pip install 'hf-colorize[demo]')")
    spec = importlib.util.spec_from_file_location(f"space_app_{time.monotonic_ns()}", APP)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def served(tmp_dir, **env_values):
    """Build and serve the demo in this process; yields (app module, ModelCache, url)."""
    with env(GRADIO_EXAMPLES_CACHE=os.path.join(tmp_dir, "examples_cache"), **env_values):
        app = load_app()
        models = app.ModelCache(app.model_choices())
        demo = app.build_demo(models)
        _, url, _ = app.launch(demo, server_name="127.0.0.1", server_port=free_port(),
                               prevent_thread_lock=True, quiet=True)
        try:
            yield app, models, url
        finally:
            demo.close()


@contextlib.contextmanager
def served_subprocess(tmp_dir, **env_values):
    """`python spaces_app/app.py` as users run it; yields (Popen, url)."""
    port = free_port()
    run_env = dict(os.environ, GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=str(port),
                   GRADIO_EXAMPLES_CACHE=os.path.join(tmp_dir, "examples_cache"),
                   PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
                   **{k: str(v) for k, v in env_values.items()})
    log_path = os.path.join(tmp_dir, "server.log")
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, str(APP)], env=run_env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        import httpx

        while True:
            if proc.poll() is not None:
                pytest.fail(f"the Space exited with code {proc.returncode}:\n{open(log_path).read()[-3000:]}")
            try:
                if httpx.get(url + "config", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the Space did not start within {STARTUP_TIMEOUT_S} s:\n{open(log_path).read()[-3000:]}")
            time.sleep(0.5)
        yield proc, url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def lab_of(path):
    """Any image file -> CIE Lab `(3, H, W)` (the package's own colour maths)."""
    from hf_colorize.models.colorization.image_processing_colorization import load_rgb, rgb_to_lab

    return rgb_to_lab(load_rgb(str(path)))


def lab_of_colour(colour):
    """A colour ("#rrggbb", a CSS name, ...) -> its CIE Lab `(3,)`."""
    import torch

    from hf_colorize.models.colorization.guidance_colorization import parse_color
    from hf_colorize.models.colorization.image_processing_colorization import rgb_to_lab

    return rgb_to_lab(torch.tensor(parse_color(colour), dtype=torch.float32).view(3, 1, 1) / 255.0)[:, 0, 0]


def mean_chroma(lab) -> float:
    return lab[1:].norm(dim=0).mean().item()


def assert_colorized(result, source):
    """`result` is a colour image of `source`: same size, clearly coloured, same lightness."""
    out, src = lab_of(result), lab_of(source)
    assert out.shape == src.shape, f"{result}: size {tuple(out.shape[1:])} != input {tuple(src.shape[1:])}"
    assert mean_chroma(out) > MIN_CHROMA, f"{result}: looks gray (mean chroma {mean_chroma(out):.2f})"
    # the result keeps the input's lightness (up to 8-bit rounding and gamut mapping)
    assert (out[0] - src[0]).abs().mean().item() < 1.0


def bomb_png(path, width=100_000, height=100_000):
    """A tiny PNG whose header declares a huge image (a decompression bomb)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    pathlib.Path(path).write_bytes(data)
    return path


# --------------------------------------------------------------------------------------------------
# The served app
# --------------------------------------------------------------------------------------------------
UNCACHED_HUB_MODEL = "nobody-here/not-a-cached-model"
MAX_FRAMES = 20


@pytest.fixture(scope="module")
def space(tmp_path_factory, tiny_model_dir):
    from gradio_client import Client

    tmp = tmp_path_factory.mktemp("space")
    with served(str(tmp), HF_COLORIZE_MODEL=f"{tiny_model_dir},{UNCACHED_HUB_MODEL}",
                HF_COLORIZE_MAX_FILE_SIZE="2mb", HF_COLORIZE_MAX_FRAMES=MAX_FRAMES) as (app, models, url):
        client = Client(url, verbose=False, download_files=str(tmp / "downloads"))
        yield app, models, client, url, tmp


@pytest.mark.slow
def test_colorizes_real_photos_at_original_size(space, photo_paths, gray_photo_paths):
    app, _, client, _, _ = space
    from gradio_client import handle_file

    for path in [photo_paths[0], photo_paths[1], gray_photo_paths[0]]:
        (before, after), download = client.predict(handle_file(str(path)), model=app.DEFAULT_LABEL, api_name="/colorize")
        assert_colorized(after, path)
        assert pathlib.Path(download).read_bytes() == pathlib.Path(after).read_bytes()
        assert pathlib.Path(download).name == f"{path.stem}_colorized.png"
        before_lab, src_lab = lab_of(before), lab_of(path)
        assert before_lab.shape == src_lab.shape and mean_chroma(before_lab) < 0.5  # the gray "before"
        assert (before_lab[0] - src_lab[0]).abs().mean().item() < 1.0


@pytest.mark.slow
def test_controls_change_the_result(space, photo_paths):
    app, _, client, _, _ = space
    from gradio_client import handle_file

    path = photo_paths[2]

    def chroma(**controls):
        _, result = client.predict(handle_file(str(path)), model=app.DEFAULT_LABEL, api_name="/colorize", **controls)
        assert_colorized(result, path)
        return mean_chroma(lab_of(result))

    # each control changes the result (which way the chroma goes depends on the model: the embedded default's
    # most likely bin is often less saturated than its mean); T = 1 is the mean decoding exactly
    assert abs(chroma(temperature=0.1) - chroma(temperature=1.0)) > 0.5
    assert chroma(temperature=1.0) == pytest.approx(chroma(decode_mode="mean"), abs=0.05)
    assert abs(chroma(decode_mode="mode") - chroma(decode_mode="mean")) > 0.5
    chroma(size=128, decode_mode="median")  # another processing size still yields the original resolution


@pytest.mark.slow
def test_model_choice_loads_each_model_once(space, photo_paths, tiny_model_dir):
    app, models, client, _, _ = space
    from gradio_client import handle_file

    assert list(models.choices) == [str(tiny_model_dir), UNCACHED_HUB_MODEL, app.DEFAULT_LABEL, app.HYPERCOLUMN_LABEL]
    first = models.get(str(tiny_model_dir))
    for _ in range(2):
        _, result = client.predict(handle_file(str(photo_paths[3])), size=64, api_name="/colorize")  # default = tiny
        assert_colorized(result, photo_paths[3])
    assert models.get(str(tiny_model_dir)) is first
    assert first.model.config.width_multiplier == 0.125
    # the one inference path: the Space's result is the Colorizer's own, pixel for pixel
    from PIL import Image

    from hf_colorize import Colorizer

    assert isinstance(first, Colorizer)
    with Image.open(result) as served_image:
        assert (np.asarray(served_image.convert("RGB")) == first(str(photo_paths[3]), size=64, output_type="np")).all()
    # the second family, through the same path
    _, result = client.predict(handle_file(str(photo_paths[3])), model=app.HYPERCOLUMN_LABEL, api_name="/colorize")
    assert_colorized(result, photo_paths[3])
    assert type(models.get(app.HYPERCOLUMN_LABEL).model).__name__ == "HypercolumnColorizationModel"


def _app_error(client, *args, **kwargs) -> str:
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError) as info:
        client.predict(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message.strip() and "Traceback" not in message, message
    return message


@pytest.mark.slow
def test_bad_files_get_a_one_line_error_naming_the_file(space, photo_paths, tmp_path):
    _, _, client, _, _ = space
    from gradio_client import handle_file

    text = tmp_path / "holiday snap.jpg"
    text.write_text("this is not a JPEG")
    truncated = tmp_path / "cut_short.jpg"
    truncated.write_bytes(photo_paths[0].read_bytes()[:3000])
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    bomb = bomb_png(tmp_path / "bomb.png")
    cases = {text: "not a recognised image format", truncated: "cannot decode image",
             empty: "empty file", bomb: "decompression bomb"}
    for path, cause in cases.items():
        message = _app_error(client, handle_file(str(path)), api_name="/colorize")
        assert message.startswith(f"{path.name}: ") and cause in message, message


@pytest.mark.slow
def test_bad_options_and_models_get_clear_errors(space, photo_paths):
    _, _, client, _, _ = space
    from gradio_client import handle_file

    photo = handle_file(str(photo_paths[0]))
    assert "could not load model 'nobody-here/not-a-cached-model'" in _app_error(
        client, photo, model=UNCACHED_HUB_MODEL, api_name="/colorize")
    assert "unknown model 'other'" in _app_error(client, photo, model="other", api_name="/colorize")
    assert "decoding mode must be one of" in _app_error(client, photo, decode_mode="vivid", api_name="/colorize")
    assert "processing size must be a multiple of 8" in _app_error(client, photo, size=100, api_name="/colorize")
    assert "temperature must be in" in _app_error(client, photo, temperature=0, api_name="/colorize")


@pytest.mark.slow
def test_upload_limit_is_enforced_by_the_server(space, tmp_path):
    import httpx

    _, _, _, url, _ = space
    big = tmp_path / "big.png"
    big.write_bytes(os.urandom(3 * 1024 * 1024))  # over the 2 MB limit the fixture set
    with open(big, "rb") as f:
        response = httpx.post(url + "gradio_api/upload", files={"files": ("big.png", f, "image/png")}, timeout=60)
    assert response.status_code == 413, response.text


@pytest.mark.slow
def test_batch_keeps_good_results_and_lists_bad_files(space, photo_paths, tmp_path):
    _, _, client, _, _ = space
    from gradio_client import handle_file

    twin = tmp_path / "twin" / photo_paths[0].name  # same name as the first photo, different picture
    twin.parent.mkdir()
    shutil.copy(photo_paths[1], twin)
    bad = tmp_path / "scan.jpg"
    bad.write_text("not an image")
    inputs = [photo_paths[0], bad, twin]
    gallery, archive, status = client.predict([handle_file(str(p)) for p in inputs], api_name="/colorize_batch")
    assert len(gallery) == 2
    assert_colorized(gallery[0]["image"], photo_paths[0])
    assert_colorized(gallery[1]["image"], twin)
    assert "Colorized 2 of 3" in status and "scan.jpg: not a recognised image format" in status
    with zipfile.ZipFile(archive) as zf:
        names = zf.namelist()
        assert len(names) == 2 and len(set(names)) == 2
        zf.extractall(tmp_path / "unzipped")
    for name, source in [(f"{twin.stem}_colorized.png", photo_paths[0]), (f"{twin.stem}_2_colorized.png", twin)]:
        assert_colorized(tmp_path / "unzipped" / name, source)
    assert "no image could be colorized" in _app_error(client, [handle_file(str(bad))], api_name="/colorize_batch")


@pytest.mark.slow
def test_examples_are_cached_offline(space):
    _, _, client, _, tmp = space
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    examples = sorted(EXAMPLES.iterdir())
    assert len(examples) >= 3
    for path in examples:  # small, gray, public-domain photos
        assert path.stat().st_size < 150_000 and mean_chroma(lab_of(path)) < 0.5
    (before, after), download = client.predict(0, api_name="/load_example")  # lazily cached on first use
    assert_colorized(after, examples[0])
    assert any((tmp / "examples_cache").rglob("*.png"))
    again = client.predict(0, api_name="/load_example")[1]  # served from the cache
    assert pathlib.Path(again).read_bytes() == pathlib.Path(download).read_bytes()


@pytest.mark.slow
def test_space_readme_metadata_is_valid():
    import gradio
    from huggingface_hub import SpaceCard

    card = SpaceCard.load(ROOT / "spaces_app" / "README.md")
    data = card.data.to_dict()
    assert data["sdk"] == "gradio" and data["sdk_version"] == gradio.__version__
    assert (ROOT / "spaces_app" / data["app_file"]).is_file()
    for key in ("title", "emoji", "colorFrom", "colorTo", "license", "short_description", "models"):
        assert data.get(key), f"README.md YAML lacks {key}"
    assert len(data["short_description"]) <= 60


def write_gray_clip(path, photo, frames, width, height):
    """An mp4 panning over a real photo, in gray (the package's own clip maker and writer)."""
    from fractions import Fraction

    from hf_colorize.video.clips import gray_frame, make_clip, render_frames
    from hf_colorize.video.io import VideoWriter

    writer = VideoWriter(str(path), width, height, Fraction(12), Fraction(1, 12))
    for i, rgb in enumerate(render_frames(make_clip("pan", [str(photo)], frames, width, height))):
        writer.write(gray_frame(rgb), i)
    writer.close()
    return path


@pytest.mark.slow
def test_video_tab_colorizes_a_clip(space, photo_paths, tmp_path):
    app, _, client, _, _ = space
    if app._video_function() is None:
        pytest.skip("this install has no hf_colorize.video.colorize; the Space hides its video tab")
    from gradio_client import handle_file

    import torch

    from hf_colorize.models.colorization.image_processing_colorization import rgb_to_lab
    from hf_colorize.video.io import VideoReader

    def frame_lab(frame):
        return rgb_to_lab(torch.from_numpy(frame.rgb.copy()).permute(2, 0, 1).float() / 255)

    clip = write_gray_clip(tmp_path / "old film.mp4", photo_paths[0], 12, 128, 96)
    video, download, status = client.predict(handle_file(str(clip)), True, model=app.DEFAULT_LABEL,
                                             api_name="/colorize_video")
    assert "12 frames 128x96" in status and "temporal" in status
    with VideoReader(str(clip)) as src_reader, VideoReader(video) as out_reader:
        pairs = list(zip(src_reader, out_reader))
    assert len(pairs) == 12
    for src, out in pairs:
        src_lab, out_lab = frame_lab(src), frame_lab(out)
        assert out_lab.shape == src_lab.shape and mean_chroma(out_lab) > MIN_CHROMA
        assert (out_lab[0] - src_lab[0]).abs().mean().item() < 3.0  # lightness kept (through x264)
    assert pathlib.Path(download).name == "old_film_colorized.mp4"

    bad = tmp_path / "home movie.mp4"
    bad.write_text("not a video")
    assert _app_error(client, handle_file(str(bad)), True, api_name="/colorize_video").startswith(
        "home movie.mp4: ")
    long_clip = write_gray_clip(tmp_path / "long.mp4", photo_paths[1], MAX_FRAMES + 4, 64, 48)
    assert f"longer than the {MAX_FRAMES}-frame limit" in _app_error(
        client, handle_file(str(long_clip)), True, size=64, api_name="/colorize_video")


# --------------------------------------------------------------------------------------------------
# The "Hints & reference" tab's helpers (no server)
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def space_app():
    return load_app()


def test_click_maps_to_the_photo_pixel_through_a_smaller_shown_copy(space_app):
    import gradio as gr

    app = space_app
    assert app.click_to_pixel((10, 20), (300, 200), (300, 200)) == (10, 20)
    # a copy at half size: the clicked pixel's centre, in the photo's pixels
    assert app.click_to_pixel((10, 20), (150, 100), (300, 200)) == (21, 41)
    assert app.click_to_pixel((149, 99), (150, 100), (300, 200)) == (299, 199)  # never outside
    for bad in (None, (1,), ("a", 2), (float("nan"), 3), (True, 2)):
        with pytest.raises(gr.Error, match="a click should give the pixel"):
            app.click_to_pixel(bad, (150, 100), (300, 200))


def test_hint_list_add_recolour_undo_and_limits(space_app):
    import gradio as gr

    app = space_app
    hints = app.add_hint([], 3, 4, "red")
    hints = app.add_hint(hints, 5, 6, "rgba(0, 128, 255, 1)")
    assert hints == [{"x": 3, "y": 4, "color": "#ff0000"}, {"x": 5, "y": 6, "color": "#0080ff"}]
    recoloured = app.recolor_last_hint(hints, "#00ff00")
    assert recoloured[-1]["color"] == "#00ff00" and hints[-1]["color"] == "#0080ff"  # a new list
    assert app.undo_hint(recoloured) == hints[:1] and app.undo_hint([]) == []
    html = app.hints_html(hints)
    assert html.count("<tr>") == 3 and "#0080ff" in html and "No hints" in app.hints_html([])
    with pytest.raises(gr.Error, match="hint 3"):
        app.add_hint(hints, 1, 1, "not a colour")
    with pytest.raises(gr.Error, match="no hint to colour yet"):
        app.recolor_last_hint([], "#00ff00")
    full = [{"x": 0, "y": 0, "color": "#000000"}] * app.MAX_HINTS
    with pytest.raises(gr.Error, match=f"at most {app.MAX_HINTS} hints"):
        app.add_hint(full, 1, 1, "red")


def test_hint_canvas_draws_each_hint_in_its_colour(space_app):
    pixels = np.full((200, 400, 3), 128, np.uint8)
    canvas = space_app.hint_canvas(pixels, [{"x": 100, "y": 50, "color": "#ff0000"}], max_side=200)
    assert canvas.size == (200, 100)  # scaled to max_side
    rgb = np.asarray(canvas)
    assert tuple(rgb[25, 50]) == (255, 0, 0) and tuple(rgb[90, 190]) == (128, 128, 128)


def test_guided_options_check_the_strength_and_pass_the_reference(space_app):
    import gradio as gr

    options = space_app.guided_options([{"x": 1, "y": 1, "color": "red"}], ("/tmp/r.png", "r.png"), 0.5, 0.3,
                                       "annealed_mean", 144)
    assert options["reference"] == "/tmp/r.png" and options["reference_strength"] == 0.5 and options["hints"]
    assert "hints" not in space_app.guided_options([], None, 0.5, 0.3, "annealed_mean", 144)
    for bad, message in ((4, "reference strength must be in 0..3"), ("x", "reference strength must be a number")):
        with pytest.raises(gr.Error, match=message):
            space_app.guided_options([], None, bad, 0.3, "annealed_mean", 144)


@pytest.mark.slow
def test_guided_api_takes_hints_and_a_reference_and_names_bad_ones(space, photo_paths, tmp_path):
    app, _, client, _, _ = space
    from gradio_client import handle_file

    photo, truth = photo_paths[1], lab_of(photo_paths[1])
    call = dict(model=app.DEFAULT_LABEL, api_name="/colorize_guided")
    none = dict(call, reference=None)
    automatic = lab_of(client.predict(handle_file(str(photo)), [], **none))
    x, y = 60, 50
    hinted = lab_of(client.predict(handle_file(str(photo)), [{"x": x, "y": y, "color": "#1f3fff"}], **none))
    blue = lab_of_colour("#1f3fff")

    def to_blue(lab):
        return (lab[1:, y - 2:y + 3, x - 2:x + 3] - blue[1:, None, None]).norm(dim=0).mean().item()

    assert to_blue(hinted) < 0.6 * to_blue(automatic)
    assert (hinted[0] - truth[0]).abs().mean().item() < 1.0  # L kept
    guided = lab_of(client.predict(handle_file(str(photo)), [], reference=handle_file(str(photo)), **call))
    assert ((guided[1:] - truth[1:]).norm(dim=0).mean() < (automatic[1:] - truth[1:]).norm(dim=0).mean() - 1.0)
    message = _app_error(client, handle_file(str(photo)), [{"x": 5000, "y": 1, "color": "red"}], **none)
    assert message.startswith("hint 0: (5000, 1) is outside"), message  # numbered as in the list sent
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    message = _app_error(client, handle_file(str(photo)), [], reference=handle_file(str(text)), **call)
    assert "notes.jpg" in message and "reference" in message, message
