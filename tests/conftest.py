"""Shared fixtures. Tests run offline (HF_HUB_OFFLINE=1).

Photos come from two places:

- `photo_paths`, `gray_photo_paths`, `many_photo_files`: public-domain photos bundled inside the
  scikit-image wheel (`skimage.data`: astronaut, coffee, chelsea, rocket, camera, coins, ...), written
  once per session to a temporary folder as JPEG/PNG files of varied sizes. They are always there, so
  every behaviour test runs on a fresh clone.
- `imagenet_files` (alias `shared_photos`): the 1,000 real ImageNet photos of the shared data folder
  beside the project (`../shared/data`, or `$HF_COLORIZE_SHARED_DATA`), for the few tests whose numbers
  are statistics over many real photos. Without that folder those tests skip with SHARED_SKIP_REASON.
"""

import os
import pathlib

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import pytest  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
# The shared data folder: ../shared/data beside the project; HF_COLORIZE_SHARED_DATA overrides it (set it
# to a missing folder to see what a fresh clone runs: HF_COLORIZE_SHARED_DATA=/nonexistent pytest -q).
SHARED = pathlib.Path(os.environ.get("HF_COLORIZE_SHARED_DATA") or ROOT.parent / "shared" / "data")
IMAGENET = SHARED / "imagenet-samples"
SHARED_SKIP_REASON = (
    f"needs the shared real photos ({IMAGENET} is absent; it exists only beside the development checkout; "
    "set HF_COLORIZE_SHARED_DATA to the shared data folder to run this test)"
)

# (skimage.data function, file name, (width, height) written or None = native size). All of these are
# bundled in the scikit-image wheel (no download). Colour photos first, in the order photo_paths has them.
COLOUR_PHOTOS = [
    ("astronaut", "astronaut.jpg", (256, 256)),
    ("coffee", "coffee.jpg", (300, 200)),
    ("chelsea", "chelsea.jpg", None),  # 451 x 300, odd width
    ("rocket", "rocket.jpg", (160, 240)),  # portrait crop
    ("motorcycle", "motorcycle.png", (240, 162)),
    ("immunohistochemistry", "immunohistochemistry.jpg", (128, 128)),
    ("retina", "retina.jpg", (177, 177)),
    ("hubble_deep_field", "hubble_deep_field.png", (200, 174)),  # dark, little colour
]
GRAY_PHOTOS = [
    ("camera", "camera.jpg", (256, 256)),
    ("coins", "coins.png", None),  # 384 x 303
    ("moon", "moon.jpg", (200, 150)),
]


def _skimage_rgb(name):
    """A bundled skimage.data photo as uint8 (H, W, 3) or (H, W); fails (not skips) if it would download."""
    import numpy as np
    from skimage import data

    if name == "motorcycle":
        return np.ascontiguousarray(data.stereo_motorcycle()[0])
    return np.ascontiguousarray(getattr(data, name)())


def _fit(image, size):
    """Centre-crop a PIL image to the aspect ratio of `size` (width, height), then resize to it."""
    from PIL import Image

    if size is None or image.size == tuple(size):
        return image
    w, h = image.size
    tw, th = size
    if w * th > h * tw:  # too wide
        cw = round(h * tw / th)
        image = image.crop(((w - cw) // 2, 0, (w - cw) // 2 + cw, h))
    else:
        ch = round(w * th / tw)
        image = image.crop((0, (h - ch) // 2, w, (h - ch) // 2 + ch))
    return image.resize((tw, th), Image.LANCZOS)


def _write(image, path):
    if path.suffix == ".jpg":
        image.save(path, quality=90)
    else:
        image.save(path)
    return path


@pytest.fixture(scope="session")
def _sample_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("skimage_photos")


@pytest.fixture(scope="session")
def photo_paths(_sample_dir):
    """Eight real colour photos (scikit-image's bundled public-domain ones), JPEG and PNG, 128-451 px wide,
    square, landscape and portrait, in the order of COLOUR_PHOTOS (paths; mode RGB; the last one, the
    Hubble deep field, is mostly black)."""
    from PIL import Image

    folder = _sample_dir / "colour"
    folder.mkdir(exist_ok=True)
    return [_write(_fit(Image.fromarray(_skimage_rgb(name)), size), folder / file) for name, file, size in COLOUR_PHOTOS]


@pytest.fixture(scope="session")
def gray_photo_paths(_sample_dir):
    """Three real grayscale photos (mode L files: camera, coins, moon)."""
    from PIL import Image

    folder = _sample_dir / "gray"
    folder.mkdir(exist_ok=True)
    return [_write(_fit(Image.fromarray(_skimage_rgb(name)), size), folder / file) for name, file, size in GRAY_PHOTOS]


@pytest.fixture(scope="session")
def many_photo_files(_sample_dir):
    """A folder of 40 photos, like a small slice of the shared samples: 36 colour ones (four crops and
    scales, 64-300 px, of nine bundled colour images) and 4 grayscale ones (mode L), all JPEG, shuffled
    and named `n<NNN>_<photo>_<variant>.jpg` like the shared ImageNet files. Sorted paths; the folder
    holds nothing else (`many_photo_files[0].parent`)."""
    import random

    import numpy as np
    from PIL import Image

    folder = _sample_dir / "many"
    folder.mkdir(exist_ok=True)
    sources = [name for name, _, _ in COLOUR_PHOTOS[:7]] + ["colorwheel", "coffee"]
    crops = [None, (0.0, 0.0, 0.6), (1.0, 1.0, 0.6), (0.5, 0.3, 0.5)]  # (left, top, side) as fractions
    sizes = [(224, 168), (96, 128), (300, 200), (64, 64)]
    items = []
    for s, name in enumerate(sources):
        image = Image.fromarray(_skimage_rgb(name))
        for v, (crop, size) in enumerate(zip(crops, sizes[s % 4 :] + sizes[: s % 4])):
            if crop is not None:
                w, h = image.size
                side = round(min(w, h) * crop[2])
                left, top = round((w - side) * crop[0]), round((h - side) * crop[1])
                image_v = image.crop((left, top, left + side, top + side))
            else:
                image_v = image
            items.append((f"{name}_{s}{v}", _fit(image_v, size)))
    for name in [name for name, _, _ in GRAY_PHOTOS] + ["page"]:
        items.append((f"{name}_gray", _fit(Image.fromarray(_skimage_rgb(name)), (160, 120))))
    for key, image_v in items:  # every colour file really has colour (a gray-looking crop would skew counts)
        spread = np.ptp(np.asarray(image_v.resize((64, 64)), dtype=np.int16), axis=-1).mean() if image_v.mode == "RGB" else 0
        assert (spread > 8) == (not key.endswith("_gray")), (key, spread)
    random.Random(0).shuffle(items)
    return sorted(_write(im, folder / f"n{i:03d}_{key}.jpg") for i, (key, im) in enumerate(items))


def _imagenet_files():
    if not IMAGENET.is_dir():
        pytest.skip(SHARED_SKIP_REASON)
    files = sorted(p for p in IMAGENET.iterdir() if p.suffix.lower() in (".jpeg", ".jpg", ".png"))
    if not files:
        pytest.skip(SHARED_SKIP_REASON)
    return files


@pytest.fixture(scope="session")
def imagenet_files():
    """All 1,000 shared ImageNet sample photos (sorted paths); skips with SHARED_SKIP_REASON if absent.
    Only for tests about statistics over many real photos; behaviour tests use photo_paths,
    gray_photo_paths or many_photo_files."""
    return _imagenet_files()


@pytest.fixture(scope="session")
def shared_photos(imagenet_files):
    """Alias of imagenet_files."""
    return imagenet_files


@pytest.fixture(scope="session")
def colour_folder(tmp_path_factory):
    """12 generated colour photos (48 px) for quick training runs and setting checks."""
    from test_data import make_colour_images

    folder = tmp_path_factory.mktemp("colour")
    make_colour_images(folder, 12, size=48)
    return folder


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
def tiny_hypercolumn_dir(tmp_path_factory):
    """A tiny randomly initialised hypercolumn colorizer (hue/chroma: the decoding path that needs the
    network input) saved with its image processor."""
    import torch

    from hf_colorize import ColorizationImageProcessor, HypercolumnColorizationModel, HypercolumnConfig

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny_hypercolumn")
    config = HypercolumnConfig(width_multiplier=0.125, hidden_size=32, fc_channels=256, color_space="hue-chroma",
                               image_size=64)
    HypercolumnColorizationModel(config).eval().save_pretrained(path)
    ColorizationImageProcessor(size=64).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def default_model_dir():
    """The embedded default model shipped inside the package."""
    import hf_colorize

    if not os.path.isfile(os.path.join(hf_colorize.DEFAULT_MODEL, "config.json")):
        pytest.fail(f"embedded default model missing at {hf_colorize.DEFAULT_MODEL}")
    return pathlib.Path(hf_colorize.DEFAULT_MODEL)


@pytest.fixture(scope="session")
def plain_default_dir(tmp_path_factory, default_model_dir):
    """The embedded default without its hint inputs: a plain ECCV16 model that computes exactly what the
    hint-trained default computes without hints (its hint layers add zero then). For tests of the
    training-free guidance path, which plain bin models take."""
    from hf_colorize import ColorizationImageProcessor, ColorizationModel

    hinted = ColorizationModel.from_pretrained(default_model_dir)
    config = hinted.config.__class__.from_dict(hinted.config.to_dict())
    config.hint_inputs = config.global_hints = config.hint_shortcut = False
    plain = ColorizationModel(config)
    plain.load_state_dict({k: v for k, v in hinted.state_dict().items() if "hint" not in k})
    out = tmp_path_factory.mktemp("plain_default")
    plain.save_pretrained(out)
    ColorizationImageProcessor.from_pretrained(default_model_dir).save_pretrained(out)
    return out
