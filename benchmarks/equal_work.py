"""Equal work: the reference implementation against each of our precisions, on the same photos, weights and
network size, in one interleaved run.

    OMP_NUM_THREADS=2 HF_HUB_OFFLINE=1 python benchmarks/equal_work.py [--repeats 7] [--size 256]
        [--precisions fp32,bf16,int8,auto] [--held-out 8] [--fp32-runtimes] [--scan]

Both sides run the full ECCV16 network at `--size` (default 256, the reference's own) with the same seeded
random weights (`reference.make_reference_model`, converted with `convert_eccv16`, both decoding with the
plain softmax mean). Every repeat runs every implementation once, in a rotating order (A B C, B C A, ...),
on one 768x512 photo, end to end (file -> colorized uint8 RGB at the original size). Prints the machine
(CPU model, flags, threads), then for each implementation: median wall and CPU seconds per photo and
their ratios to the reference, the network's forward time alone and the GFLOP/s it achieves, and the
mean and max |ab| difference to our fp32 output at the original resolution on the benchmark photo and
`--held-out` other photos (none of them int8 calibration photos). Then our pre/post-processing stages
(share of the end-to-end time, and per-pixel cost at 4x the pixels). `--fp32-runtimes` adds
torch.compile and ONNX Runtime fp32 forwards (with their compile / export cost); `--scan` the peak memory
of a 6000x4000 photo (in a subprocess).
"""

import argparse
import datetime
import os
import pathlib
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from reference import SHARED  # noqa: E402

FLAGS = ("avx2", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8")


# --------------------------------------------------------------------------------------------------
# The machine and the photos
# --------------------------------------------------------------------------------------------------
def machine() -> str:
    info = pathlib.Path("/proc/cpuinfo").read_text() if os.path.exists("/proc/cpuinfo") else ""
    model = re.search(r"model name\s*:\s*(.*)", info)
    flags = set(re.search(r"flags\s*:\s*(.*)", info).group(1).split()) if "flags" in info else set()
    have = [f for f in FLAGS if f in flags]
    lacking = [f for f in FLAGS if f not in flags]
    try:
        import onnxruntime

        ort = f", onnxruntime {onnxruntime.__version__}"
    except ImportError:
        ort = ", no onnxruntime"
    return (f"{model.group(1).strip() if model else platform.processor()}, {os.cpu_count()} cores; flags: {' '.join(have)}"
            f" (no {' '.join(lacking)}); torch {torch.__version__} (CPU capability "
            f"{torch.backends.cpu.get_cpu_capability()}), {torch.get_num_threads()} threads{ort}")


def real_photos(n: int) -> list:
    """Colour photos: the shared ImageNet samples when present, else the repository's example photos."""
    folder = SHARED / "imagenet-samples"
    if folder.is_dir():
        out = []
        for p in sorted(folder.iterdir()):
            with Image.open(p) as im:
                if im.mode == "RGB":
                    out.append(str(p))
            if len(out) == n:
                break
        return out
    examples = sorted((HERE.parent / "spaces_app" / "examples").glob("*.jpg")) + sorted((HERE.parent / "examples").glob("*.jpg"))
    return [str(p) for p in examples][:n]


def sized_photo(src: str, size, folder: str) -> str:
    path = os.path.join(folder, f"photo_{size[0]}x{size[1]}.jpg")
    Image.open(src).convert("RGB").resize(size, Image.LANCZOS).save(path, quality=95)
    return path


# --------------------------------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------------------------------
def conv_flops(model, x) -> int:
    """Multiply-adds x 2 of every convolution of one forward pass on `x`."""
    total = [0]

    def hook(mod, inp, out):
        k = mod.kernel_size[0] * mod.kernel_size[1]
        if isinstance(mod, torch.nn.ConvTranspose2d):
            total[0] += 2 * inp[0].numel() * mod.out_channels * k // mod.groups
        else:
            total[0] += 2 * out.numel() * mod.in_channels * k // mod.groups

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    with torch.inference_mode():
        model(x)
    for h in handles:
        h.remove()
    return total[0]


def interleaved(runners: dict, repeats: int) -> dict:
    """{name: (wall seconds, CPU seconds)} lists: every repeat runs every runner once, rotating the order."""
    names = list(runners)
    times = {n: ([], []) for n in names}
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            c0, t0 = time.process_time(), time.perf_counter()
            runners[name]()
            times[name][0].append(time.perf_counter() - t0)
            times[name][1].append(time.process_time() - c0)
    return times


def best_of(fn, repeats: int = 5):
    fn()
    walls, cpus = [], []
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        out = fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return min(walls), min(cpus), out


def ab_difference(lab, fp32) -> tuple:
    d = (lab[1:] - fp32[1:]).abs()
    return d.mean().item(), d.max().item()


# --------------------------------------------------------------------------------------------------
# The parts of the report
# --------------------------------------------------------------------------------------------------
def stages(colorizer, path_small, path_big, repeats):
    """Our fp32 pre/post-processing at full resolution, per stage (best CPU and wall of `repeats`), at the
    benchmark size and at 4x the pixels."""
    from hf_colorize.common import save_image

    rows = {}
    for label, path in (("1x", path_small), ("4x", path_big)):
        tmp = tempfile.mkdtemp(prefix="hfc-stages-")
        _, _, (l_full, x) = best_of(lambda: colorizer.prepare(path), repeats)
        logits = colorizer.logits(x[None], "fp32")
        ab = colorizer.decode(logits)[0]
        _, _, image = best_of(lambda: colorizer.render(l_full, ab), repeats)
        rows[label] = {
            "prepare (decode file, full-res L, network input)": best_of(lambda: colorizer.prepare(path), repeats)[:2],
            "forward (network, fp32)": best_of(lambda: colorizer.logits(x[None], "fp32"), repeats)[:2],
            "decode (softmax mean, 313 bins)": best_of(lambda: colorizer.decode(logits), repeats)[:2],
            "render (upsample ab, join L, Lab->RGB, uint8 PIL)": best_of(lambda: colorizer.render(l_full, ab), repeats)[:2],
            "write PNG": best_of(lambda: save_image(image, os.path.join(tmp, "out.png")), repeats)[:2],
            "write JPEG (quality 95)": best_of(lambda: save_image(image, os.path.join(tmp, "out.jpg")), repeats)[:2],
        }
        rows[label]["pixels"] = l_full.shape[-1] * l_full.shape[-2]
    return rows


def fp32_runtimes(model, x, repeats):
    """The fp32 forward alone: torch eager (channels_last, as the Colorizer runs it), torch.compile
    (inductor; compile cost = first call), ONNX Runtime (export + session cost)."""
    out = {}
    with torch.inference_mode():
        m = model.to(memory_format=torch.channels_last)
        xc = x.contiguous(memory_format=torch.channels_last)
        out["torch eager"] = (best_of(lambda: m(pixel_values=xc, decode=False), repeats)[0], 0.0)
        t0 = time.perf_counter()
        compiled = torch.compile(lambda v: m(pixel_values=v, decode=False).logits, dynamic=False)
        compiled(xc)
        cost = time.perf_counter() - t0
        out["torch.compile (inductor)"] = (best_of(lambda: compiled(xc), repeats)[0], cost)
    try:
        from hf_colorize.export.onnx import export_logits, onnx_session

        t0 = time.perf_counter()
        path = export_logits(model, os.path.join(tempfile.mkdtemp(), "fp32.onnx"))
        session = onnx_session(path, threads=torch.get_num_threads())
        cost = time.perf_counter() - t0
        feed = {"pixel_values": x.float().contiguous().numpy()}
        out["onnxruntime"] = (best_of(lambda: session.run(["logits"], feed), repeats)[0], cost)
    except ImportError as err:
        out["onnxruntime"] = (float("nan"), f"skipped: {err}")
    model.to(memory_format=torch.channels_last)
    return out


def scan_memory(model_dir: str, src: str, precision: str) -> str:
    """Peak RSS of one 6000x4000 photo through our path, in a fresh process."""
    folder = tempfile.mkdtemp(prefix="hfc-scan-")
    path = sized_photo(src, (6000, 4000), folder)
    code = (
        "import re, pathlib, sys, hf_colorize; from hf_colorize import Colorizer\n"
        f"c = Colorizer.from_pretrained({model_dir!r}, precision={precision!r}); c({path!r})\n"
        "s = pathlib.Path('/proc/self/status').read_text()\n"
        "print(int(re.search(r'VmHWM:\\s+(\\d+)', s).group(1)) // 1024)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if done.returncode:
        return f"failed: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}"
    return f"{done.stdout.strip().splitlines()[-1]} MB peak RSS (photo: 24.0 MP; uint8 RGB alone is 72 MB)"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "2")))
    parser.add_argument("--size", type=int, default=256, help="network input side, both sides (default 256)")
    parser.add_argument("--precisions", default="fp32,bf16,int8,auto")
    parser.add_argument("--held-out", type=int, default=8, help="extra photos for the ab differences")
    parser.add_argument("--fp32-runtimes", action="store_true", help="also time torch.compile and ONNX Runtime fp32")
    parser.add_argument("--scan", action="store_true", help="also the peak memory of a 6000x4000 photo")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    import hf_colorize  # noqa: F401
    from transformers import logging as hf_logging

    from hf_colorize import Colorizer
    from hf_colorize.export.eccv16 import convert_eccv16_checkpoint
    from reference import make_reference_model, reference_colorize

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    print(f"# equal-work benchmark, {datetime.date.today()}; {machine()}")
    tmp = tempfile.mkdtemp(prefix="hfc-equal-")
    photos = real_photos(5 + args.held_out)
    ref = make_reference_model(photos[:4])  # BatchNorm statistics from four photos, not the measured ones
    if args.size != 256:
        print(f"# note: the reference resizes to 256 internally; --size {args.size} is applied to both networks' input")
    torch.save(ref.state_dict(), os.path.join(tmp, "ref.pth"))
    model_dir = os.path.join(tmp, "ours")
    convert_eccv16_checkpoint(os.path.join(tmp, "ref.pth"), model_dir, decode_mode="mean")
    landscape = next(p for p in photos[4:] if Image.open(p).width > Image.open(p).height)
    photo = sized_photo(landscape, (768, 512), tmp)
    held = [p for p in photos[4:] if p != landscape][: args.held_out]
    print(f"# weights: seeded random ECCV16 (BatchNorm statistics from 4 real photos), network {args.size} px on both sides; "
          f"photo: {os.path.basename(landscape)} resized to 768x512; ab differences also on {len(held)} held-out photos")

    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    colorizers, notes = {}, {}
    for p in precisions:
        try:
            t0 = time.perf_counter()
            c = Colorizer.from_pretrained(model_dir, precision=p, size=args.size, batch_size=1)
            c(photo)  # warm-up; for int8 this quantizes the network (or loads the cached graph)
            notes[p] = f"first call {time.perf_counter() - t0:.1f} s"
        except (ValueError, ImportError) as err:
            print(f"# {p}: skipped ({err})")
            continue
        resolved = c.resolved_precision
        if p == "auto":
            notes[p] += f"; resolves to {resolved} here"
            if resolved in colorizers:
                print(f"# auto resolves to {resolved} on this machine: the same path as '{resolved}' (not timed twice)")
                colorizers[f"auto -> {resolved}"] = None
                continue
        colorizers[p] = c
    fp32 = colorizers.get("fp32") or Colorizer.from_pretrained(model_dir, precision="fp32", size=args.size)

    # end to end, interleaved
    reference_model = ref
    runners = {"reference": lambda: reference_colorize(photo, reference_model)}
    runners.update({f"ours {p}": (lambda c=c: c(photo)) for p, c in colorizers.items() if c is not None})
    for run in runners.values():
        run()
    e2e = interleaved(runners, args.repeats)
    # the network alone (same input for all), interleaved
    from colorizers import util

    _, l_rs = util.preprocess_img(util.load_img(photo))
    x = fp32.prepare(photo, args.size)[1][None]
    forwards = {"reference": lambda: reference_model(l_rs)}
    forwards.update({f"ours {p}": (lambda c=c: c.logits(x)) for p, c in colorizers.items() if c is not None})
    with torch.inference_mode():
        for run in forwards.values():
            run()
        fwd = interleaved(forwards, args.repeats)
    flops = conv_flops(_Forward(fp32.model), x)

    # ab differences to our fp32 output, at the original resolution
    diffs = {}
    fp32_labs = [fp32(p, output_type="lab") for p in [photo] + held]
    ref_ab = []
    for p in [photo] + held:
        img = util.load_img(p)
        l_orig, l_rs_p = util.preprocess_img(img)
        with torch.inference_mode():
            ab = torch.nn.functional.interpolate(reference_model(l_rs_p), size=l_orig.shape[2:], mode="bilinear")[0]
        ref_ab.append(ab)
    diffs["reference"] = [ab_difference(torch.cat((lab[:1], ab)), lab) for lab, ab in zip(fp32_labs, ref_ab)]
    for p, c in colorizers.items():
        if c is not None:
            diffs[f"ours {p}"] = [ab_difference(c(q, output_type="lab"), lab) for q, lab in zip([photo] + held, fp32_labs)]

    base_wall = statistics.median(e2e["reference"][0])
    base_cpu = statistics.median(e2e["reference"][1])
    print(f"\n| implementation | network | wall s/photo (median; best) | wall ratio | CPU s/photo (median; best) | CPU ratio | forward ms (median; best) "
          f"| GFLOP/s (best) | mean / max abs ab diff to our fp32, 768x512 | mean (worst photo) / max, {len(held)} held-out |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in runners:
        wall, cpu = statistics.median(e2e[name][0]), statistics.median(e2e[name][1])
        f_ms = statistics.median(fwd[name][0]) * 1e3
        d = diffs[name]
        held_d = d[1:] or [(float("nan"), float("nan"))]
        key = name.replace("ours ", "")
        label = f"{name} ({notes[key]})" if key in notes else name
        best_ref = min(e2e["reference"][0]), min(e2e["reference"][1])
        ratio = "" if name == "reference" else f"{wall / base_wall:.2f}x; {min(e2e[name][0]) / best_ref[0]:.2f}x"
        cratio = "" if name == "reference" else f"{cpu / base_cpu:.2f}x; {min(e2e[name][1]) / best_ref[1]:.2f}x"
        bw, bc, bf = min(e2e[name][0]), min(e2e[name][1]), min(fwd[name][0]) * 1e3
        print(f"| {label} | ECCV16 {args.size} px | {wall:.3f}; {bw:.3f} | {ratio} | {cpu:.3f}; {bc:.3f} | {cratio} | {f_ms:.0f}; {bf:.0f} | "
              f"{flops / (bf / 1e3) / 1e9:.0f} | {d[0][0]:.3f} / {d[0][1]:.2f} | "
              f"{statistics.mean(h[0] for h in held_d):.3f} ({max(h[0] for h in held_d):.3f}) / {max(h[1] for h in held_d):.2f} |")
    for name in colorizers:
        if colorizers[name] is None:
            print(f"| ours {name} | | (same as {name.split('-> ')[1]}) | | | | | | | |")
    print(f"\n# network FLOPs at {args.size}x{args.size}: {flops / 1e9:.1f} GFLOP (convolutions, 2 x multiply-adds); "
          f"end-to-end repeats: {args.repeats} per implementation")

    # pre/post-processing
    big = sized_photo(landscape, (1536, 1024), tmp)
    st = stages(fp32, photo, big, max(3, args.repeats // 2))
    total = statistics.median(e2e["ours fp32"][0]) if "ours fp32" in e2e else float("nan")
    print("\n# our stages (fp32; best wall / CPU seconds); share of the fp32 end-to-end median; cost per pixel at 4x the pixels vs 1x")
    print("| stage | 768x512 wall s | CPU s | share of e2e | 1536x1024 wall s | per-pixel ratio 4x/1x |")
    print("|---|---|---|---|---|---|")
    pre_post = 0.0
    for stage_name in st["1x"]:
        if stage_name == "pixels":
            continue
        w1, c1 = st["1x"][stage_name]
        w4, _ = st["4x"][stage_name]
        if not stage_name.startswith(("forward", "decode", "write")):
            pre_post += w1
        ratio = (w4 / st["4x"]["pixels"]) / (w1 / st["1x"]["pixels"])
        print(f"| {stage_name} | {w1:.4f} | {c1:.4f} | {100 * w1 / total:.1f}% | {w4:.4f} | {ratio:.2f} |")
    print(f"# full-resolution pre/post-processing (prepare + render): {pre_post:.4f} s = {100 * pre_post / total:.1f}% of the "
          f"fp32 end-to-end time (file writing not included; the reference writes nothing either)")

    if args.fp32_runtimes:
        print("\n# fp32 forward alone, the same weights and input (best wall of the repeats; cost = compile / export + session)")
        for name, (t, cost) in fp32_runtimes(fp32.model, x, args.repeats).items():
            c = cost if isinstance(cost, str) else f"{cost:.1f} s"
            print(f"  {name:28s} {t * 1e3:7.1f} ms  {flops / t / 1e9:6.0f} GFLOP/s  cost {c}")
    if args.scan:
        print(f"\n# 6000x4000 photo, ours fp32, one process: {scan_memory(model_dir, landscape, 'fp32')}")
    return 0


class _Forward(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(pixel_values=x, decode=False).logits


if __name__ == "__main__":
    sys.exit(main())
