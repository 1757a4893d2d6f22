"""Temporal consistency for video colorization: shots, motion, and smoothing of the predicted bin distributions.

Per frame the model predicts a distribution over the Q ab bins at 1/4 resolution. A per-frame decode
flickers because small changes of the gray input move the (annealed) mode. `TemporalSmoother` keeps, per
shot, a running distribution that follows the scene:

1. Scene cuts: the L channel's multi-scale histogram (`AdaptiveMultiScaleBinning`, 32/64/128 bins)
   is compared with the previous frame's (Jensen-Shannon); a large jump, or a frame that motion cannot
   explain (most blocks match badly), starts a new shot and the running state is dropped, so colour
   never bleeds across a cut.
2. Motion: coarse-to-fine dense block matching on L in torch (per-pixel sum of absolute differences over
   a window, small search at each pyramid level, sub-pixel parabola refinement, median filtered) gives
   the backward flow from frame t to t-1 and a per-pixel match confidence (occlusions and newly revealed
   areas match badly).
3. Smoothing: the running bin probabilities are warped along that flow and mixed with the new frame's,
   p = (1 - w) p_t + w warp(p_run), w = `strength` x confidence; so a moving object carries its colour
   distribution with it, uncovered areas take the new prediction, and the decode (annealed mean) sees a
   stable distribution.

Steps 1 and 2 are `ShotTracker` (L only, so a frame's motion can be known before the network runs on it),
step 3 `TemporalSmoother`. All tensors are torch; shapes are in the docstrings. Both are causal and keep one
frame of state, so memory does not grow with video length.
"""

from dataclasses import dataclass, field
from typing import Callable, List, Optional, Tuple

import torch
import torch.nn.functional as F

from hf_colorize.video.histograms import AdaptiveMultiScaleBinning

L_RANGE = (-0.5, 0.5)  # normalized L, (L - 50) / 100


@dataclass
class TemporalConfig:
    """Knobs of `TemporalSmoother` (defaults tuned on the synthetic clips of `video.clips`; see docs/video.md).

    strength: weight of the propagated distribution at a perfectly matched pixel (0 = per-frame).
    cut_threshold: Jensen-Shannon distance (nats, mean over scales) of consecutive L histograms that is a cut.
    bad_match_fraction: a frame where more than this fraction of pixels match badly is also a cut.
    match_tolerance: mean absolute L difference (L units, 0..100) over the matching window at which the
        confidence has fallen to 1/e; larger tolerates noisier footage.
    motion_size: side of the square L image the motion is estimated on.
    window: matching window (pixels at `motion_size`); radius: search radius per pyramid level.
    levels: pyramid levels (each halves the resolution; the reach is radius * (2^levels - 1)).
    palette_strength: 0 (off) .. 1: pull each frame's a and b distributions towards the shot's running ones.
    palette_memory: how slowly that running reference follows the frames (0.95: ~20 frames).
    palette_quantiles: points of the quantile functions compared.
    """

    strength: float = 0.97
    cut_threshold: float = 0.12
    bad_match_fraction: float = 0.6
    match_tolerance: float = 12.0
    motion_size: int = 128
    window: int = 7
    radius: int = 3
    levels: int = 3
    palette_strength: float = 0.6
    palette_memory: float = 0.95
    palette_quantiles: int = 33


# --------------------------------------------------------------------------------------------------
# Motion
# --------------------------------------------------------------------------------------------------
def _identity_grid(h: int, w: int, device=None) -> torch.Tensor:
    """`grid_sample` coordinates of the pixel centres: `(H, W, 2)`, x then y in [-1, 1]."""
    ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) * 2 / h - 1
    xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) * 2 / w - 1
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack((gx, gy), dim=-1)


def _sample(img: torch.Tensor, flow_px: torch.Tensor) -> torch.Tensor:
    """Sample `img` `(B, C, H, W)` at pixel + `flow_px` `(B, 2, H, W)` (bilinear, border) -> `(B, C, H, W)`."""
    b, _, h, w = img.shape
    grid = _identity_grid(h, w, img.device)[None] + torch.stack(
        (flow_px[:, 0] * 2 / w, flow_px[:, 1] * 2 / h), dim=-1)
    return F.grid_sample(img, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _box(x: torch.Tensor, k: int) -> torch.Tensor:
    """Mean over a k x k window (k odd) of `(B, C, H, W)`; the window shrinks at the borders.

    Integral image: four lookups per pixel whatever k (3-4x faster than pooling the many cost planes).
    """
    r = k // 2

    def window_sum(t):
        s = F.pad(t, (r + 1, r, r + 1, r)).cumsum(-1).cumsum(-2)
        return s[..., k:, k:] - s[..., :-k, k:] - s[..., k:, :-k] + s[..., :-k, :-k]

    count = window_sum(torch.ones_like(x[:1, :1]))
    return window_sum(x) / count


def _median3(x: torch.Tensor) -> torch.Tensor:
    """3x3 median filter of `(B, C, H, W)`."""
    b, c, h, w = x.shape
    patches = F.unfold(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3)  # (B, C*9, H*W)
    return patches.view(b, c, 9, h, w).median(dim=2).values


def block_match(cur: torch.Tensor, prev: torch.Tensor, window: int = 7, radius: int = 3, levels: int = 3
                ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Dense backward motion from `cur` to `prev`, both `(B, 1, H, W)` L images.

    Coarse-to-fine: at each pyramid level `prev` is warped by the upsampled coarser flow, every integer
    displacement within `radius` is scored by the mean absolute difference over a `window` x `window` box
    (all displacements at once via `unfold`), the best wins, is refined to sub-pixel by a parabola through
    its neighbours, and the flow is median filtered.

    Returns `(flow, cost)`: `flow` `(B, 2, H, W)` in pixels (x, y) such that `cur(p) ~ prev(p + flow(p))`;
    `cost` `(B, 1, H, W)` the windowed mean absolute difference at the chosen flow (in `cur`'s units).
    """
    pyramid = [(cur, prev)]
    for _ in range(levels - 1):
        c, p = pyramid[-1]
        if min(c.shape[-2:]) < 4 * window:
            break
        pyramid.append((F.avg_pool2d(c, 2), F.avg_pool2d(p, 2)))
    n = 2 * radius + 1
    flow = None
    for c, p in reversed(pyramid):
        b, _, h, w = c.shape
        flow = c.new_zeros(b, 2, h, w) if flow is None else 2 * F.interpolate(flow, size=(h, w), mode="bilinear", align_corners=False)
        warped = _sample(p, flow)
        # candidate k = (dy + r) * n + (dx + r) holds warped(p + (dx, dy))
        shifted = F.unfold(F.pad(warped, (radius,) * 4, mode="replicate"), n).view(b, n * n, h, w)
        costs = _box((c - shifted).abs(), window)  # (B, K, H, W)
        best = costs.argmin(1, keepdim=True)
        bx, by = best % n, best // n
        c0 = costs.gather(1, best)
        sub = []
        for along, step in ((bx, 1), (by, n)):  # parabola through the neighbours along x, then y
            inner = (along > 0) & (along < n - 1)
            cm = costs.gather(1, (best - step).clamp(0, n * n - 1))
            cp = costs.gather(1, (best + step).clamp(0, n * n - 1))
            denom = cm - 2 * c0 + cp
            delta = 0.5 * (cm - cp) / denom.clamp(min=1e-6)
            sub.append(torch.where(inner & (denom > 1e-6), delta, torch.zeros_like(delta)).clamp(-0.5, 0.5))
        step_flow = torch.cat(((bx - radius).to(c.dtype) + sub[0], (by - radius).to(c.dtype) + sub[1]), 1)
        flow = _median3(flow + step_flow)
    cost = _box((cur - _sample(prev, flow)).abs(), window)
    return flow, cost


# --------------------------------------------------------------------------------------------------
# Smoothing
# --------------------------------------------------------------------------------------------------
@dataclass
class FrameInfo:
    """What the smoother decided for one frame."""

    cut: bool
    hist_distance: float
    bad_fraction: float
    mean_weight: float


def _interp(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear map of `x` `(C, N)` through increasing knots `xp` -> `fp`, both `(C, K)` (clamped ends)."""
    idx = torch.searchsorted(xp.contiguous(), x.contiguous()).clamp(1, xp.shape[1] - 1)
    x0, x1 = xp.gather(1, idx - 1), xp.gather(1, idx)
    y0, y1 = fp.gather(1, idx - 1), fp.gather(1, idx)
    u = ((x - x0) / (x1 - x0).clamp(min=1e-6)).clamp(0.0, 1.0)
    return y0 + u * (y1 - y0)


@dataclass
class Motion:
    """What `ShotTracker` found for one frame: `info` (the cut decision), and unless it is a cut the backward
    `flow` `(1, 2, M, M)` to the previous frame (pixels at `motion_size`: `cur(p) ~ prev(p + flow(p))`) with
    its match `confidence` `(1, 1, M, M)` in [0, 1]."""

    info: FrameInfo
    flow: Optional[torch.Tensor] = None
    confidence: Optional[torch.Tensor] = None

    @property
    def cut(self) -> bool:
        return self.info.cut


@dataclass
class ShotTracker:
    """Scene cuts and motion between consecutive frames, from their L alone (causal, one frame of state).

    Apart from `TemporalSmoother` so that a frame's motion is known before the network runs on it (video
    hints are moved along it, see `video.guidance`)."""

    config: TemporalConfig = field(default_factory=TemporalConfig)

    def __post_init__(self):
        self.binning = AdaptiveMultiScaleBinning((32, 64, 128), L_RANGE)
        self.reset()

    def reset(self) -> None:
        self._l = None  # previous (1, 1, M, M) L at motion size
        self._hist = None  # previous (1, F) L histogram
        self.cuts: List[int] = []
        self.frame_index = 0

    def step(self, l_net: torch.Tensor) -> Motion:
        """The next frame's normalized network-input L `(1, S, S)` -> its `Motion` from the previous frame."""
        cfg = self.config
        m = cfg.motion_size
        l_small = F.interpolate(l_net.float().cpu().reshape(1, 1, *l_net.shape[-2:]), size=(m, m), mode="area")
        hist = self.binning(l_small)
        motion = Motion(FrameInfo(cut=self._l is None, hist_distance=0.0, bad_fraction=0.0, mean_weight=0.0))
        info = motion.info
        if self._l is not None:
            info.hist_distance = float(self.binning.distance(hist, self._hist, channels=1, metric="js"))
            cut = info.hist_distance > cfg.cut_threshold
            if not cut:
                flow, cost = block_match(l_small, self._l, cfg.window, cfg.radius, cfg.levels)
                conf = torch.exp(-(cost * 100.0 / cfg.match_tolerance) ** 2)  # L units
                # a match that lands outside the previous frame has nothing to carry
                target = _identity_grid(m, m)[None].permute(0, 3, 1, 2) + torch.stack(
                    (flow[:, 0] * 2 / m, flow[:, 1] * 2 / m), 1)
                conf = conf * (target.abs() <= 1).all(1, keepdim=True)
                info.bad_fraction = float((conf < 0.5).float().mean())
                cut = info.bad_fraction > cfg.bad_match_fraction
                motion.flow, motion.confidence = flow, conf
            if cut:
                info.cut = True
                motion.flow = motion.confidence = None
        if info.cut:
            self.cuts.append(self.frame_index)
        self._l, self._hist = l_small, hist
        self.frame_index += 1
        return motion


@dataclass
class TemporalSmoother:
    """Causal, motion-compensated smoothing of per-frame bin distributions within shots.

    Call `step(l_net, logits, decode=...)` once per frame, in order; it returns the frame's ab. The cuts and
    motion come from its `tracker` (a `ShotTracker`); a caller that needs a frame's motion earlier runs
    `tracker.step` itself and passes the result as `motion=`.
    """

    config: TemporalConfig = field(default_factory=TemporalConfig)

    def __post_init__(self):
        self.tracker = ShotTracker(self.config)
        self.reset()

    def reset(self) -> None:
        self.tracker.reset()
        self._probs = None  # running (1, Q, h, w) distribution
        self._quantiles = None  # the shot's running ab quantile functions (2, K)

    @property
    def cuts(self) -> List[int]:
        """Indices of the frames that started a shot (the first frame included)."""
        return self.tracker.cuts

    @property
    def binning(self):
        return self.tracker.binning

    def step(self, l_net: torch.Tensor, logits: torch.Tensor, ab_bins: Optional[torch.Tensor] = None,
             temperature: float = 0.38, decode_mode: str = "annealed_mean",
             decode: Optional[Callable[[torch.Tensor], torch.Tensor]] = None, *, motion: Optional[Motion] = None,
             guide: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
             hold: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, FrameInfo]:
        """One frame: `smooth`, decode, `match_statistics`.

        Args:
            l_net: normalized L of the network input, `(1, S, S)` (from `Colorizer.prepare`).
            logits: the model's bin logits for that frame, `(Q, h, w)`.
            decode: the decoder of the smoothed distribution, log-probabilities `(1, Q, h, w)` -> ab
                `(1, 2, h, w)`: e.g. `Colorizer.decode` (the model's decoder with its temperature and mode).
                Without it, `decode_ab` with `ab_bins` `(Q, 2)`, `temperature` and `decode_mode`.
            motion: this frame's `tracker.step(l_net)`, when the caller ran it already.
            guide: log-probabilities `(1, Q, h, w)` -> guided ones, applied to the smoothed distribution before
                decoding but not kept in the running state (point hints: a hint pins its frame only, so it
                never compounds over the frames; the caller moves the hints along the motion itself).
            hold: `(1, h, w)` in [0, 1]: where the palette pull (`match_statistics`) is held off (1: fully),
                e.g. the hints' confidence, so that a hint's colour is not pulled towards the shot's palette.
        Returns:
            `(ab (2, h, w), FrameInfo)`.
        """
        probs, info = self.smooth(l_net, logits, motion)
        log_probs = probs.clamp(min=1e-12).log()
        if guide is not None:
            log_probs = guide(log_probs)
        if decode is None:
            from hf_colorize.models.colorization.modeling_colorization import decode_ab

            if ab_bins is None:
                raise TypeError("step() needs ab_bins or decode")
            ab = decode_ab(log_probs, ab_bins, mode=decode_mode, temperature=temperature)[0]
        else:
            ab = decode(log_probs)[0].to(log_probs.device)
        return self.match_statistics(ab, info.cut, hold), info

    def smooth(self, l_net: torch.Tensor, logits: torch.Tensor, motion: Optional[Motion] = None
               ) -> Tuple[torch.Tensor, FrameInfo]:
        """Scene-cut test, motion estimation (unless `motion` is given) and propagation: -> smoothed
        probabilities `(1, Q, h, w)`."""
        motion = self.tracker.step(l_net) if motion is None else motion
        probs = torch.softmax(logits.float()[None], dim=1)  # (1, Q, h, w)
        info = motion.info
        if not motion.cut and self._probs is not None:
            m = motion.flow.shape[-1]
            h, w = probs.shape[-2:]
            scale = torch.tensor([w / m, h / m]).view(1, 2, 1, 1)
            flow_lo = F.interpolate(motion.flow, size=(h, w), mode="area") * scale
            weight = self.config.strength * F.interpolate(motion.confidence, size=(h, w), mode="area")
            carried = _sample(self._probs, flow_lo)
            probs = (1 - weight) * probs + weight * carried
            info.mean_weight = float(weight.mean())
        self._probs = probs
        return probs, info

    def match_statistics(self, ab: torch.Tensor, cut: bool, hold: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Pull the frame's a and b distributions towards the shot's running ones: `(2, h, w)` -> `(2, h, w)`.

        Each channel's quantile function (K points) is compared with the shot reference, a running average of
        the frames' quantile functions (their 1-D Wasserstein barycentre); values are mapped through the
        frame's quantiles onto the reference's, blended by `palette_strength` (times 1 - `hold` `(1, h, w)`,
        where given). A cut restarts the reference.
        """
        cfg = self.config
        if cfg.palette_strength <= 0:
            return ab
        flat = ab.reshape(2, -1)
        levels = torch.linspace(0, 1, cfg.palette_quantiles, device=ab.device, dtype=ab.dtype)
        q = torch.quantile(flat, levels, dim=1).T.contiguous()  # (2, K), increasing
        if cut or self._quantiles is None:
            self._quantiles = q
            return ab
        self._quantiles = cfg.palette_memory * self._quantiles + (1 - cfg.palette_memory) * q
        mapped = _interp(flat, q, self._quantiles)
        pull = cfg.palette_strength if hold is None else cfg.palette_strength * (1 - hold.reshape(1, -1).to(flat))
        return (flat + pull * (mapped - flat)).reshape_as(ab)


__all__ = ["FrameInfo", "Motion", "ShotTracker", "TemporalConfig", "TemporalSmoother", "block_match"]
