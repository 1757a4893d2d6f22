"""Synthetic clips with exact motion, and the flicker metrics (warping error, CDC, per-frame AuC)."""

import json
import os

import numpy as np
import pytest
import torch

from hf_colorize.models.colorization.image_processing_colorization import rgb_to_lab
from hf_colorize.video.clips import (KINDS, cut_frames, gray_frame, make_clip, render_frames, true_flow, warp,
                                     write_clip_folders)
from hf_colorize.video.metrics import VideoMetrics, evaluate_frames, frame_ab


@pytest.fixture(scope="module")
def clips(photo_paths):
    """Each kind of clip, 10 frames of 128x96, with its rendered ground truth."""
    out = {}
    for kind in KINDS:
        spec = make_clip(kind, [photo_paths[1], photo_paths[2]], 10, 128, 96)
        out[kind] = (spec, list(render_frames(spec)))
    return out


def _lab(rgb):
    return rgb_to_lab(torch.from_numpy(rgb.copy()).permute(2, 0, 1).float() / 255.0)


@pytest.mark.parametrize("kind", KINDS)
def test_true_flow_explains_the_real_frames(clips, kind):
    """Warping frame t-1 by the exact motion reproduces frame t up to resampling; not warping does not."""
    spec, frames = clips[kind]
    for t in range(1, len(frames)):
        grid, valid = true_flow(spec, t)
        prev, cur = _lab(frames[t - 1]), _lab(frames[t])
        if kind == "cut" and t in cut_frames(spec):
            assert not valid.any()  # nothing is shared across a cut
            continue
        assert valid.float().mean() > 0.7
        warped_err = (warp(prev, grid) - cur)[0].abs()[valid].mean()
        still_err = (prev - cur)[0].abs()[valid].mean()
        assert warped_err < 2.0, (kind, t, float(warped_err))
        if kind == "object":
            assert warped_err < 0.05  # whole-pixel motion: exact
        assert still_err > 2 * warped_err


def test_object_clip_occludes_and_reveals(clips):
    spec, _ = clips["object"]
    _, valid = true_flow(spec, 5)
    obj = spec["frames"][5][1]["rect"]
    prev_obj = spec["frames"][4][1]["rect"]
    # background revealed behind the object's trailing edge: not visible in frame t-1
    assert not valid[prev_obj[1] + 5, prev_obj[0]].item() or prev_obj[0] == obj[0]
    assert valid[obj[1] + 5, obj[0] + 5].item()  # the object itself is tracked


def test_gray_input_has_the_ground_truths_lightness(clips):
    _, frames = clips["pan"]
    gray = gray_frame(frames[3])
    assert (gray[..., 0] == gray[..., 1]).all()
    diff = (_lab(gray)[0] - _lab(frames[3])[0]).abs()
    assert diff.max() < 0.5 and _lab(gray)[1:].abs().max() < 0.01


def test_ground_truth_scores_perfect_auc_and_its_own_warping_floor(clips):
    spec, frames = clips["zoom"]
    result = evaluate_frames(frames, frames, spec)
    assert result["auc"] == pytest.approx(1.0)
    assert result["warping_error"] == pytest.approx(result["warping_error_gt"])
    assert 0 < result["warping_error"] < 3
    assert result["cdc"] == pytest.approx(result["cdc_gt"])
    assert result["frames"] == 10


@pytest.mark.slow
def test_flicker_raises_warping_error_and_cdc(clips):
    """Per-frame colour jitter on the true colours: both flicker metrics grow, AuC drops."""
    spec, frames = clips["pan"]
    rng = np.random.default_rng(0)
    jittered = []
    for rgb in frames:
        lab = _lab(rgb)
        lab[1:] += torch.tensor(rng.normal(0, 12, size=2), dtype=torch.float32).view(2, 1, 1)
        from hf_colorize.models.colorization.image_processing_colorization import lab_to_rgb

        jittered.append((lab_to_rgb(lab).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
    clean = evaluate_frames(frames, frames, spec)
    noisy = evaluate_frames(jittered, frames, spec)
    assert noisy["warping_error"] > 3 * clean["warping_error"]
    assert noisy["cdc"] > 3 * clean["cdc"]
    assert noisy["auc"] < clean["auc"] - 0.02


def test_pairs_across_a_cut_are_not_counted(clips):
    spec, frames = clips["cut"]
    cut = cut_frames(spec)
    assert cut == [5]
    m = VideoMetrics()
    for t, rgb in enumerate(frames):
        ab = frame_ab(rgb)
        m.update(t, ab, ab, true_flow(spec, t) if t else None, shot=spec["frames"][t][0]["id"])
    # 9 consecutive pairs, one across the cut; CDC at 1 apart uses 8 pairs
    assert len(m.warp_pred) == 8 and len(m.cdc[1][0]) == 8 and len(m.cdc[4][0]) == 2


def test_cli_make_clip_then_evaluate(tmp_path, photo_paths, capsys):
    from hf_colorize.cli import main

    out = tmp_path / "clip"
    assert main(["video-eval", "--make-clip", "object", "--photo", str(photo_paths[0]), "--photo",
                 str(photo_paths[3]), "--frames", "6", "--width", "64", "--height", "48", "-o", str(out)]) == 0
    assert sorted(os.listdir(out)) == ["clip.json", "gt", "input"]
    assert len(os.listdir(out / "input")) == 6
    # the gray input evaluated as a prediction: AuC < 1, tiny flicker (gray stays gray)
    assert main(["video-eval", str(out / "input"), "--clip", str(out / "clip.json"), "--json", str(tmp_path / "m.json")]) == 0
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["auc"] < 0.99 and metrics["warping_error"] < 0.5 and metrics["frames"] == 6
    assert "warping_error" in capsys.readouterr().out


def _main(argv) -> int:
    """`hf-colorize ARGV`'s exit code (argparse's usage errors exit through SystemExit)."""
    from hf_colorize.cli import main

    try:
        return main(argv)
    except SystemExit as stop:
        return stop.code


def test_cli_errors_are_one_line(tmp_path, photo_paths, capsys):
    spec = make_clip("pan", [photo_paths[0]], 4, 64, 48)
    write_clip_folders(spec, str(tmp_path / "c"))
    clip = str(tmp_path / "c" / "clip.json")
    bad = [  # (arguments, exit code, message)
        ([str(tmp_path / "nope.mp4"), "--clip", clip], 1, "no such file"),
        ([str(tmp_path / "c" / "input"), "--clip", str(tmp_path / "c" / "gt" / "frame_000000.png")], 1, "not a clip spec"),
        ([str(tmp_path / "c" / "input")], 2, "give --clip"),
        ([], 2, "give the colorized video"),
        (["--make-clip", "cut", "--photo", str(photo_paths[0]), "-o", str(tmp_path / "x")], 2, "needs 2 photos"),
        (["--make-clip", "pan", "--photo", str(photo_paths[0])], 2, "needs -o"),
        (["--make-clip", "pan", "--photo", str(photo_paths[0]), "-o", clip], 2, "is a file"),
        (["--make-clip", "pan", "--frames", "0", "-o", str(tmp_path / "x")], 2, "argument --frames: must be >= 1"),
        ([str(tmp_path / "c" / "input"), "--clip", clip, "--json", str(tmp_path / "no" / "m.json")], 2, "does not exist"),
    ]
    for argv, code, message in bad:
        assert _main(["video-eval", *argv]) == code, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("hf-colorize video-eval: error:") and message in err and "\n" not in err, err
    assert not (tmp_path / "x").exists()
    os.remove(tmp_path / "c" / "input" / "frame_000003.png")
    assert _main(["video-eval", str(tmp_path / "c" / "input"), "--clip", clip]) == 1
    assert "3 frames but the clip has 4" in capsys.readouterr().err


def test_clip_json_and_metrics_json_are_written_atomically(tmp_path, clips):
    from hf_colorize.video.clips import load_clip, save_clip
    from hf_colorize.video.metrics import write_json

    spec, frames = clips["pan"]
    save_clip(spec, str(tmp_path / "clip.json"))
    assert load_clip(str(tmp_path / "clip.json")) == spec
    write_json(evaluate_frames(frames, frames, spec), str(tmp_path / "m.json"))
    assert json.loads((tmp_path / "m.json").read_text())["frames"] == 10
    assert sorted(os.listdir(tmp_path)) == ["clip.json", "m.json"]  # no temporaries left
