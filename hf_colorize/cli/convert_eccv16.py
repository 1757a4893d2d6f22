"""`hf-colorize convert-eccv16 CHECKPOINT -o OUT_DIR`: convert the original ECCV16 release weights
(`export.eccv16.convert_eccv16_checkpoint`)."""

from hf_colorize.cli.args import positive_float
from hf_colorize.models.colorization.configuration_colorization import DECODE_MODES


def add_arguments(parser) -> None:
    parser.add_argument("checkpoint", help="release checkpoint (.pth as in colorization_release_v2, or .safetensors)")
    parser.add_argument("-o", "--output", required=True, help="output model folder (new or empty, or --overwrite)")
    parser.add_argument("--decode-mode", "--decode", dest="decode_mode", choices=DECODE_MODES, default=None, metavar="MODE",
                        help=f"default decoding stored in the config: {', '.join(DECODE_MODES)} (the reference "
                             "implementation decodes with 'mean'; default: the paper's annealed mean)")
    parser.add_argument("--temperature", type=positive_float, default=None, metavar="T",
                        help="annealed-mean temperature stored in the config (default 0.38)")
    parser.add_argument("--overwrite", action="store_true", help="replace model files in a non-empty output folder")


def run(args) -> int:
    import os

    from hf_colorize.common import ConversionError, UsageError, shown
    from hf_colorize.export.eccv16 import check_output_dir, convert_eccv16_checkpoint

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local conversion: never the network
    try:
        check_output_dir(args.output, args.overwrite)
    except ConversionError as err:  # known before reading the checkpoint: a usage error
        raise UsageError(str(err)) from None
    model = convert_eccv16_checkpoint(args.checkpoint, args.output, args.decode_mode, args.temperature, args.overwrite)
    n = sum(p.numel() for p in model.parameters())
    print(f"converted {shown(args.checkpoint)} -> {shown(args.output)} ({n / 1e6:.1f}M parameters, "
          f"{model.config.num_bins} bins)")
    return 0
