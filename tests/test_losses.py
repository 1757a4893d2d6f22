"""Targets and losses against hand-computed values: soft-encoding, prior smoothing, rebalancing,
gray masking, focal loss, k-means palette, prior estimation."""

import math

import numpy as np
import pytest
import torch

from hf_colorize.models.colorization.configuration_colorization import eccv16_ab_bins
from hf_colorize.models.colorization.modeling_colorization import (
    colorization_loss,
    rebalancing_weights,
    smooth_prior,
    soft_encode,
    soft_encode_dense,
)
from hf_colorize.training.palette import kmeans
from hf_colorize.training.priors import bin_counts, estimate_prior

BINS = torch.tensor(eccv16_ab_bins(), dtype=torch.float32)


def _ab(a, b):
    return torch.tensor([a, b], dtype=torch.float32).view(1, 2, 1, 1)


def test_soft_encode_on_a_bin_centre_matches_hand_computation():
    # ab = (0, 0) is a bin centre; its 4 grid neighbours are 10 away: weights ∝ [1, e^-2, e^-2, e^-2, e^-2]
    idx, w = soft_encode(_ab(0, 0), BINS, neighbors=5, sigma=5.0)
    centres = BINS[idx.flatten()]
    assert centres[0].tolist() == [0.0, 0.0]
    assert sorted(map(tuple, centres[1:].tolist())) == [(-10.0, 0.0), (0.0, -10.0), (0.0, 10.0), (10.0, 0.0)]
    e = math.exp(-100 / (2 * 25))
    expected = torch.tensor([1, e, e, e, e]) / (1 + 4 * e)
    assert torch.allclose(w.flatten(), expected, atol=1e-6)


def test_soft_encode_between_bins_and_weights_sum_to_one():
    # (5, 5) is equidistant from 4 bins (sqrt(50)); the 5th nearest is sqrt(5^2+15^2)
    idx, w = soft_encode(_ab(5, 5), BINS)
    w = w.flatten()
    d4, d5 = 50.0, 250.0
    e4, e5 = math.exp(-d4 / 50), math.exp(-d5 / 50)
    assert torch.allclose(w[:4], torch.full((4,), e4 / (4 * e4 + e5)), atol=1e-6)
    assert torch.allclose(w[4], torch.tensor(e5 / (4 * e4 + e5)), atol=1e-6)
    dense = soft_encode_dense(torch.randn(3, 2, 4, 5) * 40, BINS)
    assert dense.shape == (3, 313, 4, 5)
    assert torch.allclose(dense.sum(1), torch.ones(3, 4, 5), atol=1e-5)


def test_rebalancing_weights_hand_computed():
    prior = torch.tensor([0.7, 0.2, 0.1, 0.0])
    lam = 0.5
    mixed = (1 - lam) * prior + lam / 4  # [0.475, 0.225, 0.175, 0.125]
    raw = 1 / mixed
    expected = raw / (prior * raw).sum()
    w = rebalancing_weights(prior, lam)
    assert torch.allclose(w, expected.float(), atol=1e-6)
    assert torch.isclose((prior * w).sum(), torch.tensor(1.0), atol=1e-6)  # E_prior[w] = 1
    assert w[3] > w[2] > w[1] > w[0]  # rare colours weigh more
    # lambda = 1 is uniform mixing only: all weights equal
    assert torch.allclose(rebalancing_weights(prior, 1.0), torch.ones(4), atol=1e-6)


def test_smooth_prior_spreads_mass_to_neighbours_only_within_sigma():
    prior = torch.zeros(313)
    centre = eccv16_ab_bins().index([0, 0])
    prior[centre] = 1.0
    sm = smooth_prior(prior, BINS, sigma=5.0)
    assert torch.isclose(sm.sum(), torch.tensor(1.0))
    d = (BINS - BINS[centre]).norm(dim=1)
    # neighbours at distance 10 get e^-2 of the centre's share; bins 30+ away get essentially nothing
    ratio = sm[d == 10] / sm[centre]
    assert torch.allclose(ratio, torch.full_like(ratio, math.exp(-2)), rtol=0.05)
    assert sm[d >= 30].sum() < 1e-3


def test_loss_masks_gray_images_and_rebalances_by_nearest_bin():
    torch.manual_seed(0)
    logits = torch.randn(2, 313, 4, 4, requires_grad=True)
    colour = torch.zeros(2, 2, 4, 4)
    colour[0, 0] = 40.0  # image 0: strongly coloured (a = 40); image 1: gray
    loss = colorization_loss(logits, colour, BINS)
    # only image 0 counts: equals the loss on image 0 alone
    alone = colorization_loss(logits[:1], colour[:1], BINS)
    assert torch.isclose(loss, alone)
    # hand computation for image 0 (plain CE): -sum_k w_k log p(idx_k), averaged over pixels
    idx, w = soft_encode(colour[:1], BINS)
    logp = torch.log_softmax(logits[:1], 1)
    hand = -(w * torch.gather(logp, 1, idx)).sum(1).mean()
    assert torch.isclose(alone, hand, atol=1e-5)
    # class weights scale each pixel by the weight of its nearest bin
    cw = torch.ones(313)
    cw[idx[0, 0, 0, 0]] = 3.0
    assert torch.isclose(colorization_loss(logits[:1], colour[:1], BINS, class_weights=cw), 3 * hand, atol=1e-5)
    # all-gray batch: zero loss that still backpropagates
    zero = colorization_loss(logits, torch.zeros(2, 2, 4, 4), BINS)
    zero.backward()
    assert zero.item() == 0.0 and logits.grad is not None


def test_focal_loss_matches_hand_computation_and_down_weights_easy_pixels():
    logits = torch.zeros(1, 313, 1, 1)
    target = _ab(0, 0) + 30
    idx, w = soft_encode(target, BINS)
    easy = logits.clone()
    easy[0, idx[0, 0, 0, 0]] = 8.0  # confident on the nearest bin
    p = torch.softmax(easy, 1)
    pk = torch.gather(p, 1, idx)
    hand = -(w * (1 - pk) ** 2 * pk.log()).sum()
    focal = colorization_loss(easy, target, BINS, focal_gamma=2.0)
    assert torch.isclose(focal, hand, atol=1e-5)
    assert focal < colorization_loss(easy, target, BINS)  # focusing shrinks the loss of easy pixels


def test_kmeans_recovers_known_clusters():
    g = torch.Generator().manual_seed(0)
    truth = torch.tensor([[-40.0, 30.0], [0.0, 0.0], [35.0, -20.0]])
    pts = torch.cat([c + torch.randn(300, 2, generator=g) for c in truth])
    centres = kmeans(pts, 3, seed=1)
    assert torch.allclose(centres, truth[torch.argsort(truth[:, 0] * 1000 + truth[:, 1])], atol=0.5)
    with pytest.raises(ValueError, match="at least"):
        kmeans(pts[:2], 3)


def test_prior_estimated_from_known_colours():
    # an image that is half pure red, half pure blue: the prior's mass sits on the two nearest bins
    rgb = torch.zeros(1, 3, 16, 16, dtype=torch.uint8)
    rgb[0, 0, :, :8] = 255
    rgb[0, 2, :, 8:] = 255
    from hf_colorize.training.data import lab_batch

    _, ab = lab_batch(rgb)
    counts = bin_counts(ab, BINS)
    assert counts.sum() == 256 and (counts > 0).sum() == 2
    prior = estimate_prior([rgb], BINS, sigma=0.0, downsample=1)
    top2 = set(torch.topk(prior, 2).indices.tolist())
    assert top2 == set(torch.nonzero(counts).flatten().tolist())
    assert np.isclose(prior.sum().item(), 1.0)
