"""Colorize a video (or an image folder) without flicker, through the one inference path (`Colorizer`).

Frames stream from `video.io.VideoReader` in batches; each batch goes through `Colorizer.prepare` (the
8-bit frame as decoded: no float round trip) and `Colorizer.logits` (the network, under the chosen
precision); each frame's bin logits go through `video.temporal.TemporalSmoother` (scene cuts,
motion-compensated smoothing of the bin distributions; off with `temporal=False` / `--no-temporal` for
the per-frame baseline), are decoded by the model's decoder (`Colorizer.decode`), joined with the frame's
full-resolution L (`Colorizer.render`) and written by `video.io.VideoWriter` with the input's timestamps
and audio. With `temporal=False` every frame is exactly what `Colorizer` makes of it as a photo (with that
frame's guidance).

Guidance (`video.guidance`): a `reference` guides every frame (its distribution computed once); keyframe
`hints` are carried along the motion until the next cut. The reference's prior swap is applied to the
network's logits before smoothing, so the running distribution is itself guided and every frame gets the
same swap once (after smoothing it would compound: the carried state would be swapped again each frame).
Point hints pin the smoothed distribution after smoothing and stay out of the running state: the hints
themselves are moved from frame to frame, so a hint acts on each frame exactly once (it never compounds or
bleeds from where it was), a keyframe in the middle of a shot takes effect at once instead of being
out-weighed by the history, and the shot's palette pull is held off where a hint pins the colour.

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
    Guidance: `reference` (an image or colours, see `Colorizer.reference_distribution`; default the
    `Colorizer`'s) guides every frame with `reference_strength` (default as for photos); `hints` `{frame
    index: hint list}` are carried from each keyframe along the motion until the next cut (see
    `video.guidance`; with `temporal=False` a keyframe's hints guide that frame only). Bad guidance raises
    `VideoGuidanceError` (a `UsageError` and a `GuidanceError`); a hint outside a frame when that frame
    comes, hints for frames the stream does not reach at its end.
    Bad options raise `UsageError` (a `ValueError`); a model that cannot be loaded `ModelLoadError`.
    """

    def __init__(self, model=None, processor=None, temporal: bool = True, size: Optional[int] = None,
                 temperature: Optional[float] = None, batch_size: Optional[int] = None, temporal_config=None, *,
                 decode_mode: Optional[str] = None, precision: Optional[str] = None, device=None, reference=None,
                 reference_strength: Optional[float] = None, hints=None):
        from hf_colorize import Colorizer
        from hf_colorize.common import UsageError, load_colorizer, one_line
        from hf_colorize.video.guidance import HintCarrier, keyframe_hints
        from hf_colorize.video.temporal import TemporalConfig, TemporalSmoother

        keyframes = keyframe_hints(hints)  # before the model loads: a malformed mapping fails at once
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
        self.reference, self.reference_strength = self._reference(reference, reference_strength, bool(keyframes))
        self.carrier = HintCarrier(keyframes)
        self.hinted_frames = 0  # frames that had point hints

    def _reference(self, reference, strength, hinted: bool):
        """The reference's distribution (or None) and strength; checks that the model takes this guidance."""
        from hf_colorize.common import UsageError, one_line
        from hf_colorize.models.colorization.guidance_colorization import DEFAULT_REFERENCE_STRENGTH, GuidanceError
        from hf_colorize.video.guidance import VideoGuidanceError

        c = self.colorizer
        reference = c.defaults["reference"] if reference is None else reference
        if reference is None and strength is not None:
            raise UsageError("a reference strength needs a reference (reference=, --reference)")
        strength = c.defaults["reference_strength"] if strength is None else strength
        try:
            if reference is not None or hinted:
                c.validate(reference=reference, reference_strength=strength, hints=[] if hinted else None)
            if reference is None:
                return None, None
            strength = DEFAULT_REFERENCE_STRENGTH if strength is None else float(strength)
            return c.reference_distribution(reference), strength
        except GuidanceError as err:
            raise VideoGuidanceError(one_line(err)) from None
        except ValueError as err:  # a bad strength
            raise UsageError(one_line(err)) from None

    def check_guidance(self, width: int, height: int, frame_count: Optional[int] = None) -> None:
        """Check every keyframe's hints against `width` x `height` frames (and, with an exact `frame_count`,
        refuse keyframes beyond it) before the first frame: `VideoGuidanceError`, one line."""
        from hf_colorize.video.guidance import check_keyframes

        self.carrier.keyframes = check_keyframes(self.carrier.keyframes, width, height, frame_count)

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
        # the stream has ended: hints for frames it never had are an error
        if self.carrier.keyframes and self.carrier.frame_index:
            from hf_colorize.video.guidance import check_frame_count

            check_frame_count(self.carrier.keyframes, self.carrier.frame_index)

    def _decode(self, logits):
        return self.colorizer.decode(logits, self.temperature, self.decode_mode, self.seed)

    def _guidance(self, l_full, hints=(), reference=None):
        from hf_colorize.models.colorization.guidance_colorization import Guidance

        if not hints and reference is None:
            return None
        return Guidance(l_full.shape[-1], l_full.shape[-2], tuple(hints), reference, self.reference_strength or 0.0)

    def _logits(self, pixel_values, l_full, net_guidance, logit_guidance):
        """The network (with a hint-trained model's hint inputs from `net_guidance`) and the training-free
        guidance of `logit_guidance` on its logits: what `Colorizer.predict_ab` does before decoding."""
        c = self.colorizer
        logits = c.network_logits(pixel_values, net_guidance, self.precision)
        if any(logit_guidance):
            logits = c.guided_logits(logits, l_full, logit_guidance)
        return logits

    def _run(self, batch) -> Iterator[Tuple[np.ndarray, object]]:
        import torch

        c = self.colorizer
        prepared = [c.prepare(np.asarray(rgb), self.size) for rgb in batch]  # uint8 as it is
        l_full = [p[0] for p in prepared]
        pixel_values = torch.stack([p[1] for p in prepared])
        # each frame's motion before the network runs: its hints are moved along it
        motions = [self.smoother.tracker.step(pv) for pv in pixel_values] if self.smoother else [None] * len(batch)
        hints = [self.carrier.step(l.shape[-1], l.shape[-2], m) for l, m in zip(l_full, motions)]
        self.hinted_frames += sum(1 for h in hints if h)
        full = [self._guidance(l, h, self.reference) for l, h in zip(l_full, hints)]
        if self.smoother is None:  # what `Colorizer.predict_ab` does: the photo path, exactly
            logits = self._logits(pixel_values, l_full, full, full)
            ab, infos, rendered = self._decode(logits).cpu(), [None] * len(batch), full
        else:  # the reference before smoothing, point hints after it (see the module docstring)
            before = [self._guidance(l, reference=self.reference) for l in l_full]
            logits = self._logits(pixel_values, l_full, full, before).cpu()  # the smoother works on the CPU
            rendered = [self._guidance(l, h) for l, h in zip(l_full, hints)]
            ab, infos = [], []
            for i, g in enumerate(rendered):
                guide = hold = None
                if g is not None and not c.hint_inputs[0]:  # hint-trained models took them as inputs
                    def guide(log_probs, g=g, l=l_full[i]):
                        return c.guided_logits(log_probs, [l], [g])

                    hold = g.hint_field(l_full[i]).resized(tuple(logits.shape[-2:])).confidence
                ab_i, info = self.smoother.step(pixel_values[i], logits[i], decode=self._decode, motion=motions[i],
                                                guide=guide, hold=hold)
                ab.append(ab_i)
                infos.append(info)
        for l_i, ab_i, info, g in zip(l_full, ab, infos, rendered):
            yield c.render(l_i, ab_i, "np", guidance=g), info


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
    reference=None,
    reference_strength: Optional[float] = None,
    hints=None,
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
        reference, reference_strength: a colour photo (or colours) guiding every frame, and how strongly.
        hints: `{frame index: hint list}` (indices from 0, ints or digit strings; hints in frame pixels),
            carried from each keyframe along the motion until the next cut (see `video.guidance`).
    Returns:
        stats: frames, width, height, fps, vfr, duration (s), seconds, processing_fps, temporal, cuts
        (frame indices starting a shot), audio ("copied (aac)", "none", ...), skipped_frames, notes, output,
        reference (whether one guided the frames), hinted_frames (frames that had point hints).
    Raises:
        `ColorizeError` subclasses with a one-line message: `VideoIOError` (unreadable input, unwritable
        output), `InputImageError` (a bad frame file), `UsageError` (bad options; `VideoGuidanceError` for bad
        guidance: checked before the first frame, except hints for frames beyond a video whose frame count is
        not exact, found at its end), `ModelLoadError`. The
        output appears only when complete: it is written under a temporary name and renamed at the end.
    """
    from tqdm.auto import tqdm

    from hf_colorize.common import MAX_PIXELS
    from hf_colorize.video.io import VideoReader, VideoWriter, check_output

    check_output(output_path, overwrite)  # before loading the model or decoding anything
    if temporal_config is not None and not temporal:
        temporal_config = None
    colorizer = VideoColorizer(model, processor, temporal, size, temperature, batch_size, temporal_config,
                               decode_mode=decode_mode, precision=precision, device=device, reference=reference,
                               reference_strength=reference_strength, hints=hints)
    start = time.perf_counter()
    with VideoReader(input_path, MAX_PIXELS if max_pixels is None else max_pixels, folder_fps) as reader:
        info = reader.info
        # a folder's frame count is exact; a container's is declared or estimated (checked at its end)
        colorizer.check_guidance(info.width, info.height, info.frame_count if info.kind == "folder" else None)
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
        "reference": colorizer.reference is not None, "hinted_frames": colorizer.hinted_frames,
    }


def _no_frames(reader):
    from hf_colorize.common import VideoIOError

    why = f" ({reader.skipped} damaged packet(s))" if reader.skipped else ""
    return VideoIOError(f"{reader.path}: no video frames could be decoded{why}")


__all__ = ["DEFAULT_BATCH_SIZE", "VideoColorizer", "colorize_video"]
