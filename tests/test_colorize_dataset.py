"""`hf-colorize colorize-dataset`: an image folder / parquet shards in, parquet shards + manifest + card
out (tiny model, one process, in this process). Failures recorded, resume, settings checks, bad input
(one line before any work), the `datasets` read-back and the dry-run push. Multi-process, kill/resume
and video runs are in test_colorize_dataset_parallel.py (slow)."""

import glob
import json
import os
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from cli_helpers import run_cli
from hostile import _patched_png_size

CORRUPT = {  # file name -> what the manifest's reason must say
    "zz_truncated.jpg": "cannot decode image",
    "zz_empty.jpg": "empty file",
    "zz_bomb.png": "decompression bomb",
}


def make_archive(folder, photos) -> dict:
    """`folder` with the photos and 3 corrupt files (truncated JPEG, zero bytes, a PNG header claiming
    100000 x 100000 pixels); returns {key: source size, or None for the corrupt ones}."""
    os.makedirs(folder, exist_ok=True)
    keys = {}
    for path in photos:
        shutil.copyfile(path, os.path.join(folder, path.name))
        with Image.open(path) as im:
            keys[path.name] = im.size
    data = photos[0].read_bytes()
    with open(os.path.join(folder, "zz_truncated.jpg"), "wb") as f:
        f.write(data[: len(data) // 3])
    open(os.path.join(folder, "zz_empty.jpg"), "wb").close()
    import io

    buf = io.BytesIO()
    Image.new("L", (8, 8)).save(buf, format="PNG")
    with open(os.path.join(folder, "zz_bomb.png"), "wb") as f:
        f.write(_patched_png_size(buf.getvalue(), 100_000, 100_000))
    keys.update({name: None for name in CORRUPT})
    return keys


def read_rows(out_dir) -> list:
    """Every row of every shard, in shard order, as dicts (image bytes included)."""
    return [row for f in sorted(glob.glob(os.path.join(out_dir, "data", "*.parquet")))
            for row in pq.read_table(f).to_pylist()]


def pixels(row) -> np.ndarray:
    import io

    with Image.open(io.BytesIO(row["image"]["bytes"])) as im:
        return np.asarray(im.convert("RGB"))


def manifest(out_dir) -> dict:
    with open(os.path.join(out_dir, "manifest.json"), encoding="utf-8") as f:
        return json.load(f)


def check_every_key_once(out_dir, keys) -> None:
    """Rows + recorded failures cover every source key exactly once; the failures are the corrupt files."""
    rows = [r["key"] for r in read_rows(out_dir)]
    failures = [f["key"] for f in manifest(out_dir)["failures"]]
    assert sorted(rows + failures) == sorted(keys)
    assert sorted(failures) == sorted(k for k, size in keys.items() if size is None)


JOB = ["--shard-size", "4", "--batch-size", "2", "--no-progress"]


@pytest.fixture(scope="module")
def archive(tmp_path_factory, photo_paths, gray_photo_paths):
    """11 real photos (8 colour, 3 gray) and 3 corrupt files: 14 items, 4 shards of 4."""
    folder = tmp_path_factory.mktemp("archive") / "scans"
    return folder, make_archive(folder, photo_paths + gray_photo_paths)


def run_quietly(argv):
    """`hf-colorize ARGV` in this process -> (exit code, stderr lines), for module-scoped fixtures
    (capsys is per test)."""
    import contextlib
    import io

    from hf_colorize.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, err.getvalue().strip().splitlines()


@pytest.fixture(scope="module")
def first_run(archive, tiny_model_dir, tmp_path_factory):
    """One finished single-process run over the archive: (out_dir, exit code, stderr lines)."""
    out = tmp_path_factory.mktemp("job") / "out"
    return (out, *run_quietly(["colorize-dataset", archive[0], "--output", out, "--model", tiny_model_dir, *JOB]))


def test_run_writes_rows_manifest_and_card(first_run, archive):
    out, code, err = first_run
    _, keys = archive
    assert code == 0, err
    check_every_key_once(out, keys)
    # one line per corrupt file naming it and the cause, then the summary line
    for name, cause in CORRUPT.items():
        assert any(name in line and cause in line for line in err), (name, err)
    assert err[-1].startswith("hf-colorize colorize-dataset: 11 done, 0 skipped (already done), 3 failed")
    m = manifest(out)
    assert m["complete"] and m["counts"] == {"items": 14, "colorized": 11, "failed": 3, "units": 4, "units_finished": 4}
    reasons = {f["key"]: f["reason"] for f in m["failures"]}
    for name, cause in CORRUPT.items():
        assert cause in reasons[name]
    assert m["settings"]["colorization"]["size"] == 64 and m["settings"]["shard_size"] == 4
    assert [s["file"] for s in m["shards"]] == [f"data/shard-{i:05d}.parquet" for i in range(4)]
    # rows: the source's size, its lightness, colour added, and the settings used
    rows = read_rows(out)
    assert [r["index"] for r in rows] == sorted(r["index"] for r in rows)
    for row in rows:
        assert (row["width"], row["height"]) == keys[row["key"]]
        assert row["temperature"] == m["settings"]["colorization"]["temperature"] and row["size"] == 64
        assert row["image"]["path"] == os.path.splitext(row["key"])[0] + ".png"


def test_output_loads_with_datasets(first_run, archive):
    import datasets

    out, _, _ = first_run
    folder, keys = archive
    ds = datasets.load_dataset("parquet", data_files=os.path.join(out, "data", "*.parquet"), split="train")
    assert len(ds) == 11 and isinstance(ds.features["image"], datasets.Image)
    row = ds[0]
    assert isinstance(row["image"], Image.Image) and row["image"].size == keys[row["key"]]
    # the colorized image keeps the photo's lightness (only colour is added)
    from hf_colorize.models.colorization.image_processing_colorization import rgb_to_l
    import torch

    def lightness(im):
        return rgb_to_l(torch.from_numpy(np.asarray(im.convert("RGB")).copy()).permute(2, 0, 1).float() / 255)

    with Image.open(os.path.join(folder, row["key"])) as src:
        assert (lightness(src) - lightness(row["image"])).abs().mean() < 1.0
    card = open(os.path.join(out, "README.md"), encoding="utf-8").read()
    assert card.startswith("---\n") and "data/*.parquet" in card and "11 colorized images of 14" in card


def test_rerun_skips_everything_and_rewrites_nothing(first_run, archive, tiny_model_dir, capsys):
    out, _, _ = first_run
    folder, _ = archive
    before = {f: os.stat(f).st_mtime_ns for f in glob.glob(os.path.join(out, "data", "*.parquet"))}
    code, _, err = run_cli(["colorize-dataset", folder, "--output", out, "--model", tiny_model_dir, *JOB], capsys)
    assert code == 0 and err[-1].startswith("hf-colorize colorize-dataset: 0 done, 14 skipped (already done), 0 failed")
    assert {f: os.stat(f).st_mtime_ns for f in before} == before
    assert manifest(out)["counts"]["colorized"] == 11


def test_other_settings_are_refused(first_run, archive, tiny_model_dir, capsys):
    out, _, _ = first_run
    folder, _ = archive
    for extra, named in ((["--temperature", "0.5"], "temperature"), (["--shard-size", "5"], "shard_size")):
        argv = ["colorize-dataset", folder, "--output", out, "--model", tiny_model_dir, *JOB, *extra]
        code, _, err = run_cli(argv, capsys)
        assert code == 2 and len(err) == 1 and "different settings" in err[0] and named in err[0], err


def test_resume_redoes_only_unfinished_shards_with_the_same_pixels(first_run, archive, tiny_model_dir, tmp_path, capsys):
    """A killed run leaves unfinished shards (no parquet; maybe a sidecar and a dead process's
    temporary): the rerun writes exactly those, identical to the uninterrupted run."""
    out, _, _ = first_run
    folder, keys = archive
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    os.remove(copy / "manifest.json")
    os.remove(copy / "data" / "shard-00001.parquet")  # killed after its sidecar, before the rename
    os.remove(copy / "data" / "shard-00002.parquet")
    os.remove(copy / "state" / "shard-00002.json")
    stale = copy / "data" / ".shard-00002.parquet.999999999.abcd.parquet.part"  # a dead pid's temporary
    stale.write_bytes(b"PAR1 half written")
    kept = os.stat(copy / "data" / "shard-00003.parquet").st_mtime_ns
    code, _, err = run_cli(["colorize-dataset", folder, "--output", copy, "--model", tiny_model_dir, *JOB], capsys)
    assert code == 0, err
    # shards 1 and 2 again: 7 photos and the bomb; shards 0 and 3 (4 + 2 items) kept
    assert err[-1].startswith("hf-colorize colorize-dataset: 7 done, 6 skipped (already done), 1 failed"), err
    assert not stale.exists() and os.stat(copy / "data" / "shard-00003.parquet").st_mtime_ns == kept
    check_every_key_once(copy, keys)
    assert read_rows(copy) == read_rows(out)  # same rows, same bytes
    assert manifest(copy)["counts"] == manifest(out)["counts"]


def test_jpeg_output_and_a_parquet_source_with_a_key_column(photo_paths, tiny_model_dir, tmp_path, capsys):
    """Parquet shards (as `hf-colorize pack` writes them) in, keys from the key column, JPEG out."""
    from hf_colorize.training.data import pack_folder

    pack_folder(photo_paths[0].parent, tmp_path / "packed", max_side=0, shard_size=3)
    out = tmp_path / "out"
    code, _, err = run_cli(["colorize-dataset", tmp_path / "packed", "--output", out, "--model", tiny_model_dir,
                            "--key-column", "key", "--format", "jpeg", "--quality", "80", *JOB], capsys)
    assert code == 0, err
    rows = read_rows(out)
    assert sorted(r["key"] for r in rows) == sorted(p.name for p in photo_paths)
    assert [r["index"] for r in rows] == list(range(8))
    assert all(r["image"]["bytes"][:2] == b"\xff\xd8" and r["image"]["path"].endswith(".jpg") for r in rows)
    m = manifest(out)
    assert m["source"]["type"] == "parquet" and m["settings"]["quality"] == 80 and m["counts"]["failed"] == 0


def test_dry_run_push_folder_holds_shards_manifest_and_card(first_run, archive, tiny_model_dir, tmp_path, capsys):
    """A rerun with --push-to-hub --dry-run: nothing to redo, then the commit's files are written."""
    out, _, _ = first_run
    folder, keys = archive
    upload = tmp_path / "upload"
    code, stdout, err = run_cli(["colorize-dataset", folder, "--output", out, "--model", tiny_model_dir, *JOB,
                                 "--push-to-hub", "someone/colorized-scans", "--dry-run", upload], capsys)
    assert code == 0, err
    assert "nothing uploaded" in stdout
    files = sorted(os.path.relpath(os.path.join(r, f), upload) for r, _, fs in os.walk(upload) for f in fs)
    assert files == sorted(["README.md", "manifest.json"] + [f"data/shard-{i:05d}.parquet" for i in range(4)])
    card = (upload / "README.md").read_text()
    assert "load_dataset('someone/colorized-scans')" in card and "configs:" in card
    assert json.loads((upload / "manifest.json").read_text())["counts"]["failed"] == 3
    import datasets

    ds = datasets.load_dataset("parquet", data_files=str(upload / "data" / "*.parquet"), split="train")
    assert sorted(ds["key"]) == sorted(k for k, size in keys.items() if size is not None)


# --------------------------------------------------------------------------------------------------
# Bad input: one line, the exit code, and no work (no output folder, no model loaded)
# --------------------------------------------------------------------------------------------------
def _refused(argv, capsys, code, *words, out=None):
    got, _, err = run_cli(["colorize-dataset", *argv], capsys)
    assert got == code and len(err) == 1 and err[0].startswith("hf-colorize colorize-dataset: error: "), err
    for word in words:
        assert word in err[0], err
    if out is not None:
        assert not os.path.exists(out), "work started"
    return err[0]


def test_bad_sources_are_one_line_before_any_work(tmp_path, capsys):
    out = tmp_path / "out"
    _refused([tmp_path / "missing", "-o", out], capsys, 1, "missing", "no such folder", out=out)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    _refused([tmp_path / "empty", "-o", out], capsys, 1, "empty", "holds no images", out=out)
    _refused(["someone/a-dataset", "-o", out], capsys, 1, "someone/a-dataset", "cannot open dataset", out=out)


def test_a_missing_column_is_one_line(photo_paths, tmp_path, capsys):
    from hf_colorize.training.data import pack_folder

    pack_folder(photo_paths[0].parent, tmp_path / "packed", max_side=64)
    out = tmp_path / "out"
    _refused([tmp_path / "packed", "-o", out, "--image-column", "photo"], capsys, 1, "no column 'photo'", "image", out=out)
    _refused([tmp_path / "packed", "-o", out, "--key-column", "name"], capsys, 1, "no column 'name'", out=out)
    _refused([photo_paths[0].parent, "-o", out, "--image-column", "photo"], capsys, 2,
             "--image-column", "parquet or Hub", out=out)


def test_bad_outputs_are_one_line_before_any_work(photo_paths, tmp_path, capsys):
    folder = photo_paths[0].parent
    (tmp_path / "a_file").write_text("x")
    _refused([folder, "-o", tmp_path / "a_file"], capsys, 2, "a_file", "not a folder")
    _refused([folder, "-o", tmp_path / "a_file" / "out"], capsys, 2, "not a folder")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "thesis.tex").write_text("x")
    _refused([folder, "-o", tmp_path / "other"], capsys, 2, "not empty", "settings.json")
    assert os.listdir(tmp_path / "other") == ["thesis.tex"]
    if os.geteuid() != 0:  # root may write anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        _refused([folder, "-o", locked / "out"], capsys, 2, "permission denied")


def test_bad_options_are_usage_errors(photo_paths, tmp_path, capsys):
    folder, out = photo_paths[0].parent, tmp_path / "out"
    _refused([folder, "-o", out, "--quality", "80"], capsys, 2, "--quality", "png", out=out)
    _refused([folder, "-o", out, "--crf", "20"], capsys, 2, "--crf", "videos", out=out)
    _refused([folder, "-o", out, "--shard-size", "0"], capsys, 2, "--shard-size", out=out)
    _refused([folder, "-o", out, "--dry-run", tmp_path / "up"], capsys, 2, "--dry-run", "--push-to-hub", out=out)
    _refused([folder, "-o", out, "--push-to-hub", "not a repo"], capsys, 2, "--push-to-hub", out=out)


def test_push_without_credentials_is_one_line_before_any_work(photo_paths, tmp_path, capsys, monkeypatch):
    folder, out = photo_paths[0].parent, tmp_path / "out"
    _refused([folder, "-o", out, "--push-to-hub", "someone/scans"], capsys, 1, "HF_HUB_OFFLINE", out=out)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))  # no stored token either
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "hf_home" / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "hf_home" / "stored_tokens"))
    _refused([folder, "-o", out, "--push-to-hub", "someone/scans"], capsys, 1, "no Hugging Face token", out=out)
