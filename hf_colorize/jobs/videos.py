"""Video archives: a folder of video files, one work unit per file (video i belongs to rank
i % world_size), each colorized by `video.colorize.colorize_video` (temporal mode, audio kept) into
`OUT/videos/<same relative name>`. The video is written under a temporary name and renamed; its sidecar
`OUT/state/video-00000.json` (stats, or the failure and its reason) is written after it, and a unit is
finished when its sidecar exists, so a rerun redoes at most the video a killed process was writing."""

import os

from hf_colorize.common import ColorizeError, one_line, write_json
from hf_colorize.jobs.shards import sidecar_path

VIDEOS_DIR = "videos"


def output_name(key: str) -> str:
    """The output's relative path: the source's, with `.mp4` added when its container cannot be written."""
    from hf_colorize.video.io import CONTAINERS

    return key if os.path.splitext(key)[1].lower() in CONTAINERS else key + ".mp4"


def run_videos(job, source, colorizer, ranks, out, on_failure=None) -> dict:
    from tqdm.auto import tqdm

    from hf_colorize.jobs.run import DEFAULT_CRF
    from hf_colorize.video.colorize import colorize_video

    mine = [i for i in range(len(source.paths)) if ranks.owns(i)]
    todo = [i for i in mine if not os.path.isfile(sidecar_path(out, i, "video"))]
    counts = {"done": 0, "failed": 0, "skipped": len(mine) - len(todo)}
    bar = tqdm(total=len(todo), unit="video", desc=f"rank {ranks.rank}" if ranks.world_size > 1 else "colorizing",
               position=ranks.rank, disable=not job.progress, dynamic_ncols=True)
    try:
        for index in todo:
            key, path = source.keys[index], source.paths[index]
            relative = f"{VIDEOS_DIR}/{output_name(key)}"
            target = os.path.join(out, *relative.split("/"))
            info = {"index": index, "key": key, "failures": [],
                    "written_by": {"rank": ranks.rank, "world_size": ranks.world_size}}
            try:
                os.makedirs(os.path.dirname(target), exist_ok=True)
                stats = colorize_video(path, target, model=colorizer, temporal=job.temporal is not False,
                                       batch_size=job.batch_size, overwrite=True,
                                       crf=DEFAULT_CRF if job.crf is None else job.crf)
                info.update(output=relative, frames=stats["frames"], fps=stats["fps"], audio=stats["audio"],
                            temporal=stats["temporal"], cuts=stats["cuts"], notes=stats["notes"])
                counts["done"] += 1
            except (ColorizeError, OSError) as err:  # an unreadable video costs that video only
                reason = one_line(err)
                info["failures"] = [{"index": index, "key": key, "reason": reason}]
                counts["failed"] += 1
                if on_failure is not None:
                    on_failure(key, reason)
            write_json(sidecar_path(out, index, "video"), info)  # after the video: sidecar => finished
            bar.update(1)
    finally:
        bar.close()
    return {**counts, "items": len(source.paths), "units": len(source.paths)}
