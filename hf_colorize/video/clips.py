"""Synthetic video clips with exactly known motion, cut from real colour photos.

A clip is a JSON-able spec: frame size, fps, the source photo paths and, per frame, a stack of layers.
Each layer maps the whole frame affinely onto a window of a source photo (`box` = the source rectangle
the frame (0, 0, W, H) corresponds to) and is visible inside an integer frame rectangle `rect`; later
layers cover earlier ones. From the spec we render the ground-truth colour frames (PIL Lanczos resampling
of the photo window, so sub-pixel pans and zooms are exact and antialiased) and the exact backward flow
from frame t to frame t-1 with an occlusion mask (`true_flow`).

Kinds: "pan" (sub-pixel horizontal pan with a slight vertical drift), "zoom" (zoom in on the centre),
"object" (a crop of a second photo moving over a static first photo: occlusions at its edges) and "cut"
(a pan on the first photo, then a hard cut to a pan on the second).
"""

import json
import os
from typing import Iterator, List, Sequence

import numpy as np
import torch
from PIL import Image

from hf_colorize.common import InputImageError, UsageError, atomic_path, one_line
from hf_colorize.models.colorization.image_processing_colorization import open_image

KINDS = ("pan", "zoom", "object", "cut")


def _fit_window(photo_size, aspect: float, fraction: float):
    """Largest window of `aspect` (w / h) inside the photo, scaled by `fraction`: (w, h)."""
    pw, ph = photo_size
    w = min(pw, ph * aspect) * fraction
    return w, w / aspect


def _layer(layer_id: str, source: int, box, rect) -> dict:
    return {"id": layer_id, "source": int(source), "box": [float(v) for v in box], "rect": [int(v) for v in rect]}


def _pan_frames(photo_size, width, height, num_frames, source, layer_id, fraction=0.7) -> list:
    """A window of `fraction` of the photo moving left to right (and slightly down) at constant speed."""
    ww, wh = _fit_window(photo_size, width / height, fraction)
    pw, ph = photo_size
    span_x, span_y = (pw - ww) - 1e-3, (ph - wh) - 1e-3
    frames = []
    for t in range(num_frames):
        u = t / max(num_frames - 1, 1)
        x0, y0 = span_x * u, span_y * (0.3 + 0.4 * u)
        frames.append([_layer(layer_id, source, (x0, y0, x0 + ww, y0 + wh), (0, 0, width, height))])
    return frames


def make_clip(kind: str, photos: Sequence[str], num_frames: int = 24, width: int = 128, height: int = 96,
              fps: float = 24.0) -> dict:
    """Build a clip spec (see the module docstring). `photos`: one path ("pan", "zoom") or two.
    Bad arguments raise `UsageError` (a `ValueError`); an unreadable photo `InputImageError`."""
    if kind not in KINDS:
        raise UsageError(f"clip kind must be one of {', '.join(KINDS)}, got {kind!r}")
    needed = 2 if kind in ("object", "cut") else 1
    if len(photos) < needed:
        raise UsageError(f"a {kind!r} clip needs {needed} photos (--photo twice), got {len(photos)}")
    if num_frames < 2 or width < 16 or height < 16:
        raise UsageError("a clip needs at least 2 frames of at least 16x16 pixels")
    photos = [os.path.abspath(os.fspath(p)) for p in photos[:needed]]
    sizes = []
    for p in photos:
        try:
            sizes.append(open_image(p).size)
        except InputImageError as err:
            raise InputImageError(f"{p}: {err}") from None
    if kind == "pan":
        frames = _pan_frames(sizes[0], width, height, num_frames, 0, "bg0")
    elif kind == "cut":
        first = num_frames // 2
        frames = _pan_frames(sizes[0], width, height, first, 0, "bg0")
        frames += _pan_frames(sizes[1], width, height, num_frames - first, 1, "bg1")
    elif kind == "zoom":
        pw, ph = sizes[0]
        ww, wh = _fit_window(sizes[0], width / height, 0.95)
        cx, cy = pw / 2, ph / 2
        frames = []
        for t in range(num_frames):
            s = 0.5 ** (t / max(num_frames - 1, 1))  # zoom in 2x over the clip
            frames.append([_layer("bg0", 0, (cx - ww * s / 2, cy - wh * s / 2, cx + ww * s / 2, cy + wh * s / 2),
                                  (0, 0, width, height))])
    else:  # object: a crop of photo 1 moving diagonally in whole pixels over a static photo 0
        ww, wh = _fit_window(sizes[0], width / height, 0.95)
        bx, by = (sizes[0][0] - ww) / 2, (sizes[0][1] - wh) / 2
        rw, rh = width * 2 // 5, height * 2 // 5
        ow, oh = _fit_window(sizes[1], rw / rh, 0.6)  # the object's window in photo 1
        ox, oy = (sizes[1][0] - ow) / 2, (sizes[1][1] - oh) / 2
        sx, sy = ow / rw, oh / rh
        frames = []
        for t in range(num_frames):
            u = t / max(num_frames - 1, 1)
            rx, ry = int(round(2 + (width - rw - 4) * u)), int(round(2 + (height - rh - 4) * u * 0.6))
            # the layer's frame->source map places the object's window exactly on its rectangle
            obj_box = (ox - rx * sx, oy - ry * sy, ox - rx * sx + width * sx, oy - ry * sy + height * sy)
            frames.append([
                _layer("bg0", 0, (bx, by, bx + ww, by + wh), (0, 0, width, height)),
                _layer("obj", 1, obj_box, (rx, ry, rx + rw, ry + rh)),
            ])
    return {"kind": kind, "width": int(width), "height": int(height), "fps": float(fps), "sources": photos,
            "frames": frames}


def save_clip(spec: dict, path: str) -> None:
    """Write a clip spec as JSON (atomically: never half-written)."""
    with atomic_path(path) as tmp:
        with open(tmp, "w") as fh:
            json.dump(spec, fh, indent=1)


def load_clip(path: str) -> dict:
    """Read a clip spec; `InputImageError` (one line) if `path` is not one."""
    try:
        with open(path) as fh:
            spec = json.load(fh)
        _ = spec["width"], spec["height"], spec["frames"][0][0]["box"]
    except (OSError, ValueError, KeyError, IndexError, TypeError) as err:
        raise InputImageError(f"{path}: not a clip spec ({type(err).__name__}: {one_line(err)})") from None
    return spec


def shot_ids(spec: dict) -> List[str]:
    """Per frame, the id of its bottom layer: frames with different ids are in different shots."""
    return [frame[0]["id"] for frame in spec["frames"]]


def cut_frames(spec: dict) -> List[int]:
    """Indices t where frame t starts a new shot."""
    ids = shot_ids(spec)
    return [t for t in range(1, len(ids)) if ids[t] != ids[t - 1]]


# --------------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------------
def render_frames(spec: dict) -> Iterator[np.ndarray]:
    """Ground-truth colour frames, uint8 `(H, W, 3)`, one at a time."""
    width, height = spec["width"], spec["height"]
    photos = {}
    for frame in spec["frames"]:
        canvas = Image.new("RGB", (width, height))
        for layer in frame:
            src = layer["source"]
            if src not in photos:
                photos[src] = open_image(spec["sources"][src]).convert("RGB")
            x0, y0, x1, y1 = layer["box"]
            sx, sy = (x1 - x0) / width, (y1 - y0) / height
            rx0, ry0, rx1, ry1 = layer["rect"]
            region = (x0 + rx0 * sx, y0 + ry0 * sy, x0 + rx1 * sx, y0 + ry1 * sy)
            canvas.paste(photos[src].resize((rx1 - rx0, ry1 - ry0), Image.Resampling.LANCZOS, box=region), (rx0, ry0))
        yield np.asarray(canvas)


def gray_frame(rgb: np.ndarray) -> np.ndarray:
    """The model input for a ground-truth frame: its CIE L channel as 8-bit gray replicated to RGB."""
    from hf_colorize.models.colorization.image_processing_colorization import rgb_to_l

    l_chan = rgb_to_l(torch.from_numpy(np.array(rgb)).permute(2, 0, 1).float() / 255.0)[0]
    # the 8-bit gray whose L equals the frame's (gray sRGB has L = rgb_to_l of that gray)
    lut = rgb_to_l(torch.arange(256, dtype=torch.float32).div(255.0).view(1, 1, 256).expand(3, 1, 256))[0, 0]
    idx = torch.bucketize(l_chan, (lut[1:] + lut[:-1]) / 2)
    return idx.to(torch.uint8)[..., None].expand(-1, -1, 3).numpy()


def write_clip_folders(spec: dict, out_dir: str) -> dict:
    """Write `out_dir/gt/frame_NNNNNN.png` (colour), `out_dir/input/...` (gray) and `out_dir/clip.json`
    (last, atomically: a clip.json means the frames are complete)."""
    paths = {"gt": os.path.join(out_dir, "gt"), "input": os.path.join(out_dir, "input"), "clip": os.path.join(out_dir, "clip.json")}
    os.makedirs(paths["gt"], exist_ok=True)
    os.makedirs(paths["input"], exist_ok=True)
    for t, rgb in enumerate(render_frames(spec)):
        Image.fromarray(rgb).save(os.path.join(paths["gt"], f"frame_{t:06d}.png"))
        Image.fromarray(gray_frame(rgb)).save(os.path.join(paths["input"], f"frame_{t:06d}.png"))
    save_clip(spec, paths["clip"])
    return paths


# --------------------------------------------------------------------------------------------------
# Exact motion
# --------------------------------------------------------------------------------------------------
def _layer_map(frame: list, width: int, height: int) -> np.ndarray:
    """Index (into `frame`) of the visible layer at each pixel: `(H, W)` int."""
    out = np.zeros((height, width), dtype=np.int64)
    for i, layer in enumerate(frame):
        x0, y0, x1, y1 = layer["rect"]
        out[max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)] = i
    return out


def true_flow(spec: dict, t: int):
    """Backward motion from frame t to frame t-1 (t >= 1).

    Returns `(grid, valid)`: `grid` `(H, W, 2)` float32, the position in frame t-1 of each pixel of frame t
    in `grid_sample` coordinates (x, y in [-1, 1], align_corners=False); `valid` `(H, W)` bool: the point
    is visible in both frames (same layer, not occluded, not across a cut) and its bilinear footprint in
    frame t-1 lies entirely on that layer.
    """
    if not 1 <= t < len(spec["frames"]):
        raise UsageError(f"frame index must be in 1..{len(spec['frames']) - 1}, got {t}")
    width, height = spec["width"], spec["height"]
    cur, prev = spec["frames"][t], spec["frames"][t - 1]
    cur_map, prev_map = _layer_map(cur, width, height), _layer_map(prev, width, height)
    prev_index = {layer["id"]: i for i, layer in enumerate(prev)}
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64) + 0.5  # pixel centres
    px, py = np.full_like(xs, -1e9), np.full_like(ys, -1e9)
    same = np.zeros((height, width), dtype=bool)
    target = np.full((height, width), -1, dtype=np.int64)
    for i, layer in enumerate(cur):
        j = prev_index.get(layer["id"])
        sel = cur_map == i
        if j is None or not sel.any():
            continue
        x0, y0, x1, y1 = layer["box"]
        q0, r0, q1, r1 = prev[j]["box"]
        sx, sy = xs[sel] * (x1 - x0) / width + x0, ys[sel] * (y1 - y0) / height + y0  # source photo coords
        px[sel] = (sx - q0) * width / (q1 - q0)
        py[sel] = (sy - r0) * height / (r1 - r0)
        target[sel] = j
        same[sel] = True
    # bilinear footprint: the 4 neighbouring pixel centres must exist and belong to the same layer
    fx, fy = np.floor(px - 0.5), np.floor(py - 0.5)
    inside = same & (fx >= 0) & (fy >= 0) & (fx + 1 <= width - 1) & (fy + 1 <= height - 1)
    valid = inside.copy()
    ix, iy = np.clip(fx, 0, width - 2).astype(np.int64), np.clip(fy, 0, height - 2).astype(np.int64)
    for dy in (0, 1):
        for dx in (0, 1):
            valid &= prev_map[iy + dy, ix + dx] == target
    grid = np.stack((2.0 * px / width - 1.0, 2.0 * py / height - 1.0), axis=-1).astype(np.float32)
    grid[~inside] = 0.0
    return torch.from_numpy(grid), torch.from_numpy(valid)


def warp(prev: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Sample `prev` `(C, H, W)` at `grid` `(H, W, 2)` (bilinear) -> `(C, H, W)`."""
    return torch.nn.functional.grid_sample(prev[None].float(), grid[None], mode="bilinear", padding_mode="border",
                                           align_corners=False)[0]


__all__ = ["KINDS", "make_clip", "save_clip", "load_clip", "render_frames", "gray_frame", "write_clip_folders",
           "true_flow", "warp", "shot_ids", "cut_frames"]
