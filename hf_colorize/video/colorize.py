"""Colorize a video (or an image folder) without flicker, through the one inference path (`Colorizer`).

Frames stream from `video.io.VideoReader` in batches; each batch goes through `Colorizer.prepare` (the
8-bit frame as decoded: no float round trip) and `Colorizer.logits` (the network, under the chosen
precision); each frame's bin logits go through `video.temporal.TemporalSmoother` (scene cuts,
motion-compensated smoothing of the bin distributions; off with `temporal=False` / `--no-temporal` for
the per-frame baseline), are decoded by the model's decoder (`Colorizer.decode`), joined with the frame's
full-resolution L (`Colorizer.render`) and written by `video.io.VideoWriter` with the input's timestamps
and audio. With `temporal=False` every frame is exactly what `Colorizer` makes of it as a photo.

Python API (used by the Gradio Space):

    from hf_colorize.video.colorize import colorize_video
    stats = colorize_video("old_film.mp4", "colour.mp4", progress=lambda done, total: ...)
"""

import time
from collections import deque
from typing import Callable, Iterable, Iterator, Optional, Tuple

import numpy as np

DEFAULT_BATCH_SIZE = 8  # frames per forward pass


class VideoColorizer:
    """Colorize a stream of frames with a `Colorizer`, per frame or temporally smoothed.

    `model`: None (the embedded default), a model folder or Hub id, a loaded model, or a `Colorizer`
    (used as it is: its device and defaults). Options left None take the model's defaults (`temperature`,
    `decode_mode`, `size`: network input side, `precision`) or the `Colorizer`'s (`batch_size`, `device`).
    `colorize(frames)` takes uint8 RGB arrays `(H, W, 3)` (colour or gray: only their L is used) and yields
    `(rgb uint8 (H, W, 3), FrameInfo or None)` in order, holding at most `batch_size` frames.
    Bad options raise `UsageError` (a `ValueError`); a model that cannot be loaded `ModelLoadError`.
    """

    def __init__(self, model=None, processor=None, temporal: bool = True, size: Optional[int] = None,
                 temperature: Optional[float] = None, batch_size: Optional[int] = None, temporal_config=None, *,
                 decode_mode: Optional[str] = None, precision: Optional[str] = None, device=None):
        from hf_colorize import Colorizer
        from hf_colorize.common import UsageError, load_colorizer, one_line
        from hf_colorize.video.temporal import TemporalConfig, TemporalSmoother

        if batch_size is not None and (isinstance(batch_size, bool) or int(batch_size) < 1):
            raise UsageError(f"batch size must be at least 1, got {batch_size}")
        given = isinstance(model, Colorizer)
        if given and device is not None:
            raise UsageError("device is the Colorizer's own: move its model instead")
        try:
            self.options = Colorizer.options(temperature=temperature, decode_mode=decode_mode, size=size,
                                             precision=precision)
        except (TypeError, ValueError) as err:
            raise UsageError(one_line(err)) from None
        if given:
            self.colorizer = model
            if processor is not None:
                self.colorizer = Colorizer(model.model, processor, batch_size=model.batch_size,
                                           channels_last=model.channels_last, **model.defaults)
        else:
            self.colorizer = load_colorizer(model, processor, device=device,
                                            batch_size=batch_size or DEFAULT_BATCH_SIZE)
        if getattr(self.colorizer.model, "decode_needs_input", False):
            # its decoding needs each frame's lightness, which the temporal smoother does not carry
            raise UsageError("video colorization does not support hue/chroma hypercolumn models yet; use an ECCV16 "
                             "or a Lab hypercolumn model")
        self.batch_size = int(batch_size or self.colorizer.batch_size)
        resolved = {**self.colorizer.defaults, **self.options}
        self.size = int(resolved["size"] or self.colorizer.image_processor.size)
        self.precision = resolved["precision"]
        config = self.colorizer.model.config
        self.temperature = float(config.decode_temperature if resolved["temperature"] is None else resolved["temperature"])
        self.decode_mode = resolved["decode_mode"] or config.decode_mode
        self.seed = resolved["seed"]
        self.smoother = TemporalSmoother(temporal_config or TemporalConfig()) if temporal else None

    # the model and image processor behind the Colorizer (read-only conveniences)
    @property
    def model(self):
        return self.colorizer.model

    @property
    def processor(self):
        return self.colorizer.image_processor

    def colorize(self, frames: Iterable[np.ndarray]) -> Iterator[Tuple[np.ndarray, object]]:
        batch = []
        for rgb in frames:
            batch.append(rgb)
            if len(batch) == self.batch_size:
                yield from self._run(batch)
                batch = []
        if batch:
            yield from self._run(batch)

    def _decode(self, logits):
        return self.colorizer.decode(logits, self.temperature, self.decode_mode, self.seed)

    def _run(self, batch) -> Iterator[Tuple[np.ndarray, object]]:
        import torch

        c = self.colorizer
        prepared = [c.prepare(np.asarray(rgb), self.size) for rgb in batch]  # uint8 as it is
        pixel_values = torch.stack([p[1] for p in prepared])
        logits = c.logits(pixel_values, self.precision)
        if self.smoother is None:  # what `Colorizer.predict_ab` does: the photo path, exactly
            ab, infos = self._decode(logits).cpu(), [None] * len(batch)
        else:  # the smoother works on the CPU and keeps one frame of state
            logits = logits.cpu()
            steps = [self.smoother.step(pixel_values[i], logits[i], decode=self._decode) for i in range(len(batch))]
            ab, infos = [s[0] for s in steps], [s[1] for s in steps]
        for (l_full, _), ab_i, info in zip(prepared, ab, infos):
            yield c.render(l_full, ab_i, "np"), info


def colorize_video(
    input_path,
    output_path,
    model=None,
    temporal: bool = True,
    batch_size: Optional[int] = None,
    size: Optional[int] = None,
    temperature: Optional[float] = None,
    progress: Optional[Callable[[int, Optional[int]], None]] = None,
    *,
    decode_mode: Optional[str] = None,
    precision: Optional[str] = None,
    device=None,
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
        model: None (embedded default), a model folder / Hub id, a loaded `ColorizationModel`, or a
            `Colorizer` (see `VideoColorizer`; `processor` replaces its image processor).
        temporal: smooth colours over time within shots (False: per-frame baseline).
        batch_size, size, temperature, decode_mode, precision, device: frames per forward pass (default 8,
            or a given `Colorizer`'s), network input side, and the decoding options (default the model's).
        progress: called as `progress(frames_done, total_frames_or_None)` after every frame.
        max_pixels: refuse larger frames (default `common.MAX_PIXELS`; 0: no limit). folder_fps: frame rate
            of an input folder. overwrite: replace an existing output. crf: x264 / vp9 quality.
        temporal_config: `TemporalConfig`. show_progress: tqdm bar on stderr (frames/s and ETA).
    Returns:
        stats: frames, width, height, fps, vfr, duration (s), seconds, processing_fps, temporal, cuts
        (frame indices starting a shot), audio ("copied (aac)", "none", ...), skipped_frames, notes, output.
    Raises:
        `ColorizeError` subclasses with a one-line message: `VideoIOError` (unreadable input, unwritable
        output), `InputImageError` (a bad frame file), `UsageError` (bad options), `ModelLoadError`. The
        output appears only when complete: it is written under a temporary name and renamed at the end.
    """
    from tqdm.auto import tqdm

    from hf_colorize.common import MAX_PIXELS
    from hf_colorize.video.io import VideoReader, VideoWriter, check_output

    check_output(output_path, overwrite)  # before loading the model or decoding anything
    if temporal_config is not None and not temporal:
        temporal_config = None
    colorizer = VideoColorizer(model, processor, temporal, size, temperature, batch_size, temporal_config,
                               decode_mode=decode_mode, precision=precision, device=device)
    start = time.perf_counter()
    with VideoReader(input_path, MAX_PIXELS if max_pixels is None else max_pixels, folder_fps) as reader:
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
    from hf_colorize.common import VideoIOError

    why = f" ({reader.skipped} damaged packet(s))" if reader.skipped else ""
    return VideoIOError(f"{reader.path}: no video frames could be decoded{why}")


__all__ = ["DEFAULT_BATCH_SIZE", "VideoColorizer", "colorize_video"]
