"""Throughput of `hf-colorize colorize-dataset` on 1 and 2 processes (one compute thread each).

Runs the same job (the embedded default model unless --model) over N photos (the shared ImageNet
samples when ../shared/data is there, else scikit-image's bundled photos) as one plain process and as
`torchrun --nproc_per_node 2`, with OMP_NUM_THREADS=1, each into a fresh output folder. Prints, per run,
images/s of the work phase (from the manifest: after start-up and model loading, until the last rank is
done) and of the whole command (wall clock, start-up included), the scaling ratio, whether both runs
wrote the same rows, and the machine.

    python benchmarks/dataset_benchmark.py                 # 64 photos, shard 8, batch 4
    python benchmarks/dataset_benchmark.py --photos 80 --batch-size 8
"""

import argparse
import glob
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("HF_COLORIZE_SHARED_DATA") or os.path.join(os.path.dirname(ROOT), "shared", "data")


def write_photos(folder: str, n: int) -> str:
    """N real photos in `folder`; returns where they came from."""
    samples = sorted(glob.glob(os.path.join(SHARED, "imagenet-samples", "*.JPEG")))
    if len(samples) >= n:
        for path in samples[:n]:
            shutil.copyfile(path, os.path.join(folder, os.path.basename(path)))
        return f"the first {n} shared ImageNet samples ({os.path.join(SHARED, 'imagenet-samples')})"
    import numpy as np
    from PIL import Image
    from skimage import data

    names = ["astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "retina", "hubble_deep_field",
             "colorwheel", "cat"]
    photos = [Image.fromarray(np.ascontiguousarray(getattr(data, name)())).convert("RGB") for name in names]
    for i in range(n):  # crops and scales of the bundled photos, 300-500 px like ImageNet samples
        im = photos[i % len(photos)]
        w, h = im.size
        f = 0.6 + 0.4 * ((i // len(photos)) % 4) / 3
        crop = im.crop((0, 0, int(w * f), int(h * f))).resize((500, 375) if i % 2 else (375, 500), Image.BICUBIC)
        crop.save(os.path.join(folder, f"photo_{i:03d}.jpg"), quality=90)
    return f"{n} crops of scikit-image's bundled photos (500x375 / 375x500)"


def machine() -> str:
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import torch

    return f"{os.cpu_count()} cores, {cpu}, torch {torch.__version__}, Python {platform.python_version()}"


def run(processes: int, source: str, out: str, args) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    job = ["-m", "hf_colorize", "colorize-dataset", source, "-o", out, "--shard-size", str(args.shard_size),
           "--batch-size", str(args.batch_size), "--no-progress"] + (["--model", args.model] if args.model else [])
    launcher = [sys.executable] if processes == 1 else \
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)]
    start = time.perf_counter()
    done = subprocess.run(launcher + job, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"the {processes}-process run failed:\n{done.stderr[-3000:]}")
    with open(os.path.join(out, "manifest.json"), encoding="utf-8") as f:
        last = json.load(f)["last_run"]
    return {"processes": processes, "images": last["done"], "seconds": last["seconds"],
            "images_per_second": last["done"] / last["seconds"], "wall": wall, "wall_ips": last["done"] / wall}


def rows(out: str) -> list:
    import pyarrow.parquet as pq

    return [r for f in sorted(glob.glob(os.path.join(out, "data", "*.parquet"))) for r in pq.read_table(f).to_pylist()]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=64)
    parser.add_argument("--shard-size", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--model", default=None, help="model folder (default: the embedded default model)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hf-colorize-dataset-bench-") as tmp:
        source = os.path.join(tmp, "photos")
        os.makedirs(source)
        origin = write_photos(source, args.photos)
        results = [run(n, source, os.path.join(tmp, f"out{n}"), args) for n in (1, 2)]
        same = rows(os.path.join(tmp, "out1")) == rows(os.path.join(tmp, "out2"))
    print(f"photos: {origin}; shard size {args.shard_size}, batch {args.batch_size}, "
          f"model {args.model or 'embedded default'}, OMP_NUM_THREADS=1 per process")
    for r in results:
        print(f"{r['processes']} process{'es' if r['processes'] > 1 else ''}: {r['images']} images, work "
              f"{r['seconds']:.1f} s = {r['images_per_second']:.2f} images/s; whole command {r['wall']:.1f} s = "
              f"{r['wall_ips']:.2f} images/s")
    print(f"scaling 2 vs 1 process: {results[1]['images_per_second'] / results[0]['images_per_second']:.2f}x (work), "
          f"{results[1]['wall_ips'] / results[0]['wall_ips']:.2f}x (whole command)")
    print(f"same rows and pixels on 1 and 2 processes: {same}")
    print(f"machine: {machine()}")


if __name__ == "__main__":
    main()
