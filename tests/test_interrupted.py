"""Interrupted work: SIGKILL the CLI batch half-way and rerun with --skip-existing; SIGKILL training at
seeded random points (mid-step, mid-checkpoint, during start-up) several times and resume. Nothing done
is lost, nothing corrupt or temporary is left, and the resumed run ends exactly where an uninterrupted
one does."""

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from skimage.color import rgb2lab

from test_train import _args, _env, _weights, packed  # noqa: F401 - packed is a fixture
from hf_colorize.training.loop import list_checkpoints

CLI = [sys.executable, "-m", "hf_colorize"]
pytestmark = pytest.mark.slow  # kills and reruns real subprocesses


def _temporary_files(folder):
    return sorted(f for r, ds, fs in os.walk(folder) for f in fs + ds if f.startswith(".") or f.endswith((".part", ".tmp")))


def _digest(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


# --------------------------------------------------------------------------------------------------
# CLI batch
# --------------------------------------------------------------------------------------------------
def _assert_complete_outputs(photos, out):
    """Every photo has a complete PNG output of its full size with the same lightness."""
    for photo in photos:
        result = out / (os.path.splitext(os.path.basename(photo))[0] + "_colorized.png")
        with Image.open(result) as im, Image.open(photo) as src:
            assert im.format == "PNG" and im.size == src.size
            l_out = rgb2lab(np.asarray(im.convert("RGB")) / 255.0)[..., 0]
            l_in = rgb2lab(np.asarray(src.convert("RGB")) / 255.0)[..., 0]
        assert np.abs(l_out - l_in).mean() < 0.5, result


def _outputs(out):
    return {f: _digest(out / f) for f in os.listdir(out) if f.endswith("_colorized.png")} if out.is_dir() else {}


def test_killed_batch_resumes_with_skip_existing(many_photo_files, tiny_model_dir, tmp_path):
    """SIGKILL at a random moment once 3 of 30 outputs exist; the rerun skips those and does the rest."""
    photos = [str(p) for p in many_photo_files[:30]]
    out = tmp_path / "out"
    cmd = CLI + ["colorize", *photos, "-o", str(out), "--model", str(tiny_model_dir), "--batch-size", "1"]
    env = dict(_env(), HOME=str(tmp_path))
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while proc.poll() is None and time.monotonic() < deadline and len(_outputs(out)) < 3:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = _outputs(out)
    assert 3 <= len(finished) < len(photos), f"the kill did not land half-way ({len(finished)} outputs)"
    for name in finished:  # whatever carries a final name is a complete image (written, then renamed)
        with Image.open(out / name) as im:
            im.load()
    left_by_kill = _temporary_files(out)  # a kill during a write leaves its temporary (see the next tests)

    done = subprocess.run(cmd + ["--skip-existing"], env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = done.stderr.strip().splitlines()[-1]
    assert summary == f"hf-colorize colorize: {len(photos) - len(finished)} colorized, {len(finished)} skipped (output exists)", summary
    assert {f: _digest(out / f) for f in finished} == finished  # kept as they were, not redone
    assert set(_temporary_files(out)) <= set(left_by_kill)  # the rerun leaves none of its own
    _assert_complete_outputs(photos, out)


# Makes the CLI SIGKILL itself at its N-th atomic rename: the temporary output is fully written, the
# final name not yet given: exactly the moment a kill "during a write" can hit.
KILL_AT_RENAME = """
import os, signal
_replace, _count = os.replace, [0]
def _replace_then_die(src, dst, *args, **kwargs):
    if str(dst).endswith("_colorized.png"):
        _count[0] += 1
        if _count[0] == int(os.environ["HF_COLORIZE_TEST_KILL_AT"]):
            os.kill(os.getpid(), signal.SIGKILL)
    return _replace(src, dst, *args, **kwargs)
os.replace = _replace_then_die
"""


@pytest.fixture(scope="module")
def killed_mid_write(many_photo_files, tiny_model_dir, tmp_path_factory):
    """A 6-photo batch killed while writing its 3rd output, then rerun with --skip-existing."""
    tmp = tmp_path_factory.mktemp("killed_mid_write")
    (tmp / "inject").mkdir()
    (tmp / "inject" / "sitecustomize.py").write_text(KILL_AT_RENAME)
    photos = [str(p) for p in many_photo_files[30:36]]
    out = tmp / "out"
    cmd = CLI + ["colorize", *photos, "-o", str(out), "--model", str(tiny_model_dir), "--batch-size", "1"]
    env = _env()
    killed = subprocess.run(cmd, env=dict(env, HOME=str(tmp), HF_COLORIZE_TEST_KILL_AT="3",
                                          PYTHONPATH=os.pathsep.join([str(tmp / "inject"), env["PYTHONPATH"]])),
                            capture_output=True, text=True, timeout=900)
    after_kill = (killed.returncode, _outputs(out), _temporary_files(out))
    rerun = subprocess.run(cmd + ["--skip-existing"], env=dict(env, HOME=str(tmp)), capture_output=True, text=True,
                           timeout=900)
    return photos, out, after_kill, rerun


def test_kill_during_a_write_never_leaves_a_partial_output(killed_mid_write):
    photos, out, (code, outputs, temporaries), rerun = killed_mid_write
    assert code == -signal.SIGKILL  # the injected kill happened, at the 3rd rename
    assert len(outputs) == 2 and len(temporaries) == 1  # 2 done; the 3rd written only under a temporary name
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert rerun.stderr.strip().splitlines()[-1] == "hf-colorize colorize: 4 colorized, 2 skipped (output exists)"
    assert {f: _digest(out / f) for f in outputs} == outputs
    _assert_complete_outputs(photos, out)


def test_rerun_removes_temporaries_of_a_killed_run(killed_mid_write):
    _, out, _, _ = killed_mid_write
    assert _temporary_files(out) == []


# --------------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------------
STEPS, EVERY = 12, 4


def _killed_run(cmd, env, target_step, fraction, log):
    """Start training and SIGKILL it: `fraction` x 3 s after launch when `target_step` is 0 (start-up),
    else `fraction` x (the duration of one step) after the line `step {target_step}:`, i.e. somewhere in
    the next step or the checkpoint being written. Returns the last step the run reported."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    watchdog = threading.Timer(600, proc.kill)
    watchdog.start()
    last, times = None, []
    try:
        if target_step == 0:
            time.sleep(3.0 * fraction)
        else:
            for line in proc.stdout:
                log.append(line.rstrip())
                if line.startswith("step "):
                    last = int(line.split()[1].rstrip(":"))
                    times.append(time.monotonic())
                    if last >= target_step:
                        step_time = times[-1] - times[-2] if len(times) > 1 else 0.2
                        time.sleep(fraction * step_time)
                        break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        watchdog.cancel()
        proc.stdout.close()
    return last


def test_training_killed_at_random_points_resumes_exactly(packed, tmp_path):  # noqa: F811
    env = dict(_env(), PYTHONUNBUFFERED="1", HOME=str(tmp_path))
    extra = ("--log-every", "1")
    subprocess.run(CLI + _args(packed, tmp_path / "ref", steps=STEPS, every=EVERY, extra=extra), check=True, env=env,
                   capture_output=True, timeout=900)
    run_dir = tmp_path / "killed"
    cmd = CLI + _args(packed, run_dir, steps=STEPS, every=EVERY, extra=extra)
    rng = random.Random(20240611)
    log, kills, resumed_at = [], [], 0
    for target in (0, rng.randint(1, 6), rng.randint(5, 10)):
        target = max(target, resumed_at + 1) if target else 0
        fraction = rng.uniform(0.0, 1.5)
        last = _killed_run(cmd, env, target, fraction, log)
        kills.append((target, round(fraction, 2), last))
        assert not (run_dir / "final").exists(), f"a killed run looked finished: {kills}"
        ckpts = list_checkpoints(run_dir)
        resumed_at = int(os.path.basename(ckpts[-1]).split("-")[1]) if ckpts else 0
    assert any(t and t % EVERY for t, _, _ in kills), kills  # at least one kill away from a checkpoint step

    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    if resumed_at:
        assert f"at step {resumed_at}" in done.stdout, done.stdout[-2000:]
    # the final step count and checkpoints are intact: the newest two, complete, loadable, no temporaries
    ckpts = list_checkpoints(run_dir)
    assert [os.path.basename(c) for c in ckpts] == [f"checkpoint-{STEPS - EVERY}", f"checkpoint-{STEPS}"]
    for ckpt in ckpts:
        state = json.load(open(os.path.join(ckpt, "trainer_state.json")))
        assert state["step"] == int(ckpt.rsplit("-", 1)[1])
        assert load_file(os.path.join(ckpt, "model.safetensors"))
        assert torch.load(os.path.join(ckpt, "optimizer.bin"), weights_only=True)["state"]
    assert _temporary_files(run_dir / "checkpoints") == [] and not (run_dir / "final.tmp").exists()
    # and the weights equal the uninterrupted run's
    ref, got = _weights(tmp_path / "ref" / "final"), _weights(run_dir / "final")
    assert ref.keys() == got.keys()
    for key in ref:
        assert torch.equal(ref[key], got[key]), f"{key} differs after kills {kills}"
