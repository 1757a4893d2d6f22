"""Shared fixtures. Tests run offline (HF_HUB_OFFLINE=1) and read real photos from ../shared."""

import os
import pathlib

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import pytest  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
IMAGENET = SHARED / "imagenet-samples"


def _imagenet_files():
    if not IMAGENET.is_dir():
        pytest.skip(f"real photos not found: {IMAGENET} is absent (the shared data folder beside the project)")
    files = sorted(p for p in IMAGENET.iterdir() if p.suffix.lower() in (".jpeg", ".jpg", ".png"))
    if not files:
        pytest.skip(f"no photos in {IMAGENET}")
    return files


@pytest.fixture(scope="session")
def imagenet_files():
    """All shared ImageNet sample photos (sorted paths); skips if ../shared is absent."""
    return _imagenet_files()


@pytest.fixture(scope="session")
def photo_paths(imagenet_files):
    """A handful of real colour photos of varied sizes."""
    from PIL import Image

    picked = []
    for p in imagenet_files[::97]:
        with Image.open(p) as im:
            if im.mode == "RGB":
                picked.append(p)
    return picked[:6]


@pytest.fixture(scope="session")
def gray_photo_paths(imagenet_files):
    """The grayscale photos among the shared samples."""
    from PIL import Image

    out = []
    for p in imagenet_files:
        with Image.open(p) as im:
            if im.mode == "L":
                out.append(p)
    return out


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny randomly initialised colorizer saved with its image processor (fast on CPU)."""
    import torch

    from hf_colorize import ColorizationConfig, ColorizationImageProcessor, ColorizationModel

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny_model")
    model = ColorizationModel(ColorizationConfig(width_multiplier=0.125)).eval()
    model.save_pretrained(path)
    ColorizationImageProcessor(size=64).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def default_model_dir():
    """The embedded default model shipped inside the package."""
    import hf_colorize

    if not os.path.isfile(os.path.join(hf_colorize.DEFAULT_MODEL, "config.json")):
        pytest.fail(f"embedded default model missing at {hf_colorize.DEFAULT_MODEL}")
    return pathlib.Path(hf_colorize.DEFAULT_MODEL)
