"""`hf-colorize train --architecture hypercolumn`: quick runs in both colour spaces, flags of the other
architecture refused, and `--init-backbone` from a torchvision-layout VGG-16 state dict (random weights,
no download): the converted trunk computes what VGG-16 computes on the gray image replicated to RGB."""

import os

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from cli_helpers import run_cli
from hf_colorize.export.vgg16 import TORCHVISION_NAMES, init_backbone
from hf_colorize.models.colorization.configuration_hypercolumn import HypercolumnConfig
from hf_colorize.models.colorization.modeling_hypercolumn import HypercolumnColorizationModel
from hf_colorize.training.loop import list_checkpoints

VGG_CONVS = [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256), (256, 512), (512, 512),
             (512, 512), (512, 512), (512, 512), (512, 512)]


def torchvision_vgg16_state_dict(seed=0) -> dict:
    """`torchvision.models.vgg16(weights=None).state_dict()` (random init, no download); built by hand with
    torchvision's names and shapes when torchvision is not installed (its PyPI wheel does not import beside
    a CPU torch build)."""
    try:
        import torchvision

        torch.manual_seed(seed)
        return torchvision.models.vgg16(weights=None).state_dict()
    except Exception:  # noqa: BLE001 - ImportError, or a torchvision built for another torch
        pass
    g = torch.Generator().manual_seed(seed)
    state = {}
    for prefix, (cin, cout) in zip(list(TORCHVISION_NAMES)[:13], VGG_CONVS):
        state[f"{prefix}.weight"] = torch.randn(cout, cin, 3, 3, generator=g) * (2.0 / (9 * cout)) ** 0.5
        state[f"{prefix}.bias"] = torch.randn(cout, generator=g) * 0.01
    for prefix, (cin, cout) in (("classifier.0", (25088, 4096)), ("classifier.3", (4096, 4096)),
                                ("classifier.6", (4096, 1000))):
        state[f"{prefix}.weight"] = torch.randn(cout, cin, generator=g) * 0.01
        state[f"{prefix}.bias"] = torch.zeros(cout)
    return state


def vgg16_reference(state, rgb):
    """torchvision's VGG-16 forward written out with `F`: conv5_3 (after ReLU) and fc6 at the pool5 centre."""
    x, convs = rgb, list(TORCHVISION_NAMES)[:13]
    for i, prefix in enumerate(convs):
        if i in (2, 4, 7, 10):
            x = F.max_pool2d(x, 2)
        x = F.relu(F.conv2d(x, state[f"{prefix}.weight"], state[f"{prefix}.bias"], padding=1))
    pool5 = F.max_pool2d(x, 2)  # (1, 512, 7, 7) for a 224 input
    fc6 = F.relu(F.linear(pool5.flatten(1), state["classifier.0.weight"], state["classifier.0.bias"]))
    return x, fc6


@pytest.mark.slow
def test_init_backbone_converts_torchvision_vgg16(tmp_path):
    state = torchvision_vgg16_state_dict()
    path = tmp_path / "vgg16.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    model = HypercolumnColorizationModel(HypercolumnConfig(hidden_size=16)).eval()
    assert init_backbone(model, path) == 15
    gray = torch.rand(1, 1, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = model.features(gray)
        conv5_3, fc6 = vgg16_reference(state, gray.expand(-1, 3, -1, -1))
    assert torch.allclose(ours["conv5_3"], conv5_3, rtol=1e-4, atol=1e-4)
    # fc6 as a 7x7 convolution (padding 3) on the 7x7 pool5: its centre cell is torchvision's fc6
    assert torch.allclose(ours["fc6"][0, :, 3, 3], fc6[0], rtol=1e-4, atol=1e-4)


def test_init_backbone_refuses_pickles_and_wrong_shapes(tmp_path):
    from hf_colorize.common import ConversionError

    # a trunk that stops at conv1_2 needs just VGG-16's first two convolutions
    model = HypercolumnColorizationModel(HypercolumnConfig(hidden_size=16, width_multiplier=0.5,
                                                           hypercolumn_layers=["conv1_2"]))
    before = model.convs["conv1_1"].weight.clone()
    pickled = tmp_path / "vgg16.pth"
    torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3), "evil": object()}, pickled)
    with pytest.raises(ConversionError, match="cannot read checkpoint") as err:
        init_backbone(model, pickled)
    assert "\n" not in str(err.value)
    first = tmp_path / "vgg16_first_block.safetensors"
    save_file({"features.0.weight": torch.randn(64, 3, 3, 3), "features.0.bias": torch.zeros(64),
               "features.2.weight": torch.randn(64, 64, 3, 3), "features.2.bias": torch.zeros(64)}, str(first))
    with pytest.raises(ConversionError, match="width_multiplier 1.0"):
        init_backbone(model, first)  # half-width model: VGG-16's shapes do not fit
    full_width = HypercolumnColorizationModel(HypercolumnConfig(hidden_size=16, hypercolumn_layers=["conv1_2"]))
    assert init_backbone(full_width, first) == 2
    with pytest.raises(ConversionError, match="no features.5.weight"):
        init_backbone(HypercolumnColorizationModel(HypercolumnConfig(hidden_size=16, hypercolumn_layers=["conv2_2"])),
                      first)
    assert torch.equal(model.convs["conv1_1"].weight, before)  # nothing was copied


def _quick(dataset, out, *extra):
    return ["train", "--architecture", "hypercolumn", "--dataset", str(dataset), "--output-dir", str(out),
            "--width", "0.125", "--hidden-size", "32", "--hypercolumn-layers", "conv1_2,conv2_2,conv3_3",
            "--crop-size", "32", "--batch-size", "4", "--max-steps", "2", "--warmup-steps", "1",
            "--shuffle-buffer", "4", "--report-to", "none", "--export-size", "64", "--no-progress", *extra]


@pytest.mark.parametrize("space", ["lab", "hue-chroma"])
def test_quick_hypercolumn_run_exports_a_loadable_model(space, colour_folder, tmp_path, capsys):
    from transformers import AutoModel

    code, _, err = run_cli(_quick(colour_folder, tmp_path / "run", "--color-space", space, "--sample-pixels", "32"),
                           capsys)
    assert code == 0, err
    model = AutoModel.from_pretrained(tmp_path / "run" / "final")
    assert isinstance(model, HypercolumnColorizationModel)
    assert model.config.color_space == space and model.config.sample_pixels == 32 and model.config.image_size == 64
    assert model.config.hypercolumn_layers == ["conv1_2", "conv2_2", "conv3_3"]


@pytest.mark.parametrize("extra, expected", [
    (["--bins", "palette.npy"], "--bins applies to --architecture eccv16, not hypercolumn"),
    (["--loss", "focal"], "--loss applies to --architecture eccv16"),
    (["--hypercolumn-layers", "conv1_2,pool9"], "--hypercolumn-layers must name layers of conv1_2"),
    (["--init-backbone", "{missing}"], "--init-backbone {missing}: no such file"),
])
def test_bad_hypercolumn_settings_fail_before_training(extra, expected, colour_folder, tmp_path, capsys):
    names = {"missing": str(tmp_path / "missing.safetensors")}
    code, _, err = run_cli([a.format(**names) for a in _quick(colour_folder, tmp_path / "run", *extra)], capsys)
    assert code == 2 and len(err) == 1 and expected.format(**names) in err[0], err
    assert not (tmp_path / "run").exists()


def test_hypercolumn_flags_refused_for_eccv16(colour_folder, tmp_path, capsys):
    argv = ["train", "--dataset", str(colour_folder), "--output-dir", str(tmp_path / "run"), "--color-space",
            "hue-chroma", "--report-to", "none"]
    code, _, err = run_cli(argv, capsys)
    assert code == 2 and err == ["hf-colorize train: error: --color-space applies to --architecture hypercolumn, not eccv16"]


def test_wrong_backbone_trains_nothing(colour_folder, tmp_path, capsys):
    bad = tmp_path / "not_vgg.safetensors"
    save_file({"features.0.weight": torch.zeros(8, 3, 3, 3), "features.0.bias": torch.zeros(8)}, str(bad))
    code, _, err = run_cli(_quick(colour_folder, tmp_path / "run", "--init-backbone", str(bad)), capsys)
    assert code == 1 and len(err) == 1 and "not_vgg.safetensors" in err[0], err
    assert not list_checkpoints(tmp_path / "run") and not os.path.exists(tmp_path / "run" / "final")


@pytest.fixture
def fresh_accelerate_state():
    """Accelerate keeps one process-wide state: another in-process run's mixed precision would clash."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


def test_hypercolumn_run_resumes_under_bf16_autocast(colour_folder, tmp_path, capsys, fresh_accelerate_state):
    """The same trainer guarantees as ECCV16: bf16 autocast runs, and a rerun with more steps resumes from
    the last checkpoint instead of starting over."""
    out = tmp_path / "run"
    base = _quick(colour_folder, out, "--color-space", "hue-chroma", "--mixed-precision", "bf16", "--cpu",
                  "--checkpoint-every", "1")
    code, _, err = run_cli(base, capsys)
    assert code == 0, err
    assert [os.path.basename(c) for c in list_checkpoints(out)][-1] == "checkpoint-2"
    longer = list(base)
    longer[longer.index("--max-steps") + 1] = "3"
    code, stdout, err = run_cli(longer, capsys)
    assert code == 0, err
    assert "resumed from" in stdout + "\n".join(err) and os.path.basename(list_checkpoints(out)[-1]) == "checkpoint-3"


def test_init_from_refuses_contradicting_flags(colour_folder, tmp_path, capsys, fresh_accelerate_state):
    """Fine-tuning takes the architecture from the --init-from model: a flag that says otherwise is an error
    (one line, nothing trained), never silently overridden."""
    first = tmp_path / "first"
    code, _, err = run_cli(_quick(colour_folder, first, "--color-space", "lab"), capsys)
    assert code == 0, err
    base = ["train", "--dataset", str(colour_folder), "--init-from", str(first / "final"), "--crop-size", "32",
            "--batch-size", "4", "--max-steps", "1", "--warmup-steps", "1", "--report-to", "none", "--no-progress"]
    for extra, expected in ((["--color-space", "hue-chroma"], "--color-space hue-chroma contradicts the --init-from "
                                                              "model's lab"),
                            (["--loss", "focal"], "--loss applies to --architecture eccv16, but the --init-from model "
                                                  "is hypercolumn")):
        out = tmp_path / extra[0].strip("-")
        code, _, err = run_cli(base + ["--output-dir", str(out), *extra], capsys)
        assert code == 2 and len(err) == 1 and expected in err[0], err
        assert not list_checkpoints(out) and not os.path.exists(out / "final")
    code, _, err = run_cli(base + ["--output-dir", str(tmp_path / "ok"), "--sample-pixels", "16"], capsys)
    assert code == 0, err
    from transformers import AutoModel

    assert AutoModel.from_pretrained(tmp_path / "ok" / "final").config.sample_pixels == 16
