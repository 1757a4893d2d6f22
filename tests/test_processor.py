"""ColorizationImageProcessor: colour maths vs scikit-image, L preservation, every input mode and layout.

Odd-mode files are built in tmp_path with PIL from real photos (scikit-image's bundled ones, conftest).
"""

import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import color

from hf_colorize import ColorizationImageProcessor, ColorizationInputError
from hf_colorize.models.colorization.image_processing_colorization import lab_to_rgb, lab_to_rgb_unclipped, load_rgb, rgb_to_l, rgb_to_lab

# Tolerance on L after an 8-bit RGB round trip: each channel moves by up to half a step (0.5/255) and
# sum_c |dL/dv_c| peaks at ~133 L units per unit of sRGB (dark grays near L = 8, where L is linear in
# Y), so |dL| <= 0.26; 0.3 leaves room for the gamut mapping's 1e-4 tolerance.
L_TOL_8BIT = 0.3


@pytest.fixture(scope="module")
def processor():
    return ColorizationImageProcessor(size=64)


@pytest.fixture(scope="module")
def photo(photo_paths):
    """A real colour photo, cropped non-square (80 x 56) so transposed orientations are detectable."""
    with Image.open(photo_paths[0]) as im:
        return im.convert("RGB").resize((80, 56), Image.LANCZOS)


def _to_tensor(image):
    return torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float64) / 255.0).permute(2, 0, 1)


def _l_of(image):
    """L `(H, W)` float64 of a PIL RGB image (reference for what the processor should read)."""
    return rgb_to_lab(_to_tensor(image))[0]


def _gray_l(gray):
    v = torch.from_numpy(np.asarray(gray, dtype=np.float64) / 255.0)
    return rgb_to_lab(v[None].expand(3, -1, -1))[0]


# --------------------------------------------------------------------------------------------------
# Colour maths
# --------------------------------------------------------------------------------------------------
def test_rgb_to_lab_matches_skimage_on_real_photos(photo_paths):
    for path in photo_paths:
        with Image.open(path) as im:
            rgb = np.asarray(im.convert("RGB"), dtype=np.float64) / 255.0
        ours = rgb_to_lab(torch.from_numpy(rgb).permute(2, 0, 1)).permute(1, 2, 0).numpy()
        np.testing.assert_allclose(ours, color.rgb2lab(rgb), atol=1e-6)
        ours32 = rgb_to_lab(torch.from_numpy(rgb).permute(2, 0, 1).float()).permute(1, 2, 0).numpy()
        np.testing.assert_allclose(ours32, color.rgb2lab(rgb), atol=2e-3)
        l_only = rgb_to_l(torch.from_numpy(rgb).permute(2, 0, 1))[0].numpy()
        np.testing.assert_allclose(l_only, color.rgb2lab(rgb)[..., 0], atol=1e-6)


def test_lab_to_rgb_matches_skimage_on_real_photos(photo_paths):
    for path in photo_paths:
        with Image.open(path) as im:
            rgb = np.asarray(im.convert("RGB"), dtype=np.float64) / 255.0
        lab = color.rgb2lab(rgb)
        lab_t = torch.from_numpy(lab).permute(2, 0, 1)
        np.testing.assert_allclose(lab_to_rgb_unclipped(lab_t).permute(1, 2, 0).numpy(), color.lab2rgb(lab), atol=1e-6)
        np.testing.assert_allclose(lab_to_rgb(lab_t).permute(1, 2, 0).numpy(), rgb, atol=1e-4)  # round trip
        # 1.6x the chroma pushes many pixels out of gamut: skimage clips them, and so does the unclipped
        # conversion once clamped (skimage also zeroes negative Z, so compare where Z >= 0)
        boosted = lab * np.array([1.0, 1.6, 1.6])
        z_ok = (boosted[..., 0] + 16) / 116 - boosted[..., 2] / 200 > 0.2068966
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # skimage warns about the Z < 0 pixels it zeroes
            ref = color.lab2rgb(boosted)
        ours = lab_to_rgb_unclipped(torch.from_numpy(boosted).permute(2, 0, 1)).clamp(0, 1).permute(1, 2, 0).numpy()
        np.testing.assert_allclose(ours[z_ok], ref[z_ok], atol=1e-6)


# --------------------------------------------------------------------------------------------------
# L preservation
# --------------------------------------------------------------------------------------------------
EXTREME_AB = [(100.0, -110.0), (-90.0, 90.0), (60.0, 60.0), (0.0, 0.0), (-40.0, -40.0)]


@pytest.mark.parametrize("ab", EXTREME_AB)
def test_output_l_equals_input_l_even_out_of_gamut(processor, photo_paths, gray_photo_paths, ab):
    """Out-of-gamut ab (constant colours at the edge of the bin set) on real colour and gray photos:
    the output's L is the input's (8-bit output within L_TOL_8BIT; float output within 0.02), while
    plain clipping would shift L by several units, and the colour is not simply dropped."""
    for path in photo_paths[:3] + gray_photo_paths[:2]:
        with Image.open(path) as im:
            im = im.convert("RGB").resize((96, 72))
        l_in = processor.l_channel(im)
        ab_low = torch.tensor(ab).view(2, 1, 1).expand(2, 5, 7)
        out8 = processor.colorize_l(l_in, ab_low, output_type="pil")
        assert out8.size == im.size
        assert (_l_of(out8) - l_in[0].double()).abs().max() <= L_TOL_8BIT
        out_f = processor.colorize_l(l_in, ab_low, output_type="pt")
        assert (rgb_to_lab(out_f.double())[0] - l_in[0].double()).abs().max() <= 0.02
        if ab != (0.0, 0.0):
            lab = torch.cat((l_in, torch.tensor(ab).view(2, 1, 1).expand(2, *l_in.shape[-2:])))
            clipped = lab_to_rgb_unclipped(lab).clamp(0, 1)
            assert (rgb_to_lab(clipped.double())[0] - l_in[0]).abs().max() > 3.0  # the test has teeth
            chroma = rgb_to_lab(out_f.double())[1:].norm(dim=0)
            mid = (l_in[0] > 30) & (l_in[0] < 70)
            assert chroma[mid].mean() > 10.0


def test_model_output_keeps_l_for_colour_and_gray_photos(processor, tiny_model_dir, photo_paths, gray_photo_paths):
    from hf_colorize import ColorizationModel

    model = ColorizationModel.from_pretrained(tiny_model_dir).eval()
    images = []
    for path in photo_paths[:3] + gray_photo_paths[:2]:
        with Image.open(path) as im:
            im.draft("RGB", (160, 160))
            images.append(im.copy())
    inputs = processor(images)
    with torch.no_grad():
        outputs = model(pixel_values=inputs["pixel_values"], temperature=0.1)  # vivid: more out-of-gamut
    for image, out in zip(images, processor.post_process_colorization(outputs, images=images)):
        assert out.size == image.size and out.mode == "RGB"
        assert (_l_of(out) - _l_of(image)).abs().max() <= L_TOL_8BIT


# --------------------------------------------------------------------------------------------------
# Input modes (files built from a real photo)
# --------------------------------------------------------------------------------------------------
def _assert_loads_as(processor, source, expected_l, size, atol=0.02):
    l_full = processor.l_channel(source)
    assert tuple(l_full.shape) == (1, size[1], size[0])
    assert torch.isfinite(l_full).all()
    np.testing.assert_allclose(l_full[0].double().numpy(), expected_l.numpy(), atol=atol)
    batch = processor.preprocess([source])
    assert batch["pixel_values"].shape == (1, 1, 64, 64) and batch["original_sizes"] == [(size[1], size[0])]


def test_rgb_l_la_rgba_files(processor, photo, tmp_path):
    gray = photo.convert("L")
    photo.save(tmp_path / "rgb.png")
    gray.save(tmp_path / "l.png")
    gray.convert("LA").save(tmp_path / "la.png")
    photo.convert("RGBA").save(tmp_path / "rgba.png")
    _assert_loads_as(processor, tmp_path / "rgb.png", _l_of(photo), photo.size)
    _assert_loads_as(processor, tmp_path / "l.png", _gray_l(gray), photo.size)
    _assert_loads_as(processor, tmp_path / "la.png", _gray_l(gray), photo.size)
    _assert_loads_as(processor, tmp_path / "rgba.png", _l_of(photo), photo.size)
    photo.save(tmp_path / "rgb.jpg", quality=95)
    with Image.open(tmp_path / "rgb.jpg") as im:  # the JPEG's own decoded pixels (lossy: not the photo's)
        decoded = im.convert("RGB")
    assert (_l_of(decoded) - _l_of(photo)).abs().mean() < 1.0
    _assert_loads_as(processor, tmp_path / "rgb.jpg", _l_of(decoded), photo.size)


def test_transparency_is_composited_on_white(processor, photo, tmp_path):
    rgba = photo.convert("RGBA")
    alpha = np.full(photo.size[::-1], 255, np.uint8)
    alpha[:, :20] = 0  # transparent left margin, like a scan's cut-out
    alpha[:, 20:40] = 128
    rgba.putalpha(Image.fromarray(alpha))
    rgba.save(tmp_path / "rgba.png")
    l_full = processor.l_channel(tmp_path / "rgba.png")[0]
    assert torch.allclose(l_full[:, :20], torch.tensor(100.0), atol=1e-3)
    expected = _l_of(Image.alpha_composite(Image.new("RGBA", photo.size, "white"), rgba).convert("RGB"))
    np.testing.assert_allclose(l_full.double().numpy(), expected.numpy(), atol=0.02)
    la = photo.convert("LA")
    la.putalpha(Image.fromarray(alpha))
    la.save(tmp_path / "la.png")
    assert torch.allclose(processor.l_channel(tmp_path / "la.png")[0, :, :20], torch.tensor(100.0), atol=1e-3)


def test_palette_files_with_and_without_transparency(processor, photo, tmp_path):
    pal = photo.convert("P", palette=Image.ADAPTIVE, colors=64)
    pal.save(tmp_path / "p.png")
    _assert_loads_as(processor, tmp_path / "p.png", _l_of(pal.convert("RGB")), photo.size)
    index = pal.getpixel((0, 0))
    pal.save(tmp_path / "pt.png", transparency=index)
    with Image.open(tmp_path / "pt.png") as check:
        assert check.mode == "P" and "transparency" in check.info
    l_full = processor.l_channel(tmp_path / "pt.png")[0]
    transparent = torch.from_numpy(np.asarray(pal) == index)
    assert transparent.any() and torch.allclose(l_full[transparent], torch.tensor(100.0), atol=1e-3)
    opaque_ref = _l_of(pal.convert("RGB"))
    np.testing.assert_allclose(l_full[~transparent].double().numpy(), opaque_ref[~transparent].numpy(), atol=0.02)


def test_cmyk_and_one_bit_files(processor, photo, tmp_path):
    photo.convert("CMYK").save(tmp_path / "cmyk.tif")
    _assert_loads_as(processor, tmp_path / "cmyk.tif", _l_of(photo), photo.size)  # PIL's CMYK is exact
    photo.convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    with Image.open(tmp_path / "cmyk.jpg") as check:
        assert check.mode == "CMYK"
    _assert_loads_as(processor, tmp_path / "cmyk.jpg", _l_of(photo), photo.size, atol=8.0)
    bits = photo.convert("1")
    bits.save(tmp_path / "bits.png")
    l_full = processor.l_channel(tmp_path / "bits.png")[0]
    assert set(np.unique(l_full.round().numpy())) == {0.0, 100.0}
    _assert_loads_as(processor, tmp_path / "bits.png", _gray_l(bits.convert("L")), photo.size)


def test_high_bit_depth_files(processor, photo, tmp_path):
    """16-bit PNG (I;16), 32-bit int TIFF (I) and float TIFF (F) keep their scale: the same gray levels
    stored as v * 257 / 65535 or v / 255 give the 8-bit photo's L."""
    gray = photo.convert("L")
    g = np.asarray(gray)
    expected = _gray_l(gray)
    Image.fromarray((g.astype(np.uint16) * 257)).save(tmp_path / "g16.png")
    with Image.open(tmp_path / "g16.png") as check:
        assert check.mode == "I;16"
    _assert_loads_as(processor, tmp_path / "g16.png", expected, photo.size)
    Image.fromarray(g.astype(np.int32) * 257).save(tmp_path / "g32.tif")
    with Image.open(tmp_path / "g32.tif") as check:
        assert check.mode == "I"
    _assert_loads_as(processor, tmp_path / "g32.tif", expected, photo.size)
    Image.fromarray(g.astype(np.float32) / 255.0).save(tmp_path / "gf.tif")
    with Image.open(tmp_path / "gf.tif") as check:
        assert check.mode == "F"
    _assert_loads_as(processor, tmp_path / "gf.tif", expected, photo.size)
    # PIL's own in-memory conversions of an 8-bit image keep 0-255 values
    for mode in ("I", "I;16", "F"):
        _assert_loads_as(processor, gray.convert(mode), expected, photo.size)
    # a real 16-bit gradient keeps more than 256 distinct levels
    ramp = np.tile(np.linspace(0, 65535, 1000).astype(np.uint16), (4, 1))
    Image.fromarray(ramp).save(tmp_path / "ramp16.png")
    assert len(torch.unique(processor.l_channel(tmp_path / "ramp16.png"))) > 600


def test_float_tiff_with_nan_is_refused(processor, tmp_path):
    arr = np.full((8, 8), 0.5, np.float32)
    arr[3, 3] = np.nan
    Image.fromarray(arr).save(tmp_path / "nan.tif")
    with pytest.raises(ColorizationInputError, match="NaN"):
        processor.l_channel(tmp_path / "nan.tif")


# EXIF orientation n: the stored pixels are the upright image transformed by the inverse of the
# transform a viewer applies (EXIF 2.3: 6 = rotate 90 deg clockwise to display, etc.)
STORED_FROM_UPRIGHT = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,  # stored rotated 90 ccw; viewer turns it 90 cw
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def _save_oriented(upright, orientation, path, **kwargs):
    op = STORED_FROM_UPRIGHT[orientation]
    stored = upright if op is None else upright.transpose(op)
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored.save(path, exif=exif, **kwargs)
    return stored


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientations_give_the_displayed_image(processor, photo, tmp_path, orientation):
    path = tmp_path / f"o{orientation}.png"
    stored = _save_oriented(photo, orientation, path)
    if orientation >= 5:
        assert stored.size == photo.size[::-1]
    _assert_loads_as(processor, path, _l_of(photo), photo.size, atol=1e-3)
    out = processor.post_process_colorization(torch.zeros(1, 2, 4, 4), images=[path])[0]
    assert out.size == photo.size
    jpg = tmp_path / f"o{orientation}.jpg"
    _save_oriented(photo, orientation, jpg, quality=95)
    _assert_loads_as(processor, jpg, _l_of(photo), photo.size, atol=8.0)


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_animations_use_frame_zero(processor, photo, tmp_path, fmt):
    second = photo.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    path = tmp_path / f"anim.{fmt.lower()}"
    photo.save(path, format=fmt, save_all=True, append_images=[second], duration=100,
               **({"lossless": True} if fmt == "WEBP" else {}))
    with Image.open(path) as check:
        assert check.n_frames == 2
        frame0 = check.convert("RGB")
        check.seek(1)
        frame1 = check.convert("RGB")
    _assert_loads_as(processor, path, _l_of(frame0), photo.size, atol=0.02)
    assert (processor.l_channel(path)[0].double() - _l_of(frame1)).abs().mean() > 2.0


# --------------------------------------------------------------------------------------------------
# In-memory inputs: PIL modes, numpy and torch layouts
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["RGB", "L", "LA", "RGBA", "P", "CMYK", "1", "I", "F", "I;16"])
def test_pil_images_of_every_mode(processor, photo, mode):
    image = photo.convert(mode)
    if mode in ("I", "F", "I;16"):  # PIL's conversions from 8-bit keep gray levels on a 0-255 scale
        expected = _gray_l(np.asarray(image, dtype=np.float64))
    else:
        expected = _l_of(image.convert("RGB"))
    _assert_loads_as(processor, image, expected, photo.size)


def test_numpy_layouts_and_dtypes(processor, photo):
    rgb = np.asarray(photo)
    gray = np.asarray(photo.convert("L"))
    l_rgb, l_gray = _l_of(photo), _gray_l(photo.convert("L"))
    cases = [
        (gray, l_gray), (gray[..., None], l_gray), (rgb, l_rgb), (np.asarray(photo.convert("RGBA")), l_rgb),
        (rgb.astype(np.uint16) * 257, l_rgb), (rgb.astype(np.float32) / 255, l_rgb), (rgb / 255.0, l_rgb),
        (gray.astype(np.uint16) * 257, l_gray), (gray.astype(np.float64) / 255, l_gray),
    ]
    for array, expected in cases:
        _assert_loads_as(processor, array, expected, photo.size)


def test_torch_layouts(processor, photo):
    rgb = torch.from_numpy(np.asarray(photo).copy())
    l_rgb = _l_of(photo)
    _assert_loads_as(processor, rgb.permute(2, 0, 1), l_rgb, photo.size)  # CHW uint8
    _assert_loads_as(processor, rgb.permute(2, 0, 1).float() / 255, l_rgb, photo.size)  # CHW float
    gray = torch.from_numpy(np.asarray(photo.convert("L")).copy())
    _assert_loads_as(processor, gray, _gray_l(photo.convert("L")), photo.size)  # HW
    _assert_loads_as(processor, gray[None].float() / 255, _gray_l(photo.convert("L")), photo.size)  # 1HW


def test_tiny_images_1x1_and_1xn(processor, photo):
    """Thin images: numpy (1, N, 3) is one row of N pixels, not a 1-channel image N high and 3 wide."""
    rgb = np.asarray(photo)
    for array in (rgb[:1], rgb[:, :1], rgb[:1, :1], rgb[:3, :4]):
        h, w = array.shape[:2]
        expected = rgb_to_lab(torch.from_numpy(array / 255.0).permute(2, 0, 1))[0]
        _assert_loads_as(processor, array, expected, (w, h))
        _assert_loads_as(processor, Image.fromarray(array), expected, (w, h))
        out = processor.post_process_colorization(torch.full((1, 2, 16, 16), 20.0), images=[array], output_type="np")[0]
        assert out.shape == (h, w, 3)
        assert (_l_of(Image.fromarray(out)) - expected).abs().max() <= L_TOL_8BIT


def test_out_of_range_and_bad_arrays(processor):
    t = torch.rand(3, 10, 10) * 3 - 1  # floats outside [0, 1] are clamped, so L stays in [0, 100]
    l_full = processor.l_channel(t)
    assert l_full.min() >= 0 and l_full.max() <= 100
    nan = torch.rand(3, 10, 10)
    nan[1, 2, 3] = float("nan")
    with pytest.raises(ColorizationInputError, match="NaN"):
        processor.l_channel(nan)
    with pytest.raises(ColorizationInputError, match="channel axis"):
        processor.l_channel(np.zeros((10, 10, 7)))
    with pytest.raises(ColorizationInputError, match="2 or 3 dims"):
        processor.l_channel(np.zeros((2, 10, 10, 3)))
    with pytest.raises(ColorizationInputError, match="no pixels"):
        processor.l_channel(np.zeros((0, 5, 3), np.uint8))
    with pytest.raises(ColorizationInputError):
        processor.l_channel(np.array([["a", "b"]], dtype=object))
    with pytest.raises(ColorizationInputError, match="unsupported image type"):
        processor.l_channel({"not": "an image"})


# --------------------------------------------------------------------------------------------------
# Bad files: one-line ColorizationInputError with the cause
# --------------------------------------------------------------------------------------------------
def _png_header_only(width, height):
    """A PNG whose header declares width x height but holds no pixel data (a decompression bomb shape)."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)) + chunk(b"IEND", b"")


def test_bad_files_raise_one_line_errors(processor, photo_paths, tmp_path):
    data = photo_paths[0].read_bytes()
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "truncated.jpg").write_bytes(data[: len(data) // 3])
    (tmp_path / "text.jpg").write_text("this is not a JPEG\n")
    (tmp_path / "bomb.png").write_bytes(_png_header_only(12_000, 12_000))
    (tmp_path / "huge.png").write_bytes(_png_header_only(50_000, 50_000))
    (tmp_path / "folder.jpg").mkdir()
    cases = {
        "missing.jpg": "no such file", "empty.jpg": "empty", "truncated.jpg": "truncated",
        "text.jpg": "not a recognised image", "bomb.png": "144 MP, over the 100 MP limit",
        "huge.png": "decompression bomb", "folder.jpg": "directory",
    }
    for name, cause in cases.items():
        with pytest.raises(ColorizationInputError, match=cause) as err:
            processor.l_channel(tmp_path / name)
        assert "\n" not in str(err.value)
    with pytest.raises(ColorizationInputError, match="empty"):
        load_rgb(b"")
    with pytest.raises(ColorizationInputError, match="not a recognised"):
        load_rgb(b"GIF89a but not really")
    # a 95 MP image is under the 100 MP limit (PIL's own 89 MP warning must not refuse it)
    with pytest.raises(ColorizationInputError, match="truncated|cannot decode"):
        processor.l_channel(_png_header_only(10_000, 9_500))
    small = ColorizationImageProcessor(max_pixels=1000)
    with pytest.raises(ColorizationInputError, match="limit"):
        small.l_channel(photo_paths[0])
