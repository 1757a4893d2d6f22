"""Output shards: fixed work units of `shard_size` items (shard i = items [i*S, (i+1)*S)), written as
`OUT/data/shard-00000.parquet` under a temporary name and renamed, after their sidecar
`OUT/state/shard-00000.json` (counts and failures). So "the parquet file exists" means "the shard is
finished", on every rerun and whatever the number of processes."""

import io
import json
import os
from typing import Optional

from hf_colorize.common import atomic_path, write_json

DATA_DIR = "data"
STATE_DIR = "state"
SHARD_NAME = "shard-{index:05d}"
FORMATS = {"png": ("PNG", ".png"), "jpeg": ("JPEG", ".jpg"), "webp": ("WEBP", ".webp")}
FLUSH_BYTES = 64 << 20  # a parquet row group per ~64 MB of encoded images: memory stays bounded


def shard_path(out_dir, index: int) -> str:
    return os.path.join(os.fspath(out_dir), DATA_DIR, SHARD_NAME.format(index=index) + ".parquet")


def sidecar_path(out_dir, index: int, prefix: str = "shard") -> str:
    return os.path.join(os.fspath(out_dir), STATE_DIR, f"{prefix}-{index:05d}.json")


def is_finished(out_dir, index: int) -> bool:
    return os.path.isfile(shard_path(out_dir, index))


def read_json(path) -> Optional[dict]:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def features(settings_columns: dict):
    """The rows' `datasets.Features`: the image in the `Image` layout ({"bytes", "path"}), so
    `load_dataset("parquet", ...)` returns PIL images."""
    import datasets

    value = datasets.Value
    return datasets.Features({
        "key": value("string"), "index": value("int64"), "image": datasets.Image(),
        "width": value("int32"), "height": value("int32"),
        **{name: value(kind) for name, kind in settings_columns.items()},
    })


def encode(image, fmt: str, quality: Optional[int]) -> bytes:
    """A PIL image as `fmt` ("png", "jpeg", "webp") bytes."""
    pil_format, _ = FORMATS[fmt]
    buf = io.BytesIO()
    image.save(buf, format=pil_format, **({"quality": quality} if quality is not None and fmt != "png" else {}))
    return buf.getvalue()


class ShardWriter:
    """Write one shard: `add(row)` per colorized image, `fail(...)` per failed item, then `finish()`
    (sidecar, then the parquet renamed into place) or `abort()` (nothing left under a final name)."""

    def __init__(self, out_dir, index: int, schema):
        import pyarrow.parquet as pq

        self.out_dir, self.index, self.schema = os.fspath(out_dir), index, schema
        self._atomic = atomic_path(shard_path(self.out_dir, index))
        self._tmp = self._atomic.__enter__()
        try:
            self._writer = pq.ParquetWriter(self._tmp, schema)
        except BaseException as err:
            self._atomic.__exit__(type(err), err, None)
            raise
        self._rows, self._bytes = [], 0
        self.rows = 0
        self.failures = []

    def add(self, row: dict) -> None:
        self._rows.append(row)
        self._bytes += len(row["image"]["bytes"])
        self.rows += 1
        if self._bytes >= FLUSH_BYTES:
            self._flush()

    def fail(self, index: int, key: str, reason: str) -> None:
        self.failures.append({"index": index, "key": key, "reason": reason})

    def _flush(self) -> None:
        import pyarrow as pa

        if self._rows:
            self._writer.write_table(pa.Table.from_pylist(self._rows, schema=self.schema))
        self._rows, self._bytes = [], 0

    def finish(self, first_index: int, items: int, **extra) -> dict:
        self._flush()
        self._writer.close()
        info = {"shard": self.index, "file": f"{DATA_DIR}/{SHARD_NAME.format(index=self.index)}.parquet",
                "first_index": first_index, "items": items, "rows": self.rows,
                "failures": sorted(self.failures, key=lambda f: f["index"]), **extra}
        write_json(sidecar_path(self.out_dir, self.index), info)  # before the rename: parquet => sidecar
        atomic, self._atomic = self._atomic, None
        atomic.__exit__(None, None, None)
        return info

    def abort(self) -> None:
        if self._atomic is not None:
            try:
                self._writer.close()
            except Exception:  # noqa: BLE001 - the temporary is removed anyway
                pass
            atomic, self._atomic = self._atomic, None
            atomic.__exit__(RuntimeError, RuntimeError("aborted"), None)
