"""How much int8 rounding of each convolution alone moves the benchmark network's output (fake quantization
in torch: int8 weights per output channel, uint8 activations per tensor from MinMax over 4 photos).

    OMP_NUM_THREADS=2 HF_HUB_OFFLINE=1 python benchmarks/int8_sensitivity.py [--layers 12] [--model DIR]

Prints, for the seeded random ECCV16 weights of the benchmarks (`reference.make_reference_model`) or a
trained model (`--model`, at its own network size), the mean |ab| change (plain mean decoding) on 4
held-out photos when all layers, only the weights, or one layer at a time are rounded (each layer named):
a chaotic (untrained) network amplifies rounding that a trained one absorbs.
"""

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=99, help="how many single-layer rows to print")
    parser.add_argument("--model", help="a trained model folder (default: the benchmarks' seeded random weights)")
    args = parser.parse_args()
    import hf_colorize
    from equal_work import real_photos
    from hf_colorize.export.int8 import SimulatedRounding, _convs
    from hf_colorize.export.eccv16 import convert_eccv16_state_dict
    from reference import make_reference_model

    photos = real_photos(16)
    if args.model:
        model = hf_colorize.ColorizationModel.from_pretrained(args.model).eval()
    else:
        model = convert_eccv16_state_dict(make_reference_model(photos[:4]).state_dict(), decode_mode="mean").eval()
    proc = hf_colorize.ColorizationImageProcessor(size=getattr(model.config, "image_size", 256) if args.model else 256)
    calib = torch.stack([proc.prepare(p)[1] for p in photos[4:8]])
    held = torch.stack([proc.prepare(p)[1] for p in photos[12:16]])
    names = [name for name, _ in _convs(model)]
    n = len(names)
    rounding = SimulatedRounding(model, calib)
    print(f"all {n} layers, weights + activations: {rounding.ab_change(range(n), held):.3f} ab")
    print(f"all layers, weights only:              {rounding.ab_change(range(n), held, activations=False):.3f} ab")
    for i in range(min(n, args.layers)):
        print(f"layer {i + 1:2d} alone: {rounding.ab_change([i], held):.3f} ab  {names[i]}", flush=True)


if __name__ == "__main__":
    main()
