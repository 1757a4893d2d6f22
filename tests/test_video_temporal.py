"""Temporal consistency on clips cut from real photos: motion estimation, cuts, smoothing."""

import itertools

import pytest
import torch
import torch.nn.functional as F

from hf_colorize import ColorizationImageProcessor, eccv16_ab_bins
from hf_colorize.models.colorization.modeling_colorization import decode_ab, soft_encode_dense
from hf_colorize.video.temporal import TemporalConfig, TemporalSmoother, block_match
from hf_colorize.video.clips import cut_frames, gray_frame, make_clip, render_frames, true_flow

SIZE = 128  # network input side used here; logits are SIZE / 4
PROC = ColorizationImageProcessor(size=SIZE)
BINS = torch.tensor(eccv16_ab_bins(), dtype=torch.float32)


def _clip(kind, photos, n=10, keep=None):
    """A clip of n frames (motion per frame shrinks as n grows), rendering only the first `keep`."""
    spec = make_clip(kind, photos, n, 128, 96)
    frames = list(itertools.islice(render_frames(spec), keep or n))
    ls = [PROC.l_channel(torch.from_numpy(gray_frame(f).copy()).permute(2, 0, 1).float() / 255) for f in frames]
    labs = [PROC.l_channel(torch.from_numpy(f.copy()).permute(2, 0, 1).float() / 255) for f in frames]
    return spec, frames, ls, labs


def _noisy_oracle_logits(frame, seed):
    """Logits of a model that knows the true colours but jitters: soft-encoded truth + per-frame noise."""
    from hf_colorize.models.colorization.image_processing_colorization import rgb_to_lab

    lab = rgb_to_lab(torch.from_numpy(frame.copy()).permute(2, 0, 1).float() / 255)
    ab = F.interpolate(lab[None, 1:], size=(SIZE // 4, SIZE // 4), mode="area")
    target = soft_encode_dense(ab, BINS)[0]
    g = torch.Generator().manual_seed(seed)
    noise = F.interpolate(torch.randn(1, len(BINS), 8, 8, generator=g), size=(SIZE // 4, SIZE // 4), mode="bilinear")[0]
    return 6.0 * target + 2.5 * noise


@pytest.mark.parametrize("kind", ["pan", "zoom"])
def test_block_match_recovers_the_true_motion(photo_paths, kind):
    # a few pixels per frame, on a textured photo (chelsea: fur; the flat backgrounds of coffee or astronaut
    # have too little texture for the thresholds below)
    spec, frames, ls, _ = _clip(kind, [photo_paths[2]], 24, keep=4)
    m = 128
    for t in (1, 3):
        cur = F.interpolate(PROC.resize_l(ls[t])[None], size=(m, m), mode="area")
        prev = F.interpolate(PROC.resize_l(ls[t - 1])[None], size=(m, m), mode="area")
        flow, cost = block_match(cur, prev)
        grid, valid = true_flow(spec, t)
        # exact motion in the square motion image: grid offsets are resolution independent
        ident = torch.stack(torch.meshgrid((torch.arange(96) + 0.5) * 2 / 96 - 1, (torch.arange(128) + 0.5) * 2 / 128 - 1,
                                           indexing="ij")[::-1], -1)
        true_px = ((grid - ident) * m / 2).permute(2, 0, 1)[None]
        true_px = F.interpolate(true_px, size=(m, m), mode="bilinear")
        inner = F.interpolate(valid[None, None].float(), size=(m, m), mode="area")[0, 0] == 1
        inner[:8], inner[-8:], inner[:, :8], inner[:, -8:] = False, False, False, False
        # flat areas have no measurable motion (aperture problem): judge where there is texture
        local_var = F.avg_pool2d(cur**2, 7, 1, 3) - F.avg_pool2d(cur, 7, 1, 3) ** 2
        inner &= local_var[0, 0].clamp(min=0).sqrt() * 100 > 3.0
        err = (flow - true_px)[0].norm(dim=0)[inner]
        assert true_px.abs().max() > 1.0  # the clip really moves
        # sub-pixel on most of the picture; a few blocks are fooled (aperture problem, zoom)
        assert err.median() < 0.35 and (err < 1.0).float().mean() > 0.8, (kind, t, float(err.median()))
        assert err.mean() < 0.5 * true_px[0].norm(dim=0)[inner].mean()  # far better than assuming no motion
        assert cost[0, 0][inner].mean() * 100 < 1.5  # L units: motion explains the frame


def _smooth(ls, logits, config=None, start=0):
    sm = TemporalSmoother(config or TemporalConfig())
    outs, infos = [], []
    for t in range(start, len(ls)):
        out, info = sm.step(PROC.resize_l(ls[t]), logits[t], BINS)
        outs.append(out)
        infos.append(info)
    return sm, outs, infos


@pytest.mark.slow
def test_cuts_are_found_and_reset_the_colours(photo_paths):
    spec, frames, ls, _ = _clip("cut", [photo_paths[1], photo_paths[4]], 10)
    logits = [_noisy_oracle_logits(f, i) for i, f in enumerate(frames)]
    sm, outs, _ = _smooth(ls, logits)
    assert sm.cuts == [0] + cut_frames(spec) == [0, 5]
    # nothing from the first shot survives the cut: identical to starting at the cut
    _, fresh, _ = _smooth(ls, logits, start=5)
    for a, b in zip(outs[5:], fresh):
        torch.testing.assert_close(a, b)
    # and within a shot there is no cut on a pan or a zoom
    for kind in ("pan", "zoom", "object"):
        spec, frames, ls2, _ = _clip(kind, [photo_paths[2], photo_paths[5]], 6)
        sm2, _, _ = _smooth(ls2, [torch.zeros(len(BINS), SIZE // 4, SIZE // 4)] * 6)
        assert sm2.cuts == [0], kind


def test_strength_zero_is_the_per_frame_baseline(photo_paths):
    _, frames, ls, _ = _clip("pan", [photo_paths[1]], 4)
    logits = [_noisy_oracle_logits(f, i) for i, f in enumerate(frames)]
    _, outs, _ = _smooth(ls, logits, TemporalConfig(strength=0.0, palette_strength=0.0))
    for out, lg in zip(outs, logits):
        torch.testing.assert_close(out, decode_ab(lg[None], BINS)[0], atol=1e-3, rtol=1e-4)


def _warping_error(spec, abs_lo, region=None):
    errs = []
    for t in range(1, len(abs_lo)):
        grid, valid = true_flow(spec, t)
        cur = F.interpolate(abs_lo[t][None], size=valid.shape, mode="bilinear")[0]
        prev = F.interpolate(abs_lo[t - 1][None], size=valid.shape, mode="bilinear")[0]
        warped = F.grid_sample(prev[None], grid[None], align_corners=False)[0]
        mask = valid if region is None else valid & region(t)
        errs.append((cur - warped).norm(dim=0)[mask].mean())
    return float(torch.stack(errs).mean())


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["object", "pan"])
def test_moving_content_keeps_its_colour(photo_paths, kind):
    """A model that jitters around the true colours: temporal mode halves the flicker where things move,
    and stays at least as close to the truth."""
    spec, frames, ls, _ = _clip(kind, [photo_paths[2], photo_paths[0]], 10)  # chelsea, with astronaut moving over it
    logits = [_noisy_oracle_logits(f, i) for i, f in enumerate(frames)]
    _, outs, infos = _smooth(ls, logits)
    base = [decode_ab(lg[None], BINS)[0] for lg in logits]
    smooth = outs

    def on_object(t):  # pixels of the moving object, away from its edges
        mask = torch.zeros(96, 128, dtype=torch.bool)
        x0, y0, x1, y1 = spec["frames"][t][-1]["rect"]
        mask[y0 + 4:y1 - 4, x0 + 4:x1 - 4] = True
        return mask

    region = on_object if kind == "object" else None
    assert _warping_error(spec, smooth, region) < 0.5 * _warping_error(spec, base, region)
    from hf_colorize.models.colorization.image_processing_colorization import rgb_to_lab

    truth = [F.interpolate(rgb_to_lab(torch.from_numpy(f.copy()).permute(2, 0, 1).float()[None] / 255)[:, 1:],
                           size=(SIZE // 4, SIZE // 4), mode="area")[0] for f in frames]
    err_base = torch.stack([(b - g).norm(dim=0).mean() for b, g in zip(base, truth)]).mean()
    err_smooth = torch.stack([(s - g).norm(dim=0).mean() for s, g in zip(smooth, truth)]).mean()
    assert err_smooth <= err_base * 1.05
    assert all(0.3 < i.mean_weight <= TemporalConfig().strength for i in infos[1:])


@pytest.mark.slow
def test_palette_matching_holds_the_shot_distribution(photo_paths):
    """With palette matching each frame's a / b quantiles move onto the shot's running reference."""
    _, frames, ls, _ = _clip("pan", [photo_paths[1]], 6)
    logits = [_noisy_oracle_logits(f, i) for i, f in enumerate(frames)]
    _, plain, _ = _smooth(ls, logits, TemporalConfig(strength=0.0, palette_strength=0.0))
    sm, held, _ = _smooth(ls, logits, TemporalConfig(strength=0.0, palette_strength=1.0, palette_memory=0.9))
    levels = torch.linspace(0, 1, 33)

    def spread(seq):  # frame-to-frame change of the quantile functions
        qs = [torch.quantile(ab.reshape(2, -1), levels, dim=1) for ab in seq]
        return torch.stack([(a - b).abs().mean() for a, b in zip(qs[1:], qs)]).mean()

    assert spread(held) < 0.5 * spread(plain)
    torch.testing.assert_close(held[0], plain[0])  # the first frame of a shot is its own reference
