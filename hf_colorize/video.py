"""`hf-colorize video`: colorize a video (or an image folder) without flicker.

Frames stream from `video_io.VideoReader` in batches through the model; each frame's bin logits go through
`temporal.TemporalSmoother` (scene cuts, motion-compensated smoothing of the bin distributions; off with
`temporal=False` / `--no-temporal` for the per-frame baseline), are decoded to ab, joined with the frame's
full-resolution L and written by `video_io.VideoWriter` with the input's timestamps and audio.

Python API (used by the Gradio Space):

    from hf_colorize.video import colorize_video
    stats = colorize_video("old_film.mp4", "colour.mp4", progress=lambda done, total: ...)
"""

import sys
import time
from collections import deque
from typing import Callable, Iterable, Iterator, Optional, Tuple

import numpy as np

DEFAULT_BATCH_SIZE = 8


def add_arguments(parser) -> None:
    parser.add_argument("input", help="video file (mp4, mkv, avi, mov, webm, gif, ...) or a folder of frames")
    parser.add_argument("-o", "--output", required=True,
                        help="output video (.mp4 .m4v .mov .mkv .avi .webm .gif) or a folder for PNG frames")
    parser.add_argument("--model", default=None, help="model folder or Hub id (default: the embedded model)")
    parser.add_argument("--no-temporal", action="store_true", help="colorize every frame independently (flickers)")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="frames per model call")
    parser.add_argument("--size", type=int, default=None, help="network input side, a multiple of 8 (default: the model's)")
    parser.add_argument("--temperature", type=float, default=None, help="annealed-mean temperature (default: the model's)")
    parser.add_argument("--strength", type=float, default=None, help="temporal smoothing strength in [0, 1)")
    parser.add_argument("--cut-threshold", type=float, default=None, help="histogram distance that counts as a scene cut")
    parser.add_argument("--palette", type=float, default=None,
                        help="0..1: how firmly each shot's colour distribution is held (default 0.6; 0: off)")
    parser.add_argument("--fps", type=float, default=None, help="frame rate of an input image folder (default 25)")
    parser.add_argument("--crf", type=int, default=18, help="x264 quality (lower = better, bigger)")
    parser.add_argument("--max-pixels", type=int, default=None, help="refuse frames larger than this many pixels (default 8K)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def load_model(model=None):
    """`(model, processor)` from None (embedded default), a folder / Hub id, or a `ColorizationModel`."""
    from . import DEFAULT_MODEL
    from .image_processing_colorization import ColorizationImageProcessor
    from .modeling_colorization import ColorizationModel

    if isinstance(model, ColorizationModel):
        return model.eval(), ColorizationImageProcessor(size=model.config.image_size)
    source = DEFAULT_MODEL if model is None else str(model)
    loaded = ColorizationModel.from_pretrained(source).eval()
    try:
        processor = ColorizationImageProcessor.from_pretrained(source)
    except (OSError, ValueError):  # a model saved without its processor
        processor = ColorizationImageProcessor(size=loaded.config.image_size)
    return loaded, processor


class VideoColorizer:
    """Colorize a stream of frames with a model, per frame or temporally smoothed.

    `colorize(frames)` takes uint8 RGB arrays `(H, W, 3)` (colour or gray: only their L is used) and yields
    `(rgb uint8 (H, W, 3), FrameInfo or None)` in order, holding at most `batch_size` frames.
    """

    def __init__(self, model=None, processor=None, temporal: bool = True, size: Optional[int] = None,
                 temperature: Optional[float] = None, batch_size: int = DEFAULT_BATCH_SIZE, temporal_config=None):
        from .temporal import TemporalConfig, TemporalSmoother

        if processor is None or model is None or not hasattr(model, "config"):
            model, default_processor = load_model(model)
            processor = processor or default_processor
        self.model, self.processor = model, processor
        self.size = int(size or processor.size)
        if self.size < 8 or self.size % 8:
            raise ValueError(f"size must be a positive multiple of 8, got {self.size}")
        self.temperature = float(model.config.decode_temperature if temperature is None else temperature)
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if int(batch_size) < 1:
            raise ValueError(f"batch size must be at least 1, got {batch_size}")
        self.batch_size = int(batch_size)
        self.smoother = TemporalSmoother(temporal_config or TemporalConfig()) if temporal else None

    def colorize(self, frames: Iterable[np.ndarray]) -> Iterator[Tuple[np.ndarray, object]]:
        batch = []
        for rgb in frames:
            batch.append(rgb)
            if len(batch) == self.batch_size:
                yield from self._run(batch)
                batch = []
        if batch:
            yield from self._run(batch)

    def _run(self, batch) -> Iterator[Tuple[np.ndarray, object]]:
        import torch

        from .modeling_colorization import decode_ab

        device = self.model.device
        prepared = [self.processor.prepare(torch.from_numpy(np.array(rgb)).permute(2, 0, 1).float().div_(255.0), self.size)
                    for rgb in batch]
        l_full = [p[0] for p in prepared]
        pixel_values = torch.stack([p[1] for p in prepared])
        with torch.no_grad():
            logits = self.model(pixel_values.to(device, self.model.dtype)).logits.float().cpu()
        bins, mode = self.model.ab_bins.cpu(), self.model.config.decode_mode
        for i, l_img in enumerate(l_full):
            if self.smoother is not None:
                ab, info = self.smoother.step(pixel_values[i], logits[i], bins, self.temperature, mode)
            else:
                ab, info = decode_ab(logits[i:i + 1], bins, mode=mode, temperature=self.temperature)[0], None
            yield self.processor.colorize_l(l_img, ab, output_type="np"), info


def colorize_video(
    input_path,
    output_path,
    model=None,
    temporal: bool = True,
    batch_size: int = DEFAULT_BATCH_SIZE,
    size: Optional[int] = None,
    temperature: Optional[float] = None,
    progress: Optional[Callable[[int, Optional[int]], None]] = None,
    *,
    max_pixels: Optional[int] = None,
    overwrite: bool = False,
    crf: int = 18,
    folder_fps: Optional[float] = None,
    temporal_config=None,
    show_progress: bool = False,
    processor=None,
) -> dict:
    """Colorize `input_path` (video file or image folder) into `output_path` (by extension, or a folder).

    Args:
        model: None (embedded default), a model folder / Hub id, or a loaded `ColorizationModel`.
        temporal: smooth colours over time within shots (False: per-frame baseline).
        batch_size, size, temperature: frames per model call, network input side, annealed-mean T.
        progress: called as `progress(frames_done, total_frames_or_None)` after every frame.
        max_pixels: refuse larger frames (default 8K UHD). folder_fps: frame rate of an input folder.
        overwrite: replace an existing output. crf: x264 / vp9 quality. temporal_config: `TemporalConfig`.
        show_progress: tqdm bar on stderr (frames/s and ETA).
    Returns:
        stats: frames, width, height, fps, vfr, duration (s), seconds, processing_fps, temporal, cuts
        (frame indices starting a shot), audio ("copied (aac)", "none", ...), skipped_frames, notes, output.
    Raises:
        `VideoIOError` / `ColorizationInputError` / `ValueError` with a one-line message. The output
        appears only when complete: it is written under a temporary name and renamed at the end.
    """
    from tqdm.auto import tqdm

    from .video_io import DEFAULT_MAX_PIXELS, VideoReader, VideoWriter

    if int(batch_size) < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    if temporal_config is not None and not temporal:
        temporal_config = None
    colorizer = VideoColorizer(model, processor, temporal, size, temperature, batch_size, temporal_config)
    start = time.perf_counter()
    with VideoReader(input_path, DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels, folder_fps) as reader:
        info = reader.info
        writer = VideoWriter(output_path, info.width, info.height, info.fps, info.time_base,
                             audio_template=reader.audio_stream, grid_rate=info.grid_rate, crf=crf,
                             overwrite=overwrite)
        reader.audio_sink = writer.mux_audio
        first_time = last_time = 0.0
        bar = tqdm(total=info.frame_count, unit="frame", disable=not show_progress, dynamic_ncols=True)
        try:
            pending = deque()  # (pts, time) of the frames inside the colorizer, in order

            def source():
                for frame in reader:
                    pending.append((frame.pts, frame.time))
                    yield frame.rgb

            done = 0
            for rgb, _ in colorizer.colorize(source()):
                pts, last_time = pending.popleft()
                first_time = last_time if done == 0 else first_time
                writer.write(rgb, pts)
                done += 1
                bar.update(1)
                if progress is not None:
                    progress(done, info.frame_count)
            if done == 0:
                raise _no_frames(reader)
            written = writer.close()
        except BaseException:
            writer.abort()
            raise
        finally:
            bar.close()
    seconds = time.perf_counter() - start
    smoother = colorizer.smoother
    notes = list(written["notes"])
    if reader.vfr and writer.kind == "folder":
        notes.append("variable frame rate input: an image folder keeps no timestamps")
    if reader.skipped:
        notes.append(f"{reader.skipped} damaged packet(s) skipped")
    duration = last_time - first_time + 1.0 / float(info.fps)
    return {
        "input": str(input_path), "output": str(output_path), "frames": done, "width": info.width,
        "height": info.height, "fps": float(info.fps), "vfr": reader.vfr, "duration": duration,
        "seconds": seconds, "processing_fps": done / seconds if seconds > 0 else float("inf"),
        "temporal": smoother is not None, "cuts": list(smoother.cuts) if smoother is not None else [],
        "audio": written["audio"], "skipped_frames": reader.skipped, "notes": notes,
    }


def _no_frames(reader):
    from .video_io import VideoIOError

    why = f" ({reader.skipped} damaged packet(s))" if reader.skipped else ""
    return VideoIOError(f"{reader.path}: no video frames could be decoded{why}")


def run(args) -> int:
    from .image_processing_colorization import ColorizationInputError
    from .temporal import TemporalConfig
    from .video_io import VideoIOError

    config = TemporalConfig()
    if args.strength is not None:
        if not 0 <= args.strength < 1:
            print(f"hf-colorize video: error: --strength must be in [0, 1), got {args.strength}", file=sys.stderr)
            return 2
        config.strength = args.strength
    if args.cut_threshold is not None:
        config.cut_threshold = args.cut_threshold
    if args.palette is not None:
        if not 0 <= args.palette <= 1:
            print(f"hf-colorize video: error: --palette must be in [0, 1], got {args.palette}", file=sys.stderr)
            return 2
        config.palette_strength = args.palette
    try:
        stats = colorize_video(
            args.input, args.output, model=args.model, temporal=not args.no_temporal, batch_size=args.batch_size,
            size=args.size, temperature=args.temperature, max_pixels=args.max_pixels, overwrite=args.overwrite,
            crf=args.crf, folder_fps=args.fps, temporal_config=config, show_progress=not args.no_progress,
        )
    except (VideoIOError, ColorizationInputError, ValueError, OSError) as err:
        print(f"hf-colorize video: error: {_one_line(err)}", file=sys.stderr)
        return 1
    mode = f"temporal, {len(stats['cuts'])} shot(s)" if stats["temporal"] else "per-frame"
    print(f"{stats['output']}: {stats['frames']} frames {stats['width']}x{stats['height']} @ {stats['fps']:.3g} fps"
          f"{' (variable)' if stats['vfr'] else ''}, {mode}, audio {stats['audio']}, "
          f"{stats['processing_fps']:.2f} frames/s")
    for note in stats["notes"]:
        print(f"note: {note}")
    return 0


def _one_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
