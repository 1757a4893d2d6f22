"""k-means ab palette: an alternative to the fixed 10-unit grid of in-gamut bins.

The bins become the k-means centres of ab values sampled from the user's stream, so the palette
spends its resolution where the photos' colours actually are. Saved as safetensors; `hf-colorize
train --bins palette.safetensors` stores them in the model config.
"""

import os
from typing import Optional

import torch
from safetensors.torch import load_file, save_file

from hf_colorize.common import ColorizeError, DataSourceError, atomic_path, one_line, shown


def kmeans(points: torch.Tensor, k: int, iters: int = 30, seed: int = 0) -> torch.Tensor:
    """Plain Lloyd k-means with k-means++ seeding on `(N, 2)` points; returns `(k, 2)` centres
    sorted by (a, b) so the result does not depend on seeding order. Raises `DataSourceError` (a
    `ValueError`) for fewer than `k` points."""
    g = torch.Generator().manual_seed(seed)
    n = points.shape[0]
    if n < k:
        raise DataSourceError(f"need at least {k} ab samples for {k} bins, got {n}")
    centres = points[torch.randint(n, (1,), generator=g)]
    for _ in range(1, k):  # k-means++: next centre drawn proportional to squared distance
        d2 = torch.cdist(points, centres).min(dim=1).values ** 2
        centres = torch.cat([centres, points[torch.multinomial(d2 + 1e-12, 1, generator=g)]])
    for _ in range(iters):
        assign = torch.cdist(points, centres).argmin(dim=1)
        sums = torch.zeros_like(centres).index_add_(0, assign, points)
        counts = torch.bincount(assign, minlength=k).unsqueeze(1)
        moved = torch.where(counts > 0, sums / counts.clamp(min=1), centres)
        if torch.allclose(moved, centres, atol=1e-3):
            centres = moved
            break
        centres = moved
    order = torch.argsort(centres[:, 0] * 1000 + centres[:, 1])
    return centres[order]


def sample_ab(rgb_batches, per_image: int = 256, max_images: int = 1000, seed: int = 0,
              progress: Optional[bool] = False) -> torch.Tensor:
    """Random ab samples `(N, 2)` from uint8 RGB batches `(B, 3, S, S)`. progress: a tqdm bar over the
    images (None: only when stderr is a terminal)."""
    from tqdm.auto import tqdm

    from hf_colorize.training.data import lab_batch

    g = torch.Generator().manual_seed(seed)
    out, seen = [], 0
    with tqdm(total=max_images, desc="sampling", unit="img", disable=None if progress is None else not progress) as bar:
        for rgb in rgb_batches:
            _, ab = lab_batch(rgb)
            flat = ab.permute(0, 2, 3, 1).reshape(ab.shape[0], -1, 2)
            idx = torch.randint(flat.shape[1], (ab.shape[0], per_image), generator=g)
            out.append(torch.gather(flat, 1, idx[..., None].expand(-1, -1, 2)).reshape(-1, 2))
            seen += rgb.shape[0]
            bar.update(rgb.shape[0])
            if seen >= max_images:
                break
    if not out:
        raise DataSourceError("no colour images in the stream to fit a palette on")
    return torch.cat(out)


def save_palette(path, bins: torch.Tensor) -> None:
    """Write palette bins `(Q, 2)` as safetensors (atomically: `common.atomic_path`)."""
    with atomic_path(path) as tmp:
        save_file({"ab_bins": bins.float().contiguous()}, tmp)


def load_palette(path) -> torch.Tensor:
    """Load bins saved by `save_palette`. Raises `DataSourceError` (a `ValueError`) with one line naming
    the file."""
    path = os.fspath(path)
    try:
        tensors = load_file(path)
    except Exception as err:  # safetensors raises its own error types; one line for the user
        raise DataSourceError(f"{shown(path)}: not a readable safetensors palette ({one_line(err)})") from None
    bins = tensors.get("ab_bins")
    if bins is None or bins.dim() != 2 or bins.shape[1] != 2 or bins.shape[0] < 2:
        raise DataSourceError(f"{shown(path)}: expected an 'ab_bins' tensor of shape (Q, 2)")
    return bins.float()


def fit_dataset_palette(dataset, output, num_bins: int = 313, split: str = "train", image_column: str = "image",
                        max_images: int = 1000, crop_size: int = 128, seed: int = 0,
                        progress: Optional[bool] = None) -> dict:
    """`hf-colorize fit-palette`: k-means bins of ab values sampled from the centre crops of a stream
    (image folder, parquet shards or Hub dataset), saved to `output`. Returns `{"output", "bins",
    "samples", "images"}`. Raises `DataSourceError` (unreadable source, too few colour samples),
    `ColorizeError` when `output` cannot be written."""
    from hf_colorize.training.data import ColorizationStream, batches

    stream = ColorizationStream(dataset, split, image_column, crop_size=crop_size, train=False)
    points = sample_ab((b["rgb"] for b in batches(iter(stream), 32)), max_images=max_images, seed=seed,
                       progress=progress)
    bins = kmeans(points, num_bins, seed=seed)
    try:
        save_palette(output, bins)
    except OSError as err:  # the cause only: the error's own file name is the temporary's
        raise ColorizeError(f"cannot write {shown(output)}: {err.strerror or one_line(err)}") from None
    return {"output": os.fspath(output), "bins": int(bins.shape[0]), "samples": int(points.shape[0]),
            "images": stream.stats.yielded}
