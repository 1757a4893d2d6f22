"""Flicker and accuracy of a colorized video against a clip with known motion (`hf-colorize video-eval`).

Metrics (all on the a, b channels of CIE Lab):
- warping error: mean Euclidean ab difference between frame t and frame t-1 warped to t by the TRUE motion,
  over pixels visible in both frames; averaged over frame pairs within a shot. The ground truth's own
  value (interpolation only) is reported beside it as the floor.
- CDC (colour distribution consistency): Jensen-Shannon divergence between the a and b histograms of
  frames 1, 2 and 4 apart (within a shot), multi-scale (32, 64, 128 bins over [-110, 110]); `cdc` is the
  mean of `cdc_1`, `cdc_2`, `cdc_4`.
- per-frame AuC: Zhang et al.'s AuC (fraction of pixels within ab distance t of the truth, t = 0..150,
  averaged) of each frame, averaged over frames.

Synthetic clips (gray input frames, colour ground truth, clip.json with the exact motion) come from
`hf_colorize.video.clips`. Problems raise `EvaluationError` (a `ValueError`) with a one-line message.
"""

import json
from typing import Iterable, Optional

import numpy as np
import torch

from hf_colorize.common import EvaluationError, atomic_path

CDC_STEPS = (1, 2, 4)


# --------------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------------
def frame_ab(rgb) -> torch.Tensor:
    """uint8 `(H, W, 3)` or float `(3, H, W)` in [0, 1] RGB -> ab `(2, H, W)` in Lab units."""
    from hf_colorize.models.colorization.image_processing_colorization import rgb_to_lab

    if isinstance(rgb, np.ndarray):
        rgb = torch.from_numpy(np.array(rgb)).permute(2, 0, 1).float() / 255.0
    return rgb_to_lab(rgb.float())[1:]


def _ab_binning():
    from hf_colorize.video.histograms import AdaptiveMultiScaleBinning

    return AdaptiveMultiScaleBinning((32, 64, 128), ((-110.0, 110.0), (-110.0, 110.0)))


def _per_frame_auc(pred_ab: torch.Tensor, true_ab: torch.Tensor) -> float:
    from hf_colorize.evaluation.metrics import AucAccumulator

    acc = AucAccumulator()
    acc.update(pred_ab[None], true_ab[None])
    return acc.result()["auc_raw"]


class VideoMetrics:
    """Streaming flicker / accuracy metrics: call `update(t, pred_ab, true_ab, flow)` for t = 0, 1, ...

    `pred_ab`, `true_ab`: `(2, H, W)`; `flow`: `(grid, valid)` from `video_clips.true_flow` (None for t = 0
    or when unknown); `shot`: any hashable id, pairs across shots are skipped. Only the last 4 frames'
    histograms and the previous frame are kept, so memory does not grow with the clip.
    """

    def __init__(self):
        self.binning = _ab_binning()
        self.prev = None  # (pred_ab, true_ab, shot)
        self.hist = []  # last max(CDC_STEPS) entries of (t, shot, pred hist, true hist)
        self.warp_pred, self.warp_true = [], []
        self.cdc = {k: ([], []) for k in CDC_STEPS}
        self.auc = []

    def update(self, t: int, pred_ab: torch.Tensor, true_ab: Optional[torch.Tensor] = None, flow=None, shot=0) -> None:
        from hf_colorize.video.clips import warp

        pred_ab = pred_ab.float()
        if true_ab is not None:
            if true_ab.shape != pred_ab.shape:
                raise EvaluationError(f"frame {t}: prediction is {tuple(pred_ab.shape[-2:])} but ground truth is {tuple(true_ab.shape[-2:])}")
            self.auc.append(_per_frame_auc(pred_ab, true_ab.float()))
        if flow is not None and self.prev is not None and self.prev[2] == shot:
            grid, valid = flow
            if valid.any():
                for cur, before, out in ((pred_ab, self.prev[0], self.warp_pred), (true_ab, self.prev[1], self.warp_true)):
                    if cur is not None and before is not None:
                        out.append(float((cur - warp(before, grid)).pow(2).sum(0).sqrt()[valid].mean()))
        hists = self.binning(torch.stack([pred_ab] + ([true_ab.float()] if true_ab is not None else [])))
        for past_t, past_shot, past in self.hist:
            k = t - past_t
            if k in self.cdc and past_shot == shot:
                d = self.binning.distance(hists, past, channels=2, metric="js")
                self.cdc[k][0].append(float(d[0]))
                if len(d) > 1:
                    self.cdc[k][1].append(float(d[1]))
        self.hist = [h for h in self.hist if t - h[0] < max(CDC_STEPS)] + [(t, shot, hists)]
        self.prev = (pred_ab, true_ab.float() if true_ab is not None else None, shot)

    def result(self) -> dict:
        def mean(v):
            return float(np.mean(v)) if len(v) else float("nan")

        out = {"warping_error": mean(self.warp_pred), "warping_error_gt": mean(self.warp_true)}
        for k in CDC_STEPS:
            out[f"cdc_{k}"] = mean(self.cdc[k][0])
        out["cdc"] = mean([out[f"cdc_{k}"] for k in CDC_STEPS if self.cdc[k][0]])
        out["cdc_gt"] = mean([mean(self.cdc[k][1]) for k in CDC_STEPS if self.cdc[k][1]])
        out["auc"] = mean(self.auc)
        out["frames"] = len(self.auc) if self.auc else None
        return out


def evaluate_frames(pred_frames: Iterable, gt_frames: Optional[Iterable] = None, spec: Optional[dict] = None) -> dict:
    """Metrics of predicted RGB frames (uint8 `(H, W, 3)` arrays) against ground truth frames and / or a
    clip spec (exact motion and shots). Streams: frames are consumed one at a time."""
    from hf_colorize.video.clips import shot_ids, true_flow

    metrics = VideoMetrics()
    shots = shot_ids(spec) if spec is not None else None
    gt_iter = iter(gt_frames) if gt_frames is not None else None
    n = 0
    for t, pred in enumerate(pred_frames):
        true = next(gt_iter, None) if gt_iter is not None else None
        if gt_iter is not None and true is None:
            raise EvaluationError(f"the prediction has more frames than the ground truth ({t})")
        if spec is not None and t >= len(shots):
            raise EvaluationError(f"the prediction has more frames than the clip ({len(shots)})")
        flow = true_flow(spec, t) if spec is not None and t > 0 else None
        metrics.update(t, frame_ab(pred), frame_ab(true) if true is not None else None, flow,
                       shot=shots[t] if shots is not None else 0)
        n += 1
    if n == 0:
        raise EvaluationError("the prediction has no frames")
    if spec is not None and n != len(shots):
        raise EvaluationError(f"the prediction has {n} frames but the clip has {len(shots)}")
    if gt_iter is not None and next(gt_iter, None) is not None:
        raise EvaluationError(f"the ground truth has more frames than the prediction ({n})")
    return metrics.result()


def video_frames(path, max_pixels: Optional[int] = None) -> Iterable[np.ndarray]:
    """The uint8 RGB frames `(H, W, 3)` of a video file or image folder, one at a time."""
    from hf_colorize.video.io import VideoReader

    kwargs = {} if max_pixels is None else {"max_pixels": max_pixels}
    with VideoReader(path, **kwargs) as reader:
        for frame in reader:
            yield frame.rgb


def evaluate_video(prediction, clip: Optional[str] = None, gt: Optional[str] = None) -> dict:
    """Metrics of a colorized video or frame folder against a clip spec (`clip.json`: exact motion, and the
    ground truth rendered from its photos) and / or a ground-truth video or folder (`gt`)."""
    from hf_colorize.video.clips import load_clip, render_frames

    if clip is None and gt is None:
        raise EvaluationError("give a clip spec (exact motion + ground truth) and / or a ground-truth video")
    spec = load_clip(clip) if clip is not None else None
    truth = video_frames(gt) if gt is not None else render_frames(spec)
    return evaluate_frames(video_frames(prediction), truth, spec)


def write_json(result: dict, path) -> None:
    """Write the metrics as JSON (atomically: never half-written)."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(result, fh, indent=1)
            fh.write("\n")


__all__ = ["CDC_STEPS", "VideoMetrics", "evaluate_frames", "evaluate_video", "frame_ab", "video_frames", "write_json"]
