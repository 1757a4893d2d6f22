"""AdaptiveMultiScaleBinning: per image, per channel, per scale histograms on real photos."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hf_colorize.video.histograms import LAB_RANGES, AdaptiveMultiScaleBinning, histogram_distance
from hf_colorize.models.colorization.image_processing_colorization import load_rgb, rgb_to_lab


@pytest.fixture(scope="module")
def lab_photos(photo_paths):
    """Three real photos as Lab, resized to a common 96x128: (3, 3, 96, 128)."""
    out = []
    for p in photo_paths[:3]:
        rgb = torch.nn.functional.interpolate(load_rgb(p)[None], size=(96, 128), mode="area")[0]
        out.append(rgb_to_lab(rgb))
    return torch.stack(out)


def test_matches_numpy_histogram_per_image_channel_and_scale(lab_photos):
    binning = AdaptiveMultiScaleBinning((32, 64, 128), LAB_RANGES)
    hist = binning(lab_photos)
    assert hist.shape == (3, 3 * (32 + 64 + 128))
    for scale, n in zip(binning.split(hist, 3), binning.bin_counts):
        for i in range(3):
            for c, (lo, hi) in enumerate(LAB_RANGES):
                values = lab_photos[i, c].numpy().ravel().clip(lo, hi)
                ref = np.histogram(values, bins=n, range=(lo, hi))[0].astype(np.float64)
                # float32 vs float64 may put a value lying on a bin edge on the other side: 2 pixels slack
                np.testing.assert_allclose(scale[i, c].numpy(), ref / ref.sum(), atol=2.0 / values.size)


def test_batch_is_per_image_not_pooled(lab_photos):
    binning = AdaptiveMultiScaleBinning(value_range=LAB_RANGES)
    batched = binning(lab_photos)
    singles = torch.cat([binning(lab_photos[i:i + 1]) for i in range(len(lab_photos))])
    torch.testing.assert_close(batched, singles)
    assert not torch.allclose(batched[0], batched[1])  # different photos, different histograms


def test_every_block_sums_to_one(lab_photos):
    binning = AdaptiveMultiScaleBinning((8, 16), LAB_RANGES)
    for scale in binning.split(binning(lab_photos), 3):
        torch.testing.assert_close(scale.sum(-1), torch.ones(3, 3))


def test_out_of_range_clamped_or_ignored():
    x = torch.tensor([[[[-5.0, 0.25, 0.75, 7.0]]]])
    clamp = AdaptiveMultiScaleBinning((4,), (0.0, 1.0))(x)
    torch.testing.assert_close(clamp[0], torch.tensor([0.25, 0.25, 0.0, 0.5]))
    ignore = AdaptiveMultiScaleBinning((4,), (0.0, 1.0), out_of_range="ignore")(x)
    torch.testing.assert_close(ignore[0], torch.tensor([0.0, 0.5, 0.0, 0.5]))
    nan = AdaptiveMultiScaleBinning((4,), (0.0, 1.0))(torch.tensor([[[[float("nan"), 0.1]]]]))
    torch.testing.assert_close(nan[0], torch.tensor([1.0, 0.0, 0.0, 0.0]))
    # nothing in range: a uniform histogram rather than NaN
    empty = AdaptiveMultiScaleBinning((4,), (0.0, 1.0), out_of_range="ignore")(torch.full((1, 1, 2, 2), 9.0))
    torch.testing.assert_close(empty[0], torch.full((4,), 0.25))


def test_mask_restricts_statistics(lab_photos):
    binning = AdaptiveMultiScaleBinning((16,), LAB_RANGES)
    mask = torch.zeros(3, 1, 96, 128)
    mask[:, :, :48] = 1
    torch.testing.assert_close(binning(lab_photos, mask), binning(lab_photos[:, :, :48]))


def test_soft_binning_is_differentiable_and_keeps_mass_and_mean(lab_photos):
    soft = AdaptiveMultiScaleBinning((16, 32), LAB_RANGES, soft=True)
    x = lab_photos.clone().requires_grad_(True)
    hist = soft(x)
    for scale in soft.split(hist, 3):
        torch.testing.assert_close(scale.sum(-1), torch.ones(3, 3))
    # linear splatting preserves the mean (values between the first and last bin centres)
    l_chan = lab_photos[:, :1].clamp(100 / 32 / 2, 100 - 100 / 32 / 2)
    first = AdaptiveMultiScaleBinning((32,), (0.0, 100.0), soft=True)(l_chan)
    centres = (torch.arange(32) + 0.5) * 100 / 32
    torch.testing.assert_close((first * centres).sum(-1), l_chan.flatten(1).mean(-1), rtol=1e-4, atol=1e-3)
    # gradients reach the pixels: pushing mass to the top L bins means brightening pixels
    top = soft.split(hist, 3)[0][:, 0, -8:].sum()
    top.backward()
    assert x.grad is not None and x.grad[:, 0].sum() > 0 and torch.isfinite(x.grad).all()
    small = torch.rand(1, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(AdaptiveMultiScaleBinning((4, 7), (0.0, 1.0), soft=True), (small,))


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 3), st.integers(1, 3), st.integers(1, 9), st.integers(1, 9), st.integers(1, 40), st.booleans())
def test_shape_and_normalization_any_size(b, c, h, w, bins, soft):
    x = torch.randn(b, c, h, w) * 2
    hist = AdaptiveMultiScaleBinning((bins, bins + 3), (-1.0, 1.0), soft=soft)(x)
    assert hist.shape == (b, c * (2 * bins + 3))
    assert (hist >= 0).all()
    torch.testing.assert_close(hist.sum(1), torch.full((b,), 2.0 * c))


def test_distance_identity_and_cut(lab_photos):
    binning = AdaptiveMultiScaleBinning(value_range=LAB_RANGES)
    h = binning(lab_photos)
    same = binning.distance(h, h, 3)
    torch.testing.assert_close(same, torch.zeros(3))
    other = binning.distance(h, h.roll(1, 0), 3)
    assert (other > 0.01).all() and (other <= np.log(2)).all()
    p = torch.tensor([1.0, 0.0])
    q = torch.tensor([0.0, 1.0])
    assert histogram_distance(p, q, "js") == pytest.approx(np.log(2))
    assert histogram_distance(p, q, "l1") == pytest.approx(1.0)
    assert histogram_distance(p, q, "chi2") == pytest.approx(1.0)


def test_bad_arguments():
    with pytest.raises(ValueError, match="bin_counts"):
        AdaptiveMultiScaleBinning((0,))
    with pytest.raises(ValueError, match="high > low"):
        AdaptiveMultiScaleBinning(value_range=(1.0, 1.0))
    with pytest.raises(ValueError, match="3 channels"):
        AdaptiveMultiScaleBinning(value_range=((0, 1), (0, 1)))(torch.zeros(1, 3, 2, 2))
    with pytest.raises(ValueError, match="B, C, H, W"):
        AdaptiveMultiScaleBinning()(torch.zeros(3, 2, 2))
