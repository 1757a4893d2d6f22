"""Training data: streamed image sources -> batches of Lab tensors.

Sources (all streamed with `datasets`, nothing downloaded up front):
- a local image folder (files become the stream's shards),
- a folder or glob of parquet shards (e.g. written by `hf-colorize pack`),
- a Hub dataset id (e.g. an ImageNet-style dataset with an image column).

Images are decoded here, not by `datasets`, so a corrupt sample is skipped and counted instead of
killing the iterator. Grayscale photos carry no colour to learn from and are skipped and counted too.
"""

import glob
import io
import os
import random
import zlib
from dataclasses import dataclass, field
from typing import Iterator, Optional

import numpy as np
import torch
from PIL import Image, ImageOps

from .image_processing_colorization import DEFAULT_MAX_PIXELS, open_image, rgb_to_lab

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


class DataSourceError(ValueError):
    """A dataset source that cannot be streamed; the message is one line naming the cause."""


def list_image_files(folder: str) -> list:
    """Sorted image files directly inside `folder` (and its subfolders)."""
    out = []
    for root, _, files in os.walk(folder):
        out += [os.path.join(root, f) for f in files if f.lower().endswith(IMAGE_EXTENSIONS)]
    return sorted(out)


def _folder_records(paths):
    for path in paths:
        with open(path, "rb") as f:
            yield {"image": {"bytes": f.read(), "path": path}, "key": os.path.basename(path)}


def open_stream(source: str, split: str = "train", image_column: str = "image", streaming: bool = True):
    """Open `source` as a `datasets.IterableDataset` of records `{"image": {"bytes", "path"}, "key": str}`.

    Image decoding is disabled (`Image(decode=False)`), so callers decode (and skip) themselves.
    """
    import datasets

    parquet = []
    if os.path.isdir(source):
        parquet = sorted(glob.glob(os.path.join(source, "**", "*.parquet"), recursive=True))
        if not parquet:
            files = list_image_files(source)
            if not files:
                raise DataSourceError(f"{source}: folder contains no images or parquet shards")
            # one shard per file: sharding across processes/workers then splits files, never duplicates
            return datasets.IterableDataset.from_generator(_folder_records, gen_kwargs={"paths": files})
    elif source.endswith(".parquet") or "*" in source:
        parquet = sorted(glob.glob(source))
        if not parquet:
            raise DataSourceError(f"{source}: no files match")
    if parquet:
        split_files = [p for p in parquet if os.path.basename(p).startswith(split)]
        files = split_files or parquet
        ds = datasets.load_dataset("parquet", data_files={split: files}, split=split, streaming=streaming)
    else:
        if os.path.exists(source) or source.startswith((".", "/")):
            raise DataSourceError(f"{source}: not a folder of images or parquet shards")
        try:
            ds = datasets.load_dataset(source, split=split, streaming=streaming)
        except Exception as err:  # datasets raises many types (offline, missing, bad split); keep one line
            msg = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise DataSourceError(f"{source}: cannot open dataset (split {split!r}): {msg}") from None
    columns = ds.column_names
    if columns is None:  # features unknown until the first record: the stream checks the column then
        return ds
    if image_column not in columns:
        raise DataSourceError(f"{source}: no column {image_column!r} (columns: {', '.join(columns)}); use --image-column")
    ds = ds.cast_column(image_column, datasets.Image(decode=False))
    if image_column != "image":
        ds = ds.rename_column(image_column, "image")
    return ds


def decode_record_image(record, max_pixels: int = DEFAULT_MAX_PIXELS) -> Optional[Image.Image]:
    """Decode a stream record's image, upright (EXIF orientation applied), as RGB or L (L: grayscale,
    for the caller to count); None if it cannot be decoded or declares more than `max_pixels`."""
    img = record.get("image")
    try:
        if isinstance(img, Image.Image):
            im = img
        elif isinstance(img, dict) and (img.get("bytes") or img.get("path")):
            # the same guarded opener as inference: size checked before decoding (decompression bombs)
            im = open_image(img.get("bytes") or img["path"], max_pixels)
        else:
            return None
        im = ImageOps.exif_transpose(im)
        if im.mode in ("L", "LA", "1", "I", "I;16", "F"):
            return im.convert("L")
        return im.convert("RGB") if im.mode != "RGB" else im
    except Exception:  # any decoder failure means a bad sample, which we skip and count
        return None


def is_grayscale(im: Image.Image, tol: float = 2.0) -> bool:
    """True when the image carries no colour: mode L, or RGB whose channels agree within `tol`."""
    if im.mode != "RGB":
        return True
    small = np.asarray(im.resize((64, 64)), dtype=np.int16)
    spread = small.max(axis=2) - small.min(axis=2)
    return float(spread.mean()) < tol


def random_resized_crop(im: Image.Image, size: int, rng: random.Random, scale=(0.35, 1.0), ratio=(3 / 4, 4 / 3), flip=True) -> Image.Image:
    """Crop a random area fraction `scale` with aspect `ratio`, resize to `size`x`size`, random h-flip."""
    w, h = im.size
    area = w * h
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1])))
        cw, ch = int(round((target * aspect) ** 0.5)), int(round((target / aspect) ** 0.5))
        if 0 < cw <= w and 0 < ch <= h:
            x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
            break
    else:
        cw = ch = min(w, h)
        x, y = (w - cw) // 2, (h - ch) // 2
    out = im.resize((size, size), Image.BICUBIC, box=(x, y, x + cw, y + ch))
    if flip and rng.random() < 0.5:
        out = out.transpose(Image.FLIP_LEFT_RIGHT)
    return out


def center_crop(im: Image.Image, size: int) -> Image.Image:
    """Resize the short side to `size` and take the central square (evaluation)."""
    w, h = im.size
    s = min(w, h)
    x, y = (w - s) // 2, (h - s) // 2
    return im.resize((size, size), Image.BICUBIC, box=(x, y, x + s, y + s))


@dataclass
class StreamStats:
    """Counts of what the stream yielded and skipped (per process)."""

    seen: int = 0
    yielded: int = 0
    undecodable: int = 0
    grayscale: int = 0
    skipped_keys: list = field(default_factory=list)

    def as_dict(self):
        return {"seen": self.seen, "yielded": self.yielded, "undecodable": self.undecodable, "grayscale": self.grayscale}


class ColorizationStream:
    """Endless, resumable stream of augmented RGB crops for one process.

    Each epoch reshuffles the source (buffer shuffle seeded by `seed + epoch`); the process keeps only
    its share (`datasets.distributed.split_dataset_by_node`: whole shards when they divide evenly,
    else every `world_size`-th record, so no sample is duplicated or dropped across ranks). Augmentation
    randomness derives from (seed, epoch, position) alone, so resuming at a saved `(epoch, position)`
    reproduces the uninterrupted run exactly.
    """

    def __init__(self, source, split="train", image_column="image", crop_size=176, seed=0,
                 rank=0, world_size=1, shuffle_buffer=256, train=True, skip_gray=True):
        self.dataset = open_stream(source, split, image_column)
        self.image_column = image_column
        self.crop_size, self.seed, self.rank, self.world_size = crop_size, seed, rank, world_size
        self.shuffle_buffer, self.train, self.skip_gray = shuffle_buffer, train, skip_gray
        self.epoch, self.position = 0, 0  # position = raw records consumed by this rank in this epoch
        self.stats = StreamStats()

    def state_dict(self):
        return {"epoch": self.epoch, "position": self.position, "stats": self.stats.as_dict()}

    def load_state_dict(self, state):
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        for k, v in state.get("stats", {}).items():
            setattr(self.stats, k, v)

    def _epoch_records(self, epoch):
        from datasets.distributed import split_dataset_by_node

        ds = self.dataset
        if self.train and self.shuffle_buffer > 1:
            ds = ds.shuffle(seed=self.seed + epoch, buffer_size=self.shuffle_buffer)
        if self.world_size > 1:
            ds = split_dataset_by_node(ds, rank=self.rank, world_size=self.world_size)
        return iter(ds)

    def __iter__(self) -> Iterator[dict]:
        """Yield `{"rgb": uint8 tensor (3, S, S), "key": str}` forever (train) or once (eval)."""
        while True:
            records = self._epoch_records(self.epoch)
            for _ in range(self.position):  # resume: skip raw records already consumed (cheap, undecoded)
                next(records, None)
            produced = False
            for record in records:
                if "image" not in record:
                    if self.image_column not in record:
                        raise DataSourceError(f"no column {self.image_column!r} in the stream (columns: {', '.join(record)})")
                    record["image"] = record[self.image_column]
                self.position += 1
                self.stats.seen += 1
                im = decode_record_image(record)
                key = str(record.get("key") or (record["image"] or {}).get("path") or self.stats.seen)
                if im is None:
                    self.stats.undecodable += 1
                    self.stats.skipped_keys.append(key)
                    continue
                if self.skip_gray and is_grayscale(im):
                    self.stats.grayscale += 1
                    continue
                if self.train:
                    rng = random.Random(zlib.crc32(f"{self.seed}/{self.epoch}/{self.rank}/{self.position}".encode()))
                    im = random_resized_crop(im.convert("RGB"), self.crop_size, rng)
                else:
                    im = center_crop(im.convert("RGB"), self.crop_size)
                self.stats.yielded += 1
                produced = True
                yield {"rgb": torch.from_numpy(np.array(im, dtype=np.uint8)).permute(2, 0, 1), "key": key}
            if not self.train:
                return
            if not produced and self.position == 0:
                raise DataSourceError("the stream yielded no usable colour images")
            self.epoch, self.position = self.epoch + 1, 0


def batches(stream: Iterator[dict], batch_size: int) -> Iterator[dict]:
    """Group stream items into `{"rgb": uint8 (B, 3, S, S), "keys": [...]}` batches."""
    buf = []
    for item in stream:
        buf.append(item)
        if len(buf) == batch_size:
            yield {"rgb": torch.stack([b["rgb"] for b in buf]), "keys": [b["key"] for b in buf]}
            buf = []
    if buf:
        yield {"rgb": torch.stack([b["rgb"] for b in buf]), "keys": [b["key"] for b in buf]}


def lab_batch(rgb_uint8: torch.Tensor, l_cent: float = 50.0, l_norm: float = 100.0):
    """uint8 RGB `(B, 3, S, S)` -> (`pixel_values` `(B, 1, S, S)` normalized L, `labels` ab `(B, 2, S, S)`),
    converted in one vectorized torch call for the whole batch."""
    lab = rgb_to_lab(rgb_uint8.float() / 255.0)
    return (lab[:, :1] - l_cent) / l_norm, lab[:, 1:]


# --------------------------------------------------------------------------------------------------
# `hf-colorize pack`: image folder -> parquet shards
# --------------------------------------------------------------------------------------------------
def pack_folder(folder, out_dir, max_side=256, shard_size=500, quality=92, holdout_every=0, progress=True) -> dict:
    """Pack the images of `folder` into parquet shards `train-XXXXX-of-YYYYY.parquet` (and `test-...`
    when `holdout_every` = N > 0 holds out every N-th sorted file), re-encoded as JPEG with the long side
    at most `max_side` (0 keeps the size). Undecodable files are skipped and counted. Each shard is written
    to a temporary name and renamed, so an interrupted pack never leaves a half-written shard."""
    import datasets
    from tqdm.auto import tqdm

    files = list_image_files(folder)
    if not files:
        raise DataSourceError(f"{folder}: no images found")
    splits = {"train": [], "test": []}
    for i, f in enumerate(files):
        splits["test" if holdout_every and i % holdout_every == holdout_every - 1 else "train"].append(f)
    os.makedirs(out_dir, exist_ok=True)
    features = datasets.Features({"image": datasets.Image(), "key": datasets.Value("string")})
    report = {"undecodable": [], "written": {}}
    bar = tqdm(total=len(files), desc="packing", disable=not progress)
    for split, paths in splits.items():
        if not paths:
            continue
        n_shards = (len(paths) + shard_size - 1) // shard_size
        for s in range(n_shards):
            rows = {"image": [], "key": []}
            for path in paths[s * shard_size:(s + 1) * shard_size]:
                bar.update(1)
                try:
                    with Image.open(path) as im:
                        im.load()
                        im = im.convert("RGB") if im.mode not in ("RGB", "L") else im.copy()
                except Exception:  # skip and report any undecodable file
                    report["undecodable"].append(path)
                    continue
                if max_side and max(im.size) > max_side:
                    im.thumbnail((max_side, max_side), Image.BICUBIC)
                buf = io.BytesIO()
                im.save(buf, format="JPEG", quality=quality)
                rows["image"].append({"bytes": buf.getvalue(), "path": os.path.basename(path)})
                rows["key"].append(os.path.relpath(path, folder))
            name = os.path.join(out_dir, f"{split}-{s:05d}-of-{n_shards:05d}.parquet")
            datasets.Dataset.from_dict(rows, features=features).to_parquet(name + ".tmp")
            os.replace(name + ".tmp", name)
            report["written"][split] = report["written"].get(split, 0) + len(rows["key"])
    bar.close()
    return report


def add_arguments(parser):
    parser.add_argument("folder", help="folder of images")
    parser.add_argument("out_dir", help="where to write the parquet shards")
    parser.add_argument("--max-side", type=int, default=256, help="downscale so the long side is at most this (0: keep)")
    parser.add_argument("--shard-size", type=int, default=500, help="images per shard")
    parser.add_argument("--quality", type=int, default=92, help="JPEG quality of the re-encoded images")
    parser.add_argument("--holdout-every", type=int, default=0, help="hold out every N-th file as the test split")


def run(args) -> int:
    import sys

    try:
        report = pack_folder(args.folder, args.out_dir, args.max_side, args.shard_size, args.quality, args.holdout_every)
    except (DataSourceError, OSError) as err:
        print(f"hf-colorize: error: {err}", file=sys.stderr)
        return 1
    for path in report["undecodable"]:
        print(f"hf-colorize: warning: {path}: cannot decode, skipped", file=sys.stderr)
    print(", ".join(f"{k}: {v} images" for k, v in report["written"].items()) + f" -> {args.out_dir}")
    return 0
