"""Image processor for colorization: any image -> normalized L channel; predicted ab -> RGB images.

Colour conversion is vectorized torch (sRGB, D65, the same formulas as scikit-image's rgb2lab /
lab2rgb). This file travels to the Hub as remote code: it imports only transformers, torch, numpy
and PIL.
"""

import io
import os
import warnings
from typing import Optional, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError
from transformers.image_processing_utils import BaseImageProcessor, BatchFeature

# sRGB (D65) <-> XYZ, as in scikit-image
_XYZ_FROM_RGB = torch.tensor(
    [[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]],
    dtype=torch.float64,
)
_RGB_FROM_XYZ = torch.linalg.inv(_XYZ_FROM_RGB)
_WHITE_D65 = torch.tensor([0.95047, 1.0, 1.08883], dtype=torch.float64)
_EPS = 0.008856
_KAPPA = 7.787

DEFAULT_MAX_PIXELS = 100_000_000
_BAND_ROWS = 256  # full-resolution colour conversion runs in bands of this many rows


class ColorizeError(Exception):
    """Base of every hf-colorize error; the message is one line naming the file or argument at fault.
    (Defined here, in the remote-code set, so the image processor's own errors share the base.)"""

    exit_code = 1  # what the command line exits with; usage errors use 2


class ColorizationInputError(ColorizeError, ValueError):
    """An input image that cannot be colorized; the message is one line naming the cause."""


# --------------------------------------------------------------------------------------------------
# Colour conversion (channels-first, any leading batch dims)
# --------------------------------------------------------------------------------------------------
def _mix(x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Apply a 3x3 colour matrix to the channel dim (-3) of `(..., 3, H, W)`."""
    return torch.einsum("ij,...jhw->...ihw", matrix.to(x.device, x.dtype), x)


def _white(x: torch.Tensor) -> torch.Tensor:
    return _WHITE_D65.to(x.device, x.dtype).view(3, 1, 1)


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB in [0, 1] `(..., 3, H, W)` -> CIE Lab `(..., 3, H, W)` (L in [0, 100])."""
    rgb = rgb.float() if not rgb.is_floating_point() else rgb
    lin = torch.where(rgb > 0.04045, ((rgb + 0.055) / 1.055).clamp(min=0) ** 2.4, rgb / 12.92)
    xyz = _mix(lin, _XYZ_FROM_RGB) / _white(lin)
    f = torch.where(xyz > _EPS, xyz.clamp(min=_EPS) ** (1.0 / 3.0), _KAPPA * xyz + 16.0 / 116.0)
    fx, fy, fz = f.unbind(-3)
    return torch.stack((116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)), dim=-3)


def rgb_to_l(rgb: torch.Tensor) -> torch.Tensor:
    """Only the L channel `(..., 1, H, W)` of `rgb_to_lab` (luminance needs just the Y row)."""
    lin = torch.where(rgb > 0.04045, ((rgb + 0.055) / 1.055).clamp(min=0) ** 2.4, rgb / 12.92)
    y = torch.einsum("j,...jhw->...hw", _XYZ_FROM_RGB[1].to(lin.device, lin.dtype), lin).unsqueeze(-3)
    fy = torch.where(y > _EPS, y.clamp(min=_EPS) ** (1.0 / 3.0), _KAPPA * y + 16.0 / 116.0)
    return 116.0 * fy - 16.0


def lab_to_rgb_unclipped(lab: torch.Tensor) -> torch.Tensor:
    """CIE Lab `(..., 3, H, W)` -> sRGB, not clipped (out-of-gamut colours fall outside [0, 1])."""
    l, a, b = lab.unbind(-3)
    fy = (l + 16.0) / 116.0
    f = torch.stack((fy + a / 500.0, fy, fy - b / 200.0), dim=-3)
    xyz = torch.where(f > 0.2068966, f**3, (f - 16.0 / 116.0) / _KAPPA) * _white(f)
    lin = _mix(xyz, _RGB_FROM_XYZ)
    return torch.where(lin > 0.0031308, 1.055 * lin.clamp(min=0.0031308) ** (1.0 / 2.4) - 0.055, 12.92 * lin)


def _finv(f: torch.Tensor) -> torch.Tensor:
    """Inverse of the Lab companding function f (as in `lab_to_rgb_unclipped`)."""
    return torch.where(f > 0.2068966, f * f * f, (f - 16.0 / 116.0) / _KAPPA)


def _gamut_scale(sel: torch.Tensor, steps: int, tol: float) -> torch.Tensor:
    """For Lab pixels `sel` `(N, 3)`, the largest chroma scale in [0, 1] (bisection, `steps` halvings) at
    which (L, scale * a, scale * b) is in sRGB within `tol`. The test is on linear RGB (sRGB's gamma is
    monotonic, so sRGB in [-tol, 1 + tol] is linear RGB in [-tol / 12.92, ((1.055 + tol) / 1.055) ** 2.4]),
    and Y, which the scale does not change, is computed once: a few contiguous 1-D passes per step."""
    l, a, b = (c.contiguous() for c in sel.unbind(1))
    white = _WHITE_D65.tolist()
    m = _RGB_FROM_XYZ.tolist()
    fy = (l + 16.0) / 116.0
    y = _finv(fy) * white[1]
    a5, b2 = a / 500.0, b / 200.0
    low, high = -tol / 12.92, ((1.055 + tol) / 1.055) ** 2.4
    y_part = [m[i][1] * y for i in range(3)]
    lo = torch.zeros_like(l)
    hi = torch.ones_like(l)
    for _ in range(steps):
        mid = (lo + hi) * 0.5
        x = _finv(fy + mid * a5) * white[0]
        z = _finv(fy - mid * b2) * white[2]
        ok = None
        for i in range(3):
            c = y_part[i] + m[i][0] * x + m[i][2] * z
            inside = (c >= low) & (c <= high)
            ok = inside if ok is None else ok & inside
        lo = torch.where(ok, mid, lo)
        hi = torch.where(ok, hi, mid)
    return lo


def lab_to_rgb(lab: torch.Tensor, preserve_lightness: bool = True, steps: int = 12) -> torch.Tensor:
    """CIE Lab `(..., 3, H, W)` -> sRGB in [0, 1].

    With `preserve_lightness`, an out-of-gamut pixel keeps its L and hue and loses just enough chroma to
    fit in sRGB (bisection on the chroma scale, on those pixels only), so the output's L equals the
    input's; plain clipping would shift lightness on saturated colours.
    """
    rgb = lab_to_rgb_unclipped(lab)
    if preserve_lightness:
        tol = 1e-4
        bad = ((rgb < -tol) | (rgb > 1 + tol)).any(dim=-3)  # (..., H, W)
        if bad.any():
            sel = lab.movedim(-3, -1)[bad]  # (N, 3)
            scale = _gamut_scale(sel, steps, tol)[:, None]
            fixed = torch.cat((sel[:, :1], sel[:, 1:] * scale), dim=1)
            rgb_cl = rgb.movedim(-3, -1).clone()
            rgb_cl[bad] = lab_to_rgb_unclipped(fixed.T[:, :, None])[:, :, 0].T
            rgb = rgb_cl.movedim(-1, -3)
    return rgb.clamp(0.0, 1.0)


# --------------------------------------------------------------------------------------------------
# Loading any image into a float RGB tensor
# --------------------------------------------------------------------------------------------------
def _check_pixels(width: int, height: int, max_pixels: Optional[int]) -> None:
    if width < 1 or height < 1:
        raise ColorizationInputError(f"image has no pixels ({width}x{height})")
    if max_pixels and width * height > max_pixels:
        raise ColorizationInputError(
            f"image is {width}x{height} = {width * height / 1e6:.0f} MP, over the {max_pixels / 1e6:.0f} MP limit "
            "(possible decompression bomb; raise max_pixels if the image is genuine)"
        )


def open_image(source, max_pixels: Optional[int] = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open a path or bytes as a fully decoded PIL image, checking its declared size before decoding."""
    if isinstance(source, (bytes, bytearray)):
        if len(source) == 0:
            raise ColorizationInputError("empty image data")
        fp = io.BytesIO(source)
    else:
        path = os.fspath(source)
        if not os.path.exists(path):
            raise ColorizationInputError("no such file")
        if os.path.isdir(path):
            raise ColorizationInputError("is a directory, not an image")
        if os.path.getsize(path) == 0:
            raise ColorizationInputError("empty file")
        fp = path
    image = None
    try:
        with warnings.catch_warnings():
            # max_pixels is our limit; PIL's warning threshold (89 MP) would contradict it
            # (its hard error at 179 MP still applies)
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(fp)
            _check_pixels(image.width, image.height, max_pixels)
            image.load()
            if getattr(image, "n_frames", 1) > 1:
                # animations (GIF, WebP, multi-page TIFF): keep frame 0 and release the file handle
                frame = image.copy()
                image.close()
                image = frame
    except ColorizationInputError:
        if image is not None:
            image.close()
        raise
    except Image.DecompressionBombError as err:
        raise ColorizationInputError(f"image too large (possible decompression bomb): {err}") from None
    except UnidentifiedImageError:
        raise ColorizationInputError("not a recognised image format") from None
    except PermissionError:
        raise ColorizationInputError("permission denied") from None
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        if image is not None:
            image.close()
        raise ColorizationInputError(f"cannot decode image: {err}") from None
    return image


def pil_to_rgb_tensor(image: Image.Image, max_pixels: Optional[int] = DEFAULT_MAX_PIXELS) -> torch.Tensor:
    """A PIL image of any mode -> float32 RGB `(3, H, W)` in [0, 1].

    EXIF orientation is applied; 16-bit and float modes keep their precision; transparency is composited
    onto white (a scan's transparent margin should read as paper, not black); animations use frame 0.
    """
    return _as_float(pil_to_pixels(image, max_pixels))


def pil_to_pixels(image: Image.Image, max_pixels: Optional[int] = DEFAULT_MAX_PIXELS):
    """A PIL image of any mode -> its RGB pixels as decoded: uint8 `(H, W, 3)` for 8-bit modes, float32
    `(3, H, W)` in [0, 1] for 16-bit and float modes (see `pil_to_rgb_tensor` for what is applied)."""
    _check_pixels(image.width, image.height, max_pixels)
    try:
        return _pil_pixels(image)
    except ColorizationInputError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError) as err:  # lazily loaded or unconvertible images
        raise ColorizationInputError(f"cannot decode image: {err}") from None


def _full_scale(peak: float, mode: str) -> float:
    """White level of a 16/32-bit or float image, from its brightest pixel: 16-bit files are 0-65535,
    PIL's own "I"/"I;16"/"F" images converted from 8-bit ones are 0-255 (a real 16-bit photo whose
    brightest pixel is below 256/65535 would be black anyway), float files are usually 0-1."""
    for scale in ((1.0,) if mode == "F" else ()) + (255.0, 65535.0):
        if peak <= scale:
            return scale
    return peak


def _as_float(pixels) -> torch.Tensor:
    """uint8 `(H, W, 3)` or float `(3, H, W)` pixels -> float32 RGB `(3, H, W)` in [0, 1]."""
    if isinstance(pixels, np.ndarray):
        return torch.from_numpy(pixels).permute(2, 0, 1).float().div_(255.0)
    return pixels


def _pil_pixels(image: Image.Image):
    try:
        image = ImageOps.exif_transpose(image)
    except Exception:  # a broken EXIF block should not make a readable photo unusable
        pass
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(image, dtype=np.float32)
        if not np.isfinite(arr).all():
            raise ColorizationInputError("image contains NaN or infinite values")
        arr = np.clip(arr / _full_scale(float(arr.max(initial=0)), mode), 0.0, 1.0)
        return torch.from_numpy(arr)[None].expand(3, -1, -1).contiguous()
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or image.mode in ("RGBA", "LA"):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image)
    return np.array(image.convert("RGB"), dtype=np.uint8)  # gray and 1-bit become equal R = G = B


def array_to_rgb_tensor(array, max_pixels: Optional[int] = DEFAULT_MAX_PIXELS) -> torch.Tensor:
    """numpy / torch image -> float32 RGB `(3, H, W)` in [0, 1] (see `array_to_pixels`)."""
    return _as_float(array_to_pixels(array, max_pixels))


def array_to_pixels(array, max_pixels: Optional[int] = DEFAULT_MAX_PIXELS):
    """numpy / torch image -> uint8 `(H, W, 3)` (8-bit colour arrays, kept as they are) or float32 RGB
    `(3, H, W)` in [0, 1].

    Accepts (H, W), (H, W, C) or (C, H, W) with C in 1, 3, 4 (alpha composited onto white); numpy
    arrays are read as (H, W, C) and torch tensors as (C, H, W) when both fit (a 1xN RGB array is
    (1, N, 3)); uint8 is /255, uint16 /65535, floats are taken as [0, 1].
    """
    is_torch = isinstance(array, torch.Tensor)
    try:
        with warnings.catch_warnings():
            # np.asarray(pil_image) is read-only; nothing below writes into `t` in place
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            t = array.detach().cpu() if is_torch else torch.from_numpy(np.ascontiguousarray(array))
    except (TypeError, ValueError) as err:
        raise ColorizationInputError(f"unsupported image array: {err}") from None
    if t.dim() == 2:
        t = t[None]
    elif t.dim() == 3:
        channels_last = t.shape[-1] in (1, 3, 4)
        channels_first = t.shape[0] in (1, 3, 4)
        if channels_last and not (is_torch and channels_first):
            t = t.permute(2, 0, 1)
        elif not channels_first:
            raise ColorizationInputError(f"cannot tell the channel axis of an array of shape {tuple(array.shape)}")
    else:
        raise ColorizationInputError(f"expected an image array with 2 or 3 dims, got shape {tuple(array.shape)}")
    _check_pixels(t.shape[-1], t.shape[-2], max_pixels)
    if t.dtype == torch.uint8 and t.shape[0] == 3:
        return np.ascontiguousarray(t.permute(1, 2, 0).numpy())  # 8-bit RGB: no float round trip
    if t.dtype == torch.uint8:
        t = t.float() / 255.0
    elif t.dtype in (torch.uint16, torch.int32, torch.int64) or (t.dtype == torch.int16):
        t = t.float() / 65535.0
    elif t.dtype == torch.bool:
        t = t.float()
    else:
        t = t.float()
    if not torch.isfinite(t).all():
        raise ColorizationInputError("image array contains NaN or infinite values")
    t = t.clamp(0.0, 1.0)
    if t.shape[0] == 4:
        alpha = t[3:4]
        t = t[:3] * alpha + (1.0 - alpha)  # composite on white, as for PIL images
    elif t.shape[0] == 1:
        t = t.expand(3, -1, -1)
    return t.contiguous()


def load_rgb(image, max_pixels: Optional[int] = DEFAULT_MAX_PIXELS) -> torch.Tensor:
    """Path / bytes / PIL / numpy / torch image -> float32 RGB `(3, H, W)` in [0, 1]."""
    return _as_float(load_pixels(image, max_pixels))


def load_pixels(image, max_pixels: Optional[int] = DEFAULT_MAX_PIXELS):
    """Path / bytes / PIL / numpy / torch image -> its pixels as decoded: uint8 `(H, W, 3)` for 8-bit
    sources, float32 RGB `(3, H, W)` in [0, 1] for deeper ones."""
    if isinstance(image, (str, os.PathLike, bytes, bytearray)):
        image = open_image(image, max_pixels)
    if isinstance(image, Image.Image):
        return pil_to_pixels(image, max_pixels)
    if isinstance(image, (np.ndarray, torch.Tensor)):
        return array_to_pixels(image, max_pixels)
    raise ColorizationInputError(f"unsupported image type {type(image).__name__}")


def _banded_l(pixels) -> torch.Tensor:
    """`rgb_to_l` of full-resolution pixels (uint8 `(H, W, 3)` or float `(3, H, W)`) in row bands: the
    colour maths is per pixel, and band-sized temporaries keep a 6000x4000 photo's peak memory near its
    own size instead of ~10 full-size float copies."""
    height = pixels.shape[0] if isinstance(pixels, np.ndarray) else pixels.shape[-2]
    return torch.cat([rgb_to_l(_as_float(pixels[top:top + _BAND_ROWS]) if isinstance(pixels, np.ndarray)
                               else pixels[..., top:top + _BAND_ROWS, :]) for top in range(0, height, _BAND_ROWS)], dim=-2)


# --------------------------------------------------------------------------------------------------
# The processor
# --------------------------------------------------------------------------------------------------
class ColorizationImageProcessor(BaseImageProcessor):
    r"""
    Prepares images for [`ColorizationModel`] and turns its predictions into RGB images.

    `preprocess` resizes each image (path, PIL of any mode, numpy or torch) to `size` x `size` as 8-bit RGB
    with PIL's bicubic filter and takes the L channel of that, normalized as `(L - l_cent) / l_norm`:
    `pixel_values` `(B, 1, size, size)`. This is exactly the original release's `preprocess_img`, so
    converted ECCV16 weights see the same input they were trained on (resizing L instead moves the
    output by ~1 ab unit on average). `post_process_colorization` upsamples the predicted ab
    `(B, 2, h, w)` to each image's original size, joins it with the original full-resolution L and
    returns RGB images whose L equals the input's.

    Args:
        size (`int`): network input side (default 256, as in the paper).
        l_cent, l_norm (`float`): normalization of L.
        max_pixels (`int`): larger images are refused (decompression bombs); 0 disables the check.
    """

    model_input_names = ["pixel_values"]

    def __init__(self, size: int = 256, l_cent: float = 50.0, l_norm: float = 100.0,
                 max_pixels: int = DEFAULT_MAX_PIXELS, **kwargs):
        super().__init__(**kwargs)
        self.size = int(size)
        self.l_cent = float(l_cent)
        self.l_norm = float(l_norm)
        self.max_pixels = int(max_pixels)

    def __call__(self, images, **kwargs) -> BatchFeature:
        return self.preprocess(images, **kwargs)

    # -- single steps, public so pipelines and training reuse them --------------------------------
    def load_rgb(self, image) -> torch.Tensor:
        """Any supported image -> float32 RGB `(3, H, W)` in [0, 1]."""
        return load_rgb(image, self.max_pixels)

    def l_channel(self, image) -> torch.Tensor:
        """Any supported image -> its full-resolution L channel `(1, H, W)` in [0, 100]."""
        # tensors go through load_rgb too: it clamps to [0, 1] and refuses NaN, which L > 100 or NaN
        # would otherwise carry straight into the output
        return _banded_l(self.load_rgb(image))

    def prepare(self, image, size: Optional[int] = None):
        """Any supported image -> `(l_full, pixel_values)`: its full-resolution L `(1, H, W)` (for the
        output) and the normalized network input `(1, size, size)` (see `network_input`). An 8-bit image
        is resized as decoded, never converted to float and back."""
        size = self._check_size(size)  # before decoding: a bad size costs nothing
        pixels = load_pixels(image, self.max_pixels)
        return _banded_l(pixels), self.network_input(pixels, size)

    def network_input(self, rgb, size: Optional[int] = None) -> torch.Tensor:
        """RGB pixels (uint8 `(H, W, 3)`, or float `(3, H, W)` in [0, 1]) -> normalized L `(1, size, size)`
        of the image resized as 8-bit RGB with PIL bicubic (as the original release's `preprocess_img`
        does; sources of more than 8 bits lose only the network input's low bits, the output keeps the
        full-resolution L)."""
        size = self._check_size(size)
        if isinstance(rgb, np.ndarray):
            u8 = rgb
        else:
            u8 = np.empty((rgb.shape[-2], rgb.shape[-1], 3), dtype=np.uint8)
            for top in range(0, rgb.shape[-2], _BAND_ROWS):  # bands: no full-size float temporary
                band = rgb[:, top:top + _BAND_ROWS].float().mul(255.0).round_().clamp_(0, 255)
                u8[top:top + _BAND_ROWS] = band.to(torch.uint8).permute(1, 2, 0).cpu().numpy()
        small = np.asarray(Image.fromarray(u8).resize((size, size), Image.BICUBIC))
        x = rgb_to_l(torch.from_numpy(small.copy()).permute(2, 0, 1).float().div_(255.0))
        return (x - self.l_cent) / self.l_norm

    def _check_size(self, size: Optional[int]) -> int:
        size = int(size or self.size)
        if size < 8 or size % 8:
            raise ValueError(f"size must be a positive multiple of 8, got {size}")
        return size

    def resize_l(self, l_full: torch.Tensor, size: Optional[int] = None) -> torch.Tensor:
        """Full-resolution L `(..., 1, H, W)` -> normalized network input `(..., 1, size, size)` by resizing L
        itself (bicubic, antialiased): for callers that only have L, e.g. video frames already in Lab.
        `network_input` (what `preprocess` uses) matches the original release more closely."""
        size = self._check_size(size)
        shape = l_full.shape
        x = l_full.reshape(-1, 1, *shape[-2:]).float()
        x = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False,
                          antialias=x.shape[-1] > size or x.shape[-2] > size)
        x = x.clamp(0.0, 100.0)
        return ((x - self.l_cent) / self.l_norm).reshape(*shape[:-2], size, size)

    def preprocess(self, images, size: Optional[int] = None, return_tensors: Optional[str] = "pt", **kwargs) -> BatchFeature:
        """Images (one or a list) -> `BatchFeature` with `pixel_values` `(B, 1, size, size)` and
        `original_sizes` (list of `(height, width)`)."""
        if not isinstance(images, (list, tuple)):
            images = [images]
        if len(images) == 0:
            raise ValueError("no images given")
        pixel_values, sizes = [], []
        for image in images:
            l_full, x = self.prepare(image, size)
            sizes.append(tuple(l_full.shape[-2:]))
            pixel_values.append(x)
        return BatchFeature(data={"pixel_values": torch.stack(pixel_values), "original_sizes": sizes})

    def post_process_colorization(
        self,
        outputs,
        images=None,
        original_l: Optional[list] = None,
        output_type: str = "pil",
    ) -> list:
        """Turn model outputs into colorized images at the original resolution.

        Args:
            outputs: a `ColorizationOutput` (or its `ab` tensor `(B, 2, h, w)`).
            images: the original inputs (any type `preprocess` accepts), used for their full-res L;
                or pass `original_l`, a list of `(1, H, W)` L tensors, to skip re-reading them.
            output_type: "pil" (RGB images), "np" (uint8 `(H, W, 3)`), "pt" (float `(3, H, W)` in [0, 1])
                or "lab" (float `(3, H, W)` Lab).
        """
        ab = outputs.ab if hasattr(outputs, "ab") else outputs
        if original_l is None:
            if images is None:
                raise ValueError("post_process_colorization needs the original `images` or `original_l`")
            if not isinstance(images, (list, tuple)):
                images = [images]
            original_l = [self.l_channel(im) for im in images]
        if len(original_l) != ab.shape[0]:
            raise ValueError(f"got {ab.shape[0]} predictions for {len(original_l)} images")
        results = []
        for i, l_full in enumerate(original_l):
            results.append(self.colorize_l(l_full, ab[i], output_type=output_type))
        return results

    def colorize_l(self, l_full: torch.Tensor, ab: torch.Tensor, output_type: str = "pil", refine=None):
        """Join a full-resolution L `(1, H, W)` with a low-resolution ab `(2, h, w)`. `refine(rows, ab_rows)`, if
        given, adjusts the upsampled full-resolution ab of each band of rows (e.g. colour hints); L is never changed."""
        l_full = l_full.reshape(1, *l_full.shape[-2:]).float()
        height, width = l_full.shape[-2:]
        ab_full = F.interpolate(ab[None].float().to(l_full.device), size=(height, width), mode="bilinear", align_corners=False)[0]
        if output_type not in ("pil", "np", "pt", "lab"):
            raise ValueError(f"output_type must be 'pil', 'np', 'pt' or 'lab', got {output_type!r}")
        if refine is not None:
            for top in range(0, height, _BAND_ROWS):
                rows = slice(top, top + _BAND_ROWS)
                ab_full[:, rows] = refine(rows, ab_full[:, rows])
        if output_type == "lab":
            return torch.cat((l_full, ab_full), dim=0)
        # per-pixel maths in row bands (same result, band-sized temporaries; see _banded_l)
        rgb = torch.empty(3, height, width) if output_type == "pt" else None
        arr = None if output_type == "pt" else np.empty((height, width, 3), dtype=np.uint8)
        for top in range(0, height, _BAND_ROWS):
            rows = slice(top, top + _BAND_ROWS)
            band = lab_to_rgb(torch.cat((l_full[:, rows], ab_full[:, rows]), dim=0))
            if rgb is not None:
                rgb[:, rows] = band
            else:
                arr[rows] = (band * 255.0).round_().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
        if output_type == "pt":
            return rgb
        return arr if output_type == "np" else Image.fromarray(arr)


__all__ = [
    "ColorizationImageProcessor",
    "ColorizationInputError",
    "ColorizeError",
    "load_pixels",
    "rgb_to_lab",
    "rgb_to_l",
    "lab_to_rgb",
    "lab_to_rgb_unclipped",
    "load_rgb",
    "open_image",
]
