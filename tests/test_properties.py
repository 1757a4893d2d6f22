"""Property-based tests (hypothesis) of the colour maths, decoding, soft-encoding, rebalancing and of
lightness preservation through the image processor, for arbitrary inputs.

Tolerances, and why:
- decoding: 1e-2 Lab units (float32 sums over up to 313 bins).
- Lab <-> RGB round trip: 2e-4 in RGB (float32 arithmetic; the gamut mapper leaves in-gamut colours alone).
- lab_to_rgb keeps L within 0.05 (its gamut test allows 1e-4 outside [0, 1] before the final clamp).
- L through processor + model + post-processing: 0.05 for float output, 0.6 for 8-bit output (rounding
  each of R, G, B by half a level moves L by at most ~0.15 each).
"""

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image
from scipy.spatial import ConvexHull
from skimage.color import rgb2lab

from hf_colorize import ColorizationConfig, ColorizationImageProcessor, ColorizationModel, eccv16_ab_bins
from hf_colorize.models.colorization.image_processing_colorization import lab_to_rgb, rgb_to_lab
from hf_colorize.models.colorization.modeling_colorization import decode_ab, rebalancing_weights, soft_encode

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# through a (tiny, random) network: each example costs a forward pass; any-ab L preservation, the stronger
# property, has the full 40 examples in test_any_ab_prediction_keeps_lightness
MODEL_SETTINGS = settings(SETTINGS, max_examples=15)
ECCV_BINS = torch.tensor(eccv16_ab_bins(), dtype=torch.float32)

finite = dict(allow_nan=False, allow_infinity=False)
small_side = st.integers(1, 6)


@st.composite
def rgb_images(draw, max_side=6):
    h, w = draw(st.integers(1, max_side)), draw(st.integers(1, max_side))
    return torch.from_numpy(draw(arrays(np.float32, (3, h, w), elements=st.floats(0, 1, width=32))))


@st.composite
def lab_images(draw):
    h, w = draw(small_side), draw(small_side)
    l = draw(arrays(np.float32, (1, h, w), elements=st.floats(0, 100, width=32)))
    ab = draw(arrays(np.float32, (2, h, w), elements=st.floats(-128, 127, width=32)))
    return torch.from_numpy(np.concatenate([l, ab]))


@st.composite
def bin_sets(draw):
    """ECCV16's 313 bins, or a random palette of 3-40 distinct bins (k-means palettes are arbitrary)."""
    if draw(st.booleans()):
        return ECCV_BINS
    q = draw(st.integers(3, 40))
    pts = draw(arrays(np.float32, (q, 2), elements=st.floats(-110, 110, width=32), unique=True))
    assume(len({tuple(p) for p in np.round(pts, 2)}) == q)
    return torch.from_numpy(pts)


@st.composite
def logits_and_bins(draw):
    bins = draw(bin_sets())
    b, h, w = draw(st.integers(1, 2)), draw(small_side), draw(small_side)
    logits = draw(arrays(np.float32, (b, bins.shape[0], h, w), elements=st.floats(-20, 20, width=32)))
    return torch.from_numpy(logits), bins


# --------------------------------------------------------------------------------------------------
# Colour conversion
# --------------------------------------------------------------------------------------------------
@SETTINGS
@given(rgb_images())
def test_rgb_lab_round_trip_and_agreement_with_skimage(rgb):
    lab = rgb_to_lab(rgb)
    reference = rgb2lab(rgb.double().permute(1, 2, 0).numpy()).transpose(2, 0, 1)
    np.testing.assert_allclose(lab.numpy(), reference, atol=2e-3)
    np.testing.assert_allclose(lab_to_rgb(lab).numpy(), rgb.numpy(), atol=2e-4)


@SETTINGS
@given(lab_images())
def test_lab_to_rgb_is_in_gamut_and_keeps_lightness(lab):
    rgb = lab_to_rgb(lab)
    assert rgb.min() >= 0 and rgb.max() <= 1 and torch.isfinite(rgb).all()
    l_out = rgb2lab(rgb.double().permute(1, 2, 0).numpy())[..., 0]
    np.testing.assert_allclose(l_out, lab[0].double().numpy(), atol=0.05)


# --------------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------------
def _inside_hull(points, bins, eps=1e-2):
    """points (N, 2) lie inside the convex hull of bins (Q, 2) (or on the segment, if collinear)."""
    b = bins.double().numpy()
    try:
        hull = ConvexHull(b)
    except Exception:  # degenerate (collinear) bins: the bounding box is the hull
        return bool(((points >= b.min(0) - eps) & (points <= b.max(0) + eps)).all())
    return bool((points @ hull.equations[:, :2].T + hull.equations[:, 2] <= eps).all())


@SETTINGS
@given(logits_and_bins(), st.floats(0.05, 2.0))
def test_annealed_mean_lies_in_the_convex_hull_of_the_bins(data, temperature):
    logits, bins = data
    ab = decode_ab(logits, bins, "annealed_mean", temperature)
    assert ab.shape == (logits.shape[0], 2, *logits.shape[2:]) and torch.isfinite(ab).all()
    assert _inside_hull(ab.permute(0, 2, 3, 1).reshape(-1, 2).double().numpy(), bins)


@SETTINGS
@given(logits_and_bins())
def test_annealed_mean_limits_mode_and_mean(data):
    logits, bins = data
    # T = 1 is the mean, computed here in float64 from the definition
    probs = torch.softmax(logits.double(), dim=1)
    mean = torch.einsum("bqhw,qc->bchw", probs, bins.double())
    # (float32 sums over up to 313 bins of values up to 110: ~1e-3 rounding; 1e-2 Lab units is invisible)
    torch.testing.assert_close(decode_ab(logits, bins, "annealed_mean", 1.0).double(), mean, atol=1e-2, rtol=0)
    torch.testing.assert_close(decode_ab(logits, bins, "mean").double(), mean, atol=1e-2, rtol=0)
    # T -> 0 is the mode, wherever the top bin is not (nearly) tied
    top2 = logits.topk(2, dim=1).values
    clear = (top2[:, 0] - top2[:, 1]) > 0.05  # (B, h, w)
    cold = decode_ab(logits, bins, "annealed_mean", 1e-4)
    mode = decode_ab(logits, bins, "mode")
    torch.testing.assert_close(cold.permute(0, 2, 3, 1)[clear], mode.permute(0, 2, 3, 1)[clear], atol=1e-3, rtol=0)


@SETTINGS
@given(logits_and_bins(), st.integers(0, 2**31 - 1))
def test_mode_sample_and_median_shapes_and_values(data, seed):
    logits, bins = data
    as_set = {tuple(p) for p in bins.tolist()}
    for mode in ("mode", "sample"):
        ab = decode_ab(logits, bins, mode, 0.38, generator=torch.Generator().manual_seed(seed))
        assert ab.shape == (logits.shape[0], 2, *logits.shape[2:])
        assert {tuple(p) for p in ab.permute(0, 2, 3, 1).reshape(-1, 2).tolist()} <= as_set  # always a bin centre
    median = decode_ab(logits, bins, "median")
    for c in range(2):  # each channel's median is one of the bins' values on that channel
        assert set(median[:, c].flatten().tolist()) <= set(bins[:, c].tolist())


# --------------------------------------------------------------------------------------------------
# Soft-encoding and rebalancing
# --------------------------------------------------------------------------------------------------
@SETTINGS
@given(bin_sets(), st.data(), st.integers(1, 8), st.floats(1.0, 20.0))
def test_soft_encoding_weights(bins, data, k, sigma):
    n = data.draw(st.integers(1, 12))
    ab = torch.from_numpy(data.draw(arrays(np.float32, (1, 2, 1, n), elements=st.floats(-128, 127, width=32))))
    idx, w = soft_encode(ab, bins, neighbors=k, sigma=sigma)
    k = min(k, bins.shape[0])
    assert idx.shape == w.shape == (1, k, 1, n)
    torch.testing.assert_close(w.sum(1), torch.ones(1, 1, n), atol=1e-5, rtol=0)
    assert (w >= 0).all() and (w[:, 1:] <= w[:, :-1] + 1e-6).all()  # nearest bin first, non-increasing
    # the chosen bins are the k nearest, weighted by a Gaussian of their distance (float64 reference)
    points = ab[0, :, 0].T.double()  # (n, 2)
    d2 = torch.cdist(points, bins.double()) ** 2  # (n, Q)
    chosen = torch.gather(d2, 1, idx[0, :, 0].T)  # (n, k)
    kth = d2.sort(dim=1).values[:, k - 1]
    assert (chosen.max(dim=1).values <= kth + 0.05).all()
    g = torch.exp(-(chosen - chosen[:, :1]) / (2 * sigma**2))
    torch.testing.assert_close(w[0, :, 0].T.double(), g / g.sum(1, keepdim=True), atol=2e-4, rtol=0)


@SETTINGS
@given(arrays(np.float64, st.integers(2, 400), elements=st.floats(0, 1e3, **finite)), st.floats(0.05, 1.0))
def test_rebalancing_weights_have_unit_expectation_and_favour_rare_bins(counts, lam):
    assume(counts.sum() > 1e-6)
    prior = torch.from_numpy(counts / counts.sum())
    w = rebalancing_weights(prior, lam)
    assert torch.isfinite(w).all() and (w > 0).all()
    assert abs(float((prior * w).sum()) - 1.0) < 1e-9
    order = prior.argsort()
    assert (w[order][1:] <= w[order][:-1] * (1 + 1e-12)).all()  # rarer bin -> larger weight


# --------------------------------------------------------------------------------------------------
# Lightness preserved for any image, through the processor, a model and post-processing
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return ColorizationModel(ColorizationConfig(width_multiplier=0.125)).eval(), ColorizationImageProcessor(size=32)


@st.composite
def uint8_images(draw):
    h, w = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    return draw(arrays(np.uint8, (h, w, 3)))


@MODEL_SETTINGS
@given(uint8_images())
def test_processor_and_post_processing_keep_lightness(tiny, image):
    model, processor = tiny
    pil = Image.fromarray(image)
    with torch.no_grad():
        outputs = model(pixel_values=processor(pil)["pixel_values"])
    l_in = rgb2lab(image / 255.0)[..., 0]
    rgb = processor.post_process_colorization(outputs, images=[pil], output_type="pt")[0]
    assert rgb.shape == (3, *image.shape[:2])
    np.testing.assert_allclose(rgb2lab(rgb.double().permute(1, 2, 0).numpy())[..., 0], l_in, atol=0.05)
    out8 = processor.post_process_colorization(outputs, images=[pil], output_type="np")[0]
    np.testing.assert_allclose(rgb2lab(out8 / 255.0)[..., 0], l_in, atol=0.6)


@SETTINGS
@given(uint8_images(), st.data())
def test_any_ab_prediction_keeps_lightness(tiny, image, data):
    """Even wildly out-of-gamut predicted ab (any value a model could emit) cannot change L."""
    _, processor = tiny
    h, w = data.draw(small_side), data.draw(small_side)
    ab = torch.from_numpy(data.draw(arrays(np.float32, (2, h, w), elements=st.floats(-128, 127, width=32))))
    l_full = processor.l_channel(Image.fromarray(image))
    rgb = processor.colorize_l(l_full, ab, output_type="pt")
    assert rgb.min() >= 0 and rgb.max() <= 1
    np.testing.assert_allclose(rgb2lab(rgb.double().permute(1, 2, 0).numpy())[..., 0], rgb2lab(image / 255.0)[..., 0], atol=0.05)
