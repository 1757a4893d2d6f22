"""Images/s of colorizers end to end (file in, colorized RGB at full resolution out) at the same network
input size, interleaved, best of N: compares the model families at equal work per image.

    OMP_NUM_THREADS=2 python benchmarks/family_speed.py runs/hc/eccv16/final runs/hc/hc-lab/final \
        runs/hc/hc-huechroma/final --size 256 --repeats 5
"""

import argparse
import os
import platform
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from hf_colorize import Colorizer  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+")
    parser.add_argument("--photo", default=os.path.join(os.path.dirname(__file__), "..", "examples", "astronaut_bw.jpg"))
    parser.add_argument("--size", type=int, default=256, help="network input side for every model")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    colorizers = {m: Colorizer.from_pretrained(m, precision="fp32", size=args.size) for m in args.models}
    for c in colorizers.values():
        c(args.photo)  # warm-up
    best = {m: float("inf") for m in colorizers}
    for _ in range(args.repeats):  # interleaved: a slow moment of the machine hits every model alike
        for m, c in colorizers.items():
            t = time.perf_counter()
            c(args.photo)
            best[m] = min(best[m], time.perf_counter() - t)
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"network {args.size} px, photo {args.photo}")
    for m, c in colorizers.items():
        params = sum(p.numel() for p in c.model.parameters()) / 1e6
        print(f"{m}: {1 / best[m]:.2f} images/s ({best[m] * 1000:.0f} ms best of {args.repeats}; "
              f"{type(c.model).__name__}, {params:.2f}M parameters)")


if __name__ == "__main__":
    main()
