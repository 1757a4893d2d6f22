"""Decoding the bin distribution into ab: limits (T -> 0 is the mode, T = 1 the mean), median, sampling.

The logits come from a tiny (random) model run on real photos, so the distributions have the shapes a
network produces; reference values are computed independently in float64 numpy.
"""

import numpy as np
import pytest
import torch
from PIL import Image

from hf_colorize import ColorizationImageProcessor, ColorizationModel, decode_ab


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return ColorizationModel.from_pretrained(tiny_model_dir).eval()


@pytest.fixture(scope="module")
def logits(model, photo_paths, gray_photo_paths):
    """Logits `(B, Q, 16, 16)` of the tiny model on real colour and gray photos. A random model's logits
    are nearly flat, so each pixel's are standardized and scaled by 3, which peaks them like a trained
    model's (top bin probability ~0.05-0.5) while keeping the photo-dependent structure."""
    processor = ColorizationImageProcessor(size=64)
    images = [Image.open(p) for p in photo_paths[:3] + gray_photo_paths[:1]]
    with torch.no_grad():
        z = model(pixel_values=processor(images)["pixel_values"]).logits
    return (z - z.mean(1, keepdim=True)) / z.std(1, keepdim=True) * 3.0


@pytest.fixture(scope="module")
def bins(model):
    return model.ab_bins


def _softmax(x, axis):
    x = x - x.max(axis=axis, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=axis, keepdims=True)


def test_low_temperature_equals_mode(logits, bins):
    lg = logits.double().numpy()
    mode = decode_ab(logits, bins, mode="mode")
    expected = bins.numpy()[lg.argmax(axis=1)].transpose(0, 3, 1, 2)
    np.testing.assert_array_equal(mode.numpy(), expected)
    annealed = decode_ab(logits, bins, mode="annealed_mean", temperature=1e-4)
    # at T = 1e-4 a runner-up whose logit is g below the top weighs exp(-g / T): nothing for g > 2e-3
    # (e^-20); the rare near-ties are left out
    top2 = np.sort(lg, axis=1)[:, -2:]
    clear = torch.from_numpy(top2[:, 1] - top2[:, 0] > 2e-3)
    assert clear.float().mean() > 0.99
    diff = (annealed - mode).norm(dim=1)
    assert diff[clear].max() < 1e-3


def test_temperature_one_equals_mean(logits, bins):
    annealed = decode_ab(logits, bins, mode="annealed_mean", temperature=1.0)
    mean = decode_ab(logits, bins, mode="mean", temperature=0.2)  # "mean" ignores the temperature
    probs = _softmax(logits.double().numpy(), axis=1)
    expected = np.einsum("bqhw,qc->bchw", probs, bins.double().numpy())
    np.testing.assert_allclose(annealed.numpy(), expected, atol=1e-3)
    np.testing.assert_allclose(mean.numpy(), expected, atol=1e-3)


def test_annealed_mean_matches_reference_formula_and_interpolates(logits, bins):
    """f_T(z) = mean of softmax(log z / T) (Zhang et al. eq. 5) at the paper's T = 0.38; it lies between
    the mean and the mode: farther from the mean than T = 1, closer than T -> 0."""
    t = 0.38
    got = decode_ab(logits, bins, mode="annealed_mean", temperature=t)
    log_z = np.log(_softmax(logits.double().numpy(), axis=1))
    expected = np.einsum("bqhw,qc->bchw", _softmax(log_z / t, axis=1), bins.double().numpy())
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-3)
    mean = decode_ab(logits, bins, mode="mean")
    mode = decode_ab(logits, bins, mode="mode")
    d_mean = (got - mean).norm(dim=1).mean()
    d_mode = (got - mode).norm(dim=1).mean()
    assert d_mean > 1.0 and d_mode > 1.0  # really in between, not equal to either end
    assert (mode - mean).norm(dim=1).mean() > max(d_mean, d_mode)


def test_sample_is_reproducible_and_returns_bin_centres(logits, bins):
    def draw(seed):
        return decode_ab(logits, bins, mode="sample", temperature=1.0, generator=torch.Generator().manual_seed(seed))

    a, b, c = draw(7), draw(7), draw(8)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(a, c)
    pairs = a.permute(0, 2, 3, 1).reshape(-1, 2)
    in_bins = (pairs[:, None, :] == bins[None]).all(-1).any(-1)
    assert in_bins.all(), "sampling must only return bin centres"


def test_sample_frequencies_follow_the_distribution(logits, bins):
    """Many draws from one real pixel's distribution average to its mean (the decode it samples from)."""
    pixel = logits[:1, :, 5:6, 7:8].expand(1, -1, 64, 64).contiguous()  # 4096 draws of one pixel
    for t in (1.0, 0.38):
        draws = decode_ab(pixel, bins, mode="sample", temperature=t, generator=torch.Generator().manual_seed(0))
        expected = decode_ab(logits[:1, :, 5:6, 7:8], bins, mode="annealed_mean", temperature=t)[0, :, 0, 0]
        spread = draws.flatten(2).std(dim=2)[0]
        # the standard error of a 4096-draw mean is spread / 64; allow 4 of them
        assert ((draws.flatten(2).mean(dim=2)[0] - expected).abs() <= 4 * spread / 64 + 1e-3).all()


def test_sample_at_low_temperature_is_the_mode(logits, bins):
    top2 = np.sort(logits.double().numpy(), axis=1)[:, -2:]
    clear = torch.from_numpy(top2[:, 1] - top2[:, 0] > 2e-3)  # see test_low_temperature_equals_mode
    sample = decode_ab(logits, bins, mode="sample", temperature=1e-4, generator=torch.Generator().manual_seed(0))
    mode = decode_ab(logits, bins, mode="mode")
    assert torch.equal(sample.permute(0, 2, 3, 1)[clear], mode.permute(0, 2, 3, 1)[clear])


def _marginal_cdf(probs, values):
    """Distinct values and the float64 CDF of a distribution `probs` over possibly repeated `values`."""
    uniq, inverse = np.unique(values, return_inverse=True)
    mass = np.zeros(len(uniq))
    np.add.at(mass, inverse, probs)
    return uniq, np.cumsum(mass)


def test_median_matches_marginal_medians(logits, bins):
    """Each channel's median is the first value where the marginal CDF reaches 0.5 (Larsson et al.)."""
    got = decode_ab(logits, bins, mode="median").numpy()
    probs = _softmax(logits.double().numpy(), axis=1)
    b_np = bins.double().numpy()
    lo, hi = b_np.min(0), b_np.max(0)
    assert ((got >= lo[None, :, None, None]) & (got <= hi[None, :, None, None])).all()
    mismatches = 0
    for i, y, x in np.ndindex(got.shape[0], got.shape[2], got.shape[3]):
        for c in range(2):
            uniq, cdf = _marginal_cdf(probs[i, :, y, x], b_np[:, c])
            k = int(np.searchsorted(cdf, 0.5))
            if got[i, c, y, x] != uniq[k]:
                # only a float32 cumulative sum landing on the other side of 0.5 may disagree
                assert min(abs(cdf[k] - 0.5), abs(cdf[max(k - 1, 0)] - 0.5)) < 1e-5, (i, c, y, x)
                mismatches += 1
    assert mismatches <= 2


def test_median_of_one_hot_is_the_mode(bins):
    q = bins.shape[0]
    idx = torch.tensor([[0, 17], [156, q - 1]])  # one chosen bin per pixel, including the extremes
    logits = torch.full((1, q, 2, 2), -30.0)
    logits.scatter_(1, idx[None, None], 30.0)
    median = decode_ab(logits, bins, mode="median")
    torch.testing.assert_close(median, decode_ab(logits, bins, mode="mode"), rtol=0, atol=0)
    torch.testing.assert_close(median[0, :, 1, 1], bins[q - 1])


def test_two_bin_distribution_median(bins):
    """70% on one bin, 30% on another: each channel's median is the heavier bin's coordinate."""
    q = bins.shape[0]
    logits = torch.full((1, q, 1, 1), -1e4)
    heavy, light = 40, 250
    logits[0, heavy] = np.log(0.7)
    logits[0, light] = np.log(0.3)
    torch.testing.assert_close(decode_ab(logits, bins, mode="median")[0, :, 0, 0], bins[heavy])
    torch.testing.assert_close(decode_ab(logits, bins, mode="mean")[0, :, 0, 0], 0.7 * bins[heavy] + 0.3 * bins[light])


def test_model_forward_decodes_with_config_defaults_and_call_time_options(model, logits, bins):
    processor = ColorizationImageProcessor(size=64)
    x = processor(np.zeros((40, 30), np.uint8) + 128)["pixel_values"]
    with torch.no_grad():
        out = model(pixel_values=x)
        assert model.config.decode_mode == "annealed_mean" and model.config.decode_temperature == 0.38
        torch.testing.assert_close(out.ab, decode_ab(out.logits, bins, "annealed_mean", 0.38))
        torch.testing.assert_close(model(pixel_values=x, decode_mode="mode").ab, decode_ab(out.logits, bins, "mode"))
        torch.testing.assert_close(model(pixel_values=x, temperature=1.0).ab, decode_ab(out.logits, bins, "mean"))


@pytest.mark.parametrize("kwargs", [{"mode": "nearest"}, {"mode": "annealed_mean", "temperature": 0.0},
                                    {"mode": "sample", "temperature": -1.0}])
def test_invalid_decoding_options_raise(logits, bins, kwargs):
    with pytest.raises(ValueError):
        decode_ab(logits, bins, **kwargs)
