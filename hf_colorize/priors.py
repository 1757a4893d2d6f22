"""Empirical ab bin prior for class rebalancing, estimated from the user's own stream.

Zhang et al. count how often each ab bin occurs in the training photos, smooth that distribution
with a Gaussian (sigma 5) in the ab plane, mix it with uniform (lambda 0.5) and invert it to weight
the loss. The counting and smoothing happen here; the mixing and inversion in
`modeling_colorization.rebalancing_weights`. The prior is saved as safetensors (no pickle).
"""

import sys
from typing import Iterable

import torch
from safetensors.torch import load_file, save_file

from .modeling_colorization import smooth_prior, soft_encode


def bin_counts(ab: torch.Tensor, ab_bins: torch.Tensor) -> torch.Tensor:
    """Histogram `(Q,)` of the nearest bin of every pixel of ab `(B, 2, H, W)`."""
    idx, _ = soft_encode(ab, ab_bins, neighbors=1)
    return torch.bincount(idx.flatten(), minlength=ab_bins.shape[0]).double()


def estimate_prior(rgb_batches: Iterable[torch.Tensor], ab_bins: torch.Tensor, sigma: float = 5.0,
                   max_images: int = 2000, downsample: int = 4) -> torch.Tensor:
    """Smoothed empirical prior `(Q,)` from uint8 RGB batches `(B, 3, S, S)`.

    Pixels are area-downsampled by `downsample` first (the loss sees targets at 1/4 resolution too).
    """
    from .data import lab_batch

    counts = torch.zeros(ab_bins.shape[0], dtype=torch.float64)
    seen = 0
    for rgb in rgb_batches:
        _, ab = lab_batch(rgb)
        if downsample > 1:
            ab = torch.nn.functional.avg_pool2d(ab, downsample)
        counts += bin_counts(ab, ab_bins)
        seen += rgb.shape[0]
        if seen >= max_images:
            break
    if counts.sum() == 0:
        raise ValueError("no colour pixels seen: cannot estimate a bin prior")
    return smooth_prior(counts / counts.sum(), ab_bins, sigma).float()


def save_prior(path: str, prior: torch.Tensor, ab_bins: torch.Tensor) -> None:
    save_file({"bin_prior": prior.float().contiguous(), "ab_bins": ab_bins.float().contiguous()}, path)


def load_prior(path: str, ab_bins: torch.Tensor) -> torch.Tensor:
    """Load a prior saved by `save_prior`, checking it was estimated for these bins."""
    try:
        tensors = load_file(path)
    except Exception as err:  # safetensors raises its own error types; one line for the user
        raise ValueError(f"{path}: not a readable safetensors prior ({str(err).splitlines()[0] if str(err) else type(err).__name__})") from None
    if "bin_prior" not in tensors:
        raise ValueError(f"{path}: not a bin prior file (no 'bin_prior' tensor)")
    bins = tensors.get("ab_bins")
    if bins is not None and (bins.shape != ab_bins.shape or not torch.allclose(bins, ab_bins.float())):
        raise ValueError(f"{path}: prior was estimated for {bins.shape[0]} different bins than the model's {ab_bins.shape[0]}")
    return tensors["bin_prior"]


def add_arguments(parser):
    parser.add_argument("dataset", help="image folder, parquet shards or Hub dataset id")
    parser.add_argument("-o", "--output", required=True, help="output .safetensors file")
    parser.add_argument("--split", default="train")
    parser.add_argument("--image-column", default="image")
    parser.add_argument("--bins", default=None, help="palette file from `fit-palette` (default: the 313 ECCV16 bins)")
    parser.add_argument("--max-images", type=int, default=2000)
    parser.add_argument("--size", type=int, default=176, help="crop size the images are resized to")
    parser.add_argument("--sigma", type=float, default=5.0, help="Gaussian smoothing in ab units")


def run(args) -> int:
    from .configuration_colorization import eccv16_ab_bins
    from .data import ColorizationStream, DataSourceError, batches
    from .palette import load_palette

    try:
        bins = load_palette(args.bins) if args.bins else torch.tensor(eccv16_ab_bins(), dtype=torch.float32)
        stream = ColorizationStream(args.dataset, args.split, args.image_column, crop_size=args.size, train=False)
        rgb = (b["rgb"] for b in batches(iter(stream), 32))
        prior = estimate_prior(rgb, bins, args.sigma, args.max_images)
    except (DataSourceError, ValueError, OSError) as err:
        print(f"hf-colorize: error: {err}", file=sys.stderr)
        return 1
    save_prior(args.output, prior, bins)
    print(f"prior over {bins.shape[0]} bins from {stream.stats.yielded} images "
          f"(skipped {stream.stats.grayscale} gray, {stream.stats.undecodable} undecodable) -> {args.output}")
    return 0
