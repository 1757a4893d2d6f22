"""Video benchmark: per-frame baseline vs temporal mode on clips with exact motion cut from real photos.

For each clip (pan, zoom, moving object, cut between two photos) the gray frames go through
`colorize_video` twice (`temporal=False` / `True`, lossless PNG output) and `video_eval.evaluate_frames`
measures warping error, CDC and per-frame AuC against the colour ground truth. The cut clip is also
checked for colour bleeding: the frames after the cut must be identical to colorizing the second shot
alone. Prints a markdown table, the ratios against the targets (warping error and CDC at most 0.5x the
baseline, AuC at most 0.01 lower, no bleed) and the processing speed in frames/s.

    nice -n 15 env OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 python benchmarks/video_benchmark.py [--set validation]
    python benchmarks/video_benchmark.py --model tiny --frames 12 --width 128 --height 96   # quick check
"""

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("HF_HUB_OFFLINE", "1")

PHOTOS = os.path.join(os.path.dirname(ROOT), "shared", "data", "imagenet-samples")
MODES = ("baseline", "temporal", "temporal, palette {}")
CLIP_SETS = {  # kind -> source photos (real ImageNet samples)
    # the temporal defaults were tuned on these clips
    "tuning": {
        "pan": ["n09332890_lakeside.JPEG"],
        "zoom": ["n03042490_cliff_dwelling.JPEG"],
        "object": ["n02793495_barn.JPEG", "n07747607_orange.JPEG"],
        "cut": ["n01440764_tench.JPEG", "n03160309_dam.JPEG"],
    },
    # held out: never used while choosing the defaults
    "validation": {
        "pan": ["n01440764_tench.JPEG"],
        "zoom": ["n02097474_Tibetan_terrier.JPEG"],
        "object": ["n02165105_tiger_beetle.JPEG", "n01847000_drake.JPEG"],
        "cut": ["n02669723_academic_gown.JPEG", "n02077923_sea_lion.JPEG"],
    },
}
KINDS = ("pan", "zoom", "object", "cut")


def _model(name):
    import torch

    from hf_colorize import DEFAULT_MODEL, ColorizationConfig, ColorizationModel

    if name == "tiny":  # random tiny model, for a quick run of the machinery
        torch.manual_seed(0)
        return ColorizationModel(ColorizationConfig(width_multiplier=0.125)).eval(), "tiny random (width 0.125)"
    path = DEFAULT_MODEL if name in (None, "default") else name
    return ColorizationModel.from_pretrained(path).eval(), ("embedded default" if path == DEFAULT_MODEL else path)


def _write_pngs(folder, frames):
    from PIL import Image

    os.makedirs(folder)
    for i, rgb in enumerate(frames):
        Image.fromarray(rgb).save(os.path.join(folder, f"frame_{i:06d}.png"))
    return folder


def _read_pngs(folder):
    from PIL import Image

    return [np.asarray(Image.open(os.path.join(folder, n)).convert("RGB")) for n in sorted(os.listdir(folder))]


def run_clip(kind, model, args, work):
    from hf_colorize.video.temporal import TemporalConfig
    from hf_colorize.video.colorize import colorize_video
    from hf_colorize.video.clips import cut_frames, gray_frame, make_clip, render_frames
    from hf_colorize.video.metrics import evaluate_frames

    photos = [os.path.join(PHOTOS, p) for p in CLIP_SETS[args.set][kind]]
    spec = make_clip(kind, photos, args.frames, args.width, args.height)
    truth = list(render_frames(spec))
    src = _write_pngs(os.path.join(work, f"{kind}_in"), [gray_frame(f) for f in truth])
    rows = {}
    modes = list(MODES[:2]) + ([MODES[2].format(args.palette)] if args.palette is not None else [])
    for mode in modes:
        out = os.path.join(work, f"{kind}_{len(rows)}")
        config = TemporalConfig()
        if mode not in MODES[:2]:
            config.palette_strength = args.palette
        stats = colorize_video(src, out, model=model, temporal=mode != "baseline", batch_size=args.batch_size,
                               size=args.size, temporal_config=config)
        metrics = evaluate_frames(_read_pngs(out), truth, spec)
        metrics.update(fps=stats["processing_fps"], cuts=stats["cuts"])
        rows[mode] = metrics
    if kind == "cut":
        cut = cut_frames(spec)[0]
        alone_in = _write_pngs(os.path.join(work, "cut_second_in"), [gray_frame(f) for f in truth[cut:]])
        alone_out = os.path.join(work, "cut_second_out")
        colorize_video(alone_in, alone_out, model=model, temporal=True, batch_size=args.batch_size, size=args.size)
        full = _read_pngs(os.path.join(work, "cut_1"))[cut:]  # the temporal-mode output
        bleed = max(float(np.abs(a.astype(int) - b.astype(int)).max()) for a, b in zip(_read_pngs(alone_out), full))
        rows["temporal"]["bleed_max_diff"] = bleed
        rows["temporal"]["true_cuts"] = [0] + cut_frames(spec)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="default", help="'default' (embedded), 'tiny' (random), or a model folder")
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--height", type=int, default=192)
    parser.add_argument("--size", type=int, default=None, help="network input side (default: the model's)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--clips", default=",".join(KINDS), help="comma-separated subset of " + ",".join(KINDS))
    parser.add_argument("--set", choices=sorted(CLIP_SETS), default="tuning", help="which photos the clips come from")
    parser.add_argument("--palette", type=float, default=None, help="also run temporal mode with this palette strength")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "2"))))
    model, label = _model(args.model)
    results, start = {}, time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="video_bench_") as work:
        for kind in args.clips.split(","):
            results[kind] = run_clip(kind, model, args, work)
            print(f"# {kind} done ({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)
    size = args.size or model.config.image_size  # what colorize_video uses for a model object
    print(f"\nModel: {label}; {args.set} clips, {args.frames} frames {args.width}x{args.height}, network input {size}; "
          f"torch threads {torch.get_num_threads()}\n")
    print("| clip | mode | warping error | CDC | AuC | frames/s |")
    print("|---|---|---|---|---|---|")
    for kind, rows in results.items():
        for mode, r in rows.items():
            print(f"| {kind} | {mode} | {r['warping_error']:.3f} | {r['cdc']:.5f} | {r['auc']:.4f} | {r['fps']:.2f} |")
        print(f"| {kind} | ground truth | {rows['baseline']['warping_error_gt']:.3f} | {rows['baseline']['cdc_gt']:.5f} | 1 | |")
    print("\n| clip | mode | warping error ratio | CDC ratio | AuC change | cuts found / true | bleed (max diff) |")
    print("|---|---|---|---|---|---|---|")
    ok = True
    for kind, rows in results.items():
        b = rows["baseline"]
        for mode, t in rows.items():
            if mode == "baseline":
                continue
            we, cdc, dauc = t["warping_error"] / b["warping_error"], t["cdc"] / b["cdc"], t["auc"] - b["auc"]
            true_cuts = rows["temporal"].get("true_cuts", [0])
            bleed = rows["temporal"].get("bleed_max_diff")
            if mode == "temporal":
                ok &= we <= 0.5 and cdc <= 0.5 and dauc >= -0.01 and t["cuts"] == true_cuts and not bleed
            bleed_text = f"{bleed:.0f}" if bleed is not None and mode == "temporal" else "-"
            print(f"| {kind} | {mode} | {we:.2f} | {cdc:.2f} | {dauc:+.4f} | {t['cuts']} / {true_cuts} | {bleed_text} |")
    print(f"\ntemporal-mode targets (WE and CDC <= 0.5x, AuC >= -0.01, cuts exact, no bleed): {'MET' if ok else 'NOT MET'}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"model": label, "args": vars(args), "results": results}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
