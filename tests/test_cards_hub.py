"""Model cards and `hf-colorize push`: the upload folder is complete, loads without the package, its card
carries the measured metrics; offline mode and network failures give one line and touch nothing."""

import hashlib
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import yaml
from huggingface_hub import ModelCard
from PIL import Image

import hf_colorize
from hf_colorize.cli import main
from hf_colorize.evaluation.protocol import evaluate_model
from hf_colorize.common import HubError, UsageError
from hf_colorize.hub.push import EXAMPLE_PHOTOS, REMOTE_CODE_FILES, HubPushError, push_to_hub, remote_code_dir

CODE = set(REMOTE_CODE_FILES)
BASE_FILES = {"README.md", "config.json", "preprocessor_config.json", "model.safetensors"} | CODE
EXAMPLES = {f"examples/{n}_{kind}.jpg" for n in EXAMPLE_PHOTOS for kind in ("gray", "colorized")}

# Loads upload folders with trust_remote_code while `hf_colorize` cannot be imported, runs the model,
# the processor and the pipeline on an example, and saves the predicted ab for comparison with the
# package. (tests/test_remote_code.py covers save_pretrained folders in depth; this is the Hub upload.)
REMOTE_CHECK = textwrap.dedent(
    """
    import importlib.abc, json, sys

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "hf_colorize" or name.startswith("hf_colorize."):
                raise ImportError(name + " is blocked: the folder must load without the package")
            return None

    sys.meta_path.insert(0, Block())
    import numpy as np, torch
    from PIL import Image
    from transformers import AutoImageProcessor, AutoModel, pipeline

    report = {}
    for folder, out in zip(sys.argv[1::2], sys.argv[2::2]):
        model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
        proc = AutoImageProcessor.from_pretrained(folder, trust_remote_code=True)
        image = Image.open(folder + "/examples/chelsea_gray.jpg")
        with torch.inference_mode():
            ab = model(pixel_values=proc(image)["pixel_values"]).ab
        colorize = pipeline(model=folder, trust_remote_code=True)
        piped = colorize(image)
        np.save(out, ab.numpy())
        report[folder] = {
            "modules": [type(model).__module__, type(proc).__module__, type(colorize).__module__],
            "size": list(piped.size), "mode": piped.mode,
        }
    report["hf_colorize_imported"] = any(m.startswith("hf_colorize") for m in sys.modules)
    print(json.dumps(report))
    """
)


def _tree_digest(folder):
    out = {}
    for root, _, files in os.walk(folder):
        for f in files:
            p = os.path.join(root, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, folder)] = (hashlib.sha256(fh.read()).hexdigest(), os.stat(p).st_mtime_ns)
    return out


def _files(folder):
    return {os.path.relpath(os.path.join(r, f), folder) for r, _, fs in os.walk(folder) for f in fs}


@pytest.fixture(scope="module")
def evaluation(tiny_model_dir, photo_paths, tmp_path_factory):
    result = evaluate_model(tiny_model_dir, [str(p) for p in photo_paths[:3]], size=64)
    path = tmp_path_factory.mktemp("eval") / "eval.json"
    path.write_text(json.dumps(result))
    return path


@pytest.fixture(scope="module")
def tiny_upload(tiny_model_dir, evaluation, tmp_path_factory):
    out = tmp_path_factory.mktemp("dry") / "upload"
    assert main(["push", "--model", str(tiny_model_dir), "--repo-id", "someone/tiny-colorizer",
                 "--dry-run", str(out), "--eval-json", str(evaluation)]) == 0
    return out


@pytest.fixture(scope="module")
def default_upload(default_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("dry") / "default"
    push_to_hub(default_model_dir, "someone/colorizer", dry_run_dir=out)
    return out


@pytest.mark.slow
def test_upload_folder_is_complete(tiny_upload, default_upload, default_model_dir):
    assert _files(tiny_upload) == BASE_FILES | EXAMPLES | {"eval_results.json", "eval_auc.png"}
    shipped_eval = {"eval_results.json", "eval_auc.png"} if (default_model_dir / "eval_results.json").is_file() else set()
    assert _files(default_upload) == BASE_FILES | EXAMPLES | shipped_eval
    code_dir = remote_code_dir()  # hf_colorize/models/colorization/
    for name in CODE:
        assert (default_upload / name).read_bytes() == open(os.path.join(code_dir, name), "rb").read()
    config = json.loads((default_upload / "config.json").read_text())
    assert config["auto_map"]["AutoModel"] == "modeling_colorization.ColorizationModel"
    assert "image-colorization" in config["custom_pipelines"]
    assert (default_upload / "model.safetensors").read_bytes() == (
        open(os.path.join(hf_colorize.DEFAULT_MODEL, "model.safetensors"), "rb").read())
    assert oct(os.stat(default_upload).st_mode & 0o777) != oct(0o700)


@pytest.mark.slow
def test_examples_are_the_models_colorization_of_gray_photos(default_upload):
    from hf_colorize.models.colorization.image_processing_colorization import rgb_to_l

    for name in EXAMPLE_PHOTOS:
        gray = Image.open(default_upload / f"examples/{name}_gray.jpg")
        colour = Image.open(default_upload / f"examples/{name}_colorized.jpg")
        assert gray.mode == "L" and colour.mode == "RGB" and gray.size == colour.size
        assert max(gray.size) <= 512
        # the colorization keeps the input's lightness (up to JPEG and 8-bit rounding) and adds colour
        rgb = torch.from_numpy(np.array(colour)).permute(2, 0, 1).float() / 255
        l_gray = rgb_to_l(torch.from_numpy(np.array(gray.convert("RGB"))).permute(2, 0, 1).float() / 255)
        assert (rgb_to_l(rgb) - l_gray).abs().mean() < 1.5
        chroma = np.abs(np.asarray(colour).astype(int) - np.asarray(colour).astype(int).mean(2, keepdims=True)).mean()
        assert chroma > 1.0


@pytest.mark.slow
def test_folders_load_with_remote_code_without_the_package(tiny_upload, default_upload, tmp_path):
    clean = tmp_path / "clean_cwd"
    clean.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"), OMP_NUM_THREADS="1")
    outs = [tmp_path / "tiny_ab.npy", tmp_path / "default_ab.npy"]
    proc = subprocess.run(
        [sys.executable, "-c", REMOTE_CHECK, str(tiny_upload), str(outs[0]), str(default_upload), str(outs[1])],
        cwd=clean, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["hf_colorize_imported"] is False
    for folder, out in zip((tiny_upload, default_upload), outs):
        entry = report[str(folder)]
        assert all(m.startswith("transformers_modules") for m in entry["modules"])
        assert entry["size"] == [451, 300] and entry["mode"] == "RGB"
        # the remote code computes what the installed package computes
        model = hf_colorize.ColorizationModel.from_pretrained(folder).eval()
        processor = hf_colorize.ColorizationImageProcessor.from_pretrained(folder)
        with torch.inference_mode():
            ab = model(pixel_values=processor(Image.open(folder / "examples/chelsea_gray.jpg"))["pixel_values"]).ab
        assert np.allclose(np.load(out), ab.numpy(), atol=1e-4)


@pytest.mark.slow
def test_card_metadata_and_eval_results_match_the_evaluation(tiny_upload, evaluation):
    results = json.loads(evaluation.read_text())
    text = (tiny_upload / "README.md").read_text()
    front = yaml.safe_load(text.split("---")[1])
    assert front["library_name"] == "transformers" and front["pipeline_tag"] == "image-to-image"
    assert "image-colorization" in front["tags"]
    card = ModelCard.load(tiny_upload / "README.md")
    got = {r.metric_type: r.metric_value for r in card.data.eval_results}
    expected = {k: results["results"]["model"][k] for k in ("auc_raw", "auc_rebalanced", "psnr", "colorfulness_ratio", "hue_accuracy")}
    assert got == expected
    assert all(r.task_type == "image-to-image" for r in card.data.eval_results)
    assert json.loads((tiny_upload / "eval_results.json").read_text()) == results
    # the table shows the baselines too, and the card explains how to load without the package
    assert f"{results['results']['gray']['auc_raw']:.3f}" in text
    assert 'AutoModel.from_pretrained("someone/tiny-colorizer", trust_remote_code=True)' in text
    assert str(evaluation.parent) not in text  # local paths stay private


@pytest.mark.slow
def test_default_card_states_imagenet_terms_and_its_shipped_metrics(default_upload, default_model_dir):
    card = ModelCard.load(default_upload / "README.md")
    assert card.data.license == "other"
    assert "non-commercial research use only" in card.text
    shipped = default_model_dir / "eval_results.json"
    if shipped.is_file():  # the trained default ships its measured metrics; the card must carry them
        results = json.loads(shipped.read_text())["results"]["model"]
        assert {r.metric_type: r.metric_value for r in card.data.eval_results} == {
            k: results[k] for k in ("auc_raw", "auc_rebalanced", "psnr", "colorfulness_ratio", "hue_accuracy")}
    else:  # nothing measured, nothing claimed
        assert card.data.eval_results is None
        assert "No evaluation results were recorded" in card.text


def test_offline_mode_fails_in_one_line_and_touches_nothing(tiny_model_dir, evaluation, monkeypatch, capsys):
    from huggingface_hub import HfApi

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(HfApi, "create_commit", lambda *a, **k: pytest.fail("must not upload offline"))
    before = _tree_digest(tiny_model_dir)
    rc = main(["push", "--model", str(tiny_model_dir), "--repo-id", "someone/x", "--eval-json", str(evaluation)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and "HF_HUB_OFFLINE" in err[0]
    assert _tree_digest(tiny_model_dir) == before


def _network_errors():
    import httpx2  # huggingface_hub's own HTTP client (a dependency of huggingface_hub; no `requests`)
    from huggingface_hub.errors import HfHubHTTPError

    request = httpx2.Request("POST", "https://huggingface.co/api/models/someone/x/commit/main")
    return {
        "timeout": (httpx2.ConnectTimeout("timed out connecting to huggingface.co", request=request), "cannot reach the Hugging Face Hub"),
        "oserror": (ConnectionError("Name or service not known"), "cannot reach the Hugging Face Hub"),
        "httpx": (httpx2.ConnectError("[Errno -3] Temporary failure in name resolution", request=request), "cannot reach the Hugging Face Hub"),
        "http401": (HfHubHTTPError("401 Client Error: Unauthorized", response=httpx2.Response(401, request=request)), "refused"),
    }


@pytest.mark.parametrize("kind,stage", [("timeout", "create_repo"), ("oserror", "create_repo"),
                                        pytest.param("httpx", "create_commit", marks=pytest.mark.slow),
                                        pytest.param("http401", "create_commit", marks=pytest.mark.slow)])
def test_network_failures_fail_in_one_line_and_touch_nothing(kind, stage, tiny_model_dir, evaluation, monkeypatch, capsys):
    from huggingface_hub import HfApi

    error, message = _network_errors()[kind]
    token = "hf_FAKEtokenNEVERprinted0123456789"
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_TOKEN", token)
    monkeypatch.setattr(HfApi, "create_repo", lambda *a, **k: None)
    monkeypatch.setattr(HfApi, "create_commit", lambda *a, **k: pytest.fail("create_commit after a failed create_repo"))

    def fail(*a, **k):
        raise error

    monkeypatch.setattr(HfApi, stage, fail)
    before, eval_before = _tree_digest(tiny_model_dir), evaluation.read_bytes()
    rc = main(["push", "--model", str(tiny_model_dir), "--repo-id", "someone/x", "--eval-json", str(evaluation)])
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and message in err[0], err
    assert token not in captured.out + captured.err
    assert _tree_digest(tiny_model_dir) == before and evaluation.read_bytes() == eval_before


@pytest.mark.slow
def test_push_makes_one_commit_with_exactly_the_dry_run_folder(tiny_model_dir, evaluation, tiny_upload, monkeypatch, capsys):
    from huggingface_hub import HfApi

    token = "hf_FAKEtokenNEVERprinted0123456789"
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_TOKEN", token)
    calls = {"repo": [], "commit": []}
    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **k: calls["repo"].append((repo_id, k)))

    def commit(self, repo_id, operations, **kwargs):
        assert self.token == token
        calls["commit"].append({op.path_in_repo: open(op.path_or_fileobj, "rb").read() for op in operations})

        class Info:
            commit_url = f"https://huggingface.co/{repo_id}/commit/abc"

        return Info()

    monkeypatch.setattr(HfApi, "create_commit", commit)
    rc = main(["push", "--model", str(tiny_model_dir), "--repo-id", "someone/tiny-colorizer", "--private",
               "--eval-json", str(evaluation)])
    out = capsys.readouterr()
    assert rc == 0 and "someone/tiny-colorizer/commit/abc" in out.out and token not in out.out + out.err
    assert calls["repo"] == [("someone/tiny-colorizer", {"private": True, "exist_ok": True})]
    assert len(calls["commit"]) == 1
    uploaded = calls["commit"][0]
    assert set(uploaded) == {f.replace(os.sep, "/") for f in _files(tiny_upload)}
    for name in ("README.md", "config.json", "model.safetensors", "eval_results.json", "examples/coffee_colorized.jpg"):
        assert uploaded[name] == (tiny_upload / name).read_bytes(), name


def test_bad_inputs(tiny_model_dir, tiny_upload, tmp_path, monkeypatch, capsys):
    assert HubPushError is HubError  # the old name still works
    before = _tree_digest(tiny_upload)
    with pytest.raises(UsageError, match="not an empty folder"):
        push_to_hub(tiny_model_dir, "someone/x", dry_run_dir=tiny_upload)
    assert _tree_digest(tiny_upload) == before
    with pytest.raises(UsageError, match="user/name"):
        push_to_hub(tiny_model_dir, "no-namespace", dry_run_dir=tmp_path / "a")
    with pytest.raises(UsageError, match="not a valid Hub repo id"):
        push_to_hub(tiny_model_dir, "someone/bad--name..", dry_run_dir=tmp_path / "a")
    with pytest.raises(HubError, match="no config.json"):
        push_to_hub(tmp_path, "someone/x", dry_run_dir=tmp_path / "b")
    bad_eval = tmp_path / "bad.json"
    bad_eval.write_text("{\"x\": 1}")
    with pytest.raises(HubError, match="not an `hf-colorize evaluate --json` file"):
        push_to_hub(tiny_model_dir, "someone/x", eval_results=bad_eval, dry_run_dir=tmp_path / "c")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    assert main(["push", "--model", str(tiny_model_dir), "--repo-id", "someone/x"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["hf-colorize push: error: no Hugging Face token: set HF_TOKEN, run `hf auth login`, or pass --token"]
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]


@pytest.mark.parametrize("argv, code, expected", [
    (["--repo-id", "no-namespace"], 2, "--repo-id 'no-namespace' must look like user/name"),
    (["--repo-id", "someone/x", "--dry-run", "{file}"], 2, "already exists and is not an empty folder"),
    (["--repo-id", "someone/x", "--model", "{missing}"], 1, "no such model folder"),
    (["--repo-id", "someone/x", "--model", "{tmp}"], 1, "no config.json"),
])
def test_push_cli_errors_are_one_line_with_exit_codes(argv, code, expected, tmp_path, capsys):
    (tmp_path / "file.txt").write_text("x")
    names = {"file": str(tmp_path / "file.txt"), "missing": str(tmp_path / "missing"), "tmp": str(tmp_path)}
    argv = [a.format(**names) for a in argv]
    assert main(["push", *argv, "--dry-run", str(tmp_path / "out")] if "--dry-run" not in argv else ["push", *argv]) == code
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("hf-colorize push: error: ") and expected in err[0], err
    assert not (tmp_path / "out").exists()
