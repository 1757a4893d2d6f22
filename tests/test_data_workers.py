"""`ColorizationStream(num_workers=N)` (`hf-colorize train --num-workers N`): decoding and cropping in
DataLoader workers gives the same stream, item for item, as in-process decoding, for any N (more
workers than shards included), resumes exactly (also with another N), skips and counts bad, gray and
tiny files, and reports a dead worker in one line."""

import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from hf_colorize.common import DataSourceError
from hf_colorize.training import data as data_module
from hf_colorize.training.data import ColorizationStream, pack_folder
from test_data import photo_folder  # noqa: F401  (a fixture)


@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory, photo_folder):
    """test_data's photo folder (18 real colour photos, 2 gray, a truncated file and a text file named .jpg)
    plus a tiny colour image and a huge-header PNG; and the same packed into 5 parquet shards."""
    from test_space import bomb_png

    folder = tmp_path_factory.mktemp("mixed")
    for path in photo_folder.iterdir():
        shutil.copy(path, folder / path.name)
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (12, 20, 3), dtype=np.uint8)).save(folder / "zz_tiny.png")
    bomb_png(folder / "zz_huge.png")
    packed = tmp_path_factory.mktemp("mixed_packed")
    # pack re-encodes (the huge and broken files are dropped there): the raw folder keeps them for the stream
    pack_folder(str(folder), str(packed), max_side=96, shard_size=5, progress=False)
    return folder, packed


def _take(stream, n):
    out = []
    for item in stream:
        out.append((item["key"], item["rgb"]))
        if len(out) == n:
            return out
    return out


def _same(a, b):
    return [k for k, _ in a] == [k for k, _ in b] and all(torch.equal(x, y) for (_, x), (_, y) in zip(a, b))


@pytest.mark.parametrize("source", ["folder", "packed"])
def test_workers_give_the_same_stream_as_in_process_decoding(mixed_folder, source, monkeypatch):
    import datasets

    path = str(mixed_folder[0] if source == "folder" else mixed_folder[1])
    # a parquet stream pauses 5 s at each epoch's end (an arrow workaround, negligible for real epochs;
    # with 19-record epochs and the DataLoader reading ahead it would take most of this test)
    monkeypatch.setattr(datasets.config, "SLEEP_TIME_ON_THREADS_SHUTDOWN", 0)
    counts, size = ((0, 1, 3, 7), 40) if source == "folder" else ((0, 2, 7), 40)
    streams = {n: ColorizationStream(path, crop_size=32, seed=3, shuffle_buffer=8, num_workers=n) for n in counts}
    taken = {n: _take(s, size) for n, s in streams.items()}  # more than two epochs of 18
    assert len(taken[0]) == size and len({k for k, _ in taken[0]}) == 18
    for n in counts[1:]:  # 7 workers for 4 shards (and for a folder of 22 files)
        assert _same(taken[n], taken[0]), n
        assert streams[n].state_dict() == streams[0].state_dict()
    stats = streams[0].stats
    if source == "folder":
        assert stats.undecodable >= 6 and stats.grayscale >= 4 and stats.tiny >= 2  # per epoch: 3, 2 and 1
        assert {"zz_text.jpg", "zz_truncated.jpg", "zz_huge.png"} <= set(stats.skipped_keys)


def test_resume_with_another_number_of_workers_continues_exactly(mixed_folder):
    path = str(mixed_folder[0])
    reference = _take(ColorizationStream(path, crop_size=32, seed=1, shuffle_buffer=8), 30)
    first = ColorizationStream(path, crop_size=32, seed=1, shuffle_buffer=8, num_workers=2)
    head = _take(first, 11)
    resumed = ColorizationStream(path, crop_size=32, seed=1, shuffle_buffer=8, num_workers=3)
    resumed.load_state_dict(first.state_dict())
    assert _same(head + _take(resumed, 19), reference)


def test_eval_stream_with_workers_ends_after_one_pass(mixed_folder):
    path = str(mixed_folder[1])
    once = [k for k, _ in _take(ColorizationStream(path, crop_size=32, train=False), 100)]
    with_workers = [k for k, _ in _take(ColorizationStream(path, crop_size=32, train=False, num_workers=3), 100)]
    assert with_workers == once and len(once) == 19  # 18 colour + the tiny one (eval crops it); gray skipped


def test_a_folder_with_no_usable_image_fails_in_one_line(tmp_path):
    for i in range(3):
        Image.new("L", (64, 64), 40 * i).save(tmp_path / f"gray{i}.png")
    for workers in (0, 2):
        with pytest.raises(DataSourceError) as err:
            _take(ColorizationStream(str(tmp_path), crop_size=32, num_workers=workers), 1)
        assert str(err.value) == ("the stream yielded no usable colour images "
                                  "(3 records: 0 undecodable, 3 grayscale, 0 tiny)")


def test_a_dead_worker_is_reported_in_one_line(mixed_folder, monkeypatch):
    decode = data_module.decode_record_image

    def dies_on_one_file(record, *args, **kwargs):
        if "zz_tiny" in str(record.get("key")) and torch.utils.data.get_worker_info() is not None:
            os._exit(3)  # the worker process dies (as if killed): no exception to pass on
        return decode(record, *args, **kwargs)

    monkeypatch.setattr(data_module, "decode_record_image", dies_on_one_file)  # inherited by forked workers
    stream = ColorizationStream(str(mixed_folder[0]), crop_size=32, num_workers=2)
    with pytest.raises(DataSourceError) as err:
        _take(stream, 100)
    message = str(err.value)
    assert message.startswith("a data worker died (") and "\n" not in message
    assert message.endswith("the run can resume from its last checkpoint (run the same command again)")


def test_a_worker_dying_mid_training_stops_the_run_in_one_line_and_it_resumes(colour_folder, tmp_path, capsys,
                                                                               monkeypatch):
    """A worker killed while the trainer is busy (torch then raises from its SIGCHLD handler, anywhere in
    the step, or fails on a queued item's connection): one line, exit 1, and the same command resumes."""
    import threading

    from cli_helpers import run_cli
    from hf_colorize.training.loop import list_checkpoints

    decode = data_module.decode_record_image
    decoded = []

    def dies_soon(record, *args, **kwargs):
        if torch.utils.data.get_worker_info() is not None:
            decoded.append(1)  # per worker process (each has its own copy of `decoded`)
            if len(decoded) == 40:  # past the first checkpoints (20 records each), whatever the machine's load;
                threading.Timer(0.05, os._exit, (3,)).start()  # it dies just after, while the trainer works
        return decode(record, *args, **kwargs)

    command = ["train", "--dataset", str(colour_folder), "--output-dir", str(tmp_path / "run"), "--width", "0.125",
               "--crop-size", "32", "--batch-size", "4", "--max-steps", "400", "--checkpoint-every", "5",
               "--prior-images", "8", "--shuffle-buffer", "4", "--report-to", "none", "--no-progress",
               "--num-workers", "2"]
    monkeypatch.setattr(data_module, "decode_record_image", dies_soon)  # inherited by forked workers
    code, _, err = run_cli(command, capsys)
    assert code == 1 and len(err) == 1, err
    assert err[0].startswith("hf-colorize train: error: a data worker died (")
    assert err[0].endswith("(run the same command again)")
    assert list_checkpoints(tmp_path / "run"), "the worker died before the first checkpoint: the test proves nothing"
    monkeypatch.setattr(data_module, "decode_record_image", decode)
    code, stdout, err = run_cli(command[:command.index("400")] + ["40"] + command[command.index("400") + 1:], capsys)
    assert code == 0, err
    assert "resumed from" in stdout
    assert (tmp_path / "run" / "final" / "model.safetensors").is_file()


def test_an_error_inside_a_worker_comes_back_as_one_line(mixed_folder, monkeypatch):
    def broken(record, *args, **kwargs):
        raise KeyError("boom")

    monkeypatch.setattr(data_module, "decode_record_image", broken)
    with pytest.raises(DataSourceError, match=r"^data worker \d: KeyError: 'boom'$"):
        _take(ColorizationStream(str(mixed_folder[0]), crop_size=32, num_workers=2), 1)


def test_bad_number_of_workers():
    for bad in (-1, 1.5, True):
        with pytest.raises(Exception, match="num_workers must be an integer >= 0"):
            ColorizationStream("unused", num_workers=bad)


def test_training_gives_the_same_weights_with_any_number_of_workers(colour_folder, tmp_path, capsys):
    from safetensors.torch import load_file

    from cli_helpers import run_cli

    weights = []
    for workers in ("0", "2"):
        out = tmp_path / f"w{workers}"
        code, stdout, err = run_cli(["train", "--dataset", str(colour_folder), "--output-dir", str(out), "--width", "0.125",
                                     "--crop-size", "32", "--batch-size", "4", "--max-steps", "3", "--log-every", "3",
                                     "--prior-images", "8", "--shuffle-buffer", "4", "--report-to", "none",
                                     "--no-progress", "--num-workers", workers], capsys)
        assert code == 0, err
        assert "data_wait=" in stdout  # the share of the run spent waiting for data
        weights.append(load_file(out / "final" / "model.safetensors"))
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    code, _, err = run_cli(["train", "--dataset", str(colour_folder), "--output-dir", str(tmp_path / "bad"),
                            "--num-workers", "65"], capsys)
    assert code == 2 and err == ["hf-colorize train: error: --num-workers must be an integer in 0..64, got 65"], err
