"""Product-photo geometry on cut-outs whose matte is known exactly (imaging/shape.py): the
subject's box, crop, margin, canvas, position, frame-cut sides, background image, the mask."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from bgremove.errors import FileFailed
from bgremove.imaging.compose import finish
from bgremove.imaging.decode import MAX_PIXELS
from bgremove.imaging.shape import Box, place, shape, subject_box
from bgremove.layout import MAX_CANVAS_PIXELS, POSITIONS, parse_canvas, parse_margin
from bgremove.options import RemovalOptions


def cutout(height: int = 100, width: int = 200, box: tuple[int, int, int, int] = (30, 20, 90, 60),
           alpha: int = 255) -> np.ndarray:
    """A transparent cut-out: an opaque subject (x0, y0, x1, y1) of a colour that varies across
    it, nothing elsewhere."""
    rgba = np.zeros((height, width, 4), np.uint8)
    x0, y0, x1, y1 = box
    rgba[y0:y1, x0:x1, 0] = np.linspace(0, 255, x1 - x0, dtype=np.uint8)[None, :]
    rgba[y0:y1, x0:x1, 1] = 120
    rgba[y0:y1, x0:x1, 3] = alpha
    return rgba


def done(rgba: np.ndarray, options: RemovalOptions) -> Image.Image:
    """The output `options` make of a transparent cut-out."""
    return finish(rgba[:, :, :3], rgba[:, :, 3], options)


def drawn(rgba: np.ndarray) -> tuple[int, int, int, int]:
    """The box of the visible pixels of an output, as (x0, y0, x1, y1)."""
    ys, xs = np.nonzero(rgba[:, :, 3])
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def test_the_box_is_tight_and_crop_keeps_the_subject_pixel_for_pixel():
    rgba = cutout()
    assert subject_box(rgba[:, :, 3]) == Box(30, 20, 90, 60)
    out = shape(rgba, crop=True, margin=None, canvas=None)
    assert out.shape == (40, 60, 4)
    assert np.array_equal(out, rgba[20:60, 30:90])


@pytest.mark.parametrize("margin, size, at", [
    ("10", (80, 60), (10, 10)),  # pixels
    ("10%", (72, 52), (6, 6)),  # of the subject's longer side (60 px): 6 px
    ("0", (60, 40), (0, 0)),
])
def test_margin_in_pixels_and_percent(margin, size, at):
    out = shape(cutout(), crop=True, margin=parse_margin(margin), canvas=None)
    assert (out.shape[1], out.shape[0]) == size
    assert drawn(out)[:2] == at
    assert drawn(out)[2:] == (at[0] + 60, at[1] + 40)


def test_a_far_speck_does_not_widen_the_box():
    rgba = cutout()
    rgba[90:93, 190:193, 3] = 255  # a 3 x 3 speck of stray alpha in the far corner
    rgba[2, 3, 3] = 200
    assert subject_box(rgba[:, :, 3]) == Box(30, 20, 90, 60)
    assert shape(rgba, crop=True, margin=None, canvas=None).shape == (40, 60, 4)


def test_a_second_product_and_a_small_part_close_by_count():
    rgba = cutout(box=(30, 20, 90, 60))
    rgba[20:60, 120:170, 3] = 255  # a second shoe of the pair
    rgba[62:64, 60:62, 3] = 255  # a small detached part just under the first
    assert subject_box(rgba[:, :, 3]) == Box(30, 20, 170, 64)


def test_a_faint_shadow_belongs_to_the_subject():
    # What preserve_shadows makes: a soft layer of low alpha under and beside the subject.
    rgba = cutout()
    rgba[60:75, 25:130, 3] = 40
    assert subject_box(rgba[:, :, 3]) == Box(25, 20, 130, 75)
    # ... while alpha too faint to see (the matte's haze) does not.
    rgba[75:95, 25:130, 3] = 5
    assert subject_box(rgba[:, :, 3]) == Box(25, 20, 130, 75)


def test_the_canvas_has_exactly_its_size_and_the_subject_fills_it_inside_the_margin():
    out = shape(cutout(), crop=True, margin=parse_margin("5%"), canvas=parse_canvas("1000x1000"))
    assert out.shape == (1000, 1000, 4)
    x0, y0, x1, y1 = drawn(out)
    # 60 x 40 plus 3 px each side (5% of 60): 66 px wide -> scale 1000/66
    assert x1 - x0 == round(60 * 1000 / 66) and x0 == round(3 * 1000 / 66)
    assert (y0 + y1) // 2 in (499, 500)  # centred on the axis with room to spare
    pixels = shape(cutout(), crop=True, margin=parse_margin("100"),
                   canvas=parse_canvas("1000x1000"))
    assert drawn(pixels)[0] == 100 and drawn(pixels)[2] == 900  # 800 px wide between margins


@pytest.mark.parametrize("position", POSITIONS)
def test_each_position(position):
    out = shape(cutout(), crop=True, margin=parse_margin("10"), canvas=parse_canvas("400x300"),
                position=position, enlarge=False)
    x0, y0, x1, y1 = drawn(out)
    assert (x1 - x0, y1 - y0) == (60, 40)  # not enlarged
    words = position.split("-")
    assert x0 == (10 if "left" in words else 330 if "right" in words else 170)
    assert y0 == (10 if "top" in words else 250 if "bottom" in words else 130)


def test_a_small_subject_is_enlarged_unless_told_not_to():
    small = cutout(box=(90, 45, 110, 55))  # 20 x 10
    assert drawn(shape(small, crop=True, margin=None, canvas=parse_canvas("200x200"))) == (
        0, 50, 200, 150)
    kept = shape(small, crop=True, margin=None, canvas=parse_canvas("200x200"), enlarge=False)
    assert drawn(kept) == (90, 95, 110, 105)
    # A big subject is shrunk either way.
    big = shape(cutout(), crop=True, margin=None, canvas=parse_canvas("30x30"), enlarge=False)
    assert drawn(big) == (0, 5, 30, 25)


@pytest.mark.parametrize("canvas, margin, size", [
    ("1:1", None, (60, 60)),
    ("1:1", "10", (80, 80)),
    ("4:5", None, (60, 75)),
    ("3:1", None, (120, 40)),
    ("1.91:1", "5%", (88, 46)),  # 66 x 46 with its 3 px margin: 46 x 1.91 = 87.9
])
def test_aspect_only_canvases_are_the_smallest_of_that_shape(canvas, margin, size):
    out = shape(cutout(), crop=True, margin=None if margin is None else parse_margin(margin),
                canvas=parse_canvas(canvas))
    assert (out.shape[1], out.shape[0]) == size
    assert drawn(out)[2] - drawn(out)[0] == 60  # never scaled


def test_a_subject_the_frame_cuts_stays_against_that_side():
    # A person cut at the waist: opaque along the photo's bottom edge.
    rgba = cutout(box=(80, 30, 120, 100))
    box = subject_box(rgba[:, :, 3])
    assert box is not None and box.cut == {"bottom"}
    out = shape(rgba, crop=True, margin=parse_margin("10%"), canvas=parse_canvas("500x500"),
                position="top")
    x0, y0, x1, y1 = drawn(out)
    assert y1 == 500  # on the canvas's bottom edge, no margin there, whatever the position
    assert y0 == 500 - round(70 * 500 / 77)  # 70 px tall + 7 px margin on top only
    assert (x0 + x1) // 2 in (249, 250)
    cropped = shape(rgba, crop=True, margin=parse_margin("10"), canvas=None)
    assert cropped.shape[:2] == (80, 60) and drawn(cropped) == (10, 10, 50, 80)
    # Cut on the left: against the left side, even when asked for the right.
    side = cutout(box=(0, 30, 50, 60))
    assert drawn(shape(side, crop=True, margin=parse_margin("10"),
                       canvas=parse_canvas("300x300"), position="right"))[0] == 0
    # A soft edge that merely touches the frame is no cut.
    faint = cutout(box=(80, 30, 120, 100), alpha=60)
    assert subject_box(faint[:, :, 3]).cut == frozenset()


def test_an_empty_matte_is_no_subject():
    with pytest.raises(FileFailed, match="no subject found"):
        shape(np.zeros((50, 50, 4), np.uint8), crop=True, margin=None, canvas=None)


def backdrop(tmp_path) -> str:
    """A 200 x 100 picture: left half red, right half blue, a green stripe at the centre."""
    picture = np.zeros((100, 200, 3), np.uint8)
    picture[:, :100, 0] = 255
    picture[:, 100:, 2] = 255
    picture[:, 98:102] = (0, 255, 0)
    path = tmp_path / "backdrop.png"
    Image.fromarray(picture).save(path)
    return str(path)


def test_the_background_image_covers_the_output(tmp_path):
    # Photo-sized: a 100 x 100 output covered by the 200 x 100 picture: its middle half.
    rgba = cutout(100, 100, box=(40, 40, 60, 60))
    options = RemovalOptions.build(background_image=backdrop(tmp_path), output_format="png")
    assert not options.include_mask
    out = np.asarray(done(rgba, options))
    assert out.shape == (100, 100, 3)
    assert tuple(out[5, 5]) == (255, 0, 0) and tuple(out[5, 95]) == (0, 0, 255)
    assert tuple(out[5, 50]) == (0, 255, 0)  # the stripe, centred
    assert np.array_equal(out[40:60, 40:60], rgba[40:60, 40:60, :3])  # the opaque subject
    # On a tall canvas the same picture is scaled to its height: only its stripe's middle shows.
    tall = RemovalOptions.build(background_image=backdrop(tmp_path), canvas="20x200",
                                position="top", output_format="png")
    out = np.asarray(done(rgba, tall))
    assert out.shape == (200, 20, 3)
    assert np.abs(out[199, 10].astype(int) - (0, 255, 0)).max() < 12  # Lanczos rings a little


def test_the_mask_follows_the_same_geometry():
    rgba = cutout()
    for geometry in ({"crop": True, "margin": "7"}, {"canvas": "300x300", "position": "bottom"},
                     {"canvas": "2:1", "margin": "10%"}):
        image = done(rgba, RemovalOptions.build(output_format="png", **geometry))
        mask = done(rgba, RemovalOptions.build(output_format="png", only_mask=True,
                                                 **geometry))
        assert mask.mode == "L" and mask.size == image.size
        assert np.array_equal(np.asarray(mask), np.asarray(image)[:, :, 3])


def test_a_canvas_alone_places_without_crop_words():
    # --canvas implies the subject's box: --crop with it changes nothing.
    with_crop = done(cutout(), RemovalOptions.build(canvas="500x400", crop=True))
    without = done(cutout(), RemovalOptions.build(canvas="500x400"))
    assert np.array_equal(np.asarray(with_crop), np.asarray(without))


def test_the_canvas_limit_is_the_engines():
    assert MAX_CANVAS_PIXELS == MAX_PIXELS


def test_placement_is_geometry_alone():
    box = Box(0, 0, 100, 50)
    where = place(box, crop=False, margin=None, canvas=parse_canvas("200x200"))
    assert where.size == (200, 200) and where.scaled == (200, 100) and where.at == (0, 50)


def test_shaping_a_real_cutout_in_every_format(samples):
    import bgremove

    for fmt in ("png", "webp", "jpeg"):
        data = bgremove.remove(samples / "coffee.png", mode="fast", output_format=fmt,
                               canvas="320x240", margin="5%", position="bottom",
                               background_color="white" if fmt == "jpeg" else None)
        image = Image.open(io.BytesIO(data))
        assert image.size == (320, 240), fmt
