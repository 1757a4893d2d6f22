"""Where the end-to-end time goes: torch.profiler summaries of the reference and of our pipeline on one
photo (same seeded random ECCV16 weights), plus a coarse stage split of our path.

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 python benchmarks/profile_e2e.py [--size 768x512] [--precision bf16]

Single-threaded by default so the shares are not distorted by thread waits on a busy machine.
"""

import argparse
import os
import sys
import tempfile
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _profile(label, fn, rows):
    from torch.profiler import ProfilerActivity, profile

    fn()  # warm-up
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.process_time()
        fn()
        cpu = time.process_time() - start
    print(f"\n## {label}: {cpu:.3f} CPU s")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows, max_name_column_width=40))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", default="768x512")
    parser.add_argument("--precision", default="bf16")
    parser.add_argument("--rows", type=int, default=12)
    args = parser.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    from PIL import Image
    from transformers import pipeline

    import hf_colorize  # noqa: F401
    from bench_colorize import _color_photos
    from hf_colorize.export.eccv16 import convert_eccv16_state_dict
    from reference import make_reference_model, reference_colorize

    photos = _color_photos(4)
    ref = make_reference_model(photos)
    tmp = tempfile.mkdtemp(prefix="hfc-prof-")
    convert_eccv16_state_dict(ref.state_dict(), decode_mode="mean").save_pretrained(os.path.join(tmp, "m"))
    hf_colorize.ColorizationImageProcessor(size=256).save_pretrained(os.path.join(tmp, "m"))
    path = os.path.join(tmp, "photo.jpg")
    Image.open(photos[0]).convert("RGB").resize((w, h), Image.LANCZOS).save(path, quality=95)

    _profile(f"reference {w}x{h} fp32", lambda: reference_colorize(path, ref), args.rows)
    kwargs = {} if args.precision == "fp32" else {"precision": args.precision}
    pipe = pipeline("image-colorization", model=os.path.join(tmp, "m"), **kwargs)
    _profile(f"ours {w}x{h} {args.precision}", lambda: pipe(path), args.rows)

    # coarse stages of our path (CPU seconds, best of 3)
    proc = pipe.image_processor
    stages = {}

    def stage(name, fn):
        best = float("inf")
        for _ in range(3):
            t = time.process_time()
            out = fn()
            best = min(best, time.process_time() - t)
        stages[name] = best
        return out

    rgb = stage("decode file -> RGB tensor", lambda: proc.load_rgb(path))
    l_full = stage("full-res L", lambda: hf_colorize.models.colorization.image_processing_colorization.rgb_to_l(rgb))
    x = stage("resize L to 256", lambda: proc.resize_l(l_full)[None])
    out = stage("network + decode", lambda: pipe._forward({"pixel_values": x, "original_l": None}, precision=kwargs.get("precision")))
    stage("post-process (upsample ab, Lab->RGB, uint8 PIL)", lambda: proc.colorize_l(l_full, out["ab"][0]))
    total = sum(stages.values())
    print("\n## our stages (CPU s, best of 3)")
    for k, v in stages.items():
        print(f"  {k:50s} {v:7.3f}  {100 * v / total:5.1f}%")


if __name__ == "__main__":
    with torch.inference_mode():
        main()
