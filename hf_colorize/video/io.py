"""Streaming video input / output with PyAV: containers (mp4, m4v, mov, mkv, avi, webm, gif) and image folders.

`VideoReader` yields frames one at a time (uint8 RGB with their timestamps) and hands the input's audio
packets to a sink as it meets them, so a `VideoWriter` can remux the audio in the same single pass and
memory never grows with the video's length. `VideoWriter` writes to a temporary name beside the output
(`common.atomic_path`) and renames it only in `close()`; `abort()` deletes it, so a partial output never
looks complete.

Timestamps: containers that store per-frame timestamps (mp4, mov, mkv, webm) get the input's timestamps
unchanged (variable frame rate is preserved); avi stores a constant rate and gif centiseconds, so there the
times are rounded to that grid and the writer's `notes` say so; an image folder stores none.
Sizes: yuv420p encoders (h264, mpeg4, vp9) need even sizes, so odd widths / heights are padded by one
replicated row / column (noted). All problems raise `VideoIOError` (`hf_colorize.common`) with a one-line
message naming the file. Frames larger than `common.MAX_PIXELS` are refused unless a limit is given.
"""

import os
import re
import shutil
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Callable, Iterator, List, Optional

import numpy as np

from hf_colorize.common import MAX_PIXELS, VideoIOError, atomic_path, is_image_file, one_line

# output extension -> (container format, video codec)
CONTAINERS = {
    ".mp4": ("mp4", "libx264"), ".m4v": ("mp4", "libx264"), ".mov": ("mov", "libx264"),
    ".mkv": ("matroska", "libx264"), ".avi": ("avi", "mpeg4"), ".webm": ("webm", "libvpx-vp9"),
    ".gif": ("gif", "gif"),
}
AUDIO_CODEC = {"webm": "libopus", "avi": "libmp3lame", "gif": None}  # others: aac
EXACT_TIMESTAMPS = ("mp4", "mov", "matroska", "webm")
DEFAULT_MAX_PIXELS = MAX_PIXELS  # the one pixel limit (per frame), as for photos
DEFAULT_FOLDER_FPS = Fraction(25)


@dataclass
class Frame:
    """One decoded frame: `rgb` uint8 `(H, W, 3)`, its index, and its timestamp (`pts` in `time_base`)."""

    rgb: np.ndarray
    index: int
    pts: int
    time: float


@dataclass
class VideoInfo:
    path: str
    kind: str  # "container" or "folder"
    format: str
    width: int
    height: int
    fps: Fraction
    time_base: Fraction
    frame_count: Optional[int]  # declared or estimated; None when unknown
    grid_rate: Optional[Fraction] = None  # lowest rate on whose grid all timestamps fall (for avi)
    audio: Optional[str] = None  # codec name of the first audio stream


def _natural_key(name: str):
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


class VideoReader:
    """Iterate over the frames of a video file or an image folder.

    Args:
        path: video file or folder of images (sorted naturally: frame_2 before frame_10).
        max_pixels: frames larger than this (width x height) are refused; 0 disables the check.
        folder_fps: frame rate of an image folder (it stores none).
    Attributes:
        info (`VideoInfo`), audio_stream (PyAV stream or None), audio_sink (callable(packet) or None:
        receives the audio packets while frames are read), vfr (set while reading: timestamps were not
        evenly spaced), skipped (frames that could not be decoded and were skipped).
    """

    def __init__(self, path, max_pixels: int = DEFAULT_MAX_PIXELS, folder_fps=None):
        self.path = os.fspath(path)
        self.max_pixels = int(max_pixels or 0)
        self.audio_sink: Optional[Callable] = None
        self.audio_stream = None
        self.vfr = False
        self.skipped = 0
        self._container = None
        self._files: List[str] = []
        if not os.path.exists(self.path):
            raise VideoIOError(f"{self.path}: no such file or folder")
        if os.path.isdir(self.path):
            self._open_folder(Fraction(folder_fps) if folder_fps else DEFAULT_FOLDER_FPS)
        else:
            self._open_container()
        self._check_size(self.info.width, self.info.height)

    # -- opening --------------------------------------------------------------------------------------
    def _open_folder(self, fps: Fraction) -> None:
        from PIL import Image

        names = sorted((n for n in os.listdir(self.path) if is_image_file(n)), key=_natural_key)
        if not names:
            raise VideoIOError(f"{self.path}: folder has no image frames (.png, .jpg, ...)")
        self._files = [os.path.join(self.path, n) for n in names]
        try:
            with Image.open(self._files[0]) as first:  # header only: the size check comes before decoding
                width, height = first.size
        except (OSError, ValueError, Image.DecompressionBombError) as err:
            raise VideoIOError(f"{self._files[0]}: not a readable image ({one_line(err)})") from None
        if fps <= 0:
            raise VideoIOError(f"{self.path}: frame rate must be positive, got {fps}")
        self.info = VideoInfo(self.path, "folder", "folder", width, height, fps, 1 / fps, len(names))

    def _open_container(self) -> None:
        import av

        if os.path.getsize(self.path) == 0:
            raise VideoIOError(f"{self.path}: empty file")
        try:
            self._container = av.open(self.path, "r")
        except (av.FFmpegError, OSError, ValueError, UnicodeDecodeError) as err:
            raise VideoIOError(f"{self.path}: not a readable video ({one_line(err)})") from None
        try:
            streams = self._container.streams
            if not streams.video:
                raise VideoIOError(f"{self.path}: has no video stream")
            video = streams.video[0]
            ctx = video.codec_context
            if not ctx.width or not ctx.height:
                raise VideoIOError(f"{self.path}: video stream has no frame size (corrupt header?)")
            video.thread_type = "AUTO"
            rate = video.average_rate or video.guessed_rate or video.base_rate or Fraction(25)
            rate = Fraction(rate)
            time_base = Fraction(video.time_base) if video.time_base else 1 / rate
            count = video.frames or None
            if not count and video.duration and video.time_base:
                count = int(round(float(video.duration * video.time_base * rate)))
            elif not count and self._container.duration:
                count = int(round(self._container.duration / 1e6 * float(rate)))
            self.audio_stream = streams.audio[0] if streams.audio else None
            audio = self.audio_stream.codec_context.name if self.audio_stream is not None else None
            grid = Fraction(video.guessed_rate or video.base_rate or rate)
            self.info = VideoInfo(self.path, "container", self._container.format.name, ctx.width, ctx.height,
                                  rate, time_base, count or None, audio=audio, grid_rate=grid)
            self._video = video
        except Exception:
            self.close()
            raise

    def _check_size(self, width: int, height: int) -> None:
        if self.max_pixels and width * height > self.max_pixels:
            self.close()
            raise VideoIOError(
                f"{self.path}: frames are {width}x{height} = {width * height / 1e6:.1f} MP, over the "
                f"{self.max_pixels / 1e6:.1f} MP limit (raise --max-pixels if intended)")

    # -- reading --------------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Frame]:
        frames = self._folder_frames() if self.info.kind == "folder" else self._container_frames()
        last_pts, last_delta = None, None
        for index, (rgb, pts) in enumerate(frames):
            if pts is None:  # no timestamp: continue evenly from the previous one
                pts = 0 if last_pts is None else last_pts + (last_delta or max(1, round(1 / (self.info.fps * self.info.time_base))))
            if last_pts is not None:
                if pts <= last_pts:  # repeated or out-of-order timestamp: keep the order, nudge the time
                    pts = last_pts + 1
                delta = pts - last_pts
                if last_delta is not None and abs(delta - last_delta) > max(1, 0.02 * last_delta):
                    self.vfr = True
                last_delta = delta
            last_pts = pts
            yield Frame(rgb, index, int(pts), float(pts * self.info.time_base))

    def _folder_frames(self):
        from hf_colorize.models.colorization.image_processing_colorization import ColorizationInputError, open_image

        for i, name in enumerate(self._files):
            try:
                image = open_image(name, self.max_pixels or None).convert("RGB")
            except ColorizationInputError as err:
                raise VideoIOError(f"{name}: {err}") from None
            if image.size != (self.info.width, self.info.height):
                raise VideoIOError(f"{name}: frame is {image.width}x{image.height} but the first frame is "
                                   f"{self.info.width}x{self.info.height}")
            yield np.asarray(image), i

    def _container_frames(self):
        import av

        streams = [self._video] + ([self.audio_stream] if self.audio_stream is not None else [])
        width, height = self.info.width, self.info.height
        decoded = 0
        try:
            for packet in self._container.demux(*streams):
                if packet.stream.type == "audio":
                    if packet.dts is not None and self.audio_sink is not None:
                        self.audio_sink(packet)
                    continue
                try:
                    frames = packet.decode()  # the final empty packet flushes the decoder
                except av.FFmpegError:
                    self.skipped += 1  # a damaged packet: skip it, keep the rest of the video
                    continue
                for frame in frames:
                    decoded += 1
                    rgb = frame.to_ndarray(format="rgb24", width=width, height=height)
                    yield rgb, frame.pts
        except av.FFmpegError as err:
            if decoded == 0:
                raise VideoIOError(f"{self.path}: cannot decode video ({one_line(err)})") from None
            self.skipped += 1  # damaged tail: keep what was decoded

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def output_kind(path: str) -> str:
    """"folder" or a container extension (".mp4", ...); raises `VideoIOError` for unsupported names."""
    path = os.fspath(path)
    ext = os.path.splitext(path.rstrip("/\\"))[1].lower()
    if path.endswith(("/", os.sep)) or os.path.isdir(path) or ext == "":
        return "folder"
    if ext not in CONTAINERS:
        raise VideoIOError(f"{path}: unsupported output type {ext!r} (use {', '.join(CONTAINERS)} or a folder)")
    return ext


def check_output(path, overwrite: bool = False) -> str:
    """Check that a video can be written to `path` (a supported name, its folder exists, it does not
    exist unless `overwrite`) before any work; returns its kind (see `output_kind`). `VideoIOError` if not."""
    path = os.fspath(path).rstrip("/\\") or os.fspath(path)
    kind = output_kind(path)
    if os.path.exists(path) and not overwrite:
        raise VideoIOError(f"{path}: already exists (pass --overwrite to replace it)")
    if os.path.exists(path) and (kind == "folder") != os.path.isdir(path):
        raise VideoIOError(f"{path}: exists and is {'not ' if kind == 'folder' else ''}a folder")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise VideoIOError(f"{path}: output folder {parent} does not exist")
    return kind


@dataclass
class VideoWriter:
    """Write RGB frames (and remux audio) to `path`, a container by extension or an image folder.

    Use `write(rgb, pts)` per frame (pts in `time_base`), `mux_audio(packet)` for input audio packets,
    then `close()` (which renames the temporary output into place) or `abort()` (which deletes it).
    `notes` lists what was changed on the way (padding, rounded timestamps, audio re-encoding or dropping).
    """

    path: str
    width: int
    height: int
    fps: Fraction
    time_base: Fraction
    audio_template: object = None  # a PyAV input audio stream to copy, or None
    grid_rate: Optional[Fraction] = None  # frame grid for containers without timestamps (avi); default fps
    crf: int = 18
    overwrite: bool = False
    notes: List[str] = field(default_factory=list)

    def __post_init__(self):
        self.path = os.fspath(self.path).rstrip("/\\") or os.fspath(self.path)
        self.kind = check_output(self.path, self.overwrite)
        # the output is written under common.atomic_path's temporary name; the writer's lifetime spans
        # many calls, so the context is entered here and left in close() (rename) or abort() (delete)
        self._atomic = atomic_path(self.path)
        self._tmp = self._atomic.__enter__()
        self.frames = 0
        self._last_pts = None
        self._container = self._video = self._audio = self._resampler = None
        self.audio = "none"
        if self.kind == "folder":
            os.makedirs(self._tmp)
            if self.audio_template is not None:
                self.audio = "dropped"
                self.notes.append("audio dropped: an image folder has no audio")
            return
        try:
            self._open_container()
        except Exception:
            self.abort()
            raise

    # -- setup ----------------------------------------------------------------------------------------
    def _open_container(self) -> None:
        import av

        fmt, codec = CONTAINERS[self.kind]
        self.format = fmt
        try:
            self._container = av.open(self._tmp, "w", format=fmt)
        except (av.FFmpegError, OSError) as err:
            raise VideoIOError(f"{self.path}: cannot create output ({one_line(err)})") from None
        w, h = self.width, self.height
        if codec != "gif" and (w % 2 or h % 2):
            w, h = w + w % 2, h + h % 2
            self.notes.append(f"padded {self.width}x{self.height} to {w}x{h} (yuv420p needs even sizes; "
                              "the last row / column is repeated)")
        self.out_width, self.out_height = w, h
        if fmt in EXACT_TIMESTAMPS:
            self.out_time_base = self.time_base
        elif fmt == "gif":
            self.out_time_base = Fraction(1, 100)
        else:
            self.out_time_base = 1 / Fraction(self.grid_rate or self.fps)
        stream = self._container.add_stream(codec, rate=self.fps)
        stream.width, stream.height = w, h
        stream.pix_fmt = "pal8" if codec == "gif" else "yuv420p"
        stream.codec_context.time_base = self.out_time_base
        if codec == "libx264":
            stream.options = {"crf": str(self.crf), "preset": "medium"}
        elif codec == "libvpx-vp9":
            stream.options = {"crf": str(min(63, self.crf + 14)), "b": "0", "deadline": "good", "cpu-used": "4"}
        elif codec == "mpeg4":
            stream.bit_rate = int(max(1e6, w * h * float(self.fps) * 0.4))
        self._video = stream
        if self.audio_template is not None:
            self._setup_audio(fmt)

    def _setup_audio(self, fmt: str) -> None:
        import av

        template = self.audio_template
        name = template.codec_context.name
        if fmt == "gif":
            self.audio = "dropped"
            self.notes.append("audio dropped: gif has no audio")
            return
        if name in self._container.supported_codecs:
            self._audio = self._container.add_stream_from_template(template)
            self.audio = f"copied ({name})"
            return
        target = AUDIO_CODEC.get(fmt, "aac")
        rate = template.codec_context.sample_rate or 48000
        if target == "libopus" and rate not in (48000, 24000, 16000, 12000, 8000):
            rate = 48000
        try:
            self._audio = self._container.add_stream(target, rate=rate)
            layout = template.codec_context.layout
            if layout is not None and layout.nb_channels in (1, 2):
                self._audio.layout = layout.name
            ctx = self._audio.codec_context
            self._resampler = av.AudioResampler(format=ctx.format, layout=ctx.layout, rate=rate)
            self._decoder = av.CodecContext.create(name, "r")
            self._decoder.extradata = template.codec_context.extradata
            self._decoder.sample_rate = template.codec_context.sample_rate
            self._decoder.layout = template.codec_context.layout
        except (av.FFmpegError, ValueError) as err:
            self._audio = None
            self.audio = "dropped"
            self.notes.append(f"audio dropped: {name} cannot go into {fmt} and re-encoding failed ({one_line(err)})")
            return
        self.audio = f"re-encoded ({name} -> {target})"
        self.notes.append(f"audio re-encoded from {name} to {target} ({fmt} cannot hold {name})")

    # -- writing --------------------------------------------------------------------------------------
    def _pts(self, pts: int) -> int:
        if self.kind != "folder" and self.out_time_base != self.time_base:
            new = int(round(pts * self.time_base / self.out_time_base))
            if new != pts * self.time_base / self.out_time_base and not any("rounded" in n for n in self.notes):
                self.notes.append(f"timestamps rounded to a {float(1 / self.out_time_base):.4g} fps grid "
                                  f"({self.format} cannot store them exactly)")
            pts = new
        if self._last_pts is not None and pts <= self._last_pts:
            pts = self._last_pts + 1
        self._last_pts = pts
        return pts

    def write(self, rgb: np.ndarray, pts: int) -> None:
        """Append a frame: uint8 `(height, width, 3)`; `pts` in the input `time_base`."""
        import av

        if rgb.shape[:2] != (self.height, self.width):
            raise VideoIOError(f"{self.path}: frame is {rgb.shape[1]}x{rgb.shape[0]}, expected {self.width}x{self.height}")
        if self.kind == "folder":
            from PIL import Image

            Image.fromarray(rgb).save(os.path.join(self._tmp, f"frame_{self.frames:06d}.png"))
            self.frames += 1
            return
        if (self.out_width, self.out_height) != (self.width, self.height):
            rgb = np.pad(rgb, ((0, self.out_height - self.height), (0, self.out_width - self.width), (0, 0)), mode="edge")
        if self._video.pix_fmt == "pal8":
            frame = _palette_frame(rgb)
        else:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        frame.pts = self._pts(pts)
        frame.time_base = self.out_time_base
        self._encode(self._video, frame)
        self.frames += 1

    def mux_audio(self, packet) -> None:
        """Add one input audio packet (copied, or decoded and re-encoded when the container needs it)."""
        import av

        if self._audio is None:
            return
        if self._resampler is None:
            packet.stream = self._audio
            self._container.mux(packet)
            return
        try:
            for frame in self._decoder.decode(packet):
                frame.pts = None  # let the resampler / encoder count samples
                for resampled in self._resampler.resample(frame):
                    self._encode(self._audio, resampled)
        except av.FFmpegError:
            pass  # a damaged audio packet: a short gap beats losing the video

    def _encode(self, stream, frame) -> None:
        for packet in stream.encode(frame):
            self._container.mux(packet)

    def close(self) -> dict:
        """Flush, close, and move the output into place. Returns `{"frames", "audio", "notes"}`."""
        try:
            if self.frames == 0:
                raise VideoIOError(f"{self.path}: no frames were written")
            if self._container is not None:
                self._encode(self._video, None)
                if self._resampler is not None:
                    for resampled in self._resampler.resample(None):
                        self._encode(self._audio, resampled)
                    self._encode(self._audio, None)
                self._container.close()
                self._container = None
            if os.path.isdir(self.path) and self.kind == "folder":
                shutil.rmtree(self.path)  # only reached with overwrite=True (a folder cannot be replaced)
            atomic, self._atomic = self._atomic, None
            atomic.__exit__(None, None, None)  # fsync and rename into place
        except Exception:
            self.abort()
            raise
        return {"frames": self.frames, "audio": self.audio, "notes": list(self.notes)}

    def abort(self) -> None:
        """Stop and delete the temporary output (the final name is never touched)."""
        if self._container is not None:
            try:
                self._container.close()
            except Exception:  # already failing; the temp file is deleted below anyway
                pass
            self._container = None
        atomic, self._atomic = getattr(self, "_atomic", None), None
        if atomic is not None:
            stop = VideoIOError(f"{self.path}: aborted")
            atomic.__exit__(VideoIOError, stop, None)  # removes the temporary file or folder


def _palette_frame(rgb: np.ndarray):
    """uint8 RGB -> a pal8 PyAV frame with its own 256-colour palette (median cut, no dithering)."""
    import av
    from PIL import Image

    quantized = Image.fromarray(rgb).quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    palette = np.zeros((256, 4), dtype=np.uint8)
    colours = np.asarray(quantized.getpalette()[: 256 * 3], dtype=np.uint8).reshape(-1, 3)
    palette[:, 0] = 255  # ARGB
    palette[: len(colours), 1:] = colours
    return av.VideoFrame.from_ndarray((np.asarray(quantized), palette), format="pal8")


__all__ = ["VideoReader", "VideoWriter", "VideoIOError", "Frame", "VideoInfo", "output_kind", "check_output",
           "CONTAINERS", "DEFAULT_MAX_PIXELS"]
