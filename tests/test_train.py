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

from cli_helpers import run_cli
from hf_colorize.training.data import pack_folder
from hf_colorize.training.loop import list_checkpoints

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def packed(tmp_path_factory, many_photo_files):
    """40 real photos (long side 96) packed into 4 train shards + a test split."""
    folder = tmp_path_factory.mktemp("train_photos")
    for p in many_photo_files[:44]:
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_killed_run_resumes_exactly(packed, tmp_path):
    """Kill the run twice at checkpoints, resume each time: same final step and the same weights as an
    uninterrupted run (step counter, optimizer, scheduler, RNG and data position all restored)."""
    cmd = [sys.executable, "-m", "hf_colorize"]
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


@pytest.mark.slow
def test_two_cpu_processes_data_parallel(packed, tmp_path):
    """torchrun with 2 gloo processes: each rank streams disjoint samples; weights end identical."""
    log = tmp_path / "samples"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "hf_colorize"] + _args(packed, tmp_path / "ddp", steps=4, every=0, extra=["--log-samples", str(log)])
    cmd = [c for c in cmd if c != "--eval-split" and c != "test"] + ["--checkpoint-every", "4"]  # one, at the end
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    # the checkpoint is written by both ranks into the main process's temporary folder, then renamed
    (ckpt,) = list_checkpoints(tmp_path / "ddp")
    assert {"stream_state_0.json", "stream_state_1.json", "trainer_state.json"} <= set(os.listdir(ckpt))
    assert json.load(open(os.path.join(ckpt, "trainer_state.json"))) == {"step": 4, "num_processes": 2}
    assert [d for d in os.listdir(tmp_path / "ddp" / "checkpoints") if d.startswith(".")] == []
    ranks = [open(f"{log}.rank{r}").read().split() for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == 16  # 4 steps x batch 4 per rank
    assert not set(ranks[0]) & set(ranks[1])  # disjoint: 32 distinct photos < one epoch (36 colour photos)
    prints = [json.load(open(f"{log}.rank{r}.json")) for r in range(2)]
    assert prints[0]["step"] == prints[1]["step"] == 4
    assert prints[0]["checksum"] == prints[1]["checksum"] and prints[0]["abs_sum"] == prints[1]["abs_sum"]


@pytest.mark.slow
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
    assert len(err) == 1 and "missing" in err[0] and err[0].startswith("hf-colorize train: error:")


# --------------------------------------------------------------------------------------------------
# Checks before training, one-line errors and exit codes (generated photos: no ../shared needed)
# --------------------------------------------------------------------------------------------------
def _quick(dataset, out, *extra):
    return ["train", "--dataset", str(dataset), "--output-dir", str(out), "--width", "0.125", "--crop-size", "32",
            "--batch-size", "4", "--max-steps", "2", "--warmup-steps", "1", "--prior-images", "8",
            "--shuffle-buffer", "4", "--report-to", "none", *extra]


@pytest.mark.parametrize("extra, code, expected", [
    (["--push-to-hub"], 2, "--push-to-hub needs --hub-model-id USER/NAME"),
    (["--push-to-hub", "--hub-model-id", "no-namespace"], 2, "--hub-model-id 'no-namespace' must look like user/name"),
    (["--push-to-hub", "--hub-model-id", "me/bad..name"], 2, "--hub-model-id 'me/bad..name' is not a valid Hub repo id"),
    (["--push-to-hub", "--repo-id", "me/colorizer"], 1, "HF_HUB_OFFLINE is set"),  # offline: known before training
    (["--crop-size", "30"], 2, "argument --crop-size: must be a multiple of 8, got 30"),
    (["--max-steps", "0"], 2, "argument --max-steps: must be >= 1, got 0"),
    (["--lr", "fast"], 2, "argument --lr: not a number: 'fast'"),
    (["--betas", "0.9", "1"], 2, "--betas must be two numbers in [0, 1), got 0.9 1.0"),
    (["--output-dir", "{file}"], 2, "exists and is not a folder"),
    (["--prior", "{missing}"], 2, "--prior {missing}: no such file"),
    (["--resume-from", "{tmp}"], 2, "not a complete checkpoint (no trainer_state.json)"),
])
def test_bad_settings_fail_before_training(extra, code, expected, colour_folder, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (tmp_path / "file.txt").write_text("x")
    names = {"file": str(tmp_path / "file.txt"), "missing": str(tmp_path / "missing"), "tmp": str(tmp_path)}
    out = tmp_path / "run"
    argv = [a.format(**names) for a in _quick(colour_folder, out, *extra)]
    got, stdout, err = run_cli(argv, capsys)
    assert got == code and len(err) == 1, err
    assert err[0].startswith("hf-colorize train: error: ") and expected.format(**names) in err[0], err
    assert not out.exists()  # nothing trained, no checkpoint written
    assert stdout == ""


def test_push_to_hub_without_a_token_fails_before_training(colour_folder, tmp_path, monkeypatch, capsys):
    import huggingface_hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    code, _, err = run_cli(_quick(colour_folder, tmp_path / "run", "--push-to-hub", "--hub-model-id", "me/c"), capsys)
    assert code == 1 and err == ["hf-colorize train: error: no Hugging Face token: set HF_TOKEN, run `hf auth login`, "
                                 "or pass --token"]
    assert not (tmp_path / "run").exists()


def test_gray_only_dataset_fails_in_one_line(tmp_path, capsys):
    from PIL import Image

    gray = tmp_path / "gray"
    gray.mkdir()
    for i in range(4):
        Image.new("L", (40, 40), 40 * i).save(gray / f"g{i}.png")
    code, _, err = run_cli(_quick(gray, tmp_path / "run"), capsys)
    assert code == 1 and len(err) == 1 and err[0].startswith("hf-colorize train: error: bin prior: "), err
    assert not list_checkpoints(tmp_path / "run") and not (tmp_path / "run" / "final").exists()


@pytest.mark.slow
def test_quick_run_on_generated_photos(colour_folder, tmp_path, capsys):
    """A two-step run from Python and the command line alike: checkpoints and final/ under their final
    names only (written through atomic_path), training_args.json from the config, no bar off a terminal."""
    from hf_colorize.training.loop import TrainingConfig, train

    out = tmp_path / "run"
    code, stdout, err = run_cli(_quick(colour_folder, out, "--checkpoint-every", "1", "--checkpoints-total-limit", "1",
                                          "--log-every", "1"), capsys)
    assert code == 0, err
    assert "step 1: loss=" in stdout and "step 2: loss=" in stdout and not [l for l in err if "train:" in l]
    assert [os.path.basename(c) for c in list_checkpoints(out)] == ["checkpoint-2"]
    assert sorted(os.listdir(out / "checkpoints")) == ["checkpoint-2"] and not [f for f in os.listdir(out) if f.startswith(".")]
    recorded = json.load(open(out / "final" / "training_args.json"))
    assert recorded["crop_size"] == 32 and recorded["betas"] == [0.9, 0.99] and recorded["dataset"] == str(colour_folder)
    # the same run from Python, resumed from its checkpoint: nothing left to do but export again
    config = TrainingConfig.from_args(recorded, progress=False)
    assert train(config) == str(out / "final")
    assert "resumed from" in capsys.readouterr().out


def test_stale_temporary_folders_of_dead_runs_are_swept(tmp_path):
    from hf_colorize.common import sweep_temporaries

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".checkpoint-8.{dead.stdout.strip()}.abc.part"
    live = tmp_path / f".checkpoint-12.{os.getpid()}.abc.part"
    for folder in (stale, live):
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"partial")
    sweep_temporaries(tmp_path)
    assert not stale.exists() and live.exists()
