"""`hf-colorize colorize`: inputs (files, folders, globs), output naming, never overwriting inputs,
--skip-existing, bad inputs (one line each, good files still written), progress bar, and one real
subprocess run with the embedded default model."""

import hashlib
import io
import os
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from hf_colorize.cli import main
from hf_colorize.cli.colorize import shown
from hf_colorize.models.colorization.image_processing_colorization import rgb_to_lab

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
L_TOL_8BIT = 0.3  # see tests/test_processor.py: half an 8-bit step times the steepest dL/dv


@pytest.fixture
def photos(photo_paths, gray_photo_paths, tmp_path):
    """Three small real photos (2 colour, 1 gray) in tmp_path/in as JPEGs: [(path, size)]."""
    folder = tmp_path / "in"
    folder.mkdir()
    out = []
    for i, path in enumerate(photo_paths[:2] + gray_photo_paths[:1]):
        with Image.open(path) as im:
            im.draft(im.mode, (100, 100))
            im = im.copy()
        im.thumbnail((72 + 8 * i, 72 + 8 * i))
        dest = folder / f"photo {i}.jpg"  # a space in the name on purpose
        im.save(dest, quality=92)
        out.append(dest)
    return out


def _run(args, capsys):
    """main(["colorize", *args]) in-process -> (exit code, stdout, stderr)."""
    code = main(["colorize", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _errors(stderr):
    return [line for line in stderr.splitlines() if "hf-colorize colorize: error:" in line]


def _l(path):
    with Image.open(path) as im:
        rgb = torch.from_numpy(np.asarray(im.convert("RGB"), dtype=np.float64) / 255).permute(2, 0, 1)
    return rgb_to_lab(rgb)[0]


def _assert_colorized(src, out):
    """`out` is a complete RGB image of src's size whose L is src's."""
    with Image.open(src) as a, Image.open(out) as b:
        b.load()
        assert b.size == a.size and b.mode == "RGB"
    assert (_l(out) - _l(src)).abs().max() <= L_TOL_8BIT


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _leftovers(folder):
    return [p for p in folder.rglob("*") if p.name.endswith(".part")]


# --------------------------------------------------------------------------------------------------
# Inputs and outputs
# --------------------------------------------------------------------------------------------------
def test_single_file_default_name_next_to_input(photos, tiny_model_dir, capsys):
    before = _digest(photos[0])
    code, out, err = _run([photos[0], "--model", tiny_model_dir], capsys)
    assert code == 0, err
    result = photos[0].with_name("photo 0_colorized.png")
    _assert_colorized(photos[0], result)
    assert _digest(photos[0]) == before
    assert "colorizing" not in err  # no progress bar for one file
    assert sorted(p.name for p in photos[0].parent.iterdir()) == sorted(
        [p.name for p in photos] + ["photo 0_colorized.png"])


def test_output_file_and_output_folder(photos, tiny_model_dir, tmp_path, capsys):
    code, _, err = _run([photos[1], "-o", tmp_path / "single.jpg", "--model", tiny_model_dir], capsys)
    assert code == 0, err
    with Image.open(tmp_path / "single.jpg") as im:
        assert im.format == "JPEG"
    code, _, err = _run([photos[1], "-o", tmp_path / "new" / "deeper", "--model", tiny_model_dir], capsys)
    assert code == 0, err  # no suffix: a folder, created
    _assert_colorized(photos[1], tmp_path / "new" / "deeper" / "photo 1_colorized.png")
    code, _, err = _run([*photos, "-o", tmp_path / "many", "--model", tiny_model_dir], capsys)
    assert code == 0, err
    for p in photos:
        _assert_colorized(p, tmp_path / "many" / f"{p.stem}_colorized.png")
    assert not _leftovers(tmp_path)


def test_folder_input_recursive_and_reruns(photos, tiny_model_dir, tmp_path, capsys):
    folder = photos[0].parent
    (folder / "notes.txt").write_text("not an image, and not named like one: ignored in folders")
    sub = folder / "sub"
    sub.mkdir()
    nested = sub / "nested.png"
    with Image.open(photos[2]) as im:
        im.save(nested)
    code, _, err = _run([folder, "--model", tiny_model_dir], capsys)
    assert code == 0, err
    made = sorted(p.name for p in folder.glob("*_colorized.png"))
    assert made == [f"photo {i}_colorized.png" for i in range(3)]
    assert not (sub / "nested_colorized.png").exists()
    # a rerun does not colorize its own outputs again
    code, _, err = _run([folder, "--model", tiny_model_dir, "--recursive"], capsys)
    assert code == 0, err
    assert not list(folder.glob("*_colorized_colorized.png"))
    _assert_colorized(nested, sub / "nested_colorized.png")
    # -o DIR keeps the subfolders, so two files of the same name in different folders both come out
    with Image.open(photos[1]) as im:
        im.save(sub / "photo 0.jpg")
    code, _, err = _run([folder, "-o", tmp_path / "mirror", "--model", tiny_model_dir, "--recursive"], capsys)
    assert code == 0, err
    _assert_colorized(photos[0], tmp_path / "mirror" / "photo 0_colorized.png")
    _assert_colorized(sub / "photo 0.jpg", tmp_path / "mirror" / "sub" / "photo 0_colorized.png")
    _assert_colorized(nested, tmp_path / "mirror" / "sub" / "nested_colorized.png")


@pytest.mark.slow
def test_only_the_chosen_command_is_imported(tmp_path, monkeypatch, capsys):
    """A command whose module needs a missing package fails with one line; the others are unaffected
    (and `--help` of one command does not import the others)."""
    from hf_colorize import cli

    (tmp_path / "extra_commands").mkdir()
    (tmp_path / "extra_commands" / "__init__.py").write_text("")
    (tmp_path / "extra_commands" / "needs_missing.py").write_text("import hf_colorize_not_installed_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(cli.COMMANDS, "broken", ("extra_commands.needs_missing", "a command with a missing dependency", None))
    assert main(["broken", "x"]) == 1
    assert capsys.readouterr().err.strip() == "hf-colorize broken: error: missing dependency hf_colorize_not_installed_xyz"
    with pytest.raises(SystemExit) as exc:
        main(["pack", "--help"])
    assert exc.value.code == 0
    assert "--holdout-every" in capsys.readouterr().out
    probe = ("import sys; from hf_colorize.cli import main\n"
             "try:\n    main(['colorize', '--help'])\nexcept SystemExit:\n    pass\n"
             "print(sorted(m for m in ('hf_colorize.video.colorize', 'hf_colorize.training.loop', 'hf_colorize.evaluation.protocol', 'av') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True)
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_quoted_glob_is_expanded(photos, tiny_model_dir, tmp_path, capsys):
    pattern = str(photos[0].parent / "photo [01].jpg")
    code, _, err = _run([pattern, "-o", tmp_path / "g", "--model", tiny_model_dir], capsys)
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "g").iterdir()) == ["photo 0_colorized.png", "photo 1_colorized.png"]
    code, _, err = _run([str(tmp_path / "nothing*.jpg"), "--model", tiny_model_dir], capsys)
    assert code == 1
    assert _errors(err) == [f"hf-colorize colorize: error: {tmp_path / 'nothing*.jpg'}: no images match this pattern"]


def test_exif_rotated_input_gives_displayed_orientation(photos, tiny_model_dir, tmp_path, capsys):
    with Image.open(photos[0]) as im:
        upright = im.convert("RGB").resize((64, 40))
    exif = Image.Exif()
    exif[0x0112] = 6
    upright.transpose(Image.Transpose.ROTATE_90).save(tmp_path / "rotated.png", exif=exif)
    code, _, err = _run([tmp_path / "rotated.png", "-o", tmp_path / "r.png", "--model", tiny_model_dir], capsys)
    assert code == 0, err
    with Image.open(tmp_path / "r.png") as out:
        assert out.size == (64, 40)
    upright.save(tmp_path / "upright.png")
    assert (_l(tmp_path / "r.png") - _l(tmp_path / "upright.png")).abs().max() <= L_TOL_8BIT


def test_thin_images(photos, tiny_model_dir, tmp_path, capsys):
    with Image.open(photos[0]) as im:
        rgb = np.asarray(im.convert("RGB"))
    for name, arr in {"one.png": rgb[:1, :1], "row.png": rgb[:1], "column.png": rgb[:, :1]}.items():
        Image.fromarray(arr).save(tmp_path / name)
    code, _, err = _run([tmp_path / "one.png", tmp_path / "row.png", tmp_path / "column.png", "--model", tiny_model_dir], capsys)
    assert code == 0, err
    for name in ("one", "row", "column"):
        _assert_colorized(tmp_path / f"{name}.png", tmp_path / f"{name}_colorized.png")


def test_options_reach_the_model(photos, tiny_model_dir, tmp_path, capsys):
    """--temperature 1 gives the same pixels as --decode mean; mode differs from the default; --size
    and --seed take effect; batch size does not change results."""
    def colorize(name, *opts):
        code, _, err = _run([photos[0], "-o", tmp_path / name, "--model", tiny_model_dir, *opts], capsys)
        assert code == 0, err
        return np.asarray(Image.open(tmp_path / name), dtype=int)

    default = colorize("default.png")
    mode = colorize("mode.png", "--decode", "mode")
    mean = colorize("mean.png", "--decode", "mean")
    assert np.abs(colorize("t1.png", "--temperature", "1") - mean).max() <= 1
    assert np.abs(default - mode).max() > 1
    assert np.abs(colorize("s32.png", "--size", "32") - default).max() > 0
    s1, s2 = colorize("s1.png", "--decode", "sample", "--seed", "5"), colorize("s2.png", "--decode", "sample", "--seed", "5")
    np.testing.assert_array_equal(s1, s2)
    code, _, err = _run([*photos, "-o", tmp_path / "b1", "--batch-size", "1", "--model", tiny_model_dir], capsys)
    assert code == 0
    code, _, err = _run([*photos, "-o", tmp_path / "b3", "--batch-size", "3", "--model", tiny_model_dir], capsys)
    assert code == 0
    for p in photos:
        a = np.asarray(Image.open(tmp_path / "b1" / f"{p.stem}_colorized.png"), dtype=int)
        b = np.asarray(Image.open(tmp_path / "b3" / f"{p.stem}_colorized.png"), dtype=int)
        assert np.abs(a - b).max() <= 1


# --------------------------------------------------------------------------------------------------
# Never overwrite inputs; --skip-existing
# --------------------------------------------------------------------------------------------------
def test_output_equal_to_input_is_refused(photos, tiny_model_dir, capsys):
    before = _digest(photos[0])
    code, _, err = _run([photos[0], "-o", photos[0], "--model", tiny_model_dir], capsys)
    assert code == 2
    assert _errors(err) == [f"hf-colorize colorize: error: -o {photos[0]} is the input itself; refusing to overwrite it"]
    # the same file through another spelling of its path
    alias = os.path.join(str(photos[0].parent), ".", photos[0].name)
    code, _, err = _run([photos[0], "-o", alias, "--model", tiny_model_dir], capsys)
    assert code == 2 and "refusing to overwrite" in err
    assert _digest(photos[0]) == before


def test_output_name_that_is_another_input_is_refused(photos, tiny_model_dir, capsys):
    """a.jpg's default output is a_colorized.png; when that file is itself an input it is not replaced."""
    victim = photos[0].with_name("photo 0_colorized.png")
    with Image.open(photos[1]) as im:
        im.save(victim)
    before = _digest(victim)
    code, _, err = _run([photos[0], victim, "--model", tiny_model_dir], capsys)
    assert code == 1
    assert _errors(err) == [f"hf-colorize colorize: error: {photos[0]}: output {victim} is an input; refusing to overwrite it"]
    assert _digest(victim) == before
    _assert_colorized(victim, victim.with_name("photo 0_colorized_colorized.png"))


def test_skip_existing(photos, tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "photo 1_colorized.png").write_bytes(b"sentinel: must stay")
    code, _, err = _run([*photos, "-o", out, "--skip-existing", "--model", tiny_model_dir], capsys)
    assert code == 0, err
    assert (out / "photo 1_colorized.png").read_bytes() == b"sentinel: must stay"
    _assert_colorized(photos[0], out / "photo 0_colorized.png")
    assert "2 colorized, 1 skipped" in err
    code, _, err = _run([*photos, "-o", out, "--skip-existing", "--model", tiny_model_dir], capsys)
    assert code == 0 and "0 colorized, 3 skipped" in err
    code, _, err = _run([*photos, "-o", out, "--model", tiny_model_dir], capsys)  # without: rewritten
    assert code == 0
    _assert_colorized(photos[1], out / "photo 1_colorized.png")


# --------------------------------------------------------------------------------------------------
# Bad input: one line per file, the rest still done
# --------------------------------------------------------------------------------------------------
def _png_declaring(width, height):
    """A PNG header declaring width x height with no pixel data: a decompression bomb's shape."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def test_bad_inputs_one_line_each_and_good_files_still_written(photos, photo_paths, tiny_model_dir, tmp_path, capsys):
    bad = tmp_path / "bad"
    bad.mkdir()
    buf = io.BytesIO()
    Image.open(photo_paths[0]).convert("RGB").save(buf, format="JPEG")  # a real JPEG, whatever the fixture's format
    data = buf.getvalue()
    (bad / "empty.jpg").write_bytes(b"")
    (bad / "truncated.jpg").write_bytes(data[: len(data) // 2])
    scan = data.index(b"\xff\xda") + 100  # headers intact, garbage in the entropy-coded scan
    (bad / "corrupt.jpg").write_bytes(data[:scan] + bytes(range(256)) * 20)
    (bad / "text.jpg").write_text("Dear diary, this is not a photo.\n")
    (bad / "notes.txt").write_text("plain text given explicitly\n")
    (bad / "bomb.png").write_bytes(_png_declaring(40_000, 40_000))
    odd_name = os.fsdecode(b"caf\xe9 \xff.jpg")  # not valid UTF-8
    (bad / odd_name).write_text("also not a photo")
    cases = {
        bad / "missing.jpg": "no such file",
        bad / "empty.jpg": "empty file",
        bad / "truncated.jpg": "truncated",
        bad / "corrupt.jpg": "cannot decode image",
        bad / "text.jpg": "not a recognised image format",
        bad / "notes.txt": "not a recognised image format",
        bad / "bomb.png": "decompression bomb",
        bad / odd_name: "not a recognised image format",
    }
    args = [photos[0], *cases, photos[1], photos[2]]
    code, out, err = _run([*args, "-o", tmp_path / "out", "--batch-size", "3", "--model", tiny_model_dir], capsys)
    assert code == 1
    assert "Traceback" not in err
    lines = _errors(err)
    assert len(lines) == len(cases), err
    for path, cause in cases.items():
        [line] = [ln for ln in lines if ln.startswith(f"hf-colorize colorize: error: {shown(str(path))}: ")]
        assert cause in line, line
    for p in photos:
        _assert_colorized(p, tmp_path / "out" / f"{p.stem}_colorized.png")
    assert sorted(os.listdir(tmp_path / "out")) == sorted(f"{p.stem}_colorized.png" for p in photos)
    assert "3 colorized, 8 failed" in err


def test_decompression_bomb_below_pil_limit_but_over_ours(photos, tiny_model_dir, tmp_path, capsys):
    (tmp_path / "big.png").write_bytes(_png_declaring(11_000, 10_000))  # 110 MP > our 100 MP default
    code, _, err = _run([tmp_path / "big.png", photos[0], "-o", tmp_path / "o", "--model", tiny_model_dir], capsys)
    assert code == 1
    assert _errors(err) == [f"hf-colorize colorize: error: {tmp_path / 'big.png'}: image is 11000x10000 = 110 MP, over the "
                            "100 MP limit (possible decompression bomb; raise max_pixels if the image is genuine)"]
    assert (tmp_path / "o" / "photo 0_colorized.png").exists()


def test_unwritable_output_folder(photos, tiny_model_dir, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("a file where the output folder should be created")
    code, _, err = _run([photos[0], photos[1], "-o", blocker / "out", "--model", tiny_model_dir], capsys)
    assert code == 1 and "Traceback" not in err
    lines = _errors(err)
    assert len(lines) == 2
    for p, line in zip(photos, lines):
        assert line.startswith(f"hf-colorize colorize: error: {p}: cannot write {blocker / 'out'}")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root can write into read-only folders")
def test_read_only_output_folder(photos, tiny_model_dir, tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        code, _, err = _run([photos[0], "-o", locked, "--model", tiny_model_dir], capsys)
    finally:
        locked.chmod(0o700)
    assert code == 1 and "Permission denied" in _errors(err)[0]
    assert os.listdir(locked) == []


def test_usage_errors_exit_2(photos, tiny_model_dir, tmp_path, capsys):
    for bad in (["--size", "30"], ["--temperature", "0"], ["--decode", "nearest"], ["--batch-size", "0"]):
        with pytest.raises(SystemExit) as exc:
            main(["colorize", str(photos[0]), *bad])
        assert exc.value.code == 2
    code, _, err = _run([*photos, "-o", tmp_path / "one.png", "--model", tiny_model_dir], capsys)
    assert code == 2 and "looks like a file name" in err
    code, _, err = _run([photos[0], "-o", tmp_path / "x.unknownformat", "--model", tiny_model_dir], capsys)
    assert code == 2 and "format" in err
    code, _, err = _run([photos[0], "--model", tmp_path / "no_model_here"], capsys)
    assert code == 1 and _errors(err)[0].startswith(f"hf-colorize colorize: error: cannot load model {tmp_path / 'no_model_here'}")
    assert "Traceback" not in err


# --------------------------------------------------------------------------------------------------
# Progress bar, subprocess
# --------------------------------------------------------------------------------------------------
def test_progress_bar_for_many_files(photos, tiny_model_dir, tmp_path, capsys):
    """A bar with --progress; none by default when stderr is not a terminal (logs stay clean)."""
    code, out, err = _run([*photos, "-o", tmp_path / "quiet", "--model", tiny_model_dir], capsys)
    assert code == 0 and "colorizing" not in err and "%" not in err
    assert err.strip() == "hf-colorize colorize: 3 colorized"
    code, out, err = _run([*photos, "-o", tmp_path / "o", "--model", tiny_model_dir, "--progress"], capsys)
    assert code == 0
    assert "colorizing" in err and "3/3" in err and "100%" in err
    assert "Loading weights" not in err  # only our bar
    assert out == ""


@pytest.mark.slow
def test_subprocess_with_embedded_default_model(photos, tmp_path):
    """A real `python -m hf_colorize.cli colorize` run: the default model, offline, one good and one bad file."""
    (tmp_path / "fake.jpg").write_text("not a photo")
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1",
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(
        [sys.executable, "-m", "hf_colorize.cli", "colorize", str(photos[0]), str(tmp_path / "fake.jpg"),
         "-o", str(tmp_path / "result")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert _errors(proc.stderr) == [f"hf-colorize colorize: error: {tmp_path / 'fake.jpg'}: not a recognised image format"]
    _assert_colorized(photos[0], tmp_path / "result" / "photo 0_colorized.png")
    proc = subprocess.run(
        [sys.executable, "-m", "hf_colorize.cli", "colorize", str(photos[1]), "-o", str(tmp_path / "one.png")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    _assert_colorized(photos[1], tmp_path / "one.png")
