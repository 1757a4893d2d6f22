"""`hf-colorize colorize-dataset SOURCE --output OUT`: colorize a whole dataset (image folder, parquet
shards, Hub dataset id, or a folder of videos) into parquet shards + manifest + dataset card (or
colorized videos), on one process or many: `accelerate launch ... -m hf_colorize colorize-dataset` or
`torchrun ... -m hf_colorize colorize-dataset` split the shards by rank. Run the same command again to
resume. The work is `hf_colorize.jobs.run_dataset_job`; see docs/dataset-jobs.md.

Bad arguments, SOURCE / OUT / push problems: one line before any work (exit 2 or 1). A bad item costs
one line on stderr and is recorded in the manifest; the job goes on, and exits 0 once every shard is
done (the summary line and the manifest count the failures).
"""

import sys

from hf_colorize.cli import add_progress_argument, error, show_progress
from hf_colorize.cli.args import add_inference_options, inference_kwargs, int_in, non_negative_int, positive_int

COMMAND = "colorize-dataset"
DEFAULT_BATCH_SIZE = 8  # = jobs.run.DEFAULT_BATCH_SIZE (not imported: --help stays light)


def add_arguments(parser) -> None:
    parser.add_argument("source", metavar="SOURCE",
                        help="image folder, parquet file(s) or folder of them, Hub dataset id, or a folder of videos")
    parser.add_argument("-o", "--output", required=True, metavar="OUT",
                        help="output folder (new, empty, or an earlier run of the same command, which is resumed)")
    src = parser.add_argument_group("source")
    src.add_argument("--split", default=None, help="split of a parquet or Hub source (default train)")
    src.add_argument("--image-column", default=None, metavar="COL", help="image column of a parquet or Hub source (default image)")
    src.add_argument("--key-column", default=None, metavar="COL",
                     help="column naming each row in the output (default: a `key` column, else the image's file name, "
                          "else the row number); folders use the file's relative path")
    src.add_argument("--media", choices=("auto", "images", "videos"), default="auto",
                     help="what a folder holds (default auto; a folder with both needs a choice)")
    out = parser.add_argument_group("output")
    out.add_argument("--shard-size", type=positive_int, default=None, metavar="N",
                     help="images per output shard, the unit of work and of resuming (default 256)")
    out.add_argument("--format", choices=("png", "jpeg", "webp"), default=None, help="image encoding (default png)")
    out.add_argument("--quality", type=int_in(1, 100), default=None, metavar="Q", help="jpeg / webp quality (default 95)")
    add_inference_options(parser, batch_size=DEFAULT_BATCH_SIZE, fading=False)
    device = next(a for a in parser._actions if a.dest == "device")
    device.help = "torch device (default: each process's own, cuda:LOCAL_RANK under a launcher, else cpu)"
    parser.add_argument("--seed", type=int, default=None, help="random seed for --decode-mode sample")
    parser.add_argument("--decode-workers", type=non_negative_int, default=2, metavar="N",
                        help="threads decoding the next images while the network runs (default 2; 0: none)")
    video = parser.add_argument_group("videos")
    video.add_argument("--no-temporal", dest="temporal", action="store_false", default=None,
                       help="colorize every frame independently (default: temporal mode, no flicker)")
    video.add_argument("--crf", type=int_in(0, 51), default=None, help="x264 quality 0..51 (default 18)")
    hub = parser.add_argument_group("publishing")
    hub.add_argument("--push-to-hub", default=None, metavar="REPO_ID", help="publish OUT as this Hub dataset, in one commit")
    hub.add_argument("--private", action="store_true", help="create the dataset repository as private")
    hub.add_argument("--token", default=None, help="Hub token (default: HF_TOKEN or `hf auth login`)")
    hub.add_argument("--dry-run", default=None, metavar="DIR",
                     help="with --push-to-hub: write the files of the commit to DIR (new or empty), upload nothing")
    hub.add_argument("--commit-message", default=None)
    add_progress_argument(parser)


def _check_push(args) -> None:
    from hf_colorize.common import UsageError

    if args.push_to_hub is None:
        given = [flag for flag, value in (("--private", args.private), ("--token", args.token),
                                          ("--dry-run", args.dry_run), ("--commit-message", args.commit_message)) if value]
        if given:
            raise UsageError(f"{' and '.join(given)} need --push-to-hub REPO_ID")
        return
    from hf_colorize.hub.push import check_can_push, check_dry_run_dir, validate_repo_id

    validate_repo_id(args.push_to_hub, "--push-to-hub")
    if args.dry_run is not None:
        check_dry_run_dir(args.dry_run)
    else:
        check_can_push(args.token)  # no token / offline: one line now, not after hours of work


def run(args) -> int:
    from tqdm.auto import tqdm

    from hf_colorize.jobs import DatasetJob, run_dataset_job

    _check_push(args)
    options = inference_kwargs(args)
    options["device"] = args.device  # None: each rank's own device (cuda:LOCAL_RANK), not "cpu"
    job = DatasetJob(
        source=args.source, output=args.output, model=args.model, media=args.media, split=args.split,
        image_column=args.image_column, key_column=args.key_column, shard_size=args.shard_size,
        format=args.format, quality=args.quality, seed=args.seed, decode_workers=args.decode_workers,
        temporal=args.temporal, crf=args.crf, progress=show_progress(args), **options,
    )

    def failed(key, reason):
        error(COMMAND, f"{key}: {reason}", write=lambda line: tqdm.write(line, file=sys.stderr))

    summary = run_dataset_job(job, on_failure=failed)
    if not summary["is_main"]:
        return 0
    unit = "videos" if summary["manifest"]["kind"] == "videos" else "images"
    rate = summary["done"] / summary["seconds"] if summary["seconds"] > 0 else 0.0
    print(f"hf-colorize {COMMAND}: {summary['done']} done, {summary['skipped']} skipped (already done), "
          f"{summary['failed']} failed; {summary['manifest']['counts']['colorized']} of {summary['items']} {unit} in "
          f"{summary['output']} ({summary['world_size']} process{'es' if summary['world_size'] > 1 else ''}, "
          f"{rate:.2f} {unit}/s)", file=sys.stderr)
    if args.push_to_hub is not None:
        from hf_colorize.hub.dataset_push import push_dataset

        result = push_dataset(summary["output"], args.push_to_hub, private=args.private, token=args.token,
                              dry_run_dir=args.dry_run, commit_message=args.commit_message)
        if args.dry_run is not None:
            print(f"wrote the upload folder for {args.push_to_hub} to {result} (nothing uploaded)")
        else:
            print(f"pushed {args.push_to_hub}: {result}")
    return 0
