"""`hf-colorize evaluate --dataset SOURCE`: score a model and the gray / mean-colour baselines (AuC, PSNR,
colourfulness, hue accuracy) on held-out colour photos; the protocol is `hf_colorize.evaluation.protocol`.

Unlike `colorize` and `video`, where `--size` is the network input side, here `--size` is the side of the
protocol's centre crop (what is scored, fixed so models compare) and `--network-size` the model's input
side; the other colorization options are spelt as everywhere (`cli.args`).
"""

from hf_colorize.cli import add_progress_argument
from hf_colorize.cli.args import PRECISIONS, add_fading_options, network_size, positive_float, positive_int
from hf_colorize.models.colorization.configuration_colorization import DECODE_MODES

DEFAULT_CROP = 256  # = hf_colorize.evaluation.protocol.DEFAULT_CROP (not imported: --help stays light)


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
    group.add_argument("--model", metavar="M", default=None,
                       help="model folder or Hub id (default: the embedded model, hf_colorize.DEFAULT_MODEL)")
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
    out = parser.add_argument_group("outputs")
    out.add_argument("--json", default=None, metavar="OUT", help="write the results as JSON")
    out.add_argument("--plot", default=None, metavar="OUT.png", help="write the AuC curves as a PNG")
    out.add_argument("--contact-sheet", default=None, metavar="OUT.png", help="write input / prediction / truth for a few photos")
    out.add_argument("--sheet-images", type=positive_int, default=4, metavar="N", help="photos on the contact sheet (default 4)")
    add_progress_argument(parser)


def _warn(message: str) -> None:
    """A skipped photo: one line on stderr, and the evaluation goes on."""
    import os
    import sys

    text = os.fsencode(str(message)).decode("utf-8", "backslashreplace").replace("\n", " ")
    print(f"hf-colorize evaluate: warning: {text}", file=sys.stderr, flush=True)


def run(args) -> int:
    from hf_colorize.cli import show_progress
    from hf_colorize.common import ColorizeError
    from hf_colorize.evaluation.protocol import check_output, evaluate_model, format_table, plot_auc_curves, write_json

    for flag, path in (("--json", args.json), ("--plot", args.plot), ("--contact-sheet", args.contact_sheet)):
        if path:  # fail before the work, not after
            check_output(path, flag)
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise ColorizeError("--plot needs matplotlib (pip install 'hf-colorize[eval]')") from None
    results = evaluate_model(
        args.model, args.dataset, split=args.split, image_column=args.image_column, limit=args.limit,
        size=args.size, network_size=args.network_size, temperature=args.temperature, decode_mode=args.decode_mode,
        precision=args.precision, chromatic_fading=args.chromatic_fading, fading_eta=args.fading_eta,
        device=args.device or "cpu", batch_size=args.batch_size,
        contact_sheet=args.contact_sheet, sheet_images=args.sheet_images, dataset_name=args.dataset,
        progress=show_progress(args), warn=_warn,
    )
    print(format_table(results))
    if args.json:
        write_json(results, args.json)
    if args.plot:
        plot_auc_curves(results, args.plot)
    return 0
