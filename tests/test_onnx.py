"""ONNX export: onnxruntime gives the torch model's logits and ab on real photos, at any size and batch."""

import os
import subprocess
import sys

import pytest
import torch

pytestmark = pytest.mark.slow  # ONNX export
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from hf_colorize import ColorizationConfig, ColorizationImageProcessor, ColorizationModel, decode_ab  # noqa: E402
from hf_colorize.export.onnx import onnx_session, run_onnx  # noqa: E402


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    """A small colorizer with non-trivial BatchNorm statistics (so a dropped or mis-exported norm shows)."""
    torch.manual_seed(1)
    model = ColorizationModel(ColorizationConfig(width_multiplier=0.125)).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
    path = tmp_path_factory.mktemp("onnx_model")
    model.save_pretrained(path)
    ColorizationImageProcessor(size=64).save_pretrained(path)
    return model, path


@pytest.fixture(scope="module")
def exported(small_model, tmp_path_factory):
    """Export through the command users run (it also checks onnxruntime against torch on its own)."""
    _, model_dir = small_model
    out = tmp_path_factory.mktemp("onnx") / "colorizer.onnx"
    cmd = [sys.executable, "-m", "hf_colorize", "export-onnx", str(model_dir), "-o", str(out), "--size", "64"]
    ok = subprocess.run(cmd, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert out.stat().st_size > 100_000 and "onnxruntime vs torch" in ok.stdout
    return onnx_session(out, threads=1)


@pytest.mark.parametrize("size,batch", [(64, 1), (96, 2)])
def test_onnxruntime_parity_on_photos(small_model, exported, photo_paths, size, batch):
    model, _ = small_model
    processor = ColorizationImageProcessor(size=size)
    pixel_values = processor([str(p) for p in photo_paths[:batch]]).pixel_values
    with torch.inference_mode():
        logits = model(pixel_values).logits
    for temperature in (0.38, 1.0):
        ort_logits, ort_ab = run_onnx(exported, pixel_values, temperature)
        assert ort_logits.shape == (batch, 313, size // 4, size // 4)
        assert torch.allclose(ort_logits, logits, atol=1e-3, rtol=1e-3)
        expected = decode_ab(logits, model.ab_bins, "annealed_mean", temperature)
        assert (ort_ab - expected).abs().max() < 1e-2
    # the temperature is a live input of the graph, not a constant baked in at export
    _, ab_038 = run_onnx(exported, pixel_values, 0.38)
    _, ab_1 = run_onnx(exported, pixel_values, 1.0)
    assert (ab_038 - ab_1).abs().mean() > 0.05


def test_export_cli_bad_model(tmp_path):
    cmd = [sys.executable, "-m", "hf_colorize", "export-onnx"]
    bad = subprocess.run(cmd + [str(tmp_path / "no_model"), "-o", str(tmp_path / "x.onnx")], capture_output=True, text=True)
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "cannot load model" in bad.stderr
    assert not (tmp_path / "x.onnx").exists()


@pytest.mark.parametrize("argv, code, expected", [
    (["-o", "{out}", "--size", "30"], 2, "argument --size: must be a multiple of 8, got 30"),
    (["-o", "{out}", "--opset", "zero"], 2, "argument --opset: not an integer: 'zero'"),
    (["-o", "{folder}"], 2, "is a folder; give a file name ending in .onnx"),
    (["{missing}", "-o", "{out}"], 1, "cannot load model {missing}"),
])
def test_export_cli_errors_are_one_line_with_exit_codes(argv, code, expected, tmp_path, capsys):
    from hf_colorize.cli import main

    names = {"out": str(tmp_path / "x.onnx"), "folder": str(tmp_path), "missing": str(tmp_path / "no_model")}
    try:
        got = main(["export-onnx", *[a.format(**names) for a in argv]])
    except SystemExit as done:  # argparse's usage errors exit (code 2) after printing their one line
        got = done.code
    err = capsys.readouterr().err.strip().splitlines()
    assert got == code and len(err) == 1, err
    assert err[0].startswith("hf-colorize export-onnx: error: ") and expected.format(**names) in err[0], err
    assert os.listdir(tmp_path) == []


def test_failed_parity_check_leaves_no_file(small_model, tmp_path, monkeypatch):
    """The parity check runs on the temporary file: an export that fails it never gets the final name."""
    from hf_colorize.common import ConversionError
    from hf_colorize.export import onnx as onnx_export

    model, _ = small_model
    monkeypatch.setattr(onnx_export, "parity_error", lambda *a, **k: 1.0)
    with pytest.raises(ConversionError, match="differs from torch by 1.000"):
        onnx_export.export_model(model, tmp_path / "m.onnx", size=32, check=True)
    assert os.listdir(tmp_path) == []
