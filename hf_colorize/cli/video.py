"""`hf-colorize video INPUT -o OUTPUT`: colorize a video (or a folder of frames) without flicker.

The colorization options are those of every command (`--model --temperature --decode-mode --size
--precision --device --batch-size`, see `cli.args.add_inference_options`); `--size` is the network input
side. Guidance: `--reference REF [--reference-strength S]` guides every frame; `--hints FILE` (JSON mapping
frame indices, from 0, to hint lists) gives keyframe hints that are carried along the motion until the next
cut (see `hf_colorize.video.guidance`). The work is `hf_colorize.video.colorize.colorize_video`.
"""

import argparse

from hf_colorize.cli import add_progress_argument
from hf_colorize.cli.args import (add_guidance_options, add_inference_options, int_in, non_negative_int, positive_float,
                                  unit_interval)

DEFAULT_BATCH_SIZE = 8  # = hf_colorize.video.colorize.DEFAULT_BATCH_SIZE (not imported: --help stays light)


def _strength(text: str) -> float:
    value = unit_interval(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


_crf = int_in(0, 51)


def add_arguments(parser) -> None:
    parser.add_argument("input", help="video file (mp4, mkv, avi, mov, webm, gif, ...) or a folder of frames")
    parser.add_argument("-o", "--output", required=True,
                        help="output video (.mp4 .m4v .mov .mkv .avi .webm .gif) or a folder for PNG frames")
    add_inference_options(parser, batch_size=DEFAULT_BATCH_SIZE, fading=False)
    add_guidance_options(parser, 'JSON keyframe hints: frame indices (from 0) mapped to lists of {"x": .., "y": .., '
                                 '"color": "#b22222"} (pixels of the frame), e.g. {"0": [...], "120": [...]}; each '
                                 "keyframe's hints follow the motion until the next scene cut or keyframe")
    temporal = parser.add_argument_group("temporal smoothing")
    temporal.add_argument("--no-temporal", action="store_true", help="colorize every frame independently (flickers)")
    temporal.add_argument("--strength", type=_strength, default=None, metavar="S",
                          help="weight of the motion-compensated history in [0, 1) (default 0.97)")
    temporal.add_argument("--cut-threshold", type=positive_float, default=None, metavar="D",
                          help="L-histogram distance that counts as a scene cut (default 0.12)")
    temporal.add_argument("--palette", type=unit_interval, default=None, metavar="P",
                          help="0..1: how firmly each shot's colour distribution is held (default 0.6; 0: off)")
    output = parser.add_argument_group("input and output")
    output.add_argument("--fps", type=positive_float, default=None, help="frame rate of an input image folder (default 25)")
    output.add_argument("--crf", type=_crf, default=18, help="x264 quality 0..51 (lower = better, bigger; default 18)")
    output.add_argument("--max-pixels", type=non_negative_int, default=None, metavar="N",
                        help="refuse frames larger than this many pixels (default: the 100 MP limit of every "
                             "command; 0: no limit)")
    output.add_argument("--overwrite", action="store_true", help="replace an existing output")
    add_progress_argument(parser)


def run(args) -> int:
    from hf_colorize.cli import show_progress
    from hf_colorize.cli.args import inference_kwargs, read_hints_file
    from hf_colorize.common import VideoIOError, one_line, shown
    from hf_colorize.video.colorize import colorize_video
    from hf_colorize.video.guidance import keyframe_hints
    from hf_colorize.video.temporal import TemporalConfig

    hints = None
    if args.hints is not None:  # read and checked before the model loads
        hints = keyframe_hints(read_hints_file(args.hints), where=f"--hints {shown(args.hints)}")

    config = TemporalConfig()
    if args.strength is not None:
        config.strength = args.strength
    if args.cut_threshold is not None:
        config.cut_threshold = args.cut_threshold
    if args.palette is not None:
        config.palette_strength = args.palette
    options = inference_kwargs(args)
    try:
        stats = colorize_video(
            args.input, args.output, model=args.model, temporal=not args.no_temporal, temporal_config=config,
            max_pixels=args.max_pixels, overwrite=args.overwrite, crf=args.crf, folder_fps=args.fps,
            show_progress=show_progress(args), reference=args.reference,
            reference_strength=args.reference_strength, hints=hints, **options,
        )
    except OSError as err:  # e.g. no permission to write beside the output
        raise VideoIOError(one_line(err)) from None
    mode = f"temporal, {len(stats['cuts'])} shot(s)" if stats["temporal"] else "per-frame"
    if stats["reference"]:
        mode += ", reference"
    if hints is not None:
        mode += f", hints on {stats['hinted_frames']} frame(s)"
    print(f"{stats['output']}: {stats['frames']} frames {stats['width']}x{stats['height']} @ {stats['fps']:.3g} fps"
          f"{' (variable)' if stats['vfr'] else ''}, {mode}, audio {stats['audio']}, "
          f"{stats['processing_fps']:.2f} frames/s")
    for note in stats["notes"]:
        print(f"note: {note}")
    return 0
