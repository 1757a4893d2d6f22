"""Compatibility and the one inference path.

`tests/data/legacy_model_v0.1/` was written by hf-colorize 0.1 (the flat package, before the restructuring):
a small model with non-trivial weights, saved with its remote-code files; `tests/data/legacy_v0.1_outputs/`
holds gray inputs and what 0.1's pipeline made of them. Today's code must load that folder and colorize
identically: installed (no trust_remote_code), through transformers alone (trust_remote_code, in a process
where hf_colorize cannot be imported), and through every entry point (pipeline, Colorizer, CLI).
"""

import os
import pathlib
import shutil
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

import hf_colorize
from hf_colorize import Colorizer
from hf_colorize.cli import main
from test_remote_code import BLOCK_HF_COLORIZE

DATA = pathlib.Path(__file__).parent / "data"
OUTPUTS = DATA / "legacy_v0.1_outputs"
NAMES = ("astronaut", "coffee")


@pytest.fixture(scope="module")
def legacy(tmp_path_factory) -> pathlib.Path:
    """The 0.1 folder as 0.1 wrote it (its frozen code is stored as *.py.txt, see its README)."""
    folder = tmp_path_factory.mktemp("legacy") / "model"
    shutil.copytree(DATA / "legacy_model_v0.1", folder)
    for stored in folder.glob("*.py.txt"):
        stored.rename(stored.with_suffix(""))
    (folder / "README.md").unlink()
    return folder


def _expected(name):
    return np.asarray(Image.open(OUTPUTS / f"{name}_colorized.png").convert("RGB")).astype(int)


def _gray(name):
    return OUTPUTS / f"{name}_gray.png"


def _assert_same(result, name):
    got = np.asarray(result.convert("RGB") if isinstance(result, Image.Image) else result).astype(int)
    want = _expected(name)
    assert got.shape == want.shape
    # identical up to float rounding at the last 8-bit step
    assert np.abs(got - want).max() <= 1, np.abs(got - want).max()
    assert (got != want).mean() < 0.01
    # and the output is really coloured (a gray image would also match a gray expectation)
    assert np.abs(want - want.mean(-1, keepdims=True)).mean() > 5


def test_legacy_folder_colorizes_identically_installed(legacy):
    from transformers import pipeline

    colorize = pipeline("image-colorization", model=str(legacy))
    colorizer = Colorizer.from_pretrained(legacy)
    for name in NAMES:
        _assert_same(colorize(str(_gray(name))), name)
        _assert_same(colorizer(str(_gray(name))), name)
        _assert_same(colorize(Image.open(_gray(name))), name)


def test_legacy_folder_colorizes_identically_with_the_cli(legacy, tmp_path, capsys):
    code = main(["colorize", *(str(_gray(n)) for n in NAMES), "-o", str(tmp_path), "--model", str(legacy)])
    assert code == 0, capsys.readouterr().err
    for name in NAMES:
        _assert_same(Image.open(tmp_path / f"{name}_gray_colorized.png"), name)


CHILD = BLOCK_HF_COLORIZE + textwrap.dedent(
    '''
    import numpy as np
    from transformers import pipeline

    folder, out = sys.argv[1], sys.argv[2]
    colorize = pipeline(model=folder, trust_remote_code=True)
    assert type(colorize).__module__.startswith("transformers_modules."), type(colorize).__module__
    for photo in sys.argv[3:]:
        np.save(f"{out}/{len(__import__('os').listdir(out))}.npy", np.asarray(colorize(photo)))
    '''
)


@pytest.mark.slow
def test_legacy_folder_colorizes_identically_via_remote_code(legacy, tmp_path):
    """The 0.1 folder's own code (it carries it) through transformers alone gives the same images."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["HF_HUB_OFFLINE"] = "1"
    env["HF_MODULES_CACHE"] = str(tmp_path / "modules")
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.run([sys.executable, "-c", CHILD, str(legacy), str(out), *(str(_gray(n)) for n in NAMES)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for i, name in enumerate(NAMES):
        _assert_same(np.load(out / f"{i}.npy"), name)


def test_old_import_paths_still_work():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        from hf_colorize.modeling_colorization import decode_ab  # noqa: F401  (0.1's flat path)
        import hf_colorize.image_processing_colorization as old_processing
    assert decode_ab is hf_colorize.decode_ab
    assert old_processing.ColorizationImageProcessor is hf_colorize.ColorizationImageProcessor
    assert any(issubclass(w.category, DeprecationWarning) and "moved to" in str(w.message) for w in caught)


# --------------------------------------------------------------------------------------------------
# The one inference path
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def legacy_colorizer(legacy):
    return Colorizer.from_pretrained(legacy)


def test_pipeline_is_a_colorizer_with_the_same_options(legacy, legacy_colorizer):
    from transformers import pipeline

    pipe = pipeline("image-colorization", model=str(legacy))
    assert isinstance(pipe.colorizer, Colorizer)
    photo = str(_gray("coffee"))
    for options in ({"temperature": 0.9}, {"decode_mode": "mode"}, {"size": 32}, {"decode_mode": "median"}):
        a = np.asarray(pipe(photo, **options))
        b = np.asarray(legacy_colorizer(photo, **options))
        assert np.array_equal(a, b), options


def test_unknown_and_bad_options_raise(legacy, legacy_colorizer):
    from transformers import pipeline

    pipe = pipeline("image-colorization", model=str(legacy))
    photo = str(_gray("coffee"))
    with pytest.raises(TypeError, match="'tint'"):
        pipe(photo, tint=[(1, 2, (255, 0, 0))])
    with pytest.raises(TypeError, match="'tint'"):
        legacy_colorizer(photo, tint=[])
    with pytest.raises(TypeError, match="hints"):
        legacy_colorizer.model(pixel_values=torch.zeros(1, 1, 32, 32), hints=None)
    with pytest.raises(ValueError, match="temperature"):
        pipe(photo, temperature=0)
    with pytest.raises(ValueError, match="size"):
        legacy_colorizer(photo, size=30)
    with pytest.raises(ValueError, match="precision"):
        Colorizer(legacy_colorizer.model, precision="int4")


def test_batch_errors_name_the_file_and_keep_the_rest(legacy_colorizer, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_text("not a photo")
    items = [str(_gray("astronaut")), str(bad), str(_gray("coffee"))]
    results = dict(legacy_colorizer.colorize_iter(items))
    assert isinstance(results[1], hf_colorize.ColorizeError) and "not a recognised image format" in str(results[1])
    _assert_same(results[0], "astronaut")
    _assert_same(results[2], "coffee")
    with pytest.raises(hf_colorize.ColorizationInputError, match=f"^{bad}: not a recognised image format"):
        legacy_colorizer(items)


def test_decode_only_where_ab_is_needed(legacy_colorizer):
    model = legacy_colorizer.model
    x = torch.zeros(2, 1, 32, 32)
    assert model(pixel_values=x).ab is not None  # a user's plain call still decodes
    assert model(pixel_values=x, decode=False).ab is None
    labels = torch.randn(2, 2, 32, 32) * 20
    out = model(pixel_values=x, labels=labels)  # training: the loss, no decoding
    assert out.loss is not None and out.ab is None


def test_eight_bit_inputs_skip_the_float_round_trip(legacy_colorizer):
    """uint8 arrays, PIL images and files give the same network input and L (the 8-bit image is resized
    as decoded), equal to the float path's."""
    processor = legacy_colorizer.image_processor
    from hf_colorize.models.colorization.image_processing_colorization import load_pixels

    path = _gray("astronaut")
    pixels = load_pixels(str(path))
    assert isinstance(pixels, np.ndarray) and pixels.dtype == np.uint8 and pixels.shape[-1] == 3
    l_a, x_a = processor.prepare(str(path))
    l_b, x_b = processor.prepare(pixels)
    l_c, x_c = processor.prepare(torch.from_numpy(pixels).permute(2, 0, 1).float() / 255.0)  # float: old route
    assert torch.equal(x_a, x_b) and torch.equal(l_a, l_b)
    assert torch.equal(x_a, x_c) and torch.allclose(l_a, l_c, atol=1e-4)


def test_batching_does_not_change_results(legacy_colorizer):
    items = [str(_gray("astronaut")), str(_gray("coffee")), str(_gray("astronaut"))]
    one = legacy_colorizer(items, batch_size=1)
    three = legacy_colorizer(items, batch_size=3)
    for a, b in zip(one, three):  # the same up to the convolutions' float rounding in a batch
        assert np.abs(np.asarray(a).astype(int) - np.asarray(b).astype(int)).max() <= 1
    with pytest.raises(ValueError, match="batch_size"):
        legacy_colorizer(items, batch_size=0)
