"""Training input pipeline: images/s and the share of the run spent waiting for data, for 0/1/2 workers.

Runs the real trainer (`hf-colorize train`, the default settings unless given) for a short run per
worker count on real photos and reads its own log lines (`images/s=`, `data_wait=`). The first
`--skip` steps (start-up: workers forking, the first batches, memory allocation) are left out by
differencing the cumulative figures of two log lines. Target: data wait < 10% of the step with the
default settings (`--num-workers` default).

    nice -n 5 env HF_HUB_OFFLINE=1 python benchmarks/train_input_benchmark.py
    python benchmarks/train_input_benchmark.py --workers 0 1 --steps 20 -- --mixed-precision bf16 --crop-size 144
"""

import argparse
import os
import platform
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PHOTOS = os.path.join(os.path.dirname(ROOT), "shared", "data", "imagenette")
LINE = re.compile(r"^step (\d+): .* images/s=([\d.]+) data_wait=([\d.]+)%")


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def run(workers: int, args, extra) -> dict:
    """One short training run; images/s and data-wait share over the steps after `args.skip`."""
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "hf_colorize", "train", "--dataset", args.dataset, "--output-dir", out,
               "--max-steps", str(args.skip + args.steps), "--log-every", str(args.skip), "--checkpoint-every", "0",
               "--report-to", "none", "--no-progress", "--prior-images", "64", "--num-workers", str(workers), *extra]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    if proc.returncode:
        sys.exit(f"train failed ({' '.join(cmd)}):\n{proc.stderr[-2000:]}")
    rows = {int(m[1]): (float(m[2]), float(m[3]) / 100) for m in map(LINE.match, proc.stdout.splitlines()) if m}
    (s0, (rate0, wait0)), (s1, (rate1, wait1)) = sorted(rows.items())[0], sorted(rows.items())[-1]
    batch = args.batch_size
    elapsed0, elapsed1 = s0 * batch / rate0, s1 * batch / rate1  # cumulative seconds at the two log lines
    window = elapsed1 - elapsed0
    return {"workers": workers, "images_per_s": (s1 - s0) * batch / window,
            "data_wait": (wait1 * elapsed1 - wait0 * elapsed0) / window}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default=PHOTOS, help="training photos (default ../shared/data/imagenette)")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=30, help="measured steps per run")
    parser.add_argument("--skip", type=int, default=10, help="start-up steps left out")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("extra", nargs="*", help="more `hf-colorize train` flags (after --)")
    args = parser.parse_args()
    if not os.path.exists(args.dataset):
        sys.exit(f"{args.dataset}: not found (the shared photos, or give --dataset)")
    extra = ["--batch-size", str(args.batch_size), *args.extra]
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores; torch threads default; train flags: {' '.join(extra)}")
    print("| workers | images/s | data wait (share of the run) | speed vs 0 workers |")
    print("|---|---|---|---|")
    base = None
    for workers in args.workers:
        r = run(workers, args, extra)
        base = base or r["images_per_s"]
        print(f"| {workers} | {r['images_per_s']:.1f} | {r['data_wait']:.1%} | {r['images_per_s'] / base:.2f}x |",
              flush=True)


if __name__ == "__main__":
    main()
