"""Training data: streamed image sources -> batches of Lab tensors.

Sources (all streamed with `datasets`, nothing downloaded up front):
- a local image folder (files become the stream's shards),
- a folder or glob of parquet shards (e.g. written by `hf-colorize pack`),
- a Hub dataset id (e.g. an ImageNet-style dataset with an image column).

Images are decoded here, not by `datasets`, so a corrupt sample is skipped and counted instead of
killing the iterator. Grayscale photos carry no colour to learn from and are skipped and counted too.
"""

import contextlib
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

from hf_colorize.common import (
    IMAGE_EXTENSIONS,
    ColorizeError,
    MAX_PIXELS,
    DataSourceError,
    InputImageError,
    UsageError,
    atomic_path,
    progress_bars_off,
    one_line,
    shown,
    walk_files,
)
from hf_colorize.models.colorization.image_processing_colorization import open_image, rgb_to_lab

__all__ = [
    "IMAGE_EXTENSIONS", "DataSourceError", "list_image_files", "open_stream", "decode_image", "decode_record_image",
    "is_grayscale", "random_resized_crop", "center_crop", "StreamStats", "ColorizationStream", "batches", "lab_batch",
    "pack_folder",
]


def list_image_files(folder: str) -> list:
    """Sorted image files inside `folder` and its subfolders: the names `common.is_image_file` accepts
    (the extensions every command uses, .jfif and .avif included; hidden files and folders skipped)."""
    return walk_files(folder)


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
        if os.path.exists(source):
            raise DataSourceError(f"{source}: not a folder of images or parquet shards")
        if source.startswith((".", "/", "~")) or source.strip("/").count("/") > 1:  # a path: Hub ids are user/name
            raise DataSourceError(f"{source}: no such folder (nor a Hub dataset id)")
        try:
            ds = datasets.load_dataset(source, split=split, streaming=streaming)
        except Exception as err:  # datasets raises many types (offline, missing, bad split); keep one line
            raise DataSourceError(f"{source}: cannot open dataset (split {split!r}): {one_line(err)}") from None
    columns = ds.column_names
    if columns is None:  # features unknown until the first record: the stream checks the column then
        return ds
    if image_column not in columns:
        raise DataSourceError(f"{source}: no column {image_column!r} (columns: {', '.join(columns)}); use --image-column")
    ds = ds.cast_column(image_column, datasets.Image(decode=False))
    if image_column != "image":
        ds = ds.rename_column(image_column, "image")
    return ds


def decode_image(source, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode an image (path, bytes or PIL image) upright (EXIF orientation applied), as RGB or L (L:
    grayscale). Raises `InputImageError` naming the cause; the size is checked before decoding
    (decompression bombs), with the same guarded opener as inference."""
    try:
        im = source if isinstance(source, Image.Image) else open_image(source, max_pixels)
        im = ImageOps.exif_transpose(im)
        if im.mode in ("L", "LA", "1", "I", "I;16", "F"):
            return im.convert("L")
        return im.convert("RGB") if im.mode != "RGB" else im
    except InputImageError:
        raise
    except Exception as err:  # any decoder failure (PIL raises many types) means a bad image
        raise InputImageError(f"cannot decode image: {one_line(err)}") from None


def decode_record_image(record, max_pixels: int = MAX_PIXELS) -> Optional[Image.Image]:
    """Decode a stream record's image (see `decode_image`); None if it cannot be decoded or declares
    more than `max_pixels` (the stream skips and counts such samples)."""
    img = record.get("image")
    if isinstance(img, dict) and (img.get("bytes") or img.get("path")):
        img = img.get("bytes") or img["path"]
    elif not isinstance(img, Image.Image):
        return None
    try:
        return decode_image(img, max_pixels)
    except InputImageError:
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


MIN_SIDE = 32  # shorter sides below this are too small to crop from ("tiny": skipped and counted)


@dataclass
class StreamStats:
    """Counts of what the stream yielded and skipped (per process)."""

    seen: int = 0
    yielded: int = 0
    undecodable: int = 0
    grayscale: int = 0
    tiny: int = 0
    skipped_keys: list = field(default_factory=list)

    def as_dict(self):
        return {"seen": self.seen, "yielded": self.yielded, "undecodable": self.undecodable, "grayscale": self.grayscale,
                "tiny": self.tiny}


class ColorizationStream:
    """Endless, resumable stream of augmented RGB crops for one process.

    Each epoch reshuffles the source (buffer shuffle seeded by `seed + epoch`); the process keeps only
    its share (`datasets.distributed.split_dataset_by_node`: whole shards when they divide evenly,
    else every `world_size`-th record, so no sample is duplicated or dropped across ranks). Augmentation
    randomness derives from (seed, epoch, position) alone, so resuming at a saved `(epoch, position)`
    reproduces the uninterrupted run exactly.

    Decoding and cropping run in `torch.utils.data.DataLoader` (in this process for `num_workers` 0,
    else in that many worker processes). This process reads the raw records (bytes, cheap) in stream
    order and the DataLoader deals them out to its workers as the "indices" of a map-style dataset
    (`_DecodeRecords`), returning the crops in that order. The stream is therefore the same, item for
    item, for any number of workers (a run may resume with another number), and any number works with
    any count of shards.
    """

    def __init__(self, source, split="train", image_column="image", crop_size=176, seed=0,
                 rank=0, world_size=1, shuffle_buffer=256, train=True, skip_gray=True, num_workers=0, prefetch=32):
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
            raise UsageError(f"num_workers must be an integer >= 0, got {num_workers!r}")
        self.dataset = open_stream(source, split, image_column)
        self.image_column = image_column
        self.crop_size, self.seed, self.rank, self.world_size = crop_size, seed, rank, world_size
        self.shuffle_buffer, self.train, self.skip_gray = shuffle_buffer, train, skip_gray
        self.num_workers, self.prefetch = num_workers, max(1, int(prefetch))
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

    def _raw(self, epoch, position) -> Iterator[tuple]:
        """(record, epoch, position after it) for every raw record from (`epoch`, `position`) on, undecoded;
        forever (train) or to the end of the epoch (eval)."""
        while True:
            records = self._epoch_records(epoch)
            for _ in range(position):  # resume: skip raw records already consumed (cheap, undecoded)
                next(records, None)
            any_record = position > 0
            for record in records:
                any_record = True
                position += 1
                yield record, epoch, position
            if not self.train:
                return
            if not any_record:
                raise DataSourceError("the stream holds no records")
            epoch, position = epoch + 1, 0

    def _item(self, record, epoch, position) -> dict:
        """One raw record -> {"epoch", "position", "key", "skip": None or why, "rgb": crop or None}."""
        if "image" not in record:
            if self.image_column not in record:
                raise DataSourceError(f"no column {self.image_column!r} in the stream (columns: {', '.join(record)})")
            record["image"] = record[self.image_column]
        image = record["image"]
        key = str(record.get("key") or (image.get("path") if isinstance(image, dict) else None) or f"record {position}")
        out = {"epoch": epoch, "position": position, "key": key, "skip": None, "rgb": None}
        im = decode_record_image(record)
        if im is None:
            out["skip"] = "undecodable"
        elif self.skip_gray and is_grayscale(im):
            out["skip"] = "grayscale"
        elif self.train and min(im.size) < MIN_SIDE:
            out["skip"] = "tiny"
        else:
            if self.train:
                rng = random.Random(zlib.crc32(f"{self.seed}/{epoch}/{self.rank}/{position}".encode()))
                im = random_resized_crop(im.convert("RGB"), self.crop_size, rng)
            else:
                im = center_crop(im.convert("RGB"), self.crop_size)
            out["rgb"] = torch.from_numpy(np.array(im, dtype=np.uint8)).permute(2, 0, 1)
        return out

    def _items(self) -> Iterator[dict]:
        """`_item` of every raw record from the current state on, in stream order, decoded by the DataLoader."""
        extra = {"prefetch_factor": self.prefetch} if self.num_workers else {}
        loader = torch.utils.data.DataLoader(_DecodeRecords(self), batch_size=None, num_workers=self.num_workers,
                                             sampler=_RawRecords(self, self.epoch, self.position), **extra)
        with worker_deaths_in_one_line(self.num_workers > 0):
            yield from loader

    def __iter__(self) -> Iterator[dict]:
        """Yield `{"rgb": uint8 tensor (3, S, S), "key": str}` forever (train) or once (eval)."""
        items = self._items()
        epoch_start = (self.epoch, self.position, self.stats.yielded)
        for item in items:
            if "error" in item:  # raised in a worker: the same one line here
                raise DataSourceError(item["error"])
            if item["epoch"] != self.epoch:  # an epoch ended; one that started at 0 must have given something
                if epoch_start[1] == 0 and self.stats.yielded == epoch_start[2]:
                    raise DataSourceError(f"the stream yielded no usable colour images ({self._skipped()})")
                epoch_start = (item["epoch"], 0, self.stats.yielded)
            self.epoch, self.position = item["epoch"], item["position"]
            self.stats.seen += 1
            if item["skip"]:
                setattr(self.stats, item["skip"], getattr(self.stats, item["skip"]) + 1)
                if item["skip"] == "undecodable":
                    self.stats.skipped_keys.append(item["key"])
                continue
            self.stats.yielded += 1
            yield {"rgb": item["rgb"], "key": item["key"]}

    def _skipped(self) -> str:
        s = self.stats
        return f"{s.seen} records: {s.undecodable} undecodable, {s.grayscale} grayscale, {s.tiny} tiny"


@contextlib.contextmanager
def worker_deaths_in_one_line(workers: bool):
    """Raise a DataLoader worker's death inside the block as one-line `DataSourceError`; anything else as it is.

    torch reports a death as a RuntimeError, where the loader is read or (from its SIGCHLD handler)
    anywhere in the training step; a worker that died after queueing an item leaves that item's shared
    memory without a sender, and the loader then fails on the connection instead."""
    try:
        yield
    except (RuntimeError, ConnectionError, EOFError) as err:
        if isinstance(err, RuntimeError) and "DataLoader worker" in str(err):
            why = one_line(err)
        elif workers and isinstance(err, (ConnectionError, EOFError)):
            why = f"its connection closed: {one_line(err)}"
        else:
            raise
        raise DataSourceError(f"a data worker died ({why}); the run can resume from its last checkpoint "
                              "(run the same command again)") from None


class _RawRecords:
    """The DataLoader's "sampler": the raw records of `stream._raw`, read in this process."""

    def __init__(self, stream, epoch, position):
        self.stream, self.epoch, self.position = stream, epoch, position

    def __iter__(self):
        return self.stream._raw(self.epoch, self.position)


class _DecodeRecords(torch.utils.data.Dataset):
    """What a DataLoader worker computes for one raw record: `stream._item` (errors as one-line items, so
    the main process raises them as they are, not as a worker traceback)."""

    def __init__(self, stream):
        self.stream = stream

    def __getitem__(self, raw):
        try:
            return self.stream._item(*raw)
        except ColorizeError as err:
            return {"error": one_line(err)}
        except Exception as err:  # noqa: BLE001 - anything else in a worker: named, in one line
            info = torch.utils.data.get_worker_info()
            where = f"data worker {info.id}" if info is not None else "data decoding"
            return {"error": f"{where}: {type(err).__name__}: {one_line(err)}"}


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
# Packing an image folder into parquet shards (`hf-colorize pack`)
# --------------------------------------------------------------------------------------------------
SHARD_PATTERN = "{split}-{index:05d}-of-{count:05d}.parquet"


def _existing_shards(out_dir) -> list:
    return sorted(glob.glob(os.path.join(glob.escape(os.fspath(out_dir)), "*.parquet")))


def check_pack_arguments(folder, out_dir, max_side=256, shard_size=500, quality=92, holdout_every=0,
                         overwrite=False, validation_every=0) -> None:
    """What `pack_folder` can refuse before reading any image: `UsageError` (a bad value, an output
    that is a file or already holds shards) or `DataSourceError` (no such input folder)."""
    if not os.path.isdir(folder):
        raise DataSourceError(f"{shown(folder)}: " + ("not a folder" if os.path.exists(folder) else "no such folder"))
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise UsageError(f"{shown(out_dir)}: exists and is not a folder")
    if max_side < 0:
        raise UsageError(f"max_side must be >= 0 (0 keeps the size), got {max_side}")
    if shard_size < 1:
        raise UsageError(f"shard_size must be >= 1, got {shard_size}")
    if not 1 <= quality <= 100:
        raise UsageError(f"quality must be in 1..100, got {quality}")
    if holdout_every < 0 or holdout_every == 1:
        raise UsageError(f"holdout_every must be 0 (no test split) or >= 2 (1 would hold out every image), got {holdout_every}")
    if validation_every < 0 or validation_every == 1:
        raise UsageError(f"validation_every must be 0 (no validation split) or >= 2, got {validation_every}")
    if not overwrite and os.path.isdir(out_dir) and _existing_shards(out_dir):
        raise UsageError(f"{shown(out_dir)}: already holds parquet shards (their count may differ, and a stream "
                         "reads every shard of the folder); use another folder or --overwrite to replace them")


def pack_folder(folder, out_dir, max_side=256, shard_size=500, quality=92, holdout_every=0, progress=None,
                overwrite=False, validation_every=0) -> dict:
    """Pack the images of `folder` into parquet shards `train-XXXXX-of-YYYYY.parquet` (and `test-...`
    when `holdout_every` = N > 0 holds out every N-th sorted file, `validation-...` when
    `validation_every` = M > 0 sets aside every M-th file that is not held out, for choosing settings
    without touching the test photos), re-encoded as JPEG (upright: EXIF
    orientation applied) with the long side at most `max_side` (0 keeps the size). Undecodable files are
    skipped and reported. Each shard is written under a temporary name and renamed (`common.atomic_path`),
    so an interrupted pack never leaves a half-written shard; with `overwrite`, the folder's other
    `.parquet` files (an earlier pack's) are removed once the new shards are complete.

    progress: a tqdm bar (None: only when stderr is a terminal). Returns `{"written": {split: images},
    "undecodable": [path, ...], "causes": {path: one-line cause}, "shards": [path, ...]}`.
    Raises `UsageError`/`DataSourceError` (see `check_pack_arguments`)."""
    import datasets
    from datasets.utils import logging as ds_logging
    from tqdm.auto import tqdm

    folder, out_dir = os.fspath(folder), os.fspath(out_dir)
    check_pack_arguments(folder, out_dir, max_side, shard_size, quality, holdout_every, overwrite, validation_every)
    files = list_image_files(folder)
    if not files:
        raise DataSourceError(f"{shown(folder)}: no images found")
    splits = {"train": [], "test": [], "validation": []}
    for i, f in enumerate(files):
        # the test rule is the one earlier packs used, so a folder's test split never changes
        if holdout_every and i % holdout_every == holdout_every - 1:
            splits["test"].append(f)
        elif validation_every and i % validation_every == 0:
            splits["validation"].append(f)
        else:
            splits["train"].append(f)
    os.makedirs(out_dir, exist_ok=True)
    old_shards = set(_existing_shards(out_dir))
    features = datasets.Features({"image": datasets.Image(), "key": datasets.Value("string")})
    report = {"undecodable": [], "causes": {}, "written": {}, "shards": []}
    with tqdm(total=len(files), desc="packing", disable=None if progress is None else not progress) as bar:
        for split, paths in splits.items():
            if not paths:
                continue
            n_shards = (len(paths) + shard_size - 1) // shard_size
            for s in range(n_shards):
                rows = {"image": [], "key": []}
                for path in paths[s * shard_size:(s + 1) * shard_size]:
                    bar.update(1)
                    try:
                        im = decode_image(path)
                    except InputImageError as err:  # skipped and reported; the pack goes on
                        report["undecodable"].append(path)
                        report["causes"][path] = one_line(err)
                        continue
                    if max_side and max(im.size) > max_side:
                        im.thumbnail((max_side, max_side), Image.BICUBIC)
                    buf = io.BytesIO()
                    im.save(buf, format="JPEG", quality=quality)
                    rows["image"].append({"bytes": buf.getvalue(), "path": os.path.basename(path)})
                    rows["key"].append(os.path.relpath(path, folder))
                name = os.path.join(out_dir, SHARD_PATTERN.format(split=split, index=s, count=n_shards))
                try:
                    with atomic_path(name) as tmp, progress_bars_off(ds_logging):  # ours is the one bar
                        datasets.Dataset.from_dict(rows, features=features).to_parquet(tmp)
                except OSError as err:
                    raise ColorizeError(f"cannot write shard {shown(name)}: {err.strerror or one_line(err)}") from None
                report["shards"].append(name)
                report["written"][split] = report["written"].get(split, 0) + len(rows["key"])
    for stale in sorted(old_shards - set(report["shards"])):  # only reached with overwrite
        os.remove(stale)
    return report
