"""`colorize-dataset` on several processes (torchrun, accelerate launch; 2 CPU processes), killed and
resumed, and on a folder of videos. Real subprocesses, so these are slow."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from cli_helpers import run_cli
from test_colorize_dataset import check_every_key_once, make_archive, manifest, read_rows, run_quietly

pytestmark = pytest.mark.slow

JOB = ["--shard-size", "4", "--batch-size", "2", "--no-progress"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]


def _free_port() -> str:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


# `accelerate launch --cpu --num_processes 2` would start ONE process: --multi_gpu + ACCELERATE_USE_CPU
ACCELERATE = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", _free_port()]


def launch(launcher, args, env=None, **kw):
    return subprocess.run([*launcher, "-m", "hf_colorize", "colorize-dataset", *map(str, args)], env=env or ENV,
                          capture_output=True, text=True, timeout=600, **kw)


def shard_writers(out_dir) -> dict:
    state = os.path.join(out_dir, "state")
    return {json.load(open(os.path.join(state, f)))["shard"]: json.load(open(os.path.join(state, f)))["written_by"]["rank"]
            for f in sorted(os.listdir(state)) if f.startswith("shard-")}


@pytest.fixture(scope="module")
def archive(tmp_path_factory, many_photo_files):
    """The 40 photos and 3 corrupt files: 43 items, 11 shards of 4."""
    folder = tmp_path_factory.mktemp("archive") / "scans"
    return folder, make_archive(folder, many_photo_files)


@pytest.fixture(scope="module")
def reference(archive, tiny_model_dir, tmp_path_factory):
    """The single-process result (in this process), with this module's shard and batch sizes."""
    out = tmp_path_factory.mktemp("reference") / "out"
    code, err = run_quietly(["colorize-dataset", archive[0], "-o", out, "--model", tiny_model_dir, *JOB])
    assert code == 0, err
    return out


@pytest.mark.parametrize("launcher", ["torchrun", "accelerate"])
def test_two_processes_give_the_rows_and_pixels_of_one(launcher, archive, reference, tiny_model_dir, tmp_path):
    folder, keys = archive
    out = tmp_path / "out"
    env = {**ENV, "ACCELERATE_USE_CPU": "true"} if launcher == "accelerate" else ENV
    done = launch(TORCHRUN if launcher == "torchrun" else ACCELERATE,
                  [folder, "-o", out, "--model", tiny_model_dir, *JOB], env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = [line for line in done.stderr.splitlines() if "done," in line]
    assert len(summary) == 1 and "40 done, 0 skipped (already done), 3 failed" in summary[0] and "2 processes" in summary[0]
    check_every_key_once(out, keys)
    assert read_rows(out) == read_rows(reference)  # same rows, same encoded pixels
    assert manifest(out)["failures"] == manifest(reference)["failures"]
    assert shard_writers(out) == {i: i % 2 for i in range(11)}  # shard i was written by rank i % 2
    assert shard_writers(reference) == {i: 0 for i in range(11)}


def test_a_killed_run_resumes_with_every_key_exactly_once(archive, reference, tiny_model_dir, tmp_path):
    """SIGKILL both ranks of a 2-process run mid-way, then rerun on 1 process: finished shards kept, no
    row twice, none missing, the same rows as an uninterrupted run."""
    folder, keys = archive
    out = tmp_path / "out"
    cmd = [*TORCHRUN, "-m", "hf_colorize", "colorize-dataset", str(folder), "-o", str(out), "--model",
           str(tiny_model_dir), *JOB]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    data = out / "data"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if data.is_dir() and len([f for f in os.listdir(data) if f.endswith(".parquet") and not f.startswith(".")]) >= 2:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be killed: " + proc.stderr.read()[-2000:]
    import psutil

    # torchrun starts its workers in sessions of their own: kill them (and torchrun) one by one
    victims = psutil.Process(proc.pid).children(recursive=True) + [psutil.Process(proc.pid)]
    for victim in victims:
        victim.send_signal(signal.SIGKILL)
    psutil.wait_procs(victims, timeout=30)
    proc.wait()
    proc.stderr.close()
    finished = sorted(f for f in os.listdir(data) if f.endswith(".parquet") and not f.startswith("."))
    assert 2 <= len(finished) < 11 and not (out / "manifest.json").exists()
    import pyarrow.parquet as pq

    for name in finished:  # what looks finished is complete and readable
        pq.read_table(data / name)

    code = subprocess.run([sys.executable, "-m", "hf_colorize", "colorize-dataset", str(folder), "-o", str(out),
                           "--model", str(tiny_model_dir), *JOB], env=ENV, capture_output=True, text=True, timeout=600)
    assert code.returncode == 0, code.stderr[-3000:]
    summary = code.stderr.strip().splitlines()[-1]
    done, skipped, failed = map(int, re.search(r"(\d+) done, (\d+) skipped \(already done\), (\d+) failed", summary).groups())
    # the finished shards (4 items each) were kept, the rest done now
    assert skipped == sum(3 if name == "shard-00010.parquet" else 4 for name in finished), summary
    assert done + skipped + failed == 43, summary
    check_every_key_once(out, keys)
    assert read_rows(out) == read_rows(reference)
    assert [f for f in os.listdir(data) if f.startswith(".")] == []  # the killed ranks' temporaries are gone


# --------------------------------------------------------------------------------------------------
# Video archives
# --------------------------------------------------------------------------------------------------
def test_a_video_folder_is_split_by_file_keeps_audio_and_resumes(photo_paths, tiny_model_dir, tmp_path, capsys):
    from hf_colorize.video.clips import gray_frame, make_clip, render_frames
    from hf_colorize.video.io import VideoReader
    from test_video_io import write_video

    reels = tmp_path / "reels"
    reels.mkdir()
    for i, name in enumerate(["a.mp4", "b.mkv", "c.mp4"]):
        frames = [gray_frame(f) for f in render_frames(make_clip("pan", [photo_paths[i]], 8, 96, 64))]
        write_video(reels / name, frames, audio_seconds=0.4 if name != "b.mkv" else 0.0)
    (reels / "d_broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(2000))
    out = tmp_path / "out"
    done = launch(TORCHRUN, [reels, "-o", out, "--model", tiny_model_dir, "--batch-size", "4", "--no-progress"])
    assert done.returncode == 0, done.stderr[-3000:]
    assert "3 done, 0 skipped (already done), 1 failed" in done.stderr and "d_broken.mp4" in done.stderr
    m = manifest(out)
    assert m["kind"] == "videos" and m["counts"]["colorized"] == 3 and m["counts"]["failed"] == 1
    assert [f["key"] for f in m["failures"]] == ["d_broken.mp4"] and m["failures"][0]["reason"]
    assert sorted(v["key"] for v in m["videos"]) == ["a.mp4", "b.mkv", "c.mp4"]
    writers = {json.load(open(out / "state" / f))["key"]: json.load(open(out / "state" / f))["written_by"]["rank"]
               for f in os.listdir(out / "state") if f.startswith("video-")}
    assert writers == {"a.mp4": 0, "b.mkv": 1, "c.mp4": 0, "d_broken.mp4": 1}  # video i on rank i % 2
    for name, audio in (("a.mp4", "aac"), ("b.mkv", None), ("c.mp4", "aac")):
        with VideoReader(str(out / "videos" / name)) as reader:
            assert reader.info.audio == audio and len(list(reader)) == 8
    assert all(v["temporal"] for v in m["videos"])

    # resume: a video whose sidecar is missing (killed before it) is redone, the others are kept
    kept = os.stat(out / "videos" / "a.mp4").st_mtime_ns
    os.remove(out / "state" / "video-00002.json")
    code, _, err = run_cli(["colorize-dataset", reels, "-o", out, "--model", tiny_model_dir, "--batch-size", "4",
                            "--no-progress"], capsys)
    assert code == 0 and err[-1].startswith("hf-colorize colorize-dataset: 1 done, 3 skipped (already done), 0 failed"), err
    assert os.stat(out / "videos" / "a.mp4").st_mtime_ns == kept
    assert manifest(out)["counts"] == m["counts"]
    code, _, err = run_cli(["colorize-dataset", reels, "-o", out, "--model", tiny_model_dir, "--batch-size", "4",
                            "--no-temporal"], capsys)
    assert code == 2 and "different settings" in err[-1]
