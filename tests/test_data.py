"""The streamed training input pipeline on real photos: folder, parquet and pack, corrupt and gray
samples, sharding across ranks, exact resume, vectorized Lab batches."""

import io
import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import color

from cli_helpers import run_cli
from hf_colorize.common import UsageError
from hf_colorize.training.data import (
    ColorizationStream,
    DataSourceError,
    batches,
    lab_batch,
    pack_folder,
)


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory, many_photo_files):
    """20 real photos (incl. 2 grayscale ones) plus one corrupt file and one text file named .jpg."""
    folder = tmp_path_factory.mktemp("photos")
    colour = [p for p in many_photo_files[:60] if Image.open(p).mode == "RGB"][:18]
    gray = [p for p in many_photo_files if Image.open(p).mode == "L"][:2]
    for p in colour + gray:
        with Image.open(p) as im:
            im.thumbnail((160, 160))
            im.save(folder / (p.stem + ".jpg"), quality=90)
    data = (folder / (colour[0].stem + ".jpg")).read_bytes()
    (folder / "zz_truncated.jpg").write_bytes(data[: len(data) // 3])
    (folder / "zz_text.jpg").write_text("this is not a JPEG")
    return folder


def _keys(stream, n=None):
    out = []
    for item in stream:
        out.append(item["key"])
        if n and len(out) >= n:
            break
    return out


@pytest.mark.slow
def test_folder_stream_skips_and_counts_corrupt_and_gray(photo_folder):
    stream = ColorizationStream(str(photo_folder), crop_size=64, train=False)
    items = list(stream)
    assert len(items) == 18
    assert all(it["rgb"].shape == (3, 64, 64) and it["rgb"].dtype == torch.uint8 for it in items)
    assert stream.stats.undecodable == 2 and stream.stats.grayscale == 2 and stream.stats.seen == 22
    assert {"zz_text.jpg", "zz_truncated.jpg"} <= set(stream.stats.skipped_keys)


def test_pack_then_stream_parquet(photo_folder, tmp_path):
    report = pack_folder(str(photo_folder), str(tmp_path / "packed"), max_side=96, shard_size=6, holdout_every=5, progress=False)
    assert len(report["undecodable"]) == 2
    files = sorted(os.listdir(tmp_path / "packed"))
    assert any(f.startswith("test-") for f in files) and sum(f.startswith("train-") for f in files) >= 2
    assert not any(f.endswith(".tmp") for f in files)
    train = ColorizationStream(str(tmp_path / "packed"), split="train", crop_size=48, train=False)
    test = ColorizationStream(str(tmp_path / "packed"), split="test", crop_size=48, train=False)
    k_train, k_test = set(_keys(train)), set(_keys(test))
    assert k_train and k_test and not (k_train & k_test)
    assert len(k_train) + len(k_test) + train.stats.grayscale + test.stats.grayscale == 20


def test_pack_validation_split_leaves_the_test_split_as_it_was(photo_folder, tmp_path):
    # the test split must not move when a validation split is added (earlier numbers stay comparable)
    pack_folder(str(photo_folder), str(tmp_path / "old"), max_side=64, holdout_every=5, progress=False)
    pack_folder(str(photo_folder), str(tmp_path / "new"), max_side=64, holdout_every=5, validation_every=3,
                progress=False)
    keys = {name: {split: set(_keys(ColorizationStream(str(tmp_path / name), split=split, crop_size=32, train=False,
                                                           skip_gray=False)))
                   for split in (("train", "test") if name == "old" else ("train", "test", "validation"))}
            for name in ("old", "new")}
    old, new = keys["old"], keys["new"]
    assert new["test"] == old["test"] and new["validation"]
    assert not (new["validation"] & new["train"]) and not (new["validation"] & new["test"])
    assert new["train"] | new["validation"] == old["train"]
    files = sorted(f for f in os.listdir(photo_folder) if f.endswith(".jpg"))
    decodable = old["train"] | old["test"]
    expected = {f for i, f in enumerate(files) if i % 5 != 4 and i % 3 == 0} & decodable
    assert new["validation"] == expected
    with pytest.raises(UsageError, match="validation_every must be 0"):
        pack_folder(str(photo_folder), str(tmp_path / "bad"), validation_every=1, progress=False)


def test_corrupt_sample_inside_parquet_does_not_kill_the_stream(photo_folder, tmp_path):
    import datasets

    good = sorted(photo_folder.glob("n*.jpg"))[:4]
    rows = {"image": [{"bytes": p.read_bytes(), "path": p.name} for p in good], "key": [p.name for p in good]}
    rows["image"].insert(2, {"bytes": b"\xff\xd8\xff garbage", "path": "bad.jpg"})
    rows["key"].insert(2, "bad.jpg")
    feats = datasets.Features({"image": datasets.Image(), "key": datasets.Value("string")})
    datasets.Dataset.from_dict(rows, features=feats).to_parquet(str(tmp_path / "train-00000-of-00001.parquet"))
    stream = ColorizationStream(str(tmp_path), crop_size=32, train=False, skip_gray=False)
    assert len(list(stream)) == 4 and stream.stats.undecodable == 1 and stream.stats.skipped_keys == ["bad.jpg"]


def test_bad_sources_give_one_line_errors(photo_folder, tmp_path):
    with pytest.raises(DataSourceError, match="no images"):
        ColorizationStream(str(tmp_path), crop_size=32)
    with pytest.raises(DataSourceError, match="no files match"):
        ColorizationStream(str(tmp_path / "*.parquet"), crop_size=32)
    pack_folder(str(photo_folder), str(tmp_path / "packed"), max_side=64, progress=False)
    with pytest.raises(DataSourceError, match="no column 'photo'"):
        ColorizationStream(str(tmp_path / "packed"), image_column="photo", crop_size=32)
    with pytest.raises(DataSourceError, match="cannot open dataset") as err:
        ColorizationStream("no-such-user/no-such-dataset-xyz", crop_size=32)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("n_files", [20, 21])  # shards divisible by 2 (whole shards) and not (interleaved)
def test_sharding_across_ranks_is_disjoint_and_complete(photo_folder, tmp_path, n_files):
    folder = tmp_path / "src"
    shutil.copytree(photo_folder, folder)
    for f in folder.glob("zz_*"):
        f.unlink()
    if n_files == 21:  # one more colour image makes the shard count odd
        Image.open(sorted(folder.glob("n*.jpg"))[0]).transpose(Image.FLIP_TOP_BOTTOM).save(folder / "extra.jpg")
    per_rank = []
    for rank in range(2):
        s = ColorizationStream(str(folder), crop_size=32, seed=3, rank=rank, world_size=2, train=True, shuffle_buffer=8)
        it = iter(s)
        keys = []
        while s.epoch == 0:
            item = next(it)
            if s.epoch == 0:
                keys.append(item["key"])
        per_rank.append(keys)
    a, b = set(per_rank[0]), set(per_rank[1])
    colour_total = 18 + (1 if n_files == 21 else 0)
    assert not (a & b)
    assert len(per_rank[0]) + len(per_rank[1]) <= colour_total + 1  # epoch boundary may pull one item early
    assert len(a | b) >= colour_total - 1


def test_stream_resume_reproduces_the_same_crops(photo_folder):
    ref = ColorizationStream(str(photo_folder), crop_size=40, seed=7, shuffle_buffer=8)
    it = iter(ref)
    first = [next(it) for _ in range(25)]  # crosses an epoch boundary (18 usable images per epoch)
    state_after_10 = None
    probe = ColorizationStream(str(photo_folder), crop_size=40, seed=7, shuffle_buffer=8)
    pit = iter(probe)
    for _ in range(10):
        next(pit)
    state_after_10 = probe.state_dict()
    resumed = ColorizationStream(str(photo_folder), crop_size=40, seed=7, shuffle_buffer=8)
    resumed.load_state_dict(state_after_10)
    rit = iter(resumed)
    for expected in first[10:]:
        got = next(rit)
        assert got["key"] == expected["key"]
        assert torch.equal(got["rgb"], expected["rgb"])


def test_lab_batch_matches_skimage_per_image(photo_folder):
    stream = ColorizationStream(str(photo_folder), crop_size=48, train=False)
    batch = next(batches(iter(stream), 4))
    pixel_values, ab = lab_batch(batch["rgb"])
    assert pixel_values.shape == (4, 1, 48, 48) and ab.shape == (4, 2, 48, 48)
    for i in range(4):
        ref = color.rgb2lab(batch["rgb"][i].permute(1, 2, 0).numpy())
        assert np.abs(ab[i].permute(1, 2, 0).numpy() - ref[..., 1:]).max() < 1e-3
        assert np.abs(pixel_values[i, 0].numpy() * 100 + 50 - ref[..., 0]).max() < 1e-3


# --------------------------------------------------------------------------------------------------
# Generated photos (no ../shared needed): extensions, pack / estimate-prior / fit-palette commands
# --------------------------------------------------------------------------------------------------
def make_colour_images(folder, n=8, size=48, ext=".jpg"):
    """`n` smooth, saturated colour images (different hues) written into `folder`; returns their paths."""
    folder = os.fspath(folder)
    os.makedirs(folder, exist_ok=True)
    yy, xx = np.mgrid[0:size, 0:size] / size
    paths = []
    for i in range(n):
        phase = 2 * np.pi * i / max(n, 1)
        rgb = np.stack([0.5 + 0.5 * np.sin(phase + 6 * xx), 0.5 + 0.5 * np.sin(phase + 2 + 5 * yy),
                        0.5 + 0.5 * np.sin(phase + 4 + 4 * (xx + yy))], axis=-1)
        path = os.path.join(folder, f"img{i:02d}{ext}")
        Image.fromarray((rgb * 255).astype(np.uint8)).save(path, format=Image.registered_extensions()[ext])
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def generated_folder(tmp_path_factory):
    """10 colour images (.jpg, and one each .jfif and .avif, the extensions `colorize` accepts too), a
    corrupt .jpg and a hidden file."""
    folder = tmp_path_factory.mktemp("generated")
    make_colour_images(folder, 8)
    Image.init()  # registers the AVIF writer where Pillow has one
    Image.open(folder / "img00.jpg").save(folder / "extra.jfif", format="JPEG")
    if "AVIF" in Image.SAVE:
        Image.open(folder / "img01.jpg").save(folder / "extra.avif", format="AVIF")
    (folder / "zz_broken.jpg").write_bytes(b"\xff\xd8\xff not really a JPEG")
    (folder / ".hidden.jpg").write_bytes((folder / "img02.jpg").read_bytes())
    return folder


def test_training_data_accepts_every_image_extension(generated_folder):
    from hf_colorize.common import IMAGE_EXTENSIONS, is_image_file
    from hf_colorize.training.data import IMAGE_EXTENSIONS as DATA_EXTENSIONS
    from hf_colorize.training.data import list_image_files

    assert DATA_EXTENSIONS is IMAGE_EXTENSIONS and {".jfif", ".avif"} <= IMAGE_EXTENSIONS
    names = [os.path.basename(p) for p in list_image_files(str(generated_folder))]
    assert "extra.jfif" in names and ".hidden.jpg" not in names
    assert all(is_image_file(n) for n in names)
    if (generated_folder / "extra.avif").exists():
        assert "extra.avif" in names
    stream = ColorizationStream(str(generated_folder), crop_size=32, train=False)
    keys = _keys(stream)
    assert "extra.jfif" in keys and stream.stats.undecodable == 1  # the broken one, counted and skipped


def test_pack_cli_reports_each_bad_file_in_one_line_and_goes_on(generated_folder, tmp_path, capsys):
    out = tmp_path / "packed"
    code, stdout, err = run_cli(["pack", str(generated_folder), str(out), "--max-side", "32", "--holdout-every", "4"], capsys)
    assert code == 1  # a file failed; the others are packed
    assert err == [f"hf-colorize pack: error: {generated_folder / 'zz_broken.jpg'}: "
                   + err[0].split("zz_broken.jpg: ", 1)[1]] and "(skipped)" in err[0], err
    assert "train:" in stdout and "test:" in stdout and "1 skipped" in stdout
    shards = sorted(os.listdir(out))
    assert shards and all(f.endswith(".parquet") and not f.startswith(".") for f in shards)
    keys = set(_keys(ColorizationStream(str(out), split="train", crop_size=32, train=False)))
    keys |= set(_keys(ColorizationStream(str(out), split="test", crop_size=32, train=False)))
    assert "extra.jfif" in keys and len(keys) == len(os.listdir(generated_folder)) - 2
    # packing into the same folder again would mix two packs' shards: refused (exit 2), unless --overwrite
    code, _, err = run_cli(["pack", str(generated_folder), str(out)], capsys)
    assert code == 2 and len(err) == 1 and "already holds parquet shards" in err[0]
    code, _, err = run_cli(["pack", str(generated_folder), str(out), "--overwrite", "--shard-size", "100"], capsys)
    assert code == 1 and sorted(os.listdir(out)) == ["train-00000-of-00001.parquet"]


@pytest.mark.parametrize("argv, code, expected", [
    (["pack", "{src}", "{out}", "--quality", "101"], 2, "argument --quality: must be in 1..100"),
    (["pack", "{src}", "{out}", "--holdout-every", "1"], 2, "holdout_every must be 0"),
    (["pack", "{src}", "{out}", "--validation-every", "1"], 2, "validation_every must be 0"),
    (["pack", "{src}", "{file}"], 2, "exists and is not a folder"),
    (["pack", "{missing}", "{out}"], 1, "no such folder"),
    (["pack", "{empty}", "{out}"], 1, "no images found"),
    (["estimate-prior", "{src}", "-o", "{out}/p.safetensors", "--max-images", "0"], 2, "argument --max-images: must be >= 1"),
    (["estimate-prior", "{src}", "-o", "{empty}"], 2, "is a folder"),
    (["estimate-prior", "{src}", "-o", "{out}/p.safetensors", "--crop-size", "30"], 2, "must be a multiple of 8"),
    (["estimate-prior", "{src}", "-o", "p.safetensors", "--bins", "{missing}"], 2, "--bins"),
    (["estimate-prior", "{missing}", "-o", "{tmp}/p.safetensors"], 1, "{missing}: no such folder"),
    (["fit-palette", "{src}", "-o", "{tmp}/k.safetensors", "-k", "1"], 2, "argument -k/--num-bins: must be >= 2"),
    (["fit-palette", "{src}", "-o", "{out}/k.safetensors"], 2, "does not exist"),
    (["fit-palette", "{empty}", "-o", "{tmp}/k.safetensors"], 1, "folder contains no images"),
    (["fit-palette", "{src}", "-o", "{tmp}/k.safetensors", "-k", "100000", "--max-images", "2"], 1, "need at least 100000 ab samples"),
])
def test_data_commands_fail_in_one_line_with_their_exit_code(argv, code, expected, generated_folder, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "file.txt").write_text("x")
    names = {"src": str(generated_folder), "out": str(tmp_path / "out"), "file": str(tmp_path / "file.txt"),
             "missing": str(tmp_path / "missing"), "empty": str(tmp_path / "empty"), "tmp": str(tmp_path)}
    got, _, err = run_cli([a.format(**names) for a in argv], capsys)
    command = argv[0]
    assert got == code and len(err) == 1, err
    assert err[0].startswith(f"hf-colorize {command}: error: ") and expected.format(**names) in err[0], err
    assert not (tmp_path / "out").exists() and os.listdir(tmp_path / "empty") == []
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".safetensors") or f.startswith(".")]


def test_prior_and_palette_commands_write_safetensors_without_a_bar_off_a_terminal(generated_folder, tmp_path, capsys):
    from hf_colorize.training.palette import load_palette
    from hf_colorize.training.priors import load_prior

    code, out, err = run_cli(["fit-palette", str(generated_folder), "-o", str(tmp_path / "k.safetensors"), "-k", "16",
                           "--size", "32", "--max-images", "4"], capsys)  # --size: the old spelling of --crop-size
    assert code == 0 and err == [] and "16 palette bins" in out  # stderr is not a terminal: no bar
    bins = load_palette(tmp_path / "k.safetensors")
    assert bins.shape == (16, 2)
    code, out, err = run_cli(["estimate-prior", str(generated_folder), "-o", str(tmp_path / "p.safetensors"),
                           "--bins", str(tmp_path / "k.safetensors"), "--crop-size", "32"], capsys)
    from hf_colorize.training.data import list_image_files

    usable = len(list_image_files(str(generated_folder))) - 1  # all but the broken one
    assert code == 0 and err == [] and f"prior over 16 bins from {usable} images" in out and "1 undecodable" in out, out
    prior = load_prior(tmp_path / "p.safetensors", bins)
    assert torch.isclose(prior.sum(), torch.tensor(1.0)) and (prior > 0).all()
    assert sorted(os.listdir(tmp_path)) == ["k.safetensors", "p.safetensors"]  # no temporaries left
    # --progress draws the bar even off a terminal
    code, _, err = run_cli(["estimate-prior", str(generated_folder), "-o", str(tmp_path / "p2.safetensors"),
                         "--crop-size", "32", "--progress"], capsys)
    assert code == 0 and "prior" in "\n".join(err)
