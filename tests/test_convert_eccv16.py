"""Converter from the original ECCV16 release (reference `colorizers.eccv16`) and parity with it on real photos.

The reference decodes with the plain softmax expectation, so it is matched by `decode_mode="mean"`
(annealed mean at T = 1); its ab map is upsampled x4 to 256 inside the network and then to the
original size, ours goes from 1/4 resolution to the original size in one bilinear step.
"""

import json
import os
import pathlib
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

pytestmark = pytest.mark.slow  # the full-size (32M-parameter) ECCV16 network
colorizers = pytest.importorskip("colorizers")  # rz-colorization (needs IPython)
from colorizers import util as ref_util  # noqa: E402

from cli_helpers import run_cli  # noqa: E402
from hf_colorize import ColorizationImageProcessor, ColorizationModel, decode_ab  # noqa: E402
from hf_colorize.export.eccv16 import (  # noqa: E402
    ConversionError,
    convert_eccv16_checkpoint,
    convert_eccv16_state_dict,
    load_state_dict,
)

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "benchmarks"))
from reference import SHARED, make_reference_model, shared_bins  # noqa: E402


def _shared_bins():
    path = SHARED / "zhang_pts_in_hull.json"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    return shared_bins()


@pytest.fixture(scope="module")
def reference(imagenet_files):
    """The reference ECCVGenerator, seeded, with random weights that make its output depend on the photo
    (BatchNorm running stats measured on real photos; see benchmarks/reference.py)."""
    ref = make_reference_model(imagenet_files[3:200:75])
    # the running stats really are non-trivial, so a wrong BN mapping cannot pass
    bn = ref.model3[6]
    assert bn.running_mean.abs().mean() > 0.05 and (bn.running_var - 1).abs().mean() > 0.05
    return ref


@pytest.fixture(scope="module")
def reference_outputs(reference, photo_paths):
    """For two real photos: the reference's full-res L (1, 1, H, W), its network input L (1, 1, 256, 256)
    and its ab output (1, 2, 256, 256)."""
    out = []
    with torch.inference_mode():
        for path in photo_paths[:2]:
            l_orig, l_rs = ref_util.preprocess_img(ref_util.load_img(str(path)))
            out.append((path, l_orig, l_rs, reference(l_rs)))
    return out


@pytest.fixture(scope="module")
def converted(reference, tmp_path_factory):
    """Convert through the file path users take: a .pth saved by torch.save, loaded with weights_only."""
    tmp = tmp_path_factory.mktemp("eccv16")
    ckpt = tmp / "colorization_release_v2-test.pth"
    torch.save(reference.state_dict(), ckpt)
    out = tmp / "converted"
    convert_eccv16_checkpoint(ckpt, out)
    return out


@pytest.fixture(scope="module")
def model(converted):
    return ColorizationModel.from_pretrained(converted).eval()


def test_bins_from_checkpoint_equal_shared_bins(model):
    bins = _shared_bins()
    assert model.config.num_bins == 313
    assert torch.equal(model.ab_bins, bins)  # same values, same order
    assert model.config.ab_bins == bins.tolist()
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(32.2e6, rel=0.01)


def test_network_parity_same_input(model, reference_outputs):
    """Same L input: the converted model's mean-decoded ab, upsampled like the reference's, is the reference's."""
    with torch.inference_mode():
        for path, _, l_rs, ref_ab in reference_outputs:
            out = model((l_rs - 50.0) / 100.0, decode_mode="mean")
            ours = F.interpolate(out.ab, scale_factor=4, mode="bilinear")
            assert (ours - ref_ab).abs().max() < 1e-3, path.name
            t1 = decode_ab(out.logits, model.ab_bins, "annealed_mean", temperature=1.0)
            assert torch.allclose(t1, out.ab, atol=1e-4)
            # the paper's T = 0.38 is a different (more saturated) decoding: it does not match
            t038 = F.interpolate(decode_ab(out.logits, model.ab_bins, "annealed_mean", 0.38), scale_factor=4, mode="bilinear")
            assert (t038 - ref_ab).abs().mean() > 0.5


def test_end_to_end_parity(reference, converted, reference_outputs):
    """Reference preprocess_img -> model -> postprocess_tens vs our processor -> model -> post-process,
    compared in Lab at the original resolution: L identical, ab the same within resampling differences."""
    processor = ColorizationImageProcessor.from_pretrained(converted)
    model = ColorizationModel.from_pretrained(converted, decode_mode="mean").eval()
    resized = 0
    with torch.inference_mode():
        for path, l_orig, l_rs, ref_ab_256 in reference_outputs:
            ref_ab = F.interpolate(ref_ab_256, size=l_orig.shape[2:], mode="bilinear")[0]
            assert ref_util.postprocess_tens(l_orig, ref_ab_256).shape[:2] == tuple(l_orig.shape[2:])

            # our post-processing of the reference's own network input: only the ab upsampling differs
            # (ours 1/4 -> full size in one bilinear step, the reference via 256x256)
            ab = model((l_rs - 50.0) / 100.0).ab[0]
            lab = processor.colorize_l(l_orig[0], ab, output_type="lab")
            assert (lab[1:] - ref_ab).abs().mean() < 0.3, path.name

            # fully ours: our processor builds the reference's network input (8-bit RGB resized with PIL
            # bicubic, then L) ...
            inputs = processor(str(path))
            assert ((inputs.pixel_values * 100 + 50) - l_rs).abs().max() < 1e-3, path.name
            out = model(**inputs)
            lab = processor.post_process_colorization(out, images=[str(path)], output_type="lab")[0]
            assert lab.shape[-2:] == l_orig.shape[2:]
            assert (lab[0] - l_orig[0, 0]).abs().max() < 1e-3, path.name  # L is the photo's own
            # ... so end to end only the ab upsampling path separates us from the reference
            assert (lab[1:] - ref_ab).abs().mean() < 0.3, path.name
            # resizing L instead (what `resize_l` does for callers that only have L) gives a network input
            # measurably further from the reference's (how much that moves ab depends on the photo)
            if l_orig.shape[-2:] == l_rs.shape[-2:]:
                continue  # a 256x256 photo is not resized at all
            resized += 1
            moved = processor.resize_l(processor.l_channel(str(path)))[None] * 100 + 50
            assert (moved - l_rs).abs().mean() > 10 * ((inputs.pixel_values * 100 + 50) - l_rs).abs().mean(), path.name
    assert resized, "no photo of a size other than 256x256 was compared"


def test_safetensors_checkpoint(reference, model, tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "release.safetensors"
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(path))
    again = convert_eccv16_state_dict(load_state_dict(path))
    for k, v in model.state_dict().items():
        assert torch.equal(again.state_dict()[k], v), k


def test_bad_checkpoints(reference, tmp_path):
    with pytest.raises(ConversionError, match="no such file"):
        load_state_dict(tmp_path / "missing.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"this is not a checkpoint")
    with pytest.raises(ConversionError, match="cannot read checkpoint") as err:
        load_state_dict(junk)
    assert "\n" not in str(err.value)
    state = reference.state_dict()
    with pytest.raises(ConversionError, match="model_out.weight"):
        convert_eccv16_state_dict({k: v for k, v in state.items() if k != "model_out.weight"})
    with pytest.raises(ConversionError, match="lacks"):
        convert_eccv16_state_dict({k: v for k, v in state.items() if not k.startswith("model5.2.")})
    bad = dict(state)
    bad["model4.0.weight"] = bad["model4.0.weight"][:, :128]
    with pytest.raises(ConversionError, match="shape mismatch"):
        convert_eccv16_state_dict(bad)


def test_existing_output_folder_is_kept(reference, tmp_path):
    ckpt = tmp_path / "release.pth"
    torch.save(reference.state_dict(), ckpt)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    with pytest.raises(ConversionError, match="not empty"):
        convert_eccv16_checkpoint(ckpt, tmp_path / "out")
    assert (tmp_path / "out" / "notes.txt").read_text() == "mine"


def test_cli(converted, reference, tmp_path):
    ckpt = tmp_path / "release.pth"
    torch.save(reference.state_dict(), ckpt)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "hf_colorize", "convert-eccv16"]
    ok = subprocess.run(cmd + [str(ckpt), "-o", str(out), "--decode-mode", "mean"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert json.loads((out / "config.json").read_text())["decode_mode"] == "mean"
    assert (out / "model.safetensors").read_bytes() == (converted / "model.safetensors").read_bytes()
    # a missing checkpoint is one clear line and leaves nothing behind
    missing = subprocess.run(cmd + [str(tmp_path / "nope.pth"), "-o", str(tmp_path / "o2")], capture_output=True, text=True)
    assert missing.returncode == 1 and "nope.pth: no such file" in missing.stderr and missing.stderr.count("\n") == 1
    assert not (tmp_path / "o2").exists()


@pytest.mark.parametrize("argv, code, expected", [
    (["{ckpt}", "-o", "{out}", "--temperature", "0"], 2, "argument --temperature: must be a finite number > 0"),
    (["{ckpt}", "-o", "{out}", "--decode-mode", "best"], 2, "argument --decode-mode/--decode: invalid choice"),
    (["{ckpt}", "-o", "{file}"], 2, "exists and is a file, not a folder"),
    (["{ckpt}", "-o", "{full}"], 2, "folder is not empty (pass --overwrite"),
    (["{junk}", "-o", "{out}"], 1, "cannot read checkpoint"),
    (["{missing}", "-o", "{out}"], 1, "no such file"),
])
def test_cli_errors_are_one_line_with_exit_codes(argv, code, expected, tmp_path, capsys):
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    names = {"ckpt": str(tmp_path / "junk.pth"), "junk": str(tmp_path / "junk.pth"), "out": str(tmp_path / "out"),
             "file": str(tmp_path / "file.txt"), "full": str(tmp_path / "full"), "missing": str(tmp_path / "nope.pth")}
    got, _, err = run_cli(["convert-eccv16", *[a.format(**names) for a in argv]], capsys)
    assert got == code and len(err) == 1, err
    assert err[0].startswith("hf-colorize convert-eccv16: error: ") and expected in err[0], err
    assert not (tmp_path / "out").exists() and os.listdir(tmp_path / "full") == ["notes.txt"]
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".")]
