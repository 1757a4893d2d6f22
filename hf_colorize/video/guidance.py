"""Guidance for a film: a reference for every frame, and colour hints on keyframes carried along the motion.

- Reference: its colour distribution is computed once (`Colorizer.reference_distribution`) and the same prior
  swap guides every frame, so a film's colours stay consistent by construction.
- Keyframe hints: `{frame index: hint list}` (0-based indices of the decoded frames, ints or digit strings as
  in JSON; hints in the frame's pixels, as for a photo). `HintCarrier` gives each frame its hints: a
  keyframe's own, or the previous frame's moved along the estimated motion (`ShotTracker`'s backward flow at
  the network resolution, scaled to frame pixels) until the next scene cut or the next keyframe with hints
  (whose list replaces them; an empty list just stops them). A carried hint is dropped when it leaves the
  frame or its point is not matched in the new frame (occluded or changed). Without a motion estimate
  (`temporal=False`) a keyframe's hints guide that frame only.
"""

from dataclasses import replace
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F

from hf_colorize.common import UsageError
from hf_colorize.models.colorization.guidance_colorization import GuidanceError, Hint, parse_hints

#: fixed-point steps inverting the backward flow at a hint (p = q - flow(p))
INVERSION_STEPS = 4
#: a carried hint is dropped when the inverted flow is inconsistent by more than this many motion pixels (the
#: point was covered by something moving differently) or its match confidence falls below MIN_CONFIDENCE
MAX_RESIDUAL = 1.0
MIN_CONFIDENCE = 0.25


class VideoGuidanceError(UsageError, GuidanceError):
    """Bad video guidance (hints file, frame index, hint, reference): one line; a usage error (exit code 2)
    that is also a `GuidanceError`."""


def keyframe_hints(hints, where: str = "hints") -> Dict[int, list]:
    """`{frame index: hint list}` (keys ints or digit strings, as in JSON) -> `{int: list}`, keys checked
    (the hints themselves are checked against the frame size by `check_keyframes`). `where` starts the
    error messages (e.g. the file they came from)."""
    if hints is None:
        return {}
    if not isinstance(hints, dict):
        raise VideoGuidanceError(f'{where}: a video\'s hints map frame indices (from 0) to hint lists, e.g. {{"0": '
                                 f'[{{"x": 10, "y": 20, "color": "#b22222"}}]}}; got a {type(hints).__name__}')
    out = {}
    for key, value in hints.items():
        index = key if isinstance(key, int) and not isinstance(key, bool) else None
        if isinstance(key, str) and key.strip().isdigit():
            index = int(key)
        if index is None or index < 0:
            raise VideoGuidanceError(f"{where}: frame index {key!r} is not a whole number >= 0")
        if index in out:
            raise VideoGuidanceError(f"{where}: frame {index} is given twice")
        if not isinstance(value, (list, tuple)):
            raise VideoGuidanceError(f"{where}: frame {index}: expected a list of hints, got {type(value).__name__}")
        out[index] = list(value)
    return out


def _parsed(index: int, hints: list, width: int, height: int) -> Tuple[Hint, ...]:
    try:
        return tuple(parse_hints(hints, width, height))
    except GuidanceError as err:
        raise VideoGuidanceError(f"hints: frame {index}: {err}") from None


def check_keyframes(keyframes: Dict[int, list], width: int, height: int,
                    frame_count: Optional[int] = None) -> Dict[int, Tuple[Hint, ...]]:
    """Parse every keyframe's hints for `width` x `height` frames (and, with an exact `frame_count`, refuse
    frames beyond the video) before any frame is colorized."""
    if frame_count is not None:
        check_frame_count(keyframes, frame_count)
    return {index: _parsed(index, hints, width, height) for index, hints in keyframes.items()}


def check_frame_count(keyframes, frame_count: int) -> None:
    """Refuse hints for frames at or beyond `frame_count` (one line naming the first)."""
    beyond = sorted(i for i in keyframes if i >= frame_count)
    if beyond:
        more = f" (and {len(beyond) - 1} more)" if len(beyond) > 1 else ""
        raise VideoGuidanceError(f"hints: frame {beyond[0]}{more} is beyond the video, which has {frame_count} "
                                 f"frame{'s' if frame_count != 1 else ''} (numbered from 0)")


def _at(field: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Bilinear values of `field` `(1, C, M, M)` at `points` `(N, 2)` (x, y in its pixels) -> `(N, C)`."""
    m_h, m_w = field.shape[-2:]
    grid = torch.stack((points[:, 0] * 2 / m_w - 1, points[:, 1] * 2 / m_h - 1), dim=-1).view(1, 1, -1, 2)
    return F.grid_sample(field.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)[0, :, 0].T


def move_points(points: torch.Tensor, motion, width: int, height: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Points `(N, 2)` (x, y pixels of the previous `width` x `height` frame) -> their positions in this frame
    `(N, 2)` and whether each is still usable `(N,)` (inside the frame, consistently matched).

    `motion` (`video.temporal.Motion`) holds the backward flow at the motion resolution (`cur(p) ~ prev(p +
    flow(p))`): a point q of the previous frame is where p + flow(p) = q, found by fixed-point steps."""
    flow, conf = motion.flow, motion.confidence
    m_h, m_w = flow.shape[-2:]
    scale = torch.tensor([width / m_w, height / m_h])
    q = points.float() / scale
    p = q.clone()
    for _ in range(INVERSION_STEPS):
        p = q - _at(flow, p)
    residual = (p + _at(flow, p) - q).norm(dim=1)
    moved = p * scale
    usable = (residual <= MAX_RESIDUAL) & (_at(conf, p)[:, 0] >= MIN_CONFIDENCE)
    usable &= (moved[:, 0] >= 0) & (moved[:, 0] < width) & (moved[:, 1] >= 0) & (moved[:, 1] < height)
    return moved, usable


class HintCarrier:
    """Each frame's point hints, in order: `step(width, height, motion)` once per frame -> its hints.

    `keyframes`: `{frame index: hint list}` (see `keyframe_hints`; parsed hints from `check_keyframes` are
    taken as they are). `motion` is the frame's `Motion` (None without a motion estimate: hints then guide
    their keyframe only)."""

    def __init__(self, keyframes: Dict[int, list]):
        self.keyframes = dict(keyframes)
        self.active: Tuple[Hint, ...] = ()
        self.frame_index = 0

    def step(self, width: int, height: int, motion=None) -> Tuple[Hint, ...]:
        index = self.frame_index
        self.frame_index += 1
        if motion is None or motion.cut or not self.active:
            self.active = ()
        else:
            moved, usable = move_points(torch.tensor([[h.x, h.y] for h in self.active]), motion, width, height)
            self.active = tuple(replace(h, x=float(xy[0]), y=float(xy[1]))
                                for h, xy, ok in zip(self.active, moved.tolist(), usable.tolist()) if ok)
        if index in self.keyframes:
            hints = self.keyframes[index]
            self.active = hints if isinstance(hints, tuple) else _parsed(index, hints, width, height)
        return self.active

    def unused(self) -> List[int]:
        """Keyframes not reached (beyond the frames seen so far)."""
        return sorted(i for i in self.keyframes if i >= self.frame_index)


__all__ = ["HintCarrier", "VideoGuidanceError", "check_frame_count", "check_keyframes", "keyframe_hints", "move_points"]
