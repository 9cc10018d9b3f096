"""`--only-mask` and `remove(..., only_mask=True)`: the matte the cut-out would carry, as a
greyscale image, from the local model and from the API."""

from __future__ import annotations

import io
import shutil

import numpy as np
import pytest
from PIL import Image

import bgremove
from bgremove.server import create_app
from bgremove.server.store import open_store
from tests.conftest import run_cli
from tests.serving import serve_app


@pytest.fixture(scope="module")
def session():
    with bgremove.new_session() as own:
        yield own


def decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


@pytest.mark.parametrize("options", [
    {"mode": "fast"},
    {"mode": "balanced", "preserve_shadows": True},
    {"mode": "quality", "smooth_edges": False},
])
def test_mask_is_the_alpha_of_the_cutout(session, samples, options):
    photo = (samples / "rocket.jpg").read_bytes()
    mask = decoded(bgremove.remove(photo, output_format="png", only_mask=True, session=session,
                                   **options))
    cutout = decoded(bgremove.remove(photo, output_format="png", session=session, **options))
    assert mask.mode == "L" and mask.size == cutout.size
    assert np.array_equal(np.asarray(mask), np.asarray(cutout)[:, :, 3])


def test_library_mask_of_an_image_and_as_jpeg(session, samples):
    photo = Image.open(samples / "astronaut.jpg")
    mask = bgremove.remove(photo, only_mask=True, session=session, mode="fast")
    assert isinstance(mask, Image.Image) and mask.mode == "L" and mask.size == photo.size
    values = np.asarray(mask)
    assert values.min() == 0 and values.max() == 255  # a subject and a background
    jpeg = bgremove.remove(samples.joinpath("astronaut.jpg").read_bytes(), only_mask=True,
                           output_format="jpeg", session=session, mode="fast")
    assert jpeg[:3] == b"\xff\xd8\xff" and decoded(jpeg).mode == "L"


def test_library_refuses_a_background_with_the_mask(session, samples):
    with pytest.raises(ValueError, match="background_color"):
        bgremove.remove(b"", only_mask=True, background_color="red", session=session)
    with pytest.raises(ValueError, match="only_mask"):
        bgremove.remove(b"", only_mask=True, include_mask=False, session=session)


def test_cli_writes_the_mask_and_stamps_it_apart_from_the_cutout(samples, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(samples / "coffee.png", src)
    out = tmp_path / "out"
    first = run_cli(str(src), "-o", str(out), "--mode", "fast", "--format", "png", "-om")
    assert first.returncode == 0, first.stderr.decode()
    mask = Image.open(out / "coffee.png")
    assert mask.mode == "L"
    mask_pixels = np.asarray(mask)
    # The same options without --only-mask: the mask on disk is not the cut-out, so it is made.
    cut = run_cli(str(src), "-o", str(out), "--mode", "fast", "--format", "png", "--json")
    assert cut.returncode == 0, cut.stderr.decode()
    assert b'"status": "done"' in cut.stdout and b"options changed" in cut.stdout
    cutout = np.asarray(Image.open(out / "coffee.png"))
    assert cutout.shape[2] == 4 and np.array_equal(cutout[:, :, 3], mask_pixels)
    # ... and the other way round, then the mask run again is up to date.
    again = run_cli(str(src), "-o", str(out), "--mode", "fast", "--format", "png",
                    "--only-mask", "--json")
    assert b"options changed" in again.stdout
    kept = run_cli(str(src), "-o", str(out), "--mode", "fast", "--format", "png",
                   "--only-mask", "--json")
    assert b'"status": "skipped"' in kept.stdout


@pytest.mark.parametrize("conflict, words", [
    (["--background-color", "red"], b"drop --background-color"),
    (["--no-include-mask"], b"drop --no-include-mask"),
])
def test_cli_refuses_a_filled_background_with_the_mask(samples, tmp_path, conflict, words):
    result = run_cli(str(samples / "coffee.png"), "-o", str(tmp_path / "m.png"), "--only-mask",
                     *conflict)
    assert result.returncode == 2
    assert words in result.stderr and not (tmp_path / "m.png").exists()


def test_remote_mask_is_the_alpha_of_the_api_cutout(session, samples, tmp_path):
    store = open_store(tmp_path / "keys.sqlite3")
    key = store.create("tester@example.com", 10)
    photo = (samples / "coffee.png").read_bytes()
    with serve_app(create_app(store, session=session)) as base:
        with bgremove.RemoteSession(f"{base}/api/remove-background/", key) as remote:
            mask = decoded(bgremove.remove(photo, only_mask=True, output_format="png",
                                           mode="fast", session=remote))
            cutout = decoded(bgremove.remove(photo, output_format="png", mode="fast",
                                             session=remote))
            # Every output format, JPEG too, is made from the API's lossless answer.
            jpeg = decoded(bgremove.remove(photo, only_mask=True, output_format="jpeg",
                                           mode="fast", session=remote))
    assert mask.mode == "L" and jpeg.mode == "L"
    assert np.array_equal(np.asarray(mask), np.asarray(cutout)[:, :, 3])
    local = decoded(bgremove.remove(photo, only_mask=True, output_format="png", mode="fast",
                                    session=session))
    assert np.array_equal(np.asarray(mask), np.asarray(local))
