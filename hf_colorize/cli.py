"""`hf-colorize` command line: a thin dispatcher over one module per command.

Each command module defines `add_arguments(parser)` and `run(args) -> int` and keeps heavy imports
inside `run`; only the chosen command's module is imported.
"""

import argparse
import importlib
import sys

# command -> (module, one-line help)
COMMANDS = {
    "colorize": ("hf_colorize.cli_colorize", "colorize photos (files, folders, globs)"),
    "train": ("hf_colorize.train", "train or fine-tune a colorizer with Accelerate on a streamed dataset"),
    "pack": ("hf_colorize.data", "pack an image folder into parquet shards for streaming"),
    "estimate-prior": ("hf_colorize.priors", "estimate the ab bin prior (class rebalancing) from a stream"),
    "fit-palette": ("hf_colorize.palette", "fit k-means ab palette bins on a stream"),
    "evaluate": ("hf_colorize.evaluate", "evaluate a model: AuC, PSNR, colourfulness, hue accuracy"),
    "push": ("hf_colorize.hub", "push a model folder (weights, code, card) to the Hub"),
    "video": ("hf_colorize.video", "colorize a video without flicker"),
    "video-eval": ("hf_colorize.video_eval", "measure flicker of a colorized video against ground truth"),
    "convert-eccv16": ("hf_colorize.convert_eccv16", "convert original ECCV16 release weights"),
    "export-onnx": ("hf_colorize.onnx_export", "export a model to ONNX"),
}


# the optional extra a command's module needs, for the one-line error when it is not installed
EXTRAS = {"train": "train", "pack": "train", "estimate-prior": "train", "fit-palette": "train", "evaluate": "train",
          "push": "hub", "video": "video", "video-eval": "video", "export-onnx": "onnx"}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(prog="hf-colorize", description="Automatic colorization of black-and-white photos and films.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    # only the chosen command's module is imported: `--help` stays fast, and a missing optional
    # dependency of one command (say, PyAV for video) cannot break the others
    chosen = next((a for a in argv if not a.startswith("-")), None)
    runner = None
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name != chosen:
            continue
        try:
            module = importlib.import_module(module_name)
        except ImportError as err:
            extra = EXTRAS.get(name)
            hint = f" (pip install 'hf-colorize[{extra}]')" if extra else ""
            print(f"hf-colorize {name}: error: missing dependency {err.name or err}{hint}", file=sys.stderr)
            return 1
        module.add_arguments(p)
        runner = module.run
    args = parser.parse_args(argv)
    _quiet_libraries()
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(runner(args) or 0)
    except KeyboardInterrupt:
        print("hf-colorize: interrupted", file=sys.stderr)
        return 130


def _quiet_libraries():
    """Keep stderr to our own one-line messages: no weight-loading bars or library warnings."""
    import os
    import warnings

    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    warnings.filterwarnings("ignore", category=UserWarning)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def _version():
    from . import __version__

    return __version__


if __name__ == "__main__":
    sys.exit(main())
