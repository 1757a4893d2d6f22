"""Empirical ab bin prior for class rebalancing, estimated from the user's own stream.

Zhang et al. count how often each ab bin occurs in the training photos, smooth that distribution
with a Gaussian (sigma 5) in the ab plane, mix it with uniform (lambda 0.5) and invert it to weight
the loss. The counting and smoothing happen here; the mixing and inversion in
`modeling_colorization.rebalancing_weights`. The prior is saved as safetensors (no pickle).
"""

import os
from typing import Iterable, Optional

import torch
from safetensors.torch import load_file, save_file

from hf_colorize.common import ColorizeError, DataSourceError, atomic_path, one_line, shown
from hf_colorize.models.colorization.modeling_colorization import smooth_prior, soft_encode


def bin_counts(ab: torch.Tensor, ab_bins: torch.Tensor) -> torch.Tensor:
    """Histogram `(Q,)` of the nearest bin of every pixel of ab `(B, 2, H, W)`."""
    idx, _ = soft_encode(ab, ab_bins, neighbors=1)
    return torch.bincount(idx.flatten(), minlength=ab_bins.shape[0]).double()


def estimate_prior(rgb_batches: Iterable[torch.Tensor], ab_bins: torch.Tensor, sigma: float = 5.0,
                   max_images: int = 2000, downsample: int = 4, progress: Optional[bool] = False) -> torch.Tensor:
    """Smoothed empirical prior `(Q,)` from uint8 RGB batches `(B, 3, S, S)`.

    Pixels are area-downsampled by `downsample` first (the loss sees targets at 1/4 resolution too).
    progress: a tqdm bar over the images (None: only when stderr is a terminal). Raises
    `DataSourceError` when the batches hold no colour pixels.
    """
    from tqdm.auto import tqdm

    from hf_colorize.training.data import lab_batch

    counts = torch.zeros(ab_bins.shape[0], dtype=torch.float64)
    seen = 0
    with tqdm(total=max_images, desc="prior", unit="img", disable=None if progress is None else not progress) as bar:
        for rgb in rgb_batches:
            _, ab = lab_batch(rgb)
            if downsample > 1:
                ab = torch.nn.functional.avg_pool2d(ab, downsample)
            counts += bin_counts(ab, ab_bins)
            seen += rgb.shape[0]
            bar.update(rgb.shape[0])
            if seen >= max_images:
                break
    if counts.sum() == 0:
        raise DataSourceError("no colour pixels seen: cannot estimate a bin prior")
    return smooth_prior(counts / counts.sum(), ab_bins, sigma).float()


def save_prior(path, prior: torch.Tensor, ab_bins: torch.Tensor) -> None:
    """Write a prior and the bins it was estimated for as safetensors (atomically: `common.atomic_path`)."""
    with atomic_path(path) as tmp:
        save_file({"bin_prior": prior.float().contiguous(), "ab_bins": ab_bins.float().contiguous()}, tmp)


def load_prior(path, ab_bins: torch.Tensor) -> torch.Tensor:
    """Load a prior saved by `save_prior`, checking it was estimated for these bins. Raises
    `DataSourceError` (a `ValueError`) with one line naming the file."""
    path = os.fspath(path)
    try:
        tensors = load_file(path)
    except Exception as err:  # safetensors raises its own error types; one line for the user
        raise DataSourceError(f"{shown(path)}: not a readable safetensors prior ({one_line(err)})") from None
    if "bin_prior" not in tensors:
        raise DataSourceError(f"{shown(path)}: not a bin prior file (no 'bin_prior' tensor)")
    bins = tensors.get("ab_bins")
    if bins is not None and (bins.shape != ab_bins.shape or not torch.allclose(bins, ab_bins.float())):
        raise DataSourceError(f"{shown(path)}: prior was estimated for {bins.shape[0]} different bins than the "
                              f"model's {ab_bins.shape[0]}")
    return tensors["bin_prior"]


def estimate_dataset_prior(dataset, output, split: str = "train", image_column: str = "image", bins=None,
                           max_images: int = 2000, crop_size: int = 176, sigma: float = 5.0,
                           progress: Optional[bool] = None) -> dict:
    """`hf-colorize estimate-prior`: the prior of the centre crops of a stream (image folder, parquet
    shards or Hub dataset), saved to `output`. `bins`: a palette file from `fit-palette` (default: the
    313 ECCV16 bins). Returns `{"output", "bins", "images", "grayscale", "undecodable"}`.
    Raises `DataSourceError` (unreadable source, palette or no colour photos), `ColorizeError` when
    `output` cannot be written."""
    from hf_colorize.models.colorization.configuration_colorization import eccv16_ab_bins
    from hf_colorize.training.data import ColorizationStream, batches
    from hf_colorize.training.palette import load_palette

    ab_bins = load_palette(bins) if bins else torch.tensor(eccv16_ab_bins(), dtype=torch.float32)
    stream = ColorizationStream(dataset, split, image_column, crop_size=crop_size, train=False)
    rgb = (b["rgb"] for b in batches(iter(stream), 32))
    prior = estimate_prior(rgb, ab_bins, sigma, max_images, progress=progress)
    try:
        save_prior(output, prior, ab_bins)
    except OSError as err:  # the cause only: the error's own file name is the temporary's
        raise ColorizeError(f"cannot write {shown(output)}: {err.strerror or one_line(err)}") from None
    return {"output": os.fspath(output), "bins": int(ab_bins.shape[0]), "images": stream.stats.yielded,
            "grayscale": stream.stats.grayscale, "undecodable": stream.stats.undecodable}
