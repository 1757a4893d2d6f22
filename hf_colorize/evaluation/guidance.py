"""Evaluation of guided colorization (`hf-colorize evaluate --hints ... / --reference ...`).

Protocol (Zhang et al., SIGGRAPH 2017, "Real-Time User-Guided Image Colorization", section 4):

- Photos: each colour photo downscaled (PIL bicubic) so its longer side is at most `max_side` (512),
  quantized to 8-bit RGB: the ground truth. Whole photos are scored, not centre crops.
- Point hints: per photo, hints drawn with a fixed seed (the seed and the file name, so a photo gets the
  same hints whatever else is evaluated): a patch side uniform in 1..9 px, its top-left corner uniform
  over the positions where the patch fits, the hint = the mean ab of that patch of the ground truth, at
  the patch centre. The hints of a photo are one sequence, so the first 10 hints of the 20-hint run are
  the 10-hint run's (curves are monotone in information).
- Reference: "self" = the ground-truth photo as the reference; "other" = a different photo of the same
  label (file name up to the first "_": ImageNet/Imagenette wnids, scene names) from a pool folder,
  chosen with the fixed seed, never the photo itself; photos without a partner are skipped and counted.
- Scores: the existing metrics (`evaluation.metrics.ColorizationMetrics`: PSNR on 8-bit RGB per photo,
  AuC raw / rebalanced and balanced hue accuracy pooled over pixels) per hint count and per reference
  strength.

Methods: "model" is what users get, the public `Colorizer` API with `hints=` / `reference=` (the
training-free path, or a hint-trained model's inputs). It reuses one network pass per photo for every hint
count where the model has no hint inputs (`GuidedPhoto`; equal to `colorizer(photo, hints=...)`, tested).
"crude" is the issue's reference bar, not part of the product (`crude_hint_logits`).
"""

import math
import os
import zlib
from itertools import islice
from typing import Callable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from hf_colorize.common import EvaluationError, one_line, shown

HINT_COUNTS = (0, 1, 2, 5, 10, 20, 50, 100)  # SIGGRAPH 2017, Fig. 4
DEFAULT_MAX_SIDE = 512
PATCH_SIDE_MAX = 9  # patch sides 1..9 px
METHODS = ("model", "crude")
METHOD_LABELS = {"model": "guidance", "crude": "crude baseline"}
REFERENCE_MODES = ("self", "other")
DEFAULT_STRENGTHS = (0.5, 1.0, 2.0)
#: the crude baseline's scales: a spatial Gaussian in output cells and a lightness Gaussian in L units
CRUDE_SIGMA_CELLS = 3.0
CRUDE_SIGMA_L = 10.0
#: floor of the hint target inside the log: at a hint's own cell every bin outside the hint's 5 nearest
#: loses log(1e-6) ~ 14 logits, which outweighs the model's own preferences (docs/evaluation.md)
CRUDE_FLOOR = 1e-6
#: the scalar metrics reported per hint count / strength
SCALARS = ("psnr", "auc_raw", "auc_rebalanced", "hue_accuracy", "colorfulness", "colorfulness_ratio")
MAX_LISTED = 20  # keys listed in the JSON for skipped photos


# --------------------------------------------------------------------------------------------------
# Ground-truth hints and reference partners
# --------------------------------------------------------------------------------------------------
def photo_rng(seed: int, key, stream: int = 0) -> np.random.Generator:
    """The random stream of one photo: from the seed and the photo's file name (not its position in the
    set); `stream` separates independent draws (0: hints, 1: the reference partner)."""
    name = os.path.basename(str(key)).encode("utf-8", "surrogateescape")
    return np.random.default_rng([int(seed), zlib.crc32(name), int(stream)])


def sample_patches(width: int, height: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """`n` patches `(x0, y0, side)` (int array `(n, 3)`): side uniform in 1..9 (at most the image's sides),
    the top-left corner uniform where the patch fits. Three draws per patch, in order, so the first k
    patches do not depend on `n`."""
    out = np.zeros((n, 3), dtype=np.int64)
    for i in range(n):
        side = min(1 + int(rng.random() * PATCH_SIDE_MAX), width, height)
        out[i] = (int(rng.random() * (width - side + 1)), int(rng.random() * (height - side + 1)), side)
    return out


def patch_hints(true_ab: torch.Tensor, patches: np.ndarray) -> list:
    """Ground-truth ab `(2, H, W)` + patches -> hints `{"x", "y", "ab"}` for the public API: each patch's mean
    ab at its centre (pixel coordinates: x0 + side / 2 lies in the centre pixel for odd sides)."""
    hints = []
    for x0, y0, side in patches.tolist():
        a, b = true_ab[:, y0:y0 + side, x0:x0 + side].double().mean(dim=(1, 2)).tolist()
        hints.append({"x": x0 + side / 2.0, "y": y0 + side / 2.0, "ab": (a, b)})
    return hints


def photo_label(name) -> Optional[str]:
    """A photo's label: its file name up to the first "_" (`n01440764_tench.JPEG` -> `n01440764`,
    `forest_1a2b.jpg` -> `forest`); None for a name without "_"."""
    base = os.path.basename(str(name))
    return base.split("_", 1)[0] if "_" in base and not base.startswith("_") else None


class ReferencePool:
    """The colour photos of a folder, by label (`photo_label`): where a photo's "other" reference comes from."""

    def __init__(self, folder):
        from hf_colorize.common import walk_files

        folder = os.fspath(folder)
        if not os.path.isdir(folder):
            raise EvaluationError(f"reference pool {shown(folder)}: no such folder")
        files = walk_files(folder)
        if not files:
            raise EvaluationError(f"reference pool {shown(folder)}: no images")
        self.folder = folder
        self.by_label = {}
        for path in files:
            label = photo_label(path)
            if label is not None:
                self.by_label.setdefault(label, []).append(path)
        if not self.by_label:
            raise EvaluationError(f"reference pool {shown(folder)}: no file name has a label (the part before "
                                  "the first '_', e.g. n01440764_tench.JPEG)")
        self._usable = {}  # path -> decoded colour photo, or None when grayscale / undecodable

    def _photo(self, path):
        if path not in self._usable:
            from hf_colorize.training.data import decode_image, is_grayscale

            try:
                im = decode_image(path)
            except ValueError:
                im = None
            self._usable[path] = None if im is None or is_grayscale(im) else im
        return self._usable[path]

    def partner(self, key, rng: np.random.Generator):
        """`(path, PIL image)` of a colour photo with `key`'s label and another file name, drawn with `rng`
        (grayscale and undecodable candidates passed over); None when there is none."""
        label = photo_label(key)
        name = os.path.basename(str(key))
        candidates = [p for p in self.by_label.get(label, ()) if os.path.basename(p) != name]
        for i in rng.permutation(len(candidates)):
            im = self._photo(candidates[i])
            if im is not None:
                return candidates[i], im
        return None


def resize_photo(image, max_side: int) -> np.ndarray:
    """A PIL RGB photo -> uint8 `(H, W, 3)`, downscaled (bicubic, as `hf-colorize pack`) so that its longer
    side is at most `max_side` (0: as it is)."""
    from PIL import Image

    if max_side and max(image.size) > max_side:
        image = image.copy()
        image.thumbnail((max_side, max_side), Image.BICUBIC)
    return np.array(image.convert("RGB"), dtype=np.uint8)  # a writable copy


# --------------------------------------------------------------------------------------------------
# The crude baseline of the issue (not the product)
# --------------------------------------------------------------------------------------------------
def crude_hint_logits(logits: torch.Tensor, hints, width: int, height: int, l_cells: torch.Tensor,
                      ab_bins: torch.Tensor, sigma_cells: float = CRUDE_SIGMA_CELLS, sigma_l: float = CRUDE_SIGMA_L,
                      floor: float = CRUDE_FLOOR) -> torch.Tensor:
    """The issue's crude training-free propagation, on the 1/4-resolution bin logits `(Q, h, w)`.

    Each hint (`Hint`s of a `width` x `height` photo) sits in the output cell (int(y h / H), int(x w / W))
    and adds `weight * log(t + floor)` to every cell's logits, where t `(Q,)` is the hint colour's
    soft-encoding (its 5 nearest bins, sigma 5, as in training) and weight = exp(-d^2 / (2 * 3^2)) *
    exp(-(L - L_hint)^2 / (2 * 10^2)), d the distance in output cells and L the cells' mean lightness
    `l_cells` `(h, w)`. So the distribution at a cell is the model's times prod_h (t_h + floor) ** weight_h:
    at the hint's own cell (weight 1) essentially the hint colour, fading with distance and lightness
    difference. Nothing at full resolution: the decoded ab is upsampled as usual."""
    if not hints:
        return logits
    q, h, w = logits.shape
    rows = torch.tensor([min(h - 1, int(t.y * h / height)) for t in hints])
    cols = torch.tensor([min(w - 1, int(t.x * w / width)) for t in hints])
    ys = torch.arange(h, dtype=torch.float32).view(1, h, 1)
    xs = torch.arange(w, dtype=torch.float32).view(1, 1, w)
    d2 = (ys - rows.view(-1, 1, 1)) ** 2 + (xs - cols.view(-1, 1, 1)) ** 2
    l_hint = l_cells[rows, cols].view(-1, 1, 1)
    weight = torch.exp(-d2 / (2 * sigma_cells ** 2)) * torch.exp(-(l_cells[None] - l_hint) ** 2 / (2 * sigma_l ** 2))
    from hf_colorize.models.colorization.modeling_colorization import soft_encode

    ab = torch.tensor([t.ab for t in hints], dtype=torch.float32).T.reshape(1, 2, -1, 1)
    idx, wts = soft_encode(ab, ab_bins)  # (1, 5, n, 1)
    target = torch.zeros(len(hints), q).scatter_(1, idx[0, :, :, 0].T.cpu(), wts[0, :, :, 0].T.cpu())
    bias = torch.einsum("nhw,nq->qhw", weight, (target + floor).log())
    return logits + bias.to(logits.device, logits.dtype)


# --------------------------------------------------------------------------------------------------
# One photo through one colorizer
# --------------------------------------------------------------------------------------------------
class GuidedPhoto:
    """One photo (uint8 `(H, W, 3)`) through a `Colorizer`'s steps, its network pass done once and reused for
    every guidance the model takes without network inputs. `render(guidance)` equals
    `colorizer(photo, hints=..., reference=..., reference_strength=..., output_type="np")` with the same
    guidance (the colorizer holds every other option)."""

    def __init__(self, colorizer, rgb: np.ndarray, l_full: torch.Tensor, pixel_values: torch.Tensor,
                 logits: torch.Tensor):
        self.colorizer, self.rgb = colorizer, rgb
        self.l_full, self.pixel_values, self.logits = l_full, pixel_values, logits
        self.height, self.width = rgb.shape[:2]

    @classmethod
    def batch(cls, colorizer, photos: Sequence[np.ndarray]) -> list:
        """One network pass for several photos (as `Colorizer` batches them)."""
        prepared = [colorizer.prepare(rgb) for rgb in photos]
        logits = colorizer.logits(torch.stack([p[1] for p in prepared]))
        return [cls(colorizer, rgb, l_full, pv, logits[i]) for i, (rgb, (l_full, pv)) in enumerate(zip(photos, prepared))]

    def guidance(self, hints=None, reference=None, reference_strength=None):
        return self.colorizer.guidance(self.width, self.height, hints=hints or None, reference=reference,
                                       reference_strength=reference_strength)

    def render(self, guidance=None) -> np.ndarray:
        """The colorized photo, uint8 `(H, W, 3)`, with `guidance` (a `Guidance` or None) the public way."""
        c, pv = self.colorizer, self.pixel_values[None]
        net = c.network_inputs([guidance], pv.shape[-1]) if guidance is not None else {}
        logits = c.network_logits(pv, [guidance]) if net else self.logits[None]  # hint inputs change the network pass
        if guidance is not None:
            logits = c.guided_logits(logits, [self.l_full], [guidance])
        return self._finish(logits, guidance)

    def render_crude(self, hints) -> np.ndarray:
        """The photo with `hints` through the crude baseline (`crude_hint_logits`) instead of the model's guidance."""
        c = self.colorizer
        g = self.guidance(hints=hints)
        if g is None:
            return self._finish(self.logits[None], None)
        processor = c.image_processor
        l_net = self.pixel_values[0] * processor.l_norm + processor.l_cent  # (S, S)
        l_cells = F.adaptive_avg_pool2d(l_net[None, None].float(), self.logits.shape[-2:])[0, 0]
        logits = crude_hint_logits(self.logits, g.hints, self.width, self.height, l_cells.to(self.logits.device),
                                   c.model.ab_bins.detach())
        return self._finish(logits[None], None)

    def _finish(self, logits, guidance) -> np.ndarray:
        c = self.colorizer
        ab = c.decode(logits, pixel_values=self.pixel_values[None]).cpu()
        return c.render(self.l_full, ab[0], "np", guidance=guidance)


# --------------------------------------------------------------------------------------------------
# The evaluation
# --------------------------------------------------------------------------------------------------
def parse_counts(counts) -> list:
    """Hint counts -> sorted distinct ints in 0..MAX_HINTS; `EvaluationError` naming a bad one."""
    from hf_colorize.models.colorization.guidance_colorization import MAX_HINTS

    out = set()
    for c in counts:
        if isinstance(c, bool) or not isinstance(c, (int, np.integer)) or not 0 <= c <= MAX_HINTS:
            raise EvaluationError(f"hint count {c!r}: must be an integer in 0..{MAX_HINTS}")
        out.add(int(c))
    if not out:
        raise EvaluationError("no hint counts given")
    return sorted(out)


def _check_arguments(hint_counts, methods, reference, reference_pool, strengths, max_side):
    counts = None if hint_counts is None else parse_counts(hint_counts)
    methods = tuple(dict.fromkeys(methods))
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise EvaluationError(f"unknown hint method {unknown[0] if unknown else ''!r}; known: {', '.join(METHODS)}")
    if reference is not None and reference not in REFERENCE_MODES:
        raise EvaluationError(f"reference mode must be one of {', '.join(REFERENCE_MODES)}, got {reference!r}")
    if counts is None and reference is None:
        raise EvaluationError("nothing to evaluate: give hint counts, a reference mode or both")
    if reference == "other" and reference_pool is None:
        raise EvaluationError("reference mode 'other' needs a reference pool (a folder of photos named <label>_...)")
    strengths = [float(s) for s in strengths]
    if reference is not None and (not strengths or any(not (math.isfinite(s) and s >= 0) for s in strengths)):
        raise EvaluationError(f"reference strengths must be finite numbers >= 0, got {strengths}")
    if isinstance(max_side, bool) or int(max_side) != max_side or max_side < 0:
        raise EvaluationError(f"max side must be an integer >= 0, got {max_side}")
    return counts, methods, sorted(set(strengths))


def _model_name(model) -> str:
    if model is None:
        return "hf_colorize default"
    return os.fspath(model) if isinstance(model, (str, os.PathLike)) else type(getattr(model, "model", model)).__name__


def _score(metrics, pred: np.ndarray, truth: dict) -> None:
    """Score a rendered uint8 `(H, W, 3)` photo against the ground truth (as `protocol` scores crops)."""
    from hf_colorize.models.colorization.image_processing_colorization import rgb_to_lab

    pred_rgb = torch.from_numpy(pred).permute(2, 0, 1)[None]
    pred_ab = rgb_to_lab(pred_rgb.float() / 255.0)[:, 1:]
    metrics.update(pred_ab, truth["ab"], pred_rgb, truth["rgb"], truth["bins"])


def _scalars(metrics) -> dict:
    result = metrics.result()
    return {k: result[k] for k in SCALARS}


def evaluate_guidance(
    models=(None,),
    images=None,
    *,
    hint_counts: Optional[Sequence[int]] = HINT_COUNTS,
    methods: Sequence[str] = METHODS,
    reference: Optional[str] = None,
    reference_pool=None,
    reference_strengths: Sequence[float] = DEFAULT_STRENGTHS,
    max_side: int = DEFAULT_MAX_SIDE,
    seed: int = 0,
    split: str = "test",
    image_column: str = "image",
    limit: Optional[int] = None,
    network_size: Optional[int] = None,
    temperature: Optional[float] = None,
    decode_mode: Optional[str] = None,
    precision: Optional[str] = None,
    device=None,
    batch_size: int = 8,
    dataset_name: Optional[str] = None,
    progress: bool = False,
    warn: Optional[Callable[[str], None]] = None,
) -> dict:
    """Evaluate guidance (see the module docstring); returns a JSON-ready dict.

    models: model folders / Hub ids / loaded models / `Colorizer`s (None: the embedded default), one curve
    per model and method. images: as `protocol.evaluate_model`'s. `hint_counts` (None: no hint curves),
    `methods` ("model", "crude"), `reference` (None, "self" or "other", with `reference_pool` a folder),
    `reference_strengths`, `max_side`, `seed`. The colorization options apply to every model. Keys:
    "models", "dataset", "split", "num_images", "skipped", "protocol", "hints" and "reference" (None when
    not asked for); see docs/evaluation.md."""
    from tqdm.auto import tqdm

    from hf_colorize.common import DataSourceError, load_colorizer
    from hf_colorize.evaluation.metrics import AucAccumulator, ColorizationMetrics
    from hf_colorize.evaluation.protocol import _batched, _uses_split, check_run, iter_photos
    from hf_colorize.models.colorization.guidance_colorization import GuidanceError
    from hf_colorize.models.colorization.image_processing_colorization import rgb_to_lab

    if images is None:
        raise EvaluationError("no images given to evaluate")
    counts, methods, strengths = _check_arguments(hint_counts, methods, reference, reference_pool,
                                                  reference_strengths, max_side)
    network_size, options = check_run(network_size, batch_size, temperature=temperature, decode_mode=decode_mode,
                                      precision=precision, size=network_size)
    models = list(models) if isinstance(models, (list, tuple)) else [models]
    pool = ReferencePool(reference_pool) if reference == "other" else None
    colorizers, names = [], []
    for model in models:
        name = _model_name(model)
        colorizer = load_colorizer(model, **options, **({} if device is None else {"device": device}))
        try:  # a model that cannot take guidance says so before any photo is read
            colorizer.guidance(8, 8, hints=[(0, 0, (128, 128, 128))], reference=["#808080"])
        except GuidanceError as err:
            raise EvaluationError(f"{name}: {one_line(err)}") from None
        colorizers.append(colorizer)
        names.append(name if name not in names else f"{name} #{len(names) + 1}")

    new = ColorizationMetrics
    hint_metrics = {(m, meth): {k: new() for k in counts} for m in range(len(models)) for meth in methods} if counts else {}
    ref_metrics = {m: {"without": new(), **{s: new() for s in strengths}} for m in range(len(models))} if reference else {}
    nearest = AucAccumulator().nearest_bins
    stats = {"grayscale": 0, "undecodable": 0, "undecodable_keys": []}
    no_partner, partners, n_images, n_ref = [], {}, 0, 0
    bar = tqdm(total=limit, desc="evaluating guidance", unit="img", disable=not progress)
    try:
        photos = iter_photos(images, stats, split, image_column, warn)
        if limit is not None:
            photos = islice(photos, int(limit))
        with torch.inference_mode():
            for batch in _batched(photos, batch_size):
                items = []
                for key, im in batch:
                    rgb = resize_photo(im, max_side)
                    true_rgb = torch.from_numpy(rgb).permute(2, 0, 1)[None]
                    true_ab = rgb_to_lab(true_rgb.float() / 255.0)[:, 1:]
                    truth = {"rgb": true_rgb, "ab": true_ab, "bins": nearest(true_ab)}
                    hints = []
                    if counts:
                        patches = sample_patches(rgb.shape[1], rgb.shape[0], counts[-1], photo_rng(seed, key))
                        hints = patch_hints(true_ab[0], patches)
                    ref = None
                    if reference == "self":
                        ref = rgb
                    elif reference == "other":
                        found = pool.partner(key, photo_rng(seed, key, stream=1))
                        if found is None:
                            no_partner.append(str(key))
                        else:
                            partners[str(key)] = os.path.relpath(found[0], pool.folder)
                            ref = found[1]
                    n_images += 1
                    n_ref += ref is not None
                    if counts or ref is not None:
                        items.append((rgb, truth, hints, ref))
                bar.update(len(batch))
                if not items:
                    continue
                for m, colorizer in enumerate(colorizers):
                    try:
                        guided = GuidedPhoto.batch(colorizer, [it[0] for it in items])
                    except RuntimeError as err:  # e.g. out of memory
                        raise EvaluationError(f"{names[m]}: model failed: {one_line(err)}") from None
                    for photo, (_, truth, hints, ref) in zip(guided, items):
                        plain = photo.render(None) if (counts and 0 in counts) or ref is not None else None
                        for meth in methods if counts else ():
                            for k in counts:
                                if k == 0:
                                    pred = plain
                                elif meth == "model":
                                    pred = photo.render(photo.guidance(hints=hints[:k]))
                                else:
                                    pred = photo.render_crude(hints[:k])
                                _score(hint_metrics[m, meth][k], pred, truth)
                        if ref is not None:
                            _score(ref_metrics[m]["without"], plain, truth)
                            dist = colorizer.reference_distribution(ref)
                            for s in strengths:
                                pred = photo.render(photo.guidance(reference=dist, reference_strength=s))
                                _score(ref_metrics[m][s], pred, truth)
    except DataSourceError as err:
        raise EvaluationError(one_line(err)) from None
    finally:
        bar.close()
    if n_images == 0:
        raise EvaluationError(
            f"no colour images to evaluate ({stats['grayscale']} grayscale, {stats['undecodable']} undecodable skipped)")
    if reference == "other" and n_ref == 0:
        raise EvaluationError(f"no photo has a partner in the reference pool {shown(reference_pool)} (a colour photo "
                              f"whose file name has the same label, the part before the first '_'): {n_images} photos")

    out = {
        "mode": "guidance",
        "models": [],
        "dataset": dataset_name or (os.fspath(images) if isinstance(images, (str, os.PathLike)) else "images"),
        "split": split if _uses_split(images) else None,
        "num_images": n_images,
        "skipped": stats,
        "protocol": {
            "max_side": max_side, "seed": seed, "psnr": "8-bit RGB of the whole photo, mean over photos",
            "auc": "pixels pooled over the set, thresholds 0..150", "hue": "balanced hue accuracy (see metrics)",
            "hints": f"per photo one nested sequence: patch side uniform 1..{PATCH_SIDE_MAX} px, top-left corner "
                     "uniform where it fits, hint = the patch's mean ground-truth ab at its centre",
            "crude": f"logits + sum over hints of w * log(t + {CRUDE_FLOOR:g}), t = the hint's soft-encoded bins, "
                     f"w = exp(-d^2 / 2 {CRUDE_SIGMA_CELLS:g}^2) (d in output cells) * exp(-dL^2 / 2 "
                     f"{CRUDE_SIGMA_L:g}^2) (L units), on the 1/4-resolution logits",
        },
        "hints": None,
        "reference": None,
    }
    for name, colorizer in zip(names, colorizers):
        config = colorizer.model.config
        out["models"].append({
            "name": name, "network_size": colorizer.defaults["size"] or colorizer.image_processor.size,
            "temperature": colorizer.defaults["temperature"] or config.decode_temperature,
            "decode_mode": colorizer.defaults["decode_mode"] or config.decode_mode,
            "precision": colorizer.resolve_precision(), "hint_inputs": list(colorizer.hint_inputs),
        })
    if counts:
        curves = []
        for (m, meth), per_count in hint_metrics.items():
            rows = [_scalars(per_count[k]) for k in counts]
            curve = {"model": names[m], "method": meth, "label": f"{names[m]} ({METHOD_LABELS[meth]})",
                     **{key: [r[key] for r in rows] for key in SCALARS}}
            if counts[0] == 0:
                curve["psnr_gain"] = [p - rows[0]["psnr"] for p in curve["psnr"]]
            curves.append(curve)
        out["hints"] = {"counts": counts, "num_images": n_images, "curves": curves}
    if reference:
        out["reference"] = {
            "mode": reference, "pool": None if pool is None else pool.folder, "strengths": strengths,
            "num_images": n_ref, "no_partner": len(no_partner), "no_partner_keys": no_partner[:MAX_LISTED],
            "partners": partners if reference == "other" else None,
            "results": [{"model": names[m], "without": _scalars(per["without"]),
                         "with": [{"strength": s, **_scalars(per[s])} for s in strengths]}
                        for m, per in ref_metrics.items()],
        }
    return out


# --------------------------------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------------------------------
def format_guidance_table(results: dict) -> str:
    """The results as plain-text tables: PSNR (and its gain) and AuC per hint count; the reference rows."""
    lines = []
    hints = results.get("hints")
    if hints:
        counts = hints["counts"]
        width = max([len(c["label"]) for c in hints["curves"]] + [24]) + 2
        head = f"{'':<{width}}" + "".join(f"{k:>8}" for k in counts)
        for key, title, fmt in (("psnr", "PSNR dB", "{:>8.2f}"), ("psnr_gain", "PSNR gain over 0 hints, dB", "{:>+8.2f}"),
                                ("auc_raw", "AuC raw", "{:>8.3f}"), ("auc_rebalanced", "AuC rebalanced", "{:>8.3f}")):
            if key not in hints["curves"][0]:
                continue
            lines.append(f"{title} by number of hints ({hints['num_images']} photos, max side "
                         f"{results['protocol']['max_side']})")
            lines.append(head)
            lines += [f"{c['label']:<{width}}" + "".join(fmt.format(v) for v in c[key]) for c in hints["curves"]]
            lines.append("")
    ref = results.get("reference")
    if ref:
        cols = ("hue acc", "PSNR dB", "AuC raw", "AuC rebal")
        keys = ("hue_accuracy", "psnr", "auc_raw", "auc_rebalanced")
        lines.append(f"reference = {'the photo itself' if ref['mode'] == 'self' else 'another photo of its label'} "
                     f"({ref['num_images']} photos" + (f"; {ref['no_partner']} without a partner skipped" if
                                                      ref["mode"] == "other" else "") + ")")
        width = max([len(r["model"]) for r in ref["results"]] + [20]) + 2
        lines.append(f"{'':<{width}}{'strength':>10}" + "".join(f"{c:>11}" for c in cols))
        for r in ref["results"]:
            for label, row in [("none", r["without"])] + [(f"{w['strength']:g}", w) for w in r["with"]]:
                lines.append(f"{r['model']:<{width}}{label:>10}" + "".join(f"{row[k]:>11.3f}" for k in keys))
        lines.append("")
    skipped = results["skipped"]
    lines.append(f"{results['num_images']} colour photos; skipped {skipped['grayscale']} grayscale, "
                 f"{skipped['undecodable']} undecodable")
    return "\n".join(lines)


def plot_guidance(results: dict, path: str) -> None:
    """PNG: PSNR against the number of hints (one curve per model and method) and, with a reference mode,
    balanced hue accuracy against the reference strength (one curve per model)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hf_colorize.evaluation.protocol import _save

    hints, ref = results.get("hints"), results.get("reference")
    panels = [p for p in (hints and "hints", ref and "reference") if p]
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.2), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        if panel == "hints":
            for c in hints["curves"]:
                ax.plot(hints["counts"], c["psnr"], marker="o", label=c["label"],
                        linestyle="--" if c["method"] == "crude" else "-")
            ax.set_xscale("symlog", linthresh=1)
            ax.set_xticks(hints["counts"])
            ax.set_xticklabels([str(k) for k in hints["counts"]])
            ax.set_xlabel("number of ground-truth point hints")
            ax.set_ylabel("PSNR (dB)")
            ax.set_title(f"point hints (n = {hints['num_images']}, max side {results['protocol']['max_side']})")
        else:
            xs = [0.0] + [w["strength"] for w in ref["results"][0]["with"]]
            for r in ref["results"]:
                ax.plot(xs, [r["without"]["hue_accuracy"]] + [w["hue_accuracy"] for w in r["with"]], marker="o",
                        label=r["model"])
            ax.set_xlabel("reference strength (0 = no reference)")
            ax.set_ylabel("balanced hue accuracy")
            ax.set_title(f"reference = {'the photo itself' if ref['mode'] == 'self' else 'another photo'} "
                         f"(n = {ref['num_images']})")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    try:
        _save(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    finally:
        plt.close(fig)


__all__ = ["DEFAULT_MAX_SIDE", "DEFAULT_STRENGTHS", "GuidedPhoto", "HINT_COUNTS", "METHODS", "REFERENCE_MODES",
           "ReferencePool", "crude_hint_logits", "evaluate_guidance", "format_guidance_table", "parse_counts",
           "patch_hints", "photo_label", "photo_rng", "plot_guidance", "resize_photo", "sample_patches"]
