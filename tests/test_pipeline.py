"""The `image-colorization` pipeline on real photos: batching, call-time decoding options, original
resolution, and agreement with processor + model + post_process done by hand."""

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import pipeline

import hf_colorize
from hf_colorize import ColorizationImageProcessor, ColorizationModel, decode_ab


@pytest.fixture(scope="module")
def colorize(tiny_model_dir):
    return pipeline("image-colorization", model=str(tiny_model_dir))


@pytest.fixture(scope="module")
def photos(photo_paths, gray_photo_paths):
    """Real photos at reduced, varied sizes (kept odd-shaped to catch resizing slips)."""
    out = []
    for path, side in zip(photo_paths[:3] + gray_photo_paths[:1], (97, 120, 75, 88)):
        with Image.open(path) as im:
            im = im.copy()
        im.thumbnail((side, side))
        out.append(im)
    return out


def test_task_is_registered_and_loads_our_classes(colorize):
    assert isinstance(colorize, hf_colorize.ImageColorizationPipeline)
    assert isinstance(colorize.model, ColorizationModel)
    assert isinstance(colorize.image_processor, ColorizationImageProcessor)
    assert colorize.image_processor.size == 64  # the folder's preprocessor_config.json was read


def test_single_and_batch_inputs_keep_original_resolution(colorize, photos, photo_paths):
    one = colorize(photos[0])
    assert isinstance(one, Image.Image) and one.mode == "RGB" and one.size == photos[0].size
    from_path = colorize(str(photo_paths[0]))
    with Image.open(photo_paths[0]) as im:
        assert from_path.size == im.size
    many = colorize(photos, batch_size=3)
    assert [o.size for o in many] == [p.size for p in photos]
    # batching changes nothing (eval-mode BatchNorm): same pixels as one at a time, up to float rounding
    for image, batched in zip(photos, many):
        single = np.asarray(colorize(image), dtype=int)
        assert np.abs(single - np.asarray(batched, dtype=int)).max() <= 1


def test_same_as_manual_processor_model_post_process(colorize, photos, tiny_model_dir):
    processor = ColorizationImageProcessor.from_pretrained(tiny_model_dir)
    model = ColorizationModel.from_pretrained(tiny_model_dir).eval()
    inputs = processor(photos)
    with torch.no_grad():
        outputs = model(pixel_values=inputs["pixel_values"])
    manual = processor.post_process_colorization(outputs, images=photos, output_type="pt")
    piped = colorize(photos, output_type="pt", batch_size=2)
    for a, b in zip(manual, piped):  # channels_last vs contiguous convolutions: float rounding only
        torch.testing.assert_close(a, b, atol=5e-5, rtol=0)


def _ab(colorize, image, **kwargs):
    """The ab channels of a pipeline result (Lab float output), shape (2, H, W)."""
    return colorize(image, output_type="lab", **kwargs)[1:]


def test_call_time_decoding_options(colorize, photos):
    image = photos[1]
    default = _ab(colorize, image)
    torch.testing.assert_close(default, _ab(colorize, image, temperature=0.38))  # config default T = 0.38
    mode = _ab(colorize, image, decode_mode="mode")
    mean = _ab(colorize, image, decode_mode="mean")
    torch.testing.assert_close(_ab(colorize, image, temperature=1.0), mean, atol=1e-3, rtol=0)
    assert (default - mean).abs().mean() > 1e-3 and (default - mode).abs().mean() > 1e-3
    # lower temperatures move the annealed mean away from the mean, towards the mode
    d = [(_ab(colorize, image, temperature=t) - mean).norm(dim=0).mean() for t in (1.0, 0.6, 0.38, 0.2)]
    assert d[0] < 1e-2 and d[1] < d[2] < d[3]
    s1 = _ab(colorize, image, decode_mode="sample", seed=3)
    torch.testing.assert_close(s1, _ab(colorize, image, decode_mode="sample", seed=3), rtol=0, atol=0)
    assert not torch.equal(s1, _ab(colorize, image, decode_mode="sample", seed=4))
    median = _ab(colorize, image, decode_mode="median")
    assert median.shape == default.shape and not torch.equal(median, mean)
    with pytest.raises(ValueError, match="temperature"):
        colorize(image, temperature=0)


def test_pipeline_ab_is_the_models_decode_upsampled(colorize, photos, tiny_model_dir):
    """The call-time options reach the model: the pipeline's ab equals decode_ab of the model logits."""
    processor = ColorizationImageProcessor.from_pretrained(tiny_model_dir)
    model = colorize.model
    image = photos[2]
    with torch.no_grad():
        logits = model(pixel_values=processor(image)["pixel_values"]).logits
    for kwargs, (mode, t) in [({"decode_mode": "mode"}, ("mode", 1.0)), ({"temperature": 0.7}, ("annealed_mean", 0.7))]:
        expected = processor.colorize_l(processor.l_channel(image), decode_ab(logits, model.ab_bins, mode, t)[0], "lab")
        torch.testing.assert_close(colorize(image, output_type="lab", **kwargs), expected, atol=1e-4, rtol=0)


def test_size_option_and_odd_shapes(colorize, photos):
    image = photos[0]
    processor, model = colorize.image_processor, colorize.model
    for size in (32, 64):  # the network sees the photo at `size` (default: the processor's 64)
        got = colorize(image, size=size, output_type="lab") if size != 64 else colorize(image, output_type="lab")
        l_full, pixel_values = processor.prepare(image, size)
        assert pixel_values.shape == (1, size, size)
        with torch.no_grad():
            ab = model(pixel_values=pixel_values[None]).ab
        assert ab.shape[-1] == size // 4
        torch.testing.assert_close(got, processor.colorize_l(l_full, ab[0], "lab"), atol=1e-4, rtol=0)
        assert got.shape == (3, image.height, image.width)
    rgb = np.asarray(photos[0])
    for array in (rgb[:1, :1], rgb[:1], rgb[:, :1], rgb[:7, :13]):
        out = colorize(Image.fromarray(array))
        assert out.size == (array.shape[1], array.shape[0])
    with pytest.raises(ValueError, match="multiple of 8"):
        colorize(image, size=30)


def test_output_types(colorize, photos):
    image = photos[3]
    pil = colorize(image)
    arr = colorize(image, output_type="np")
    pt = colorize(image, output_type="pt")
    np.testing.assert_array_equal(np.asarray(pil), arr)
    assert pt.shape == (3, image.height, image.width) and 0 <= pt.min() and pt.max() <= 1
    np.testing.assert_array_equal((pt * 255).round().to(torch.uint8).permute(1, 2, 0).numpy(), arr)


def test_embedded_default_model_runs(default_model_dir, photos):
    colorize = pipeline("image-colorization", model=str(default_model_dir))
    out = colorize(photos[0])
    assert out.size == photos[0].size and out.mode == "RGB"
