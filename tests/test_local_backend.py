"""The local backend on real photos: the subject stays, the background goes, options show."""

from __future__ import annotations

from io import BytesIO

import numpy as np
import pytest
from PIL import Image

from bgremove.backends.local import LocalSession
from bgremove.errors import ImageError
from bgremove.options import Mode, OutputFormat, RemovalOptions

# Points well inside the subject of each sample (x, y), picked by eye.
SUBJECT = {
    "coffee.png": [(290, 150), (300, 240), (150, 300)],
    "astronaut.jpg": [(222, 115), (200, 320)],
    "rocket.jpg": [(322, 220), (322, 260)],
}


@pytest.fixture(scope="module")
def backend() -> LocalSession:
    return LocalSession()


def cutout(backend: LocalSession, data: bytes, **kw) -> Image.Image:
    result = backend.process(data, RemovalOptions(**kw))
    return Image.open(BytesIO(result.data))


@pytest.mark.parametrize("mode", list(Mode))
def test_subject_opaque_background_transparent(backend, samples, mode):
    image = cutout(backend, (samples / "coffee.png").read_bytes(), mode=mode)
    assert image.mode == "RGBA" and image.size == (600, 400)
    alpha = np.asarray(image)[:, :, 3] / 255.0
    for x, y in SUBJECT["coffee.png"]:
        assert alpha[y, x] > 0.9, (mode, x, y)
    for y, x in [(0, 0), (0, -1), (-1, 0), (-1, -1)]:
        assert alpha[y, x] < 0.1, (mode, x, y)


@pytest.mark.parametrize("name", ["astronaut.jpg", "rocket.jpg"])
def test_subject_kept_on_other_photos(backend, samples, name):
    alpha = np.asarray(cutout(backend, (samples / name).read_bytes()))[:, :, 3] / 255.0
    for x, y in SUBJECT[name]:
        assert alpha[y, x] > 0.9, (name, x, y)
    assert alpha[0, 0] < 0.1  # sky / flag corner


def test_formats_by_content(backend, samples):
    data = (samples / "chelsea.webp").read_bytes()
    assert cutout(backend, data, output_format=OutputFormat.png).format == "PNG"
    assert cutout(backend, data, output_format=OutputFormat.webp).format == "WEBP"


def test_no_mask_fills_background_colour(backend, samples):
    image = cutout(backend, (samples / "coffee.png").read_bytes(), include_mask=False,
                   background_color=(0, 0, 255), output_format=OutputFormat.png)
    assert image.mode == "RGB"
    pixels = np.asarray(image)
    assert tuple(pixels[2, 2]) == (0, 0, 255)
    assert tuple(pixels[-3, -3]) == (0, 0, 255)
    # the subject keeps its own colours
    original = np.asarray(Image.open(samples / "coffee.png").convert("RGB"))
    for x, y in SUBJECT["coffee.png"]:
        assert np.abs(pixels[y, x].astype(int) - original[y, x]).max() < 12


def test_smooth_edges_soft_versus_hard(backend, samples):
    data = (samples / "coffee.png").read_bytes()
    soft = np.asarray(cutout(backend, data, output_format=OutputFormat.png))[:, :, 3]
    hard = np.asarray(cutout(backend, data, output_format=OutputFormat.png,
                             smooth_edges=False))[:, :, 3]
    assert set(np.unique(hard)) <= {0, 255}
    assert ((soft > 0) & (soft < 255)).sum() > 500  # an anti-aliased rim


def test_preserve_shadows_adds_a_semi_transparent_layer(backend, samples):
    data = (samples / "coffee.png").read_bytes()
    plain = np.asarray(cutout(backend, data, output_format=OutputFormat.png))[:, :, 3]
    shadow = np.asarray(cutout(backend, data, output_format=OutputFormat.png,
                               preserve_shadows=True))[:, :, 3]
    added = (shadow.astype(int) - plain) > 10
    assert added.sum() > 200
    # what is added is a soft layer, never a second opaque subject
    assert np.percentile(shadow[added], 50) < 230


def test_preserve_shadows_leaves_dark_objects_out(backend, samples):
    # The astronaut stands before a bright backdrop with a black table and a flag beside her and
    # casts no shadow on them: dark objects next to the subject are not its shadow.
    data = (samples / "astronaut.jpg").read_bytes()
    plain = np.asarray(cutout(backend, data, output_format=OutputFormat.png))[:, :, 3]
    shadow = np.asarray(cutout(backend, data, output_format=OutputFormat.png,
                               preserve_shadows=True))[:, :, 3]
    added = (shadow.astype(int) - plain) > 50
    assert added.mean() < 0.005


def test_quality_keeps_the_whole_subject_opaque(backend, samples):
    # The model misses the helmet in the mirrored photo: its second opinion must not make the
    # helmet see-through.
    data = (samples / "astronaut.jpg").read_bytes()
    alpha = np.asarray(cutout(backend, data, mode=Mode.quality))[:, :, 3] / 255.0
    for x, y in [(380, 440), (360, 470), (330, 420)]:
        assert alpha[y, x] > 0.9, (x, y)


def test_quality_cleans_colours_and_differs_from_fast(backend, samples):
    data = (samples / "astronaut.jpg").read_bytes()
    fast = np.asarray(cutout(backend, data, mode=Mode.fast, output_format=OutputFormat.png))
    quality = np.asarray(cutout(backend, data, mode=Mode.quality, output_format=OutputFormat.png))
    assert np.abs(fast[:, :, 3].astype(int) - quality[:, :, 3]).mean() > 0.5


def _encode(image: Image.Image, fmt: str, **kw) -> bytes:
    buffer = BytesIO()
    image.save(buffer, fmt, **kw)
    return buffer.getvalue()


@pytest.mark.parametrize("mode_name", ["L", "CMYK", "P", "LA", "I;16"])
def test_image_modes(backend, samples, mode_name):
    photo = Image.open(samples / "coffee.png").convert("RGB")
    if mode_name == "I;16":
        grey = np.asarray(photo.convert("L"), dtype=np.uint16) * 257
        source = Image.fromarray(grey)  # uint16 -> mode I;16
        data = _encode(source, "PNG")
    elif mode_name == "CMYK":
        data = _encode(photo.convert("CMYK"), "JPEG", quality=95)
    else:
        data = _encode(photo.convert(mode_name), "PNG")
    image = cutout(backend, data, output_format=OutputFormat.png)
    alpha = np.asarray(image)[:, :, 3] / 255.0
    assert alpha[240, 300] > 0.8 and alpha[0, 0] < 0.1, mode_name
    if mode_name == "I;16":  # full tonal range, not clipped to white
        assert np.asarray(image)[240, 300, 0] < 200


def test_existing_transparency_is_kept(backend, samples):
    rgba = Image.open(samples / "coffee.png").convert("RGBA")
    pixels = np.array(rgba)
    pixels[:, 300:, 3] = 0  # right half already cut away
    image = cutout(backend, _encode(Image.fromarray(pixels), "PNG"), output_format=OutputFormat.png)
    alpha = np.asarray(image)[:, :, 3]
    assert alpha[:, 300:].max() == 0
    assert alpha[240, 250] > 200


def test_exif_orientation_applied(backend, samples):
    photo = Image.open(samples / "coffee.png").convert("RGB")
    rotated = photo.transpose(Image.Transpose.ROTATE_90)  # stored sideways...
    exif = Image.Exif()
    exif[0x0112] = 8  # ...with a tag saying "rotate 90 CW to view"
    image = cutout(backend, _encode(rotated, "JPEG", exif=exif, quality=95))
    assert image.size == photo.size


def test_not_an_image(backend):
    with pytest.raises(ImageError, match="not an image"):
        backend.process(b"hello, world" * 10, RemovalOptions())


@pytest.mark.parametrize("name, fmt, mode", [("cut.jpg", "JPEG", "RGB"), ("cut.png", "PNG", "RGBA"),
                                             ("cut.webp", "WEBP", "RGBA")])
def test_remove_batch_into_a_file_writes_what_its_name_says(backend, samples, tmp_path, name,
                                                             fmt, mode):
    import bgremove

    summary = bgremove.remove_batch([samples / "rocket.jpg"], tmp_path / name, session=backend)
    assert not summary.failed
    with Image.open(tmp_path / name) as written:
        assert (written.format, written.mode) == (fmt, mode)


def test_remove_batch_takes_one_folder_as_a_plain_string(backend, samples, tmp_path, monkeypatch):
    import bgremove

    (tmp_path / "in").mkdir()
    Image.open(samples / "rocket.jpg").resize((120, 90)).save(tmp_path / "in" / "r.jpg")
    monkeypatch.chdir(tmp_path)
    summary = bgremove.remove_batch("in", "out", session=backend)
    assert not summary.failed and sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "r.webp"]


@pytest.mark.parametrize("colour", [(300, 0, -5), (1, 2), 5, (0.5, 0.5, 0.5)])
def test_a_bad_background_colour_is_a_value_error_naming_it(backend, colour):
    import bgremove

    with pytest.raises(ValueError, match="background_color"):
        bgremove.remove(b"unused", background_color=colour, session=backend)


def test_library_mistakes_raise_bgremove_errors(backend, samples, tmp_path):
    import bgremove

    with pytest.raises(bgremove.FileFailed, match="missing.jpg: cannot read"):
        bgremove.remove(tmp_path / "missing.jpg", session=backend)
    photo = Image.open(samples / "rocket.jpg").resize((120, 90))
    assert bgremove.remove(photo, mode="QUALITY", session=backend).mode == "RGBA"
