"""`hf-colorize evaluate`: score a colorizer and two baselines on held-out colour photos.

Protocol: each colour photo is centre-cropped to `size` x `size` (default 256) and quantized to 8-bit
RGB (the ground truth); the model sees its L channel at the model's own input size (resized as the
pipeline resizes a photo when the two differ); its output is rendered exactly as the pipeline renders it (ab
upsampled, joined with the L, gamut-mapped, 8-bit) and scored from that RGB image. Baselines: gray
(ab = 0) and one constant colour, the mean ab of the whole evaluation set (a second pass over a
temporary cache of the crops, so the mean is known before it is scored). Grayscale and undecodable
photos are skipped and counted. Metric definitions: `hf_colorize.metrics`.
"""

import contextlib
import glob
import json
import os
import sys
import tempfile
from typing import Iterable, Optional

import numpy as np
import torch

DEFAULT_CROP = 256  # the protocol's crop side, fixed so models with different input sizes compare
PREDICTORS = ("model", "gray", "mean_color")
LABELS = {"model": "model", "gray": "gray (ab = 0)", "mean_color": "mean colour"}
MAX_WARNINGS = 20


class EvaluationError(ValueError):
    """Evaluation cannot proceed; the message is one line naming the cause."""


# --------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def quiet_weight_loading():
    """Hide transformers' "Loading weights" bar (noise on stderr for our small models), then restore it."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def load_model(model_or_path=None, image_processor=None):
    """(model, image_processor) from a model object, a folder / Hub id, or None (the embedded default)."""
    import hf_colorize
    from hf_colorize import ColorizationImageProcessor, ColorizationModel

    if isinstance(model_or_path, torch.nn.Module):
        model = model_or_path
        processor = image_processor or ColorizationImageProcessor(size=model.config.image_size)
        return model.eval(), processor
    path = os.fspath(model_or_path) if model_or_path is not None else hf_colorize.DEFAULT_MODEL
    try:
        with quiet_weight_loading():
            model = ColorizationModel.from_pretrained(path, dtype=torch.float32)
    except Exception as err:  # transformers raises OSError/ValueError/EnvironmentError variants
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise EvaluationError(f"cannot load model {path}: {first}") from None
    if image_processor is None:
        try:
            image_processor = ColorizationImageProcessor.from_pretrained(path)
        except OSError:  # no preprocessor_config.json: the defaults are the model's own
            image_processor = ColorizationImageProcessor(size=model.config.image_size)
    return model.eval(), image_processor


def _records(images: Iterable):
    """Paths, bytes, PIL images, arrays or stream records -> records `{"image": ..., "key": str}`."""
    from PIL import Image

    from .image_processing_colorization import load_rgb

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


def iter_crops(images, size: int, stats: dict, split: str = "test", image_column: str = "image"):
    """Yield `(key, uint8 RGB (3, size, size))` centre crops of the colour photos of `images`.

    `images`: a source string (image folder, parquet shards, Hub dataset id; see `data.open_stream`) or an
    iterable of paths / bytes / PIL images / arrays. Grayscale and undecodable photos are skipped and
    counted in `stats` (keys "grayscale", "undecodable", "undecodable_keys").
    """
    from .data import center_crop, decode_record_image, is_grayscale, open_stream

    if isinstance(images, (str, os.PathLike)):
        images = open_stream(os.fspath(images), split, image_column)
    for record in _records(images):
        key = str(record.get("key") or "")
        im = decode_record_image(record)
        if im is None:
            stats["undecodable"] += 1
            stats["undecodable_keys"].append(key)
            if len(stats["undecodable_keys"]) <= MAX_WARNINGS:
                print(f"hf-colorize: warning: {key}: cannot decode, skipped", file=sys.stderr)
            continue
        if is_grayscale(im):
            stats["grayscale"] += 1
            continue
        crop = center_crop(im.convert("RGB"), size)
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
def _render(processor, l_chan: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
    """What the pipeline delivers: L `(B, 1, S, S)` + ab `(B, 2, h, w)` -> uint8 RGB `(B, 3, S, S)`."""
    rgb = torch.stack([processor.colorize_l(l_chan[i], ab[i], output_type="pt") for i in range(l_chan.shape[0])])
    return (rgb * 255.0).round().to(torch.uint8)


def _score(metrics, processor, l_chan, true_ab, true_rgb, ab, true_bins):
    from .image_processing_colorization import rgb_to_lab

    pred_rgb = _render(processor, l_chan, ab)
    pred_ab = rgb_to_lab(pred_rgb.float() / 255.0)[:, 1:]
    metrics.update(pred_ab, true_ab, pred_rgb, true_rgb, true_bins)
    return pred_rgb


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
    batch_size: int = 8,
    image_processor=None,
    contact_sheet: Optional[str] = None,
    sheet_images: int = 4,
    dataset_name: Optional[str] = None,
    progress: bool = False,
) -> dict:
    """Evaluate a colorizer and the gray / mean-colour baselines; returns a JSON-ready dict.

    model_or_path: a `ColorizationModel`, a folder or Hub id, or None for the embedded default.
    images: a source string (folder, parquet shards, Hub dataset id) or an iterable (e.g. a list of file
    paths, PIL images or arrays). `limit` caps the number of scored colour photos. `size`: crop side (default
    256); `network_size`: the model's input side (default the image processor's). `contact_sheet`: write a PNG of input / prediction /
    ground truth for the first `sheet_images` photos. Keys of the result: "results" (per predictor:
    auc_raw, auc_rebalanced, psnr, colorfulness, colorfulness_gt, colorfulness_ratio, hue_accuracy, ...),
    "curves", "num_images", "skipped", "mean_ab", "protocol".
    """
    from tqdm.auto import tqdm

    from .data import DataSourceError, lab_batch
    from .metrics import MAX_THRESHOLD, ColorizationMetrics

    if images is None:
        raise EvaluationError("no images given to evaluate")
    model, processor = load_model(model_or_path, image_processor)
    size, network_size = int(size or DEFAULT_CROP), int(network_size or processor.size)
    for name, value in (("size", size), ("network size", network_size)):
        if value < 8 or value % 8:
            raise EvaluationError(f"{name} must be a positive multiple of 8, got {value}")
    temperature = model.config.decode_temperature if temperature is None else float(temperature)
    decode_mode = decode_mode or model.config.decode_mode
    if not temperature > 0:
        raise EvaluationError(f"temperature must be > 0, got {temperature}")
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    stats = {"grayscale": 0, "undecodable": 0, "undecodable_keys": []}
    metrics = {name: ColorizationMetrics() for name in PREDICTORS}
    ab_sum, n_pixels, n_images, samples = torch.zeros(2, dtype=torch.float64), 0, 0, []
    bar = tqdm(total=limit, desc="evaluating", unit="img", disable=None if progress else True)  # None: only on a terminal

    def prepare(crops):
        pixel_values, true_ab = lab_batch(crops, processor.l_cent, processor.l_norm)
        l_chan = pixel_values * processor.l_norm + processor.l_cent
        return pixel_values, l_chan, true_ab, metrics["model"].auc.nearest_bins(true_ab)

    with tempfile.TemporaryFile(prefix="hf-colorize-eval-") as cache, torch.inference_mode():
        # pass 1: model and gray baseline; cache the crops for the mean-colour pass
        try:
            crops_iter = iter_crops(images, size, stats, split, image_column)
            if limit is not None:
                crops_iter = (c for c, _ in zip(crops_iter, range(int(limit))))
            for batch in _batched(crops_iter, batch_size):
                crops = torch.stack([c for _, c in batch])
                cache.write(crops.numpy().tobytes())
                pixel_values, l_chan, true_ab, true_bins = prepare(crops)
                if network_size != size:
                    pixel_values = torch.stack([processor.network_input(c.float() / 255.0, network_size) for c in crops])
                out = model(pixel_values=pixel_values.to(device, dtype), temperature=temperature, decode_mode=decode_mode)
                pred = _score(metrics["model"], processor, l_chan, true_ab, crops, out.ab.float().cpu(), true_bins)
                _score(metrics["gray"], processor, l_chan, true_ab, crops, torch.zeros(len(batch), 2, 1, 1), true_bins)
                ab_sum += true_ab.double().sum(dim=(0, 2, 3))
                n_pixels += true_ab.shape[0] * true_ab.shape[2] * true_ab.shape[3]
                n_images += len(batch)
                samples += [(key, crop, p) for (key, crop), p in zip(batch, pred)][: max(0, sheet_images - len(samples))]
                bar.update(len(batch))
        except DataSourceError as err:
            raise EvaluationError(str(err)) from None
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
            _, l_chan, true_ab, true_bins = prepare(crops)
            const = mean_ab.view(1, 2, 1, 1).expand(crops.shape[0], 2, 1, 1)
            _score(metrics["mean_color"], processor, l_chan, true_ab, crops, const, true_bins)
    bar.close()

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
    if contact_sheet:
        write_contact_sheet(samples, contact_sheet)
    return out


# --------------------------------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------------------------------
def _atomic_target(path: str) -> str:
    path = os.fspath(path)
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise EvaluationError(f"{path}: folder {parent} does not exist")
    return path


def _save_atomic(path: str, write) -> None:
    """Write via `write(tmp_path)` to a temporary name beside `path`, then rename (never half-written)."""
    path = _atomic_target(path)
    ext = os.path.splitext(path)[1]
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=ext, dir=os.path.dirname(os.path.abspath(path)))
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_json(results: dict, path: str) -> None:
    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)
            f.write("\n")

    _save_atomic(path, write)


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
    _save_atomic(path, lambda tmp: sheet.save(tmp, format="PNG"))


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
        _save_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
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


# --------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------
def add_arguments(parser):
    parser.add_argument("--model", default=None, help="model folder or Hub id (default: the embedded default model)")
    parser.add_argument("--dataset", required=True, help="image folder, parquet shards (folder or glob) or Hub dataset id")
    parser.add_argument("--split", default="test", help="dataset split (default: test; ignored for an image folder)")
    parser.add_argument("--image-column", default="image")
    parser.add_argument("--limit", type=int, default=None, help="score at most N colour photos")
    parser.add_argument("--size", type=int, default=None, help=f"crop side (default: {DEFAULT_CROP})")
    parser.add_argument("--network-size", type=int, default=None, help="the model's input side (default: the model's processor)")
    parser.add_argument("--temperature", type=float, default=None, help="annealed-mean temperature (default: the model's)")
    parser.add_argument("--decode", default=None, choices=["annealed_mean", "mode", "mean", "median", "sample"])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--json", default=None, metavar="OUT", help="write the results as JSON")
    parser.add_argument("--plot", default=None, metavar="OUT.png", help="write the AuC curves as a PNG")
    parser.add_argument("--contact-sheet", default=None, metavar="OUT.png", help="write input / prediction / truth for a few photos")
    parser.add_argument("--sheet-images", type=int, default=4, help="photos on the contact sheet")


def run(args) -> int:
    if args.limit is not None and args.limit < 1:
        print(f"hf-colorize: error: --limit must be >= 1, got {args.limit}", file=sys.stderr)
        return 2
    if args.batch_size < 1:
        print(f"hf-colorize: error: --batch-size must be >= 1, got {args.batch_size}", file=sys.stderr)
        return 2
    try:
        for out in (args.json, args.plot, args.contact_sheet):  # fail before the work, not after
            if out:
                _atomic_target(out)
        results = evaluate_model(
            args.model, args.dataset, split=args.split, image_column=args.image_column, limit=args.limit,
            size=args.size, network_size=args.network_size, temperature=args.temperature, decode_mode=args.decode, batch_size=args.batch_size,
            contact_sheet=args.contact_sheet, sheet_images=args.sheet_images, dataset_name=args.dataset, progress=True,
        )
        print(format_table(results))
        if args.json:
            write_json(results, args.json)
        if args.plot:
            plot_auc_curves(results, args.plot)
    except (EvaluationError, OSError) as err:
        print(f"hf-colorize: error: {err}", file=sys.stderr)
        return 1
    return 0
