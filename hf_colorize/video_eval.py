"""`hf-colorize video-eval`: flicker and accuracy of a colorized video against a clip with known motion.

Metrics (all on the a, b channels of CIE Lab):
- warping error: mean Euclidean ab difference between frame t and frame t-1 warped to t by the TRUE motion,
  over pixels visible in both frames; averaged over frame pairs within a shot. The ground truth's own
  value (interpolation only) is reported beside it as the floor.
- CDC (colour distribution consistency): Jensen-Shannon divergence between the a and b histograms of
  frames 1, 2 and 4 apart (within a shot), multi-scale (32, 64, 128 bins over [-110, 110]); `cdc` is the
  mean of `cdc_1`, `cdc_2`, `cdc_4`.
- per-frame AuC: Zhang et al.'s AuC (fraction of pixels within ab distance t of the truth, t = 0..150,
  averaged) of each frame, averaged over frames.

Also `--make-clip KIND`: write a synthetic clip (gray input frames, colour ground truth, clip.json with
the exact motion) from real photos; see `video_clips`.
"""

import json
import os
import sys
from typing import Iterable, Optional

import numpy as np
import torch

CDC_STEPS = (1, 2, 4)


def add_arguments(parser) -> None:
    parser.add_argument("prediction", nargs="?", help="colorized video or image folder to evaluate")
    parser.add_argument("--clip", help="clip.json with the exact motion (from --make-clip); gives the ground truth too")
    parser.add_argument("--gt", help="ground-truth colour video or folder (default: rendered from --clip's photos)")
    parser.add_argument("--json", dest="json_out", help="also write the metrics to this JSON file")
    parser.add_argument("--make-clip", choices=("pan", "zoom", "object", "cut"), help="write a synthetic clip instead")
    parser.add_argument("--photo", action="append", default=[], help="source photo for --make-clip (twice for object/cut)")
    parser.add_argument("--frames", type=int, default=24, help="frames of the synthetic clip")
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--height", type=int, default=192)
    parser.add_argument("-o", "--output", help="output folder of --make-clip")


# --------------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------------
def frame_ab(rgb) -> torch.Tensor:
    """uint8 `(H, W, 3)` or float `(3, H, W)` in [0, 1] RGB -> ab `(2, H, W)` in Lab units."""
    from .image_processing_colorization import rgb_to_lab

    if isinstance(rgb, np.ndarray):
        rgb = torch.from_numpy(np.array(rgb)).permute(2, 0, 1).float() / 255.0
    return rgb_to_lab(rgb.float())[1:]


def _ab_binning():
    from .histograms import AdaptiveMultiScaleBinning

    return AdaptiveMultiScaleBinning((32, 64, 128), ((-110.0, 110.0), (-110.0, 110.0)))


def _per_frame_auc(pred_ab: torch.Tensor, true_ab: torch.Tensor) -> float:
    from .metrics import AucAccumulator

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
        from .video_clips import warp

        pred_ab = pred_ab.float()
        if true_ab is not None:
            if true_ab.shape != pred_ab.shape:
                raise ValueError(f"frame {t}: prediction is {tuple(pred_ab.shape[-2:])} but ground truth is {tuple(true_ab.shape[-2:])}")
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
    from .video_clips import shot_ids, true_flow

    metrics = VideoMetrics()
    shots = shot_ids(spec) if spec is not None else None
    gt_iter = iter(gt_frames) if gt_frames is not None else None
    n = 0
    for t, pred in enumerate(pred_frames):
        true = next(gt_iter, None) if gt_iter is not None else None
        if gt_iter is not None and true is None:
            raise ValueError(f"prediction has more frames than the ground truth ({t})")
        if spec is not None and t >= len(shots):
            raise ValueError(f"prediction has more frames than the clip ({len(shots)})")
        flow = true_flow(spec, t) if spec is not None and t > 0 else None
        metrics.update(t, frame_ab(pred), frame_ab(true) if true is not None else None, flow,
                       shot=shots[t] if shots is not None else 0)
        n += 1
    if n == 0:
        raise ValueError("the prediction has no frames")
    if spec is not None and n != len(shots):
        raise ValueError(f"the prediction has {n} frames but the clip has {len(shots)}")
    if gt_iter is not None and next(gt_iter, None) is not None:
        raise ValueError(f"the ground truth has more frames than the prediction ({n})")
    return metrics.result()


# --------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------
def _frames_of(path: str):
    from .video_io import VideoReader

    reader = VideoReader(path)
    with reader:
        for frame in reader:
            yield frame.rgb


def run(args) -> int:
    from .image_processing_colorization import ColorizationInputError
    from .video_io import VideoIOError

    prog = "hf-colorize video-eval"
    try:
        if args.make_clip:
            from .video_clips import make_clip, write_clip_folders

            if not args.output:
                raise ValueError("--make-clip needs -o OUTPUT_FOLDER")
            spec = make_clip(args.make_clip, args.photo, args.frames, args.width, args.height)
            paths = write_clip_folders(spec, args.output)
            print(f"wrote {args.make_clip} clip: input frames {paths['input']}, ground truth {paths['gt']}, motion {paths['clip']}")
            return 0
        if not args.prediction:
            raise ValueError("give the colorized video to evaluate (or --make-clip)")
        if not args.clip and not args.gt:
            raise ValueError("give --clip (exact motion + ground truth) and / or --gt")
        from .video_clips import load_clip, render_frames

        spec = load_clip(args.clip) if args.clip else None
        gt = _frames_of(args.gt) if args.gt else (render_frames(spec) if spec is not None else None)
        result = evaluate_frames(_frames_of(args.prediction), gt, spec)
    except (ColorizationInputError, VideoIOError, ValueError, OSError) as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 1
    for key, value in result.items():
        print(f"{key:>18}: {value:.4f}" if isinstance(value, float) else f"{key:>18}: {value}")
    if args.json_out:
        tmp = f"{args.json_out}.tmp-{os.getpid()}"
        with open(tmp, "w") as fh:
            json.dump(result, fh, indent=1)
        os.replace(tmp, args.json_out)
    return 0
