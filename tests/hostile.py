"""Hostile and odd input files, made from a real photo (conftest photo_paths) into a temporary folder.

`make_cases(photo, folder)` writes one file per case and returns `Case` records saying what a correct
colorizer must do with it: for a valid file, the RGB image as it should be *displayed* (EXIF orientation
applied, transparency composited onto white, 16-bit/float scaled to [0, 1]), computed here with numpy
from the written pixels, so tests compare the package's output with an independent expectation; for an
invalid file, a substring of the one-line cause the package must report.

Used by test_robustness_inputs.py (every entry point) and listed case by case in docs/robustness.md.
"""

import io
import os
import struct
import zlib
from dataclasses import dataclass
from typing import List, Optional

import numpy as np
from PIL import Image

BASE_SIZE = (56, 40)  # (width, height) of the base photo: not square, so a wrong rotation changes the size


@dataclass
class Case:
    """One hostile/odd input file."""

    name: str  # short id used in test ids and the docs table
    path: str  # file path (str; may hold surrogate escapes for non-UTF-8 bytes)
    expected: Optional[np.ndarray] = None  # valid: displayed RGB (H, W, 3) float64 in [0, 1]; None if invalid
    cause: Optional[str] = None  # invalid: substring of the one-line error cause
    gray: bool = False  # valid but without colour (the training stream skips it as grayscale)

    @property
    def valid(self) -> bool:
        return self.expected is not None


def base_rgb(photo) -> np.ndarray:
    """A real photo as a BASE_SIZE uint8 RGB array (H, W, 3)."""
    with Image.open(photo) as im:
        return np.asarray(im.convert("RGB").resize(BASE_SIZE, Image.BICUBIC), dtype=np.uint8).copy()


def _gray(rgb: np.ndarray) -> np.ndarray:
    """uint8 RGB -> float luma in [0, 1] (H, W) (any gray rendition will do: it is what we write)."""
    return (rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])) / 255.0


def _rgb(a) -> np.ndarray:
    """uint8 (H, W, 3) or float (H, W) in [0, 1] -> float (H, W, 3) in [0, 1]."""
    a = np.asarray(a)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    return a.astype(np.float64) / 255.0 if a.dtype == np.uint8 else a.astype(np.float64)


def _decoded(path) -> np.ndarray:
    """The stored pixels of a file as PIL decodes them (no EXIF transform), uint8 RGB."""
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()


# EXIF orientation -> how the stored pixels are shown, written from the EXIF 2.3 wording with numpy only
# (independent of PIL's ImageOps.exif_transpose, which the package uses)
EXIF_DISPLAY = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],  # mirror horizontal
    3: lambda a: a[::-1, ::-1],  # rotate 180
    4: lambda a: a[::-1, :],  # mirror vertical
    5: lambda a: np.rot90(a[:, ::-1], k=1),  # mirror horizontal, then rotate 270 CW
    6: lambda a: np.rot90(a, k=-1),  # rotate 90 CW
    7: lambda a: np.rot90(a[:, ::-1], k=-1),  # mirror horizontal, then rotate 90 CW
    8: lambda a: np.rot90(a, k=1),  # rotate 270 CW
}
# the inverse: what a camera stores so that the display is upright
EXIF_STORE = {
    1: lambda a: a, 2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1, :],
    5: lambda a: np.rot90(a, k=-1)[:, ::-1], 6: lambda a: np.rot90(a, k=1),
    7: lambda a: np.rot90(a, k=1)[:, ::-1], 8: lambda a: np.rot90(a, k=-1),
}


def _patched_png_size(png: bytes, width: int, height: int) -> bytes:
    """A valid PNG with its IHDR size rewritten (CRC fixed): the header claims width x height."""
    assert png[12:16] == b"IHDR"
    ihdr = struct.pack(">II", width, height) + png[24:29]
    return png[:8] + png[8:12] + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr)) + png[33:]


def _zero_png(width: int, height: int) -> bytes:
    """A genuine, fully decodable all-black 8-bit gray PNG, compressed ~1000:1 (a real bomb)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    packer = zlib.compressobj(9)
    rows = b"\0" * (width + 1) * 1000  # filter byte + pixels, 1000 rows at a time
    idat = b"".join([packer.compress(rows) for _ in range(height // 1000)] + [packer.flush()])
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def make_cases(photo, folder) -> List[Case]:
    """Write every hostile/odd case into `folder` (made from the real `photo`); return the cases."""
    folder = os.fspath(folder)
    os.makedirs(folder, exist_ok=True)
    base = base_rgb(photo)
    h, w = base.shape[:2]
    cases = []

    def path(name):
        return os.path.join(folder, name)

    def add(name, file_name, expected=None, cause=None, gray=False):
        cases.append(Case(name, path(file_name), expected, cause, gray))

    # -- invalid ---------------------------------------------------------------------------------------
    open(path("empty.jpg"), "wb").close()
    add("empty file", "empty.jpg", cause="empty file")
    jpeg = io.BytesIO()
    Image.fromarray(base).save(jpeg, "JPEG", quality=90)
    with open(path("truncated.jpg"), "wb") as f:
        f.write(jpeg.getvalue()[: len(jpeg.getvalue()) // 2])
    add("truncated JPEG", "truncated.jpg", cause="cannot decode image")
    png = io.BytesIO()
    Image.fromarray(base).save(png, "PNG")
    with open(path("truncated_png.png"), "wb") as f:
        f.write(png.getvalue()[: len(png.getvalue()) // 2])
    add("truncated PNG", "truncated_png.png", cause="cannot decode image")
    with open(path("text.jpg"), "w") as f:
        f.write("This is a text file pretending to be a JPEG.\n" * 20)
    add("text named .jpg", "text.jpg", cause="not a recognised image format")
    with open(path("bomb.png"), "wb") as f:  # decompression bomb: 10^10 declared pixels in ~200 bytes
        small = io.BytesIO()
        Image.new("L", (8, 8)).save(small, "PNG")
        f.write(_patched_png_size(small.getvalue(), 100_000, 100_000))
    add("decompression bomb: PNG header claiming 100000x100000", "bomb.png", cause="decompression bomb")
    with open(path("bomb_144mp.png"), "wb") as f:
        f.write(_zero_png(12_000, 12_000))
    add("decompression bomb: 140 kB PNG inflating to 12000x12000 (144 MP)", "bomb_144mp.png",
        cause="decompression bomb")

    # -- valid: formats, sizes, modes ---------------------------------------------------------------------
    with open(path("png_named.jpg"), "wb") as f:
        f.write(png.getvalue())
    add("PNG named .jpg", "png_named.jpg", _rgb(base))
    chroma = np.ptp(base.astype(int), axis=2)  # most colourful pixel / column / row: tiny images keep colour
    y, x = np.unravel_index(chroma.argmax(), chroma.shape)
    Image.fromarray(base[y:y + 1, x:x + 1]).save(path("1x1.png"))
    add("1x1 image", "1x1.png", _rgb(base[y:y + 1, x:x + 1]))
    Image.fromarray(np.ascontiguousarray(base[:, x:x + 1])).save(path("1xN.png"))
    add(f"1x{h} image (1 pixel wide)", "1xN.png", _rgb(base[:, x:x + 1]))
    Image.fromarray(np.ascontiguousarray(base[y:y + 1, :])).save(path("Nx1.png"))
    add(f"{w}x1 image (1 pixel tall)", "Nx1.png", _rgb(base[y:y + 1, :]))

    gray = _gray(base)
    g16 = np.round(gray * 65535).astype(np.uint16)
    Image.fromarray(g16).save(path("gray16.png"))  # PIL writes I;16 as a 16-bit grayscale PNG
    add("16-bit grayscale PNG (I;16)", "gray16.png", _rgb(g16 / 65535.0), gray=True)
    Image.fromarray(g16).save(path("gray16_tiff.tif"))
    add("16-bit grayscale TIFF (I;16)", "gray16_tiff.tif", _rgb(g16 / 65535.0), gray=True)
    Image.fromarray(g16.astype(np.int32), mode="I").save(path("gray32i.tif"))
    add("32-bit integer TIFF (I), 16-bit range", "gray32i.tif", _rgb(g16 / 65535.0), gray=True)
    gf = gray.astype(np.float32)
    Image.fromarray(gf, mode="F").save(path("grayfloat.tif"))
    add("32-bit float TIFF (F) in [0, 1]", "grayfloat.tif", _rgb(gf.astype(np.float64)), gray=True)

    Image.fromarray(base).convert("CMYK").save(path("cmyk.jpg"), quality=95)
    add("CMYK JPEG", "cmyk.jpg", _rgb(_decoded(path("cmyk.jpg"))))

    pal = Image.fromarray(base).quantize(64)
    index = np.asarray(pal)
    clear = int(index[h // 2, w // 2])  # the palette entry at the centre becomes transparent
    pal.info["transparency"] = clear
    pal.save(path("palette_transparent.png"), transparency=clear)
    lut = np.asarray(pal.getpalette()[: 3 * 256] + [0] * max(0, 768 - len(pal.getpalette())), dtype=np.uint8).reshape(-1, 3)
    shown = _rgb(lut[index])
    shown[index == clear] = 1.0  # transparent -> white paper
    add("palette PNG with a transparent colour", "palette_transparent.png", shown)

    alpha = np.linspace(0, 255, w, dtype=np.float64)[None, :].repeat(h, 0).round().astype(np.uint8)  # 0 -> 255 left to right
    a = alpha[..., None] / 255.0
    la = np.stack([np.round(gray * 255).astype(np.uint8), alpha], axis=2)
    Image.fromarray(la, mode="LA").save(path("gray_alpha.png"))
    add("LA PNG (gray + alpha ramp)", "gray_alpha.png", _rgb(la[..., 0]) * a + (1 - a), gray=True)
    rgba = np.concatenate([base, alpha[..., None]], axis=2)
    Image.fromarray(rgba, mode="RGBA").save(path("rgba.png"))
    add("RGBA PNG (alpha ramp)", "rgba.png", _rgb(base) * a + (1 - a))

    for k in range(1, 9):
        stored = np.ascontiguousarray(EXIF_STORE[k](base))
        exif = Image.Exif()
        exif[0x0112] = k  # Orientation
        Image.fromarray(stored).save(path(f"exif_{k}.jpg"), quality=95, exif=exif.tobytes())
        add(f"EXIF orientation {k}", f"exif_{k}.jpg", _rgb(EXIF_DISPLAY[k](_decoded(path(f"exif_{k}.jpg")))))

    frames = [base, base[::-1].copy(), 255 - base]
    pal_frames = [Image.fromarray(f).quantize(256, dither=Image.Dither.NONE) for f in frames]
    pal_frames[0].save(path("animated.gif"), save_all=True, append_images=pal_frames[1:], duration=100, loop=0)
    add("animated GIF (3 frames: frame 0 is used)", "animated.gif", _rgb(np.asarray(pal_frames[0].convert("RGB"))))
    Image.fromarray(frames[0]).save(path("animated_webp.webp"), save_all=True, lossless=True, duration=100,
                                    append_images=[Image.fromarray(f) for f in frames[1:]])
    add("animated WebP (3 frames: frame 0 is used)", "animated_webp.webp", _rgb(base))

    # -- valid: awkward file names ------------------------------------------------------------------------
    Image.fromarray(base).save(path("old family photo (1952).png"))
    add("spaces and brackets in the name", "old family photo (1952).png", _rgb(base))
    raw = os.fsencode(folder) + b"/photo-\xff\xfe-latin1-caf\xe9.png"  # not valid UTF-8
    Image.fromarray(base).save(raw, format="PNG")
    cases.append(Case("non-UTF-8 bytes in the name", os.fsdecode(raw), _rgb(base)))
    return cases
