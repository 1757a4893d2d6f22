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

from hf_colorize.data import (
    ColorizationStream,
    DataSourceError,
    batches,
    lab_batch,
    pack_folder,
)


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory, imagenet_files):
    """20 real photos (incl. 2 grayscale ones) plus one corrupt file and one text file named .jpg."""
    folder = tmp_path_factory.mktemp("photos")
    colour = [p for p in imagenet_files[:60] if Image.open(p).mode == "RGB"][:18]
    gray = [p for p in imagenet_files if Image.open(p).mode == "L"][:2]
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
