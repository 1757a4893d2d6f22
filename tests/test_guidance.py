"""Training-free guidance (hints and a reference) through the one inference path, on real photos
(`skimage.data`) with the embedded default model: what hints and references do to the colours, that L never
changes, and the one-line errors for bad guidance."""

import json
import re

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data
from transformers import pipeline

import hf_colorize
from hf_colorize import Colorizer
from hf_colorize.models.colorization.guidance_colorization import (
    MAX_HINTS,
    GuidanceError,
    HintField,
    color_to_ab,
    fallback_prior,
    model_prior,
    parse_color,
    parse_hints,
    reference_distribution,
)
from hf_colorize.models.colorization.image_processing_colorization import rgb_to_lab
from tests.cli_helpers import run_cli


@pytest.fixture(scope="module")
def colorizer(plain_default_dir):
    return Colorizer.from_pretrained(plain_default_dir)  # a plain bin model: the training-free path


@pytest.fixture(scope="module")
def astronaut():
    return np.asarray(Image.fromarray(data.astronaut()).resize((256, 256), Image.BICUBIC))


def _lab(rgb_uint8):
    return rgb_to_lab(torch.from_numpy(np.ascontiguousarray(rgb_uint8)).permute(2, 0, 1).float() / 255.0)


# -- parsing ---------------------------------------------------------------------------------------
def test_colours_parse_in_every_accepted_form():
    assert parse_color("#b22222") == (178, 34, 34) == parse_color("firebrick") == parse_color((178, 34, 34))
    assert parse_color("#fff") == (255, 255, 255)
    assert parse_color(np.array([1.0, 2.0, 3.0])) == (1, 2, 3)
    for bad in ("#12", "not-a-colour", (300, 0, 0), (1, 2), (True, 0, 0), (float("nan"), 0, 0), None):
        with pytest.raises(GuidanceError, match="is not a colour"):
            parse_color(bad, "hint 4")
    a, b = color_to_ab((255, 0, 0))
    assert a == pytest.approx(80.1, abs=0.2) and b == pytest.approx(67.2, abs=0.2)  # sRGB red in CIE Lab


def test_hints_parse_and_each_bad_hint_is_named():
    hints = parse_hints([(10, 20, "red"), {"x": 0, "y": 0, "color": (0, 0, 255)}, {"x": 5.5, "y": 1, "ab": (10, -20)}],
                        width=64, height=32)
    assert [(h.x, h.y) for h in hints] == [(10, 20), (0, 0), (5.5, 1)]
    assert hints[2].ab == (10.0, -20.0) and hints[2].rgb is None and hints[0].rgb == (255, 0, 0)
    cases = {
        "hint 1: (64, 3) is outside the 64x32 image": [(1, 1, "red"), (64, 3, "red")],
        "hint 0: (-1, 3) is outside": [(-1, 3, "red")],
        "hint 0: 'mauvish' is not a colour": [(1, 1, "mauvish")],
        "hint 0: unknown key(s) 'colr'": [{"x": 1, "y": 1, "colr": "red"}],
        "hint 0: needs 'x', 'y' and one 'color'": [{"x": 1, "color": "red"}],
        "hint 2: y must be a finite number": [(1, 1, "red"), (2, 2, "red"), (1, float("inf"), "red")],
        "hint 0: ab (200, 0) is outside CIE Lab's range": [{"x": 1, "y": 1, "ab": (200, 0)}],
        "hint 0: (1, 2) is not (x, y, colour)": [(1, 2)],
        "hints must be a list": "red",
    }
    for message, bad in cases.items():
        with pytest.raises(GuidanceError, match=re.escape(message)):
            parse_hints(bad, 64, 32)
    with pytest.raises(GuidanceError, match=f"{MAX_HINTS + 1} hints, over the limit of {MAX_HINTS}"):
        parse_hints([(1, 1, "red")] * (MAX_HINTS + 1), 64, 32)


# -- the edge-aware spread ---------------------------------------------------------------------------
def test_hint_field_is_one_at_the_hint_and_stops_at_edges():
    """On a photo-like step (dark left half, bright right half), a hint's confidence is 1 at the hint, decays
    with distance, and is far lower across the edge than at the same distance on its own side."""
    l_full = torch.full((1, 128, 256), 30.0)
    l_full[..., 128:] = 70.0
    hint = parse_hints([(96, 64, "#1e90ff")], 256, 128)
    field = HintField.from_hints(hint, l_full, sigma_space=0.1, sigma_range=10.0)
    conf = field.confidence[0]
    assert conf[64, 96] == pytest.approx(1.0)
    assert 1 > conf[64, 76] > conf[64, 50] > conf[64, 10] > 0  # decays with distance on its own side
    same_side, across = conf[64, 96 - 45], conf[64, 96 + 45]  # both 45 px away
    assert across < 0.05 * same_side
    assert torch.allclose(field.ab[:, 64, 96], torch.tensor(hint[0].ab), atol=1e-3)


def test_hints_pin_colours_and_never_change_lightness(colorizer, astronaut):
    """A red hint on the astronaut's white suit and a blue one on the background: the output there is the
    hint's colour (within 2 ab units), the hinted region turns that way, and L equals the photo's."""
    hints = [{"x": 60, "y": 200, "color": "#c81e1e"}, {"x": 230, "y": 30, "color": (40, 80, 220)}]
    plain = colorizer(astronaut, output_type="lab")
    guided = colorizer(astronaut, output_type="lab", hints=hints)
    assert torch.equal(guided[0], plain[0])  # L is the photo's, untouched
    for hint in parse_hints(hints, 256, 256):
        at = guided[1:, int(hint.y), int(hint.x)]
        assert torch.dist(at, torch.tensor(hint.ab, dtype=torch.float32)) < 2.0, (at, hint.ab)
        before = plain[1:, int(hint.y), int(hint.x)]
        assert torch.dist(before, torch.tensor(hint.ab, dtype=torch.float32)) > 20.0  # the model alone differs
    # the suit around the red hint is reddish now (a > 15), it was near neutral before
    patch = (slice(190, 211), slice(50, 71))
    assert guided[1][patch].mean() > 15 and plain[1][patch].mean().abs() < 10
    # the 8-bit RGB output keeps L too (up to 8-bit rounding)
    rgb = np.asarray(colorizer(astronaut, hints=hints))
    np.testing.assert_allclose(_lab(rgb)[0].numpy(), _lab(astronaut)[0].numpy(), atol=1.0)


def _gray(rgb):
    return np.asarray(Image.fromarray(rgb).convert("L"))


# -- reference / global colours --------------------------------------------------------------------
def test_reference_distribution_of_images_and_colours(colorizer):
    bins = colorizer.model.ab_bins
    green = np.zeros((40, 60, 3), np.uint8)
    green[..., 1] = 160
    dist = reference_distribution(green, bins)
    assert dist.sum() == pytest.approx(1.0, abs=1e-5) and (dist >= 0).all()
    mean_ab = (dist[:, None] * bins).sum(0)
    assert torch.allclose(mean_ab, torch.tensor(color_to_ab((0, 160, 0)), dtype=torch.float32), atol=4.0)
    assert torch.allclose(reference_distribution(["#00a000"], bins), dist, atol=1e-5)  # one colour = that image
    two = reference_distribution({"#00a000": 3, "#ff0000": 1}, bins)
    assert (two[:, None] * bins).sum(0)[0] > mean_ab[0]  # red pulls a up
    assert reference_distribution("#00a000", bins).argmax() == dist.argmax()


def test_reference_pulls_colours_towards_it_and_keeps_l(colorizer):
    """The ground truth as reference (the prior swap) moves the colours of the gray photo towards the true
    ones (the mean ab error to the ground truth drops by over 30%); L is unchanged; strength 0 is no change."""
    photo = np.asarray(Image.fromarray(data.coffee()).resize((200, 150), Image.BICUBIC))
    truth = _lab(photo)
    gray = _gray(photo)
    plain = colorizer(gray, output_type="lab")
    base = (plain[1:] - truth[1:]).norm(dim=0).mean().item()
    for strength in (0.5, 1.0):
        out = colorizer(gray, output_type="lab", reference=photo, reference_strength=strength)
        assert torch.equal(out[0], plain[0])
        error = (out[1:] - truth[1:]).norm(dim=0).mean().item()
        assert error < 0.7 * base, (strength, base, error)
    off = colorizer(gray, output_type="lab", reference=photo, reference_strength=0.0)
    assert torch.equal(off, plain)


def test_hint_trained_default_takes_the_reference_with_its_strength():
    """The embedded default feeds the reference to its global-hint input; the strength scales what it does:
    0 is no change; 0.5 (the default) and 1 both lower the error to the true colours, 0.5 the most here."""
    hinted = Colorizer.from_pretrained(hf_colorize.DEFAULT_MODEL)
    assert hinted.hint_inputs == (True, True)
    photo = np.asarray(Image.fromarray(data.coffee()).resize((200, 150), Image.BICUBIC))
    truth, gray = _lab(photo), _gray(photo)
    plain = hinted(gray, output_type="lab")
    errors = []
    for strength in (0.0, 0.5, 1.0):
        out = hinted(gray, output_type="lab", reference=photo, reference_strength=strength)
        assert torch.equal(out[0], plain[0])
        errors.append((out[1:] - truth[1:]).norm(dim=0).mean().item())
    assert errors[0] == pytest.approx((plain[1:] - truth[1:]).norm(dim=0).mean().item(), abs=1e-4)
    assert errors[1] < 0.6 * errors[0] and errors[1] < errors[2] < 0.8 * errors[0], errors


def test_weights_without_a_prior_use_the_documented_fallback(colorizer, tiny_model_dir):
    tiny = Colorizer.from_pretrained(tiny_model_dir)
    assert torch.allclose(model_prior(tiny.model), fallback_prior(tiny.model.ab_bins))
    trained = model_prior(colorizer.model)
    assert torch.allclose(trained, colorizer.model.bin_prior / colorizer.model.bin_prior.sum())
    # the fallback is a fit to the trained prior: they peak at the same neutral bin
    assert fallback_prior(colorizer.model.ab_bins).argmax() == trained.argmax()


def test_bad_references_are_one_line(colorizer, astronaut, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    for reference, message in ((str(tmp_path / "missing.jpg"), "no such file, and not a colour"),
                               (str(text), f"reference {text}: not a recognised image format"),
                               ({"#ff0000": -1}, "weights must be >= 0"),
                               (["#ff0000", "blurple"], "reference colour 1: 'blurple' is not a colour"),
                               (torch.ones(5), "a distribution must have 313 finite entries")):
        with pytest.raises(GuidanceError, match=message) as info:
            colorizer(astronaut, reference=reference)
        assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="reference_strength must be a finite number >= 0"):
        colorizer(astronaut, reference="#ff0000", reference_strength=-1)


# -- batches, the pipeline, models that cannot take guidance -----------------------------------------
def test_batch_hints_by_position_and_by_name_and_a_bad_hint_costs_one_image(colorizer, photo_paths):
    paths = [str(p) for p in photo_paths[:3]]
    hint = [{"x": 5, "y": 5, "color": "#ff00ff"}]
    by_position = colorizer(paths, hints=[hint, None, hint], output_type="lab")
    by_name = colorizer(paths, hints={paths[0]: hint, photo_paths[2].name: hint}, output_type="lab")
    for a, b in zip(by_position, by_name):
        assert torch.equal(a, b)
    alone = colorizer(paths[1], output_type="lab")
    assert torch.equal(by_position[1], alone)
    results = dict(colorizer.colorize_iter(paths, hints=[hint, [(99999, 0, "red")], hint]))
    assert isinstance(results[1], GuidanceError) and "hint 0: (99999, 0) is outside" in str(results[1])
    assert all(isinstance(results[i], Image.Image) for i in (0, 2))
    with pytest.raises(GuidanceError, match="hints for 'elsewhere.png', which is not among the images"):
        colorizer(paths, hints={"elsewhere.png": hint})
    with pytest.raises(GuidanceError, match="one list per image"):
        colorizer(paths, hints=hint)
    with pytest.raises(GuidanceError, match="hints belong to an image"):
        Colorizer(colorizer.model, hints=hint)


@pytest.mark.parametrize("which", ["plain", "hint-trained"])
def test_pipeline_takes_the_same_guidance(which, colorizer, astronaut):
    if which == "hint-trained":  # the embedded default: hints and the reference go to its network inputs
        colorizer = Colorizer.from_pretrained(hf_colorize.DEFAULT_MODEL)
    colorize = pipeline("image-colorization", model=colorizer.model, image_processor=colorizer.image_processor)
    hints = [(60, 200, "#c81e1e")]
    ours = colorizer(astronaut, hints=hints, reference=["#87ceeb"], output_type="np")
    theirs = colorize(astronaut, hints=hints, reference=["#87ceeb"], output_type="np")
    np.testing.assert_array_equal(ours, theirs)
    both = colorize([astronaut, astronaut], hints=[hints, None], output_type="np")
    np.testing.assert_array_equal(both[0], colorizer(astronaut, hints=hints, output_type="np"))
    np.testing.assert_array_equal(both[1], colorizer(astronaut, output_type="np"))
    with pytest.raises(GuidanceError, match="hint 0"):
        colorize(astronaut, hints=[(999, 0, "red")])


def test_predicted_color_is_the_output_pixel(colorizer, astronaut):
    out = np.asarray(colorizer(astronaut))
    hex_colour = colorizer.predicted_color(astronaut, 100, 120)
    assert np.abs(np.array(parse_color(hex_colour)) - out[120, 100].astype(int)).max() <= 1
    hinted = colorizer.predicted_color(astronaut, 100, 120, hints=[(100, 120, "#2040c0")])
    assert np.abs(np.array(parse_color(hinted)) - np.array(parse_color(hex_colour))).max() > 20
    with pytest.raises(GuidanceError, match="outside the 256x256 image"):
        colorizer.predicted_color(astronaut, 300, 5)


def test_hypercolumn_models_refuse_guidance_in_one_line(tiny_hypercolumn_dir, astronaut):
    colorizer = Colorizer.from_pretrained(tiny_hypercolumn_dir)
    with pytest.raises(GuidanceError, match="hints: guidance .* needs an ECCV16-family bin model"):
        colorizer(astronaut, hints=[(1, 1, "red")])
    with pytest.raises(GuidanceError, match="reference: guidance"):
        colorizer(astronaut, reference="#ff0000")


# -- the command line -------------------------------------------------------------------------------
def test_cli_hints_and_reference(tmp_path, photo_paths, capsys):
    photo = Image.open(photo_paths[0]).convert("L")
    photo.save(tmp_path / "a.png")
    photo.save(tmp_path / "b.png")
    Image.fromarray(data.coffee()).save(tmp_path / "ref.jpg")
    (tmp_path / "hints.json").write_text(json.dumps({"a.png": [{"x": 4, "y": 4, "color": "#ff0000"}],
                                                     "b.png": [{"x": 10 ** 6, "y": 0, "color": "red"}]}))
    code, _, err = run_cli(["colorize", tmp_path / "a.png", tmp_path / "b.png", "-o", tmp_path / "out",
                            "--hints", tmp_path / "hints.json", "--reference", tmp_path / "ref.jpg"], capsys)
    assert code == 1  # b.png's hint is outside; a.png is still done
    assert any("b.png: hint 0: (1e+06, 0) is outside" in line for line in err), err
    out = np.asarray(Image.open(tmp_path / "out" / "a_colorized.png"))
    assert int(out[4, 4, 0]) > int(out[4, 4, 2]) + 40  # the red hint
    assert not (tmp_path / "out" / "b_colorized.png").exists()
    (tmp_path / "list.json").write_text(json.dumps([{"x": 4, "y": 4, "color": "#ff0000"}]))
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "other.json").write_text(json.dumps({"c.png": []}))
    for args, message in (
        (["--hints", tmp_path / "list.json"], "one list of hints but there are 2 inputs"),
        (["--hints", tmp_path / "bad.json"], "not valid JSON"),
        (["--hints", tmp_path / "other.json"], "hints for 'c.png', which is not among the inputs"),
        (["--reference", tmp_path / "nope.jpg"], "no such file, and not a colour"),
    ):
        code, _, err = run_cli(["colorize", tmp_path / "a.png", tmp_path / "b.png", "-o", tmp_path / "o2"] + args, capsys)
        assert code == 2 and len(err) == 1 and message in err[0], err
