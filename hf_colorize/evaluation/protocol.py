"""Score a colorizer and two baselines on held-out colour photos (`hf-colorize evaluate`).

Protocol: each colour photo is centre-cropped to `size` x `size` (default 256) and quantized to 8-bit
RGB (the ground truth); the model sees the crop through the one inference path, `Colorizer`: `prepare`
at the model's own input size (`network_size`, default the model's; resized as the pipeline resizes a
photo when the two differ), `predict_ab`, and `render` (ab upsampled, joined with the L, gamut-mapped,
8-bit) exactly as the pipeline renders a photo; it is scored from that RGB image. Baselines: gray
(ab = 0) and one constant colour, the mean ab of the whole evaluation set (a second pass over a
temporary cache of the crops, so the mean is known before it is scored). Grayscale and undecodable
photos are skipped and counted. Metric definitions: `hf_colorize.evaluation.metrics`. Problems raise
`EvaluationError` (`hf_colorize.common`) with a one-line message.
"""

import glob
import json
import os
import tempfile
from typing import Callable, Iterable, Optional

import numpy as np
import torch

from hf_colorize.common import EvaluationError, atomic_path, one_line, shown

DEFAULT_CROP = 256  # the protocol's crop side, fixed so models with different input sizes compare
PREDICTORS = ("model", "gray", "mean_color")
LABELS = {"model": "model", "gray": "gray (ab = 0)", "mean_color": "mean colour"}
MAX_WARNINGS = 20


def _records(images: Iterable):
    """Paths, bytes, PIL images, arrays or stream records -> records `{"image": ..., "key": str}`."""
    from PIL import Image

    from hf_colorize.models.colorization.image_processing_colorization import load_rgb

    for i, item in enumerate(images):
        if isinstance(item, dict) and "image" in item:
            yield item
        elif isinstance(item, (str, os.PathLike)):
            yield {"image": {"path": os.fspath(item)}, "key": os.fspath(item)}
        elif isinstance(item, (bytes, bytearray)):
            yield {"image": {"bytes": bytes(item)}, "key": f"image {i}"}
        elif isinstance(item, Image.Image):
            yield {"image": item, "key": getattr(item, "filename", "") or f"image {i}"}
        else:  # numpy / torch arrays
            try:
                rgb = load_rgb(item)
            except ValueError:
                yield {"image": None, "key": f"image {i}"}
                continue
            arr = (rgb * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
            yield {"image": Image.fromarray(arr), "key": f"image {i}"}


def iter_photos(images, stats: dict, split: str = "test", image_column: str = "image",
                warn: Optional[Callable[[str], None]] = None):
    """Yield `(key, PIL RGB image)` for the colour photos of `images`, as decoded (upright).

    `images`: a source string (image folder, parquet shards, Hub dataset id; see `data.open_stream`) or an
    iterable of paths / bytes / PIL images / arrays. Grayscale and undecodable photos are skipped and
    counted in `stats` (keys "grayscale", "undecodable", "undecodable_keys"); `warn(message)` hears of the
    first `MAX_WARNINGS` undecodable ones.
    """
    from hf_colorize.training.data import decode_record_image, is_grayscale, open_stream

    if isinstance(images, (str, os.PathLike)):
        images = open_stream(os.fspath(images), split, image_column)
    for record in _records(images):
        key = str(record.get("key") or "")
        im = decode_record_image(record)
        if im is None:
            stats["undecodable"] += 1
            stats["undecodable_keys"].append(key)
            if warn is not None and len(stats["undecodable_keys"]) <= MAX_WARNINGS:
                warn(f"{key}: cannot decode, skipped")
            continue
        if is_grayscale(im):
            stats["grayscale"] += 1
            continue
        yield key, im.convert("RGB")


def iter_crops(images, size: int, stats: dict, split: str = "test", image_column: str = "image",
               warn: Optional[Callable[[str], None]] = None):
    """Yield `(key, uint8 RGB (3, size, size))` centre crops of the colour photos of `images` (see
    `iter_photos`)."""
    from hf_colorize.training.data import center_crop

    for key, im in iter_photos(images, stats, split, image_column, warn):
        crop = center_crop(im, size)
        yield key, torch.from_numpy(np.array(crop, dtype=np.uint8)).permute(2, 0, 1)


def _uses_split(images) -> bool:
    """Whether a source has splits: parquet shards and Hub datasets do, a plain image folder does not."""
    if not isinstance(images, (str, os.PathLike)):
        return False
    path = os.fspath(images)
    if os.path.isdir(path):
        return bool(glob.glob(os.path.join(path, "**", "*.parquet"), recursive=True))
    return True


def _batched(pairs, batch_size):
    buf = []
    for pair in pairs:
        buf.append(pair)
        if len(buf) == batch_size:
            yield buf
            buf = []
    if buf:
        yield buf


# --------------------------------------------------------------------------------------------------
# Scoring
# --------------------------------------------------------------------------------------------------
def _render(colorizer, l_chan, ab) -> torch.Tensor:
    """What the pipeline delivers: L (`B` of `(1, S, S)`) + ab `(B, 2, h, w)` -> uint8 RGB `(B, 3, S, S)`."""
    rgb = torch.stack([colorizer.render(l_chan[i], ab[i], "pt") for i in range(len(l_chan))])
    return (rgb * 255.0).round().to(torch.uint8)


def _score(metrics, colorizer, l_chan, true_ab, true_rgb, ab, true_bins):
    from hf_colorize.models.colorization.image_processing_colorization import rgb_to_lab

    pred_rgb = _render(colorizer, l_chan, ab)
    pred_ab = rgb_to_lab(pred_rgb.float() / 255.0)[:, 1:]
    metrics.update(pred_ab, true_ab, pred_rgb, true_rgb, true_bins)
    return pred_rgb


def _check_side(name: str, value) -> int:
    if isinstance(value, bool) or int(value) != value or value < 8 or value % 8:
        raise EvaluationError(f"{name} must be a positive multiple of 8, got {value}")
    return int(value)


def check_run(network_size: Optional[int], batch_size: int, **options):
    """The checks every evaluation makes before loading a model, each a one-line `EvaluationError`: the
    network size, the batch size and the `Colorizer` options. Returns `(network_size, options)`, normalized."""
    from hf_colorize import Colorizer

    if network_size is not None:
        network_size = _check_side("network size", network_size)
    if int(batch_size) < 1:
        raise EvaluationError(f"batch size must be at least 1, got {batch_size}")
    try:
        return network_size, Colorizer.options(**options)
    except (TypeError, ValueError) as err:
        raise EvaluationError(one_line(err)) from None


def evaluate_model(
    model_or_path=None,
    images=None,
    *,
    split: str = "test",
    image_column: str = "image",
    limit: Optional[int] = None,
    size: Optional[int] = None,
    network_size: Optional[int] = None,
    temperature: Optional[float] = None,
    decode_mode: Optional[str] = None,
    precision: Optional[str] = None,
    chromatic_fading: Optional[bool] = None,
    fading_eta: Optional[float] = None,
    device=None,
    batch_size: int = 8,
    image_processor=None,
    contact_sheet: Optional[str] = None,
    sheet_images: int = 4,
    dataset_name: Optional[str] = None,
    progress: bool = False,
    warn: Optional[Callable[[str], None]] = None,
) -> dict:
    """Evaluate a colorizer and the gray / mean-colour baselines; returns a JSON-ready dict.

    model_or_path: a `ColorizationModel`, a `Colorizer`, a folder or Hub id, or None for the embedded default
    (loaded by `common.load_colorizer`). images: a source string (folder, parquet shards, Hub dataset id)
    or an iterable (e.g. a list of file paths, PIL images or arrays). `limit` caps the number of scored
    colour photos. `size`: crop side (default 256); `network_size`: the model's input side (default the
    model's). `temperature`, `decode_mode`, `precision`, `chromatic_fading`, `fading_eta` (hue/chroma
    hypercolumn models): the `Colorizer` options (default the model's);
    `device`: where a loaded model runs. `contact_sheet`: write a PNG of input / prediction / ground truth
    for the first `sheet_images` photos. `progress`: a tqdm bar; `warn(message)`: told of skipped
    undecodable photos. Keys of the result: "results" (per predictor: auc_raw, auc_rebalanced, psnr,
    colorfulness, colorfulness_gt, colorfulness_ratio, hue_accuracy, ...), "curves", "num_images",
    "skipped", "mean_ab", "protocol".
    """
    from tqdm.auto import tqdm

    from hf_colorize import Colorizer
    from hf_colorize.common import DataSourceError, load_colorizer
    from hf_colorize.evaluation.metrics import MAX_THRESHOLD, ColorizationMetrics
    from hf_colorize.training.data import lab_batch

    if images is None:
        raise EvaluationError("no images given to evaluate")
    size = _check_side("size", DEFAULT_CROP if size is None else size)
    network_size, options = check_run(network_size, batch_size, temperature=temperature, decode_mode=decode_mode,
                                      precision=precision, chromatic_fading=chromatic_fading, fading_eta=fading_eta)
    colorizer = load_colorizer(model_or_path, image_processor, **({} if device is None else {"device": device}))
    if image_processor is not None and colorizer.image_processor is not image_processor:  # a given Colorizer
        colorizer = Colorizer(colorizer.model, image_processor, **colorizer.defaults)
    model, processor = colorizer.model, colorizer.image_processor
    options = {**colorizer.defaults, **options}
    network_size = network_size or _check_side("network size", options["size"] or processor.size)
    temperature = model.config.decode_temperature if options["temperature"] is None else options["temperature"]
    decode_mode = options["decode_mode"] or model.config.decode_mode
    fading = {k: options[k] for k in ("chromatic_fading", "fading_eta") if options.get(k) is not None}
    predict = {"temperature": temperature, "decode_mode": decode_mode, "precision": options["precision"],
               "seed": options["seed"], **fading}
    stats = {"grayscale": 0, "undecodable": 0, "undecodable_keys": []}
    metrics = {name: ColorizationMetrics() for name in PREDICTORS}
    ab_sum, n_pixels, n_images, samples = torch.zeros(2, dtype=torch.float64), 0, 0, []
    bar = tqdm(total=limit, desc="evaluating", unit="img", disable=not progress)

    def truth(crops):
        """uint8 crops -> (L (B, 1, S, S), true ab, their nearest bins) of the ground truth."""
        pixel_values, true_ab = lab_batch(crops, processor.l_cent, processor.l_norm)
        l_chan = pixel_values * processor.l_norm + processor.l_cent
        return l_chan, true_ab, metrics["model"].auc.nearest_bins(true_ab)

    with tempfile.TemporaryFile(prefix="hf-colorize-eval-") as cache, torch.inference_mode():
        # pass 1: model and gray baseline; cache the crops for the mean-colour pass
        try:
            crops_iter = iter_crops(images, size, stats, split, image_column, warn)
            if limit is not None:
                crops_iter = (c for c, _ in zip(crops_iter, range(int(limit))))
            for batch in _batched(crops_iter, batch_size):
                crops = torch.stack([c for _, c in batch])
                cache.write(crops.numpy().tobytes())
                l_chan, true_ab, true_bins = truth(crops)
                # the model: the crop as a photo through the Colorizer (8-bit, at the network size)
                prepared = [colorizer.prepare(np.ascontiguousarray(c.permute(1, 2, 0).numpy()), network_size)
                            for c in crops]
                ab = colorizer.predict_ab(torch.stack([p[1] for p in prepared]), **predict)
                pred = _score(metrics["model"], colorizer, [p[0] for p in prepared], true_ab, crops, ab, true_bins)
                _score(metrics["gray"], colorizer, l_chan, true_ab, crops, torch.zeros(len(batch), 2, 1, 1), true_bins)
                ab_sum += true_ab.double().sum(dim=(0, 2, 3))
                n_pixels += true_ab.shape[0] * true_ab.shape[2] * true_ab.shape[3]
                n_images += len(batch)
                samples += [(key, crop, p) for (key, crop), p in zip(batch, pred)][: max(0, sheet_images - len(samples))]
                bar.update(len(batch))
        except DataSourceError as err:
            raise EvaluationError(one_line(err)) from None
        finally:
            bar.close()
        if n_images == 0:
            raise EvaluationError(
                f"no colour images to evaluate ({stats['grayscale']} grayscale, {stats['undecodable']} undecodable skipped)"
            )
        # pass 2: the constant mean colour of the whole set
        mean_ab = (ab_sum / n_pixels).float()
        cache.seek(0)
        per_image = 3 * size * size
        while True:
            raw = cache.read(per_image * batch_size)
            if not raw:
                break
            crops = torch.from_numpy(np.frombuffer(raw, dtype=np.uint8).copy()).view(-1, 3, size, size)
            l_chan, true_ab, true_bins = truth(crops)
            const = mean_ab.view(1, 2, 1, 1).expand(crops.shape[0], 2, 1, 1)
            _score(metrics["mean_color"], colorizer, l_chan, true_ab, crops, const, true_bins)

    results = {name: m.result() for name, m in metrics.items()}
    curves = {"thresholds": list(range(MAX_THRESHOLD + 1))}
    for name, m in metrics.items():
        c = m.curves()
        curves[name] = {"raw": c["raw"], "rebalanced": c["rebalanced"]}
    model_name = model_or_path if isinstance(model_or_path, (str, os.PathLike)) else None
    if model_or_path is None:
        model_name = "hf_colorize default"
    out = {
        "model": os.fspath(model_name) if model_name is not None else type(model).__name__,
        "dataset": dataset_name or (os.fspath(images) if isinstance(images, (str, os.PathLike)) else "images"),
        "split": split if _uses_split(images) else None,
        "num_images": n_images,
        "num_pixels": n_pixels,
        "skipped": stats,
        "mean_ab": [round(float(v), 4) for v in mean_ab],
        "protocol": {
            "size": size, "network_size": network_size, "crop": "centre square", "temperature": temperature, "decode_mode": decode_mode,
            "auc_thresholds": [0, MAX_THRESHOLD], "rebalancing_bins": "ECCV16 313 ab bins",
            "hue": "true chroma > 20; correct within 30 deg with predicted chroma > 5; mean over 60-deg sectors",
            "psnr": "8-bit RGB, mean over images",
        },
        "results": results,
        "curves": curves,
    }
    precision = colorizer.resolve_precision(options["precision"])  # "auto" recorded as what it ran as
    if precision != "fp32":
        out["protocol"]["precision"] = precision
    out["protocol"].update(fading)
    if contact_sheet:
        write_contact_sheet(samples, contact_sheet)
    return out


# --------------------------------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------------------------------
def check_output(path, flag: str = "output") -> str:
    """Check, before any work, that a result file can be written to `path` (its folder exists and it is not
    a folder); `UsageError` naming the option if not."""
    from hf_colorize.common import UsageError

    path = os.fspath(path)
    parent = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise UsageError(f"{flag} {shown(path)}: is a folder")
    if not os.path.isdir(parent):
        raise UsageError(f"{flag} {shown(path)}: folder {shown(parent)} does not exist")
    return path


def _save(path, write) -> None:
    """Write via `write(tmp_path)` atomically (`common.atomic_path`); `EvaluationError` (one line) if it fails."""
    try:
        with atomic_path(path) as tmp:
            write(tmp)
    except OSError as err:
        raise EvaluationError(f"cannot write {shown(path)}: {one_line(err)}") from None


def write_json(results: dict, path: str) -> None:
    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)
            f.write("\n")

    _save(path, write)


def write_contact_sheet(samples, path: str, tile: int = 192) -> None:
    """PNG grid: one row per photo, columns input (its L) / prediction / ground truth."""
    from PIL import Image, ImageDraw

    if not samples:
        raise EvaluationError("no images for the contact sheet")
    head = 18
    sheet = Image.new("RGB", (3 * tile, head + len(samples) * tile), "white")
    draw = ImageDraw.Draw(sheet)
    for col, title in enumerate(("input", "prediction", "ground truth")):
        draw.text((col * tile + 4, 3), title, fill="black")
    for row, (_, truth, pred) in enumerate(samples):
        truth_im = Image.fromarray(truth.permute(1, 2, 0).numpy())
        tiles = (truth_im.convert("L").convert("RGB"), Image.fromarray(pred.permute(1, 2, 0).numpy()), truth_im)
        for col, im in enumerate(tiles):
            sheet.paste(im.resize((tile, tile), Image.BICUBIC), (col * tile, head + row * tile))
    _save(path, lambda tmp: sheet.save(tmp, format="PNG"))


def plot_auc_curves(results: dict, path: str) -> None:
    """PNG of the raw and rebalanced AuC curves (fraction within threshold vs threshold) of each predictor."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = results["curves"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, kind in zip(axes, ("raw", "rebalanced")):
        for name in PREDICTORS:
            auc = results["results"][name][f"auc_{kind}"]
            ax.plot(curves["thresholds"], curves[name][kind], label=f"{LABELS[name]} (AuC {auc:.3f})")
        ax.set_title(f"{kind} (n = {results['num_images']})")
        ax.set_xlabel("ab distance threshold")
        ax.set_xlim(0, curves["thresholds"][-1])
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
    axes[0].set_ylabel("fraction of pixels within threshold")
    fig.tight_layout()
    try:
        _save(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    finally:
        plt.close(fig)


def format_table(results: dict) -> str:
    """The results as a plain-text table (one row per predictor)."""
    cols = ("AuC raw", "AuC rebal", "PSNR dB", "colourful.", "ratio", "hue acc")
    lines = [f"{'':<16}" + "".join(f"{c:>11}" for c in cols)]
    for name in PREDICTORS:
        r = results["results"][name]
        vals = (r["auc_raw"], r["auc_rebalanced"], r["psnr"], r["colorfulness"], r["colorfulness_ratio"], r["hue_accuracy"])
        lines.append(f"{LABELS[name]:<16}" + "".join(f"{v:>11.3f}" for v in vals))
    skipped = results["skipped"]
    gt = results["results"]["model"]["colorfulness_gt"]
    size = results["protocol"]["size"]
    network = results["protocol"].get("network_size", size)
    crops = f"{size}px centre crops" + (f", network input {network}px" if network != size else "")
    lines.append(
        f"{results['num_images']} colour photos ({crops}), ground-truth colourfulness {gt:.2f}, mean ab "
        f"{results['mean_ab']}; skipped {skipped['grayscale']} grayscale, {skipped['undecodable']} undecodable"
    )
    return "\n".join(lines)


__all__ = ["DEFAULT_CROP", "EvaluationError", "LABELS", "PREDICTORS", "check_output", "evaluate_model", "format_table",
           "iter_crops", "iter_photos", "plot_auc_curves", "write_contact_sheet", "write_json"]
