"""Multi-scale per-channel histograms of images, batched and vectorized (optionally differentiable).

`AdaptiveMultiScaleBinning` turns images `(B, C, H, W)` into `(B, C * sum(bin_counts))`: for each image,
each channel and each bin count, a histogram normalized to sum to 1, all concatenated. Coarse scales are
robust to small shifts of a distribution, fine ones resolve it; comparing at all of them (see
`distance`) gives a scene-cut detector and the colour-distribution metric of `video_eval`.
"Adaptive": each channel has its own value range (e.g. L in [0, 100], a and b in [-110, 110]) and a
per-pixel weight mask can restrict the statistics to a region.
"""

from typing import Optional, Sequence, Tuple, Union

import torch
from torch import nn

Range = Tuple[float, float]

#: CIE Lab channel ranges: L, a, b
LAB_RANGES = ((0.0, 100.0), (-110.0, 110.0), (-110.0, 110.0))


class AdaptiveMultiScaleBinning(nn.Module):
    """Per-image, per-channel normalized histograms at several bin counts, concatenated.

    Args:
        bin_counts: bin counts of the scales, default (32, 64, 128).
        value_range: one `(low, high)` for all channels, or one per channel.
        soft: False counts each value in its bin (not differentiable). True splats each value linearly
            onto the two nearest bin centres (a triangular kernel one bin wide), which is differentiable
            with respect to the values and preserves their mean.
        out_of_range: "clamp" counts values outside the range in the first / last bin; "ignore" drops them
            (an image with nothing in range then gets a uniform histogram). NaN values are always dropped.

    forward(x `(B, C, H, W)`, mask `(B, 1 | C, H, W)` of non-negative weights or None)
        -> `(B, C * sum(bin_counts))`, laid out scale-major: `[scale0: ch0 bins, ch1 bins, ..., scale1: ...]`.
        Each (scale, channel) block sums to 1.
    """

    def __init__(
        self,
        bin_counts: Sequence[int] = (32, 64, 128),
        value_range: Union[Range, Sequence[Range]] = (0.0, 1.0),
        soft: bool = False,
        out_of_range: str = "clamp",
    ):
        super().__init__()
        if not bin_counts or any(int(n) < 1 for n in bin_counts):
            raise ValueError(f"bin_counts must be positive integers, got {bin_counts}")
        if out_of_range not in ("clamp", "ignore"):
            raise ValueError(f"out_of_range must be 'clamp' or 'ignore', got {out_of_range!r}")
        self.bin_counts = tuple(int(n) for n in bin_counts)
        ranges = [value_range] if isinstance(value_range[0], (int, float)) else list(value_range)
        ranges = [(float(lo), float(hi)) for lo, hi in ranges]
        if any(not hi > lo for lo, hi in ranges):
            raise ValueError(f"each value range needs high > low, got {ranges}")
        self.register_buffer("_low", torch.tensor([r[0] for r in ranges]), persistent=False)
        self.register_buffer("_high", torch.tensor([r[1] for r in ranges]), persistent=False)
        self.soft = bool(soft)
        self.out_of_range = out_of_range

    def num_features(self, channels: int) -> int:
        return channels * sum(self.bin_counts)

    def _ranges(self, channels: int, x: torch.Tensor):
        low, high = self._low.to(x.device, x.dtype), self._high.to(x.device, x.dtype)
        if low.numel() == 1:
            low, high = low.expand(channels), high.expand(channels)
        elif low.numel() != channels:
            raise ValueError(f"got {low.numel()} value ranges for {channels} channels")
        return low.view(1, channels, 1), high.view(1, channels, 1)

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f"expected images (B, C, H, W), got shape {tuple(x.shape)}")
        b, c = x.shape[:2]
        x = x if x.is_floating_point() else x.float()
        flat = x.reshape(b, c, -1)
        low, high = self._ranges(c, flat)
        unit = (flat - low) / (high - low)  # (B, C, N); the range maps to [0, 1]
        weight = torch.ones_like(unit) if mask is None else mask.to(unit.dtype).expand(b, c, *x.shape[2:]).reshape(b, c, -1)
        finite = torch.isfinite(unit)
        if self.out_of_range == "ignore":
            finite = finite & (unit >= 0) & (unit <= 1)
        weight = torch.where(finite, weight, torch.zeros_like(weight))
        unit = torch.where(finite, unit, torch.zeros_like(unit)).clamp(0.0, 1.0)
        offset = 0
        chan_offsets = torch.arange(c, device=x.device).view(1, c, 1)
        total = self.num_features(c)
        out = unit.new_zeros(b, total)
        for n in self.bin_counts:
            base = offset + chan_offsets * n  # where each channel's block starts
            if self.soft:
                pos = unit * n - 0.5  # position in bin-centre units: centre k sits at k
                pos = pos.clamp(0.0, n - 1.0)
                left = pos.detach().floor().clamp(max=max(n - 2, 0))
                frac = pos - left  # differentiable part
                li = (base + left.long()).reshape(b, -1)
                out.scatter_add_(1, li, (weight * (1 - frac)).reshape(b, -1))
                if n > 1:
                    out.scatter_add_(1, (li + 1), (weight * frac).reshape(b, -1))
            else:
                idx = (unit * n).long().clamp(max=n - 1)
                out.scatter_add_(1, (base + idx).reshape(b, -1), weight.reshape(b, -1))
            offset += c * n
        return _normalize_blocks(out, c, self.bin_counts)

    def split(self, hist: torch.Tensor, channels: int) -> list:
        """`(B, C * sum(bins))` -> list over scales of `(B, C, bins)` views."""
        out, offset = [], 0
        for n in self.bin_counts:
            out.append(hist[:, offset:offset + channels * n].reshape(hist.shape[0], channels, n))
            offset += channels * n
        return out

    def distance(self, h1: torch.Tensor, h2: torch.Tensor, channels: int, metric: str = "js") -> torch.Tensor:
        """Distance between histograms `(B, F)` -> `(B,)`, averaged over scales and channels.

        metric "js": Jensen-Shannon divergence (natural log, in [0, ln 2]); "chi2": symmetric chi-square
        (in [0, 1]); "l1": half the L1 distance (total variation, in [0, 1]).
        """
        dists = []
        for p, q in zip(self.split(h1, channels), self.split(h2, channels)):
            dists.append(histogram_distance(p, q, metric).mean(dim=1))
        return torch.stack(dists, 0).mean(0)


def _normalize_blocks(out: torch.Tensor, channels: int, bin_counts: Sequence[int]) -> torch.Tensor:
    """Normalize every (scale, channel) block of `(B, F)` to sum 1 (an empty block becomes uniform)."""
    parts, offset = [], 0
    for n in bin_counts:
        block = out[:, offset:offset + channels * n].reshape(out.shape[0], channels, n)
        mass = block.sum(-1, keepdim=True)
        uniform = torch.full_like(block, 1.0 / n)
        parts.append(torch.where(mass > 0, block / mass.clamp(min=1e-12), uniform).reshape(out.shape[0], -1))
        offset += channels * n
    return torch.cat(parts, 1)


def histogram_distance(p: torch.Tensor, q: torch.Tensor, metric: str = "js") -> torch.Tensor:
    """Distance between normalized histograms along the last dim: `(..., n), (..., n) -> (...)`."""
    if metric == "js":
        m = 0.5 * (p + q)
        return 0.5 * (_kl(p, m) + _kl(q, m))
    if metric == "chi2":
        return 0.5 * ((p - q) ** 2 / (p + q).clamp(min=1e-12)).sum(-1)
    if metric == "l1":
        return 0.5 * (p - q).abs().sum(-1)
    raise ValueError(f"metric must be 'js', 'chi2' or 'l1', got {metric!r}")


def _kl(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    # 0 * log(0 / q) = 0; q > 0 wherever p > 0 because q is a mixture containing p
    return torch.where(p > 0, p * (p.clamp(min=1e-30).log() - q.clamp(min=1e-30).log()), torch.zeros_like(p)).sum(-1)


__all__ = ["AdaptiveMultiScaleBinning", "histogram_distance", "LAB_RANGES"]
