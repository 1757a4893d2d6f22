"""hf-colorize Space: colorize black-and-white photos (and films) in the browser.

Run locally with `python spaces_app/app.py` (serves http://127.0.0.1:7860). Settings, all optional:

  HF_COLORIZE_MODEL          comma-separated Hub model ids or local folders offered besides the embedded
                             default; the first one is selected at start
  HF_COLORIZE_CONCURRENCY    colorizations running at once (default 2; CPU Spaces have 2 vCPUs)
  HF_COLORIZE_MAX_FILE_SIZE  upload limit (default "25mb")
  HF_COLORIZE_MAX_PIXELS     larger images are refused before decoding (default 40 MP)
  HF_COLORIZE_MAX_BATCH      images per batch (default 24)
  HF_COLORIZE_MAX_FRAMES     video frames per request (default 600: 20 s at 30 fps)
"""

import ctypes
import hashlib
import html
import logging
import os
import re
import shutil
import sys
import tempfile
import threading
import time
import traceback
import zipfile

import gradio as gr
import numpy as np
from PIL import Image, ImageDraw

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLES_DIR = os.path.join(HERE, "examples")
log = logging.getLogger("hf_colorize.space")


def _import_hf_colorize():
    """Import the package; from a source checkout, find it one folder up (the repo root)."""
    try:
        import hf_colorize
    except ModuleNotFoundError as err:
        if err.name != "hf_colorize":
            raise SystemExit(f"hf-colorize needs {err.name!r}: pip install -r spaces_app/requirements.txt") from None
        sys.path.insert(0, os.path.dirname(HERE))
        try:
            import hf_colorize
        except ModuleNotFoundError as err2:
            raise SystemExit(
                "hf-colorize is not installed: `pip install hf-colorize` "
                "(or put the hf_colorize/ package folder next to app.py)"
                if err2.name == "hf_colorize" else f"hf-colorize needs {err2.name!r}"
            ) from None
    return hf_colorize


hf_colorize = _import_hf_colorize()
import torch  # noqa: E402  (after the friendly import check)
from hf_colorize.common import ColorizeError, ModelLoadError, atomic_path, load_colorizer, one_line, shown  # noqa: E402
from hf_colorize.models.colorization.configuration_colorization import DECODE_MODES  # noqa: E402
from hf_colorize.models.colorization.guidance_colorization import (  # noqa: E402
    DEFAULT_REFERENCE_STRENGTH, MAX_HINTS, GuidanceError, parse_color)
from hf_colorize.models.colorization.image_processing_colorization import load_pixels  # noqa: E402

DEFAULT_LABEL = "hf-colorize default (embedded)"
HYPERCOLUMN_LABEL = "hypercolumn, Larsson et al. (embedded, small)"
DECODE_CHOICES = [
    ("Annealed mean (paper default)", "annealed_mean"),
    ("Mode: most likely colour", "mode"),
    ("Mean: average colour", "mean"),
    ("Median", "median"),
    ("Sample: random draw", "sample"),
]
SIZE_RANGE = (64, 768)


def _env_int(name, default):
    value = os.environ.get(name, "").strip()
    try:
        return int(float(value)) if value else default
    except ValueError:
        raise SystemExit(f"{name} must be a number, got {value!r}") from None


MAX_PIXELS = _env_int("HF_COLORIZE_MAX_PIXELS", 40_000_000)
MAX_BATCH = _env_int("HF_COLORIZE_MAX_BATCH", 24)
MAX_FRAMES = _env_int("HF_COLORIZE_MAX_FRAMES", 600)
MAX_VIDEO_PIXELS = 3840 * 2160  # per frame (4K UHD)
CONCURRENCY = max(1, _env_int("HF_COLORIZE_CONCURRENCY", 2))
MAX_FILE_SIZE = os.environ.get("HF_COLORIZE_MAX_FILE_SIZE", "25mb")
OUTPUT_MAX_AGE_S = 3600  # result files older than this are swept; Gradio keeps its own copies for as long


def _return_freed_memory_to_os():
    """Serve large blocks (image buffers) from mmap so that freeing them returns the memory to the OS.

    With glibc's default dynamic threshold, freed image buffers stay in per-thread heaps, and concurrent
    requests of different sizes make the server's RSS climb by hundreds of MB without any leak (measured
    in tests/test_space_load.py). No-op off glibc.
    """
    try:
        ctypes.CDLL("libc.so.6").mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD = 1 MiB, fixed
    except (OSError, AttributeError):
        pass


_return_freed_memory_to_os()


def _fail(message: str) -> gr.Error:
    """A one-line UI error (gr.Error renders HTML, so file names are escaped)."""
    text = " ".join(str(message).split())
    return gr.Error(html.escape(text, quote=False), print_exception=False)


# --------------------------------------------------------------------------------------------------
# Models: each loaded once, on first use
# --------------------------------------------------------------------------------------------------
def model_choices() -> dict:
    """Dropdown label -> model source (folder or Hub id); the env var's models first."""
    extra = [m.strip() for m in os.environ.get("HF_COLORIZE_MODEL", "").split(",") if m.strip()]
    choices = {m: m for m in extra}
    choices[DEFAULT_LABEL] = hf_colorize.DEFAULT_MODEL
    choices[HYPERCOLUMN_LABEL] = hf_colorize.HYPERCOLUMN_MODEL  # the second model family
    return choices


class ModelCache:
    """`Colorizer`s (the package's one inference path) keyed by dropdown label; a lock makes concurrent first
    requests load a model only once."""

    def __init__(self, choices: dict):
        self.choices = choices
        self._colorizers = {}
        self._lock = threading.Lock()

    def get(self, label):
        if label not in self.choices:
            raise _fail(f"unknown model {label!r}; choose one of: {', '.join(self.choices)}")
        with self._lock:
            if label not in self._colorizers:
                source = self.choices[label]
                try:  # never runs a model repo's own code
                    self._colorizers[label] = load_colorizer(source, device="cpu")
                except ModelLoadError as err:  # offline without a cached copy, bad id, malformed config...
                    log.error("loading %s failed: %s", label, one_line(err))
                    cause = one_line(err)
                    prefix = f"cannot load model {shown(source)}: "
                    raise _fail(f"could not load model {label!r}: {cause[len(prefix):] if cause.startswith(prefix) else cause}") from None
            return self._colorizers[label]

    def defaults(self, label):
        """(temperature, processing size, decoding mode) the model was configured with."""
        colorizer = self.get(label)
        config = colorizer.model.config
        return float(config.decode_temperature), int(colorizer.image_processor.size), config.decode_mode


# --------------------------------------------------------------------------------------------------
# Colorization
# --------------------------------------------------------------------------------------------------
def _payload_source(payload):
    """A Gradio file payload (dict, or a path when called directly) -> (path, display name)."""
    if payload is None:
        raise _fail("no image: upload, paste or pick a photo first")
    if isinstance(payload, dict):
        path = payload.get("path")
        name = payload.get("orig_name") or (os.path.basename(path) if path else "image")
    else:
        path = os.fspath(payload)
        name = os.path.basename(path)
    if not path:
        raise _fail(f"{name}: the upload did not arrive; try again")
    return path, os.path.basename(str(name))


def _check_options(temperature, decode_mode, size):
    try:
        temperature, size = float(temperature), int(size)
    except (TypeError, ValueError):
        raise _fail(f"temperature and processing size must be numbers, got {temperature!r} and {size!r}") from None
    if decode_mode not in DECODE_MODES:
        raise _fail(f"decoding mode must be one of {', '.join(DECODE_MODES)}, got {decode_mode!r}")
    if not 0 < temperature <= 10:
        raise _fail(f"temperature must be in (0, 10], got {temperature}")
    if not SIZE_RANGE[0] <= size <= SIZE_RANGE[1] or size % 8:
        raise _fail(f"processing size must be a multiple of 8 in {SIZE_RANGE[0]}..{SIZE_RANGE[1]}, got {size}")
    return temperature, decode_mode, size


def colorize_file(colorizer, path, name, temperature, decode_mode, size):
    """Colorize one image file with a `Colorizer` -> (gray "before" PIL "L", colour PIL "RGB"), both at the
    original resolution.

    Bad files raise a one-line gr.Error naming the file (ColorizationInputError's cause).
    """
    try:
        # EXIF-rotated, bombs refused at this Space's limit; 8-bit files stay 8-bit (no float round trip)
        pixels = load_pixels(path, MAX_PIXELS)
        l_full, pixel_values = colorizer.prepare(pixels, size)
        ab = colorizer.predict_ab(pixel_values[None], temperature=temperature, decode_mode=decode_mode)[0]
        colour = colorizer.render(l_full, ab, "pil")
        # "before" = the L the model saw, as neutral gray (R = G = B, stored as one channel); the result
        # keeps exactly this L
        gray = colorizer.render(l_full, torch.zeros(2, 1, 1), "pil").convert("L")
    except hf_colorize.ColorizationInputError as err:
        raise _fail(f"{name}: {one_line(err)}") from None
    except MemoryError:
        raise _fail(f"{name}: not enough memory for an image this large; try a smaller one") from None
    except gr.Error:
        raise
    except Exception as err:
        log.error("colorizing %s failed:\n%s", name, traceback.format_exc())
        raise _fail(f"{name}: unexpected error ({type(err).__name__}: {one_line(err)})") from None
    return gray, colour


# --------------------------------------------------------------------------------------------------
# Guided colorization: colour hints placed by clicking, and a reference photo
# --------------------------------------------------------------------------------------------------
#: after the first hint, the photo to click on is shown as a copy at most this long with a dot per hint;
#: clicks on it are mapped back to the photo's own pixels (`click_to_pixel`)
HINT_CANVAS_MAX_SIDE = 1024
REFERENCE_STRENGTH_RANGE = (0.0, 3.0)


def hex_color(color, where: str = "colour") -> str:
    """A colour as `parse_color` takes it (or as a colour picker gives it, e.g. "rgba(r, g, b, a)") -> "#rrggbb"."""
    if isinstance(color, str) and color.strip().lower().startswith("rgba(") and color.strip().endswith(")"):
        color = "rgb(" + ",".join(color.strip()[5:-1].split(",")[:3]) + ")"  # PIL knows rgb(), not rgba()
    try:
        return "#{:02x}{:02x}{:02x}".format(*parse_color(color, where))
    except GuidanceError as err:
        raise _fail(one_line(err)) from None


def shown_size(path) -> tuple:
    """(width, height) of an image file as the browser shows it: after its EXIF rotation (read from the header)."""
    with Image.open(path) as image:
        width, height = image.size
        if image.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # orientations that swap the sides
            width, height = height, width
    return width, height


def click_to_pixel(index, shown: tuple, photo: tuple) -> tuple:
    """A click -> the pixel (x, y) of the photo (`photo`: its (width, height) after EXIF rotation).

    `index` is `gr.SelectData.index`: (x, y) in pixels of the image file the browser shows (`shown`: its
    (width, height) after EXIF rotation; Gradio undoes the on-screen scaling), which is the upload itself or
    a smaller copy with the hints drawn on it."""
    if not (isinstance(index, (list, tuple)) and len(index) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) for v in index)):
        raise _fail(f"a click should give the pixel (x, y), got {index!r}; click on the photo itself")
    (shown_w, shown_h), (width, height) = shown, photo
    # the centre of the clicked pixel of the shown copy, in the photo's pixels
    x = int((index[0] + 0.5) * width / shown_w)
    y = int((index[1] + 0.5) * height / shown_h)
    return min(max(x, 0), width - 1), min(max(y, 0), height - 1)


def add_hint(hints: list, x: int, y: int, color) -> list:
    """A new hint list: `hints` plus {"x", "y", "color": "#rrggbb"} (the Colorizer's hint dicts)."""
    if len(hints) >= MAX_HINTS:
        raise _fail(f"at most {MAX_HINTS} hints; undo or clear some first")
    return [*hints, {"x": int(x), "y": int(y), "color": hex_color(color, f"hint {len(hints) + 1}")}]


def recolor_last_hint(hints: list, color) -> list:
    """A new hint list with the latest hint's colour set to `color` (what the colour picker edits)."""
    if not hints:
        raise _fail("no hint to colour yet: click on the photo to place one")
    return [*hints[:-1], {**hints[-1], "color": hex_color(color, f"hint {len(hints)}")}]


def undo_hint(hints: list) -> list:
    """A new hint list without the latest hint."""
    return list(hints[:-1])


def hints_html(hints: list) -> str:
    """The hint list as a small table: number, x, y, colour (with a swatch)."""
    if not hints:
        return '<p class="hint-empty">No hints yet: click on the photo to place one.</p>'
    rows = "".join(
        f'<tr><td>{i}</td><td>{h["x"]}</td><td>{h["y"]}</td><td><span class="hint-swatch" '
        f'style="background:{html.escape(h["color"])}"></span> {html.escape(h["color"])}</td></tr>'
        for i, h in enumerate(hints, 1))
    return f'<table class="hint-table"><tr><th>#</th><th>x</th><th>y</th><th>colour</th></tr>{rows}</table>'


def hint_canvas(pixels, hints: list, max_side: int = HINT_CANVAS_MAX_SIDE) -> Image.Image:
    """The photo's decoded pixels (`load_pixels`) as an RGB image at most `max_side` long, with a dot in
    each hint's colour (ringed white and black, so it shows on any background)."""
    if isinstance(pixels, np.ndarray):  # 8-bit (H, W, 3)
        image = Image.fromarray(pixels)
    else:  # 16-bit / float sources: float (3, H, W) in [0, 1]
        image = Image.fromarray((pixels.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy())
    width, height = image.size
    scale = min(1.0, max_side / max(width, height))
    if scale < 1.0:
        image = image.resize((max(1, round(width * scale)), max(1, round(height * scale))), Image.BILINEAR)
    sx, sy = image.width / width, image.height / height
    radius = max(3.0, max(image.size) / 100)
    draw = ImageDraw.Draw(image)
    for hint in hints:
        cx, cy = (hint["x"] + 0.5) * sx, (hint["y"] + 0.5) * sy
        for grow, fill in ((2.5, "white"), (1.2, "black"), (0.0, hint["color"])):
            r = radius + grow
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    return image


def guided_options(hints, reference, strength, temperature, decode_mode, size) -> dict:
    """The `Colorizer` options of a guided request: hints (when any), the reference file (when given) with
    its strength, and the shared controls. `reference`: (path, name) or None."""
    try:
        strength = float(strength)
    except (TypeError, ValueError):
        raise _fail(f"reference strength must be a number, got {strength!r}") from None
    if not REFERENCE_STRENGTH_RANGE[0] <= strength <= REFERENCE_STRENGTH_RANGE[1]:
        raise _fail(f"reference strength must be in {REFERENCE_STRENGTH_RANGE[0]:g}..{REFERENCE_STRENGTH_RANGE[1]:g}, "
                    f"got {strength:g}")
    temperature, decode_mode, size = _check_options(temperature, decode_mode, size)
    options = {"temperature": temperature, "decode_mode": decode_mode, "size": size}
    if hints:
        options["hints"] = list(hints)
    if reference is not None:
        options.update(reference=reference[0], reference_strength=strength)
    return options


def run_guided(call, name, upload, *args, **options):
    """`call(*args, **options)` (`Colorizer.colorize` or `.predicted_color`) with its errors as one line: a
    bad hint or reference, or a model that cannot take guidance (`GuidanceError`, the reference named by its
    upload name, not Gradio's cache path). `upload`: the reference as (path, name), or None; `options`
    carry the reference path itself (`guided_options`), hence the different name."""
    try:
        return call(*args, **options)
    except GuidanceError as err:
        message = one_line(err)
        if upload is not None:
            message = message.replace(upload[0], upload[1])
        raise _fail(message) from None
    except hf_colorize.ColorizationInputError as err:
        raise _fail(f"{name}: {one_line(err)}") from None
    except MemoryError:
        raise _fail(f"{name}: not enough memory for an image this large; try a smaller one") from None
    except Exception as err:
        log.error("guided colorization of %s failed:\n%s", name, traceback.format_exc())
        raise _fail(f"{name}: unexpected error ({type(err).__name__}: {one_line(err)})") from None


def place_hint(colorizer, pixels, hints: list, index, shown: tuple, options: dict, name: str = "photo",
               reference=None) -> list:
    """A click (`index` on the shown image of size `shown`, see `click_to_pixel`) -> the new hint list: a hint
    at that pixel of the photo, coloured as the model predicts it there with the hints so far and the
    request's `options` (the colour picker's starting colour)."""
    x, y = click_to_pixel(index, shown, pixels_size(pixels))
    color = run_guided(colorizer.predicted_color, name, reference, pixels, x, y, **options)
    return add_hint(hints, x, y, color)


def load_photo(path, name):
    """A photo file -> its decoded pixels (`load_pixels`: EXIF-rotated, this Space's pixel limit); one-line
    errors naming the file."""
    try:
        return load_pixels(path, MAX_PIXELS)
    except hf_colorize.ColorizationInputError as err:
        raise _fail(f"{name}: {one_line(err)}") from None
    except MemoryError:
        raise _fail(f"{name}: not enough memory for an image this large; try a smaller one") from None


def pixels_size(pixels) -> tuple:
    """(width, height) of decoded pixels (uint8 (H, W, 3) or float (3, H, W))."""
    return (pixels.shape[1], pixels.shape[0]) if isinstance(pixels, np.ndarray) else (pixels.shape[-1], pixels.shape[-2])


class OutputDir:
    """Per-request folders for result files; folders older than `max_age_s` are removed as new ones are made."""

    def __init__(self, max_age_s=OUTPUT_MAX_AGE_S):
        self.root = tempfile.mkdtemp(prefix="hf_colorize_space_")
        self.max_age_s = max_age_s

    def new(self):
        now = time.time()
        for entry in os.scandir(self.root):
            try:
                if now - entry.stat().st_mtime > self.max_age_s:
                    shutil.rmtree(entry.path, ignore_errors=True)
            except FileNotFoundError:  # swept by a concurrent request
                pass
        return tempfile.mkdtemp(dir=self.root)


def _stem(name):
    stem = os.path.splitext(os.path.basename(name))[0]
    return re.sub(r"[^\w.-]+", "_", stem).strip("._") or "image"


def _save_png(image, path):
    """Write a PNG atomically (`common.atomic_path`: a partial file never carries the final name). No fsync:
    result files are temporary and served at once."""
    with atomic_path(path, fsync=False) as tmp:
        image.save(tmp, format="PNG", compress_level=2)  # level 2: within 4% of level 6 in size, several times faster
    return path


# --------------------------------------------------------------------------------------------------
# The demo
# --------------------------------------------------------------------------------------------------
def _examples_cache_dir(models: ModelCache, label: str) -> str:
    """Cached examples live in a folder named for the model they were made with, so a new model never
    shows stale results; in the temp dir, so a checkout stays clean (Gradio's default is ./.gradio)."""
    source = models.choices[label]
    key = [source]
    for fname in ("config.json", "model.safetensors"):
        path = os.path.join(source, fname)
        if os.path.isfile(path):
            st = os.stat(path)
            key.append(f"{fname}:{st.st_size}:{st.st_mtime_ns}")
    digest = hashlib.sha1("|".join(key).encode()).hexdigest()[:12]
    return os.path.join(tempfile.gettempdir(), "hf_colorize_examples", digest)


def _video_function():
    """`hf_colorize.video.colorize.colorize_video` if this install has it (the video tab is shown only then)."""
    try:
        from hf_colorize.video.colorize import colorize_video
    except ImportError:
        return None
    return colorize_video


def build_demo(models: ModelCache = None) -> gr.Blocks:
    models = models or ModelCache(model_choices())
    labels = list(models.choices)
    first = labels[0]
    default_temperature, default_size, default_decode = models.defaults(first)  # also fails fast on a bad model
    outputs_dir = OutputDir()
    if "GRADIO_EXAMPLES_CACHE" not in os.environ:
        os.environ["GRADIO_EXAMPLES_CACHE"] = _examples_cache_dir(models, first)

    def colorize(image, model, temperature, decode_mode, size):
        """One photo -> (before, after) for the slider and the full-resolution PNG for download."""
        path, name = _payload_source(image)
        temperature, decode_mode, size = _check_options(temperature, decode_mode, size)
        colorizer = models.get(model or first)
        gray, colour = colorize_file(colorizer, path, name, temperature, decode_mode, size)
        folder = outputs_dir.new()
        result = _save_png(colour, os.path.join(folder, f"{_stem(name)}_colorized.png"))
        before = _save_png(gray, os.path.join(folder, f"{_stem(name)}_gray.png"))
        return (before, result), result

    def colorize_batch(files, model, temperature, decode_mode, size):
        """Several photos -> gallery, zip of PNGs, status line. Bad files are skipped and listed."""
        if not files:
            raise _fail("no images: choose one or more photos first")
        if len(files) > MAX_BATCH:
            raise _fail(f"{len(files)} files is over the limit of {MAX_BATCH} per batch")
        temperature, decode_mode, size = _check_options(temperature, decode_mode, size)
        colorizer = models.get(model or first)
        folder = outputs_dir.new()
        done, failed, used = [], [], set()
        for item in files:
            path, name = _payload_source(item)
            try:
                _, colour = colorize_file(colorizer, path, name, temperature, decode_mode, size)
            except gr.Error as err:
                failed.append(html.unescape(err.message))
                continue
            out_name = f"{_stem(name)}_colorized.png"
            n = 1
            while out_name in used:  # two uploads with the same name must not overwrite each other
                n += 1
                out_name = f"{_stem(name)}_{n}_colorized.png"
            used.add(out_name)
            done.append((_save_png(colour, os.path.join(folder, out_name)), name))
        if not done:
            raise _fail("no image could be colorized: " + "; ".join(failed))
        zip_path = os.path.join(folder, "colorized.zip")
        with atomic_path(zip_path, fsync=False) as tmp:
            with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as zf:  # PNGs are already compressed
                for png, _ in done:
                    zf.write(png, arcname=os.path.basename(png))
        status = f"Colorized {len(done)} of {len(files)} images."
        if failed:
            status += " Skipped: " + "; ".join(failed)
            gr.Warning(html.escape(f"{len(failed)} file(s) skipped: " + "; ".join(failed), quote=False))
        return done, zip_path, status

    def colorize_video(video, temporal, model, temperature, size, progress=gr.Progress()):
        """A video file -> colorized mp4 (original size, frame rate and audio) and a status line."""
        path, name = _payload_source(video)
        temperature, _, size = _check_options(temperature, "annealed_mean", size)
        colorizer = models.get(model or first)
        out = os.path.join(outputs_dir.new(), f"{_stem(name)}_colorized.mp4")

        def report(done, total):
            if done > MAX_FRAMES:
                raise _fail(f"{name}: longer than the {MAX_FRAMES}-frame limit of this demo; trim it or run "
                            "`hf-colorize video` locally")
            progress((done, total), unit="frames")

        try:
            stats = video_fn(path, out, model=colorizer, temporal=bool(temporal), size=size,
                             temperature=temperature, decode_mode="annealed_mean", progress=report,
                             max_pixels=MAX_VIDEO_PIXELS)
        except gr.Error:
            raise
        except (ColorizeError, ValueError) as err:  # VideoIOError, an unreadable frame, a bad option
            message = one_line(err).replace(path, name)  # name the upload, not Gradio's cache path
            raise _fail(message if message.startswith(name) else f"{name}: {message}") from None
        except Exception as err:
            log.error("colorizing video %s failed:\n%s", name, traceback.format_exc())
            raise _fail(f"{name}: unexpected error ({type(err).__name__}: {one_line(err)})") from None
        mode = f"temporal, {len(stats['cuts'])} shot(s)" if stats["temporal"] else "per frame"
        status = (f"{stats['frames']} frames {stats['width']}x{stats['height']} at {stats['fps']:.3g} fps, {mode}, "
                  f"audio {stats['audio']}, {stats['processing_fps']:.1f} frames/s.")
        if stats["notes"]:
            status += " Notes: " + "; ".join(stats["notes"])
        return out, out, status

    # -- guided colorization (the "Hints & reference" tab) ----------------------------------------------
    # State: the photo as uploaded, (path, name), and its hints (a list of {"x", "y", "color"} dicts). The
    # photo widget shows the upload, then a copy with the hints drawn on it (`hint_canvas`).
    def _guided(hints, reference, strength, model, temperature, decode_mode, size):
        """(colorizer, its options, reference as (path, name) or None) of a guided request."""
        reference = None if reference is None else _payload_source(reference)
        options = guided_options(hints, reference, strength, temperature, decode_mode, size)
        return models.get(model or first), options, reference

    def _guided_result(photo, pixels, hints, *settings):
        """The guided result PNG of a photo ((path, name) and its pixels) with `hints`."""
        colorizer, options, reference = _guided(hints, *settings)
        colour = run_guided(colorizer.colorize, photo[1], reference, pixels, **options)
        return _save_png(colour, os.path.join(outputs_dir.new(), f"{_stem(photo[1])}_guided.png"))

    def _canvas(photo, pixels, hints):
        path = os.path.join(outputs_dir.new(), f"{_stem(photo[1])}_hints.png")
        with atomic_path(path, fsync=False) as tmp:
            hint_canvas(pixels, hints).save(tmp, format="PNG", compress_level=1)
        return path

    def _refreshed(photo, hints, settings):
        """(hints, hint list, result, canvas) after the hints changed."""
        pixels = load_photo(*photo)
        result = _guided_result(photo, pixels, hints, *settings)
        return hints, hints_html(hints), result, _canvas(photo, pixels, hints)

    def guided_new_photo(image, *settings):
        """A photo uploaded (or removed): no hints yet, and its automatic (reference-guided) result."""
        if image is None:
            return None, [], hints_html([]), None
        photo = _payload_source(image)
        result = _guided_result(photo, load_photo(*photo), [], *settings)
        return photo, [], hints_html([]), result

    def guided_click(evt: gr.SelectData, image, photo, hints, reference, strength, model, temperature, decode_mode,
                     size):
        """A click on the photo: a hint at that pixel, coloured as the model predicts it there (with the
        hints so far); the picker shows that colour for changing. (Gradio finds `evt` by its annotation; it
        must be a positional parameter, not one after *args.)"""
        settings = (reference, strength, model, temperature, decode_mode, size)
        photo = photo or _payload_source(image)  # a click before the upload event was handled
        pixels = load_photo(*photo)
        try:
            shown = shown_size(_payload_source(image)[0])  # the upload, or the canvas copy shown since
        except OSError:
            raise _fail(f"{photo[1]}: cannot read the photo shown; upload it again") from None
        colorizer, options, reference = _guided(hints, *settings)
        hints = place_hint(colorizer, pixels, hints, evt.index, shown, options, photo[1], reference)
        result = _guided_result(photo, pixels, hints, *settings)
        return photo, hints, hints_html(hints), hints[-1]["color"], result, _canvas(photo, pixels, hints)

    def guided_pick(color, photo, hints, *settings):
        """The colour picker changed: the latest hint takes its colour. (Listens to `change`, which Gradio
        also fires when a click or undo sets the picker: then the colour is the hint's already, nothing to do.)"""
        if photo is None or not hints:
            gr.Info("Click on the photo to place a hint; the colour picker then sets its colour.")
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        recolored = recolor_last_hint(hints, color)
        if recolored == hints:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        return _refreshed(photo, recolored, settings)

    def guided_undo(photo, hints, *settings):
        if photo is None or not hints:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
        hints, listing, result, canvas = _refreshed(photo, undo_hint(hints), settings)
        return hints, listing, hints[-1]["color"] if hints else gr.skip(), result, canvas

    def guided_clear(photo, hints, *settings):
        if photo is None:
            return [], hints_html([]), gr.skip(), gr.skip()
        return _refreshed(photo, [], settings)

    def guided_update(photo, hints, *settings):
        """The reference, its strength or the controls changed: the result again, same hints."""
        if photo is None:
            return gr.skip()
        return _guided_result(photo, load_photo(*photo), hints, *settings)

    def colorize_guided(image, hints, reference, strength, model, temperature, decode_mode, size):
        """API: a photo, hints (a list of {"x", "y", "color"}) and an optional reference photo -> the guided
        result PNG."""
        photo = _payload_source(image)
        if hints is not None and not isinstance(hints, list):
            raise _fail(f"hints must be a list of {{'x', 'y', 'color'}} items, got {type(hints).__name__}")
        return _guided_result(photo, load_photo(*photo), hints or [], reference, strength, model, temperature,
                              decode_mode, size)

    def on_model_change(model):
        temperature, size, decode = models.defaults(model)
        return gr.update(value=temperature), gr.update(value=size), gr.update(value=decode)

    video_fn = _video_function()

    with gr.Blocks(title="hf-colorize: colorize black-and-white photos", delete_cache=(3600, 3600)) as demo:
        gr.Markdown(
            "# hf-colorize: colorize black-and-white photos\n"
            "Automatic colorization (Zhang, Isola & Efros, ECCV 2016) as a native Hugging Face transformers model. "
            "Upload, paste or pick a photo; the result keeps the original resolution and lightness."
        )
        with gr.Row():
            model = gr.Dropdown(labels, value=first, label="Model", visible=len(labels) > 1, scale=2)
            decode_mode = gr.Dropdown(DECODE_CHOICES, value=default_decode, label="Decoding mode", scale=2)
            temperature = gr.Slider(
                0.05, 1.0, value=default_temperature, step=0.01, label="Temperature", scale=3,
                info="Lower = towards the most likely colour; higher = towards the average (1 = the mean).",
            )
            size = gr.Slider(
                SIZE_RANGE[0], SIZE_RANGE[1], value=default_size, step=8, label="Processing size", scale=3,
                info="Side of the square the network sees; the output keeps the original resolution.",
            )
        controls = [model, temperature, decode_mode, size]

        with gr.Tabs():
            with gr.Tab("Photo"):
                with gr.Row():
                    with gr.Column():
                        image = gr.Image(type="filepath", label="Black-and-white photo", sources=["upload", "clipboard"],
                                         elem_id="input-image")
                        run = gr.Button("Colorize", variant="primary", elem_id="colorize-button")
                    with gr.Column():
                        slider = gr.ImageSlider(type="filepath", format="png", label="Before / after",
                                                elem_id="result-slider", interactive=False)
                        download = gr.File(label="Full-resolution PNG", elem_id="result-file")
                run.click(colorize, [image, *controls], [slider, download], api_name="colorize",
                          preprocess=False, concurrency_id="colorize")
                gr.Examples(
                    [[os.path.join(EXAMPLES_DIR, f)] for f in sorted(os.listdir(EXAMPLES_DIR))],
                    inputs=[image], outputs=[slider, download],
                    fn=lambda im: colorize(im, first, default_temperature, "annealed_mean", default_size),
                    cache_examples=True, cache_mode="lazy", preprocess=False,
                    label="Examples (public-domain photos from scikit-image, made gray)", elem_id="examples",
                )

            with gr.Tab("Hints & reference"):
                gr.Markdown(
                    "Click on the photo to place a colour hint there: it starts with the colour the model predicts "
                    "at that spot; the colour picker changes the latest hint's colour. Optionally add a colour "
                    "reference photo (its colours steer the whole result). The result updates with each change."
                )
                with gr.Row():
                    with gr.Column():
                        guide_image = gr.Image(type="filepath", label="Photo (click to place hints)",
                                               sources=["upload", "clipboard"], elem_id="guide-image")
                        # the buttons above the picker: its open dialog closes on the next click elsewhere,
                        # and a layout shift under that click would make the buttons miss it
                        with gr.Row():
                            undo = gr.Button("Undo last hint", elem_id="hint-undo")
                            clear = gr.Button("Clear hints", elem_id="hint-clear")
                        hint_color = gr.ColorPicker(value="#808080", label="Colour of the latest hint",
                                                    elem_id="hint-color")
                        hint_list = gr.HTML(hints_html([]), label="Hints", elem_id="hint-list")
                    with gr.Column():
                        guided = gr.Image(type="filepath", format="png", label="Guided result", interactive=False,
                                          elem_id="guided-result")
                        reference = gr.Image(type="filepath", label="Colour reference photo (optional)",
                                             sources=["upload", "clipboard"], elem_id="reference-image", height=240)
                        strength = gr.Slider(*REFERENCE_STRENGTH_RANGE, value=DEFAULT_REFERENCE_STRENGTH, step=0.05,
                                             label="Reference strength", elem_id="reference-strength",
                                             info="0 = ignore the reference; higher = its colours dominate.")
                        refresh = gr.Button("Colorize again", elem_id="guided-button")
                photo_state, hints_state = gr.State(None), gr.State([])
                settings = [reference, strength, *controls]
                guided_kwargs = {"preprocess": False, "concurrency_id": "colorize", "api_visibility": "private"}
                guide_image.input(guided_new_photo, [guide_image, *settings],
                                  [photo_state, hints_state, hint_list, guided], **guided_kwargs)
                guide_image.select(guided_click, [guide_image, photo_state, hints_state, *settings],
                                   [photo_state, hints_state, hint_list, hint_color, guided, guide_image],
                                   **guided_kwargs)
                # `change`, not `input`: Gradio 6 fires `input` for the colour field's drag only, not for a typed hex
                hint_color.change(guided_pick, [hint_color, photo_state, hints_state, *settings],
                                 [hints_state, hint_list, guided, guide_image], trigger_mode="always_last",
                                 **guided_kwargs)
                undo.click(guided_undo, [photo_state, hints_state, *settings],
                           [hints_state, hint_list, hint_color, guided, guide_image], **guided_kwargs)
                clear.click(guided_clear, [photo_state, hints_state, *settings],
                            [hints_state, hint_list, guided, guide_image], **guided_kwargs)
                for event in (reference.input, strength.release, refresh.click):
                    event(guided_update, [photo_state, hints_state, *settings], guided, trigger_mode="always_last",
                          **guided_kwargs)
                # API only: the same guided result from a photo, a hint list and a reference, in one call
                api_hints = gr.JSON(visible=False)
                gr.Button(visible=False).click(colorize_guided, [guide_image, api_hints, *settings], guided,
                                               api_name="colorize_guided", preprocess=False, concurrency_id="colorize")

            with gr.Tab("Batch"):
                with gr.Row():
                    with gr.Column():
                        files = gr.File(file_count="multiple", file_types=["image"], type="filepath",
                                        label=f"Photos (up to {MAX_BATCH})", elem_id="batch-files")
                        run_batch = gr.Button("Colorize all", variant="primary", elem_id="batch-button")
                    with gr.Column():
                        gallery = gr.Gallery(label="Results", columns=3, format="png", elem_id="batch-gallery")
                        archive = gr.File(label="All results (zip)", elem_id="batch-zip")
                        status = gr.Markdown(label="Status", elem_id="batch-status")
                run_batch.click(colorize_batch, [files, *controls], [gallery, archive, status],
                                api_name="colorize_batch", concurrency_id="colorize")

            if video_fn is not None:
                with gr.Tab("Video"):
                    with gr.Row():
                        with gr.Column():
                            video_in = gr.Video(sources=["upload"], label="Black-and-white video", elem_id="video-input")
                            temporal = gr.Checkbox(True, label="Temporal smoothing (no flicker; resets at scene cuts)")
                            run_video = gr.Button("Colorize video", variant="primary", elem_id="video-button")
                        with gr.Column():
                            video_out = gr.Video(label="Colorized", elem_id="video-output", interactive=False)
                            video_file = gr.File(label="Download (mp4)", elem_id="video-file")
                            video_status = gr.Markdown(label="Status", elem_id="video-status")
                    gr.Markdown(f"Up to {MAX_FRAMES} frames; audio is kept. Videos use the annealed mean "
                                "with the temperature, processing size and model above.")
                run_video.click(colorize_video, [video_in, temporal, model, temperature, size],
                                [video_out, video_file, video_status], api_name="colorize_video",
                                concurrency_id="colorize")

        model.change(on_model_change, model, [temperature, size, decode_mode], api_visibility="private").then(
            guided_update, [photo_state, hints_state, *settings], guided, **guided_kwargs)  # e.g. a model without guidance
        gr.Markdown(
            "Temperature applies to *annealed mean* and *sample*. Clicking an example shows a result cached "
            "with the default settings; press **Colorize** to rerun it with yours."
        )
    demo.queue(default_concurrency_limit=CONCURRENCY, max_size=64)
    return demo


CSS = """
.hint-table { border-collapse: collapse; }
.hint-table th, .hint-table td { padding: 2px 10px; text-align: right; }
.hint-swatch { display: inline-block; width: 1em; height: 1em; border: 1px solid #000; vertical-align: middle; }
"""


def launch(demo: gr.Blocks, **kwargs):
    """Serve with the Space's limits (tests launch through this too)."""
    return demo.launch(max_file_size=MAX_FILE_SIZE, show_error=False, footer_links=["api"], css=CSS, **kwargs)


def main():
    logging.basicConfig(level=logging.INFO)
    try:
        demo = build_demo()
    except gr.Error as err:  # e.g. the configured model cannot be loaded
        raise SystemExit(f"hf-colorize Space: {html.unescape(err.message)}") from None
    launch(demo)


if __name__ == "__main__":
    main()
