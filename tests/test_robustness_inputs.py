"""Hostile and odd input files (tests/hostile.py, made from a real photo) through every entry point:
the image processor, the pipeline, the CLI (in process and as a real subprocess), the Space's functions,
the training stream and the video command.

Valid files must come out at the displayed size and orientation, coloured, with the input's lightness;
invalid ones must give a one-line error naming the file and the cause (no traceback from the CLI or the
UI) and leave no output behind. docs/robustness.md lists every case with what happens.
"""

import ctypes
import os
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.color import rgb2lab

from hostile import make_cases

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
L_TOL = 1.0  # max |L_out - L_in| per pixel: 8-bit rounding of the output RGB costs < 0.5
MIN_CHROMA = 2.0  # mean ab chroma of a colour result (8-bit gray renders measure < 0.5)


# --------------------------------------------------------------------------------------------------
# Fixtures and checks
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cases(tmp_path_factory, photo_paths):
    return make_cases(photo_paths[0], tmp_path_factory.mktemp("hostile"))


@pytest.fixture(scope="module")
def hostile_dir(cases):
    return os.path.dirname(cases[0].path)


def problem(case, image):
    """None if `image` (PIL image or path) is a correct colorization of `case`, else what is wrong."""
    if not isinstance(image, Image.Image):
        with Image.open(image) as im:
            im.load()
            image = im.convert("RGB") if im.mode != "RGB" else im.copy()
    out = np.asarray(image, dtype=np.float64) / 255.0
    if out.shape != case.expected.shape:
        return f"{case.name}: output {out.shape[1]}x{out.shape[0]}, expected {case.expected.shape[1]}x{case.expected.shape[0]}"
    lab_out, lab_in = rgb2lab(out), rgb2lab(case.expected)
    dl = np.abs(lab_out[..., 0] - lab_in[..., 0]).max()
    if dl > L_TOL:
        return f"{case.name}: lightness not preserved (max |dL| = {dl:.2f}; wrong orientation/scaling?)"
    chroma = np.hypot(lab_out[..., 1], lab_out[..., 2]).mean()
    if chroma < MIN_CHROMA:
        return f"{case.name}: output is gray (mean chroma {chroma:.2f})"
    return None


def one_line(message):
    text = str(message).strip()
    return "\n" not in text and "Traceback" not in text


def output_name(case):
    return os.path.splitext(os.path.basename(case.path))[0] + "_colorized.png"


def leftovers(folder):
    """Temporary files left in an output folder."""
    return [f for f in os.listdir(folder) if f.startswith(".") or f.endswith((".part", ".tmp"))]


# --------------------------------------------------------------------------------------------------
# Library entry points
# --------------------------------------------------------------------------------------------------
def test_image_processor(cases, tiny_model_dir):
    from transformers import AutoImageProcessor, AutoModel

    from hf_colorize import ColorizationInputError

    processor = AutoImageProcessor.from_pretrained(tiny_model_dir)
    model = AutoModel.from_pretrained(tiny_model_dir).eval()
    problems = []
    for case in cases:
        try:
            inputs = processor(case.path)
            with torch.no_grad():
                outputs = model(pixel_values=inputs["pixel_values"])
            image = processor.post_process_colorization(outputs, images=[case.path])[0]
        except ColorizationInputError as err:
            if case.valid:
                problems.append(f"{case.name}: refused ({err})")
            elif case.cause not in str(err) or not one_line(err):
                problems.append(f"{case.name}: unclear error {err!r}")
            continue
        problems.append(f"{case.name}: accepted an invalid file" if not case.valid else problem(case, image))
    assert not [p for p in problems if p], "\n".join(p for p in problems if p)


def test_pipeline_valid_files_in_one_batch(cases, tiny_model_dir):
    from transformers import pipeline

    import hf_colorize

    colorize = pipeline(hf_colorize.TASK, model=str(tiny_model_dir))
    valid = [c for c in cases if c.valid]
    results = colorize([c.path for c in valid], batch_size=4)
    problems = [problem(c, r) for c, r in zip(valid, results)]
    assert len(results) == len(valid)
    assert not [p for p in problems if p], "\n".join(p for p in problems if p)


def test_pipeline_errors_name_the_file(cases, tiny_model_dir):
    from transformers import pipeline

    import hf_colorize

    colorize = pipeline(hf_colorize.TASK, model=str(tiny_model_dir))
    good = next(c for c in cases if c.valid)
    for case in [c for c in cases if not c.valid]:
        with pytest.raises(hf_colorize.ColorizationInputError) as info:
            colorize([good.path, case.path], batch_size=2)
        assert one_line(info.value) and case.cause in str(info.value)
        assert case.path in str(info.value), f"{case.name}: error does not name the file: {info.value}"


# --------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------
def _check_cli_run(cases, out_dir, code, stderr):
    errors = [line for line in stderr.splitlines() if line.startswith("hf-colorize colorize: error:")]
    assert "Traceback" not in stderr, stderr[-3000:]
    assert code == 1, stderr[-3000:]
    invalid = [c for c in cases if not c.valid]
    assert len(errors) == len(invalid), "\n".join(errors)
    for case in invalid:
        line = [e for e in errors if os.path.basename(case.path) + ":" in e]
        assert len(line) == 1 and case.cause in line[0], f"{case.name}: {line}"
        assert not os.path.exists(os.path.join(out_dir, output_name(case)))
    problems = [problem(c, os.path.join(out_dir, output_name(c))) for c in cases if c.valid]
    assert not [p for p in problems if p], "\n".join(p for p in problems if p)
    assert sorted(os.listdir(out_dir)) == sorted(output_name(c) for c in cases if c.valid)
    summary = stderr.strip().splitlines()[-1]
    assert summary == f"hf-colorize colorize: {sum(c.valid for c in cases)} colorized, {len(invalid)} failed", summary


def test_cli_in_process(cases, tiny_model_dir, tmp_path, capsys):
    from hf_colorize.cli import main

    out = tmp_path / "out"
    code = main(["colorize", *[c.path for c in cases], "-o", str(out), "--model", str(tiny_model_dir), "--size", "64"])
    _check_cli_run(cases, str(out), code, capsys.readouterr().err)


def _subprocess_env(tmp):
    return dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", PYTHONPATH=ROOT, HOME=str(tmp))


@pytest.mark.slow
def test_cli_subprocess_on_the_folder(cases, hostile_dir, tiny_model_dir, tmp_path):
    """The real command on the whole folder, with file names passed and printed as raw bytes."""
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "hf_colorize", "colorize", os.fsencode(hostile_dir), "-o", os.fsencode(out),
           "--model", str(tiny_model_dir), "--size", "64"]
    done = subprocess.run(cmd, env=_subprocess_env(tmp_path), capture_output=True, timeout=600)
    _check_cli_run(cases, str(out), done.returncode, done.stderr.decode("utf-8", "surrogateescape"))


def _without_root_override():
    """For a subprocess: drop CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH from the bounding set, so even root
    obeys file permissions (CI runs as root, for whom a read-only folder is otherwise writable)."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


@pytest.mark.slow
def test_cli_read_only_output_folder(cases, tiny_model_dir, tmp_path):
    valid = [c for c in cases if c.valid][:3]
    out = tmp_path / "read_only"
    out.mkdir()
    out.chmod(0o555)
    cmd = [sys.executable, "-m", "hf_colorize", "colorize", *[c.path for c in valid], "-o", str(out),
           "--model", str(tiny_model_dir), "--size", "64"]
    try:
        done = subprocess.run(cmd, env=_subprocess_env(tmp_path), capture_output=True, text=True, timeout=600,
                              preexec_fn=_without_root_override if os.geteuid() == 0 else None)
    finally:
        out.chmod(0o755)
    errors = [line for line in done.stderr.splitlines() if line.startswith("hf-colorize colorize: error:")]
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert len(errors) == len(valid), done.stderr
    for case, line in zip(valid, errors):
        assert case.path in line and "ermission denied" in line, line
    assert os.listdir(out) == []


def test_cli_refuses_to_overwrite_its_input(cases, tiny_model_dir, tmp_path, capsys):
    from hf_colorize.cli import main

    photo = tmp_path / "photo.png"
    shutil.copyfile(next(c for c in cases if c.valid).path, photo)
    before = photo.read_bytes()
    for spelling in (str(photo), str(tmp_path / "sub" / ".." / "photo.png")):
        (tmp_path / "sub").mkdir(exist_ok=True)
        assert main(["colorize", str(photo), "-o", spelling, "--model", str(tiny_model_dir)]) == 2
        err = capsys.readouterr().err.strip()
        assert one_line(err) and "refusing to overwrite" in err and spelling in err, err
    # a batch whose default output name is another input: that job is refused, the other one is done
    twin = tmp_path / "photo_colorized.png"
    twin.write_bytes(before)
    assert main(["colorize", str(photo), str(twin), "--model", str(tiny_model_dir), "--size", "64"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert [e for e in err if "error:" in e] == [f"hf-colorize colorize: error: {photo}: output {twin} is an input; refusing to overwrite it"]
    assert photo.read_bytes() == before and twin.read_bytes() == before
    assert (tmp_path / "photo_colorized_colorized.png").is_file()


# --------------------------------------------------------------------------------------------------
# The Space's functions (spaces_app/app.py), called directly
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def space_functions(tiny_model_dir, tmp_path_factory):
    if not os.path.isfile(os.path.join(ROOT, "spaces_app", "app.py")):
        pytest.skip("spaces_app/app.py is absent")
    from test_space import env, load_app

    with env(HF_COLORIZE_MODEL=str(tiny_model_dir), HF_COLORIZE_MAX_BATCH="64",
             GRADIO_EXAMPLES_CACHE=str(tmp_path_factory.mktemp("examples_cache"))):
        app = load_app()
        demo = app.build_demo(app.ModelCache(app.model_choices()))
    fns = {f.api_name: f.fn for f in demo.fns.values() if f.api_name}
    yield app, fns["colorize"], fns["colorize_batch"], str(tiny_model_dir)
    demo.close()


@pytest.mark.slow
def test_space_single_photo(cases, space_functions):
    import gradio as gr

    app, colorize, _, model = space_functions
    problems = []
    for case in cases:
        try:
            (before, after), download = colorize(case.path, model, 0.38, "annealed_mean", 64)
        except gr.Error as err:
            if case.valid:
                problems.append(f"{case.name}: refused ({err.message})")
            elif not (one_line(err.message) and err.message.startswith(os.path.basename(case.path) + ": ")
                      and case.cause in err.message):
                problems.append(f"{case.name}: unclear error {err.message!r}")
            continue
        if not case.valid:
            problems.append(f"{case.name}: accepted an invalid file")
            continue
        problems.append(problem(case, after))
        assert download == after and leftovers(os.path.dirname(after)) == []
    assert not [p for p in problems if p], "\n".join(p for p in problems if p)


@pytest.mark.slow
def test_space_batch_keeps_good_results_and_lists_bad_files(cases, space_functions):
    _, _, colorize_batch, model = space_functions
    done, zip_path, status = colorize_batch([c.path for c in cases], model, 0.38, "annealed_mean", 64)
    valid = [c for c in cases if c.valid]
    assert [name for _, name in done] == [os.path.basename(c.path) for c in valid]
    problems = [problem(c, path) for c, (path, _) in zip(valid, done)]
    assert not [p for p in problems if p], "\n".join(p for p in problems if p)
    with zipfile.ZipFile(zip_path) as zf:
        assert len(zf.namelist()) == len(valid) and zf.testzip() is None
    assert one_line(status) and status.startswith(f"Colorized {len(valid)} of {len(cases)} images.")
    for case in [c for c in cases if not c.valid]:
        assert f"{os.path.basename(case.path)}: " in status and case.cause in status, status
    assert leftovers(os.path.dirname(zip_path)) == []


# --------------------------------------------------------------------------------------------------
# Training stream
# --------------------------------------------------------------------------------------------------
def test_training_stream_survives_and_counts(cases, hostile_dir):
    from hf_colorize.training.data import ColorizationStream

    stream = ColorizationStream(hostile_dir, crop_size=32, train=False)
    items = list(stream)
    names = lambda cs: sorted(os.path.basename(c.path) for c in cs)  # noqa: E731
    assert sorted(it["key"] for it in items) == names(c for c in cases if c.valid and not c.gray)
    assert all(it["rgb"].shape == (3, 32, 32) and it["rgb"].dtype == torch.uint8 for it in items)
    assert stream.stats.seen == len(cases)
    # every file that yields nothing is counted as undecodable or grayscale; the undecodable ones by name
    # (all invalid files but the 144 MP bomb, which the stream decodes as a black image: see the next test)
    invalid = {os.path.basename(c.path) for c in cases if not c.valid}
    assert stream.stats.undecodable + stream.stats.grayscale == len(invalid) + sum(c.valid and c.gray for c in cases)
    assert invalid - {"bomb_144mp.png"} <= set(stream.stats.skipped_keys) <= invalid


def test_training_stream_refuses_decompression_bombs(cases, hostile_dir):
    from hf_colorize.training.data import ColorizationStream

    stream = ColorizationStream(hostile_dir, crop_size=32, train=False)
    list(stream)
    assert stream.stats.undecodable == sum(not c.valid for c in cases)


def test_training_stream_applies_exif_orientation(cases, hostile_dir):
    from hf_colorize.training.data import ColorizationStream, center_crop

    items = {it["key"]: it["rgb"] for it in ColorizationStream(hostile_dir, crop_size=32, train=False)}
    for case in [c for c in cases if c.name.startswith("EXIF")]:
        shown = center_crop(Image.fromarray(np.round(case.expected * 255).astype(np.uint8)), 32)
        diff = np.abs(items[os.path.basename(case.path)].permute(1, 2, 0).numpy().astype(float) - np.asarray(shown))
        assert diff.mean() < 3, f"{case.name}: the crop is not of the displayed photo (mean diff {diff.mean():.1f})"


# --------------------------------------------------------------------------------------------------
# Video (hf_colorize/video.py: `hf-colorize video INPUT -o OUTPUT`)
# --------------------------------------------------------------------------------------------------
def _bad_videos(folder, photo, cases):
    """Unreadable videos: empty, random bytes, text, a video track with no frames, audio only, an mp4 cut
    before its index, and a frame folder with a truncated frame. Returns their paths."""
    import av

    folder.mkdir()
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "garbage.mp4").write_bytes(os.urandom(4096))
    (folder / "text.avi").write_text("not a video\n" * 50)
    silence = av.AudioFrame.from_ndarray(np.zeros((1, 1024), dtype=np.float32), format="fltp", layout="mono")
    silence.sample_rate = 16000
    for name, video in (("zero_frames.mkv", True), ("audio_only.mp4", False)):
        with av.open(str(folder / name), "w") as container:  # mkv keeps a video track that has no frames
            if video:
                stream = container.add_stream("mpeg4", rate=10)
                stream.width, stream.height = 64, 48
            audio = container.add_stream("aac", rate=16000)
            for i in range(5):
                silence.pts = i * 1024
                for packet in audio.encode(silence):
                    container.mux(packet)
            for packet in audio.encode(None):
                container.mux(packet)
    with Image.open(photo) as im:
        frame = im.convert("RGB").resize((64, 48))
    with av.open(str(folder / "full.mp4"), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for _ in range(10):
            container.mux(stream.encode(av.VideoFrame.from_image(frame)))
        container.mux(stream.encode())
    data = (folder / "full.mp4").read_bytes()
    (folder / "truncated.mp4").write_bytes(data[: len(data) // 2])  # the index (moov) is at the end: cut off
    (folder / "full.mp4").unlink()
    frames = folder / "frames_with_a_bad_one"
    frames.mkdir()
    good = next(c for c in cases if c.name == "PNG named .jpg")
    for i in range(3):
        shutil.copyfile(good.path, frames / f"frame_{i:03d}.png")
    shutil.copyfile(next(c for c in cases if c.name == "truncated PNG").path, frames / "frame_001.png")
    videos = sorted(folder.iterdir())
    assert len(videos) == 7
    return videos


def test_video_bad_files_get_one_line_errors_and_no_output(cases, photo_paths, tiny_model_dir, tmp_path, capsys):
    pytest.importorskip("hf_colorize.video.colorize", reason="hf_colorize/video.py is not written yet")
    from hf_colorize.cli import main

    for video in _bad_videos(tmp_path / "videos", photo_paths[0], cases):
        out = tmp_path / f"{video.stem}_out.mp4"
        code = main(["video", str(video), "-o", str(out), "--model", str(tiny_model_dir), "--no-progress"])
        err = capsys.readouterr().err.strip()
        assert code == 1 and one_line(err) and str(video.name) in err, f"{video.name}: exit {code}, {err!r}"
        assert not out.exists() and leftovers(tmp_path) == [], f"{video.name}: output left behind"


def test_video_animated_gif_is_colorized_frame_by_frame(cases, tiny_model_dir, tmp_path, capsys):
    pytest.importorskip("hf_colorize.video.colorize", reason="hf_colorize/video.py is not written yet")
    import av

    from hf_colorize.cli import main

    gif = next(c for c in cases if c.name.startswith("animated GIF"))
    out = tmp_path / "animated.mp4"
    assert main(["video", gif.path, "-o", str(out), "--model", str(tiny_model_dir), "--no-progress"]) == 0
    with av.open(str(out)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 3 and frames[0].shape == gif.expected.shape
    with Image.open(gif.path) as im:  # each output frame keeps its input frame's lightness (x264 costs ~1-2 L)
        for i, frame in enumerate(frames):
            im.seek(i)
            l_in = rgb2lab(np.asarray(im.convert("RGB")) / 255.0)[..., 0]
            assert np.abs(rgb2lab(frame / 255.0)[..., 0] - l_in).mean() < 3, f"frame {i}"
    assert leftovers(tmp_path) == []
