"""The one inference path against the 0.1 pipeline it replaced, at equal work.

The 0.1 pipeline (the four remote-code files of commit 464c860, loaded from git as a separate package) and
today's pipeline and `Colorizer` colorize the same photos with the same weights, network size and
precision, interleaved (A B C A B C ...), end to end from a file path to a PIL image. Prints the median
seconds per photo, the ratios to 0.1, and the largest pixel difference of the outputs.

    OMP_NUM_THREADS=2 python benchmarks/one_path_benchmark.py [--repeats 7] [--precision fp32]
"""

import argparse
import importlib
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OLD_COMMIT = "464c860"  # the last commit of the flat 0.1 layout
OLD_FILES = ("configuration_colorization", "modeling_colorization", "image_processing_colorization",
             "pipeline_colorization")


def load_old_package(folder: str):
    """The 0.1 remote-code files as package `hf_colorize_v01` (they import only each other)."""
    pkg = os.path.join(folder, "hf_colorize_v01")
    os.makedirs(pkg, exist_ok=True)
    open(os.path.join(pkg, "__init__.py"), "w").close()
    for name in OLD_FILES:
        text = subprocess.run(["git", "show", f"{OLD_COMMIT}:hf_colorize/{name}.py"], cwd=ROOT, check=True,
                              capture_output=True, text=True).stdout
        with open(os.path.join(pkg, f"{name}.py"), "w") as fh:
            fh.write(text)
    sys.path.insert(0, folder)
    return {name: importlib.import_module(f"hf_colorize_v01.{name}") for name in OLD_FILES}


def photos(folder: str):
    """Public-domain skimage photos, one resized to 768x512 (the performance issue's size), saved as JPEG."""
    import skimage.data

    out = []
    for name, size in (("astronaut", (768, 512)), ("coffee", None), ("chelsea", None)):
        im = Image.fromarray(getattr(skimage.data, name)())
        im = im.resize(size, Image.BICUBIC) if size else im
        path = os.path.join(folder, f"{name}.jpg")
        im.convert("L").save(path, quality=95)
        out.append(path)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    args = parser.parse_args()

    import hf_colorize
    from transformers import logging as hf_logging

    from hf_colorize import Colorizer, ColorizationConfig, ColorizationModel

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    tmp = tempfile.mkdtemp()
    old = load_old_package(tmp)
    paths = photos(tmp)

    # two networks: the embedded default (width 0.375, 144 px) and the full ECCV16 network at 256 px
    torch.manual_seed(0)
    full = os.path.join(tmp, "full")
    ColorizationModel(ColorizationConfig()).eval().save_pretrained(full)
    hf_colorize.ColorizationImageProcessor(size=256).save_pretrained(full)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, precision {args.precision}; "
          f"{len(paths)} photos ({', '.join(f'{Image.open(p).width}x{Image.open(p).height}' for p in paths)})")
    for label, folder in (("embedded default (width 0.375, 144 px)", hf_colorize.DEFAULT_MODEL),
                          ("full ECCV16 (32.2M parameters, 256 px)", full)):
        old_model = old["modeling_colorization"].ColorizationModel.from_pretrained(folder).eval()
        old_proc = old["image_processing_colorization"].ColorizationImageProcessor.from_pretrained(folder)
        old_pipe = old["pipeline_colorization"].ImageColorizationPipeline(model=old_model, image_processor=old_proc,
                                                                           precision=args.precision)
        from transformers import pipeline

        new_pipe = pipeline("image-colorization", model=folder, precision=args.precision)
        colorizer = Colorizer.from_pretrained(folder, precision=args.precision)
        runners = {"0.1 pipeline": old_pipe, "pipeline": new_pipe, "Colorizer": colorizer}
        times = {k: [] for k in runners}
        outputs = {}
        for name, run in runners.items():  # warm-up, and the outputs to compare
            outputs[name] = [np.asarray(run(p)).astype(int) for p in paths]
        for _ in range(args.repeats):
            for name, run in runners.items():
                start = time.perf_counter()
                for p in paths:
                    run(p)
                times[name].append((time.perf_counter() - start) / len(paths))
        base = statistics.median(times["0.1 pipeline"])
        print(f"\n{label}")
        print(f"  {'path':<14}{'median s/photo':>16}{'ratio to 0.1':>14}{'max |pixel diff|':>18}")
        for name in runners:
            med = statistics.median(times[name])
            diff = max(int(np.abs(a - b).max()) for a, b in zip(outputs[name], outputs["0.1 pipeline"]))
            print(f"  {name:<14}{med:>16.4f}{med / base:>14.3f}{diff:>18d}")


if __name__ == "__main__":
    main()
