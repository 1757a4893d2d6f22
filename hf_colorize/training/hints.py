"""Simulated user hints for training hint-capable models (Zhang et al., SIGGRAPH 2017, "Real-Time
User-Guided Image Colorization with Learned Deep Priors"), drawn from the ground truth of a batch.

Local hints, per image (as the paper's released training code draws them):
- the number of points n is geometric on {0, 1, 2, ...} with p = 1/8: P(n = k) = (7/8)^k / 8, mean 7.
  n = 0 (one image in 8) trains the no-hint case, so the same model colorizes without hints; n is
  capped at `max_points` (100 by default: P(n >= 100) = 1.6e-6);
- each point is a square patch of side P uniform in 1..9 whose top-left corner is drawn from a 2-D
  Gaussian around the centre, mean (H - P + 1) / 2 and sd (H - P + 1) / 4 per axis, clipped into the
  image (`location="gaussian"`, the paper's; `location="uniform"`: uniform over the valid corners);
- the hint is the patch's mean ab, written over the whole patch in `hint_ab`, with `hint_mask` = 1 there
  (a later point overwrites an earlier one where they overlap).

Global hint, per image: the image's ground-truth bin distribution, i.e. the mean over pixels of the soft-
encoded ab at the network's output resolution (ab average-pooled by 4: the loss's own targets; the
model's `soft_encode`), so it sums to 1. It is dropped (all zeros: "no global hint") with probability
`global_drop` (default 0.5), so the model learns both cases.

Randomness: every draw comes from the `generator` passed in (a CPU `torch.Generator`; the few hundred
numbers are drawn on the CPU, the maps are built on `ab`'s device), so the hints are identical on CPU and
GPU and a run that reseeds per step (see `step_generator`) resumes exactly.
"""

import math
import zlib
from typing import Optional

import torch
import torch.nn.functional as F

from hf_colorize.models.colorization.modeling_colorization import soft_encode
from hf_colorize.training.loop import HINT_KINDS

__all__ = ["simulate_hints", "draw_hint_points", "step_generator", "global_hint_of", "HINT_KINDS", "LOCATIONS"]

LOCATIONS = ("gaussian", "uniform")


def step_generator(seed: int, step: int, rank: int = 0, micro: int = 0, purpose: str = "train") -> torch.Generator:
    """A CPU generator seeded from (purpose, seed, step, rank, micro-batch) alone: the hints of a step do not
    depend on what ran before it, so a resumed run draws the same hints as an uninterrupted one."""
    return torch.Generator().manual_seed(zlib.crc32(f"hints/{purpose}/{seed}/{step}/{rank}/{micro}".encode()))


def global_hint_of(ab: torch.Tensor, ab_bins: torch.Tensor, neighbors: int = 5, sigma: float = 5.0,
                   pool: int = 4) -> torch.Tensor:
    """The bin distribution `(B, Q)` (rows sum to 1) of ab maps `(B, 2, H, W)` in Lab units: soft-encoded
    (`soft_encode`) after average pooling by `pool` (4: the network's output cells, as the loss sees them)."""
    if pool > 1:
        ab = F.avg_pool2d(ab.float(), pool, ceil_mode=True)
    idx, wts = soft_encode(ab, ab_bins, neighbors, sigma)
    b = ab.shape[0]
    hist = torch.zeros(b, ab_bins.shape[0], device=ab.device, dtype=torch.float32)
    hist.scatter_add_(1, idx.reshape(b, -1), wts.reshape(b, -1).float())
    return hist / hist.sum(1, keepdim=True)


def simulate_hints(ab: torch.Tensor, generator: torch.Generator, ab_bins: Optional[torch.Tensor] = None, *,
                   kind: str = "both", p: float = 1 / 8, max_points: int = 100, max_patch: int = 9,
                   location: str = "gaussian", global_drop: float = 0.5, neighbors: int = 5,
                   sigma: float = 5.0) -> dict:
    """Hints drawn from the ground-truth ab `(B, 2, H, W)` (Lab units) of a training batch, as keyword
    arguments for `ColorizationModel.forward`: `hint_ab` `(B, 2, H, W)` and `hint_mask` `(B, 1, H, W)`
    (kind "local" or "both") and `global_hint` `(B, Q)` (kind "global" or "both"; needs `ab_bins`, the
    model's `(Q, 2)` bin centres). See the module docstring for the distributions. Deterministic given
    `generator` (a CPU generator)."""
    if kind not in HINT_KINDS:
        raise ValueError(f"hint kind must be one of {', '.join(HINT_KINDS)}, got {kind!r}")
    if location not in LOCATIONS:
        raise ValueError(f"hint location must be one of {', '.join(LOCATIONS)}, got {location!r}")
    if ab.dim() != 4 or ab.shape[1] != 2:
        raise ValueError(f"ab must have shape (batch, 2, height, width), got {tuple(ab.shape)}")
    if not 0 < p <= 1 or max_points < 0 or max_patch < 1 or not 0 <= global_drop <= 1:
        raise ValueError("simulate_hints: p must be in (0, 1], max_points >= 0, max_patch >= 1, global_drop in [0, 1]")
    b, _, h, w = ab.shape
    out = {}
    if kind in ("local", "both"):
        out["hint_ab"], out["hint_mask"] = _local_hints(ab, generator, p, max_points, min(max_patch, h, w), location)
    if kind in ("global", "both"):
        if ab_bins is None:
            raise ValueError("simulate_hints: global hints need ab_bins (the model's bin centres)")
        keep = torch.rand(b, generator=generator) >= global_drop
        hist = global_hint_of(ab, ab_bins, neighbors, sigma)
        out["global_hint"] = hist * keep.to(hist.device, hist.dtype)[:, None]
    return out


def draw_hint_points(batch: int, height: int, width: int, generator: torch.Generator, p: float = 1 / 8,
                     max_points: int = 100, max_patch: int = 9, location: str = "gaussian") -> dict:
    """The random part of the local hints (see the module docstring), in draw order: a dict of CPU long
    tensors `(N,)`: `image` (batch index), `y`, `x` (the patch's top-left corner) and `side` (1..max_patch),
    N being the total number of points of the batch."""
    # n = floor(log U / log(1 - p)), U uniform in (0, 1]: P(n >= k) = (1 - p)^k, the geometric law from 0
    u = 1.0 - torch.rand(batch, generator=generator, dtype=torch.float64)
    if p < 1:
        counts = (torch.log(u) / math.log1p(-p)).floor().clamp(max=max_points).long()
    else:
        counts = torch.zeros(batch, dtype=torch.long)
    total = int(counts.sum())
    image = torch.repeat_interleave(torch.arange(batch), counts)
    side = torch.randint(1, max_patch + 1, (total,), generator=generator)
    span_y, span_x = (height - side + 1).double(), (width - side + 1).double()
    if location == "gaussian":
        noise = torch.randn(total, 2, generator=generator, dtype=torch.float64)
        y = (span_y / 2 + noise[:, 0] * span_y / 4).clamp(min=0).floor().long()
        x = (span_x / 2 + noise[:, 1] * span_x / 4).clamp(min=0).floor().long()
        y, x = torch.minimum(y, height - side), torch.minimum(x, width - side)
    else:
        unit = torch.rand(total, 2, generator=generator, dtype=torch.float64)
        y, x = (unit[:, 0] * span_y).floor().long(), (unit[:, 1] * span_x).floor().long()
    return {"image": image, "y": y, "x": x, "side": side}


def _local_hints(ab, generator, p, max_points, max_patch, location):
    b, _, h, w = ab.shape
    pts = draw_hint_points(b, h, w, generator, p, max_points, max_patch, location)
    # patch means from a summed-area table, all points at once (float64: float32 sums of a whole image
    # would lose ~0.3 ab units in a 1x1 patch's difference of corners)
    ab = ab.float()
    sat = F.pad(ab.double().cumsum(2).cumsum(3), (1, 0, 1, 0))  # (B, 2, H + 1, W + 1)
    dev = ab.device
    o, y0, x0, side = (pts[k].to(dev) for k in ("image", "y", "x", "side"))
    y1, x1 = y0 + side, x0 + side
    corner = lambda yy, xx: sat[o, :, yy, xx]  # noqa: E731 - (N, 2)
    means = (corner(y1, x1) - corner(y0, x1) - corner(y1, x0) + corner(y0, x0)) / (side * side)[:, None].double()
    hint_ab = torch.zeros_like(ab)
    hint_mask = torch.zeros(b, 1, h, w, device=dev, dtype=ab.dtype)
    # written in draw order (later points overwrite earlier ones): a short loop, ~7 points per image
    for i, (n, y, x, s) in enumerate(zip(*(pts[k].tolist() for k in ("image", "y", "x", "side")))):
        hint_ab[n, :, y:y + s, x:x + s] = means[i, :, None, None].to(ab.dtype)
        hint_mask[n, :, y:y + s, x:x + s] = 1.0
    return hint_ab, hint_mask
