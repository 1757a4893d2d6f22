"""`hf-colorize estimate-prior DATASET -o OUT`: the class-rebalancing bin prior of a stream
(`training.priors.estimate_dataset_prior`)."""

from hf_colorize.cli import add_progress_argument, show_progress
from hf_colorize.cli.args import network_size, positive_int


def add_arguments(parser) -> None:
    from hf_colorize.cli.train import require

    require("datasets")
    from hf_colorize.cli.args import non_negative_float

    parser.add_argument("dataset", help="image folder, parquet shards or Hub dataset id")
    parser.add_argument("-o", "--output", required=True, help="output .safetensors file")
    parser.add_argument("--split", default="train")
    parser.add_argument("--image-column", default="image")
    parser.add_argument("--bins", default=None, help="palette file from `fit-palette` (default: the 313 ECCV16 bins)")
    parser.add_argument("--max-images", type=positive_int, default=2000, help="colour photos counted (default 2000)")
    parser.add_argument("--crop-size", "--size", dest="crop_size", type=network_size, default=176,
                        help="side of the centre crops counted, a multiple of 8 (default 176, train's default)")
    parser.add_argument("--sigma", type=non_negative_float, default=5.0, help="Gaussian smoothing in ab units (0: none)")
    add_progress_argument(parser)


def check_output_file(path, flag: str = "--output") -> None:
    """`UsageError` unless `path` can name a new or replaced file: not a folder, in an existing folder."""
    import os

    from hf_colorize.common import UsageError, shown

    if os.path.isdir(path):
        raise UsageError(f"{flag} {shown(path)}: is a folder; give a file name, e.g. prior.safetensors")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise UsageError(f"{flag} {shown(path)}: the folder {shown(parent)} does not exist")


def check_input_file(path, flag: str) -> None:
    import os

    from hf_colorize.common import UsageError, shown

    if path and not os.path.isfile(path):
        raise UsageError(f"{flag} {shown(path)}: " + ("not a file" if os.path.exists(path) else "no such file"))


def run(args) -> int:
    from hf_colorize.common import shown
    from hf_colorize.training.priors import estimate_dataset_prior

    check_output_file(args.output)
    check_input_file(args.bins, "--bins")
    result = estimate_dataset_prior(args.dataset, args.output, split=args.split, image_column=args.image_column,
                                    bins=args.bins, max_images=args.max_images, crop_size=args.crop_size,
                                    sigma=args.sigma, progress=show_progress(args))
    print(f"prior over {result['bins']} bins from {result['images']} images (skipped {result['grayscale']} gray, "
          f"{result['undecodable']} undecodable) -> {shown(result['output'])}")
    return 0
