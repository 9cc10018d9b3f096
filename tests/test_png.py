"""bgremove's own PNG writer: what it writes decodes, in any PNG reader, to exactly the pixels it
was given; and cut-outs written through it lose nothing visible."""

from __future__ import annotations

import zlib
from io import BytesIO

import numpy as np
import pytest
from PIL import Image

from bgremove.imaging import png
from bgremove.imaging.compose import clear_invisible, encode
from bgremove.options import OutputFormat

MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}


def pixels(height: int, width: int, channels: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (height, width) if channels == 1 else (height, width, channels)
    return rng.integers(0, 256, shape, dtype=np.uint8)


def decoded(data: bytes) -> Image.Image:
    image = Image.open(BytesIO(data))
    image.load()
    return image


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("height, width", [(1, 1), (1, 9), (7, 1), (13, 17), (64, 301)])
def test_round_trips_through_pillow(channels, height, width):
    original = pixels(height, width, channels, seed=height * width + channels)
    image = decoded(png.encode_png(original))
    assert image.format == "PNG" and image.mode == MODES[channels]
    assert image.size == (width, height)
    assert np.array_equal(np.asarray(image), original)


@pytest.mark.parametrize("level", [0, 1, 3, 6, 9])
def test_zlib_fallback_writes_the_same_pixels(monkeypatch, level):
    # Without isal installed the writer falls back to the standard library's zlib.
    monkeypatch.setattr(png, "_deflate", zlib)
    original = pixels(40, 33, 4, seed=level)
    assert np.array_equal(np.asarray(decoded(png.encode_png(original, level))), original)


def test_every_level_decodes_whichever_deflate_is_installed():
    original = pixels(30, 20, 3)
    for level in range(10):  # isal knows 0-3: higher levels are capped, never an error
        assert np.array_equal(np.asarray(decoded(png.encode_png(original, level))), original)


def test_smooth_images_compress():
    ramp = np.tile(np.arange(256, dtype=np.uint8), (256, 1))
    rgba = np.dstack([ramp, ramp.T, ramp, np.full_like(ramp, 255)])
    assert len(png.encode_png(rgba)) < rgba.nbytes / 20


@pytest.mark.parametrize("bad", [np.zeros((4, 4), np.uint16), np.zeros((4, 4, 5), np.uint8),
                                 np.zeros((0, 4, 3), np.uint8)])
def test_refuses_what_it_cannot_write(bad):
    with pytest.raises((TypeError, ValueError)):
        png.encode_png(bad)


def test_clearing_invisible_pixels_touches_nothing_visible():
    rgba = pixels(50, 60, 4)
    rgba[::3, :, 3] = 0
    cleared = clear_invisible(rgba.copy())
    visible = rgba[:, :, 3] > 0
    assert np.array_equal(cleared[visible], rgba[visible])
    assert not cleared[~visible].any()


def test_cutout_png_keeps_every_visible_pixel_and_all_alpha():
    rgba = pixels(120, 97, 4, seed=5)
    rgba[:40, :, 3] = 0  # a transparent band, as behind a subject
    cutout = Image.fromarray(rgba, "RGBA")
    ours = np.asarray(decoded(encode(cutout, OutputFormat.png)))
    reference = np.asarray(cutout)  # what Pillow's own encoder would have stored
    assert np.array_equal(ours[:, :, 3], reference[:, :, 3])
    visible = reference[:, :, 3] > 0
    assert np.array_equal(ours[visible], reference[visible])


@pytest.mark.parametrize("mode", ["RGB", "L", "LA", "P", "1"])
def test_other_modes_encode_to_the_same_pixels(mode):
    image = Image.fromarray(pixels(31, 45, 3, seed=2), "RGB").convert(mode)
    again = decoded(encode(image, OutputFormat.png))
    assert np.array_equal(np.asarray(again.convert("RGBA")), np.asarray(image.convert("RGBA")))
