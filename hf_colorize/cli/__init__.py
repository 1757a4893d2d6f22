"""`hf-colorize` command line: a thin dispatcher over one module per command (`hf_colorize/cli/<command>.py`).

Each command module defines `add_arguments(parser)` and `run(args) -> int` and keeps heavy imports inside
`run`; only the chosen command's module is imported. Argument parsing, messages and exit codes live in
`cli/` only. A command reports a failure by raising a `ColorizeError` (see `hf_colorize.common`): this
dispatcher prints it as `hf-colorize COMMAND: error: <one line>` and exits with its `exit_code` (2 for
usage errors, 1 otherwise). Per-file failures inside a batch go through `error()` and the batch goes on.
"""

import argparse
import importlib
import os
import sys

PROG = "hf-colorize"

# command -> (module, one-line help, the optional extra it needs)
COMMANDS = {
    "colorize": ("colorize", "colorize photos (files, folders, globs)", None),
    "colorize-dataset": ("colorize_dataset", "colorize a whole dataset into parquet shards (many processes, resumable)", "train"),
    "train": ("train", "train or fine-tune a colorizer with Accelerate on a streamed dataset", "train"),
    "pack": ("pack", "pack an image folder into parquet shards for streaming", "train"),
    "estimate-prior": ("estimate_prior", "estimate the ab bin prior (class rebalancing) from a stream", "train"),
    "fit-palette": ("fit_palette", "fit k-means ab palette bins on a stream", "train"),
    "evaluate": ("evaluate", "evaluate a model: AuC, PSNR, colourfulness, hue accuracy", "train"),
    "push": ("push", "push a model folder (weights, code, card) to the Hub", "hub"),
    "video": ("video", "colorize a video without flicker", "video"),
    "video-eval": ("video_eval", "measure flicker of a colorized video against ground truth", "video"),
    "convert-eccv16": ("convert_eccv16", "convert original ECCV16 release weights", None),
    "export-onnx": ("export_onnx", "export a model to ONNX", "onnx"),
}


def error(command: str, message: str, write=None) -> None:
    """The one error printer: `hf-colorize COMMAND: error: <message>` on stderr (or through `write`, e.g.
    a progress bar's). Undecodable bytes of file names are shown as \\xNN."""
    text = os.fsencode(str(message)).decode("utf-8", "backslashreplace").replace("\n", " ")
    line = f"{PROG} {command}: error: {text}" if command else f"{PROG}: error: {text}"
    (write or (lambda m: print(m, file=sys.stderr, flush=True)))(line)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (`hf-colorize COMMAND: error: ...`), exit code 2."""

    def error(self, message):
        command = self.prog[len(PROG):].strip()
        error(command, f"{message} (see {self.prog} --help)")
        raise SystemExit(2)


def add_progress_argument(parser) -> None:
    """`--progress/--no-progress`: default a bar only when stderr is a terminal (no bar lines in logs)."""
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="show a progress bar (default: only when stderr is a terminal)")


def show_progress(args) -> bool:
    """Whether to draw a progress bar for these arguments (see `add_progress_argument`)."""
    chosen = getattr(args, "progress", None)
    return sys.stderr.isatty() if chosen is None else bool(chosen)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = _Parser(prog=PROG, description="Automatic colorization of black-and-white photos and films.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    # only the chosen command's module is imported: `--help` stays fast, and a missing optional
    # dependency of one command (say, PyAV for video) cannot break the others
    chosen = next((a for a in argv if not a.startswith("-")), None)
    runner = None
    for name, (module_name, help_text, extra) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name != chosen:
            continue
        try:
            # a dotted name is a full module path (commands added from outside the package)
            module = importlib.import_module(module_name if "." in module_name else f"hf_colorize.cli.{module_name}")
            module.add_arguments(p)
        except ImportError as err:
            hint = f" (pip install 'hf-colorize[{extra}]')" if extra else ""
            error(name, f"missing dependency {err.name or err}{hint}")
            return 1
        runner = module.run
    args = parser.parse_args(argv)
    _quiet_libraries()
    if args.command is None:
        parser.print_help()
        return 2
    from hf_colorize.common import ColorizeError, one_line

    try:
        return int(runner(args) or 0)
    except ColorizeError as err:
        error(args.command, one_line(err))
        return err.exit_code
    except KeyboardInterrupt:
        error(args.command, "interrupted")
        return 130


def _quiet_libraries():
    """Keep stderr to our own one-line messages: no weight-loading bars or library warnings."""
    import warnings

    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def _version():
    from hf_colorize import __version__

    return __version__


if __name__ == "__main__":
    sys.exit(main())
