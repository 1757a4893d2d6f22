"""The hypercolumn family through the one inference path: pipeline, Colorizer decode options (chromatic
fading), CLI, evaluation, Hub dry-run push, ONNX export, the embedded hypercolumn model, and the one-line
errors where an option or a command does not fit the model."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoModel, pipeline

import hf_colorize
from cli_helpers import run_cli
from hf_colorize import Colorizer
from hf_colorize.models.colorization.image_processing_colorization import rgb_to_lab


def lab_of(image) -> torch.Tensor:
    rgb = torch.from_numpy(np.asarray(image.convert("RGB")).copy()).permute(2, 0, 1).float() / 255.0
    return rgb_to_lab(rgb)


def test_pipeline_keeps_lightness_and_fading_is_a_call_option(tiny_hypercolumn_dir, gray_photo_paths):
    colorize = pipeline("image-colorization", model=str(tiny_hypercolumn_dir))
    photo = gray_photo_paths[0]
    faded, vivid = colorize(str(photo)), colorize(str(photo), chromatic_fading=False)
    with Image.open(photo) as im:
        assert faded.size == vivid.size == im.size
        l_in = lab_of(im)[0]
    for out in (faded, vivid):
        assert (lab_of(out)[0] - l_in).abs().max() < 0.5  # L kept, with or without fading
    # an untrained model's hue histograms are near uniform (|z| ~ 0): fading turns them gray
    chroma = lambda im: lab_of(im)[1:].norm(dim=0).mean().item()  # noqa: E731
    assert chroma(faded) < 1.0 < chroma(vivid)
    assert chroma(colorize(str(photo), fading_eta=1e-6)) == pytest.approx(chroma(vivid), abs=0.05)


def test_fading_options_are_refused_for_other_models(tiny_model_dir, photo_paths, tmp_path, capsys):
    eccv16 = Colorizer.from_pretrained(tiny_model_dir)
    with pytest.raises(ValueError, match="chromatic_fading applies to hue/chroma hypercolumn models only"):
        eccv16(str(photo_paths[0]), chromatic_fading=False)
    with pytest.raises(ValueError, match="must be True or False"):
        Colorizer.options(chromatic_fading="no")
    capsys.readouterr()  # the weight-loading bars of the calls above
    code, _, err = run_cli(["colorize", photo_paths[0], "--model", tiny_model_dir, "--fading-eta", "0.1",
                            "-o", tmp_path / "x.png"], capsys)
    assert code == 2 and len(err) == 1 and "fading_eta applies to hue/chroma" in err[0], err
    assert not (tmp_path / "x.png").exists()


def test_cli_colorize_and_evaluate(tiny_hypercolumn_dir, photo_paths, tmp_path, capsys):
    code, _, err = run_cli(["colorize", photo_paths[1], "--model", tiny_hypercolumn_dir, "--no-chromatic-fading",
                            "--decode-mode", "median", "-o", tmp_path / "out.png"], capsys)
    assert code == 0, err
    with Image.open(tmp_path / "out.png") as out, Image.open(photo_paths[1]) as src:
        assert out.size == src.size
    folder = tmp_path / "photos"
    folder.mkdir()
    for p in photo_paths[:3]:
        Image.open(p).convert("RGB").save(folder / (p.stem + ".png"))
    code, stdout, err = run_cli(["evaluate", "--model", tiny_hypercolumn_dir, "--dataset", folder, "--size", "64",
                                 "--no-chromatic-fading", "--json", tmp_path / "eval.json"], capsys)
    assert code == 0, err
    result = json.loads((tmp_path / "eval.json").read_text())
    assert result["num_images"] == 3 and result["protocol"]["chromatic_fading"] is False
    assert 0 < result["results"]["model"]["auc_raw"] <= 1


def test_hub_dry_run_ships_the_family_code_and_card(tiny_hypercolumn_dir, tmp_path):
    from hf_colorize.hub.push import push_to_hub

    out = tmp_path / "upload"
    recorded = {"architecture": "hypercolumn", "color_space": "hue-chroma", "loss": "rebalanced_ce", "max_steps": 7}
    push_to_hub(tiny_hypercolumn_dir, "someone/hypercolumn", dry_run_dir=out, training=recorded)
    names = {p.name for p in out.iterdir()}
    assert {"configuration_hypercolumn.py", "modeling_hypercolumn.py", "modeling_colorization.py",
            "image_processing_colorization.py", "pipeline_colorization.py", "model.safetensors"} <= names
    config = json.loads((out / "config.json").read_text())
    assert config["auto_map"]["AutoModel"] == "modeling_hypercolumn.HypercolumnColorizationModel"
    card = (out / "README.md").read_text()
    assert "Larsson" in card and "hue (32 bins) and chroma (32 bins)" in card and "ECCV16 colorization CNN" not in card
    # the recipe describes this family's training, without the other family's settings
    assert "KL loss" in card and "class-rebalanced" not in card
    assert "| color_space | `hue-chroma` |" in card and "| loss |" not in card
    assert type(AutoModel.from_pretrained(out)).__name__ == "HypercolumnColorizationModel"


@pytest.mark.slow
def test_onnx_export_matches_torch(tiny_hypercolumn_dir, tmp_path):
    from hf_colorize.export.onnx import export_model

    model = AutoModel.from_pretrained(tiny_hypercolumn_dir).eval()
    result = export_model(model, tmp_path / "hc.onnx", size=64)  # checks onnxruntime against torch
    assert result["max_difference"] < 1e-3


def test_video_refuses_hue_chroma_models_in_one_line(tiny_hypercolumn_dir):
    from hf_colorize.common import UsageError
    from hf_colorize.video.colorize import VideoColorizer

    with pytest.raises(UsageError, match="does not support hue/chroma hypercolumn models"):
        VideoColorizer(str(tiny_hypercolumn_dir))


def test_embedded_hypercolumn_model_colorizes(photo_paths):
    colorizer = Colorizer.from_pretrained(hf_colorize.HYPERCOLUMN_MODEL)
    assert type(colorizer.model).__name__ == "HypercolumnColorizationModel"
    assert colorizer.model.config.color_space == "hue-chroma"
    with Image.open(photo_paths[0]) as im:
        gray = im.convert("L")
    out = colorizer(gray)
    lab = lab_of(out)
    assert out.size == gray.size and lab[1:].norm(dim=0).mean() > 3.0  # really adds colour
