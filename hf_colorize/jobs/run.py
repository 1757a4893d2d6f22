"""Colorize a whole dataset: SOURCE (image folder, parquet shards, Hub dataset, video folder) -> OUT
(parquet shards + manifest + dataset card, or colorized videos), on one process or many.

Work is cut into units that do not depend on the number of processes: shard i holds items
[i*S, (i+1)*S) of the source's global order and belongs to rank i % world_size (videos: one unit each).
Batches are formed inside a shard only, so every shard's rows and pixels are the same whatever the
number of processes. Rank, world size and device come from `accelerate.PartialState` (`accelerate
launch`, `torchrun`, or a plain single process). A finished shard is one whose parquet file exists
(written under a temporary name, renamed after its sidecar): a rerun of the same command skips it, so a
killed job resumes without losing or duplicating a row. A bad item is recorded with its reason and the
job goes on.
"""

import itertools
import os
import time
from dataclasses import dataclass
from typing import Callable, Optional

from hf_colorize.common import ColorizeError, InputImageError, UsageError, one_line
from hf_colorize.jobs import manifest as mf
from hf_colorize.jobs.shards import DATA_DIR, FORMATS, STATE_DIR, ShardWriter, encode, features, is_finished

DEFAULT_SHARD_SIZE = 256
DEFAULT_BATCH_SIZE = 8
DEFAULT_QUALITY = 95  # jpeg / webp
DEFAULT_CRF = 18


@dataclass
class DatasetJob:
    """What to colorize and how. Options left None take their defaults; image-only options (`format`,
    `quality`, `shard_size`) given for a video source, or video-only ones (`temporal`, `crf`) for an
    image source, are refused (`UsageError`) rather than ignored."""

    source: str
    output: str
    model: Optional[str] = None
    media: str = "auto"
    split: Optional[str] = None
    image_column: Optional[str] = None
    key_column: Optional[str] = None
    shard_size: Optional[int] = None
    batch_size: int = DEFAULT_BATCH_SIZE
    format: Optional[str] = None
    quality: Optional[int] = None
    temperature: Optional[float] = None
    decode_mode: Optional[str] = None
    size: Optional[int] = None
    precision: Optional[str] = None
    seed: Optional[int] = None
    device: Optional[str] = None
    decode_workers: int = 2
    temporal: Optional[bool] = None
    crf: Optional[int] = None
    progress: bool = False


def check_job(job: DatasetJob) -> None:
    """Values that are wrong whatever the source: `UsageError`."""
    if job.shard_size is not None and job.shard_size < 1:
        raise UsageError(f"--shard-size must be >= 1, got {job.shard_size}")
    if job.batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {job.batch_size}")
    if job.decode_workers < 0:
        raise UsageError(f"--decode-workers must be >= 0, got {job.decode_workers}")
    if job.format is not None and job.format not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}, got {job.format!r}")
    if job.quality is not None:
        if not 1 <= job.quality <= 100:
            raise UsageError(f"--quality must be in 1..100, got {job.quality}")
        if (job.format or "png") == "png":
            raise UsageError("--quality applies to --format jpeg or webp (png is lossless)")
    if job.crf is not None and not 0 <= job.crf <= 51:
        raise UsageError(f"--crf must be in 0..51, got {job.crf}")


def _check_media_options(job: DatasetJob, kind: str) -> None:
    if kind == "videos":
        given = [flag for flag, value in (("--format", job.format), ("--quality", job.quality),
                                          ("--shard-size", job.shard_size)) if value is not None]
        if given:
            raise UsageError(f"{' and '.join(given)} apply to images; a video source keeps one output video per file")
    else:
        given = [flag for flag, value in (("--no-temporal", job.temporal), ("--crf", job.crf)) if value is not None]
        if given:
            raise UsageError(f"{' and '.join(given)} apply to a folder of videos, not to images")


def job_settings(job: DatasetJob, source, colorizer) -> dict:
    """Everything that decides the output: compared on every rerun (the device and the number of
    processes are not in it: any may resume a job)."""
    settings = {
        "media": source.kind, "source": source.describe(), "batch_size": job.batch_size,
        "model": {"name": mf.model_name(job.model), "fingerprint": mf.model_fingerprint(colorizer.model)},
        "colorization": mf.colorization_settings(colorizer),
    }
    if source.kind == "videos":
        settings.update(temporal=job.temporal is not False, crf=DEFAULT_CRF if job.crf is None else job.crf)
    else:
        fmt = job.format or "png"
        settings.update(shard_size=job.shard_size or DEFAULT_SHARD_SIZE, format=fmt,
                        quality=None if fmt == "png" else job.quality or DEFAULT_QUALITY)
    return mf.normalized(settings)


def run_dataset_job(job: DatasetJob, on_failure: Optional[Callable[[str, str], None]] = None) -> dict:
    """Run `job` on this process (one rank of a launch, or alone). Every check runs before any work:
    `UsageError` (bad options, OUT a file / not writable / made with other settings), `DataSourceError`
    (SOURCE missing, empty, no such column), `ModelLoadError`. Bad items are recorded, never raised;
    `on_failure(key, reason)` is told of each. Returns this run's summary: `done`, `skipped` (already
    done), `failed` (all ranks; exact on rank 0, `is_main`), the manifest and the output folder."""
    from hf_colorize.common import load_colorizer, sweep_temporaries
    from hf_colorize.jobs.card import write_card
    from hf_colorize.jobs.ranks import current_ranks
    from hf_colorize.jobs.sources import open_source

    check_job(job)
    out = mf.check_output_dir(job.output)
    source = open_source(job.source, job.media, job.split, job.image_column, job.key_column, exclude=out)
    _check_media_options(job, source.kind)
    ranks = current_ranks(job.device)
    colorizer = load_colorizer(job.model, device=ranks.device, batch_size=job.batch_size, temperature=job.temperature,
                               decode_mode=job.decode_mode, size=job.size, seed=job.seed,
                               precision=job.precision)  # None: the Colorizer's "auto"
    settings = job_settings(job, source, colorizer)
    mf.check_settings(out, settings)  # same result on every rank: all stop, or none

    if ranks.is_main:
        for sub in (DATA_DIR, STATE_DIR) + (("videos",) if source.kind == "videos" else ()):
            os.makedirs(os.path.join(out, sub), exist_ok=True)
            sweep_temporaries(os.path.join(out, sub))  # what killed runs left (dead processes only)
        mf.write_settings(out, settings)
    ranks.barrier()

    start = time.perf_counter()
    if source.kind == "videos":
        from hf_colorize.jobs.videos import run_videos

        stats = run_videos(job, source, colorizer, ranks, out, on_failure)
    else:
        stats = run_images(job, source, colorizer, ranks, out, settings, on_failure)
    stats["seconds"] = time.perf_counter() - start
    every = ranks.gather(stats)  # also the final barrier: every rank has finished its units
    seconds = max(s["seconds"] for s in every)
    summary = {k: sum(s[k] for s in every) for k in ("done", "skipped", "failed")}
    summary.update(is_main=ranks.is_main, output=out, rank=ranks.rank, world_size=ranks.world_size,
                   seconds=seconds, items=every[0]["items"])
    if ranks.is_main:
        last_run = {"processes": ranks.world_size, "seconds": round(seconds, 3),
                    "images_per_second" if source.kind == "images" else "videos_per_second":
                        round(summary["done"] / seconds, 3) if seconds > 0 else None,
                    **{k: summary[k] for k in ("done", "skipped", "failed")}}
        if source.kind == "videos":
            units = [mf.read_json(mf.sidecar_path(out, i, "video")) for i in range(every[0]["units"])]
        else:
            units = mf.shard_infos(out, every[0]["units"])
        manifest = mf.build_manifest(out, settings, units, every[0]["items"], last_run, source.kind)
        summary["manifest_path"] = mf.write_manifest(out, manifest)
        write_card(out, manifest)
        summary["manifest"] = manifest
    ranks.close()
    return summary


# --------------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------------
def _pixels(payload, max_pixels: int):
    """A source item -> its decoded pixels (the guarded opener: size checked before decoding)."""
    from PIL import Image

    from hf_colorize.models.colorization.image_processing_colorization import load_pixels

    if isinstance(payload, dict):
        data, path = payload.get("bytes"), payload.get("path")
        if data:
            payload = data
        elif path and os.path.isfile(path):
            payload = path
        else:
            raise InputImageError("no image data in this row" if data is None else "empty image data")
    if payload is None:
        raise InputImageError("no image in this row")
    if not isinstance(payload, (str, bytes, bytearray, Image.Image)):
        raise InputImageError(f"unsupported image value ({type(payload).__name__})")
    return load_pixels(payload, max_pixels)


def _decoder(max_pixels: int):
    def decode(item):
        index, key, payload = item
        try:
            return index, key, _pixels(payload, max_pixels)
        except ColorizeError as err:
            return index, key, err
        except Exception as err:  # noqa: BLE001 - any decoder failure costs this item only
            return index, key, InputImageError(f"cannot decode image: {one_line(err)}")
    return decode


def run_images(job, source, colorizer, ranks, out, settings, on_failure=None) -> dict:
    """This rank's shards of an image source; returns its counts."""
    from tqdm.auto import tqdm

    from hf_colorize.hub.cards import public_name
    from hf_colorize.jobs.readahead import background, ordered_map

    size = settings["shard_size"]
    fmt, quality = settings["format"], settings["quality"]
    col = settings["colorization"]
    model = "hf-colorize default" if job.model is None else public_name(settings["model"]["name"])
    row_settings = {"model": model, "temperature": col["temperature"], "decode_mode": col["decode_mode"], "size": col["size"],
                    "precision": col["precision"]}
    schema = features({"model": "string", "temperature": "float64", "decode_mode": "string", "size": "int32",
                       "precision": "string"}).arrow_schema
    finished = {}  # shard -> finished when first looked at (only this rank writes its shards)

    def wanted(index: int) -> bool:
        shard = index // size
        if not ranks.owns(shard):
            return False
        if shard not in finished:
            finished[shard] = is_finished(out, shard)
        return not finished[shard]

    total = None
    if source.count is not None:  # an own-work total for the bar (streams: unknown until walked)
        shards = -(-source.count // size)
        total = sum(min(size, source.count - s * size) for s in range(shards)
                    if ranks.owns(s) and not is_finished(out, s))
    bar = tqdm(total=total, unit="img", desc=f"rank {ranks.rank}" if ranks.world_size > 1 else "colorizing",
               position=ranks.rank, disable=not job.progress, dynamic_ncols=True)
    counts = {"done": 0, "failed": 0}
    written_by = {"rank": ranks.rank, "world_size": ranks.world_size}  # in the sidecar, not in the rows
    depth = 2 * job.batch_size  # decoded items waiting for the network: the next batch and one more
    ext = FORMATS[fmt][1]
    max_pixels = colorizer.image_processor.max_pixels

    def fail(writer, index, key, reason):
        writer.fail(index, key, reason)
        counts["failed"] += 1
        bar.update(1)
        if on_failure is not None:
            on_failure(key, reason)

    def encode_row(item):
        (index, key), result = item
        if isinstance(result, Exception):
            return index, key, one_line(result)
        try:
            data = encode(result, fmt, quality)
        except Exception as err:  # noqa: BLE001 - e.g. webp's 16383-pixel limit: this item only
            return index, key, f"cannot encode as {fmt}: {one_line(err)}"
        return index, key, {"key": key, "index": index, "image": {"bytes": data, "path": os.path.splitext(key)[0] + ext},
                            "width": result.width, "height": result.height, **row_settings}

    walk = background(source.items(wanted), depth)  # the walk (file listing or record stream) in a thread
    decoded = ordered_map(_decoder(max_pixels), walk, job.decode_workers, depth)
    try:
        for shard, group in itertools.groupby(decoded, key=lambda item: item[0] // size):
            writer = ShardWriter(out, shard, schema)
            try:
                keys, seen = [], [0]

                def feed(group=group, writer=writer, keys=keys, seen=seen):
                    for index, key, pixels in group:
                        seen[0] += 1
                        if isinstance(pixels, Exception):
                            fail(writer, index, key, one_line(pixels))
                            continue
                        keys.append((index, key))
                        yield pixels

                results = ((keys[i], r) for i, r in colorizer.colorize_iter(feed(), batch_size=job.batch_size))
                for index, key, row in ordered_map(encode_row, results, 1, depth):  # encoding overlaps the network
                    if isinstance(row, str):
                        fail(writer, index, key, row)
                        continue
                    writer.add(row)
                    counts["done"] += 1
                    bar.update(1)
                writer.finish(first_index=shard * size, items=seen[0], written_by=written_by)
            except BaseException:
                writer.abort()
                raise
    finally:
        decoded.close()
        walk.close()
        bar.close()
    count = source.count
    units = -(-count // size)
    skipped = sum(min(size, count - s * size) for s in range(units) if ranks.owns(s) and finished.get(s))
    return {**counts, "skipped": skipped, "items": count, "units": units}
