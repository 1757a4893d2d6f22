"""`hf-colorize colorize INPUT... [-o OUT]`: colorize photos given as files, folders or glob patterns.

Every bad input costs one line on stderr (`hf-colorize: error: <file>: <cause>`) and the batch goes
on; the exit code is 1 if any input failed, 2 for usage errors. Outputs are written to a temporary
file in the target folder and renamed into place, so an interrupted run never leaves a partial file
under the final name, and `--skip-existing` can resume it.
"""

import argparse
import glob
import os
import sys
import tempfile
from dataclasses import dataclass
from typing import List, Optional

from .configuration_colorization import DECODE_MODES

# what a folder or glob expands to; explicitly named files are tried whatever their extension
IMAGE_SUFFIXES = {
    ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".apng", ".bmp", ".dib", ".gif", ".tif", ".tiff", ".webp",
    ".ppm", ".pgm", ".pbm", ".pnm", ".tga", ".jp2", ".j2k", ".avif", ".qoi", ".sgi", ".pcx",
}
SUFFIX = "_colorized"  # output name: <stem>_colorized.png
PROG = "hf-colorize"


class UsageError(Exception):
    """Bad arguments: reported as one line, exit code 2."""


@dataclass
class Job:
    source: str  # the input path as found (user's spelling, or joined from a folder/glob)
    output: Optional[str] = None
    error: Optional[str] = None  # set when the input is already known to be bad
    subfolder: str = ""  # where it sits below the folder argument it came from (kept under -o DIR)


# --------------------------------------------------------------------------------------------------
# Arguments
# --------------------------------------------------------------------------------------------------
def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def _network_size(text: str) -> int:
    value = _positive_int(text)
    if value % 8:
        raise argparse.ArgumentTypeError(f"must be a multiple of 8, got {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="image files, folders (their images, not subfolders unless --recursive) or glob "
                             "patterns (expanded here, so quoted globs work)")
    parser.add_argument("-o", "--output", metavar="OUT",
                        help="output file (one input; its suffix picks the format) or folder (created). "
                             "Default: <stem>_colorized.png next to each input")
    parser.add_argument("--model", metavar="M", default=None,
                        help="model folder or Hub id (default: the embedded model, hf_colorize.DEFAULT_MODEL)")
    parser.add_argument("--temperature", type=_positive_float, metavar="T",
                        help="annealed-mean temperature: lower is more vivid, 1 is the mean (default: the model's, 0.38)")
    parser.add_argument("--decode", choices=DECODE_MODES, metavar="MODE",
                        help=f"decoding of the bin distribution: {', '.join(DECODE_MODES)} (default: the model's)")
    parser.add_argument("--seed", type=int, default=None, help="random seed for --decode sample")
    parser.add_argument("--size", type=_network_size, metavar="N",
                        help="network input side, a multiple of 8 (default: the model's image processor size)")
    parser.add_argument("--batch-size", type=_positive_int, default=4, metavar="B", help="images per forward pass (default 4)")
    parser.add_argument("--skip-existing", action="store_true", help="skip inputs whose output already exists")
    parser.add_argument("--recursive", action="store_true", help="also take images from subfolders of folder inputs")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")


# --------------------------------------------------------------------------------------------------
# Inputs -> jobs
# --------------------------------------------------------------------------------------------------
def _is_image_name(path: str) -> bool:
    stem, suffix = os.path.splitext(os.path.basename(path))
    # our own outputs are skipped so re-running on a folder does not colorize them again
    return suffix.lower() in IMAGE_SUFFIXES and not stem.endswith(SUFFIX) and not stem.startswith(".")


def _folder_images(folder: str, recursive: bool) -> List[str]:
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if recursive else []
        found.extend(os.path.join(root, f) for f in sorted(files) if _is_image_name(f))
    return found


def expand_inputs(inputs: List[str], recursive: bool = False) -> List[Job]:
    """INPUT arguments -> one `Job` per file, in order, without duplicates. A missing path or a
    pattern that matches nothing becomes a job carrying its error."""
    jobs, seen = [], set()

    def add(path, error=None, top=None):
        key = os.path.realpath(path)
        if key not in seen:
            seen.add(key)
            sub = os.path.dirname(os.path.relpath(path, top)) if top is not None else ""
            jobs.append(Job(path, error=error, subfolder=sub))

    for arg in inputs:
        if os.path.isdir(arg):
            files = _folder_images(arg, recursive)
            if not files:
                add(arg, "folder holds no images")
            for f in files:
                add(f, top=arg)
        elif os.path.lexists(arg) or not glob.has_magic(arg):
            add(arg)  # an existing file, or a missing one that open_image reports
        else:
            matches = sorted(glob.glob(arg, recursive=True))
            files = []
            for m in matches:
                files.extend(_folder_images(m, recursive) if os.path.isdir(m) else [m] if _is_image_name(m) else [])
            if not files:
                add(arg, "no images match this pattern")
            for f in files:
                add(f)
    return jobs


def _save_format(path: str) -> str:
    from PIL import Image

    fmt = Image.registered_extensions().get(os.path.splitext(path)[1].lower())
    if fmt is None or fmt not in Image.SAVE:
        raise UsageError(f"cannot tell an image format to write from the name {path!r} (use e.g. .png or .jpg)")
    return fmt


def assign_outputs(jobs: List[Job], output: Optional[str]) -> None:
    """Set each job's output path. OUT is a file when there is one input and OUT has an image suffix
    and is not a folder; otherwise it is a folder. Refuses (per job) any output that is an input."""
    live = [j for j in jobs if j.error is None]
    out_is_file = (
        output is not None and len(live) == 1 and len(jobs) == 1
        and not os.path.isdir(output) and not output.endswith(("/", os.sep)) and os.path.splitext(output)[1] != ""
    )
    if output is not None and not out_is_file:
        if os.path.exists(output) and not os.path.isdir(output):
            raise UsageError(f"-o {output}: exists and is not a folder, but there are {len(jobs)} inputs")
        if os.path.splitext(output.rstrip("/" + os.sep))[1].lower() in IMAGE_SUFFIXES and not os.path.isdir(output):
            raise UsageError(f"-o {output} looks like a file name, but there are {len(jobs)} inputs; give a folder")
    if out_is_file:
        _save_format(output)
    inputs = {os.path.realpath(j.source) for j in jobs}
    taken = {}
    for job in live:
        if out_is_file:
            job.output = output
        else:
            stem = os.path.splitext(os.path.basename(job.source))[0]
            # -o DIR mirrors the subfolders of a --recursive folder input, so same-named files don't collide
            folder = os.path.join(output, job.subfolder) if output is not None else os.path.dirname(job.source)
            job.output = os.path.join(folder, stem + SUFFIX + ".png")
        key = os.path.realpath(job.output)
        if key in inputs:
            if out_is_file:
                raise UsageError(f"-o {output} is the input itself; refusing to overwrite it")
            job.error = f"output {shown(job.output)} is an input; refusing to overwrite it"
        elif key in taken:
            job.error = f"output {shown(job.output)} would also be written for {shown(taken[key])}; colorize them separately"
        else:
            taken[key] = job.source


# --------------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------------
def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_temporaries(path: str) -> None:
    """Delete `.<name>.<pid>.*.part` temporaries of `path` left by killed runs (a SIGKILLed process
    cannot clean up); those of live processes (a concurrent run) are left alone."""
    folder, name = os.path.split(path)
    for entry in glob.glob(os.path.join(glob.escape(folder or "."), f".{glob.escape(name)}.*.part")):
        pid = os.path.basename(entry)[len(name) + 2:].split(".", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            try:
                os.unlink(entry)
            except OSError:
                pass


def save_atomic(image, path: str) -> None:
    """Write a PIL image to a temporary file beside `path`, then rename it into place."""
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    fmt = _save_format(path)
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.{os.getpid()}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as fh:
            image.save(fh, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _cause(err: BaseException) -> str:
    """One line describing an exception (its first line; the class name when it has no message)."""
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


# --------------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------------
def _load(model_id: str, device: str):
    import transformers
    from transformers import AutoImageProcessor, AutoModel

    from . import ColorizationImageProcessor

    bars = transformers.utils.logging.is_progress_bar_enabled()
    transformers.utils.logging.disable_progress_bar()  # our own bar is the only one the user sees
    try:
        # never run code shipped inside a model folder: the installed package provides it
        model = AutoModel.from_pretrained(model_id, trust_remote_code=False).to(device).eval()
        try:
            processor = AutoImageProcessor.from_pretrained(model_id, trust_remote_code=False)
        except (OSError, ValueError):  # a model folder saved without its preprocessor_config.json
            processor = ColorizationImageProcessor()
    finally:
        if bars:
            transformers.utils.logging.enable_progress_bar()
    return model, processor


def shown(path: str) -> str:
    """A path as printable text: undecodable bytes in file names (surrogate escapes) become \\xNN."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _error(job: Job, cause: str, write) -> None:
    write(f"{PROG}: error: {shown(job.source)}: {cause}")


def run(args) -> int:
    import torch
    from tqdm.auto import tqdm

    from . import DEFAULT_MODEL

    try:
        jobs = expand_inputs(args.inputs, recursive=args.recursive)
        assign_outputs(jobs, args.output)
    except UsageError as err:
        print(f"{PROG}: error: {shown(str(err))}", file=sys.stderr)
        return 2

    failed = skipped = done = 0
    todo = []
    for job in jobs:
        if job.error is not None:
            _error(job, job.error, lambda m: print(m, file=sys.stderr))
            failed += 1
        elif args.skip_existing and os.path.exists(job.output):
            skipped += 1
        else:
            todo.append(job)

    if todo:
        model_id = args.model or DEFAULT_MODEL
        try:
            model, processor = _load(model_id, args.device)
        except Exception as err:  # noqa: BLE001 - any loading failure is one line, not a traceback
            print(f"{PROG}: error: cannot load model {model_id}: {_cause(err)}", file=sys.stderr)
            return 1
        generator = torch.Generator(device=args.device).manual_seed(args.seed) if args.seed is not None else None
        bar = tqdm(total=len(todo), unit="img", desc="colorizing", file=sys.stderr, disable=len(todo) < 2)

        def report(job, cause):
            nonlocal failed
            failed += 1
            _error(job, cause, lambda m: bar.write(m, file=sys.stderr))
            bar.update(1)

        for start in range(0, len(todo), args.batch_size):
            batch = []  # (job, full-resolution L (1, H, W), network input (1, S, S))
            for job in todo[start:start + args.batch_size]:
                try:
                    batch.append((job, *processor.prepare(job.source, args.size)))
                except Exception as err:  # noqa: BLE001 - ColorizationInputError or anything PIL raised
                    report(job, _cause(err))
            if not batch:
                continue
            try:
                with torch.inference_mode():
                    pixel_values = torch.stack([b[2] for b in batch]).to(args.device)
                    ab = model(pixel_values=pixel_values, temperature=args.temperature,
                               decode_mode=args.decode, generator=generator).ab.cpu()
            except Exception as err:  # noqa: BLE001
                for job, _, _ in batch:
                    report(job, f"model failed: {_cause(err)}")
                continue
            for i, (job, l_full, _) in enumerate(batch):
                try:
                    save_atomic(processor.colorize_l(l_full, ab[i], output_type="pil"), job.output)
                except Exception as err:  # noqa: BLE001
                    report(job, f"cannot write {shown(job.output)}: {_cause(err)}")
                    continue
                done += 1
                bar.update(1)
        bar.close()

    if len(jobs) > 1 or skipped:
        parts = [f"{done} colorized"] + ([f"{skipped} skipped (output exists)"] if skipped else []) + (
            [f"{failed} failed"] if failed else [])
        print(f"{PROG}: {', '.join(parts)}", file=sys.stderr)
    return 1 if failed else 0
