"""Side-by-side benchmark of hf-colorize against the reference implementation on the same ECCV16 weights.

    OMP_NUM_THREADS=2 HF_HUB_OFFLINE=1 python benchmarks/bench_colorize.py [--repeats 3] [--quick]

Prints one table: end-to-end time per photo (file -> colorized RGB at the original resolution) for a
768x512 and a 3000x2000 photo, throughput over a folder of real photos, peak memory per case, accuracy
against the reference (mean |ab| difference in Lab at the original resolution), the embedded default
model's images/s, soft-encoding vs scikit-learn NearestNeighbors, and data pipeline vs training step rate.

Every timed case runs in a fresh subprocess (so peak memory is per case), reference and ours
alternating, and reports the fastest of `--repeats` runs after a warm-up; the machine's load average
is printed because other work on the machine slows both sides.
"""

import argparse
import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT)]
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from reference import SHARED  # noqa: E402

PHOTOS = SHARED / "imagenet-samples"


# --------------------------------------------------------------------------------------------------
# Worker side: one case per process
# --------------------------------------------------------------------------------------------------
def _rss_mb(field: str) -> float:
    return int(re.search(rf"{field}:\s+(\d+)", pathlib.Path("/proc/self/status").read_text()).group(1)) / 1024


def _reset_peak() -> None:
    """Reset the kernel's peak-RSS counter (VmHWM), so the peak covers only the work that follows."""
    try:
        pathlib.Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _cpu_seconds() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _timed(fn, repeats, cpu=None):
    """Wall times of `repeats` calls after a warm-up (first-call allocations, oneDNN kernel selection).
    With a list `cpu`, also appends each call's CPU seconds (user + system, all threads): far less
    sensitive than wall time to other processes competing for the cores."""
    fn()
    times = []
    for _ in range(repeats):
        c0, start = _cpu_seconds(), time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
        if cpu is not None:
            cpu.append(_cpu_seconds() - c0)
    return times


def _ours(spec):
    import torch
    from transformers import pipeline

    import hf_colorize  # noqa: F401  (registers the task)

    kwargs = {"precision": spec["precision"]} if spec.get("precision", "fp32") != "fp32" else {}
    pipe = pipeline("image-colorization", model=spec["model"], decode_mode=spec.get("decode_mode"), **kwargs)
    if spec.get("compile"):
        pipe.model.forward = torch.compile(pipe.model.forward, dynamic=False)
    batch = spec.get("batch_size", 1)

    def run(paths):
        out = pipe([str(p) for p in paths], batch_size=batch) if len(paths) > 1 else [pipe(str(paths[0]))]
        return out

    return run


def _reference(spec):
    import torch

    import colorizers
    from reference import reference_colorize

    model = colorizers.eccv16(pretrained=False)
    model.load_state_dict(torch.load(spec["model"], map_location="cpu", weights_only=True))
    model.eval()
    return lambda paths: [reference_colorize(p, model) for p in paths]


def worker(spec) -> dict:
    import torch

    torch.set_num_threads(spec.get("threads", 2))
    run = (_reference if spec["impl"] == "reference" else _ours)(spec)
    paths = spec["paths"]
    _reset_peak()
    before = _rss_mb("VmRSS")
    cpu = []
    times = _timed(lambda: run(paths), spec["repeats"], cpu)
    return {"times": times, "cpu": cpu, "rss_before_mb": before, "peak_mb": _rss_mb("VmHWM"), "images": len(paths)}


def accuracy_worker(spec) -> dict:
    """Mean |ab| differences against the reference per precision: "net" = the same L input through both
    networks (ab compared at 256x256, the reference's output size); "e2e" = each side's own pipeline from
    the file (Lab at the original resolution; includes our different L resampling)."""
    import colorizers
    import torch
    import torch.nn.functional as F
    from colorizers import util
    from transformers import pipeline

    import hf_colorize  # noqa: F401

    torch.set_num_threads(spec.get("threads", 2))
    ref = colorizers.eccv16(pretrained=False)
    ref.load_state_dict(torch.load(spec["reference"], map_location="cpu", weights_only=True))
    ref.eval()
    inputs, refs = [], []
    with torch.inference_mode():
        for p in spec["paths"]:
            l_orig, l_rs = util.preprocess_img(util.load_img(str(p)))
            ab = ref(l_rs)
            inputs.append(l_rs)
            refs.append((ab, F.interpolate(ab, size=l_orig.shape[2:], mode="bilinear")[0]))
    out, fp32 = {}, None
    for precision in spec["precisions"]:
        kwargs = {"precision": precision} if precision != "fp32" else {}
        pipe = pipeline("image-colorization", model=spec["model"], decode_mode="mean", **kwargs)
        net, e2e, labs = [], [], []
        for p, l_rs, (ab256, ab_full) in zip(spec["paths"], inputs, refs):
            with torch.inference_mode():
                res = pipe._forward({"pixel_values": (l_rs - 50.0) / 100.0, "original_l": None}, precision=kwargs.get("precision"))
            net.append((F.interpolate(res["ab"], scale_factor=4, mode="bilinear") - ab256).abs().mean().item())
            labs.append(pipe(str(p), output_type="lab"))
            e2e.append((labs[-1][1:] - ab_full).abs().mean().item())
        out[f"{precision} net"] = sum(net) / len(net)
        out[f"{precision} e2e"] = sum(e2e) / len(e2e)
        if fp32 is None:
            fp32 = labs
        else:
            out[f"{precision} vs fp32 e2e"] = sum((a[1:] - b[1:]).abs().mean().item() for a, b in zip(labs, fp32)) / len(labs)
    return out


def soft_encode_worker(spec) -> dict:
    """Soft-encoding a training batch's ab targets: our torch `soft_encode` vs the reference approach
    (scikit-learn NearestNeighbors on the bins, Gaussian weights, dense target), same results."""
    import numpy as np
    import torch
    from PIL import Image
    from sklearn.neighbors import NearestNeighbors

    from hf_colorize.models.colorization.image_processing_colorization import load_rgb, rgb_to_lab
    from hf_colorize.models.colorization.modeling_colorization import soft_encode, soft_encode_dense

    torch.set_num_threads(spec.get("threads", 2))
    bins = torch.tensor(__import__("hf_colorize").eccv16_ab_bins(), dtype=torch.float32)
    side = spec["side"]
    rgb = torch.stack([load_rgb(Image.open(p).convert("RGB").resize((side, side))) for p in spec["paths"]])
    ab = rgb_to_lab(rgb)[:, 1:]  # (B, 2, side, side): the 1/4-resolution targets of (4 side)^2 crops
    k, sigma = 5, 5.0

    def sklearn_encode():
        # as in the original release's training code (NNEncode): ball tree over the bins, per pixel
        pts = ab.permute(0, 2, 3, 1).reshape(-1, 2).double().numpy()
        nbrs = NearestNeighbors(n_neighbors=k, algorithm="ball_tree").fit(bins.double().numpy())
        dists, inds = nbrs.kneighbors(pts)
        wts = np.exp(-(dists**2) / (2 * sigma**2))
        wts = wts / wts.sum(axis=1, keepdims=True)
        dense = np.zeros((pts.shape[0], bins.shape[0]))
        dense[np.arange(pts.shape[0])[:, None], inds] = wts
        return dense

    def ours():
        return soft_encode_dense(ab, bins, k, sigma)

    def ours_sparse():
        return soft_encode(ab, bins, k, sigma)

    cpu = {"sklearn": [], "ours_dense": [], "ours_sparse": []}
    t_sk = _timed(sklearn_encode, spec["repeats"], cpu["sklearn"])
    t_ours = _timed(ours, spec["repeats"], cpu["ours_dense"])
    t_sparse = _timed(ours_sparse, spec["repeats"], cpu["ours_sparse"])
    ref = torch.from_numpy(sklearn_encode()).float()
    mine = ours().permute(0, 2, 3, 1).reshape(-1, bins.shape[0])
    return {"sklearn": t_sk, "ours_dense": t_ours, "ours_sparse": t_sparse, "cpu": cpu, "pixels": int(ab[:, 0].numel()),
            "max_abs_diff": (ref - mine).abs().max().item()}


def training_worker(spec) -> dict:
    """Data pipeline images/s (hf_colorize.training.data stream -> Lab batch) vs the model's training step rate."""
    import torch

    torch.set_num_threads(spec.get("threads", 2))
    out = {}
    try:
        from hf_colorize.training.data import ColorizationStream, batches, lab_batch
    except ImportError as err:
        return {"skipped": f"hf_colorize.training.data not available ({err})"}
    from hf_colorize import ColorizationConfig, ColorizationModel

    size, bs = spec["crop_size"], spec["batch_size"]
    stream = ColorizationStream(spec["folder"], crop_size=size, seed=0)
    it = batches(iter(stream), bs)

    def one_batch():
        pixel_values, labels = lab_batch(next(it)["rgb"])
        return pixel_values, labels

    t_data = _timed(one_batch, spec["repeats"])
    out["data_images_per_s"] = bs / min(t_data)
    torch.manual_seed(0)
    model = ColorizationModel(ColorizationConfig(width_multiplier=spec["width"])).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    pixel_values, labels = one_batch()

    def step():
        loss = model(pixel_values=pixel_values, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    t_step = _timed(step, spec["repeats"])
    out["train_images_per_s"] = bs / min(t_step)
    return out


WORKERS = {"time": worker, "accuracy": accuracy_worker, "soft_encode": soft_encode_worker, "training": training_worker}


# --------------------------------------------------------------------------------------------------
# Driver side
# --------------------------------------------------------------------------------------------------
def _spawn(kind, spec, threads):
    # passive OpenMP waits: on a shared machine, spinning threads burn the cores the other thread needs
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OMP_WAIT_POLICY="PASSIVE", HF_HUB_OFFLINE="1", PYTHONPATH=f"{ROOT}:{HERE}")
    proc = subprocess.run([sys.executable, __file__, "--worker", kind, json.dumps(dict(spec, threads=threads))],
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit code {proc.returncode}"
        return {"error": tail}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _color_photos(n):
    from PIL import Image

    out = []
    for p in sorted(PHOTOS.iterdir()):
        with Image.open(p) as im:
            if im.mode == "RGB":
                out.append(p)
        if len(out) == n:
            break
    return out


def prepare(tmp, n_folder):
    """Reference weights (.pth) and the converted model, and the two test photos made from a real one."""
    import torch
    from PIL import Image

    from hf_colorize.export.eccv16 import convert_eccv16_checkpoint
    from reference import make_reference_model

    photos = _color_photos(max(n_folder, 8))
    ref = make_reference_model(photos[:4])
    ref_path = os.path.join(tmp, "colorization_release_v2-random.pth")
    torch.save(ref.state_dict(), ref_path)
    ours = os.path.join(tmp, "converted")
    convert_eccv16_checkpoint(ref_path, ours, decode_mode="mean")  # the reference's decoding
    # a landscape photo with detail, resized (Lanczos) to the two benchmark sizes
    src = next(p for p in photos if Image.open(p).width > Image.open(p).height)
    sized = {}
    for w, h in ((768, 512), (3000, 2000)):
        path = os.path.join(tmp, f"photo_{w}x{h}.jpg")
        Image.open(src).convert("RGB").resize((w, h), Image.LANCZOS).save(path, quality=95)
        sized[f"{w}x{h}"] = path
    return ref_path, ours, sized, [str(p) for p in photos[:n_folder]], src


def _best(result):
    return min(result["times"]) if "times" in result else float("nan")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--folder-size", type=int, default=16, help="photos in the throughput folder")
    parser.add_argument("--precisions", default="fp32,bf16", help="our precisions to time (fp32, bf16, fp16)")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (bf16)")
    parser.add_argument("--quick", action="store_true", help="skip the 3000x2000 photo and the training side")
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(WORKERS[args.worker[0]](json.loads(args.worker[1]))))
        return 0

    import torch

    print(f"# hf-colorize benchmark  torch {torch.__version__}  threads {args.threads}  "
          f"load average at start {os.getloadavg()[0]:.2f}", flush=True)
    tmp = tempfile.mkdtemp(prefix="hfc-bench-")
    ref_path, ours_dir, sized, folder, src = prepare(tmp, args.folder_size)
    print(f"# weights: seeded random ECCV16 (BN calibrated on real photos), converted with convert_eccv16; "
          f"photos resized from {os.path.basename(src)}; folder = {len(folder)} shared ImageNet photos", flush=True)
    precisions = args.precisions.split(",")
    variants = [("reference", {"impl": "reference", "model": ref_path})]
    variants += [(f"ours {p}", {"impl": "ours", "model": ours_dir, "precision": p, "decode_mode": "mean"}) for p in precisions]
    if args.compile:
        variants.append(("ours bf16+compile", {"impl": "ours", "model": ours_dir, "precision": "bf16", "decode_mode": "mean", "compile": True}))

    cases = [("768x512", [sized["768x512"]], 1)]
    if not args.quick:
        cases.append(("3000x2000", [sized["3000x2000"]], 1))
    cases.append((f"folder ({len(folder)})", folder, 8))
    table = []  # markdown rows
    for label, paths, batch in cases:
        results = {}
        for name, spec in variants:
            spec = dict(spec, paths=paths, repeats=args.repeats if len(paths) == 1 else max(1, args.repeats - 1), batch_size=batch)
            results[name] = r = _spawn("time", spec, args.threads)
            if "error" in r:
                print(f"  {label:14s} {name:18s} ERROR {r['error']}", flush=True)
                continue
            r["work_mb"] = r["peak_mb"] - r["rss_before_mb"]
            print(f"  {label:14s} {name:18s} wall {_best(r):8.3f} s  cpu {min(r['cpu']):8.3f} s  {r['images'] / _best(r):6.2f} img/s  "
                  f"peak RSS {r['peak_mb']:6.0f} MB (+{r['work_mb']:.0f} MB for the work)", flush=True)
        base = results.get("reference", {})
        for name, r in results.items():
            if "times" not in r:
                continue
            ratios = ("", "", "")
            if name != "reference" and "times" in base:
                ratios = (f"{_best(r) / _best(base):.2f}x", f"{min(r['cpu']) / min(base['cpu']):.2f}x",
                          f"{r['work_mb'] / max(1.0, base['work_mb']):.2f}x")
                print(f"  {label:14s} {name:18s} vs reference: wall {ratios[0]}, cpu {ratios[1]}, work memory {ratios[2]}", flush=True)
            table.append(f"| {label} | {name} | {_best(r):.3f} | {ratios[0]} | {min(r['cpu']):.3f} | {ratios[1]} | "
                         f"{r['images'] / _best(r):.2f} | {r['peak_mb']:.0f} | {r['work_mb']:.0f} | {ratios[2]} |")

    acc = _spawn("accuracy", {"reference": ref_path, "model": ours_dir, "paths": [sized["768x512"]] + folder[:4],
                              "precisions": precisions}, args.threads)
    print("# accuracy vs reference (mean |ab| in Lab at original resolution; budget fp32 0.5, reduced 2.0):")
    print("  " + json.dumps({k: round(v, 3) for k, v in acc.items()} if "error" not in acc else acc), flush=True)

    import hf_colorize

    default = _spawn("time", {"impl": "ours", "model": hf_colorize.DEFAULT_MODEL, "paths": folder, "repeats": 1, "batch_size": 8}, args.threads)
    default_bf16 = _spawn("time", {"impl": "ours", "model": hf_colorize.DEFAULT_MODEL, "paths": folder, "repeats": 1, "batch_size": 8,
                                   "precision": "bf16"}, args.threads)
    for name, r in (("fp32", default), ("bf16", default_bf16)):
        if "times" in r:
            print(f"# embedded default model ({name}): {r['images'] / _best(r):.2f} images/s over the folder (end to end)")
        else:
            print(f"# embedded default model ({name}): ERROR {r['error']}")

    se = _spawn("soft_encode", {"paths": folder[:16], "side": 64, "repeats": args.repeats}, args.threads)
    if "error" in se:
        print(f"# soft-encoding: ERROR {se['error']}")
    else:
        print(f"# soft-encoding a batch of {len(folder[:16])} 64x64 ab targets ({se['pixels']} pixels, k=5, sigma=5): "
              f"sklearn NearestNeighbors {min(se['sklearn']) * 1e3:.1f} ms, ours dense {min(se['ours_dense']) * 1e3:.1f} ms "
              f"({min(se['sklearn']) / min(se['ours_dense']):.1f}x), ours sparse (idx, weights) {min(se['ours_sparse']) * 1e3:.1f} ms "
              f"({min(se['sklearn']) / min(se['ours_sparse']):.1f}x); max |difference| {se['max_abs_diff']:.1e}")
        c = {k: min(v) for k, v in se["cpu"].items()}
        print(f"#   same in CPU seconds: sklearn {c['sklearn'] * 1e3:.1f} ms, ours dense {c['ours_dense'] * 1e3:.1f} ms "
              f"({c['sklearn'] / c['ours_dense']:.1f}x), ours sparse {c['ours_sparse'] * 1e3:.1f} ms ({c['sklearn'] / c['ours_sparse']:.1f}x)")
    if not args.quick:
        tr = _spawn("training", {"folder": str(PHOTOS), "crop_size": 176, "batch_size": 16, "width": 0.25, "repeats": args.repeats},
                    args.threads)
        if "skipped" in tr or "error" in tr:
            print(f"# training side: {tr.get('skipped') or tr.get('error')}")
        else:
            print(f"# training side (width 0.25, 176px crops, batch 16): data pipeline {tr['data_images_per_s']:.1f} images/s, "
                  f"training step {tr['train_images_per_s']:.1f} images/s "
                  f"(data/step ratio {tr['data_images_per_s'] / tr['train_images_per_s']:.1f}x)")
    print("\n| case | implementation | wall s (best) | wall ratio | CPU s (best) | CPU ratio | images/s | peak RSS MB | work MB | work-memory ratio |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(table))
    print(f"\n# load average at end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
