"""Colorization metrics, accumulated over a whole evaluation set (pixels pooled, not per-image means).

- Zhang et al. (ECCV16) AuC: the fraction of pixels whose predicted ab lies within Euclidean distance t
  of the truth, for the integer thresholds t = 0..150, averaged over the 151 thresholds (so in [0, 1]).
  "Rebalanced": each pixel weighted by 1 / p(q), q its ground-truth nearest ECCV16 bin and p the
  empirical bin frequency over the whole evaluation set; this equals the mean of the per-bin curves
  over the bins that occur.
- PSNR on 8-bit RGB, per image (capped at 100 dB), averaged over images.
- Colourfulness (Hasler & Süsstrunk 2003) on 8-bit RGB, per image; reported as means and pred / truth.
- Balanced hue accuracy: among ground-truth pixels with ab chroma > 20, the fraction whose predicted hue
  angle is within 30 degrees (a prediction with chroma <= 5 is wrong), per 60-degree sector of the TRUE
  hue, averaged over the sectors that have pixels.

ab maps are `(B, 2, H, W)` in Lab units; RGB images `(B, 3, H, W)` with values on the 0..255 scale.
"""

import math
from typing import Optional

import numpy as np
import torch

from hf_colorize.models.colorization.configuration_colorization import eccv16_ab_bins
from hf_colorize.models.colorization.modeling_colorization import soft_encode

MAX_THRESHOLD = 150
PSNR_CAP_DB = 100.0
HUE_CHROMA_MIN = 20.0  # ground truth counts as clearly coloured above this chroma
HUE_PRED_GRAY = 5.0  # a prediction at or below this chroma has no hue
HUE_TOLERANCE_DEG = 30.0
HUE_SECTOR_DEG = 60.0


def _t(x) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))


def _check_ab(pred_ab, true_ab):
    pred_ab, true_ab = _t(pred_ab).float(), _t(true_ab).float()
    if pred_ab.shape != true_ab.shape or pred_ab.dim() != 4 or pred_ab.shape[1] != 2:
        raise ValueError(f"ab maps must both be (B, 2, H, W); got {tuple(pred_ab.shape)} and {tuple(true_ab.shape)}")
    return pred_ab, true_ab


def ab_distance(pred_ab, true_ab) -> torch.Tensor:
    """Euclidean ab distance per pixel: `(B, 2, H, W)` x2 -> `(B, H, W)`."""
    pred_ab, true_ab = _check_ab(pred_ab, true_ab)
    return (pred_ab - true_ab).pow(2).sum(1).sqrt()


class AucAccumulator:
    """Zhang's AuC, raw and class-rebalanced, over all pixels of all `update` calls.

    Keeps, per ground-truth bin q, a histogram of k = ceil(distance) (k > 150 pooled in one cell), so the
    rebalancing weights 1 / p(q) can use the frequencies of the complete set at the end.
    """

    def __init__(self, ab_bins=None, max_threshold: int = MAX_THRESHOLD):
        self.ab_bins = torch.tensor(eccv16_ab_bins() if ab_bins is None else ab_bins, dtype=torch.float32)
        self.max_threshold = int(max_threshold)
        self._width = self.max_threshold + 2  # k = 0..max, plus "beyond"
        self.counts = torch.zeros(self.ab_bins.shape[0], self._width, dtype=torch.float64)
        self._grid = self._grid_lookup()

    def update(self, pred_ab, true_ab, true_bins: Optional[torch.Tensor] = None) -> None:
        """Add a batch. `true_bins` `(B, H, W)`: precomputed nearest bins of `true_ab` (see `nearest_bins`)."""
        d = ab_distance(pred_ab, true_ab)
        k = torch.ceil(d).clamp(max=self._width - 1).long()
        q = self.nearest_bins(true_ab) if true_bins is None else true_bins
        flat = (q.reshape(-1) * self._width + k.reshape(-1)).cpu()
        self.counts += torch.bincount(flat, minlength=self.counts.numel()).view_as(self.counts).double()

    def nearest_bins(self, true_ab) -> torch.Tensor:
        """Index of the nearest bin centre of each pixel: `(B, 2, H, W)` -> `(B, H, W)`."""
        ab = _t(true_ab).float()
        if self._grid is None:
            return soft_encode(ab, self.ab_bins, neighbors=1)[0][:, 0]
        # bins on a regular grid (ECCV16: spacing 10): the nearest lattice point, when it is a bin, is
        # the nearest bin; only the rare pixels off the bins' hull need the brute-force search
        step, lo, lut = self._grid
        cell = torch.round(ab / step).long() - lo.view(1, 2, 1, 1)
        inside = (cell >= 0).all(1) & (cell[:, 0] < lut.shape[0]) & (cell[:, 1] < lut.shape[1])
        q = torch.full(ab.shape[:1] + ab.shape[2:], -1, dtype=torch.long)
        q[inside] = lut[cell[:, 0][inside], cell[:, 1][inside]]
        miss = q < 0
        if miss.any():
            q[miss] = soft_encode(ab.permute(0, 2, 3, 1)[miss].T[None, :, :, None], self.ab_bins, neighbors=1)[0].flatten()
        return q

    def _grid_lookup(self):
        """(step, lowest cell, cell -> bin table) when the bins lie on a lattice of spacing `step`, else None."""
        gaps = torch.cat([self.ab_bins[:, c].unique().diff() for c in range(2)])
        if gaps.numel() == 0:
            return None
        step = float(gaps.min())
        cells = self.ab_bins / step
        if not torch.allclose(cells, cells.round(), atol=1e-6):
            return None
        cells = cells.round().long()
        lo = cells.min(0).values
        cells = cells - lo
        lut = torch.full(tuple((cells.max(0).values + 1).tolist()), -1, dtype=torch.long)
        lut[cells[:, 0], cells[:, 1]] = torch.arange(cells.shape[0])
        return step, lo, lut

    @property
    def num_pixels(self) -> int:
        return int(self.counts.sum().item())

    def curves(self) -> dict:
        """`{"thresholds": [0..T], "raw": [...], "rebalanced": [...]}` (fractions within each threshold)."""
        cum = self.counts[:, : self.max_threshold + 1].cumsum(1)  # (Q, T+1): pixels with d <= t per bin
        per_bin = self.counts.sum(1)  # (Q,)
        if per_bin.sum() == 0:
            raise ValueError("no pixels were accumulated")
        raw = cum.sum(0) / per_bin.sum()
        present = per_bin > 0
        # weight 1/p(q) per pixel == each present bin's curve with equal weight
        rebalanced = (cum[present] / per_bin[present, None]).mean(0)
        return {"thresholds": list(range(self.max_threshold + 1)), "raw": raw.tolist(), "rebalanced": rebalanced.tolist()}

    def result(self) -> dict:
        c = self.curves()
        return {"auc_raw": float(np.mean(c["raw"])), "auc_rebalanced": float(np.mean(c["rebalanced"]))}


def hue_degrees(ab) -> torch.Tensor:
    """Hue angle atan2(b, a) in [0, 360): `(B, 2, H, W)` -> `(B, H, W)`."""
    ab = _t(ab).float()
    return torch.rad2deg(torch.atan2(ab[:, 1], ab[:, 0])).remainder(360.0)


class HueAccuracyAccumulator:
    """Balanced hue accuracy over 360 / 60 = 6 sectors of the true hue (see the module docstring)."""

    def __init__(self):
        self.num_sectors = int(round(360.0 / HUE_SECTOR_DEG))
        self.correct = torch.zeros(self.num_sectors, dtype=torch.float64)
        self.total = torch.zeros(self.num_sectors, dtype=torch.float64)

    def update(self, pred_ab, true_ab) -> None:
        pred_ab, true_ab = _check_ab(pred_ab, true_ab)
        coloured = true_ab.pow(2).sum(1).sqrt() > HUE_CHROMA_MIN
        true_h, pred_h = hue_degrees(true_ab), hue_degrees(pred_ab)
        diff = (pred_h - true_h + 180.0).remainder(360.0).sub(180.0).abs()
        ok = (diff <= HUE_TOLERANCE_DEG) & (pred_ab.pow(2).sum(1).sqrt() > HUE_PRED_GRAY)
        sector = (true_h / HUE_SECTOR_DEG).floor().long().clamp(0, self.num_sectors - 1)
        s = sector[coloured].cpu()
        self.total += torch.bincount(s, minlength=self.num_sectors).double()
        self.correct += torch.bincount(s, weights=ok[coloured].double().cpu(), minlength=self.num_sectors)

    def result(self) -> dict:
        present = self.total > 0
        per_sector = [float(c / t) if t > 0 else None for c, t in zip(self.correct, self.total)]
        balanced = float((self.correct[present] / self.total[present]).mean()) if present.any() else float("nan")
        return {"hue_accuracy": balanced, "hue_accuracy_per_sector": per_sector,
                "hue_pixels_per_sector": [int(t) for t in self.total]}


def psnr(pred_rgb, true_rgb) -> torch.Tensor:
    """PSNR in dB of 8-bit RGB images `(B, 3, H, W)` (0..255) -> `(B,)`, capped at 100 dB (identical images)."""
    pred, true = _t(pred_rgb).double(), _t(true_rgb).double()
    if pred.shape != true.shape or pred.dim() != 4:
        raise ValueError(f"RGB images must both be (B, 3, H, W); got {tuple(pred.shape)} and {tuple(true.shape)}")
    mse = (pred - true).pow(2).mean(dim=(1, 2, 3))
    out = 10.0 * torch.log10(255.0**2 / mse.clamp(min=1e-300))
    return out.clamp(max=PSNR_CAP_DB)


def colorfulness(rgb) -> torch.Tensor:
    """Hasler & Süsstrunk (2003) colourfulness of RGB images `(B, 3, H, W)` on the 0..255 scale -> `(B,)`:
    rg = R - G, yb = (R + G) / 2 - B, M = sqrt(std_rg^2 + std_yb^2) + 0.3 sqrt(mean_rg^2 + mean_yb^2)."""
    rgb = _t(rgb).double()
    if rgb.dim() != 4 or rgb.shape[1] != 3:
        raise ValueError(f"RGB images must be (B, 3, H, W); got {tuple(rgb.shape)}")
    r, g, b = rgb.unbind(1)
    rg, yb = (r - g).flatten(1), (0.5 * (r + g) - b).flatten(1)
    std = (rg.var(1, unbiased=False) + yb.var(1, unbiased=False)).sqrt()
    mean = (rg.mean(1).pow(2) + yb.mean(1).pow(2)).sqrt()
    return std + 0.3 * mean


class ColorizationMetrics:
    """All metrics of one predictor (model or baseline) over an evaluation set.

    `update(pred_ab, true_ab, pred_rgb, true_rgb)`: ab `(B, 2, H, W)` Lab units, RGB `(B, 3, H, W)` 8-bit.
    """

    def __init__(self, ab_bins=None):
        self.auc = AucAccumulator(ab_bins)
        self.hue = HueAccuracyAccumulator()
        self.psnr_sum = 0.0
        self.colorfulness_pred = 0.0
        self.colorfulness_true = 0.0
        self.num_images = 0

    def update(self, pred_ab, true_ab, pred_rgb, true_rgb, true_bins=None) -> None:
        self.auc.update(pred_ab, true_ab, true_bins)
        self.hue.update(pred_ab, true_ab)
        self.psnr_sum += float(psnr(pred_rgb, true_rgb).sum())
        self.colorfulness_pred += float(colorfulness(pred_rgb).sum())
        self.colorfulness_true += float(colorfulness(true_rgb).sum())
        self.num_images += int(_t(pred_rgb).shape[0])

    def result(self) -> dict:
        if self.num_images == 0:
            raise ValueError("no images were evaluated")
        n = self.num_images
        out = self.auc.result()
        out["psnr"] = self.psnr_sum / n
        out["colorfulness"] = self.colorfulness_pred / n
        out["colorfulness_gt"] = self.colorfulness_true / n
        out["colorfulness_ratio"] = self.colorfulness_pred / self.colorfulness_true if self.colorfulness_true > 0 else math.nan
        out.update(self.hue.result())
        return out

    def curves(self) -> dict:
        return self.auc.curves()
