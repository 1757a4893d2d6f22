"""`hf-colorize video-eval`: flicker and accuracy of a colorized video against a clip with known motion,
or (`--make-clip KIND`) write such a clip from real photos.

The metrics (warping error, CDC, per-frame AuC) are `hf_colorize.video.metrics`; the synthetic clips
`hf_colorize.video.clips`.
"""

import os

from hf_colorize.cli.args import positive_int

CLIP_KINDS = ("pan", "zoom", "object", "cut")  # = hf_colorize.video.clips.KINDS


def add_arguments(parser) -> None:
    parser.add_argument("prediction", nargs="?", help="colorized video or image folder to evaluate")
    parser.add_argument("--clip", help="clip.json with the exact motion (from --make-clip); gives the ground truth too")
    parser.add_argument("--gt", help="ground-truth colour video or folder (default: rendered from --clip's photos)")
    parser.add_argument("--json", dest="json_out", metavar="OUT", help="also write the metrics to this JSON file")
    clip = parser.add_argument_group("--make-clip: write a synthetic clip instead")
    clip.add_argument("--make-clip", choices=CLIP_KINDS, metavar="KIND",
                      help=f"kind of clip: {', '.join(CLIP_KINDS)}")
    clip.add_argument("--photo", action="append", default=[], help="source photo (twice for object and cut)")
    clip.add_argument("--frames", type=positive_int, default=24, help="frames of the clip (default 24)")
    clip.add_argument("--width", type=positive_int, default=256, help="frame width (default 256)")
    clip.add_argument("--height", type=positive_int, default=192, help="frame height (default 192)")
    clip.add_argument("-o", "--output", help="output folder of the clip")


def run(args) -> int:
    from hf_colorize.common import EvaluationError, UsageError, one_line

    if args.make_clip:
        if not args.output:
            raise UsageError("--make-clip needs -o OUTPUT_FOLDER")
        if os.path.exists(args.output) and not os.path.isdir(args.output):
            raise UsageError(f"-o {args.output}: is a file, not a folder")
        from hf_colorize.video.clips import make_clip, write_clip_folders

        try:
            spec = make_clip(args.make_clip, args.photo, args.frames, args.width, args.height)
            paths = write_clip_folders(spec, args.output)
        except OSError as err:
            raise EvaluationError(f"cannot write the clip: {one_line(err)}") from None
        print(f"wrote {args.make_clip} clip: input frames {paths['input']}, ground truth {paths['gt']}, "
              f"motion {paths['clip']}")
        return 0
    if not args.prediction:
        raise UsageError("give the colorized video to evaluate (or --make-clip)")
    if not args.clip and not args.gt:
        raise UsageError("give --clip (exact motion + ground truth) and / or --gt")
    from hf_colorize.evaluation.protocol import check_output
    from hf_colorize.video.metrics import evaluate_video, write_json

    if args.json_out:
        check_output(args.json_out, "--json")  # before the work

    try:
        result = evaluate_video(args.prediction, clip=args.clip, gt=args.gt)
        for key, value in result.items():
            print(f"{key:>18}: {value:.4f}" if isinstance(value, float) else f"{key:>18}: {value}")
        if args.json_out:
            write_json(result, args.json_out)
    except OSError as err:
        raise EvaluationError(one_line(err)) from None
    return 0
