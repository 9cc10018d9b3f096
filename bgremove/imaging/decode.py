"""Recognise and decode images by their content, whatever their file name says.

bgremove reads what Pillow decodes safely in-process: the formats in FORMATS, plus HEIC when the
`pillow-heif` plugin is installed. Left out on purpose: EPS (Pillow runs Ghostscript for it) and
formats with no signature to recognise them by (TGA), which would take stray files for images.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from io import BytesIO
from typing import IO

import numpy as np
from PIL import Image, ImageFile, ImageOps

from bgremove.errors import ImageError, NotAnImage, Option

FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "DIB", "TIFF", "AVIF", "HEIF",
           "JPEG2000", "PPM", "QOI")
READS = "JPEG, PNG, WebP, AVIF, GIF, BMP, TIFF, JPEG 2000, PPM, QOI (and HEIC with pillow-heif)"

# The largest image the local engine processes as it is (a 4000x4000 photo, the API's largest, is
# 16 MP; memory per image is in docs/performance.md). Bigger ones are refused from
# their header, before a byte is decoded, unless `max_size` asks to shrink them.
MAX_PIXELS = 50_000_000
# What may be decoded at all, to be shrunk: beyond this a header is taken for a decompression bomb.
# JPEGs are shrunk while decoding (DCT scaling), so they cost far less than their size says.
MAX_DECODE_PIXELS = 500_000_000
# Sizes are checked here, from the header, per image (check_size): images are opened without
# Pillow's own bomb check, whose limit and warning are process-wide (the host application's too)
# and whose warning (a raw message with a site-packages path) is not for our users.

# Common formats by their magic numbers, to name them cheaply (the API takes the first three).
_SIGNATURES: tuple[tuple[str, bytes], ...] = (
    ("jpeg", b"\xff\xd8\xff"),
    ("png", b"\x89PNG\r\n\x1a\n"),
    ("gif", b"GIF8"),
    ("bmp", b"BM"),
    ("tiff", b"II*\x00"),
    ("tiff", b"MM\x00*"),
)
SNIFF_BYTES = 16

# Pillow's opener of a format: (factory, accept), as Image.OPEN holds them.
Opener = tuple[Callable[..., ImageFile.ImageFile], Callable[[bytes], bool | str] | None]
_openers: dict[str, Opener] | None = None
# The HEIF brands pillow-heif's own Pillow opener accepts (pillow_heif.as_plugin); AVIF, its
# sibling, is Pillow's own.
_HEIF_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1",
                b"msf1")


def sniff(head: bytes) -> str | None:
    """Name the format of image bytes from their first SNIFF_BYTES (jpeg, png, webp, gif, bmp,
    tiff), or None (another format, or no image: `open_image` tells which)."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    for name, magic in _SIGNATURES:
        if head.startswith(magic):
            return name
    return None


def _readable_openers() -> dict[str, Opener]:
    """The openers of the FORMATS that this Pillow can open, in FORMATS' order (HEIF with the
    optional pillow-heif plugin: iPhones).

    pillow-heif's opener is used here without being registered with Pillow
    (`register_heif_opener` would change what every `Image.open` of the host program opens,
    and what it saves): only the images bgremove decodes go through it."""
    global _openers
    if _openers is None:
        Image.init()
        found: dict[str, Opener] = dict(Image.OPEN)
        if "HEIF" not in found:
            try:
                from pillow_heif import HeifImageFile
            except ImportError:
                pass
            else:
                found["HEIF"] = (HeifImageFile, _is_heif)
        _openers = {name: found[name] for name in FORMATS if name in found}
    return _openers


def _is_heif(prefix: bytes) -> bool:
    return prefix[4:8] == b"ftyp" and prefix[8:12] in _HEIF_BRANDS


@dataclass
class Decoded:
    """An image ready for matting: 8-bit RGB pixels plus the alpha it already had, if any."""

    rgb: np.ndarray  # uint8, H x W x 3
    alpha: np.ndarray | None  # uint8, H x W, or None when the input was opaque
    # The ICC profile the pixels are in, carried to the output (imaging/profiles.py): None for
    # an untagged (sRGB) photo, and for a CMYK or greyscale one, whose profile is not of RGB.
    icc_profile: bytes | None = None
    # The same RGB pixels as the Pillow image they were decoded to, where there was one: the
    # model's input is shrunk from it without converting `rgb` back (2.7 ms per megapixel).
    image: Image.Image | None = None


def open_image(data: bytes | IO[bytes]) -> ImageFile.ImageFile:
    """Open image bytes, or a file of them, lazily (header only), refusing what is not an image
    we read."""
    return _open(BytesIO(data) if isinstance(data, bytes) else data)


def _open(fp: IO[bytes]) -> ImageFile.ImageFile:
    """`Image.open(fp, formats=...)` less its bomb check, which reads Pillow's process-wide
    MAX_IMAGE_PIXELS: headers past twice MAX_DECODE_PIXELS are refused here, and check_size
    holds the rest to MAX_DECODE_PIXELS or MAX_PIXELS."""
    try:
        prefix = fp.read(16)
        for factory, accept in _readable_openers().values():
            try:
                known = accept is None or accept(prefix)
                if not known or isinstance(known, str):  # a str: the format's plugin is missing
                    continue
                fp.seek(0)
                image = factory(fp, "")  # as Image.open names a file object
            except (SyntaxError, IndexError, TypeError, struct.error):
                continue  # not this format after all, as Image.open tries the next
            width, height = image.size
            if width * height > 2 * MAX_DECODE_PIXELS:  # where Pillow's check would refuse it
                raise ImageError(f"image too large to decode safely (over "
                                 f"{MAX_DECODE_PIXELS:,} pixels)")
            return image
    except ImageError:
        raise
    except Exception as exc:
        raise broken(exc, "its header cannot be read") from None
    if not prefix:
        raise NotAnImage("empty file (0 bytes)")
    raise NotAnImage(f"not an image (bgremove reads {READS})")


TRUNCATED = "truncated image: the file ends before the image data does"


def broken(exc: Exception, what: str) -> ImageError:
    """Pillow's failure to read an image, in words for the user; Pillow's own (`image file is
    truncated (9 bytes not processed)`) kept as the detail, for -v and --json."""
    if isinstance(exc, ImageError):
        return exc
    text = str(exc) or type(exc).__name__
    if "truncated" in text.lower():
        return ImageError(TRUNCATED, detail=f"Pillow: {text}")
    return ImageError(f"broken image: {what}", detail=f"Pillow: {text}")


def check_header(file: IO[bytes], *, max_pixels: int = MAX_PIXELS,
                 max_size: int | None = None) -> None:
    """Refuse, with the error `decode` would raise, what the header alone shows: no image, an
    empty file, an image over the size limit. Nothing is decoded (for --dry-run)."""
    with _open(file) as image:
        width, height = image.size
        check_size(width, height, max_pixels, max_size)


def fitted_size(width: int, height: int, max_size: int | None) -> tuple[int, int]:
    """(width, height) shrunk so the longer side is at most `max_size`, aspect kept."""
    if max_size is None or max(width, height) <= max_size:
        return width, height
    scale = max_size / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def check_size(width: int, height: int, max_pixels: int, max_size: int | None) -> None:
    pixels = width * height
    if max_size is not None and max(width, height) > max_size:
        if pixels > MAX_DECODE_PIXELS:
            raise ImageError(f"image is {width}x{height} ({pixels / 1e6:.0f} MP): too large to "
                             "decode safely, even to shrink it (the limit is "
                             f"{MAX_DECODE_PIXELS / 1e6:.0f} MP)")
        return
    if pixels > max_pixels:
        raise ImageError(f"image is {width}x{height} ({pixels / 1e6:.0f} MP); the local engine "
                         f"takes up to {max_pixels / 1e6:.0f} MP: ", Option("max_size", "N"),
                         " shrinks bigger photos to N pixels on their longer side")


def decode(data: bytes, *, max_pixels: int = MAX_PIXELS, max_size: int | None = None) -> Decoded:
    """Decode image bytes to upright 8-bit RGB (+ alpha), whatever the source mode.

    The size is checked from the header first (see MAX_PIXELS); with `max_size`, a bigger image is
    shrunk to it (a JPEG while it is decoded). EXIF orientation is applied; CMYK, greyscale,
    palette, 16-bit and float images are converted with their full tonal range (Pillow's plain
    convert() would clip 16-bit values to white).
    """
    image = open_image(data)
    check_size(*image.size, max_pixels, max_size)
    target = fitted_size(*image.size, max_size)
    try:
        # libjpeg decodes a JPEG that ends early (its header claiming more than its data holds)
        # by filling the rest with grey, and Pillow drops the warning. Huffman coding spends at
        # least one bit on every 8x8 block, so fewer bits after the headers than the image has
        # blocks cannot be the whole image. Arithmetic-coded JPEGs (SOF9-15, rare) can go below
        # that bound, so they are let through.
        if image.format == "JPEG" and image.fp is not None:  # open until loaded
            headers = image.fp.tell()  # where the first scan's data begins
            blocks = -(-image.width // 8) * -(-image.height // 8)
            arithmetic = any(marker in data[:headers] for marker in (
                b"\xff\xc9", b"\xff\xca", b"\xff\xcb", b"\xff\xcd", b"\xff\xce", b"\xff\xcf"))
            if (len(data) - headers) * 8 < blocks and not arithmetic:
                raise ImageError(f"{TRUNCATED} (its header claims {image.width}x{image.height} "
                                 "pixels)")
        if target != image.size and image.format == "JPEG":
            image.draft("RGB", target)  # decode at 1/2, 1/4 or 1/8 scale, still >= target
        image.load()
        # In place: without an orientation tag the copy exif_transpose() returns is pure waste.
        ImageOps.exif_transpose(image, in_place=True)
    except Exception as exc:
        raise broken(exc, "its pixels cannot be decoded") from None
    return _fit(image, max_size)


def from_pil(image: Image.Image, *, max_pixels: int = MAX_PIXELS,
             max_size: int | None = None) -> Decoded:
    """An image already in memory, as `decode` would give it (taken as it is: no EXIF turn)."""
    check_size(*image.size, max_pixels, max_size)
    return _fit(image, max_size)


def _fit(image: Image.Image, max_size: int | None) -> Decoded:
    from bgremove.imaging.profiles import rgb_profile

    profile = rgb_profile(image)  # before a resize or convert, which drop it
    target = fitted_size(*image.size, max_size)
    if target != image.size:
        image = _shrink(image, target)
    decoded = _to_rgb_alpha(image)
    decoded.icc_profile = profile
    return decoded


def _shrink(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    if image.mode in ("1", "P", "PA", "CMYK", "YCbCr", "LAB", "HSV"):  # no resize for these
        image = image.convert("RGBA" if _has_alpha(image) else "RGB")
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        image.mode == "P" and "transparency" in image.info)


def _to_rgb_alpha(image: Image.Image) -> Decoded:
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        values = np.asarray(image, dtype=np.float32)
        top = 65535.0 if mode.startswith("I;16") or values.max() > 255 else 255.0
        grey = np.clip(values * (255.0 / top) + 0.5, 0, 255).astype(np.uint8)
        return Decoded(np.repeat(grey[:, :, None], 3, axis=2), None)
    if _has_alpha(image):
        rgba = np.asarray(image.convert("RGBA"))
        alpha = rgba[:, :, 3]
        if alpha.min() == 255:  # an alpha channel that hides nothing is no alpha at all
            return Decoded(np.ascontiguousarray(rgba[:, :, :3]), None)
        return Decoded(np.ascontiguousarray(rgba[:, :, :3]), np.ascontiguousarray(alpha))
    if mode != "RGB":  # convert() copies even when there is nothing to convert
        image = image.convert("RGB")
    return Decoded(np.asarray(image), None, image=image)
