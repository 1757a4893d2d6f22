"""The README's first command, as a user runs it: `hf-colorize colorize examples/astronaut_bw.jpg -o
astronaut_color.png` (the installed console script, in a subprocess, from the project root, with the
embedded default model). The output must really be coloured, not only the right size: the input's
lightness, plus chroma that a gray or a constant-tint output cannot have."""

import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from skimage.color import rgb2lab

ROOT = pathlib.Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "astronaut_bw.jpg"
MIN_MEAN_CHROMA = 5.0  # mean ab chroma of the output; any gray render (8-bit) measures < 0.5
MIN_OTHER_HUES = 0.05  # share of coloured pixels > 30 deg of hue from the mean hue: a constant tint has 0


def _console_script():
    """The `hf-colorize` script `pip install -e .` put beside this Python (else the one on PATH)."""
    for candidate in (pathlib.Path(sys.executable).parent / "hf-colorize", shutil.which("hf-colorize")):
        if candidate and os.access(candidate, os.X_OK):
            return str(candidate)
    raise AssertionError("no hf-colorize console script: install the package (pip install -e .)")


def _lab(path):
    with Image.open(path) as im:
        return rgb2lab(np.asarray(im.convert("RGB"), dtype=np.float64) / 255.0)


@pytest.mark.slow  # a fresh process loading the embedded default model (.ci/run checks the same command)
def test_readme_quickstart_colorizes_the_example(tmp_path):
    out = tmp_path / "astronaut_color.png"
    env = dict(os.environ, HOME=str(tmp_path), HF_HUB_OFFLINE="1")  # nothing from a cache or the network
    run = subprocess.run([_console_script(), "colorize", os.path.relpath(EXAMPLE, ROOT), "-o", str(out)],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Traceback" not in run.stderr and "error" not in run.stderr.lower(), run.stderr[-3000:]
    with Image.open(EXAMPLE) as src, Image.open(out) as im:
        assert src.mode == "L"  # the example really is a black-and-white photo
        assert im.format == "PNG" and im.mode == "RGB" and im.size == src.size
    lab_in, lab_out = _lab(EXAMPLE), _lab(out)
    assert np.hypot(lab_in[..., 1], lab_in[..., 2]).mean() < 0.5
    # the output keeps the photo's own lightness (8-bit rounding of the RGB output costs < 0.5 L)
    assert np.abs(lab_out[..., 0] - lab_in[..., 0]).max() < 0.5
    # ... and is coloured: real chroma, in more than one hue (not one tint laid over the photo; after gamut
    # mapping a constant tint still varies in chroma, but not in hue)
    chroma = np.hypot(lab_out[..., 1], lab_out[..., 2])
    assert chroma.mean() > MIN_MEAN_CHROMA, f"output is (nearly) gray: mean chroma {chroma.mean():.2f}"
    hue = np.exp(1j * np.arctan2(lab_out[..., 2], lab_out[..., 1])[chroma > 5])
    other = (np.abs(np.angle(hue / hue.mean())) > np.radians(30)).mean()
    assert other > MIN_OTHER_HUES, f"output is one flat tint: {other:.1%} of its colours differ from the mean hue"
