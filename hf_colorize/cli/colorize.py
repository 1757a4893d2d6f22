"""`hf-colorize colorize INPUT... [-o OUT]`: colorize photos given as files, folders or glob patterns.

Every bad input costs one line on stderr (`hf-colorize colorize: error: <file>: <cause>`) and the batch
goes on; the exit code is 1 if any input failed, 2 for usage errors. Outputs are written to a temporary
file in the target folder and renamed into place, so an interrupted run never leaves a partial file
under the final name, and `--skip-existing` can resume it.
"""

import argparse
import glob
import os
import sys
from dataclasses import dataclass
from typing import List, Optional

from hf_colorize.cli import add_progress_argument, error, show_progress
from hf_colorize.cli.args import add_guidance_options, add_inference_options, inference_kwargs, read_hints_file
from hf_colorize.common import IMAGE_EXTENSIONS, UsageError, image_format_for, is_image_file, one_line, shown

COMMAND = "colorize"
SUFFIX = "_colorized"  # output name: <stem>_colorized.png


@dataclass
class Job:
    source: str  # the input path as found (user's spelling, or joined from a folder/glob)
    output: Optional[str] = None
    error: Optional[str] = None  # set when the input is already known to be bad
    subfolder: str = ""  # where it sits below the folder argument it came from (kept under -o DIR)


# --------------------------------------------------------------------------------------------------
# Arguments
# --------------------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="image files, folders (their images, not subfolders unless --recursive) or glob "
                             "patterns (expanded here, so quoted globs work)")
    parser.add_argument("-o", "--output", metavar="OUT",
                        help="output file (one input; its suffix picks the format) or folder (created). "
                             "Default: <stem>_colorized.png next to each input")
    add_inference_options(parser, batch_size=4)
    parser.add_argument("--seed", type=int, default=None, help="random seed for --decode-mode sample")
    add_guidance_options(parser, "JSON colour hints: a list of {\"x\": .., \"y\": .., \"color\": \"#b22222\"} (pixels of "
                                 "the image as given) for one input, or a mapping of file names to such lists")
    parser.add_argument("--skip-existing", action="store_true", help="skip inputs whose output already exists")
    parser.add_argument("--recursive", action="store_true", help="also take images from subfolders of folder inputs")
    add_progress_argument(parser)


# --------------------------------------------------------------------------------------------------
# Inputs -> jobs
# --------------------------------------------------------------------------------------------------
def _is_image_name(path: str) -> bool:
    # our own outputs are skipped so re-running on a folder does not colorize them again
    return is_image_file(path) and not os.path.splitext(os.path.basename(path))[0].endswith(SUFFIX)


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
        if os.path.splitext(output.rstrip("/" + os.sep))[1].lower() in IMAGE_EXTENSIONS and not os.path.isdir(output):
            raise UsageError(f"-o {output} looks like a file name, but there are {len(jobs)} inputs; give a folder")
    if out_is_file:
        image_format_for(output)
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
# Running
# --------------------------------------------------------------------------------------------------
def run(args) -> int:
    from tqdm.auto import tqdm

    from hf_colorize.common import load_colorizer, save_image

    jobs = expand_inputs(args.inputs, recursive=args.recursive)
    assign_outputs(jobs, args.output)  # UsageError: one line, exit 2 (printed by cli.main)
    hints = _job_hints(jobs, read_hints_file(args.hints)) if args.hints is not None else None
    failed = skipped = done = 0
    todo = []
    for job in jobs:
        if job.error is not None:
            error(COMMAND, f"{shown(job.source)}: {job.error}")
            failed += 1
        elif args.skip_existing and os.path.exists(job.output):
            skipped += 1
        else:
            todo.append(job)

    if todo:
        colorizer = load_colorizer(args.model, **inference_kwargs(args), seed=args.seed)  # ModelLoadError: exit 1
        sources = {job.source for job in todo}  # skipped and failed inputs' hints are not needed
        guidance = _guidance_options(colorizer, args, None if hints is None else {
            k: v for k, v in hints.items() if k in sources})
        bar = tqdm(total=len(todo), unit="img", desc="colorizing", disable=len(todo) < 2 or not show_progress(args))

        def report(job, cause):
            nonlocal failed
            failed += 1
            error(COMMAND, f"{shown(job.source)}: {cause}", write=lambda line: bar.write(line, file=sys.stderr))
            bar.update(1)

        for index, result in colorizer.colorize_iter([job.source for job in todo], **guidance):
            job = todo[index]
            if isinstance(result, Exception):
                report(job, one_line(result))
                continue
            try:
                save_image(result, job.output)
            except Exception as err:  # noqa: BLE001 - a write failure costs this file only
                report(job, f"cannot write {shown(job.output)}: {one_line(err)}")
                continue
            done += 1
            bar.update(1)
        bar.close()

    if len(jobs) > 1 or skipped:
        parts = [f"{done} colorized"] + ([f"{skipped} skipped (output exists)"] if skipped else []) + (
            [f"{failed} failed"] if failed else [])
        print(f"hf-colorize {COMMAND}: {', '.join(parts)}", file=sys.stderr)
    return 1 if failed else 0


def _job_hints(jobs: List[Job], data) -> dict:
    """A --hints file's content -> {job source: hint list}: a list is one input's hints; a mapping's keys are
    file names (or paths as given), each naming an input."""
    if isinstance(data, list):
        if len(jobs) != 1:
            raise UsageError(f"--hints holds one list of hints but there are {len(jobs)} inputs; map file names to "
                             "lists instead")
        return {jobs[0].source: data}
    by_name = {}
    for job in jobs:
        by_name.setdefault(job.source, job.source)
        by_name.setdefault(os.path.basename(job.source), job.source)
    out = {}
    for key, value in data.items():
        if key not in by_name:
            raise UsageError(f"--hints has hints for {key!r}, which is not among the inputs")
        out[by_name[key]] = value
    return out


def _guidance_options(colorizer, args, hints) -> dict:
    """The guidance keyword arguments of `colorize_iter`; the reference is read once, before any image (a bad
    one, or guidance the model cannot take, is a usage error)."""
    from hf_colorize.models.colorization.guidance_colorization import GuidanceError

    options = {"hints": hints, "reference": args.reference, "reference_strength": args.reference_strength}
    options = {k: v for k, v in options.items() if v is not None}
    try:
        colorizer.validate(**options)
        if "reference" in options:
            options["reference"] = colorizer.reference_distribution(options["reference"])
    except GuidanceError as err:
        raise UsageError(one_line(err)) from None
    return options

