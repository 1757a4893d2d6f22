"""`hf-colorize fit-palette DATASET -o OUT`: k-means ab bins of a stream (`training.palette.fit_dataset_palette`)."""

import argparse

from hf_colorize.cli import add_progress_argument, show_progress
from hf_colorize.cli.args import network_size, non_negative_int, positive_int


def num_bins(text: str) -> int:
    value = positive_int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"must be >= 2, got {text}")
    return value


def add_arguments(parser) -> None:
    from hf_colorize.cli.train import require

    require("datasets")
    parser.add_argument("dataset", help="image folder, parquet shards or Hub dataset id")
    parser.add_argument("-o", "--output", required=True, help="output .safetensors file")
    parser.add_argument("-k", "--num-bins", type=num_bins, default=313, help="palette size (default 313)")
    parser.add_argument("--split", default="train")
    parser.add_argument("--image-column", default="image")
    parser.add_argument("--max-images", type=positive_int, default=1000, help="colour photos sampled (default 1000)")
    parser.add_argument("--crop-size", "--size", dest="crop_size", type=network_size, default=128,
                        help="side of the centre crops sampled, a multiple of 8 (default 128)")
    parser.add_argument("--seed", type=non_negative_int, default=0)
    add_progress_argument(parser)


def run(args) -> int:
    from hf_colorize.cli.estimate_prior import check_output_file
    from hf_colorize.common import shown
    from hf_colorize.training.palette import fit_dataset_palette

    check_output_file(args.output)
    result = fit_dataset_palette(args.dataset, args.output, num_bins=args.num_bins, split=args.split,
                                 image_column=args.image_column, max_images=args.max_images,
                                 crop_size=args.crop_size, seed=args.seed, progress=show_progress(args))
    print(f"{result['bins']} palette bins from {result['samples']} ab samples -> {shown(result['output'])}")
    return 0
