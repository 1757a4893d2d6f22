"""Hint-trained models (SIGGRAPH 2017 recipe on the ECCV16 family): config switches, the hint inputs of
`ColorizationModel.forward`, growing a plain model into a hint model (zero-initialized: identical
outputs), the simulated training hints (`training/hints.py`), `hf-colorize train --hints`, and what ONNX
and int8 do with a hint model."""

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from cli_helpers import run_cli
from hf_colorize import ColorizationConfig, ColorizationImageProcessor, ColorizationModel
from hf_colorize.models.colorization.modeling_colorization import hint_input_maps
from hf_colorize.training.data import lab_batch
from hf_colorize.training.hints import draw_hint_points, global_hint_of, simulate_hints, step_generator


def _tiny(**kwargs):
    torch.manual_seed(0)
    return ColorizationModel(ColorizationConfig(width_multiplier=0.125, **kwargs)).eval()


def _perturb(model, scale=0.05):
    """Non-zero hint weights (a trained model's), so that hints change the output."""
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "hint" in name:  # local_hints, local_hint_shortcut, global_hints
                p.add_(scale * torch.randn_like(p))
    return model


@pytest.fixture(scope="module")
def photo_batch(photo_paths):
    """Two real photos (astronaut, coffee) at 64x64: normalized L and ground-truth ab."""
    rgb = [np.asarray(Image.open(p).convert("RGB").resize((64, 64), Image.BICUBIC)) for p in photo_paths[:2]]
    return lab_batch(torch.from_numpy(np.stack(rgb)).permute(0, 3, 1, 2).contiguous())


def _random_hints(b, h, w, q=313, seed=0):
    g = torch.Generator().manual_seed(seed)
    mask = (torch.rand(b, 1, h, w, generator=g) < 0.05).float()
    return {"hint_ab": (torch.rand(b, 2, h, w, generator=g) - 0.5) * 160 * mask, "hint_mask": mask,
            "global_hint": torch.softmax(3 * torch.randn(b, q, generator=g), dim=1)}


# --------------------------------------------------------------------------------------------------
# config
# --------------------------------------------------------------------------------------------------
def test_config_round_trip_and_validation(tmp_path):
    config = ColorizationConfig(width_multiplier=0.125, hint_inputs=True, global_hints=False)
    config.save_pretrained(tmp_path)
    loaded = ColorizationConfig.from_pretrained(tmp_path)
    assert loaded.hint_inputs is True and loaded.global_hints is False
    for bad in ("yes", 1, None):
        with pytest.raises(ValueError, match=r"^hint_inputs must be true or false") as err:
            ColorizationConfig(hint_inputs=bad)
        assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match=r"^global_hints must be true or false"):
        ColorizationConfig(global_hints="no")
    with pytest.raises(ValueError, match=r"^hint_shortcut must be true or false"):
        ColorizationConfig(hint_shortcut=1)
    assert ColorizationConfig.from_pretrained(tmp_path).hint_shortcut is False  # saved without: off


def test_old_config_loads_without_hints_and_computes_what_it_did():
    """A model saved by hf-colorize 0.1 (tests/data/legacy_model_v0.1) predates the switches: all off, no new
    weights, and forward is still exactly blocks -> classifier (the code before hint inputs existed)."""
    legacy = os.path.join(os.path.dirname(__file__), "data", "legacy_model_v0.1")
    raw = json.load(open(os.path.join(legacy, "config.json")))
    assert "hint_inputs" not in raw and "global_hints" not in raw and "hint_shortcut" not in raw
    model = ColorizationModel.from_pretrained(legacy).eval()
    assert model.config.hint_inputs is False and model.config.global_hints is False
    assert model.config.hint_shortcut is False
    assert not [k for k in model.state_dict() if "hints" in k]
    x = torch.rand(2, 1, 64, 64, generator=torch.Generator().manual_seed(0)) - 0.5
    with torch.no_grad():
        hidden = x
        for block in model.blocks:
            hidden = block(hidden)
        assert torch.equal(model(x).logits, model.classifier(hidden))


# --------------------------------------------------------------------------------------------------
# forward
# --------------------------------------------------------------------------------------------------
def test_forward_with_and_without_hints(photo_batch):
    pixel_values, ab = photo_batch
    model = _perturb(_tiny(hint_inputs=True, global_hints=True))
    b, _, h, w = pixel_values.shape
    zeros = {"hint_ab": torch.zeros(b, 2, h, w), "hint_mask": torch.zeros(b, 1, h, w), "global_hint": torch.zeros(b, 313)}
    hints = simulate_hints(ab, torch.Generator().manual_seed(3), model.ab_bins, global_drop=0.0)
    assert hints["hint_mask"].sum() > 0
    with torch.no_grad():
        none = model(pixel_values)
        assert none.logits.shape == (b, 313, h // 4, w // 4) and none.ab.shape == (b, 2, h // 4, w // 4)
        # missing hints = zero hints, exactly
        assert torch.equal(model(pixel_values, **zeros).logits, none.logits)
        local = model(pixel_values, hint_ab=hints["hint_ab"], hint_mask=hints["hint_mask"]).logits
        both = model(pixel_values, **hints).logits
        only_global = model(pixel_values, global_hint=hints["global_hint"]).logits
    for changed in (local, both, only_global):
        assert (changed - none.logits).abs().max() > 1e-3
    # training with hints: the loss backpropagates into the hint weights
    model.train()
    model(pixel_values, labels=ab, **hints).loss.backward()
    assert model.local_hints.weight.grad.abs().sum() > 0 and model.global_hints.fc2.weight.grad.abs().sum() > 0


def test_hint_shortcut_carries_a_local_hint_to_its_cell(photo_batch):
    """The shortcut (block 5's input, 1/8 resolution) alone moves the output; its input is the hint's cell
    and neighbours, as strong for one pixel as for a patch of the same colour; without hints it adds nothing."""
    pixel_values, ab = photo_batch
    plain = _tiny(hint_inputs=True)
    assert not hasattr(plain, "local_hint_shortcut")
    model = _tiny(hint_inputs=True, hint_shortcut=True)
    assert model.local_hint_shortcut.weight.abs().sum() == 0  # zero-initialized
    model.load_state_dict(plain.state_dict(), strict=False)
    torch.manual_seed(2)
    with torch.no_grad():
        model.local_hint_shortcut.weight.normal_(0, 0.5)  # only the shortcut is non-zero
    b, _, h, w = pixel_values.shape
    hint_ab, hint_mask = torch.zeros(b, 2, h, w), torch.zeros(b, 1, h, w)
    hint_ab[:, :, 8, 8], hint_mask[:, :, 8, 8] = torch.tensor([40.0, 30.0]), 1  # one pixel, top left
    with torch.no_grad():
        none = model(pixel_values).logits
        assert torch.equal(none, plain(pixel_values).logits)
        assert torch.equal(model(pixel_values, hint_ab=torch.zeros_like(hint_ab), hint_mask=hint_mask * 0).logits, none)
        one = model(pixel_values, hint_ab=hint_ab, hint_mask=hint_mask).logits
        assert (one - none).abs().max() > 1e-2
        # the shortcut's own output: only the hint's 8x8 cell (1, 1) and its 3x3 neighbourhood
        shortcut = model.local_hint_shortcut
        out = shortcut(hint_ab, hint_mask).abs().sum(1)  # (B, H/8, W/8)
        assert out.shape == (b, h // 8, w // 8) and (out[:, :3, :3] > 0).all()
        assert out[:, 3:, :].sum() == 0 and out[:, :, 3:].sum() == 0
        # a 3x3 patch of the same colour in the same cell counts as much as one pixel
        patch_ab, patch_mask = hint_ab.clone(), hint_mask.clone()
        patch_ab[:, :, 8:11, 8:11], patch_mask[:, :, 8:11, 8:11] = torch.tensor([40.0, 30.0])[:, None, None], 1
        assert torch.allclose(shortcut(patch_ab, patch_mask), shortcut(hint_ab, hint_mask), atol=1e-5)
    model.train()
    model(pixel_values, labels=ab, hint_ab=hint_ab, hint_mask=hint_mask).loss.backward()
    assert model.local_hint_shortcut.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("kwargs, message", [
    ({"hint_ab": torch.zeros(2, 2, 32, 32), "hint_mask": torch.zeros(2, 1, 32, 32)},
     "hint_ab must have shape (2, 2, 64, 64) like pixel_values, got (2, 2, 32, 32)"),
    ({"hint_ab": torch.zeros(2, 2, 64, 64), "hint_mask": torch.zeros(2, 2, 64, 64)},
     "hint_mask must have shape (2, 1, 64, 64) like pixel_values, got (2, 2, 64, 64)"),
    ({"hint_ab": torch.zeros(1, 2, 64, 64), "hint_mask": torch.zeros(1, 1, 64, 64)},
     "hint_ab must have shape (2, 2, 64, 64)"),
    ({"hint_ab": torch.zeros(2, 2, 64, 64)}, "hint_ab and hint_mask go together: give both or neither"),
    ({"hint_mask": torch.zeros(2, 1, 64, 64)}, "hint_ab and hint_mask go together"),
    ({"global_hint": torch.zeros(2, 100)}, "global_hint must have shape (2, 313) (batch, bins), got (2, 100)"),
    ({"global_hint": torch.zeros(313)}, "global_hint must have shape (2, 313)"),
])
def test_bad_hint_shapes_fail_in_one_line(kwargs, message):
    model = _tiny(hint_inputs=True, global_hints=True)
    with pytest.raises(ValueError) as err:
        model(torch.zeros(2, 1, 64, 64), **kwargs)
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("config, kwargs, message", [
    ({}, {"hint_ab": torch.zeros(1, 2, 64, 64), "hint_mask": torch.zeros(1, 1, 64, 64)},
     "hint_ab: this model has no local hint inputs (config.hint_inputs is false)"),
    ({"global_hints": True}, {"hint_mask": torch.zeros(1, 1, 64, 64)},
     "hint_mask: this model has no local hint inputs (config.hint_inputs is false)"),
    ({}, {"global_hint": torch.zeros(1, 313)}, "global_hint: this model has no global hint input (config.global_hints is false)"),
    ({"hint_inputs": True}, {"global_hint": torch.zeros(1, 313)}, "config.global_hints is false"),
])
def test_model_without_hint_inputs_refuses_hints_in_one_line(config, kwargs, message):
    with pytest.raises(ValueError) as err:
        _tiny(**config)(torch.zeros(1, 1, 64, 64), **kwargs)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_hint_input_maps():
    hint_ab, hint_mask = hint_input_maps([(3, 5, 20.0, -40.0), (3.7, 5.2, 30.0, 10.0), (0, 0, -5.0, 5.0)], 8, 16)
    assert hint_ab.shape == (1, 2, 8, 16) and hint_mask.shape == (1, 1, 8, 16)
    assert hint_mask.sum() == 2 and hint_ab[0, :, 3, 5].tolist() == [30.0, 10.0]  # the later point wins
    assert hint_ab[0, :, 0, 0].tolist() == [-5.0, 5.0] and hint_ab[:, :, hint_mask[0, 0] == 0].abs().sum() == 0
    with pytest.raises(ValueError, match=r"^hint 1: \(8, 0\) is outside the 16x8 network input$"):
        hint_input_maps([(0, 0, 1, 1), (8, 0, 1, 1)], 8, 16)


# --------------------------------------------------------------------------------------------------
# growing a plain model
# --------------------------------------------------------------------------------------------------
def test_grown_default_model_gives_identical_logits(plain_default_dir, photo_paths, tmp_path):
    """The embedded default's trunk (without its hint layers) grown into a hint model: same logits exactly, with
    or without hints, until trained; the grown model saves and loads with its (trained) hint weights."""
    plain = ColorizationModel.from_pretrained(plain_default_dir).eval()
    processor = ColorizationImageProcessor.from_pretrained(plain_default_dir)
    pixel_values = processor([str(p) for p in photo_paths[:2]], size=96).pixel_values
    grown = ColorizationModel.from_plain(plain)
    assert grown.config.hint_inputs and grown.config.global_hints and not plain.config.hint_inputs
    assert not grown.training and grown.local_hints.weight.abs().sum() == 0
    assert grown.config.hint_shortcut and grown.local_hint_shortcut.weight.abs().sum() == 0
    with torch.no_grad():
        expected = plain(pixel_values).logits
        assert torch.equal(grown(pixel_values).logits, expected)
        assert torch.equal(grown(pixel_values, **_random_hints(2, 96, 96)).logits, expected)
    # grown one kind at a time: the kinds it has are kept
    local_only = ColorizationModel.from_plain(plain, hint_inputs=True, global_hints=False)
    assert not hasattr(local_only, "global_hints")
    # without the shortcut (hint models saved before it existed); growing does not add one by surprise
    no_shortcut = ColorizationModel.from_plain(plain, hint_shortcut=False)
    assert not no_shortcut.config.hint_shortcut and not hasattr(no_shortcut, "local_hint_shortcut")
    assert not ColorizationModel.from_plain(plain, hint_inputs=False, global_hints=True).config.hint_shortcut
    both = ColorizationModel.from_plain(_perturb(local_only), hint_inputs=False, global_hints=True)
    assert torch.equal(both.local_hints.weight, local_only.local_hints.weight)
    # save / load keeps the hint weights
    _perturb(grown).save_pretrained(tmp_path)
    loaded = ColorizationModel.from_pretrained(tmp_path).eval()
    hints = _random_hints(2, 96, 96)
    with torch.no_grad():
        assert torch.equal(loaded(pixel_values, **hints).logits, grown(pixel_values, **hints).logits)


# --------------------------------------------------------------------------------------------------
# simulated hints
# --------------------------------------------------------------------------------------------------
def test_hint_point_statistics():
    """20,000 images: point counts geometric from 0 with p = 1/8 (mean 7, P(0) = 1/8), patch sides uniform
    1..9, corners Gaussian around the centre (sd a quarter of the span), inside the image."""
    pts = draw_hint_points(20000, 176, 176, torch.Generator().manual_seed(0))
    counts = torch.bincount(pts["image"], minlength=20000).double()
    assert abs(counts.mean().item() - 7.0) < 0.25  # sd of the mean: sqrt(56 / 20000) = 0.05
    assert abs((counts == 0).double().mean().item() - 1 / 8) < 0.01
    assert abs((counts == 1).double().mean().item() - 7 / 64) < 0.01
    sides = torch.bincount(pts["side"], minlength=10)[1:].double()
    assert pts["side"].min() == 1 and pts["side"].max() == 9 and (sides / sides.sum() - 1 / 9).abs().max() < 0.01
    for axis in ("y", "x"):
        assert pts[axis].min() >= 0 and (pts[axis] + pts["side"]).max() <= 176
        centre = (176 - pts["side"] + 1) / 2
        offset = (pts[axis] - centre).double()
        assert abs(offset.mean().item() + 0.5) < 0.5 and abs(offset.std().item() - 168 / 4) < 3  # floor: -0.5
    uniform = draw_hint_points(4000, 64, 64, torch.Generator().manual_seed(0), location="uniform")
    assert abs((uniform["y"] + uniform["side"] / 2).double().mean().item() - 32) < 1.5


def test_simulated_hints_are_patch_means_and_consistent(photo_batch):
    _, ab = photo_batch
    bins = torch.tensor(ColorizationConfig().ab_bins)
    generator = torch.Generator().manual_seed(5)
    state = generator.get_state()
    hints = simulate_hints(ab, generator, bins, global_drop=0.0)
    generator.set_state(state)
    pts = draw_hint_points(2, 64, 64, generator)  # the same draws, replayed
    assert len(pts["side"]) > 0
    mask, hint_ab = hints["hint_mask"], hints["hint_ab"]
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    assert hint_ab[(mask == 0).expand_as(hint_ab)].abs().max() == 0  # no value outside the mask
    union = torch.zeros_like(mask)
    for n, y, x, s in zip(*(pts[k].tolist() for k in ("image", "y", "x", "side"))):
        union[n, :, y:y + s, x:x + s] = 1
    assert torch.equal(union, mask)
    # each image's last patch (nothing overwrites it) holds its patch's mean ab
    for n in pts["image"].unique().tolist():
        i = int((pts["image"] == n).nonzero()[-1])
        y, x, s = (int(pts[k][i]) for k in ("y", "x", "side"))
        mean = ab[n, :, y:y + s, x:x + s].double().mean(dim=(1, 2))
        assert torch.allclose(hint_ab[n, :, y:y + s, x:x + s].double(), mean[:, None, None].expand(2, s, s), atol=1e-3)
    # the global hint: the photo's own bin distribution (sums to 1), or all zeros when dropped
    assert torch.allclose(hints["global_hint"], global_hint_of(ab, bins)) and torch.allclose(
        hints["global_hint"].sum(1), torch.ones(2))
    dropped = simulate_hints(ab, torch.Generator().manual_seed(5), bins, global_drop=1.0)["global_hint"]
    assert dropped.abs().sum() == 0


def test_simulated_hints_are_deterministic_and_global_drop_rate(photo_batch):
    _, ab = photo_batch
    bins = torch.tensor(ColorizationConfig().ab_bins)
    one = simulate_hints(ab, step_generator(1, 7), bins)
    two = simulate_hints(ab, step_generator(1, 7), bins)
    other = simulate_hints(ab, step_generator(1, 8), bins)
    assert all(torch.equal(one[k], two[k]) for k in one)
    assert not torch.equal(one["hint_mask"], other["hint_mask"])
    sums = torch.cat([simulate_hints(ab, step_generator(0, s), bins, kind="global")["global_hint"].sum(1)
                      for s in range(200)])
    assert ((sums - 1).abs() < 1e-5).logical_or(sums == 0).all()
    assert abs((sums == 0).double().mean().item() - 0.5) < 0.08  # 400 draws: sd 0.025
    assert set(simulate_hints(ab, step_generator(0, 0), bins, kind="local")) == {"hint_ab", "hint_mask"}
    with pytest.raises(ValueError, match="hint kind must be one of both, local, global"):
        simulate_hints(ab, step_generator(0, 0), bins, kind="all")


# --------------------------------------------------------------------------------------------------
# ONNX and int8
# --------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_onnx_export_of_a_hint_model_takes_hints(tmp_path, photo_batch):
    pytest.importorskip("onnxruntime")
    from hf_colorize.export.onnx import export_model, onnx_session, run_onnx

    model = _perturb(_tiny(hint_inputs=True, global_hints=True, hint_shortcut=True))
    result = export_model(model, tmp_path / "hint.onnx", size=64, check=True)
    assert result["max_difference"] < 1e-3
    session = onnx_session(tmp_path / "hint.onnx", threads=1)
    assert [i.name for i in session.get_inputs()] == ["pixel_values", "temperature", "hint_ab", "hint_mask", "global_hint"]
    pixel_values, ab = photo_batch
    hints = simulate_hints(ab, step_generator(0, 0), model.ab_bins, global_drop=0.0)
    with torch.no_grad():
        for given in ({}, hints):
            logits, _ = run_onnx(session, pixel_values, 0.38, **given)
            assert torch.allclose(logits, model(pixel_values, **given).logits, atol=1e-3)
    plain = _tiny()
    export_model(plain, tmp_path / "plain.onnx", size=64, check=False)
    with pytest.raises(ValueError, match="^global_hint: this ONNX graph has no global_hint input"):
        run_onnx(onnx_session(tmp_path / "plain.onnx", threads=1), pixel_values, global_hint=hints["global_hint"])


@pytest.mark.slow
def test_int8_runs_a_hint_model_without_hints_and_refuses_hints(tmp_path, photo_batch):
    pytest.importorskip("onnxruntime")
    from hf_colorize.export.int8 import int8_logits
    from hf_colorize.models.colorization.pipeline_colorization import ColorizationBackendError

    model = _perturb(_tiny(hint_inputs=True, global_hints=True))
    logits = int8_logits(model, ColorizationImageProcessor(size=64), cache=str(tmp_path))
    pixel_values, _ = photo_batch
    with torch.no_grad():
        assert (logits(pixel_values) - model(pixel_values).logits).abs().mean() < 0.2
    with pytest.raises(ColorizationBackendError) as err:
        logits(pixel_values, global_hint=torch.zeros(2, 313))
    assert str(err.value) == ("precision 'int8' runs the network without its hint inputs (global_hint given): "
                              "use precision 'fp32' or 'bf16' for hints")


# --------------------------------------------------------------------------------------------------
# hf-colorize train --hints
# --------------------------------------------------------------------------------------------------
def _quick(dataset, out, *extra):
    return ["train", "--dataset", str(dataset), "--output-dir", str(out), "--width", "0.125", "--crop-size", "32",
            "--batch-size", "4", "--max-steps", "2", "--warmup-steps", "1", "--prior-images", "8",
            "--shuffle-buffer", "4", "--report-to", "none", "--no-progress", *extra]


def test_train_hints_from_scratch_and_grown(colour_folder, tiny_model_dir, tmp_path, capsys):
    """A real (two-step) CLI run of a tiny hint model, evaluated with and without hints; then the tiny plain
    model grown with --hints local --init-from: loadable models with the hint inputs, recorded."""
    out = tmp_path / "scratch"
    code, stdout, err = run_cli(_quick(colour_folder, out, "--hints", "--eval-dataset", colour_folder,
                                       "--eval-every", "2", "--eval-images", "4"), capsys)
    assert code == 0, err
    assert "eval/ab_error_hints=" in stdout
    model = ColorizationModel.from_pretrained(out / "final")
    assert model.config.hint_inputs and model.config.global_hints
    assert model.local_hints.weight.abs().sum() > 0 and model.global_hints.fc2.weight.abs().sum() > 0  # trained
    assert model.config.hint_shortcut and model.local_hint_shortcut.weight.abs().sum() > 0
    assert json.load(open(out / "final" / "training_args.json"))["hints"] == "both"

    grown = tmp_path / "grown"
    code, _, err = run_cli(_quick(colour_folder, grown, "--hints", "local", "--init-from", tiny_model_dir), capsys)
    assert code == 0, err
    model = ColorizationModel.from_pretrained(grown / "final")
    assert model.config.hint_inputs and not model.config.global_hints and model.config.width_multiplier == 0.125
    assert json.load(open(grown / "final" / "training_args.json"))["hints"] == "local"


def test_hint_layers_train_at_the_scaled_learning_rate():
    from hf_colorize.training.loop import TrainingConfig, check_config, lr_lambda, param_groups

    model = ColorizationModel.from_plain(_tiny())
    config = TrainingConfig(output_dir="unused", hints="both", lr=1e-3, hint_lr_scale=10.0, warmup_steps=2)
    groups = param_groups(model, config)
    names = {id(p): n for n, p in model.named_parameters()}
    hint_names = sorted(names[id(p)].split(".")[0] for p in groups[1]["params"])
    assert set(hint_names) == {"local_hints", "local_hint_shortcut", "global_hints"}
    assert len(groups[0]["params"]) + len(groups[1]["params"]) == len(list(model.parameters()))
    optimizer = torch.optim.Adam(groups, lr=config.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(config))
    for _ in range(3):
        optimizer.step()
        scheduler.step()
        assert optimizer.param_groups[1]["lr"] == pytest.approx(10 * optimizer.param_groups[0]["lr"])
    # without --hints there is one group, whatever the model has
    assert len(param_groups(model, TrainingConfig(output_dir="unused"))) == 1
    for bad in (0, -1.0, "10", True):
        with pytest.raises(Exception, match=r"^--hint-lr-scale must be a number > 0"):
            check_config(TrainingConfig(dataset="unused", output_dir="unused", hints="both", hint_lr_scale=bad))
    with pytest.raises(Exception, match=r"^--hint-lr-scale applies to the hint layers: add --hints$"):
        check_config(TrainingConfig(dataset="unused", output_dir="unused", hint_lr_scale=3.0))


def test_hint_training_resumes_exactly(colour_folder, tmp_path, capsys):
    """Hints are seeded per step: 1 step + resume to 2 ends with the weights of an uninterrupted 2-step run."""
    flags = ("--hints", "--lr-schedule", "constant", "--warmup-steps", "0", "--checkpoint-every", "1")
    assert run_cli(_quick(colour_folder, tmp_path / "ref", *flags), capsys)[0] == 0
    one = [a if a != "2" else "1" for a in _quick(colour_folder, tmp_path / "resumed", *flags)]  # --max-steps 1
    assert run_cli(one, capsys)[0] == 0
    code, stdout, _ = run_cli(_quick(colour_folder, tmp_path / "resumed", *flags), capsys)
    assert code == 0 and "resumed from" in stdout
    from safetensors.torch import load_file

    ref, got = (load_file(tmp_path / r / "final" / "model.safetensors") for r in ("ref", "resumed"))
    assert ref.keys() == got.keys() and all(torch.equal(ref[k], got[k]) for k in ref)


def test_contradictory_hint_flags_fail_in_one_line(colour_folder, tiny_model_dir, tmp_path, capsys):
    hint_model = tmp_path / "hint_model"
    ColorizationModel.from_plain(ColorizationModel.from_pretrained(tiny_model_dir)).save_pretrained(hint_model)
    capsys.readouterr()  # transformers' loading bars
    cases = [
        (["--hints", "--architecture", "hypercolumn"], 2, "--hints applies to --architecture eccv16, not hypercolumn"),
        (["--hints", "sparse"], 2, "argument --hints: invalid choice: 'sparse'"),
        (["--init-from", hint_model], 2, "the --init-from model takes hints (config.hint_inputs/global_hints); add --hints"),
        (["--hints", "local", "--init-from", hint_model], 2,
         "--hints local contradicts the --init-from model's global hint input (config.global_hints); use --hints both"),
    ]
    for extra, code, expected in cases:
        out = tmp_path / "run"
        argv = _quick(colour_folder, out, *extra)
        if "hypercolumn" in extra:  # --prior-images (an ECCV16 setting) would be refused first
            i = argv.index("--prior-images")
            argv = argv[:i] + argv[i + 2:]
        got, _, err = run_cli(argv, capsys)
        assert got == code and len(err) == 1 and expected in err[0], (extra, err)
        assert not (out / "final").exists()


def test_model_card_recipe_names_the_hint_settings():
    from hf_colorize.hub.cards import _recipe

    hinted = _recipe({"architecture": "eccv16", "lr": 3e-4, "hints": "both", "hint_lr_scale": 10.0})
    assert "| hints | `both` |" in hinted and "| hint_lr_scale | `10.0` |" in hinted
    plain = _recipe({"architecture": "eccv16", "lr": 3e-4, "hints": None, "hint_lr_scale": 10.0})
    assert "hints" not in plain and "hint_lr_scale" not in plain and "| lr |" in plain
