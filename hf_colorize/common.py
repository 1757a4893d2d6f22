"""What every part of hf-colorize shares: the error classes, one-line error text, atomic writes, the image
file extensions, the pixel limit, and loading a model + image processor into a `Colorizer`."""

import contextlib
import glob
import os
import shutil
import tempfile
from hf_colorize.models.colorization.image_processing_colorization import (
    DEFAULT_MAX_PIXELS,
    ColorizationInputError,
    ColorizeError,
)

#: Larger images (and video frames) are refused before decoding: decompression bombs.
MAX_PIXELS = DEFAULT_MAX_PIXELS

#: What a folder or glob expands to, for every command (explicitly named files are tried whatever their
#: extension).
IMAGE_EXTENSIONS = frozenset({
    ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".apng", ".bmp", ".dib", ".gif", ".tif", ".tiff", ".webp",
    ".ppm", ".pgm", ".pbm", ".pnm", ".tga", ".jp2", ".j2k", ".avif", ".qoi", ".sgi", ".pcx",
})


# --------------------------------------------------------------------------------------------------
# Errors: one base, one class per cause; `exit_code` is what the command line exits with
# --------------------------------------------------------------------------------------------------
InputImageError = ColorizationInputError  # an image that cannot be read or colorized


class UsageError(ColorizeError, ValueError):
    """A bad argument or option, found before any work is done."""

    exit_code = 2


class ModelLoadError(ColorizeError, OSError):
    """A model folder or Hub id that cannot be loaded."""


class DataSourceError(ColorizeError, ValueError):
    """A training or evaluation source (folder, parquet shards, Hub dataset) that cannot be read."""


class TrainingError(ColorizeError, RuntimeError):
    """Training cannot start or go on (e.g. an unreadable checkpoint)."""


class EvaluationError(ColorizeError, ValueError):
    """Evaluation cannot proceed."""


class VideoIOError(ColorizeError):
    """A video that cannot be read or written."""


class HubError(ColorizeError, RuntimeError):
    """Publishing to the Hub failed, or its model card cannot be built."""


class ConversionError(ColorizeError, ValueError):
    """A checkpoint that cannot be converted or exported."""


def one_line(err: BaseException) -> str:
    """An exception as one line of text: an OS error's cause (the caller names the file), else the
    message's first non-empty line, else the class name."""
    if isinstance(err, OSError) and not isinstance(err, ColorizeError) and err.strerror:
        return err.strerror
    for line in str(err).splitlines():
        if line.strip():
            return line.strip()
    return type(err).__name__


def shown(path) -> str:
    """A path as printable text: undecodable bytes in file names (surrogate escapes) become \\xNN."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


# --------------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------------
def is_image_file(name: str) -> bool:
    """Whether a file name has one of `IMAGE_EXTENSIONS` (and is not hidden)."""
    base = os.path.basename(name)
    return os.path.splitext(base)[1].lower() in IMAGE_EXTENSIONS and not base.startswith(".")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_temporaries(path: str) -> None:
    """Delete `.<name>.<pid>.*.part` temporaries (files or folders) of `path` left by killed runs (a
    SIGKILLed process cannot clean up); those of live processes (a concurrent run) are left alone."""
    folder, name = os.path.split(os.fspath(path))
    _sweep(folder, glob.escape(name))


def sweep_temporaries(folder) -> None:
    """`remove_stale_temporaries` for every name in `folder` (e.g. checkpoint folders of a killed run)."""
    _sweep(os.fspath(folder), "*")


def _sweep(folder: str, name_pattern: str) -> None:
    for entry in glob.glob(os.path.join(glob.escape(folder or "."), f".{name_pattern}.*.part")):
        # `.<name>.<pid>.<random>[.ext].part`: the pid is the first all-digit field after the name
        pid = next((p for p in os.path.basename(entry)[1:].split(".")[1:] if p.isdigit()), None)
        if pid is not None and not _alive(int(pid)):
            _remove(entry)


@contextlib.contextmanager
def atomic_path(path, fsync: bool = True):
    """Yield a temporary path beside `path` to write to; on success it is renamed to `path`, on any
    failure it is removed. Readers never see a half-written file under the final name, and a rerun
    removes what a killed run left (`remove_stale_temporaries`). Works for files and folders."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(2, "folder does not exist", folder)
    remove_stale_temporaries(path)
    ext = os.path.splitext(path)[1]  # kept, so writers that pick a format by extension still can
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.{os.getpid()}.", suffix=f"{ext}.part")
    os.close(fd)
    os.unlink(tmp)  # the writer creates it (file or folder)
    try:
        yield tmp
        if fsync and os.path.isfile(tmp):
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


def _remove(path: str) -> None:
    """Remove a file or a folder (a temporary of `atomic_path`), ignoring what is already gone."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            os.unlink(path)


def walk_files(folder, keep=is_image_file, exclude=None) -> list:
    """The files below `folder` whose names `keep` accepts (default: images), in a fixed order (sorted
    by path relative to `folder`); hidden folders, and the folder `exclude`, are skipped."""
    folder = os.fspath(folder)
    exclude = os.path.realpath(exclude) if exclude else None
    out = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".") and os.path.realpath(os.path.join(root, d)) != exclude]
        out += [os.path.join(root, f) for f in files if keep(f)]
    return sorted(out, key=lambda p: os.path.relpath(p, folder).replace(os.sep, "/"))


def write_json(path, data) -> None:
    """JSON (indented, sorted keys) written atomically: a reader sees the old file or the new one."""
    import json

    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")


def save_image(image, path, quality: int = 95) -> None:
    """Write a PIL image atomically, in the format its file name says (`.png`, `.jpg`, ...)."""
    fmt = image_format_for(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_path(path) as tmp:
        image.save(tmp, format=fmt, **({"quality": quality} if fmt in ("JPEG", "WEBP") else {}))


def image_format_for(path) -> str:
    """PIL's format name for an output file name; `UsageError` if it names none PIL can write."""
    from PIL import Image

    fmt = Image.registered_extensions().get(os.path.splitext(os.fspath(path))[1].lower())
    if fmt is None or fmt not in Image.SAVE:
        raise UsageError(f"cannot tell an image format to write from the name {shown(path)!r} (use e.g. .png or .jpg)")
    return fmt


# --------------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def progress_bars_off(hf_logging):
    """Turn off a Hugging Face library's own progress bars for a while (`hf_logging`: the `logging` module
    of transformers or datasets, which share this API), then restore them."""
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def quiet_weight_loading():
    """Hide transformers' "Loading weights" bar (noise on stderr for our small models)."""
    from transformers.utils import logging as hf_logging

    return progress_bars_off(hf_logging)


def load_colorizer(model=None, image_processor=None, **kwargs):
    """A `Colorizer` from None (the embedded default), a model folder or Hub id, a loaded model, or a
    `Colorizer` (returned as it is). The image processor comes from the folder, or is built from
    `config.image_size` when the folder has none. `kwargs`: `Colorizer`'s (`device`, `batch_size`,
    `precision`, `temperature`, ...). Code inside a model folder is never run (the installed package
    provides it). Raises `ModelLoadError` with one line."""
    import torch

    from hf_colorize import DEFAULT_MODEL, Colorizer

    if isinstance(model, Colorizer):
        return model
    if isinstance(model, torch.nn.Module):
        return Colorizer(model, image_processor, **kwargs)
    source = DEFAULT_MODEL if model is None else os.fspath(model)
    looks_like_path = os.path.isabs(source) or source.startswith(".") or source.count("/") > 1
    if looks_like_path and not os.path.isdir(source):
        raise ModelLoadError(f"cannot load model {shown(source)}: no such folder")
    try:
        with quiet_weight_loading():
            colorizer = Colorizer.from_pretrained(source, trust_remote_code=False)
    except Exception as err:  # noqa: BLE001 - transformers raises OSError/ValueError/KeyError variants
        raise ModelLoadError(f"cannot load model {shown(source)}: {one_line(err)}") from None
    if image_processor is not None:
        colorizer.image_processor = image_processor
    try:
        return Colorizer(colorizer.model, colorizer.image_processor, **kwargs)
    except (TypeError, ValueError) as err:  # an option this model does not take, e.g. fading_eta for ECCV16
        raise UsageError(f"{shown(source)}: {one_line(err)}") from None
