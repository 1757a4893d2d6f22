"""precision="int8": quantized convolutions through ONNX Runtime, calibrated on the shipped real photos,
within the accuracy budget of fp32 on held-out photos (the trained embedded model: 2 ab units mean, 0.005
AuC), the convolutions too sensitive for int8 kept float, decoding unchanged, cached; and without
onnxruntime (or with the remote code alone) one line saying what to install."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch

import hf_colorize
from hf_colorize import Colorizer
from hf_colorize.models.colorization import pipeline_colorization as pc

INSTALL = "pip install 'hf-colorize[onnx]'"
# int8 calibration photos are astronaut, camera, chelsea, coffee, rocket, coins and clock: the held-out
# fixture photos are the other four colour ones (motorcycle, immunohistochemistry, retina, hubble)
HELD_OUT = slice(4, 8)


def test_shipped_calibration_photos_are_real_and_not_the_held_out_ones(photo_paths):
    from PIL import Image

    from hf_colorize.export.int8 import calibration_photos

    photos = calibration_photos()
    assert len(photos) >= 6
    for path in photos:
        with Image.open(path) as im:
            assert min(im.size) >= 200 and len(im.convert("L").histogram()) == 256 and sum(1 for n in im.convert("L").histogram() if n) > 100  # photos, not flat test cards
    names = {os.path.splitext(os.path.basename(p))[0] for p in photos}
    assert not names & {os.path.splitext(p.name)[0] for p in photo_paths[HELD_OUT]}


def test_without_onnxruntime_one_line_before_any_work(tiny_model_dir, photo_paths, tmp_path, monkeypatch, capsys):
    from cli_helpers import run_cli

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` now raises ImportError
    with pytest.raises(pc.ColorizationBackendError) as err:
        Colorizer.from_pretrained(str(tiny_model_dir), precision="int8")
    assert str(err.value) == f"precision 'int8' needs onnxruntime: {INSTALL}"
    colorizer = Colorizer.from_pretrained(str(tiny_model_dir), precision="fp32")
    with pytest.raises(pc.ColorizationBackendError, match="needs onnxruntime"):
        colorizer(str(photo_paths[0]), precision="int8")  # per call: refused before the photo is read
    out = tmp_path / "out"
    capsys.readouterr()  # the loading bars above are not the command's
    code, _, err_lines = run_cli(["colorize", photo_paths[0], "-o", out, "--model", tiny_model_dir, "--precision", "int8"], capsys)
    assert code != 0 and len(err_lines) == 1 and INSTALL in err_lines[0], err_lines
    assert not out.exists() or not os.listdir(out)


@pytest.mark.slow
def test_remote_code_alone_refuses_int8_with_one_line(tiny_model_dir, tmp_path):
    from test_remote_code import BLOCK_HF_COLORIZE

    folder = tmp_path / "model"
    Colorizer.from_pretrained(str(tiny_model_dir)).model.save_pretrained(folder)
    hf_colorize.ColorizationImageProcessor(size=64).save_pretrained(folder)
    child = BLOCK_HF_COLORIZE + textwrap.dedent(
        """
        from transformers import pipeline
        colorize = pipeline(model=sys.argv[1], trust_remote_code=True)
        assert colorize.colorizer.resolved_precision in ("fp32", "bf16")  # auto works from the remote code too
        try:
            colorize(sys.argv[2], precision="int8")
        except ValueError as err:
            print(type(err).__name__, str(err), sep=": ")
        """
    )
    photo = os.path.join(os.path.dirname(hf_colorize.__file__), "export", "calibration", "coffee.jpg")
    done = subprocess.run([sys.executable, "-c", child, str(folder), photo], capture_output=True, text=True, cwd=tmp_path,
                          env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"ColorizationBackendError: precision 'int8' needs the hf-colorize package with ONNX Runtime: {INSTALL}"


@pytest.fixture(scope="module")
def int8_default(tmp_path_factory):
    """The embedded (trained) default model in fp32 and in int8, quantized into a fresh cache folder."""
    pytest.importorskip("onnxruntime")
    cache = tmp_path_factory.mktemp("int8_cache")
    os.environ["HF_COLORIZE_INT8_CACHE"] = str(cache)
    try:
        fp32 = Colorizer.from_pretrained(hf_colorize.DEFAULT_MODEL, precision="fp32")
        int8 = Colorizer.from_pretrained(hf_colorize.DEFAULT_MODEL, precision="int8")
        int8.logits(torch.zeros(1, 1, 64, 64))  # builds the quantized network
    finally:
        os.environ.pop("HF_COLORIZE_INT8_CACHE", None)
    return fp32, int8, cache


@pytest.mark.slow
def test_int8_within_budget_of_fp32_on_held_out_photos(int8_default, photo_paths):
    fp32, int8, _ = int8_default
    diffs = []
    for path in photo_paths[HELD_OUT]:
        a, b = fp32(str(path), output_type="lab"), int8(str(path), output_type="lab")
        assert torch.equal(a[0], b[0])  # L is the photo's own
        diffs.append((a[1:] - b[1:]).abs().mean().item())
    assert 0 < max(diffs) < 2.0, diffs  # really quantized, within 2 ab units on every photo


@pytest.mark.slow
def test_int8_auc_within_0005_of_fp32(int8_default, photo_paths):
    from hf_colorize.evaluation.protocol import evaluate_model

    fp32, int8, _ = int8_default
    photos = [str(p) for p in photo_paths[HELD_OUT]]
    auc = {name: evaluate_model(c, photos, size=128)["results"]["model"]["auc_raw"] for name, c in
           (("fp32", fp32), ("int8", int8))}
    assert abs(auc["int8"] - auc["fp32"]) < 0.005, auc


@pytest.mark.slow
def test_int8_decoding_is_the_models_float32_decoding_and_the_model_is_untouched(int8_default, photo_paths):
    fp32, int8, _ = int8_default
    x = fp32.prepare(str(photo_paths[4]))[1][None]
    logits = int8.logits(x)
    assert logits.dtype == torch.float32 and logits.shape == fp32.logits(x).shape
    assert torch.equal(int8.predict_ab(x), int8.model.decode(logits).cpu())  # the same bins and annealed mean
    assert torch.equal(int8.model.ab_bins, torch.tensor(int8.model.config.ab_bins))
    params = next(int8.model.parameters())
    assert params.dtype == torch.float32 and int8.model.blocks[1].layers[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert int8.resolved_precision == "int8"


@pytest.mark.slow
def test_int8_network_is_cached_in_process_and_on_disk(int8_default, monkeypatch):
    from hf_colorize.export import int8 as int8_module

    fp32, int8, cache = int8_default
    files = os.listdir(cache)
    assert len(files) == 1 and files[0].endswith(".onnx")
    monkeypatch.setenv("HF_COLORIZE_INT8_CACHE", str(cache))

    def no_rebuild(*args, **kwargs):
        raise AssertionError("rebuilt although cached")

    monkeypatch.setattr(int8_module, "_quantize", no_rebuild)
    x = fp32.prepare(os.path.join(int8_module.CALIBRATION_DIR, "coffee.jpg"))[1][None]
    expected = int8.logits(x)
    again = Colorizer(fp32.model, fp32.image_processor, precision="int8")  # another colorizer: the process cache
    assert torch.equal(again.logits(x), expected)
    monkeypatch.setattr(int8_module, "_SESSIONS", {})  # a new process: the file on disk
    assert torch.equal(Colorizer(fp32.model, fp32.image_processor, precision="int8").logits(x), expected)


@pytest.mark.slow
def test_quantize_with_own_calibration_photos(tiny_model_dir, photo_paths, tmp_path):
    pytest.importorskip("onnxruntime")
    from hf_colorize.common import ConversionError
    from hf_colorize.export.int8 import quantize_int8
    from hf_colorize.export.onnx import onnx_session

    model = Colorizer.from_pretrained(str(tiny_model_dir)).model
    path = quantize_int8(model, tmp_path / "tiny-int8.onnx", calibration=[str(p) for p in photo_paths[:3]], size=64)
    session = onnx_session(path, threads=1)
    assert any(n.op_type == "QuantizeLinear" for n in __import__("onnx").load(path).graph.node)
    x = hf_colorize.ColorizationImageProcessor(size=64).prepare(str(photo_paths[5]))[1][None]
    (logits,) = session.run(["logits"], {"pixel_values": x.numpy()})
    assert logits.shape == (1, 313, 16, 16)
    with pytest.raises(ConversionError, match="no such folder"):
        quantize_int8(model, tmp_path / "x.onnx", calibration=tmp_path / "missing")
    assert not (tmp_path / "x.onnx").exists()


def test_sensitive_convolutions_are_the_fewest_that_bring_rounding_within_budget():
    """On the hint-trained default, int8 rounding of every convolution moves the calibration photos'
    ab by ~3 units, nearly all from one layer (a few outlier input channels under a per-tensor uint8
    step): that layer is kept float, and the rest round within the budget. Pure torch: no onnxruntime."""
    from hf_colorize.export.int8 import (CALIBRATION_AB, SimulatedRounding, _convs, _inputs, calibration_photos,
                                         sensitive_convs)

    colorizer = Colorizer.from_pretrained(hf_colorize.DEFAULT_MODEL, precision="fp32")
    model = colorizer.model.float().to(memory_format=torch.contiguous_format)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    inputs = _inputs(colorizer.image_processor, calibration_photos()[:3], 96)
    names = [n for n, _ in _convs(model)]
    always = [names[0], "classifier"]
    chosen = sensitive_convs(model, inputs, always_float=always)
    assert chosen and len(chosen) <= 2 and not set(chosen) & set(always), chosen
    rounding = SimulatedRounding(model, torch.cat(inputs))
    rest = [i for i, n in enumerate(names) if n not in chosen + always]
    everything = [i for i, n in enumerate(names) if n not in always]
    assert rounding.ab_change(rest) <= CALIBRATION_AB < rounding.ab_change(everything)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the model is not changed


@pytest.mark.slow
def test_int8_graph_keeps_exactly_the_sensitive_convolutions_float(int8_default):
    import onnx

    from hf_colorize.export.int8 import _weight_names

    _, _, cache = int8_default
    path = os.path.join(cache, os.listdir(cache)[0])
    graph = onnx.load(path).graph
    producer = {o: n.op_type for n in graph.node for o in n.output}
    convs = [n for n in graph.node if n.op_type in ("Conv", "ConvTranspose")]
    modules = _weight_names(path)
    floating = [modules[n.name] for n in convs if producer.get(n.input[1]) != "DequantizeLinear"]
    assert floating[0] == "blocks.0.layers.0" and floating[-1] == "classifier"  # L in, logits out
    assert 3 <= len(floating) <= 4 and len(convs) - len(floating) >= 18, floating  # the rest is int8
