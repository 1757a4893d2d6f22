"""The hypercolumn family (Larsson et al., ECCV 2016): colour space, bins, loss, decoders, sparse vs dense
hypercolumns, config checks, save/load. Real photos from skimage; tiny networks so it stays fast."""

import math

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoConfig, AutoModel

import hf_colorize  # noqa: F401  (registers the Auto classes)
from hf_colorize.models.colorization.configuration_hypercolumn import HypercolumnConfig
from hf_colorize.models.colorization.image_processing_colorization import rgb_to_lab
from hf_colorize.models.colorization.modeling_hypercolumn import (
    HypercolumnColorizationModel,
    chromatic_fading_scale,
    circular_mean,
    decode_histogram,
    gaussian_quantile_bins,
    hue_chroma_to_rgb,
    rgb_to_hue_chroma,
)

TINY = dict(width_multiplier=0.125, hidden_size=32, image_size=64)


def tiny(**overrides):
    torch.manual_seed(0)
    return HypercolumnColorizationModel(HypercolumnConfig(**{**TINY, **overrides})).eval()


def photo_rgb(path, size=64) -> torch.Tensor:
    with Image.open(path) as im:
        im = im.convert("RGB").resize((size, size))
    return torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1).float() / 255.0


# -- colour space ---------------------------------------------------------------------------------
def test_hue_chroma_round_trip_keeps_rgb_and_lightness(photo_paths):
    rgb = torch.stack([photo_rgb(p, 96) for p in photo_paths[:4]])
    hue, chroma, lightness = rgb_to_hue_chroma(rgb)
    back = hue_chroma_to_rgb(hue, chroma, lightness)
    assert torch.allclose(back, rgb, atol=1e-5)
    assert torch.allclose(rgb_to_hue_chroma(back)[2], lightness, atol=1e-6)  # L passes through
    assert 0 <= hue.min() and hue.max() < 1 and 0 <= chroma.min() and chroma.max() <= 1
    assert (chroma > 0.2).float().mean() > 0.05  # the photos really carry colour


def test_hue_chroma_known_colours():
    rgb = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [0.5, 0.5, 0.5]]).T[:, :, None]  # (3, 4, 1)
    hue, chroma, lightness = rgb_to_hue_chroma(rgb)
    assert torch.allclose(hue[:3, 0], torch.tensor([0.0, 1 / 3, 2 / 3]), atol=1e-6)
    assert torch.allclose(chroma[:, 0], torch.tensor([1.0, 1.0, 1.0, 0.0]))
    assert torch.allclose(lightness[:, 0], torch.tensor([0.5, 0.5, 0.5, 0.5]))
    # too much chroma for a dark lightness is limited, never changing the lightness
    out = hue_chroma_to_rgb(torch.tensor([[0.0]]), torch.tensor([[1.0]]), torch.tensor([[0.1]]))
    assert torch.allclose(rgb_to_hue_chroma(out)[2], torch.tensor([[0.1]]), atol=1e-6)


def test_gaussian_quantile_bins_hold_equal_mass():
    edges, centres = gaussian_quantile_bins(32, 25.0)
    assert edges.shape == (31,) and centres.shape == (32,)
    assert abs(edges[15].item()) < 1e-5 and torch.all(torch.diff(edges) > 0)
    samples = torch.randn(200_000, generator=torch.Generator().manual_seed(0)) * 25.0
    counts = torch.bincount(torch.bucketize(samples, edges), minlength=32).float() / samples.numel()
    assert torch.allclose(counts, torch.full((32,), 1 / 32), atol=0.003)
    assert torch.all((centres[1:] > edges) & (centres[:-1] < edges))


# -- loss -----------------------------------------------------------------------------------------
def _direct_kl(logits, index):
    """KL(y || f) for a one-hot y: sum_k y_k log(y_k / f_k) with 0 log 0 = 0, written out."""
    f = torch.softmax(logits.double(), dim=0)
    y = torch.zeros_like(f)
    y[index] = 1.0
    return float(sum(y[k] * math.log(y[k] / f[k]) for k in range(len(f)) if y[k] > 0))


def test_hue_chroma_loss_is_the_papers_formula(photo_paths):
    model = tiny(color_space="hue-chroma", num_bins=8)
    torch.manual_seed(1)
    n = 6
    heads = {"hue": torch.randn(1, 8, n, 1), "chroma": torch.randn(1, 8, n, 1)}
    rgb = photo_rgb(photo_paths[0], 16).reshape(3, -1)[:, :n][None, :, :, None]  # 6 real pixels
    lab = rgb_to_lab(rgb)
    targets = model.targets(lab[:, :1], lab[:, 1:])
    got = model.loss(heads, targets).item()
    hue, chroma, _ = rgb_to_hue_chroma(rgb)
    want = 0.0
    for i in range(n):
        h_bin, c_bin = min(int(hue[0, i, 0] * 8), 7), min(int(chroma[0, i, 0] * 8), 7)
        want += _direct_kl(heads["chroma"][0, :, i, 0], c_bin) + 5.0 * chroma[0, i, 0].item() * _direct_kl(
            heads["hue"][0, :, i, 0], h_bin)
    assert got == pytest.approx(want / n, rel=1e-4)


def test_lab_marginal_loss_is_the_sum_of_two_kls():
    model = tiny(color_space="lab", num_bins=8)
    torch.manual_seed(2)
    heads = {"a": torch.randn(1, 8, 3, 1), "b": torch.randn(1, 8, 3, 1)}
    ab = torch.tensor([[-40.0, 0.5, 30.0], [12.0, -3.0, 70.0]])[None, :, :, None]
    targets = model.targets(torch.full((1, 1, 3, 1), 50.0), ab)
    edges = model.bin_edges
    want = sum(_direct_kl(heads[c][0, :, i, 0], int((ab[0, j, i, 0] > edges).sum()))
               for j, c in enumerate("ab") for i in range(3)) / 3
    assert model.loss(heads, targets).item() == pytest.approx(want, rel=1e-4)


# -- decoders -------------------------------------------------------------------------------------
def test_decoder_limits():
    centres = torch.linspace(-50, 50, 16)
    one_hot = torch.full((1, 16, 1, 1), -1e4)
    one_hot[0, 11] = 0.0
    for mode in ("median", "mode", "mean", "annealed_mean", "sample"):
        assert decode_histogram(one_hot, centres, mode).item() == pytest.approx(centres[11].item(), abs=1e-3)
    skewed = torch.log(torch.tensor([0.1, 0.2, 0.3, 0.4]))[None, :, None, None]
    assert decode_histogram(skewed, torch.arange(4.0), "median").item() == 2.0  # CDF 0.1, 0.3, 0.6: third bin
    assert decode_histogram(skewed, torch.arange(4.0), "mean").item() == pytest.approx(2.0)
    # a uniform hue histogram has |z| ~ 0; a one-hot one |z| = 1 at its bin
    hue, confidence = circular_mean(torch.zeros(1, 32, 1, 1), (torch.arange(32.0) + 0.5) / 32)
    assert confidence.item() < 1e-6
    one = torch.full((1, 32, 1, 1), -1e4)
    one[0, 5] = 0
    hue, confidence = circular_mean(one, (torch.arange(32.0) + 0.5) / 32)
    assert confidence.item() == pytest.approx(1.0) and hue.item() == pytest.approx(5.5 / 32)
    # fading is min(|z| / eta, 1): uncertain hues fade, confident ones keep their chroma
    assert chromatic_fading_scale(torch.tensor([0.0, 0.015, 0.03, 0.9]), 0.03).tolist() == pytest.approx([0, 0.5, 1, 1])


def test_uniform_hue_fades_to_gray_and_fading_can_be_turned_off():
    model = tiny(color_space="hue-chroma")
    k = model.config.num_bins
    chroma = torch.full((1, k, 2, 2), -1e4)
    chroma[:, k - 4] = 0.0  # confidently vivid
    logits = torch.cat([torch.zeros(1, k, 2, 2), chroma], dim=1)  # hue: uniform
    pixel_values = torch.zeros(1, 1, 8, 8)  # L = 50
    faded = model.decode(logits, pixel_values=pixel_values)
    assert faded.abs().max() < 0.01  # gray (to float precision of the Lab conversion)
    vivid = model.decode(logits, pixel_values=pixel_values, chromatic_fading=False)
    assert vivid.norm(dim=1).min() > 20
    with pytest.raises(ValueError, match="lightness"):
        model.decode(logits)
    with pytest.raises(ValueError, match="hue/chroma models only"):
        tiny(color_space="lab").decode(torch.zeros(1, 64, 2, 2), chromatic_fading=True)


def test_joint_lab_decodes_to_its_grid_cell():
    model = tiny(lab_histogram="joint", joint_bins=4)
    logits = torch.full((1, 16, 1, 1), -1e4)
    logits[0, 2 * 4 + 3] = 0  # a bin 2, b bin 3
    ab = model.decode(logits, decode_mode="mode")[0, :, 0, 0]
    c = model.bin_centres
    assert ab.tolist() == pytest.approx([c[2].item(), c[3].item()])


# -- hypercolumns ---------------------------------------------------------------------------------
def test_sparse_hypercolumns_equal_the_dense_map(photo_paths):
    model = tiny(hypercolumn_layers=["conv1_2", "conv2_2", "conv3_3", "conv4_3", "conv5_3", "fc6", "fc7"])
    rgb = torch.stack([photo_rgb(p, 64) for p in photo_paths[:2]])
    pixel_values = (rgb_to_lab(rgb)[:, :1] - 50) / 100
    g = torch.Generator().manual_seed(3)
    points = torch.randint(0, 64, (2, 40, 2), generator=g)
    points[0, 0] = torch.tensor([0, 0])  # corners and edges too
    points[0, 1] = torch.tensor([63, 63])
    with torch.no_grad():
        feats = model.features(pixel_values)
        sparse = model.hypercolumns(feats, points, (64, 64))
        dense = model.dense_hypercolumns(feats, (64, 64))
        at_points = torch.stack([dense[i, :, points[i, :, 1], points[i, :, 0]].T for i in range(2)])
        assert sparse.shape == (2, 40, dense.shape[1])
        assert torch.allclose(sparse, at_points, atol=1e-5)
        # h_fc1: sampled hypercolumns through the hidden layer == the dense projection at those pixels
        hidden_sparse = model.sparse_hidden(feats, points, (64, 64))[..., 0]
        hidden_dense = model.dense_hidden(feats, (64, 64))
        want = torch.stack([hidden_dense[i, :, points[i, :, 1], points[i, :, 0]] for i in range(2)])
        assert torch.allclose(hidden_sparse, want, atol=1e-4)
        # and the per-layer projection is exactly h_fc1 over the concatenated hypercolumn
        weight = torch.cat([model.h_fc1[n].weight[:, :, 0, 0] for n in model.config.hypercolumn_layers], dim=1)
        direct = torch.relu(sparse @ weight.T + model.h_fc1_bias)
        assert torch.allclose(direct.transpose(1, 2), hidden_sparse, atol=1e-4)


def test_training_is_sparse_and_inference_dense(photo_paths):
    model = tiny(sample_pixels=16)
    rgb = torch.stack([photo_rgb(p, 64) for p in photo_paths[:2]])
    lab = rgb_to_lab(rgb)
    pixel_values, labels = (lab[:, :1] - 50) / 100, lab[:, 1:]
    model.train()
    out = model(pixel_values, labels=labels)
    assert out.logits.shape == (2, 64, 16, 1) and out.sampled_points.shape == (2, 16, 2)
    out.loss.backward()
    assert model.convs["conv1_1"].weight.grad.abs().sum() > 0
    model.eval()
    out = model(pixel_values)
    assert out.logits.shape == (2, 64, 16, 16) and out.ab.shape == (2, 2, 16, 16)
    assert set(out.head_logits) == {"a", "b"}
    assert model(pixel_values, labels=labels).loss > 0  # eval: dense loss on the output grid


def test_trunk_stops_at_the_deepest_layer():
    model = tiny(hypercolumn_layers=["conv1_2", "conv3_3"])
    assert list(model.convs)[-1] == "conv3_3" and model.fc6 is None and model.fc7 is None
    assert set(model.features(torch.zeros(1, 1, 32, 32))) == {"conv1_2", "conv3_3"}


@pytest.mark.slow
def test_tiny_model_learns_a_photo(photo_paths):
    """A few hundred sparse steps on one photo: the loss drops well below log K per head."""
    model = tiny(sample_pixels=64, norm_type="batch", hypercolumn_layers=["conv1_2", "conv2_2", "conv3_3"])
    lab = rgb_to_lab(photo_rgb(photo_paths[1], 64)[None])
    pixel_values, labels = (lab[:, :1] - 50) / 100, lab[:, 1:]
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    losses = []
    for _ in range(120):
        loss = model(pixel_values, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(2 * math.log(32), rel=0.05)
    assert np.mean(losses[-10:]) < 0.8 * losses[0]


# -- config and persistence ----------------------------------------------------------------------
@pytest.mark.parametrize("bad, message", [
    (dict(hypercolumn_layers=["conv3_3", "conv1_2"]), "network order"),
    (dict(hypercolumn_layers=["conv1_2", "pool5"]), "hypercolumn_layers must be"),
    (dict(hypercolumn_layers=[]), "hypercolumn_layers must be"),
    (dict(num_bins=1), "num_bins must be at least 2"),
    (dict(color_space="hsv"), "color_space must be"),
    (dict(lab_histogram="both"), "lab_histogram"),
    (dict(fc6_kernel_size=4), "odd"),
    (dict(decode_mode="best"), "decode_mode"),
])
def test_inconsistent_config_fails_in_one_line(bad, message):
    with pytest.raises(ValueError, match=message) as err:
        HypercolumnConfig(**bad)
    assert "\n" not in str(err.value)


def test_bad_config_json_fails_at_load(tmp_path):
    tiny().save_pretrained(tmp_path)
    text = (tmp_path / "config.json").read_text().replace('"conv1_2"', '"conv9_9"')
    (tmp_path / "config.json").write_text(text)
    with pytest.raises(ValueError, match="hypercolumn_layers"):
        AutoModel.from_pretrained(tmp_path)


def test_save_load_round_trip_through_auto_classes(tmp_path, photo_paths):
    model = tiny(color_space="hue-chroma")
    model.save_pretrained(tmp_path)
    assert isinstance(AutoConfig.from_pretrained(tmp_path), HypercolumnConfig)
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, HypercolumnColorizationModel)
    assert torch.equal(loaded.bin_centres, model.bin_centres)  # non-persistent, rebuilt from the config
    pixel_values = (rgb_to_lab(photo_rgb(photo_paths[0], 64)[None])[:, :1] - 50) / 100
    with torch.no_grad():
        assert torch.equal(loaded(pixel_values).ab, model(pixel_values).ab)
