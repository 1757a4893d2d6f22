"""How much int8 rounding of each convolution alone moves the benchmark network's output (fake quantization
in torch: int8 weights per output channel, uint8 activations per tensor from MinMax over 4 photos).

    OMP_NUM_THREADS=2 HF_HUB_OFFLINE=1 python benchmarks/int8_sensitivity.py [--layers 12]

Prints, for the seeded random ECCV16 weights of the benchmarks (`reference.make_reference_model`), the mean
|ab| change (plain mean decoding) on 4 held-out photos when all layers, only the weights, or one layer at a
time are rounded: a chaotic (untrained) network amplifies rounding that a trained one absorbs.
"""

import argparse
import copy
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402


def _fake_weight(w, axis):
    dims = [d for d in range(w.dim()) if d != axis]
    scale = w.abs().amax(dim=dims, keepdim=True).clamp(min=1e-12) / 127
    return (w / scale).round().clamp(-127, 127) * scale


def rounded_ab_change(model, calib, held, layers, weights=True, activations=True):
    from hf_colorize import decode_ab

    m = copy.deepcopy(model)
    convs = [c for c in m.modules() if isinstance(c, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    ranges = {}
    hooks = [c.register_forward_pre_hook(lambda mod, inp, i=i: ranges.__setitem__(
        i, (min(ranges.get(i, (0.0, 0.0))[0], inp[0].min().item()), max(ranges.get(i, (0.0, 0.0))[1], inp[0].max().item()))))
        for i, c in enumerate(convs)]
    with torch.no_grad():
        m(pixel_values=calib, decode=False)
    for h in hooks:
        h.remove()
    for i in layers:
        c = convs[i]
        if weights:
            c.weight.data = _fake_weight(c.weight.data, 1 if isinstance(c, torch.nn.ConvTranspose2d) else 0)
        if activations:
            lo, hi = ranges[i]
            s = max(hi - min(lo, 0.0), 1e-8) / 255
            z = round(-min(lo, 0.0) / s)
            c.register_forward_pre_hook(lambda mod, inp, s=s, z=z: ((inp[0] / s + z).round().clamp(0, 255) - z) * s)
    with torch.no_grad():
        a = model(pixel_values=held, decode=False).logits
        b = m(pixel_values=held, decode=False).logits
    return (decode_ab(a, model.ab_bins, "mean") - decode_ab(b, model.ab_bins, "mean")).abs().mean().item()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=23, help="how many single-layer rows to print")
    args = parser.parse_args()
    import hf_colorize
    from equal_work import real_photos
    from hf_colorize.export.eccv16 import convert_eccv16_state_dict
    from reference import make_reference_model

    photos = real_photos(16)
    model = convert_eccv16_state_dict(make_reference_model(photos[:4]).state_dict(), decode_mode="mean").eval()
    proc = hf_colorize.ColorizationImageProcessor(size=256)
    calib = torch.stack([proc.prepare(p)[1] for p in photos[4:8]])
    held = torch.stack([proc.prepare(p)[1] for p in photos[12:16]])
    n = len([c for c in model.modules() if isinstance(c, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))])
    print(f"all {n} layers, weights + activations: {rounded_ab_change(model, calib, held, range(n)):.3f} ab")
    print(f"all layers, weights only:              {rounded_ab_change(model, calib, held, range(n), activations=False):.3f} ab")
    for i in range(min(n, args.layers)):
        print(f"layer {i + 1:2d} alone:                         {rounded_ab_change(model, calib, held, [i]):.3f} ab", flush=True)


if __name__ == "__main__":
    main()
