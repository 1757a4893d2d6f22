"""What a dataset job reads: an image folder, parquet shards or a Hub dataset (streamed), or a folder
of videos, as items in one global order that does not depend on the number of processes.

- Image folder: its image files sorted by relative path; key = the relative path. A rank reads only
  the files of its own shards.
- Parquet shards / Hub dataset: the stream's order (`training.data.open_stream`, image decoding
  disabled); key = `--key-column`, else a `key` column, else the image's stored file name, else the row
  number. Every rank walks the whole undecoded record stream and decodes only the records of its own
  shards: skipping a record costs reading it, never decoding it.
- Video folder: its video files sorted by relative path, one work unit each.
"""

import glob
import os
from dataclasses import dataclass, field
from typing import Callable, Iterator, List, Optional, Tuple

from hf_colorize.common import DataSourceError, UsageError, is_image_file, one_line, shown, walk_files

#: Video files a folder source expands to (.gif counts as an image: `common.IMAGE_EXTENSIONS`).
VIDEO_EXTENSIONS = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".avi", ".webm", ".mpg", ".mpeg", ".ts", ".mts",
                              ".m2ts", ".wmv", ".flv", ".3gp", ".ogv"})
MEDIA = ("auto", "images", "videos")
STREAM_OPTIONS = ("split", "image_column", "key_column")  # meaningful for parquet / Hub sources only

Item = Tuple[int, str, object]  # (global index, key, payload: a file path or the stream's image value)


def is_video_file(name: str) -> bool:
    base = os.path.basename(name)
    return os.path.splitext(base)[1].lower() in VIDEO_EXTENSIONS and not base.startswith(".")


def _key(path: str, folder: str) -> str:
    return os.path.relpath(path, folder).replace(os.sep, "/")


@dataclass
class FileSource:
    """An image or video folder: `paths` in the global order, `keys` their relative paths."""

    kind: str  # "images" or "videos"
    root: str
    paths: List[str]
    keys: List[str] = field(default_factory=list)

    def __post_init__(self):
        self.keys = [_key(p, self.root) for p in self.paths]

    @property
    def count(self) -> Optional[int]:
        return len(self.paths)

    def describe(self) -> dict:
        return {"type": f"{self.kind[:-1]} folder", "path": self.root}

    def items(self, want: Callable[[int], bool]) -> Iterator[Item]:
        """The items whose index `want` accepts (nothing is read here: the payload is the path)."""
        for index, (path, key) in enumerate(zip(self.paths, self.keys)):
            if want(index):
                yield index, key, path


@dataclass
class StreamSource:
    """Parquet shards or a Hub dataset, streamed; `count` is known once `items` has walked it all."""

    source: str
    dataset: object  # datasets.IterableDataset
    split: str
    image_column: str
    key_column: Optional[str]
    kind: str = "images"
    count: Optional[int] = None

    def describe(self) -> dict:
        local = os.path.exists(self.source) or glob.has_magic(self.source)
        return {"type": "parquet" if local else "hub", "path": os.path.abspath(self.source) if local else self.source,
                "split": self.split, "image_column": self.image_column, "key_column": self.key_column}

    def _key(self, record: dict, index: int) -> str:
        value = None
        if self.key_column is not None:
            value = record.get(self.key_column)
        elif "key" in record:
            value = record.get("key")
        else:
            image = self._image(record)
            value = image.get("path") if isinstance(image, dict) else None
        return str(index) if value is None or value == "" else str(value)

    def _image(self, record: dict):
        return record["image"] if "image" in record else record.get(self.image_column)

    def items(self, want: Callable[[int], bool]) -> Iterator[Item]:
        index = -1
        records = iter(self.dataset)
        while True:
            try:
                record = next(records)
            except StopIteration:
                break
            except Exception as err:  # noqa: BLE001 - e.g. the network, mid-stream: one line; finished shards stay
                raise DataSourceError(f"{self.source}: reading row {index + 1} failed: {one_line(err)}; "
                                      "run the same command again to resume") from None
            index += 1
            if want(index):
                yield index, self._key(record, index), self._image(record)
        self.count = index + 1


def _check_stream_columns(ds, source: str, image_column: str, key_column: Optional[str]):
    """The key column exists; unknown features (some Hub sets): checked on the first record instead.
    Also refuses an empty stream. Returns the stream restricted to the columns a job reads."""
    columns = ds.column_names
    if columns is not None:
        if key_column is not None and key_column not in columns:
            raise DataSourceError(f"{source}: no column {key_column!r} (columns: {', '.join(columns)}); use --key-column")
        keep = [c for c in ("image", key_column, "key") if c is not None and c in columns]
        ds = ds.select_columns(list(dict.fromkeys(keep)))
    first = next(iter(ds), None)
    if first is None:
        raise DataSourceError(f"{source}: holds no rows")
    for column, flag in ((image_column, "--image-column"), (key_column, "--key-column")):
        if column is not None and column not in first and not (column == image_column and "image" in first):
            raise DataSourceError(f"{source}: no column {column!r} (columns: {', '.join(first)}); use {flag}")
    return ds


def open_source(source, media: str = "auto", split: Optional[str] = None, image_column: Optional[str] = None,
                key_column: Optional[str] = None, exclude: Optional[str] = None):
    """SOURCE -> a `FileSource` (image or video folder) or a `StreamSource`. `exclude`: a folder not to
    list (the job's output, when it lies inside SOURCE). Raises `DataSourceError` (missing, empty, no
    such column) or `UsageError` (options that do not fit the source) with one line, reading no image."""
    from hf_colorize.training.data import open_stream

    if media not in MEDIA:
        raise UsageError(f"--media must be one of {', '.join(MEDIA)}, got {media!r}")
    source = os.fspath(source)
    parquet = []
    if os.path.isdir(source):
        parquet = walk_files(source, lambda f: f.endswith(".parquet") and not f.startswith("."), exclude)
        if not parquet:
            given = [f"--{o.replace('_', '-')}" for o, v in zip(STREAM_OPTIONS, (split, image_column, key_column))
                     if v is not None]
            if given:
                raise UsageError(f"{' and '.join(given)} apply to parquet or Hub sources, not to the folder {shown(source)}")
            images = [] if media == "videos" else walk_files(source, is_image_file, exclude)
            videos = [] if media == "images" else walk_files(source, is_video_file, exclude)
            if images and videos:
                raise UsageError(f"{shown(source)}: holds {len(images)} images and {len(videos)} videos; "
                                 "choose one with --media images or --media videos")
            if not images and not videos:
                what = {"images": "images", "videos": "videos"}.get(media, "images, videos or parquet shards")
                raise DataSourceError(f"{shown(source)}: folder holds no {what}")
            root = os.path.abspath(source)
            if videos:
                return FileSource("videos", root, [os.path.abspath(p) for p in videos])
            return FileSource("images", root, [os.path.abspath(p) for p in images])
    if media == "videos":
        raise UsageError(f"--media videos needs a folder of video files, not {shown(source)}")
    if parquet and exclude and _inside(exclude, source):
        raise UsageError(f"--output {shown(exclude)} lies inside the parquet source {shown(source)}, so its shards "
                         "would be read as input; choose an output folder outside it")
    split, image_column = split or "train", image_column or "image"
    # open_stream checks existence, the image column (when the features are known) and disables decoding
    ds = open_stream(source, split, image_column)
    ds = _check_stream_columns(ds, source, image_column, key_column)
    return StreamSource(source, ds, split, image_column, key_column)


def _inside(path: str, folder: str) -> bool:
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)
