"""Safe loading: weights only from safetensors, no pickle on any load path, no trust_remote_code needed
with the package installed, and clear one-line errors for malformed configs, mismatched bins and
corrupt files.

Malicious pickles here really run code when unpickled unsafely (checked first): they create a marker
file, and every test asserts the marker never appears, whatever else happens.
"""

import ast
import glob
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors import safe_open

from hf_colorize import eccv16_ab_bins
from test_train import _args, packed  # noqa: F401 - packed is a fixture

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCES = sorted(glob.glob(os.path.join(ROOT, "hf_colorize", "**", "*.py"), recursive=True)
                 + glob.glob(os.path.join(ROOT, "spaces_app", "*.py")))  # every subpackage (training/, hub/, ...)


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------
class _RunsCode:
    """Unpickling this creates `marker`: what a malicious checkpoint would do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('pickle ran code')",)


@pytest.fixture
def evil(tmp_path):
    """`evil(path, obj)` writes `obj` with a code-running payload as a torch pickle; yields the marker."""
    marker = tmp_path / "MARKER_code_was_executed"

    def write(path, obj=None):
        obj = dict(obj or {"weight": torch.zeros(2)})
        obj["payload"] = _RunsCode(marker)
        torch.save(obj, path)
        return path

    probe = write(tmp_path / "probe.bin")
    torch.load(probe, weights_only=False)  # the payload is live: unsafe loading runs it
    assert marker.exists()
    marker.unlink()
    yield write, marker
    assert not marker.exists(), "a pickle payload was executed"


def one_line(text):
    text = str(text).strip()
    return bool(text) and "\n" not in text and "Traceback" not in text


def _env(tmp):
    return dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", PYTHONPATH=ROOT, HOME=str(tmp))


# --------------------------------------------------------------------------------------------------
# No pickle anywhere in the package's load paths (static check)
# --------------------------------------------------------------------------------------------------
PICKLE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}


def unsafe_calls(source: str, filename: str = "<src>") -> list:
    """Every pickle-based load in `source`: pickle-like imports, torch.load without weights_only=True,
    np.load(allow_pickle=True), weights_only=False, trust_remote_code=True, and accelerate's
    register_for_checkpointing (its custom states are loaded with weights_only=False)."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        where = f"{os.path.basename(filename)}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import):
            found += [f"{where}: import {a.name}" for a in node.names if a.name.split(".")[0] in PICKLE_MODULES]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in PICKLE_MODULES:
            found.append(f"{where}: from {node.module} import ...")
        elif isinstance(node, ast.Call):
            name = ast.unparse(node.func)
            kwargs = {k.arg: k.value for k in node.keywords}
            const = lambda key: getattr(kwargs.get(key), "value", None)  # noqa: E731
            if name == "torch.load" and const("weights_only") is not True:
                found.append(f"{where}: {name}(...) without weights_only=True")
            if name.endswith(("np.load", "numpy.load")) and "allow_pickle" in kwargs and const("allow_pickle") is not False:
                found.append(f"{where}: {name}(..., allow_pickle=...)")
            if const("weights_only") is False:
                found.append(f"{where}: weights_only=False")
            if const("trust_remote_code") is True:
                found.append(f"{where}: trust_remote_code=True")
            if name.endswith(("register_for_checkpointing", "load_custom_state")):
                found.append(f"{where}: {name} (accelerate unpickles these with weights_only=False)")
    return found


def test_the_scanner_finds_unsafe_loads():
    bad = (
        "import pickle\nfrom dill import loads\nimport torch, numpy as np\n"
        "torch.load('x.pt')\ntorch.load('x.pt', weights_only=False)\nnp.load('a.npy', allow_pickle=True)\n"
        "AutoModel.from_pretrained('m', trust_remote_code=True)\naccelerator.register_for_checkpointing(obj)\n"
    )
    assert len(unsafe_calls(bad)) == 8
    assert unsafe_calls("import torch\ntorch.load('x.pt', map_location='cpu', weights_only=True)\n") == []


def test_no_pickle_on_any_load_path():
    assert len(SOURCES) > 10
    found = [hit for path in SOURCES for hit in unsafe_calls(open(path, encoding="utf-8").read(), path)]
    assert not found, "\n".join(found)


# --------------------------------------------------------------------------------------------------
# Weights, priors and palettes
# --------------------------------------------------------------------------------------------------
@pytest.fixture
def pickle_only_model(tmp_path, evil):
    """A model folder whose only weights are a malicious pytorch_model.bin (a full, matching state dict)."""
    from hf_colorize import ColorizationConfig, ColorizationModel

    write, marker = evil
    folder = tmp_path / "pickle_only"
    model = ColorizationModel(ColorizationConfig(width_multiplier=0.125))
    model.save_pretrained(folder)
    os.remove(folder / "model.safetensors")
    write(folder / "pytorch_model.bin", model.state_dict())
    return folder


def test_pickle_weights_never_run_code(pickle_only_model, photo_paths, tmp_path, capsys):
    from transformers import AutoModel, pipeline

    import hf_colorize
    from hf_colorize.cli import main

    for load in (lambda: AutoModel.from_pretrained(pickle_only_model),
                 lambda: hf_colorize.ColorizationModel.from_pretrained(pickle_only_model),
                 lambda: pipeline(hf_colorize.TASK, model=str(pickle_only_model))):
        with pytest.raises(Exception) as info:  # transformers refuses: torch.load(weights_only=True) fails
            load()
        assert "weights only load failed" in str(info.value).lower()
    code = main(["colorize", str(photo_paths[0]), "-o", str(tmp_path / "out.png"), "--model", str(pickle_only_model)])
    err = capsys.readouterr().err
    assert code == 1 and one_line(err) and str(pickle_only_model) in err and not (tmp_path / "out.png").exists()


def _is_safetensors(path):
    with safe_open(str(path), framework="pt") as f:
        return list(f.keys())


def test_priors_and_palettes_are_safetensors(tmp_path):
    from hf_colorize.training.palette import load_palette, save_palette
    from hf_colorize.training.priors import load_prior, save_prior

    bins = torch.tensor(eccv16_ab_bins(), dtype=torch.float32)
    prior = torch.rand(bins.shape[0]) + 0.1
    save_prior(tmp_path / "prior.safetensors", prior / prior.sum(), bins)
    save_palette(tmp_path / "palette.safetensors", bins[:20])
    assert sorted(_is_safetensors(tmp_path / "prior.safetensors")) == ["ab_bins", "bin_prior"]
    assert _is_safetensors(tmp_path / "palette.safetensors") == ["ab_bins"]
    torch.testing.assert_close(load_prior(str(tmp_path / "prior.safetensors"), bins), prior / prior.sum())
    torch.testing.assert_close(load_palette(str(tmp_path / "palette.safetensors")), bins[:20])
    # the model's own weights, and the embedded default's, are safetensors too
    import hf_colorize

    assert "ab_bins" in _is_safetensors(os.path.join(hf_colorize.DEFAULT_MODEL, "model.safetensors"))
    assert not [f for f in os.listdir(hf_colorize.DEFAULT_MODEL) if f.endswith((".bin", ".pt", ".pth", ".pkl"))]


def test_pickled_palette_and_prior_are_refused_without_running_code(evil, tmp_path):
    from hf_colorize.training.palette import load_palette
    from hf_colorize.training.priors import load_prior

    write, _ = evil
    fake = write(tmp_path / "palette.safetensors", {"ab_bins": torch.zeros(313, 2), "bin_prior": torch.ones(313)})
    with pytest.raises(ValueError) as info:
        load_palette(str(fake))
    assert one_line(info.value) and str(fake) in str(info.value)
    with pytest.raises(Exception):
        load_prior(str(fake), torch.zeros(313, 2))


def test_pickled_prior_gives_a_one_line_error(evil, tmp_path):
    from hf_colorize.training.priors import load_prior

    write, _ = evil
    fake = write(tmp_path / "prior.safetensors", {"bin_prior": torch.ones(313)})
    with pytest.raises(ValueError) as info:
        load_prior(str(fake), torch.zeros(313, 2))
    assert one_line(info.value) and str(fake) in str(info.value)


def test_truncated_weights_give_a_one_line_error(tiny_model_dir, photo_paths, tmp_path, capsys):
    from hf_colorize.cli import main

    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    data = (broken / "model.safetensors").read_bytes()
    (broken / "model.safetensors").write_bytes(data[: len(data) // 2])
    code = main(["colorize", str(photo_paths[0]), "-o", str(tmp_path / "out.png"), "--model", str(broken)])
    err = capsys.readouterr().err
    assert code == 1 and one_line(err) and str(broken) in err, err
    assert not (tmp_path / "out.png").exists()


# --------------------------------------------------------------------------------------------------
# Accelerate's checkpoints (optimizer/scheduler/RNG state are torch pickles)
# --------------------------------------------------------------------------------------------------
def test_accelerate_loads_checkpoint_pickles_with_weights_only(evil, tmp_path):
    """accelerate.checkpointing.load_accelerator_state reads optimizer.bin, scheduler.bin and
    random_states_N.pkl through accelerate.utils.other.load, which defaults to weights_only=True."""
    import inspect

    from accelerate import checkpointing
    from accelerate.utils.other import load

    write, _ = evil
    assert "weights_only" in inspect.signature(torch.load).parameters
    with pytest.raises(Exception) as info:
        load(write(tmp_path / "optimizer.bin"), map_location="cpu")
    assert "weights only load failed" in str(info.value).lower()
    # every torch pickle load_accelerator_state makes goes through that `load` (the model is safetensors)
    tree = ast.parse(inspect.getsource(checkpointing.load_accelerator_state))
    calls = [ast.unparse(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)]
    assert "load" in calls and not [c for c in calls if c in ("torch.load", "pickle.load")]


@pytest.fixture(scope="module")
def tiny_checkpoint(packed, tmp_path_factory):  # noqa: F811 - packed: test_train's fixture
    """A 2-step training run with one checkpoint (in process, test_train's tiny configuration)."""
    from hf_colorize.cli import main

    def argv(steps, output_dir):
        return _args(packed, output_dir, steps=steps, every=2, extra=("--report-to", "none"))

    run = tmp_path_factory.mktemp("ckpt_run")
    assert main(argv(2, run)) == 0
    return argv, run


def _poisoned_run(tiny_checkpoint, tmp_path, write):
    """A copy of the run whose checkpoint's optimizer.bin is a malicious pickle; argv resuming it."""
    argv, run = tiny_checkpoint
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    optimizer = copy / "checkpoints" / "checkpoint-2" / "optimizer.bin"
    assert optimizer.is_file()
    write(optimizer, {"state": {}, "param_groups": []})
    shutil.rmtree(copy / "final")
    return argv(4, copy)


@pytest.mark.slow
def test_poisoned_training_checkpoint_never_runs_code(tiny_checkpoint, evil, tmp_path):
    from hf_colorize.cli import main

    write, _ = evil
    argv = _poisoned_run(tiny_checkpoint, tmp_path, write)
    try:
        code = main(argv)
    except Exception:  # noqa: BLE001 - whether it fails cleanly is the next test; here: no code ran
        code = "raised"
    assert code != 0  # it must not silently resume from a checkpoint it could not read


@pytest.mark.slow
def test_unreadable_training_checkpoint_gives_a_one_line_error(tiny_checkpoint, evil, tmp_path, capsys):
    from hf_colorize.cli import main

    write, _ = evil
    argv = _poisoned_run(tiny_checkpoint, tmp_path, write)
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert one_line(err) and "checkpoint-2" in err, err


# --------------------------------------------------------------------------------------------------
# trust_remote_code is never needed with the package installed
# --------------------------------------------------------------------------------------------------
REMOTE_FREE = """
import sys
import hf_colorize
from transformers import AutoConfig, AutoImageProcessor, AutoModel, pipeline
folder, photo = sys.argv[1], sys.argv[2]
objs = [AutoConfig.from_pretrained(folder), AutoModel.from_pretrained(folder),
        AutoImageProcessor.from_pretrained(folder), pipeline(hf_colorize.TASK, model=folder)]
image = objs[-1](photo)
print(" ".join(type(o).__module__ for o in objs), image.size[0], image.size[1])
"""


@pytest.mark.slow
def test_no_trust_remote_code_needed_when_installed(tiny_model_dir, photo_paths, tmp_path):
    config = json.loads((tiny_model_dir / "config.json").read_text())
    assert "auto_map" in config and (tiny_model_dir / "modeling_colorization.py").is_file()  # remote code is there
    done = subprocess.run([sys.executable, "-c", REMOTE_FREE, str(tiny_model_dir), str(photo_paths[0])],
                          stdin=subprocess.DEVNULL, env=_env(tmp_path), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    *modules, width, height = done.stdout.split()
    assert all(m.startswith("hf_colorize.") for m in modules), modules  # the installed code, not transformers_modules
    from PIL import Image

    assert (int(width), int(height)) == Image.open(photo_paths[0]).size
    assert "trust_remote_code" not in done.stderr


# --------------------------------------------------------------------------------------------------
# Malformed config.json and mismatched bins
# --------------------------------------------------------------------------------------------------
def _edit(config, **changes):
    config = dict(config)
    for key, value in changes.items():
        if value is None:
            config.pop(key)
        else:
            config[key] = value
    return json.dumps(config)


MALFORMED = [  # (config.json text made from the good config, text the error must name), id
    pytest.param(lambda c: json.dumps(c)[:200], "not a valid JSON", id="truncated JSON"),
    pytest.param(lambda c: "", "not a valid JSON", id="empty file"),
    pytest.param(lambda c: _edit(c, norm_type="layer"), "norm_type", id="unknown norm_type"),
    pytest.param(lambda c: _edit(c, width_multiplier=-1), "width_multiplier", id="negative width_multiplier"),
    pytest.param(lambda c: _edit(c, block_channels=[64] * 7), "block_channels", id="7 block_channels"),
    pytest.param(lambda c: _edit(c, decode_temperature=0), "decode_temperature", id="zero decode_temperature"),
    pytest.param(lambda c: _edit(c, decode_mode="best"), "decode_mode", id="unknown decode_mode"),
    pytest.param(lambda c: _edit(c, ab_bins=c["ab_bins"][:300]), "ab_bins", id="300 of the 313 ab_bins"),
    pytest.param(lambda c: _edit(c, ab_bins=[[a + 1, b] for a, b in c["ab_bins"]]), "ab_bins", id="ab_bins shifted by 1"),
    pytest.param(lambda c: _edit(c, ab_bins="x"), "ab_bins", id="ab_bins is a string"),
    pytest.param(lambda c: _edit(c, ab_bins=5), "ab_bins", id="ab_bins is a number"),
    pytest.param(lambda c: _edit(c, ab_bins=[[1, 2, 3]] * 313), "ab_bins", id="ab_bins of triples"),
    pytest.param(lambda c: _edit(c, width_multiplier="wide"), "width_multiplier", id="width_multiplier is a string"),
]


@pytest.mark.parametrize("make, expected", MALFORMED)
def test_malformed_config_fails_with_a_clear_error(make, expected, tiny_model_dir, tmp_path):
    from transformers import AutoModel

    import hf_colorize  # noqa: F401 - registers the model type

    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "config.json").write_text(make(json.loads((tiny_model_dir / "config.json").read_text())))
    with pytest.raises((ValueError, OSError)) as info:
        AutoModel.from_pretrained(folder)
    assert one_line(info.value) and expected in str(info.value), repr(info.value)


def _bad_model(tiny_model_dir, folder, config_text):
    shutil.copytree(tiny_model_dir, folder)
    (folder / "config.json").write_text(config_text)
    return folder


def test_malformed_config_through_the_cli_is_one_line(tiny_model_dir, photo_paths, tmp_path, capsys):
    from hf_colorize.cli import main

    config = json.loads((tiny_model_dir / "config.json").read_text())
    for name, text in {"bad_json": "{", "bad_bins": _edit(config, ab_bins=config["ab_bins"][:5]),
                       "bad_width": _edit(config, width_multiplier="wide")}.items():
        folder = _bad_model(tiny_model_dir, tmp_path / name, text)
        out = tmp_path / f"{name}.png"
        code = main(["colorize", str(photo_paths[0]), "-o", str(out), "--model", str(folder)])
        err = capsys.readouterr().err
        assert code == 1 and one_line(err) and f"cannot load model {folder}" in err, err
        assert not out.exists()


@pytest.mark.slow
def test_config_without_model_type_never_waits_for_a_prompt(tiny_model_dir, photo_paths, tmp_path):
    """Without a known model_type, transformers offers to run the folder's code (its auto_map); with stdin
    closed (batch jobs, servers) the CLI must fail at once with one line, not wait for an answer."""
    config = json.loads((tiny_model_dir / "config.json").read_text())
    folder = _bad_model(tiny_model_dir, tmp_path / "no_model_type", _edit(config, model_type=None))
    out = tmp_path / "out.png"
    done = subprocess.run([sys.executable, "-m", "hf_colorize.cli", "colorize", str(photo_paths[0]), "-o", str(out),
                           "--model", str(folder)], stdin=subprocess.DEVNULL, env=_env(tmp_path),
                          capture_output=True, text=True, timeout=900)
    errors = [line for line in done.stderr.splitlines() if line.startswith("hf-colorize colorize: error:")]
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert len(errors) == 1 and f"cannot load model {folder}" in errors[0], done.stderr[-2000:]
    assert not out.exists()


@pytest.mark.slow
def test_a_model_folders_code_is_never_offered_to_run(tiny_model_dir, photo_paths, tmp_path, monkeypatch, capsys):
    """Answering "y" to transformers' prompt would run the .py files shipped in a downloaded model folder;
    the CLI and the Space must refuse such a folder without asking."""
    from hf_colorize.cli import main

    asked = []
    monkeypatch.setattr("builtins.input", lambda prompt="": asked.append(prompt) or "n")
    config = json.loads((tiny_model_dir / "config.json").read_text())
    folder = _bad_model(tiny_model_dir, tmp_path / "no_model_type", _edit(config, model_type=None))
    assert main(["colorize", str(photo_paths[0]), "-o", str(tmp_path / "out.png"), "--model", str(folder)]) == 1
    if os.path.isfile(os.path.join(ROOT, "spaces_app", "app.py")):
        import gradio as gr
        from test_space import load_app

        app = load_app()
        with pytest.raises(gr.Error):
            app.ModelCache({"downloaded": str(folder)}).get("downloaded")
    assert asked == [], asked
