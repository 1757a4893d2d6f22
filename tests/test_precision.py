"""Reduced-precision inference (`precision="bf16"`): close to fp32 on real photos, L untouched, and the
float32 parts (decoding, soft-encoding) stay float32 under autocast."""

import pathlib
import sys

import pytest
import torch
from transformers import pipeline

import hf_colorize  # noqa: F401  (registers the task)
from hf_colorize import ColorizationImageProcessor, decode_ab
from hf_colorize.models.colorization.modeling_colorization import soft_encode

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "benchmarks"))


def _lab(pipe, paths, **kwargs):
    return [pipe(str(p), output_type="lab", **kwargs) for p in paths]


def test_bf16_pipeline_close_to_fp32(tiny_model_dir, photo_paths):
    paths = photo_paths[:3]
    fp32 = _lab(pipeline("image-colorization", model=str(tiny_model_dir), decode_mode="mean"), paths)
    pipe = pipeline("image-colorization", model=str(tiny_model_dir), decode_mode="mean", precision="bf16")
    bf16 = _lab(pipe, paths)
    at_call = _lab(pipeline("image-colorization", model=str(tiny_model_dir), decode_mode="mean"), paths[:1], precision=torch.bfloat16)
    processor = ColorizationImageProcessor()
    for path, a, b in zip(paths, fp32, bf16):
        assert torch.equal(a[0], b[0])  # L is the input's, whatever the precision
        assert torch.allclose(b[0], processor.l_channel(str(path))[0], atol=1e-3)
        diff = (a[1:] - b[1:]).abs().mean().item()
        assert 0 < diff < 2.0, (path.name, diff)  # really ran in bf16, within the accuracy budget
    assert torch.equal(at_call[0], bf16[0])  # call-time and construction-time option agree


def test_bad_precision_is_one_clear_error(tiny_model_dir, photo_paths):
    pipe = pipeline("image-colorization", model=str(tiny_model_dir))
    with pytest.raises(ValueError, match="precision must be 'auto', 'fp32', 'bf16', 'fp16' or 'int8', got 'int4'"):
        pipe(str(photo_paths[0]), precision="int4")


def test_decoding_and_soft_encoding_stay_fp32_under_autocast(photo_paths):
    from hf_colorize.models.colorization.image_processing_colorization import load_rgb, rgb_to_lab

    torch.manual_seed(0)
    bins = torch.tensor(hf_colorize.eccv16_ab_bins(), dtype=torch.float32)
    logits = torch.randn(2, 313, 16, 16) * 3
    ab = rgb_to_lab(load_rgb(str(photo_paths[0]))[None, :, :64, :64])[:, 1:]
    plain = decode_ab(logits, bins, "annealed_mean", 0.38), soft_encode(ab, bins)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = decode_ab(logits, bins, "annealed_mean", 0.38), soft_encode(ab, bins)
    assert mixed[0].dtype == torch.float32 and torch.allclose(mixed[0], plain[0], atol=1e-5)
    assert torch.equal(mixed[1][0], plain[1][0]) and torch.allclose(mixed[1][1], plain[1][1], atol=1e-6)


@pytest.mark.slow
def test_full_eccv16_bf16_within_budget_of_reference(photo_paths, tmp_path, monkeypatch):
    """The full-size ECCV16 network (reference weights, converted): on the reference's own network input,
    fp32 equals the reference and bf16 stays within 2 ab units (mean); end to end, bf16 stays within 2 ab
    units of our fp32 path at the original resolution."""
    pytest.importorskip("colorizers")
    import reference
    import torch.nn.functional as F
    from colorizers import util

    from hf_colorize.export.eccv16 import convert_eccv16_checkpoint

    # the reference's last conv holds the 313 ECCV16 bins: take them from the package (the same values
    # as ../shared's zhang_pts_in_hull.json, which test_convert_eccv16 checks) so this runs without it
    monkeypatch.setattr(reference, "shared_bins", lambda: torch.tensor(hf_colorize.eccv16_ab_bins(), dtype=torch.float32))
    ref = reference.make_reference_model(photo_paths[4:6])  # BatchNorm statistics from two other photos
    torch.save(ref.state_dict(), tmp_path / "ref.pth")
    convert_eccv16_checkpoint(tmp_path / "ref.pth", tmp_path / "model", decode_mode="mean")
    path = str(photo_paths[1])
    pipe = pipeline("image-colorization", model=str(tmp_path / "model"))
    _, l_rs = util.preprocess_img(util.load_img(path))
    with torch.inference_mode():
        ref_ab = ref(l_rs)
        for precision, budget in ((None, 0.01), ("bf16", 2.0)):
            ab = pipe._forward({"pixel_values": (l_rs - 50.0) / 100.0, "original_l": None}, precision=precision)["ab"]
            diff = (F.interpolate(ab, scale_factor=4, mode="bilinear") - ref_ab).abs().mean().item()
            assert diff < budget, (precision, diff)
    fp32 = pipe(path, output_type="lab")
    bf16 = pipe(path, output_type="lab", precision="bf16")
    assert torch.equal(fp32[0], bf16[0])
    assert 0 < (bf16[1:] - fp32[1:]).abs().mean() < 2.0


@pytest.mark.slow
def test_soft_encode_matches_sklearn_nearest_neighbors(photo_paths):
    """The grid-accelerated soft_encode finds exactly the k nearest bins (as scikit-learn's
    NearestNeighbors, the original release's approach) with the same Gaussian weights, on real photo ab
    and on a k-means-like irregular bin set."""
    import numpy as np
    from sklearn.neighbors import NearestNeighbors

    from hf_colorize.models.colorization.image_processing_colorization import load_rgb, rgb_to_lab

    ab = torch.cat([rgb_to_lab(load_rgb(str(p))[None, :, :96, :96])[:, 1:] for p in photo_paths[:3]])
    torch.manual_seed(0)
    for bins in (torch.tensor(hf_colorize.eccv16_ab_bins(), dtype=torch.float32), torch.randn(48, 2) * 35):
        idx, wts = soft_encode(ab, bins, neighbors=5, sigma=5.0)
        pts = ab.permute(0, 2, 3, 1).reshape(-1, 2).double().numpy()
        dists, inds = NearestNeighbors(n_neighbors=5).fit(bins.double().numpy()).kneighbors(pts)
        ours = idx.permute(0, 2, 3, 1).reshape(-1, 5).numpy()
        assert (np.sort(ours, 1) == np.sort(inds, 1)).mean() > 0.999  # ties may swap equidistant bins
        assert (ours[:, 0] == inds[:, 0]).mean() > 0.999
        expected = np.exp(-(dists**2) / 50.0)
        expected /= expected.sum(1, keepdims=True)
        assert np.abs(np.sort(wts.permute(0, 2, 3, 1).reshape(-1, 5).numpy(), 1) - np.sort(expected, 1)).max() < 1e-4
