"""Guided colorization without retraining: colour hints and a reference photo for any ECCV16-family bin model.

- Reference / global colours (`prior_swap`): the network's per-pixel distribution over the Q bins was learnt
  under the training set's colour prior pi. Given the reference's bin histogram r (smoothed at several ab scales,
  floored so that absent colours are suppressed, not forbidden), each pixel's distribution p becomes
  p * (r / pi) ** strength, then decodes as usual.
- Point hints (`HintField`, `pin_hints`, `HintField.blend`): each hint (x, y, colour) is spread over the photo by
  an edge-aware filter on L (a working copy of at most `HINT_MAX_SIDE` px; the recursive domain transform of
  Gastal & Oliveira, 2011, as a normalized convolution: colours travel along regions of similar lightness and stop at edges). That gives a
  confidence map (1 at a hint, decaying with distance and across edges) and the propagated hint colour. The
  model's distribution at each output cell is mixed with the soft-encoded hint colour by the confidence (a hint
  pins its cell's distribution), and after decoding the full-resolution ab is blended towards the hint colour
  by the same map, so colour boundaries follow the photo's edges rather than the coarse output grid.
  A hint never changes L: guidance only ever moves ab.

This file travels to the Hub as remote code: it imports only its siblings, torch, numpy and PIL.
"""

import math
import os
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import ImageColor

from .image_processing_colorization import ColorizationInputError, ColorizeError, load_rgb, rgb_to_lab
from .modeling_colorization import smooth_prior, soft_encode

MAX_HINTS = 10_000
DEFAULT_REFERENCE_STRENGTH = 0.5
#: ab smoothing scales (Lab units) of the reference histogram: a multi-scale mixture, so near colours are
#: favoured strongly and farther ones still a little (cf. the video's multi-scale histograms)
REFERENCE_SIGMAS = (5.0, 10.0, 20.0)
#: share of a uniform distribution mixed into the reference and the prior, so that no bin's ratio is 0 or inf
REFERENCE_FLOOR = 0.02
#: spatial scale of a hint's spread, as a share of the photo's longer side, and its lightness scale (L units),
#: chosen on validation photos (ImageNet training-split photos at 512 px; docs/guidance.md)
HINT_SIGMA_SPACE = 0.25
HINT_SIGMA_RANGE = 96.0
HINT_ITERATIONS = 3
#: hints are propagated on a copy of L at most this long on its longer side, then blended at full resolution:
#: on finer copies photo texture (grain, leaves) blocks the spread (measured: 1024 px gave +2.5 dB at 10 hints,
#: 256 px +3.7 dB); still 6x finer than the 1/4-resolution output cells
HINT_MAX_SIDE = 256
#: the prior assumed for weights saved without one (a uniform `bin_prior`, e.g. converted ECCV16 weights):
#: exp(-3 * sqrt(|ab - centre| / scale)), fitted (least KL divergence) to the embedded default model's prior
#: (ImageNet photos): peaked at neutral, with the long tails of natural colours
FALLBACK_PRIOR_CENTRE = (1.0, 4.0)
FALLBACK_PRIOR_SCALE = 8.0


class GuidanceError(ColorizeError, ValueError):
    """A hint or reference that cannot be used; the message is one line naming it."""


# --------------------------------------------------------------------------------------------------
# Colours and hints
# --------------------------------------------------------------------------------------------------
def parse_color(color, where: str = "colour") -> Tuple[int, int, int]:
    """A colour -> `(r, g, b)` ints 0..255: "#rrggbb", "#rgb", a CSS name ("firebrick", via PIL), or 3
    numbers 0..255."""
    if isinstance(color, str):
        try:
            rgb = ImageColor.getrgb(color.strip())
        except ValueError:
            raise GuidanceError(f"{where}: {color!r} is not a colour (use '#rrggbb', a CSS colour name or "
                                "(r, g, b) with values 0-255)") from None
        return tuple(int(v) for v in rgb[:3])
    if isinstance(color, (list, tuple, np.ndarray, torch.Tensor)) and len(color) == 3:
        values = [v.item() if hasattr(v, "item") else v for v in color]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and 0 <= v <= 255
               for v in values):
            return tuple(int(round(v)) for v in values)
    raise GuidanceError(f"{where}: {color!r} is not a colour (use '#rrggbb', a CSS colour name or (r, g, b) "
                        "with values 0-255)")


def color_to_ab(rgb: Sequence[int]) -> Tuple[float, float]:
    """`(r, g, b)` 0..255 -> its CIE Lab (a, b)."""
    lab = rgb_to_lab(torch.tensor(rgb, dtype=torch.float64).view(3, 1, 1) / 255.0)
    return float(lab[1, 0, 0]), float(lab[2, 0, 0])


def ab_to_hex(ab: Sequence[float], lightness: float) -> str:
    """The sRGB colour "#rrggbb" of (lightness, a, b), chroma reduced to fit in sRGB."""
    from .image_processing_colorization import lab_to_rgb

    lab = torch.tensor([lightness, ab[0], ab[1]], dtype=torch.float32).view(3, 1, 1)
    rgb = (lab_to_rgb(lab)[:, 0, 0] * 255.0).round().to(torch.uint8).tolist()
    return "#{:02x}{:02x}{:02x}".format(*rgb)


@dataclass(frozen=True)
class Hint:
    """A colour hint at pixel (x, y) of the input image: `ab` its CIE Lab (a, b); `rgb` the colour as given
    (None when it was given as ab)."""

    x: float
    y: float
    ab: Tuple[float, float]
    rgb: Optional[Tuple[int, int, int]] = None


def _number(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not math.isfinite(value):
        raise GuidanceError(f"{what} must be a finite number, got {value!r}")
    return float(value)


def parse_hints(hints, width: int, height: int) -> List[Hint]:
    """Hints -> `Hint`s, checked against a `width` x `height` image. A hint is `(x, y, colour)` or
    `{"x": x, "y": y, "color": colour}` (or `"ab": (a, b)` instead of a colour); x, y are pixels of the image
    as given (after EXIF rotation), 0 <= x < width, 0 <= y < height."""
    if hints is None:
        return []
    if isinstance(hints, (str, bytes, dict)) or not isinstance(hints, (list, tuple)):
        raise GuidanceError(f"hints must be a list of (x, y, colour) or {{'x', 'y', 'color'}} items, got {type(hints).__name__}")
    if len(hints) > MAX_HINTS:
        raise GuidanceError(f"{len(hints)} hints, over the limit of {MAX_HINTS}")
    out = []
    for i, hint in enumerate(hints):
        where = f"hint {i}"
        ab = None
        if isinstance(hint, dict):
            unknown = sorted(set(hint) - {"x", "y", "color", "colour", "ab"})
            if unknown:
                raise GuidanceError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; use 'x', 'y' and 'color'")
            colours = [k for k in ("color", "colour", "ab") if k in hint]
            if "x" not in hint or "y" not in hint or len(colours) != 1:
                raise GuidanceError(f"{where}: needs 'x', 'y' and one 'color', got keys {sorted(hint)}")
            x, y, colour = hint["x"], hint["y"], hint[colours[0]]
            if colours[0] == "ab":
                if not isinstance(colour, (list, tuple)) or len(colour) != 2:
                    raise GuidanceError(f"{where}: ab must be a pair (a, b), got {colour!r}")
                ab = tuple(_number(v, f"{where}: ab") for v in colour)
                if max(abs(v) for v in ab) > 128:
                    raise GuidanceError(f"{where}: ab {colour!r} is outside CIE Lab's range (-128..128)")
        elif isinstance(hint, (list, tuple)) and len(hint) == 3:
            x, y, colour = hint
        else:
            raise GuidanceError(f"{where}: {hint!r} is not (x, y, colour) or {{'x', 'y', 'color'}}")
        x, y = _number(x, f"{where}: x"), _number(y, f"{where}: y")
        if not (0 <= x < width and 0 <= y < height):
            raise GuidanceError(f"{where}: ({x:g}, {y:g}) is outside the {width}x{height} image")
        rgb = None
        if ab is None:
            rgb = parse_color(colour, where)
            ab = color_to_ab(rgb)
        out.append(Hint(x, y, ab, rgb))
    return out


# --------------------------------------------------------------------------------------------------
# Reference photo / global colours: the prior swap
# --------------------------------------------------------------------------------------------------
def _soft_histogram(ab: torch.Tensor, weights: torch.Tensor, ab_bins: torch.Tensor) -> torch.Tensor:
    """ab `(N, 2)` with weights `(N,)` -> their soft-encoded histogram `(Q,)` (5 nearest bins, sigma 5)."""
    idx, wts = soft_encode(ab.T.reshape(1, 2, -1, 1), ab_bins)
    hist = torch.zeros(ab_bins.shape[0], dtype=torch.float64)
    hist.index_add_(0, idx.flatten(), (wts[0, :, :, 0] * weights[None]).flatten().double())
    return (hist / hist.sum()).float()


def reference_distribution(reference, ab_bins: torch.Tensor, max_side: int = 256) -> torch.Tensor:
    """A reference -> its colour distribution `(Q,)` over `ab_bins` (sums to 1).

    `reference`: an image (path, bytes, PIL, numpy or torch: its pixels' ab, the photo resized to at most
    `max_side`), or colours: a list of colours (equal weights) or a dict colour -> weight. A string names a
    file when one exists there, else a colour."""
    bins = torch.as_tensor(ab_bins, dtype=torch.float32)
    if isinstance(reference, str) and not os.path.exists(reference):
        try:
            return _soft_histogram(torch.tensor([color_to_ab(parse_color(reference, "reference"))]), torch.ones(1), bins)
        except GuidanceError:
            raise GuidanceError(f"reference {reference!r}: no such file, and not a colour") from None
    if isinstance(reference, dict) or (isinstance(reference, (list, tuple)) and reference and all(
            isinstance(c, (str, list, tuple)) for c in reference)):
        items = list(reference.items()) if isinstance(reference, dict) else [(c, 1.0) for c in reference]
        if not items:
            raise GuidanceError("reference: no colours given")
        ab = torch.tensor([color_to_ab(parse_color(c, f"reference colour {i}")) for i, (c, _) in enumerate(items)])
        weights = torch.tensor([_number(w, f"reference weight of {c!r}") for c, w in items])
        if (weights < 0).any() or weights.sum() <= 0:
            raise GuidanceError("reference: colour weights must be >= 0 and not all 0")
        return _soft_histogram(ab, weights, bins)
    try:
        rgb = load_rgb(reference)
    except ColorizationInputError as err:
        name = f" {os.fsdecode(reference)}" if isinstance(reference, (str, os.PathLike)) else ""
        raise GuidanceError(f"reference{name}: {err}") from None
    height, width = rgb.shape[-2:]
    scale = min(1.0, max_side / max(height, width))
    if scale < 1.0:
        rgb = F.interpolate(rgb[None], size=(max(1, round(height * scale)), max(1, round(width * scale))),
                            mode="area")[0]
    ab = rgb_to_lab(rgb)[1:].reshape(2, -1).T
    return _soft_histogram(ab, torch.ones(ab.shape[0]), bins)


def fallback_prior(ab_bins: torch.Tensor) -> torch.Tensor:
    """The documented prior for weights saved without one: exp(-3 * sqrt(|ab - centre| / scale)) over the bins."""
    bins = torch.as_tensor(ab_bins, dtype=torch.float32)
    d = (bins - torch.tensor(FALLBACK_PRIOR_CENTRE)).norm(dim=1)
    p = torch.exp(-3.0 * (d / FALLBACK_PRIOR_SCALE).sqrt())
    return p / p.sum()


def model_prior(model) -> torch.Tensor:
    """The training prior stored with the weights (`bin_prior`), or `fallback_prior` when it is uniform
    (weights that were saved without one)."""
    prior = model.bin_prior.detach().float().cpu()
    if torch.allclose(prior, torch.full_like(prior, 1.0 / prior.numel()), rtol=1e-4, atol=1e-9):
        return fallback_prior(model.ab_bins.detach().cpu())
    return prior / prior.sum()


def _smoothed(dist: torch.Tensor, ab_bins: torch.Tensor) -> torch.Tensor:
    """A distribution smoothed at `REFERENCE_SIGMAS` (equal mixture) and floored with `REFERENCE_FLOOR`."""
    bins = ab_bins.float().cpu()
    dist = dist.float().cpu()
    mix = sum(smooth_prior(dist, bins, s) for s in REFERENCE_SIGMAS) / len(REFERENCE_SIGMAS)
    return (1.0 - REFERENCE_FLOOR) * mix + REFERENCE_FLOOR / dist.numel()


def prior_swap_bias(reference: torch.Tensor, prior: torch.Tensor, ab_bins: torch.Tensor, strength: float) -> torch.Tensor:
    """The log-ratio `strength * log(r / pi)` `(Q,)` added to each pixel's logits (both smoothed and floored)."""
    return strength * (_smoothed(reference, ab_bins).log() - _smoothed(prior, ab_bins).log())


# --------------------------------------------------------------------------------------------------
# Point hints: edge-aware propagation on L
# --------------------------------------------------------------------------------------------------
def _recursive_pass(x: torch.Tensor, w: torch.Tensor) -> None:
    """In place, along dim 0 of `x` `(N, C, M)`: J[n] = (1 - w[n]) x[n] + w[n] J[n - 1], then the same
    backwards (w[n] `(N, 1, M)` couples n with n - 1)."""
    for n in range(1, x.shape[0]):
        x[n].add_(w[n] * (x[n - 1] - x[n]))
    for n in range(x.shape[0] - 2, -1, -1):
        x[n].add_(w[n + 1] * (x[n + 1] - x[n]))


def edge_aware_filter(signal: torch.Tensor, lightness: torch.Tensor, sigma_space: float, sigma_range: float,
                      iterations: int = HINT_ITERATIONS) -> torch.Tensor:
    """Recursive domain-transform filter (Gastal & Oliveira 2011) of `signal` `(C, H, W)`, edge-aware on
    `lightness` `(H, W)`: neighbours couple by a ** (1 + sigma_space / sigma_range * |dL|)."""
    ratio = sigma_space / sigma_range
    dx = 1.0 + ratio * (lightness[:, 1:] - lightness[:, :-1]).abs()  # (H, W - 1)
    dy = 1.0 + ratio * (lightness[1:] - lightness[:-1]).abs()  # (H - 1, W)
    rows = signal.permute(2, 0, 1).contiguous()  # (W, C, H): the horizontal recursion walks dim 0
    for i in range(iterations):
        sigma_i = sigma_space * math.sqrt(3.0) * 2 ** (iterations - i - 1) / math.sqrt(4 ** iterations - 1)
        a = math.exp(-math.sqrt(2.0) / sigma_i)
        wx = torch.cat((torch.zeros(1, dx.shape[0]), (a ** dx).T), dim=0)[:, None]  # (W, 1, H)
        _recursive_pass(rows, wx)
        cols = rows.permute(2, 1, 0).contiguous()  # (H, C, W)
        wy = torch.cat((torch.zeros(1, dy.shape[1]), a ** dy), dim=0)[:, None]  # (H, 1, W)
        _recursive_pass(cols, wy)
        rows = cols.permute(2, 1, 0).contiguous()
    return rows.permute(1, 2, 0)


_PEAKS = {}  # (sigma_space, iterations) -> a lone unit impulse's filtered value on flat L


def _impulse_peak(sigma_space: float, iterations: int) -> float:
    key = (round(sigma_space, 3), iterations)
    if key not in _PEAKS:
        side = 2 * int(4 * sigma_space) + 1
        delta = torch.zeros(1, side, side)
        delta[0, side // 2, side // 2] = 1.0
        _PEAKS[key] = float(edge_aware_filter(delta, torch.zeros(side, side), sigma_space, 1.0, iterations)[0, side // 2, side // 2])
    return _PEAKS[key]


@dataclass
class HintField:
    """Point hints spread over an image: `confidence` `(1, h, w)` in [0, 1] (1 at a hint) and the propagated
    hint colour `ab` `(2, h, w)`, on a working copy of the image `(h, w)` = its size (at most `HINT_MAX_SIDE`)."""

    confidence: torch.Tensor
    ab: torch.Tensor

    @classmethod
    def from_hints(cls, hints: Sequence[Hint], l_full: torch.Tensor, sigma_space: Optional[float] = None,
                   sigma_range: Optional[float] = None) -> "HintField":
        """Spread `hints` over the image whose full-resolution L is `l_full` `(1, H, W)`; `sigma_space` is a
        share of the longer side, `sigma_range` in L units (default `HINT_SIGMA_SPACE`, `HINT_SIGMA_RANGE`)."""
        sigma_space = HINT_SIGMA_SPACE if sigma_space is None else sigma_space
        sigma_range = HINT_SIGMA_RANGE if sigma_range is None else sigma_range
        height, width = l_full.shape[-2:]
        scale = min(1.0, HINT_MAX_SIDE / max(height, width))
        h, w = max(1, round(height * scale)), max(1, round(width * scale))
        lightness = l_full.reshape(1, 1, height, width).float()
        if (h, w) != (height, width):
            lightness = F.interpolate(lightness, size=(h, w), mode="area")
        lightness = lightness[0, 0].cpu()
        sparse = torch.zeros(3, h, w)  # mask, mask * a, mask * b
        for hint in hints:
            row = min(h - 1, int(hint.y * h / height))
            col = min(w - 1, int(hint.x * w / width))
            sparse[:, row, col] += torch.tensor([1.0, hint.ab[0], hint.ab[1]])
        sigma = sigma_space * max(h, w)
        spread = edge_aware_filter(sparse, lightness, sigma, sigma_range)
        mass = spread[:1]
        ab = spread[1:] / mass.clamp(min=1e-12)
        confidence = (mass / _impulse_peak(sigma, HINT_ITERATIONS)).clamp(0.0, 1.0)
        return cls(confidence=confidence, ab=torch.where(mass > 1e-12, ab, torch.zeros_like(ab)))

    def resized(self, size: Tuple[int, int]) -> "HintField":
        """The field at another resolution (area-averaged down, bilinear up); the colour weighted by confidence."""
        if tuple(self.confidence.shape[-2:]) == tuple(size):
            return self
        mode = "area" if size[0] <= self.confidence.shape[-2] else "bilinear"
        kw = {} if mode == "area" else {"align_corners": False}
        stack = torch.cat((self.confidence, self.ab * self.confidence))[None]
        out = F.interpolate(stack, size=size, mode=mode, **kw)[0]
        conf = out[:1]
        return HintField(confidence=conf, ab=out[1:] / conf.clamp(min=1e-6))

    def blend(self, ab: torch.Tensor, rows: slice, full_size: Tuple[int, int]) -> torch.Tensor:
        """Full-resolution ab rows `rows` `(2, r, W)` of an image of `full_size` -> blended towards the hint
        colour by the confidence (bilinear from the working copy, computed for these rows only)."""
        height, width = full_size
        h, w = self.confidence.shape[-2:]
        top, stop = rows.start, min(rows.stop, height)
        ys = ((torch.arange(top, stop, dtype=torch.float32) + 0.5) * h / height - 0.5) / max(h - 1, 1) * 2 - 1
        xs = ((torch.arange(width, dtype=torch.float32) + 0.5) * w / width - 0.5) / max(w - 1, 1) * 2 - 1
        grid = torch.stack(torch.meshgrid(ys, xs, indexing="ij")[::-1], dim=-1)[None]
        stack = torch.cat((self.confidence, self.ab * self.confidence))[None]
        out = F.grid_sample(stack, grid, mode="bilinear", padding_mode="border", align_corners=True)[0]
        conf = out[:1]
        target = out[1:] / conf.clamp(min=1e-6)
        return ab + conf * (target - ab)


def pin_hints(logits: torch.Tensor, field: HintField, ab_bins: torch.Tensor) -> torch.Tensor:
    """Bin logits `(Q, h, w)` -> the log of (1 - c) * softmax(logits) + c * t at each cell, where c is the
    hints' confidence and t the soft-encoded propagated hint colour there (a hint pins its cell)."""
    q, h, w = logits.shape
    cell = field.resized((h, w))
    conf = cell.confidence.to(logits.device)
    idx, wts = soft_encode(cell.ab[None].to(logits.device), ab_bins)
    target = torch.zeros(1, q, h, w, device=logits.device).scatter_(1, idx, wts)[0]
    probs = torch.softmax(logits.float(), dim=0)
    return ((1.0 - conf) * probs + conf * target).clamp(min=1e-30).log()


# --------------------------------------------------------------------------------------------------
# Per-image guidance
# --------------------------------------------------------------------------------------------------
@dataclass
class Guidance:
    """What guides one image: its `hints` (pixels of a `width` x `height` image), a `reference` colour
    distribution `(Q,)` over the model's bins (or None) and its `strength`."""

    width: int
    height: int
    hints: Tuple[Hint, ...] = ()
    reference: Optional[torch.Tensor] = None
    strength: float = DEFAULT_REFERENCE_STRENGTH
    _field: Optional[HintField] = field(default=None, repr=False, compare=False)

    def __bool__(self) -> bool:
        return bool(self.hints) or self.reference is not None

    def hint_field(self, l_full: torch.Tensor) -> HintField:
        """The hints spread over the image whose L is `l_full` `(1, H, W)` (computed once)."""
        if self._field is None:
            self._field = HintField.from_hints(self.hints, l_full)
        return self._field


__all__ = [
    "DEFAULT_REFERENCE_STRENGTH", "Guidance", "GuidanceError", "Hint", "HintField", "MAX_HINTS", "ab_to_hex",
    "color_to_ab", "edge_aware_filter", "fallback_prior", "model_prior", "parse_color", "parse_hints", "pin_hints",
    "prior_swap_bias", "reference_distribution",
]
