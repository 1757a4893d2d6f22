"""`hf-colorize evaluate --hints / --reference` (`hf_colorize.evaluation.guidance`) on real skimage photos."""

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from hf_colorize.cli import main
from hf_colorize.evaluation import guidance as G
from hf_colorize.models.colorization.image_processing_colorization import rgb_to_lab


def _main(argv) -> int:
    try:
        return main(argv)
    except SystemExit as stop:
        return stop.code


def _photo(path, max_side=512):
    with Image.open(path) as im:
        return G.resize_photo(im.convert("RGB"), max_side)


def _truth_ab(rgb):
    return rgb_to_lab(torch.from_numpy(rgb).permute(2, 0, 1).float() / 255.0)[1:]


@pytest.fixture(scope="module")
def default_colorizer(default_model_dir):
    from hf_colorize.common import load_colorizer

    return load_colorizer(str(default_model_dir))


@pytest.fixture(scope="module")
def labelled_folder(photo_paths, tmp_path_factory):
    """Five photos named <label>_<id>.jpg: two cats, two cups (each pair: the photo and a crop of it), and a
    rocket with no partner."""
    folder = tmp_path_factory.mktemp("labelled")
    chelsea, coffee, rocket = (Image.open(photo_paths[i]).convert("RGB") for i in (2, 1, 3))
    chelsea.save(folder / "cat_a.jpg")
    chelsea.crop((40, 20, 400, 280)).save(folder / "cat_b.jpg")
    coffee.save(folder / "cup_a.jpg")
    coffee.crop((30, 10, 280, 190)).save(folder / "cup_b.jpg")
    rocket.save(folder / "rocket_a.jpg")
    return folder


# -- hint sampling ---------------------------------------------------------------------------------
def test_patches_are_deterministic_nested_and_inside_the_image():
    width, height = 37, 23
    a = G.sample_patches(width, height, 60, G.photo_rng(0, "dir/n01_x.jpg"))
    assert np.array_equal(a, G.sample_patches(width, height, 60, G.photo_rng(0, "other/n01_x.jpg")))  # the file name
    assert np.array_equal(a[:10], G.sample_patches(width, height, 10, G.photo_rng(0, "n01_x.jpg")))  # nested
    assert not np.array_equal(a, G.sample_patches(width, height, 60, G.photo_rng(1, "n01_x.jpg")))  # the seed
    assert not np.array_equal(a, G.sample_patches(width, height, 60, G.photo_rng(0, "n02_y.jpg")))  # per photo
    x0, y0, side = a.T
    assert (side >= 1).all() and (side <= 9).all() and len(set(side.tolist())) > 5
    assert (x0 >= 0).all() and (y0 >= 0).all() and (x0 + side <= width).all() and (y0 + side <= height).all()
    tiny = G.sample_patches(3, 5, 40, G.photo_rng(0, "t.jpg"))  # sides never exceed a tiny image
    assert (tiny[:, 2] <= 3).all() and (tiny[:, 0] + tiny[:, 2] <= 3).all() and (tiny[:, 1] + tiny[:, 2] <= 5).all()


def test_hint_colour_is_the_patch_mean_at_its_centre(photo_paths, default_colorizer):
    from skimage.color import rgb2lab

    rgb = _photo(photo_paths[0])  # astronaut
    patches = G.sample_patches(rgb.shape[1], rgb.shape[0], 30, G.photo_rng(0, "astronaut.jpg"))
    hints = G.patch_hints(_truth_ab(rgb), patches)
    lab = rgb2lab(rgb)  # an independent Lab conversion
    for (x0, y0, side), hint in zip(patches, hints):
        expected = lab[y0:y0 + side, x0:x0 + side, 1:].reshape(-1, 2).mean(0)
        assert hint["ab"] == pytest.approx(expected.tolist(), abs=0.05)
        assert x0 <= hint["x"] < x0 + side and y0 <= hint["y"] < y0 + side
        if side % 2:  # odd sides: exactly the centre pixel
            assert (int(hint["x"]), int(hint["y"])) == (x0 + side // 2, y0 + side // 2)
    g = default_colorizer.guidance(rgb.shape[1], rgb.shape[0], hints=hints)  # the public API takes them
    assert len(g.hints) == 30 and g.hints[0].ab == pytest.approx(hints[0]["ab"])


def test_photo_labels():
    assert G.photo_label("n01440764_tench.JPEG") == "n01440764"
    assert G.photo_label("a/b/n01440764_tench_008028e349.jpg") == "n01440764"
    assert G.photo_label("forest_1a2b.jpg") == "forest"
    assert G.photo_label("astronaut.jpg") is None and G.photo_label("_x.jpg") is None


def test_resize_photo_downscales_only(photo_paths):
    with Image.open(photo_paths[2]) as im:  # 451 x 300
        assert G.resize_photo(im, 200).shape == (133, 200, 3)
        assert G.resize_photo(im, 512).shape == (300, 451, 3)
        assert G.resize_photo(im, 0).shape == (300, 451, 3)


# -- the cached path is the public API -------------------------------------------------------------
def test_guided_photo_equals_the_public_api(photo_paths, default_colorizer):
    c = default_colorizer
    photos = [_photo(photo_paths[1], 256), _photo(photo_paths[2], 256)]
    hints = [G.patch_hints(_truth_ab(p), G.sample_patches(p.shape[1], p.shape[0], 20, G.photo_rng(0, str(i))))
             for i, p in enumerate(photos)]
    guided = G.GuidedPhoto.batch(c, photos)  # one network pass for both, as the Colorizer batches them
    expected = c(photos, hints=hints, output_type="np", batch_size=2)
    for photo, h, want in zip(guided, hints, expected):
        assert np.array_equal(photo.render(photo.guidance(hints=h)), want)
    single = G.GuidedPhoto.batch(c, photos[:1])[0]
    assert np.array_equal(single.render(None), c(photos[0], output_type="np"))
    assert np.array_equal(single.render(single.guidance(hints=hints[0][:5])), c(photos[0], hints=hints[0][:5], output_type="np"))
    dist = c.reference_distribution(photos[0])  # read once, used for every strength
    assert np.array_equal(single.render(single.guidance(reference=dist, reference_strength=0.5)),
                          c(photos[0], reference=photos[0], reference_strength=0.5, output_type="np"))


def test_hint_trained_model_reruns_the_network_and_equals_the_public_api(photo_paths):
    from hf_colorize import ColorizationConfig, ColorizationImageProcessor, ColorizationModel, Colorizer

    torch.manual_seed(0)
    model = ColorizationModel(ColorizationConfig(width_multiplier=0.125, hint_inputs=True, global_hints=True)).eval()
    with torch.no_grad():  # the hint layers start at zero (a grown model = the plain one): make them count
        for module in (model.local_hints, model.global_hints):
            for p in module.parameters():
                p.normal_(0.0, 0.3)
    c = Colorizer(model, ColorizationImageProcessor(size=64))
    rgb = _photo(photo_paths[0], 128)
    hints = G.patch_hints(_truth_ab(rgb), G.sample_patches(rgb.shape[1], rgb.shape[0], 10, G.photo_rng(0, "a")))
    photo = G.GuidedPhoto.batch(c, [rgb])[0]
    with_hints = photo.render(photo.guidance(hints=hints))
    assert np.array_equal(with_hints, c(rgb, hints=hints, output_type="np"))
    assert np.array_equal(photo.render(photo.guidance(reference=rgb)), c(rgb, reference=rgb, output_type="np"))
    assert not np.array_equal(with_hints, photo.render(None))  # the hints reached the network


# -- the crude baseline ----------------------------------------------------------------------------
def test_crude_baseline_pins_the_hint_cell_and_fades(default_colorizer):
    from hf_colorize.models.colorization.guidance_colorization import Hint
    from hf_colorize.models.colorization.modeling_colorization import soft_encode

    bins = default_colorizer.model.ab_bins
    logits = torch.randn(bins.shape[0], 20, 20) * 3
    l_cells = torch.full((20, 20), 50.0)
    l_cells[:, 15:] = 90.0  # a lightness edge: cells across it barely feel the hint
    hint = Hint(x=50.0, y=50.0, ab=(40.0, 30.0))  # a 100 x 100 photo: cell (10, 10)
    out = G.crude_hint_logits(logits, [hint], 100, 100, l_cells, bins)
    idx, _ = soft_encode(torch.tensor(hint.ab).view(1, 2, 1, 1), bins)
    mass = torch.softmax(out, 0)[idx.flatten()].sum(0)  # probability on the hint's 5 bins
    before = torch.softmax(logits, 0)[idx.flatten()].sum(0)
    assert mass[10, 10] > 0.999 and before[10, 10] < 0.2
    assert mass[10, 12] > before[10, 12] + 0.3  # 2 cells away, same lightness
    assert abs(mass[10, 16] - before[10, 16]) < 0.01  # across the edge (dL = 40: weight ~ 3e-4)
    assert abs(mass[0, 0] - before[0, 0]) < 1e-3  # far away
    assert torch.equal(G.crude_hint_logits(logits, [], 100, 100, l_cells, bins), logits)


# -- real photos, the embedded default model -------------------------------------------------------
def test_psnr_rises_with_hints_on_real_photos(photo_paths, default_model_dir):
    r = G.evaluate_guidance([str(default_model_dir)], [str(p) for p in photo_paths[:3]], hint_counts=[0, 10, 50],
                            max_side=256)
    assert r["hints"]["counts"] == [0, 10, 50] and r["num_images"] == 3
    curves = {c["method"]: c for c in r["hints"]["curves"]}
    for method in ("model", "crude"):
        psnr = curves[method]["psnr"]
        assert psnr[0] < psnr[1] < psnr[2], (method, psnr)
        assert psnr[2] - psnr[0] > 1.0, (method, psnr)
        assert curves[method]["psnr_gain"][0] == 0.0
    assert curves["model"]["psnr"][0] == curves["crude"]["psnr"][0]  # 0 hints: the same plain colorization


def test_reference_self_lifts_hue_accuracy(photo_paths, default_model_dir):
    r = G.evaluate_guidance([str(default_model_dir)], [str(photo_paths[1])], hint_counts=None, reference="self",
                            reference_strengths=[1.0], max_side=256)
    assert r["hints"] is None
    row = r["reference"]["results"][0]
    assert row["with"][0]["strength"] == 1.0
    assert row["with"][0]["hue_accuracy"] > row["without"]["hue_accuracy"] + 0.05, row


def test_reference_other_uses_a_partner_never_the_photo_itself(labelled_folder, tiny_model_dir):
    files = sorted(str(p) for p in labelled_folder.iterdir())
    r = G.evaluate_guidance([str(tiny_model_dir)], files, hint_counts=None, reference="other",
                            reference_pool=labelled_folder, reference_strengths=[0.5, 2], max_side=96)
    ref = r["reference"]
    assert r["num_images"] == 5 and ref["num_images"] == 4
    assert ref["no_partner"] == 1 and ref["no_partner_keys"][0].endswith("rocket_a.jpg")
    partners = {k.rsplit("/", 1)[-1]: v for k, v in ref["partners"].items()}
    assert partners == {"cat_a.jpg": "cat_b.jpg", "cat_b.jpg": "cat_a.jpg", "cup_a.jpg": "cup_b.jpg", "cup_b.jpg": "cup_a.jpg"}
    assert [w["strength"] for w in ref["results"][0]["with"]] == [0.5, 2.0]
    again = G.evaluate_guidance([str(tiny_model_dir)], files, hint_counts=None, reference="other",
                                reference_pool=labelled_folder, reference_strengths=[0.5, 2], max_side=96)
    assert again["reference"]["results"] == ref["results"]  # fixed seed


# -- the command line ------------------------------------------------------------------------------
def test_cli_writes_table_json_and_plot(labelled_folder, tiny_model_dir, tmp_path, capsys):
    out_json, plot = tmp_path / "g.json", tmp_path / "g.png"
    rc = main(["evaluate", "--model", str(tiny_model_dir), "--model", str(tiny_model_dir), "--dataset",
               str(labelled_folder), "--hints", "5,0,2", "--reference", "other", "--reference-pool",
               str(labelled_folder), "--reference-strength", "1", "--max-side", "96", "--json", str(out_json),
               "--plot", str(plot)])
    assert rc == 0
    table = capsys.readouterr().out
    data = json.loads(out_json.read_text())
    assert {"mode", "models", "dataset", "split", "num_images", "skipped", "protocol", "hints", "reference"} <= set(data)
    assert data["num_images"] == 5 and data["split"] is None and len(data["models"]) == 2
    assert data["models"][1]["name"].endswith("#2")  # the same folder twice: two distinct curves
    assert data["hints"]["counts"] == [0, 2, 5]
    curves = data["hints"]["curves"]
    assert sorted((c["model"] == data["models"][0]["name"], c["method"]) for c in curves) == [
        (False, "crude"), (False, "model"), (True, "crude"), (True, "model")]
    for c in curves:
        assert all(len(c[k]) == 3 for k in G.SCALARS + ("psnr_gain",))
        assert f"{c['psnr'][2]:.2f}" in next(line for line in table.splitlines() if line.startswith(c["label"]))
    ref = data["reference"]
    assert ref["mode"] == "other" and ref["num_images"] == 4 and ref["no_partner"] == 1
    assert set(ref["results"][0]) == {"model", "without", "with"} and set(G.SCALARS) <= set(ref["results"][0]["without"])
    assert "PSNR dB by number of hints" in table and "without a partner skipped" in table
    with Image.open(plot) as im:
        assert im.format == "PNG" and im.width >= 1000  # two panels


def test_cli_constants_match_the_module():
    from hf_colorize.cli import evaluate as cli
    from hf_colorize.models.colorization.guidance_colorization import MAX_HINTS

    assert cli.HINT_COUNTS == G.HINT_COUNTS and cli.METHODS == G.METHODS and cli.REFERENCE_MODES == G.REFERENCE_MODES
    assert cli.DEFAULT_STRENGTHS == G.DEFAULT_STRENGTHS and cli.DEFAULT_MAX_SIDE == G.DEFAULT_MAX_SIDE
    assert cli.MAX_HINTS == MAX_HINTS


@pytest.mark.parametrize("case, extra, code, expected", [
    ("unknown method", ["--hints", "0,1", "--hint-methods", "model,magic"], 2, "hint method 'magic': unknown method"),
    ("negative count", ["--hints", "0,-1"], 2, "hint count '-1': must be >= 0"),
    ("too many", ["--hints", "20000"], 2, "must be at most 10000"),
    ("bad strength", ["--reference", "self", "--reference-strength", "1,x"], 2, "reference strength 'x'"),
    ("no pool", ["--reference", "other"], 2, "--reference other needs --reference-pool"),
    ("pool without partners", ["--reference", "other", "--reference-pool", "POOL", "--max-side", "64"], 1,
     "no photo has a partner"),
    ("pool missing", ["--reference", "other", "--reference-pool", "MISSING"], 1, "no such folder"),
    ("crop with hints", ["--hints", "--size", "64"], 2, "--size applies to the plain evaluation"),
    ("guidance flag alone", ["--max-side", "256"], 2, "--max-side needs --hints or --reference"),
    ("two models plain", ["--model", "TINY"], 2, "--model can be given several times only with"),
])
def test_bad_flags_are_one_line(case, extra, code, expected, photo_paths, tiny_model_dir, many_photo_files, tmp_path,
                                capsys):
    data = tmp_path / "photos"  # names without a label (astronaut.jpg ...)
    data.mkdir()
    for p in photo_paths[:2]:
        shutil.copy(p, data / p.name)
    pool = many_photo_files[0].parent  # labels n000, n001, ...: none matches
    extra = [str(pool) if a == "POOL" else str(tmp_path / "nope") if a == "MISSING" else
             str(tiny_model_dir) if a == "TINY" else a for a in extra]
    rc = _main(["evaluate", "--model", str(tiny_model_dir), "--dataset", str(data)] + extra)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == code, err
    assert len(err) == 1 and err[0].startswith("hf-colorize evaluate: error:"), err
    assert expected in err[0]
