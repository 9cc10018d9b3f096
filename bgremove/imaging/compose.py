"""Turn an image and its alpha matte into the output the options ask for, and encode it."""

from __future__ import annotations

from io import BytesIO

import numpy as np
from PIL import Image

from bgremove.imaging.matte import estimate_foreground, shadow_matte
from bgremove.imaging.png import encode_png
from bgremove.imaging.shape import cover, placed
from bgremove.options import Mode, OutputFormat, RemovalOptions

# Encoder settings, chosen by measurement (the trade-off table is in BENCHMARKS.md). PNGs are
# written by imaging/png.py: "Up" filter + ISA-L deflate at level 1, about 5x faster than
# Pillow's encoder at its fastest level and half the size of its output (mostly because the
# colour of fully transparent pixels is cleared). WebP: quality 90 keeps edges clean; method 2
# encodes a third faster than libwebp's default 4 for ~3% more bytes and no visible loss (PSNR
# within 0.5 dB at ~46 dB); method 6 is ten times slower still for 4% fewer bytes.
PNG_COMPRESS_LEVEL = 1
WEBP_QUALITY = 90
WEBP_METHOD = 2
JPEG_QUALITY = 92


def compose(
    rgb: np.ndarray,
    alpha: np.ndarray,
    options: RemovalOptions,
    source_alpha: np.ndarray | None = None,
) -> Image.Image:
    """The cut-out as a Pillow image: RGBA when the mask is included, else RGB on a solid colour;
    with `only_mask`, the alpha that cut-out would carry, as an 8-bit greyscale (L) image.
    `alpha`: float32 in [0, 1], or uint8 (matte.cutout_alpha's fast and balanced alpha)."""
    if alpha.dtype == np.uint8:
        if source_alpha is None and not options.preserve_shadows:
            # the alpha as it is written: no float pass over the whole image (fast, balanced)
            if options.shaped and options.mode is not Mode.quality:
                return finish(rgb, alpha, options)
            if options.only_mask:
                return Image.fromarray(alpha, "L")
            if options.include_mask and options.mode is not Mode.quality:
                return _rgba(rgb, alpha)
        alpha = alpha * np.float32(1.0 / 255.0)
    if source_alpha is not None:
        # What was already transparent in the input stays transparent.
        alpha = alpha * (source_alpha.astype(np.float32) * (1.0 / 255.0))
    shadow = shadow_matte(rgb, alpha) if options.preserve_shadows else None
    if options.shaped:
        fg = estimate_foreground(rgb, alpha) if options.mode is Mode.quality else rgb
        return finish(*_with_shadow(fg, alpha, shadow), options)
    if options.only_mask:
        if shadow is not None:  # the shadow layer's opacity under the subject's, as below
            alpha = alpha + (1.0 - alpha) * shadow
        return Image.fromarray((alpha * 255.0 + 0.5).astype(np.uint8), "L")
    fg = estimate_foreground(rgb, alpha) if options.mode is Mode.quality else rgb
    if not options.include_mask:
        background: np.ndarray = np.asarray(options.background_color, dtype=np.float32)
        if shadow is not None:
            background = background * (1.0 - shadow[:, :, None])
        return flatten(fg, alpha, background)

    fg, alpha8 = _with_shadow(fg, alpha, shadow)
    return _rgba(fg, alpha8)


def _with_shadow(fg: np.ndarray, alpha: np.ndarray,
                 shadow: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """The transparent cut-out's colour and 8-bit alpha, the shadow layer (if any) under it."""
    if shadow is not None:
        # The shadow is a black layer under the subject: over it, the colour is the subject's
        # premultiplied colour divided by the combined opacity.
        total = alpha + (1.0 - alpha) * shadow
        colour = fg.astype(np.float32) * (alpha / np.maximum(total, 1e-6))[:, :, None]
        fg = (colour + 0.5).astype(np.uint8)
        alpha = total
    return fg, (alpha * 255.0 + 0.5).astype(np.uint8)


def finish(rgb: np.ndarray, alpha: np.ndarray, options: RemovalOptions) -> Image.Image:
    """The transparent cut-out (its colour, H x W x 3, and 8-bit alpha) made into the output the
    product-photo options ask for: cropped and placed (imaging/shape.py), then laid on its
    background, or its matte taken. The local engine and the remote backend (on the API's
    cut-out) both end here. Pillow pastes and blends in C, on the output's pixels only."""
    if options.crop or options.canvas is not None:
        subject, where = placed(rgb, alpha, crop=options.crop, margin=options.margin,
                                canvas=options.canvas, position=options.position,
                                enlarge=options.enlarge)
        size, at = where.size, where.at
    else:
        subject = _rgba(np.ascontiguousarray(rgb), np.ascontiguousarray(alpha))
        size, at = subject.size, (0, 0)
    if options.only_mask:
        mask = Image.new("L", size, 0)
        mask.paste(subject.getchannel("A"), at)
        return mask
    if options.include_mask:
        out = Image.new("RGBA", size, (0, 0, 0, 0))
        out.paste(subject, at)
        return out
    if options.background_image is not None:
        out = cover(options.background_image, size, options.background_color)
    else:
        out = Image.new("RGB", size, options.background_color)
    out.paste(subject, at, mask=subject)  # blended by its alpha
    return out


def flatten(fg: np.ndarray, alpha: np.ndarray, background: np.ndarray) -> Image.Image:
    """`fg` over `background` (one colour, or one per pixel), `alpha` in [0, 1]: an RGB image."""
    a = alpha[:, :, None]
    out = fg.astype(np.float32) * a + background * (1.0 - a)
    return Image.fromarray((out + 0.5).astype(np.uint8), "RGB")


def _rgba(rgb: np.ndarray, alpha8: np.ndarray) -> Image.Image:
    # Pillow interleaves the alpha band in C, several times faster than np.dstack.
    image = Image.fromarray(rgb, "RGB")
    image.putalpha(Image.fromarray(alpha8, "L"))
    return image


def clear_invisible(rgba: np.ndarray) -> np.ndarray:
    """Set fully transparent pixels to (0, 0, 0, 0), in place: they are invisible whatever their
    colour, and runs of zeros cost a PNG next to nothing (often half the file)."""
    packed = rgba.view(np.uint32)  # one 32-bit word per pixel: a single multiply clears it
    packed *= rgba[:, :, 3:4] != 0
    return rgba


def encode(image: Image.Image, output_format: OutputFormat,
           icc_profile: bytes | None = None) -> bytes:
    """The image in `output_format`, tagged with `icc_profile` (the photo's: imaging/profiles.py)
    unless it is a matte, which is no colour."""
    profile = icc_profile if image.mode in ("RGB", "RGBA") else None
    extra = {} if profile is None else {"icc_profile": profile}
    if output_format is OutputFormat.png:
        if image.mode in ("RGB", "RGBA", "L", "LA"):
            pixels = np.array(image)  # a private, writable copy
            if image.mode == "RGBA":
                clear_invisible(pixels)
            return encode_png(pixels, PNG_COMPRESS_LEVEL, profile)
        buffer = BytesIO()
        image.save(buffer, "PNG", compress_level=PNG_COMPRESS_LEVEL)
        return buffer.getvalue()
    buffer = BytesIO()
    if output_format is OutputFormat.jpeg:
        # Product photos on a plain colour: 4:4:4 keeps the subject's edge against the colour
        # crisp (4:2:0 smears it into a coloured fringe).
        if image.mode != "L":  # a matte stays one greyscale channel
            image = image.convert("RGB")
        image.save(buffer, "JPEG", quality=JPEG_QUALITY, subsampling=0, **extra)
        return buffer.getvalue()
    # libwebp already discards the colour of invisible pixels (unless exact=True).
    image.save(buffer, "WEBP", quality=WEBP_QUALITY, method=WEBP_METHOD, **extra)
    return buffer.getvalue()
