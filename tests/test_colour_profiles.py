"""True colours: a photo's ICC profile travels to its cut-out (PNG, WebP, JPEG), locally, through
the remote backend and from `bgremove serve`; checked by rendering both through their profiles
with a colour-managed conversion (PIL.ImageCms), as a viewer does.

The profiles are real ones, from Debian's `colord-data` (.ci/run installs it); without it these
tests skip."""

from __future__ import annotations

import io
import os
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image, ImageCms

import bgremove
from bgremove.imaging.png import encode_png
from bgremove.imaging.profiles import rgb_profile
from bgremove.server import create_app
from bgremove.server.store import open_store
from bgremove.stamps import embed, read
from tests.serving import serve_app

PROFILES = Path("/usr/share/color/icc/colord")
# .ci/run sets BGREMOVE_REQUIRE_PROFILES: there these tests fail rather than skip.
needs_profiles = pytest.mark.skipif(
    not (PROFILES / "ProPhotoRGB.icc").is_file()
    and not os.environ.get("BGREMOVE_REQUIRE_PROFILES"),
    reason="no ICC profiles: apt-get install colord-data")
SRGB = ImageCms.createProfile("sRGB")


@pytest.fixture(scope="module")
def session():
    with bgremove.new_session() as own:
        yield own


def profile(name: str = "ProPhotoRGB") -> bytes:
    return (PROFILES / f"{name}.icc").read_bytes()


def tagged_photo(samples: Path, icc: bytes, name: str = "rocket.jpg") -> bytes:
    """The sample with a profile attached, pixels unchanged: how the issue measured the shift."""
    buffer = io.BytesIO()
    Image.open(samples / name).convert("RGB").save(buffer, "JPEG", quality=95, icc_profile=icc)
    return buffer.getvalue()


def open_bytes(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def rendered(image: Image.Image) -> np.ndarray:
    """What a colour-managed viewer shows: the pixels through their profile into sRGB (untagged
    pixels are sRGB already)."""
    rgb = image.convert("RGB")
    icc = image.info.get("icc_profile")
    if icc:
        rgb = ImageCms.profileToProfile(rgb, ImageCms.ImageCmsProfile(io.BytesIO(icc)), SRGB,
                                        outputMode="RGB")
    return np.asarray(rgb).astype(np.int16)


def premultiplied(image: Image.Image) -> np.ndarray:
    """What an image shows: the colour of invisible pixels is none of its business."""
    pixels = np.asarray(image).astype(np.float32)
    if image.mode == "RGBA":
        pixels[:, :, :3] *= pixels[:, :, 3:] / 255.0
    return pixels


def opaque(session, data: bytes) -> np.ndarray:
    mask = open_bytes(bgremove.remove(data, mode="fast", output_format="png", only_mask=True,
                                      session=session))
    return np.asarray(mask) == 255


@needs_profiles
@pytest.mark.parametrize("fmt, tolerance", [("png", 0.5), ("webp", 5.0), ("jpeg", 4.0)])
@pytest.mark.parametrize("name", ["ProPhotoRGB", "AdobeRGB1998"])
def test_a_profiled_photo_keeps_its_colours(session, samples, fmt, tolerance, name):
    icc = profile(name)
    photo = tagged_photo(samples, icc, "coffee.png")  # a red cup: colours wide gamuts move
    out = open_bytes(bgremove.remove(photo, mode="fast", output_format=fmt, session=session,
                                     background_color="white" if fmt == "jpeg" else None))
    assert out.info.get("icc_profile") == icc
    shown, meant = rendered(out), rendered(open_bytes(photo))
    solid = opaque(session, photo)
    assert solid.sum() > 50_000
    shift = np.abs(shown - meant)[solid].mean()
    assert shift < tolerance
    # Without the profile the same pixels would show other colours (the issue measured 19.9
    # levels for ProPhoto): what the tag is for.
    bare = np.asarray(out.convert("RGB")).astype(np.int16)
    assert np.abs(bare - meant)[solid].mean() > max(2 * shift, tolerance) + 1


@needs_profiles
def test_product_photo_outputs_keep_the_profile_too(session, samples):
    icc = profile()
    out = open_bytes(bgremove.remove(tagged_photo(samples, icc), mode="fast",
                                     output_format="png", canvas="300x300", margin="5%",
                                     session=session))
    assert out.size == (300, 300) and out.info.get("icc_profile") == icc


@needs_profiles
def test_the_mask_and_an_untagged_photo_carry_none(session, samples):
    assert "icc_profile" not in Image.open(samples / "astronaut.jpg").info
    photo = tagged_photo(samples, profile())
    for fmt in ("png", "webp", "jpeg"):
        mask = bgremove.remove(photo, mode="fast", output_format=fmt, only_mask=True,
                               session=session)
        assert "icc_profile" not in open_bytes(mask).info, fmt
        plain = bgremove.remove(samples / "astronaut.jpg", mode="fast", output_format=fmt,
                                session=session, background_color="white")
        assert not open_bytes(plain).info.get("icc_profile"), fmt
        assert b"iCCP" not in plain[:200] and b"ICC_PROFILE" not in plain[:400]


@needs_profiles
def test_a_pil_image_gives_a_cutout_that_saves_with_its_profile(session, samples, tmp_path):
    icc = profile()
    photo = open_bytes(tagged_photo(samples, icc))
    cutout = bgremove.remove(photo, mode="fast", session=session)
    assert cutout.info.get("icc_profile") == icc
    cutout.save(tmp_path / "cut.png")
    assert Image.open(tmp_path / "cut.png").info.get("icc_profile") == icc


def test_only_profiles_of_rgb_data_are_carried(session, samples):
    """A CMYK photo is converted to RGB without its profile: carrying a CMYK profile into RGB
    pixels would misdescribe them (PNG forbids it)."""
    fake_cmyk = bytearray(128 + 4)
    fake_cmyk[16:20] = b"CMYK"
    buffer = io.BytesIO()
    Image.open(samples / "rocket.jpg").convert("CMYK").save(buffer, "JPEG",
                                                            icc_profile=bytes(fake_cmyk))
    assert rgb_profile(Image.open(io.BytesIO(buffer.getvalue()))) is None
    out = bgremove.remove(buffer.getvalue(), mode="fast", output_format="png", session=session)
    assert "icc_profile" not in open_bytes(out).info


@needs_profiles
def test_the_png_writer_writes_icc_and_the_stamp_reads_past_it(tmp_path):
    icc = profile("AdobeRGB1998")
    pixels = np.random.default_rng(1).integers(0, 256, (20, 30, 4), dtype=np.uint8)
    data = embed(encode_png(pixels, 1, icc), '{"bgremove": 1}')
    image = open_bytes(data)
    assert image.info["icc_profile"] == icc and np.array_equal(np.asarray(image), pixels)
    (tmp_path / "x.png").write_bytes(data)
    assert read(tmp_path / "x.png") == '{"bgremove": 1}'


@needs_profiles
def test_remote_and_serve_carry_the_profile_and_equal_local(session, samples, tmp_path):
    icc = profile()
    photo = tagged_photo(samples, icc, "coffee.png")
    store = open_store(tmp_path / "keys.sqlite3")
    key = store.create("tester@example.com", 20)
    with serve_app(create_app(store, session=session)) as base:
        url = f"{base}/api/remove-background/"
        # The server's own answer carries it (the API's PNG and WebP).
        for fmt in ("png", "webp"):
            answer = httpx.post(url, headers={"x-api-key": key},
                                data={"mode": "fast", "outputFormat": fmt},
                                files={"file": ("p.jpg", photo, "image/jpeg")}, timeout=60)
            assert answer.status_code == 200
            assert open_bytes(answer.content).info.get("icc_profile") == icc, fmt
        with bgremove.RemoteSession(url, key) as remote:
            for options in ({"output_format": "webp"}, {"output_format": "jpeg"},
                            {"output_format": "png", "canvas": "400x400"}):
                far = open_bytes(bgremove.remove(photo, mode="fast", session=remote, **options))
                near = open_bytes(bgremove.remove(photo, mode="fast", session=session,
                                                  **options))
                assert far.info.get("icc_profile") == icc, options
                assert far.size == near.size and far.mode == near.mode, options
                diff = np.abs(premultiplied(far) - premultiplied(near))
                assert diff.mean() < 0.5 and np.percentile(diff, 99.9) <= 3, options


@needs_profiles
@pytest.mark.parametrize("fmt, mode", [("PNG", "RGBA"), ("PNG", "RGB"), ("WEBP", "RGBA"),
                                       ("WEBP", "RGB")])
def test_tagging_an_answer_leaves_its_pixels(fmt, mode, tmp_path):
    from bgremove.imaging.profiles import tag

    icc = profile("AdobeRGB1998")
    pixels = np.random.default_rng(2).integers(0, 256, (16, 24, len(mode)), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode).save(buffer, fmt, **({"lossless": True} if fmt == "WEBP"
                                                       else {}))
    tagged = tag(embed(buffer.getvalue(), '{"bgremove": 1}'), icc)
    image = open_bytes(tagged)
    assert image.info.get("icc_profile") == icc and image.mode == mode
    assert np.array_equal(np.asarray(image), np.asarray(open_bytes(buffer.getvalue())))
    (tmp_path / "x").write_bytes(tagged)
    assert read(tmp_path / "x") == '{"bgremove": 1}'
    assert tag(tagged, profile("ProPhotoRGB")).count(b"ICCP" if fmt == "WEBP" else b"iCCP") == 1
