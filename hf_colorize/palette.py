"""k-means ab palette: an alternative to the fixed 10-unit grid of in-gamut bins.

The bins become the k-means centres of ab values sampled from the user's stream, so the palette
spends its resolution where the photos' colours actually are. Saved as safetensors; `hf-colorize
train --bins palette.safetensors` stores them in the model config.
"""

import sys

import torch
from safetensors.torch import load_file, save_file


def kmeans(points: torch.Tensor, k: int, iters: int = 30, seed: int = 0) -> torch.Tensor:
    """Plain Lloyd k-means with k-means++ seeding on `(N, 2)` points; returns `(k, 2)` centres
    sorted by (a, b) so the result does not depend on seeding order."""
    g = torch.Generator().manual_seed(seed)
    n = points.shape[0]
    if n < k:
        raise ValueError(f"need at least {k} ab samples for {k} bins, got {n}")
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


def sample_ab(rgb_batches, per_image: int = 256, max_images: int = 1000, seed: int = 0) -> torch.Tensor:
    """Random ab samples `(N, 2)` from uint8 RGB batches `(B, 3, S, S)`."""
    from .data import lab_batch

    g = torch.Generator().manual_seed(seed)
    out, seen = [], 0
    for rgb in rgb_batches:
        _, ab = lab_batch(rgb)
        flat = ab.permute(0, 2, 3, 1).reshape(ab.shape[0], -1, 2)
        idx = torch.randint(flat.shape[1], (ab.shape[0], per_image), generator=g)
        out.append(torch.gather(flat, 1, idx[..., None].expand(-1, -1, 2)).reshape(-1, 2))
        seen += rgb.shape[0]
        if seen >= max_images:
            break
    if not out:
        raise ValueError("no colour images in the stream to fit a palette on")
    return torch.cat(out)


def save_palette(path: str, bins: torch.Tensor) -> None:
    save_file({"ab_bins": bins.float().contiguous()}, path)


def load_palette(path: str) -> torch.Tensor:
    try:
        tensors = load_file(path)
    except Exception as err:  # safetensors raises its own error types; one line for the user
        raise ValueError(f"{path}: not a readable safetensors palette ({err})") from None
    bins = tensors.get("ab_bins")
    if bins is None or bins.dim() != 2 or bins.shape[1] != 2 or bins.shape[0] < 2:
        raise ValueError(f"{path}: expected an 'ab_bins' tensor of shape (Q, 2)")
    return bins.float()


def add_arguments(parser):
    parser.add_argument("dataset", help="image folder, parquet shards or Hub dataset id")
    parser.add_argument("-o", "--output", required=True, help="output .safetensors file")
    parser.add_argument("-k", "--num-bins", type=int, default=313)
    parser.add_argument("--split", default="train")
    parser.add_argument("--image-column", default="image")
    parser.add_argument("--max-images", type=int, default=1000)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)


def run(args) -> int:
    from .data import ColorizationStream, DataSourceError, batches

    try:
        stream = ColorizationStream(args.dataset, args.split, args.image_column, crop_size=args.size, train=False)
        points = sample_ab((b["rgb"] for b in batches(iter(stream), 32)), max_images=args.max_images, seed=args.seed)
        bins = kmeans(points, args.num_bins, seed=args.seed)
    except (DataSourceError, ValueError, OSError) as err:
        print(f"hf-colorize: error: {err}", file=sys.stderr)
        return 1
    save_palette(args.output, bins)
    print(f"{bins.shape[0]} palette bins from {points.shape[0]} ab samples -> {args.output}")
    return 0
