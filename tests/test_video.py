"""`colorize_video` / `hf-colorize video` end to end on clips cut from real photos (tiny model)."""

import os

import av
import numpy as np
import pytest
import torch
from PIL import Image

from hf_colorize import ColorizationModel
from hf_colorize.video.colorize import colorize_video
from hf_colorize.video.clips import cut_frames, gray_frame, make_clip, render_frames
from hf_colorize.video.metrics import evaluate_frames
from hf_colorize.video.io import VideoIOError, VideoReader
from test_video_io import VFR_PTS, write_video

SIZE = 64


@pytest.fixture(scope="module")
def jittery_model(tiny_model_dir):
    """The tiny random model made confident (logits x 400): it paints every frame differently, like the
    flicker of a real per-frame colorizer, which is what temporal mode must remove."""
    model = ColorizationModel.from_pretrained(tiny_model_dir).eval()
    with torch.no_grad():
        model.classifier.weight.mul_(400.0)
        model.classifier.bias.mul_(400.0)
    return model


def _write_folder(path, frames):
    os.makedirs(path)
    for i, rgb in enumerate(frames):
        Image.fromarray(rgb).save(os.path.join(path, f"frame_{i:04d}.png"))
    return str(path)


def _frames(path):
    with VideoReader(path) as reader:
        return [f.rgb for f in reader]


@pytest.mark.slow
def test_mp4_with_audio_and_vfr(tmp_path, photo_paths, tiny_model_dir):
    spec = make_clip("pan", [photo_paths[0]], 12, 128, 96)
    gray = [gray_frame(f) for f in render_frames(spec)]
    src = write_video(tmp_path / "in.mp4", gray, VFR_PTS, audio_seconds=0.8)
    calls = []
    stats = colorize_video(src, str(tmp_path / "out.mp4"), model=str(tiny_model_dir), size=SIZE, batch_size=5,
                           progress=lambda done, total: calls.append((done, total)))
    assert stats["frames"] == 12 and stats["vfr"] and stats["audio"] == "copied (aac)"
    assert stats["temporal"] and stats["cuts"] == [0] and stats["processing_fps"] > 0
    assert calls == [(i, 12) for i in range(1, 13)]
    with VideoReader(str(tmp_path / "out.mp4")) as reader:
        frames = list(reader)
        assert reader.info.audio == "aac"
    assert len(frames) == 12
    np.testing.assert_allclose(np.diff([f.time for f in frames]), np.diff(VFR_PTS) / 1000, atol=1e-3)
    # colour added, lightness kept
    from hf_colorize.video.metrics import frame_ab

    out = frames[4].rgb
    assert frame_ab(out).abs().mean() > 0.5
    from hf_colorize.models.colorization.image_processing_colorization import rgb_to_l

    l_in = rgb_to_l(torch.from_numpy(gray[4].copy()).permute(2, 0, 1).float() / 255)
    l_out = rgb_to_l(torch.from_numpy(out.copy()).permute(2, 0, 1).float() / 255)
    assert (l_in - l_out).abs().mean() < 2.0


@pytest.mark.slow
def test_temporal_mode_removes_flicker_and_never_bleeds_across_a_cut(tmp_path, photo_paths, jittery_model):
    spec = make_clip("cut", [photo_paths[1], photo_paths[4]], 12, 128, 96)
    truth = list(render_frames(spec))
    src = _write_folder(tmp_path / "in", [gray_frame(f) for f in truth])
    results = {}
    for temporal in (False, True):
        out = str(tmp_path / f"out_{temporal}")
        stats = colorize_video(src, out, model=jittery_model, temporal=temporal, size=SIZE, batch_size=4)
        results[temporal] = (stats, evaluate_frames(_frames(out), truth, spec), _frames(out))
    (base_stats, base, base_frames), (temp_stats, temp, temp_frames) = results[False], results[True]
    assert base_stats["cuts"] == [] and temp_stats["cuts"] == [0] + cut_frames(spec)
    assert temp["warping_error"] < 0.5 * base["warping_error"], (temp, base)
    assert temp["cdc"] < base["cdc"]
    assert temp["auc"] > base["auc"] - 0.01
    # the first frame of each shot is the per-frame result: no state carried in
    for t in temp_stats["cuts"]:  # (up to one 8-bit level of batched-convolution rounding)
        assert np.abs(temp_frames[t].astype(int) - base_frames[t].astype(int)).max() <= 1
    # the second shot alone gives exactly the same frames as the whole clip: no colour bled over the cut
    cut = cut_frames(spec)[0]
    alone = _write_folder(tmp_path / "second", [gray_frame(f) for f in truth[cut:]])
    colorize_video(alone, str(tmp_path / "second_out"), model=jittery_model, size=SIZE, batch_size=4)
    # (up to one 8-bit level: the frames fall into other batches, and batched convolutions round differently)
    for a, b in zip(_frames(str(tmp_path / "second_out")), temp_frames[cut:]):
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_default_model_odd_size_and_gif(tmp_path, photo_paths):
    spec = make_clip("zoom", [photo_paths[2]], 4, 65, 49)
    frames = [f for f in render_frames(spec)]
    src = _write_folder(tmp_path / "in", frames)
    stats = colorize_video(src, str(tmp_path / "o.mp4"), size=SIZE)  # model=None: the embedded default
    assert stats["frames"] == 4 and any("padded 65x49 to 66x50" in n for n in stats["notes"])
    stats = colorize_video(src, str(tmp_path / "o.gif"), size=SIZE)
    assert len(_frames(str(tmp_path / "o.gif"))) == 4 and stats["audio"] == "none"


def _zero_frame_avi(path):
    """A valid avi whose video stream has no frames."""
    out = av.open(str(path), "w")
    stream = out.add_stream("mpeg4", rate=25)
    stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
    out.start_encoding()
    out.close()
    return str(path)


def _main(argv) -> int:
    """`hf-colorize ARGV`'s exit code (argparse's usage errors exit through SystemExit)."""
    from hf_colorize.cli import main

    try:
        return main(argv)
    except SystemExit as stop:
        return stop.code


def _no_temporaries(folder):
    return not [n for n in os.listdir(folder) if n.endswith(".part") or "partial" in n]


def test_cli_bad_inputs_one_line_and_no_partial_output(tmp_path, photo_paths, tiny_model_dir, capsys):
    from hf_colorize.cli import main

    frames = list(render_frames(make_clip("pan", [photo_paths[0]], 3, 64, 48)))
    good = _write_folder(tmp_path / "good", frames)
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(os.urandom(5000))
    cases = [  # (arguments, exit code, message)
        ([str(corrupt)], 1, "not a readable video"),
        ([str(tmp_path / "missing.mkv")], 1, "no such file"),
        ([_zero_frame_avi(tmp_path / "zero.avi")], 1, "no video frames could be decoded"),
        ([good, "--max-pixels", "1000"], 1, "over the 0.0 MP limit"),
        ([good, "--size", "30"], 2, "argument --size: must be a multiple of 8, got 30"),
        ([good, "--strength", "1"], 2, "argument --strength: must be in [0, 1)"),
        ([good, "--batch-size", "0"], 2, "argument --batch-size: must be >= 1"),
        ([good, "-o", str(tmp_path / "missing" / "x.mp4")], 1, "does not exist"),
    ]
    for args, code, message in cases:
        out = tmp_path / "out.mp4"
        target = [] if "-o" in args else ["-o", str(out)]
        rc = _main(["video", *args, *target, "--model", str(tiny_model_dir), "--no-progress"])
        err = capsys.readouterr().err.strip()
        assert rc == code, (args, err)
        assert err.startswith("hf-colorize video: error:") and message in err and "\n" not in err, err
        assert not out.exists() and _no_temporaries(tmp_path)
    out = tmp_path / "ok.mkv"
    assert main(["video", good, "-o", str(out), "--model", str(tiny_model_dir), "--size", "32", "--no-progress"]) == 0
    assert "3 frames 64x48" in capsys.readouterr().out
    assert main(["video", good, "-o", str(out), "--model", str(tiny_model_dir), "--no-progress"]) == 1
    assert "already exists" in capsys.readouterr().err
    assert main(["video", good, "-o", str(tmp_path / "x.wmv"), "--model", str(tiny_model_dir), "--no-progress"]) == 1
    assert "unsupported output type '.wmv'" in capsys.readouterr().err
    assert _no_temporaries(tmp_path)


def test_cli_bad_size_is_a_usage_error(tmp_path, capsys):
    """`hf-colorize video IN -o OUT --size 7`: exit 2 with one line, before anything is read or loaded."""
    rc = _main(["video", str(tmp_path / "in.mp4"), "-o", str(tmp_path / "out.mp4"), "--size", "7"])
    captured = capsys.readouterr()
    assert rc == 2, captured.err
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hf-colorize video: error:") and "multiple of 8" in lines[0], lines
    assert captured.out == "" and os.listdir(tmp_path) == []


def test_output_is_checked_before_the_model_loads(tmp_path):
    """A bad output name fails at once, even with a model that does not exist."""
    from hf_colorize.common import VideoIOError

    (tmp_path / "taken.mp4").write_bytes(b"old")
    with pytest.raises(VideoIOError, match="already exists"):
        colorize_video(str(tmp_path / "nope"), str(tmp_path / "taken.mp4"), model=str(tmp_path / "no_model"))
    with pytest.raises(VideoIOError, match="unsupported output type"):
        colorize_video(str(tmp_path / "nope"), str(tmp_path / "o.wmv"), model=str(tmp_path / "no_model"))


def test_per_frame_output_is_the_colorizers_photo_output(tmp_path, photo_paths, tiny_model_dir):
    """temporal=False: every frame is exactly what `Colorizer` makes of it as a photo (same pixels)."""
    from hf_colorize.common import load_colorizer

    spec = make_clip("object", [photo_paths[0], photo_paths[3]], 7, 80, 56)
    frames = [gray_frame(f) for f in render_frames(spec)]
    frames[2] = next(iter(render_frames(spec)))  # and a colour frame: only its L counts
    src = _write_folder(tmp_path / "in", frames)
    colorizer = load_colorizer(str(tiny_model_dir), batch_size=3, temperature=0.3)
    out = str(tmp_path / "out")
    stats = colorize_video(src, out, model=colorizer, temporal=False)
    assert stats["frames"] == 7 and not stats["temporal"]
    expected = [result for _, result in colorizer.colorize_iter(frames, output_type="np")]
    got = _frames(out)
    assert len(got) == len(expected) == 7
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a, b)
    # the same through a folder path (the Colorizer loaded inside) with the options given per call
    stats = colorize_video(src, str(tmp_path / "out2"), model=str(tiny_model_dir), temporal=False, batch_size=3,
                           temperature=0.3)
    for a, b in zip(_frames(str(tmp_path / "out2")), expected):
        np.testing.assert_array_equal(a, b)


def test_options_reach_the_decoder(tmp_path, photo_paths, jittery_model):
    """decode_mode / temperature change the result; bad values are one-line `UsageError`s."""
    from hf_colorize.common import UsageError

    frames = [gray_frame(f) for f in render_frames(make_clip("pan", [photo_paths[0]], 3, 64, 48))]
    src = _write_folder(tmp_path / "in", frames)
    outs = {}
    for name, kwargs in {"a": {}, "mode": {"decode_mode": "mode"}, "t": {"temperature": 1.0}}.items():
        colorize_video(src, str(tmp_path / name), model=jittery_model, size=SIZE, **kwargs)
        outs[name] = _frames(str(tmp_path / name))
    assert not np.array_equal(outs["a"][1], outs["mode"][1]) and not np.array_equal(outs["a"][1], outs["t"][1])
    for kwargs, message in (({"size": 30}, "multiple of 8"), ({"temperature": 0}, "temperature"),
                            ({"decode_mode": "vivid"}, "decode_mode"), ({"batch_size": 0}, "batch size")):
        with pytest.raises(UsageError, match=message):
            colorize_video(src, str(tmp_path / "bad"), model=jittery_model, **kwargs)
    assert not (tmp_path / "bad").exists()


def test_failure_midway_removes_the_partial_output(tmp_path, photo_paths, tiny_model_dir):
    frames = list(render_frames(make_clip("pan", [photo_paths[0]], 6, 64, 48)))
    src = _write_folder(tmp_path / "in", frames)
    Image.fromarray(frames[0][:20]).save(tmp_path / "in" / "frame_0004.png")  # a frame of the wrong size
    with pytest.raises(VideoIOError, match="frame_0004.png: frame is 64x20"):
        colorize_video(src, str(tmp_path / "out.mp4"), model=str(tiny_model_dir), size=SIZE, batch_size=2)
    assert sorted(os.listdir(tmp_path)) == ["in"]
