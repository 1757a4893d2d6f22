"""Video reading / writing on clips cut from real photos: containers, timestamps, audio, bad input."""

import os
import tracemalloc
from fractions import Fraction

import av
import numpy as np
import pytest

from hf_colorize.video.clips import make_clip, render_frames
from hf_colorize.video.io import VideoIOError, VideoReader, VideoWriter

VFR_PTS = [0, 40, 80, 200, 240, 400, 440, 480, 520, 700, 740, 780]  # ms: irregular gaps


def write_video(path, frames, pts_ms=None, fps=25, audio_seconds=0.0, codec="libx264"):
    """Encode uint8 RGB frames with PyAV (test input), optional timestamps in ms and a sine audio track."""
    out = av.open(str(path), "w")
    h, w = frames[0].shape[:2]
    stream = out.add_stream(codec, rate=fps)
    stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
    stream.codec_context.time_base = Fraction(1, 1000)
    if codec == "libx264":
        stream.options = {"qp": "0"}  # lossless: the test compares pixels
    audio = out.add_stream("aac", rate=16000) if audio_seconds else None
    if audio is not None:
        audio.layout = "mono"
    for i, rgb in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        frame.pts = pts_ms[i] if pts_ms else round(i * 1000 / fps)
        frame.time_base = Fraction(1, 1000)
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode():
        out.mux(packet)
    if audio is not None:
        t = np.arange(int(audio_seconds * 16000)) / 16000
        samples = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 16000, 0
        for packet in audio.encode(frame):
            out.mux(packet)
        for packet in audio.encode(None):
            out.mux(packet)
    out.close()
    return str(path)


@pytest.fixture(scope="module")
def clip_frames(photo_paths):
    """12 real frames (a pan over a photo), 128x96 uint8 RGB."""
    return list(render_frames(make_clip("pan", [photo_paths[0]], 12, 128, 96)))


def _read_all(path, **kw):
    with VideoReader(path, **kw) as reader:
        frames = list(reader)
    return reader, frames


def test_vfr_timestamps_and_audio_survive_a_roundtrip(tmp_path, clip_frames):
    src = write_video(tmp_path / "in.mp4", clip_frames, VFR_PTS, audio_seconds=0.8)
    for ext in (".mp4", ".mkv", ".mov"):
        out = tmp_path / f"out{ext}"
        with VideoReader(src) as reader:
            assert reader.info.audio == "aac" and reader.info.width == 128
            writer = VideoWriter(str(out), reader.info.width, reader.info.height, reader.info.fps,
                                 reader.info.time_base, audio_template=reader.audio_stream)
            reader.audio_sink = writer.mux_audio
            for frame in reader:
                writer.write(255 - frame.rgb, frame.pts)
            result = writer.close()
        assert reader.vfr and result["audio"] == "copied (aac)" and result["notes"] == []
        again, frames = _read_all(out)
        times = np.array([f.time for f in frames])
        # same gaps as the input (mkv may shift everything by the audio priming delay)
        np.testing.assert_allclose(np.diff(times), np.diff(VFR_PTS) / 1000, atol=1e-3)
        assert again.info.audio == "aac"
        with av.open(str(out)) as c:
            samples = sum(f.samples for f in c.decode(audio=0))
        assert abs(samples - 0.8 * 16000) < 2048  # all audio kept (up to encoder padding)
        # inverted colours came through (x264 crf 18: small error)
        err = np.abs(frames[5].rgb.astype(int) - (255 - clip_frames[5]).astype(int)).mean()
        assert err < 4, (ext, err)


def test_webm_reencodes_audio_gif_and_folder_drop_it(tmp_path, clip_frames):
    src = write_video(tmp_path / "in.mp4", clip_frames, audio_seconds=0.5)
    expected = {".webm": "re-encoded (aac -> libopus)", ".gif": "dropped", "": "dropped"}
    for ext, audio in expected.items():
        out = str(tmp_path / f"out{ext}") if ext else str(tmp_path / "frames_out")
        with VideoReader(src) as reader:
            writer = VideoWriter(out, 128, 96, reader.info.fps, reader.info.time_base, audio_template=reader.audio_stream)
            reader.audio_sink = writer.mux_audio
            for frame in reader:
                writer.write(frame.rgb, frame.pts)
            result = writer.close()
        assert result["audio"] == audio and result["frames"] == 12
        back, frames = _read_all(out)
        assert len(frames) == 12
        if ext == ".webm":
            assert back.info.audio == "opus"
        if ext == "":
            assert sorted(os.listdir(out))[0] == "frame_000000.png"
            np.testing.assert_array_equal(frames[3].rgb, _read_all(src)[1][3].rgb)  # PNG is lossless
        if ext == ".gif":  # 256-colour palette per frame
            assert np.abs(frames[3].rgb.astype(int) - clip_frames[3].astype(int)).mean() < 8


def test_avi_rounds_vfr_to_a_grid_and_says_so(tmp_path, clip_frames):
    src = write_video(tmp_path / "in.mp4", clip_frames, [p + 7 * (i % 2) for i, p in enumerate(VFR_PTS)])
    with VideoReader(src) as reader:
        writer = VideoWriter(str(tmp_path / "o.avi"), 128, 96, reader.info.fps, reader.info.time_base,
                             grid_rate=Fraction(25))
        for frame in reader:
            writer.write(frame.rgb, frame.pts)
        result = writer.close()
    assert any("rounded to a 25 fps grid" in n for n in result["notes"])
    _, frames = _read_all(tmp_path / "o.avi")
    assert len(frames) == 12


def test_odd_size_is_padded_and_noted(tmp_path, clip_frames):
    odd = [f[:95, :127] for f in clip_frames[:4]]
    src = str(tmp_path / "odd")
    os.makedirs(src)
    from PIL import Image

    for i, f in enumerate(odd):
        Image.fromarray(f).save(os.path.join(src, f"f{i}.png"))
    reader, frames = _read_all(src)
    assert (reader.info.width, reader.info.height) == (127, 95) and len(frames) == 4
    writer = VideoWriter(str(tmp_path / "odd.mp4"), 127, 95, Fraction(25), Fraction(1, 25))
    for f in frames:
        writer.write(f.rgb, f.pts)
    result = writer.close()
    assert any("padded 127x95 to 128x96" in n for n in result["notes"])
    back, frames2 = _read_all(tmp_path / "odd.mp4")
    assert (back.info.width, back.info.height) == (128, 96)
    # x264 at crf 18 on a tiny, detailed frame (skimage astronaut: 4.1 mean, the same before the padding);
    # a misplaced or garbled picture would be off by tens
    assert np.abs(frames2[2].rgb[:95, :127].astype(int) - odd[2].astype(int)).mean() < 6


def test_folder_frames_sort_naturally_and_use_given_fps(tmp_path, clip_frames):
    from PIL import Image

    for i in (10, 2, 1):
        Image.fromarray(clip_frames[i]).save(tmp_path / f"frame_{i}.png")
    reader, frames = _read_all(str(tmp_path), folder_fps=10)
    assert [f.time for f in frames] == [0.0, 0.1, 0.2]
    np.testing.assert_array_equal(frames[2].rgb, clip_frames[10])


def test_reading_streams_without_holding_the_video(tmp_path, clip_frames):
    frames = [clip_frames[i % 12] for i in range(120)]
    src = write_video(tmp_path / "long.mp4", frames)
    with VideoReader(src) as reader:
        tracemalloc.start()
        n = 0
        for frame in reader:
            n += 1
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    total = 120 * frames[0].nbytes
    assert n == 120 and peak < total / 10, (peak, total)


@pytest.mark.parametrize("make,message", [
    (lambda p: p.write_bytes(b""), "empty file"),
    (lambda p: p.write_bytes(b"\x00\x01garbage" * 200), "not a readable video"),
    (lambda p: None, "no such file"),
])
def test_bad_inputs_give_one_line_errors(tmp_path, make, message):
    path = tmp_path / "bad.mp4"
    make(path)
    with pytest.raises(VideoIOError, match=message) as err:
        VideoReader(str(path))
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_audio_only_file_and_empty_folder_and_huge_frames(tmp_path, clip_frames):
    out = av.open(str(tmp_path / "a.m4a"), "w", format="mp4")
    stream = out.add_stream("aac", rate=16000)
    frame = av.AudioFrame.from_ndarray(np.zeros((1, 4096), np.float32), format="fltp", layout="mono")
    frame.sample_rate, frame.pts = 16000, 0
    for packet in list(stream.encode(frame)) + list(stream.encode(None)):
        out.mux(packet)
    out.close()
    with pytest.raises(VideoIOError, match="no video stream"):
        VideoReader(str(tmp_path / "a.m4a"))
    os.makedirs(tmp_path / "empty")
    with pytest.raises(VideoIOError, match="no image frames"):
        VideoReader(str(tmp_path / "empty"))
    src = write_video(tmp_path / "in.mp4", clip_frames[:2])
    with pytest.raises(VideoIOError, match=r"128x96 = 0.0 MP, over the 0.0 MP limit"):
        VideoReader(src, max_pixels=1000)


def test_truncated_video_keeps_decodable_frames(tmp_path, clip_frames):
    src = write_video(tmp_path / "in.mkv", clip_frames)
    data = open(src, "rb").read()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: len(data) * 2 // 3])
    reader, frames = _read_all(cut)
    assert 1 <= len(frames) < 12


def test_writer_never_leaves_partial_output(tmp_path, clip_frames):
    target = tmp_path / "out.mp4"
    for finish in ("abort", "close"):
        writer = VideoWriter(str(target), 128, 96, Fraction(25), Fraction(1, 25))
        for i, frame in enumerate(clip_frames):
            writer.write(frame, i)
        assert not target.exists()  # in progress under a temporary name
        getattr(writer, finish)()
        assert os.listdir(tmp_path) == ([] if finish == "abort" else ["out.mp4"])
    target.unlink()
    with pytest.raises(VideoIOError, match="no frames"):
        VideoWriter(str(target), 128, 96, Fraction(25), Fraction(1, 25)).close()
    assert os.listdir(tmp_path) == []
    target.write_bytes(b"old")
    with pytest.raises(VideoIOError, match="already exists"):
        VideoWriter(str(target), 128, 96, Fraction(25), Fraction(1, 25))
    with pytest.raises(VideoIOError, match="unsupported output type '.xyz'"):
        VideoWriter(str(tmp_path / "o.xyz"), 128, 96, Fraction(25), Fraction(1, 25))
    with pytest.raises(VideoIOError, match="expected 128x96"):
        w = VideoWriter(str(tmp_path / "o.mkv"), 128, 96, Fraction(25), Fraction(1, 25))
        try:
            w.write(clip_frames[0][:50], 0)
        finally:
            w.abort()
