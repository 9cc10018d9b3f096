"""Recognise and decode images by their content, whatever their file name says."""

from __future__ import annotations

from dataclasses import dataclass
from io import BytesIO

import numpy as np
from PIL import Image, ImageOps

from bgremove.errors import ImageError

# A 4000x4000 image is the API's largest; anything ten times that many pixels is refused before
# decoding so a forged header cannot make us allocate gigabytes.
MAX_PIXELS = 160_000_000
Image.MAX_IMAGE_PIXELS = MAX_PIXELS

# Magic numbers of the formats we accept. Sniffing needs only the first 16 bytes.
_SIGNATURES: tuple[tuple[str, bytes, int], ...] = (
    ("jpeg", b"\xff\xd8\xff", 0),
    ("png", b"\x89PNG\r\n\x1a\n", 0),
    ("gif", b"GIF8", 0),
    ("bmp", b"BM", 0),
    ("tiff", b"II*\x00", 0),
    ("tiff", b"MM\x00*", 0),
)

SNIFF_BYTES = 16


def sniff(head: bytes) -> str | None:
    """Name the image format of a file from its first bytes, or None if it is not one we read."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    for name, magic, offset in _SIGNATURES:
        if head[offset : offset + len(magic)] == magic:
            return name
    return None


@dataclass
class Decoded:
    """An image ready for matting: 8-bit RGB pixels plus the alpha it already had, if any."""

    rgb: np.ndarray  # uint8, H x W x 3
    alpha: np.ndarray | None  # uint8, H x W, or None when the input was opaque

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)"""
        return self.rgb.shape[1], self.rgb.shape[0]


def open_image(data: bytes) -> Image.Image:
    """Open image bytes lazily (header only), refusing what is not an image."""
    if sniff(data[:SNIFF_BYTES]) is None:
        raise ImageError("not an image (expected JPEG, PNG or WebP content)")
    try:
        return Image.open(BytesIO(data))
    except Image.DecompressionBombError:
        raise ImageError(f"image too large to decode safely (over {MAX_PIXELS:,} pixels)") from None
    except Exception as exc:
        raise ImageError(f"cannot read image: {exc}") from None


def decode(data: bytes) -> Decoded:
    """Decode image bytes to upright 8-bit RGB (+ alpha), whatever the source mode.

    EXIF orientation is applied; CMYK, greyscale, palette, 16-bit and float images are converted
    with their full tonal range (Pillow's plain convert() would clip 16-bit values to white).
    """
    image = open_image(data)
    try:
        # libjpeg decodes a JPEG that ends early (its header claiming more than its data holds)
        # by filling the rest with grey, and Pillow drops the warning. Huffman coding spends at
        # least one bit on every 8x8 block, so fewer bits after the headers than the image has
        # blocks cannot be the whole image. Arithmetic-coded JPEGs (SOF9-15, rare) can go below
        # that bound, so they are let through.
        if image.format == "JPEG":
            headers = image.fp.tell()  # where the first scan's data begins
            blocks = -(-image.width // 8) * -(-image.height // 8)
            arithmetic = any(marker in data[:headers] for marker in (
                b"\xff\xc9", b"\xff\xca", b"\xff\xcb", b"\xff\xcd", b"\xff\xce", b"\xff\xcf"))
            if (len(data) - headers) * 8 < blocks and not arithmetic:
                raise ImageError(f"the JPEG data ends before the {image.width}x{image.height} "
                                 "pixels its header claims")
        image.load()
        # In place: without an orientation tag the copy exif_transpose() returns is pure waste.
        ImageOps.exif_transpose(image, in_place=True)
    except Image.DecompressionBombError:
        raise ImageError(f"image too large to decode safely (over {MAX_PIXELS:,} pixels)") from None
    except Exception as exc:
        raise ImageError(f"broken or truncated image: {exc}") from None
    return _to_rgb_alpha(image)


def _to_rgb_alpha(image: Image.Image) -> Decoded:
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        values = np.asarray(image, dtype=np.float32)
        top = 65535.0 if mode.startswith("I;16") or values.max() > 255 else 255.0
        grey = np.clip(values * (255.0 / top) + 0.5, 0, 255).astype(np.uint8)
        return Decoded(np.repeat(grey[:, :, None], 3, axis=2), None)
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        mode == "P" and "transparency" in image.info
    )
    if has_alpha:
        rgba = np.asarray(image.convert("RGBA"))
        alpha = rgba[:, :, 3]
        if alpha.min() == 255:  # an alpha channel that hides nothing is no alpha at all
            return Decoded(np.ascontiguousarray(rgba[:, :, :3]), None)
        return Decoded(np.ascontiguousarray(rgba[:, :, :3]), np.ascontiguousarray(alpha))
    if mode != "RGB":  # convert() copies even when there is nothing to convert
        image = image.convert("RGB")
    return Decoded(np.asarray(image), None)
