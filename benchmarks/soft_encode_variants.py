"""Exact soft-encoding variants tried against the shipped `soft_encode` and scikit-learn (the table in
docs/performance.md, "Soft-encoding"). Not used by the library: the evidence of what limits eager torch.

    OMP_NUM_THREADS=1 python benchmarks/soft_encode_variants.py [--compile] [--profile]

Variant "sure+pick": per 1x1 ab cell, the bins that are among the 5 nearest of every point of the cell
("sure") and those that may be ("maybe"); per pixel only the missing 1-2 are picked from <= 6 maybes by
a min/max network on int64 keys (float32 distance bits << 16 | bin index: the order of the keys is the
order of the distances). Cells that do not fit, and points outside [-128, 128)^2, take the exact
candidate-table + topk path.
"""

import argparse
import glob
import os
import sys
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIMIT, SIDE, MAYBE, PICKS = 128.0, 1.0, 6, 2
BIG = torch.iinfo(torch.int64).max


def build(bins, k):
    """Rows `(cells, k + MAYBE + 1)`: sure (padded with Q), maybe (padded), sure count or -1 (no fit);
    and the padded candidate table `(cells, C)` for the fallback."""
    q, n = bins.shape[0], int(2 * LIMIT / SIDE)
    g = torch.arange(n, dtype=torch.float32)
    rows, cands = [], []

    def packed(mask, width):
        order = torch.argsort(mask.to(torch.int8), dim=1, descending=True, stable=True)[:, :width]
        return torch.where(mask.gather(1, order), order, q)

    for r0 in range(0, n, 16):
        gy, gx = torch.meshgrid(g[r0:r0 + 16], g, indexing="ij")
        c = (torch.stack((gy, gx), -1).reshape(-1, 2) + 0.5) * SIDE - LIMIT
        off = (c[:, None] - bins[None]).abs()
        far = (off + SIDE / 2).square().sum(-1)
        near = (off - SIDE / 2).clamp(min=0).square().sum(-1)
        cand = near <= far.kthvalue(k, 1, keepdim=True).values
        cnear = torch.where(cand, near, torch.inf).sort(1).values[:, : 4 * k]
        beaten = (cnear[:, None, :] < torch.where(cand, far, torch.inf)[:, :, None]).sum(-1) - (near < far).long()
        sure = cand & (beaten < k)
        maybe = cand & ~sure
        ns, nm = sure.sum(1), maybe.sum(1)
        fits = (ns <= k) & (k - ns <= PICKS) & (nm <= MAYBE) & (nm >= k - ns)
        rows.append(torch.cat((packed(sure, k), packed(maybe, MAYBE), torch.where(fits, ns, -1)[:, None]), 1))
        cands.append(cand)
    cand = torch.cat(cands)
    return torch.cat(rows), packed(cand, int(cand.sum(1).max()))


def smallest(keys, p):
    """The p smallest of the rows of `keys`, ascending (insertion network of elementwise min/max)."""
    out = [torch.full_like(keys[0], BIG) for _ in range(p)]
    for v in keys:
        for i in range(p):
            out[i], v = torch.minimum(out[i], v), torch.maximum(out[i], v)
    return out


def core(x, table, ca, cb, k: int):
    n = int(2 * LIMIT / SIDE)
    cell = (x + LIMIT).floor().long()
    inside = ((cell >= 0) & (cell < n)).all(0)
    cid = cell[0].clamp(0, n - 1) * n + cell[1].clamp(0, n - 1)
    rows = table[cid]
    keys = []
    for r in range(k + MAYBE):
        i = rows[:, r]
        d2 = (x[0] - ca[i]) ** 2 + (x[1] - cb[i]) ** 2
        keys.append((d2.view(torch.int32).long() << 16) | i)
    kk = torch.stack(smallest(keys[:k] + smallest(keys[k:], PICKS), k))
    return kk & 0xFFFF, (kk >> 16).int().view(torch.float32), (rows[:, -1] < 0) | ~inside, cid


def sure_pick(ab, bins, tables, fn, k=5, sigma=5.0):
    table, cand = tables
    b, _, h, w = ab.shape
    x = ab.float().permute(1, 0, 2, 3).reshape(2, -1).contiguous()
    ca, cb = (torch.cat((bins[:, c], torch.tensor([1e4]))) for c in (0, 1))
    mem, dk, hard, cid = fn(x, table, ca, cb, k)
    hard = hard.nonzero().squeeze(1)
    if hard.numel():  # exact fallback; points outside the table use every bin
        cs = cand.index_select(0, cid[hard])
        out = (x[:, hard].abs() >= LIMIT).any(0)
        if bool(out.any()):
            cs = torch.cat((cs, cs.new_full((cs.shape[0], bins.shape[0] + 1 - cs.shape[1]), bins.shape[0])), 1)
            cs[out] = torch.arange(cs.shape[1]).clamp(max=bins.shape[0])
        dd = (x[0, hard, None] - ca[cs]).square_() + (x[1, hard, None] - cb[cs]).square_()
        nd, jj = torch.topk(dd, k, dim=1, largest=False)
        mem[:, hard], dk[:, hard] = cs.gather(1, jj).T, nd.T
    wts = torch.exp((dk - dk[:1]).mul_(-1.0 / (2.0 * sigma**2)))
    wts = wts / wts.sum(0, keepdim=True)
    return mem.view(k, b, h, w).transpose(0, 1), wts.view(k, b, h, w).transpose(0, 1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compile", action="store_true", help="also time the torch.compile'd core (needs a C++ compiler)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--profile", action="store_true", help="print torch.profiler's table for both eager variants")
    args = parser.parse_args()
    torch.set_num_threads(1)
    from PIL import Image
    from sklearn.neighbors import NearestNeighbors

    import hf_colorize
    from hf_colorize.models.colorization.image_processing_colorization import load_rgb, rgb_to_lab
    from hf_colorize.models.colorization.modeling_colorization import soft_encode

    photos = sorted(glob.glob(os.path.join(ROOT, "..", "shared", "data", "imagenet-samples", "*")))[:16]
    if not photos:
        sys.exit("needs ../shared/data/imagenet-samples")
    bins = torch.tensor(hf_colorize.eccv16_ab_bins(), dtype=torch.float32)
    ab = rgb_to_lab(torch.stack([load_rgb(Image.open(p).convert("RGB").resize((64, 64))) for p in photos]))[:, 1:]
    pts = ab.permute(0, 2, 3, 1).reshape(-1, 2).double().numpy()

    def sklearn():
        d, i = NearestNeighbors(n_neighbors=5, algorithm="ball_tree").fit(bins.double().numpy()).kneighbors(pts)
        w = np.exp(-(d**2) / 50.0)
        return i, w / w.sum(1, keepdims=True)

    def best(fn):
        fn()
        times = []
        for _ in range(args.repeats):
            t = time.process_time()
            fn()
            times.append(time.process_time() - t)
        return min(times) * 1e3

    t0 = time.process_time()
    tables = build(bins, 5)
    print(f"# {pts.shape[0]} pixels; sure+pick tables built in {time.process_time() - t0:.1f} s CPU")
    ref_i, ref_w = sklearn()
    t_sk = best(sklearn)
    variants = [("shipped soft_encode", lambda: soft_encode(ab, bins)), ("sure+pick eager", lambda: sure_pick(ab, bins, tables, core))]
    if args.compile:
        compiled = torch.compile(core, dynamic=True)
        variants.append(("sure+pick compiled", lambda: sure_pick(ab, bins, tables, compiled)))
    print(f"scikit-learn NearestNeighbors: {t_sk:.1f} ms CPU")
    for name, fn in variants:
        idx, w = fn()
        got_i = idx.permute(0, 2, 3, 1).reshape(-1, 5).numpy()
        got_w = w.permute(0, 2, 3, 1).reshape(-1, 5).numpy()
        same = (np.sort(got_i, 1) == np.sort(ref_i, 1)).all(1).mean()
        wdiff = np.abs(np.sort(got_w, 1) - np.sort(ref_w, 1)).max()
        t = best(fn)
        print(f"{name}: {t:.1f} ms CPU = {t_sk / t:.1f}x faster; same neighbours {same:.5f}, max weight diff {wdiff:.1e}")
    if args.profile:
        from torch.profiler import profile

        for name, fn in variants[:2]:
            with profile() as prof:
                for _ in range(5):
                    fn()
            print(f"# {name}: torch.profiler, 5 calls")
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=8))


if __name__ == "__main__":
    main()
