"""The reference implementation (PyPI `rz-colorization`, module `colorizers`) as the benchmark and the
parity test use it: an ECCV16 generator with seeded random weights whose output depends on the photo,
and the reference's own end-to-end path (load_img -> preprocess_img -> model -> postprocess_tens).
"""

import json
import pathlib

import numpy as np
import torch

SHARED = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"


def shared_bins() -> torch.Tensor:
    """The 313 ECCV16 bin centres `(313, 2)` from the shared zhang_pts_in_hull.json, or (without ../shared)
    the package's copy of the same values (`eccv16_ab_bins`, checked equal in tests/test_convert_eccv16.py)."""
    path = SHARED / "zhang_pts_in_hull.json"
    if path.is_file():
        return torch.tensor(json.loads(path.read_text())["ab"], dtype=torch.float32)
    from hf_colorize import eccv16_ab_bins

    return torch.tensor(eccv16_ab_bins(), dtype=torch.float32)


def make_reference_model(calibration_photos, seed: int = 0):
    """`colorizers.eccv16(pretrained=False)` made photo-dependent: He-initialised convs, BatchNorm running
    stats measured on real photos (random affine terms), and the release's final 1x1 conv holding the
    313 bin centres / 110, exactly as `colorization_release_v2` stores them. Eval mode."""
    import colorizers
    from colorizers import util

    torch.manual_seed(seed)
    ref = colorizers.eccv16(pretrained=False)
    calib = torch.cat([util.preprocess_img(util.load_img(str(p)))[1] for p in calibration_photos])
    with torch.no_grad():
        for m in ref.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
                torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            elif isinstance(m, torch.nn.BatchNorm2d):
                m.momentum = None  # cumulative average over the calibration batch
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
        ref.model_out.weight.copy_((shared_bins().T / 110.0)[:, :, None, None])
        ref.train()
        ref(calib)
    return ref.eval()


def reference_colorize(path, model, return_ab: bool = False):
    """The reference's end-to-end path: photo file -> uint8 RGB `(H, W, 3)` at the original size (its
    `postprocess_tens` returns float RGB in [0, 1] via skimage's lab2rgb). With `return_ab`, also the ab
    map `(2, H, W)` it joined with L."""
    from colorizers import util

    img = util.load_img(str(path))
    l_orig, l_rs = util.preprocess_img(img)
    with torch.inference_mode():
        ab = model(l_rs)
    rgb = (np.clip(util.postprocess_tens(l_orig, ab), 0, 1) * 255).round().astype(np.uint8)
    if return_ab:
        full = torch.nn.functional.interpolate(ab, size=l_orig.shape[2:], mode="bilinear")[0]
        return rgb, full
    return rgb
