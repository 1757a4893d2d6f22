"""`hf-colorize train` end to end on a streamed parquet dataset of real photos: export, checkpoints,
kill-and-resume, two data-parallel CPU processes, and a disk-full checkpoint."""

import errno
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from hf_colorize.data import pack_folder
from hf_colorize.train import list_checkpoints

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def packed(tmp_path_factory, imagenet_files):
    """40 real photos (long side 96) packed into 4 train shards + a test split."""
    folder = tmp_path_factory.mktemp("train_photos")
    for p in imagenet_files[:44]:
        with Image.open(p) as im:
            im.thumbnail((96, 96))
            im.save(folder / (p.stem + ".jpg"), quality=90)
    out = tmp_path_factory.mktemp("packed")
    pack_folder(str(folder), str(out), max_side=96, shard_size=10, holdout_every=11, progress=False)
    return str(out)


def _args(packed, out, steps=16, every=4, extra=()):
    return ["train", "--dataset", packed, "--eval-split", "test", "--eval-images", "4", "--width", "0.125",
            "--crop-size", "32", "--batch-size", "4", "--max-steps", str(steps), "--warmup-steps", "2",
            "--checkpoint-every", str(every), "--eval-every", str(every), "--checkpoints-total-limit", "2",
            "--prior-images", "16", "--shuffle-buffer", "8", "--output-dir", str(out), "--no-progress", *extra]


def _env():
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", PYTHONPATH=ROOT)
    return env


def _weights(path):
    return load_file(os.path.join(path, "model.safetensors"))


def test_train_end_to_end_exports_a_loadable_model(packed, tmp_path):
    from hf_colorize.cli import main

    assert main(_args(packed, tmp_path / "run", steps=8, every=4, extra=("--export-size", "144"))) == 0
    final = tmp_path / "run" / "final"
    from transformers import AutoImageProcessor, AutoModel

    model = AutoModel.from_pretrained(final)
    assert type(model).__name__ == "ColorizationModel"
    # the exported input size is the processor's and the config's (video and evaluation read the config)
    assert AutoImageProcessor.from_pretrained(final).size == 144 and model.config.image_size == 144
    # the prior estimated from the stream is stored with the model and is not uniform
    assert not torch.allclose(model.bin_prior, torch.full_like(model.bin_prior, 1 / 313))
    assert torch.isclose(model.bin_prior.sum(), torch.tensor(1.0), atol=1e-4)
    # retention limit: only the newest 2 complete checkpoints remain, no temporary folders
    ckpts = list_checkpoints(tmp_path / "run")
    assert [os.path.basename(c) for c in ckpts] == ["checkpoint-4", "checkpoint-8"]
    assert not [d for d in os.listdir(tmp_path / "run" / "checkpoints") if d.startswith(".tmp")]
    assert json.load(open(os.path.join(ckpts[-1], "trainer_state.json")))["step"] == 8
    # tensorboard logs were written
    logs = [f for r, _, fs in os.walk(tmp_path / "run") for f in fs if f.startswith("events.out.tfevents")]
    assert logs


def test_killed_run_resumes_exactly(packed, tmp_path):
    """Kill the run twice at checkpoints, resume each time: same final step and the same weights as an
    uninterrupted run (step counter, optimizer, scheduler, RNG and data position all restored)."""
    cmd = [sys.executable, "-m", "hf_colorize.cli"]
    subprocess.run(cmd + _args(packed, tmp_path / "ref", steps=12, every=4), check=True, env=_env(),
                   capture_output=True, timeout=600)
    run_dir = tmp_path / "killed"
    for kill_after in ("checkpoint-4", "checkpoint-8"):
        proc = subprocess.Popen(cmd + _args(packed, run_dir, steps=12, every=4), env=_env(),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 300
        while not os.path.isdir(run_dir / "checkpoints" / kill_after) and time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert os.path.isdir(run_dir / "checkpoints" / kill_after)
        assert not os.path.exists(run_dir / "final")
    done = subprocess.run(cmd + _args(packed, run_dir, steps=12, every=4), env=_env(), capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "resumed from" in done.stdout + done.stderr
    assert json.load(open(run_dir / "checkpoints" / "checkpoint-12" / "trainer_state.json"))["step"] == 12
    ref, got = _weights(tmp_path / "ref" / "final"), _weights(run_dir / "final")
    assert ref.keys() == got.keys()
    for k in ref:
        assert torch.equal(ref[k], got[k]), k


def test_two_cpu_processes_data_parallel(packed, tmp_path):
    """torchrun with 2 gloo processes: each rank streams disjoint samples; weights end identical."""
    log = tmp_path / "samples"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "hf_colorize.cli"] + _args(packed, tmp_path / "ddp", steps=4, every=0, extra=["--log-samples", str(log)])
    cmd = [c for c in cmd if c != "--eval-split" and c != "test"]
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [open(f"{log}.rank{r}").read().split() for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == 16  # 4 steps x batch 4 per rank
    assert not set(ranks[0]) & set(ranks[1])  # disjoint: 32 distinct photos < one epoch (36 colour photos)
    prints = [json.load(open(f"{log}.rank{r}.json")) for r in range(2)]
    assert prints[0]["step"] == prints[1]["step"] == 4
    assert prints[0]["checksum"] == prints[1]["checksum"] and prints[0]["abs_sum"] == prints[1]["abs_sum"]


def test_disk_full_while_checkpointing_keeps_earlier_checkpoints(packed, tmp_path, monkeypatch, capsys):
    from accelerate import Accelerator

    from hf_colorize.cli import main

    real_save = Accelerator.save_state
    calls = {"n": 0}

    def flaky_save(self, output_dir=None, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:  # the second checkpoint hits a full disk half-way
            os.makedirs(output_dir, exist_ok=True)
            open(os.path.join(output_dir, "model.safetensors"), "wb").write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(self, output_dir, **kwargs)

    monkeypatch.setattr(Accelerator, "save_state", flaky_save)
    code = main(_args(packed, tmp_path / "full", steps=12, every=4))
    err = capsys.readouterr().err
    assert code == 1
    line = [l for l in err.splitlines() if "error:" in l]
    assert line and "No space left on device" in line[0] and "checkpoint-4" in line[0]
    ckpts = list_checkpoints(tmp_path / "full")
    assert [os.path.basename(c) for c in ckpts] == ["checkpoint-4"]
    assert not [d for d in os.listdir(tmp_path / "full" / "checkpoints") if d.startswith(".tmp")]
    assert load_file(os.path.join(ckpts[0], "model.safetensors"))  # the kept checkpoint is intact


def test_bad_dataset_gives_one_line_error(tmp_path, capsys):
    from hf_colorize.cli import main

    assert main(["train", "--dataset", str(tmp_path / "missing"), "--output-dir", str(tmp_path / "o"),
                 "--report-to", "none"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing" in err[0] and err[0].startswith("hf-colorize: error:")
