"""`hf-colorize pack FOLDER OUT_DIR`: pack an image folder into parquet shards (`training.data.pack_folder`).

A file that cannot be decoded costs one line (`hf-colorize pack: error: FILE: cause`), is skipped, and
the pack goes on; the exit code is then 1.
"""


from hf_colorize.cli import add_progress_argument, error, show_progress
from hf_colorize.cli.args import int_in, non_negative_int, positive_int


jpeg_quality = int_in(1, 100)


def add_arguments(parser) -> None:
    from hf_colorize.cli.train import require

    require("datasets")
    parser.add_argument("folder", help="folder of images (subfolders included)")
    parser.add_argument("out_dir", help="where to write the parquet shards (a new or empty folder, or --overwrite)")
    parser.add_argument("--max-side", type=non_negative_int, default=256,
                        help="downscale so the long side is at most this (0: keep the size; default 256)")
    parser.add_argument("--shard-size", type=positive_int, default=500, help="images per shard (default 500)")
    parser.add_argument("--quality", type=jpeg_quality, default=92, help="JPEG quality of the re-encoded images (default 92)")
    parser.add_argument("--holdout-every", type=non_negative_int, default=0,
                        help="hold out every N-th file (N >= 2) as the test split (default 0: none)")
    parser.add_argument("--validation-every", type=non_negative_int, default=0,
                        help="set aside every M-th file that is not held out (M >= 2) as the validation split, for "
                             "choosing settings (default 0: none)")
    parser.add_argument("--overwrite", action="store_true", help="replace the parquet shards already in OUT_DIR")
    add_progress_argument(parser)


def run(args) -> int:
    from hf_colorize.common import shown
    from hf_colorize.training.data import check_pack_arguments, pack_folder

    options = dict(max_side=args.max_side, shard_size=args.shard_size, quality=args.quality,
                   holdout_every=args.holdout_every, overwrite=args.overwrite,
                   validation_every=args.validation_every)
    check_pack_arguments(args.folder, args.out_dir, **options)  # before reading any image
    report = pack_folder(args.folder, args.out_dir, progress=show_progress(args), **options)
    for path in report["undecodable"]:
        error("pack", f"{shown(path)}: {report['causes'].get(path, 'cannot decode')} (skipped)")
    written = ", ".join(f"{split}: {n} images" for split, n in report["written"].items()) or "no images"
    skipped = f" ({len(report['undecodable'])} skipped)" if report["undecodable"] else ""
    print(f"{written}{skipped} -> {shown(args.out_dir)}")
    return 1 if report["undecodable"] else 0
