"""`hf-colorize evaluate --dataset SOURCE`: score a model and the gray / mean-colour baselines (AuC, PSNR,
colourfulness, hue accuracy) on held-out colour photos; the protocol is `hf_colorize.evaluation.protocol`.
With `--hints` and/or `--reference`, evaluate guided colorization instead (the SIGGRAPH 2017 protocol on
whole photos: `hf_colorize.evaluation.guidance`); `--model` may then be given several times.

Unlike `colorize` and `video`, where `--size` is the network input side, here `--size` is the side of the
protocol's centre crop (what is scored, fixed so models compare) and `--network-size` the model's input
side; the other colorization options are spelt as everywhere (`cli.args`).
"""

import argparse

from hf_colorize.cli import add_progress_argument
from hf_colorize.cli.args import (PRECISIONS, add_fading_options, network_size, non_negative_float, non_negative_int,
                                  positive_float, positive_int)
from hf_colorize.models.colorization.configuration_colorization import DECODE_MODES

DEFAULT_CROP = 256  # = hf_colorize.evaluation.protocol.DEFAULT_CROP (not imported: --help stays light)
# = hf_colorize.evaluation.guidance's HINT_COUNTS, METHODS, REFERENCE_MODES, DEFAULT_STRENGTHS, DEFAULT_MAX_SIDE
HINT_COUNTS = (0, 1, 2, 5, 10, 20, 50, 100)
METHODS = ("model", "crude")
REFERENCE_MODES = ("self", "other")
DEFAULT_STRENGTHS = (0.5, 1.0, 2.0)
DEFAULT_MAX_SIDE = 512
MAX_HINTS = 10_000  # = guidance_colorization.MAX_HINTS


def _comma_list(item, what: str):
    """An argparse type: a comma-separated list of `item(text)` values (one line naming a bad item)."""
    def parse(text: str):
        values = []
        for part in text.split(","):
            try:
                values.append(item(part.strip()))
            except argparse.ArgumentTypeError as err:
                raise argparse.ArgumentTypeError(f"{what} {part.strip()!r}: {err}") from None
        if not values:
            raise argparse.ArgumentTypeError(f"no {what} given")
        return values

    return parse


def _hint_count(text: str) -> int:
    value = non_negative_int(text)
    if value > MAX_HINTS:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_HINTS}, got {text}")
    return value


def _method(text: str) -> str:
    if text not in METHODS:
        raise argparse.ArgumentTypeError(f"unknown method (known: {', '.join(METHODS)})")
    return text


hint_counts = _comma_list(_hint_count, "hint count")
methods = _comma_list(_method, "hint method")
strengths = _comma_list(non_negative_float, "reference strength")
#: flags of the guidance evaluation only, and of the plain one only (each refused in the other mode)
GUIDANCE_ONLY = ("hint_methods", "reference_pool", "reference_strength", "max_side", "guidance_seed")
PLAIN_ONLY = ("size", "contact_sheet")


def add_arguments(parser) -> None:
    data = parser.add_argument_group("data")
    data.add_argument("--dataset", required=True, help="image folder, parquet shards (folder or glob) or Hub dataset id")
    data.add_argument("--split", default="test", help="dataset split (default: test; ignored for an image folder)")
    data.add_argument("--image-column", default="image", help="column holding the images (default: image)")
    data.add_argument("--limit", type=positive_int, default=None, metavar="N", help="score at most N colour photos")
    data.add_argument("--size", type=network_size, default=None, metavar="N",
                      help=f"side of the centre crop that is scored, a multiple of 8 (default {DEFAULT_CROP}). "
                           "Note: here --size is the crop; the model's input side is --network-size")
    group = parser.add_argument_group("colorization")
    group.add_argument("--model", metavar="M", default=None, action="append",
                       help="model folder or Hub id (default: the embedded model, hf_colorize.DEFAULT_MODEL); "
                            "with --hints / --reference it may be given several times, one curve each")
    group.add_argument("--network-size", type=network_size, default=None, metavar="N",
                       help="the model's input side, a multiple of 8 (default: the model's image_size)")
    group.add_argument("--temperature", type=positive_float, metavar="T",
                       help="annealed-mean temperature (default: the model's decode_temperature)")
    group.add_argument("--decode-mode", "--decode", dest="decode_mode", choices=DECODE_MODES, metavar="MODE",
                       help=f"decoding of the bin distribution: {', '.join(DECODE_MODES)} (default: the model's)")
    group.add_argument("--precision", choices=PRECISIONS, default=None,
                       help="auto (default), fp32, bf16, fp16 or int8 (see hf-colorize colorize --help)")
    add_fading_options(group)
    group.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda (default: cpu)")
    group.add_argument("--batch-size", type=positive_int, default=8, metavar="B", help="crops per forward pass (default 8)")
    guided = parser.add_argument_group(
        "guidance (SIGGRAPH 2017 protocol: whole photos, ground-truth hints; see docs/evaluation.md)")
    guided.add_argument("--hints", type=hint_counts, nargs="?", const=list(HINT_COUNTS), default=None, metavar="N,N,...",
                        help="score PSNR and AuC against the number of ground-truth point hints (default list "
                             f"{','.join(map(str, HINT_COUNTS))} when the flag is given alone)")
    guided.add_argument("--hint-methods", type=methods, default=None, metavar="M,M",
                        help="model: the model's own guidance, the public API (training-free, or a hint-trained "
                             "model's inputs); crude: the issue's crude logit-bias baseline (default: model,crude)")
    guided.add_argument("--reference", choices=REFERENCE_MODES, default=None,
                        help="score reference guidance: self = the photo itself as the reference, other = another "
                             "photo of the same label from --reference-pool")
    guided.add_argument("--reference-pool", default=None, metavar="FOLDER",
                        help="photos to draw --reference other partners from: same label = same file name up to the "
                             "first '_' (n01440764_tench.JPEG, forest_1a2b.jpg); never the photo itself")
    guided.add_argument("--reference-strength", type=strengths, default=None, metavar="S,S,...",
                        help="reference strengths to score, each against no reference (default "
                             f"{','.join(f'{s:g}' for s in DEFAULT_STRENGTHS)})")
    guided.add_argument("--max-side", type=non_negative_int, default=None, metavar="N",
                        help=f"downscale each photo so its longer side is at most N (0: as it is; default {DEFAULT_MAX_SIDE})")
    guided.add_argument("--guidance-seed", type=non_negative_int, default=None, metavar="S",
                        help="seed of the hints and of the reference partners (default 0)")
    out = parser.add_argument_group("outputs")
    out.add_argument("--json", default=None, metavar="OUT", help="write the results as JSON")
    out.add_argument("--plot", default=None, metavar="OUT.png",
                     help="write the AuC curves as a PNG (guidance: PSNR vs number of hints, hue accuracy vs strength)")
    out.add_argument("--contact-sheet", default=None, metavar="OUT.png", help="write input / prediction / truth for a few photos")
    out.add_argument("--sheet-images", type=positive_int, default=4, metavar="N", help="photos on the contact sheet (default 4)")
    add_progress_argument(parser)


def _warn(message: str) -> None:
    """A skipped photo: one line on stderr, and the evaluation goes on."""
    import os
    import sys

    text = os.fsencode(str(message)).decode("utf-8", "backslashreplace").replace("\n", " ")
    print(f"hf-colorize evaluate: warning: {text}", file=sys.stderr, flush=True)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def run(args) -> int:
    from hf_colorize.cli import show_progress
    from hf_colorize.common import ColorizeError, UsageError
    from hf_colorize.evaluation.protocol import check_output, evaluate_model, format_table, plot_auc_curves

    guided = args.hints is not None or args.reference is not None
    wrong = [n for n in (PLAIN_ONLY if guided else GUIDANCE_ONLY) if getattr(args, n) is not None]
    if wrong:
        raise UsageError(f"{_flag(wrong[0])} " + ("applies to the plain evaluation, not with --hints / --reference"
                                                 if guided else "needs --hints or --reference"))
    if guided and args.reference == "other" and args.reference_pool is None:
        raise UsageError("--reference other needs --reference-pool FOLDER")
    if args.reference_pool is not None and args.reference != "other":
        raise UsageError("--reference-pool needs --reference other")
    models = args.model or [None]
    if not guided and len(models) > 1:
        raise UsageError("--model can be given several times only with --hints or --reference")
    for flag, path in (("--json", args.json), ("--plot", args.plot), ("--contact-sheet", args.contact_sheet)):
        if path:  # fail before the work, not after
            check_output(path, flag)
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise ColorizeError("--plot needs matplotlib (pip install 'hf-colorize[eval]')") from None
    if guided:
        return _run_guidance(args, models, show_progress(args))
    results = evaluate_model(
        models[0], args.dataset, split=args.split, image_column=args.image_column, limit=args.limit,
        size=args.size, network_size=args.network_size, temperature=args.temperature, decode_mode=args.decode_mode,
        precision=args.precision, chromatic_fading=args.chromatic_fading, fading_eta=args.fading_eta,
        device=args.device or "cpu", batch_size=args.batch_size,
        contact_sheet=args.contact_sheet, sheet_images=args.sheet_images, dataset_name=args.dataset,
        progress=show_progress(args), warn=_warn,
    )
    return _report(results, args, format_table, plot_auc_curves)


def _run_guidance(args, models, progress: bool) -> int:
    from hf_colorize.common import UsageError
    from hf_colorize.evaluation.guidance import evaluate_guidance, format_guidance_table, plot_guidance

    fading = [n for n in ("chromatic_fading", "fading_eta") if getattr(args, n) is not None]
    if fading:  # guidance needs an ECCV16-family bin model; hue/chroma models cannot take it
        raise UsageError(f"{_flag(fading[0])} does not apply with --hints / --reference")
    if args.reference_strength is not None and args.reference is None:
        raise UsageError("--reference-strength needs --reference")
    if args.hint_methods is not None and args.hints is None:
        raise UsageError("--hint-methods needs --hints")
    results = evaluate_guidance(
        models, args.dataset, hint_counts=args.hints, methods=args.hint_methods or METHODS,
        reference=args.reference, reference_pool=args.reference_pool,
        reference_strengths=args.reference_strength or DEFAULT_STRENGTHS,
        max_side=DEFAULT_MAX_SIDE if args.max_side is None else args.max_side,
        seed=args.guidance_seed or 0, split=args.split, image_column=args.image_column, limit=args.limit,
        network_size=args.network_size, temperature=args.temperature, decode_mode=args.decode_mode,
        precision=args.precision, device=args.device or "cpu", batch_size=args.batch_size, dataset_name=args.dataset,
        progress=progress, warn=_warn,
    )
    return _report(results, args, format_guidance_table, plot_guidance)


def _report(results: dict, args, table, plot) -> int:
    """Print `table(results)`, then write the --json and --plot files asked for."""
    from hf_colorize.evaluation.protocol import write_json

    print(table(results))
    if args.json:
        write_json(results, args.json)
    if args.plot:
        plot(results, args.plot)
    return 0

