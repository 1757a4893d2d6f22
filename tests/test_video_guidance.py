"""Guided video: a reference for every frame, keyframe hints carried along the motion, bad guidance input."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from hf_colorize import ColorizationModel
from hf_colorize.models.colorization.guidance_colorization import color_to_ab
from hf_colorize.models.colorization.image_processing_colorization import rgb_to_l
from hf_colorize.video.clips import gray_frame, make_clip, render_frames
from hf_colorize.video.colorize import VideoColorizer, colorize_video
from hf_colorize.video.guidance import VideoGuidanceError, move_points
from hf_colorize.video.metrics import frame_ab
from hf_colorize.video.temporal import FrameInfo, Motion
from test_video import _frames, _main, _no_temporaries, _write_folder
from test_video_io import write_video

RED, BLUE = "#b22222", "#1e40d0"


def _mean_ab(rgb) -> np.ndarray:
    return frame_ab(rgb).mean((1, 2)).numpy()


def _ab_at(rgb, x: float, y: float, r: int = 2) -> np.ndarray:
    x, y = int(x), int(y)
    return frame_ab(rgb)[:, y - r:y + r + 1, x - r:x + r + 1].mean((1, 2)).numpy()


def _l(rgb) -> torch.Tensor:
    return rgb_to_l(torch.from_numpy(np.array(rgb)).permute(2, 0, 1).float() / 255)


@pytest.fixture(scope="module")
def default_colorizer(default_model_dir):
    from hf_colorize.common import load_colorizer

    return load_colorizer(str(default_model_dir), batch_size=4)


@pytest.fixture(scope="module")
def tiny_model(tiny_model_dir):
    return ColorizationModel.from_pretrained(tiny_model_dir).eval()


def test_reference_moves_every_frame_towards_it_consistently(tmp_path, photo_paths, default_colorizer):
    """The embedded model on a pan over the cat photo; references: the rocket (blue sky) and coffee (warm)."""
    frames = [gray_frame(f) for f in render_frames(make_clip("pan", [photo_paths[2]], 6, 96, 64))]
    src = _write_folder(tmp_path / "in", frames)
    plain = [o for o, _ in VideoColorizer(default_colorizer, size=64).colorize(frames)]
    for ref in (photo_paths[3], photo_paths[1]):
        target = _mean_ab(np.asarray(Image.open(ref).convert("RGB")))
        stats = colorize_video(src, str(tmp_path / f"out_{ref.stem}"), model=default_colorizer, size=64,
                               reference=str(ref))
        assert stats["reference"] and stats["frames"] == 6 and stats["hinted_frames"] == 0
        guided = _frames(str(tmp_path / f"out_{ref.stem}"))
        means = np.stack([_mean_ab(g) for g in guided])
        for g, p, m in zip(guided, plain, means):  # every frame, much closer to the reference's colours
            assert np.linalg.norm(m - target) < np.linalg.norm(_mean_ab(p) - target) - 15, (ref.name, m, target)
            assert (_l(g) - _l(p)).abs().mean() < 1.0  # L kept
        assert np.ptp(means, axis=0).max() < 3.0, means  # the same colours all through the clip
    # per frame: exactly the photo path with that reference (one distribution for all frames)
    got = [o for o, _ in VideoColorizer(default_colorizer, size=64, temporal=False, reference=str(photo_paths[3])
                                        ).colorize(frames)]
    expected = [r for _, r in default_colorizer.colorize_iter(frames, size=64, reference=str(photo_paths[3]),
                                                              output_type="np")]
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a, b)


def _object_then_cut(photo_paths):
    """8 frames of an object (a rocket crop) moving over the astronaut photo, then a cut to a 4-frame pan."""
    obj = make_clip("object", [photo_paths[0], photo_paths[3]], 8, 128, 96)
    pan = make_clip("pan", [photo_paths[2]], 4, 128, 96)
    for frame in pan["frames"]:
        for layer in frame:
            layer["source"] = 2
    spec = dict(obj, frames=obj["frames"] + pan["frames"], sources=obj["sources"] + pan["sources"])
    centres = [((f[1]["rect"][0] + f[1]["rect"][2]) / 2, (f[1]["rect"][1] + f[1]["rect"][3]) / 2)
               for f in obj["frames"]]
    return [gray_frame(f) for f in render_frames(spec)], centres


def test_keyframe_hints_follow_a_moving_object_and_stop_at_a_cut(photo_paths, tiny_model):
    frames, centres = _object_then_cut(photo_paths)
    (x0, y0), (x5, y5) = centres[0], centres[5]
    red_hint = {"x": x0, "y": y0, "color": RED}
    runs = {}
    for name, hints in {"plain": None, "red": {"0": [red_hint]},
                        "both": {"0": [red_hint], "5": [{"x": x5, "y": y5, "color": BLUE}]}}.items():
        colorizer = VideoColorizer(tiny_model, size=64, batch_size=4, hints=hints)
        runs[name] = [o for o, _ in colorizer.colorize(frames)]
        assert colorizer.smoother.cuts == [0, 8] and colorizer.hinted_frames == (0 if hints is None else 8)
    plain, red_only, both = runs["plain"], runs["red"], runs["both"]
    red, blue = np.array(color_to_ab((0xb2, 0x22, 0x22))), np.array(color_to_ab((0x1e, 0x40, 0xd0)))
    for t, (x, y) in enumerate(centres):  # the object moves ~10 px a frame; its hint goes with it
        # (within 10 Lab units: a vivid hint colour may not fit sRGB at the object's lightness)
        assert np.linalg.norm(_ab_at(red_only[t], x, y) - red) < 10, t
        assert np.linalg.norm(_ab_at(plain[t], x, y) - red) > 25, t
        if t >= 5:  # a keyframe replaces the carried hints at once, in the middle of the shot
            assert np.linalg.norm(_ab_at(both[t], x, y) - blue) < 10, t
            assert np.linalg.norm(_ab_at(plain[t], x, y) - blue) > 25, t
        else:  # (up to one 8-bit level of batched-convolution rounding)
            assert np.abs(both[t].astype(int) - red_only[t].astype(int)).max() <= 1, t
        assert (_l(both[t]) - _l(frames[t])).abs().mean() < 1.0  # L kept
    # where the object was at frame 0, frame 7 is far from red: the hint moved on, it was not left behind
    assert np.linalg.norm(_ab_at(red_only[7], x0, y0) - red) > 25
    for t in range(8, 12):  # after the cut: no hint, no state carried over
        assert np.abs(both[t].astype(int) - plain[t].astype(int)).max() <= 1, t
        assert np.abs(red_only[t].astype(int) - plain[t].astype(int)).max() <= 1, t


def test_without_temporal_hints_guide_their_keyframe_only(photo_paths, tiny_model_dir):
    from hf_colorize.common import load_colorizer

    frames, centres = _object_then_cut(photo_paths)
    frames = frames[:3]
    hint = [{"x": centres[1][0], "y": centres[1][1], "color": RED}]
    colorizer = load_colorizer(str(tiny_model_dir), batch_size=3)
    got = [o for o, _ in VideoColorizer(colorizer, temporal=False, hints={1: hint}).colorize(frames)]
    expected = [r for _, r in colorizer.colorize_iter(frames, hints=[None, hint, None], output_type="np")]
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(got[1], colorizer.colorize(frames[1], output_type="np"))


def test_move_points_follows_the_flow_and_drops_what_leaves_or_is_covered():
    m, width, height = 32, 128, 64  # a motion pixel is 4 x 2 frame pixels
    flow = torch.zeros(1, 2, m, m)
    flow[:, 0, :, :16] = -2.0  # the left half moved right by 2 motion pixels (8 frame pixels) ...
    flow[:, 0, :, 16:] = 2.0  # ... the right half left by 2: it covers what was just left of the middle
    flow[:, 1] = -3.0  # and everything moved down by 3 (6 frame pixels)
    motion = Motion(FrameInfo(False, 0.0, 0.0, 0.0), flow, torch.ones(1, 1, m, m))
    points = torch.tensor([[10.0, 8.0], [60.0, 8.0], [124.0, 8.0], [10.0, 60.0]])
    moved, usable = move_points(points, motion, width, height)
    torch.testing.assert_close(moved[[0, 2]], torch.tensor([[18.0, 14.0], [116.0, 14.0]]))
    assert usable.tolist() == [True, False, True, False]  # (60, 8) is covered; (10, 60) leaves the frame
    motion.confidence[:, :, :, 4:6] = 0.0  # a badly matched spot where (10, 8) lands
    assert move_points(points[:1], motion, width, height)[1].tolist() == [False]


def test_bad_guidance_is_one_line_and_writes_nothing(tmp_path, photo_paths, tiny_model_dir, tiny_hypercolumn_dir,
                                                     capsys):
    frames = list(render_frames(make_clip("pan", [photo_paths[0]], 3, 64, 48)))
    good = _write_folder(tmp_path / "good", frames)
    mp4 = write_video(tmp_path / "in.mp4", [gray_frame(f) for f in frames])

    def hints_file(name, content):
        path = tmp_path / name
        path.write_text(content if isinstance(content, str) else json.dumps(content))
        return str(path)

    hint = {"x": 5, "y": 5, "color": RED}
    (tmp_path / "ref.txt").write_text("not an image")
    cases = [  # (arguments, exit code, message)
        (["--hints", hints_file("bad.json", "{0: [")], 2, "not valid JSON"),
        (["--hints", str(tmp_path / "none.json")], 2, "none.json"),
        (["--hints", hints_file("list.json", [hint])], 2, "map frame indices (from 0) to hint lists"),
        (["--hints", hints_file("abc.json", {"abc": [hint]})], 2, "frame index 'abc' is not a whole number >= 0"),
        (["--hints", hints_file("far.json", {"7": [hint]})], 2, "frame 7 is beyond the video, which has 3 frames"),
        (["--hints", hints_file("out.json", {"1": [hint, {"x": 64, "y": 5, "color": RED}]})], 2,
         "frame 1: hint 1: (64, 5) is outside the 64x48 image"),
        (["--hints", hints_file("colour.json", {"0": [{"x": 1, "y": 1, "color": "reddish"}]})], 2,
         "frame 0: hint 0: 'reddish' is not a colour"),
        (["--reference", str(tmp_path / "ref.txt")], 2, "ref.txt"),
        (["--reference", str(tmp_path / "missing.jpg")], 2, "no such file, and not a colour"),
        (["--reference-strength", "0.5"], 2, "needs a reference"),
        (["--reference", RED, "--reference-strength", "-1"], 2, "argument --reference-strength"),
        # a container's frame count is not exact: hints beyond it are found at its end, and nothing is kept
        (["--hints", hints_file("far2.json", {"2": [hint], "9": [hint]}), "--input", mp4], 2,
         "frame 9 is beyond the video, which has 3 frames"),
    ]
    for args, code, message in cases:
        src = good
        if "--input" in args:
            src, args = args[-1], args[:-2]
        out = tmp_path / "out.mp4"
        rc = _main(["video", src, "-o", str(out), *args, "--model", str(tiny_model_dir), "--no-progress"])
        err = capsys.readouterr().err.strip()
        assert rc == code, (args, err)
        assert err.startswith("hf-colorize video: error:") and message in err and "\n" not in err, err
        assert not out.exists() and _no_temporaries(tmp_path)
    # guidance does not open the video path to hue/chroma hypercolumn models
    from hf_colorize.common import UsageError

    with pytest.raises(UsageError, match="does not support hue/chroma hypercolumn models"):
        VideoColorizer(str(tiny_hypercolumn_dir), reference=RED)
    # a hint outside a frame of a stream is refused when that frame comes
    with pytest.raises(VideoGuidanceError, match="frame 0: hint 0: .* is outside the 64x48 image"):
        list(VideoColorizer(str(tiny_model_dir), hints={0: [(70, 1, RED)]}).colorize(frames))
    slow_pan = _write_folder(tmp_path / "slow", [gray_frame(f) for f in render_frames(make_clip(
        "pan", [photo_paths[2]], 24, 64, 48))][:6])
    out = tmp_path / "ok.mp4"
    centre = hints_file("ok.json", {"0": [{"x": 32, "y": 24, "color": RED}]})
    assert _main(["video", slow_pan, "-o", str(out), "--model", str(tiny_model_dir), "--no-progress", "--reference",
                  str(photo_paths[3]), "--reference-strength", "0.8", "--hints", centre]) == 0
    assert "1 shot(s), reference, hints on 6 frame(s)" in capsys.readouterr().out and out.exists()
