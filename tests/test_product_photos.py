"""Product photos from the command line, the library, the settings and the remote backend:
`--crop --canvas --margin --position --background-image`, their usage errors, a photo with no
subject, and stamps that see a changed margin."""

from __future__ import annotations

import io
import json
import shutil

import numpy as np
import pytest
from PIL import Image

import bgremove
from bgremove.cli.settings import load
from bgremove.errors import OptionError
from bgremove.server import create_app
from bgremove.server.store import open_store
from tests.inprocess import invoke
from tests.serving import serve_app

CATALOGUE = ["--crop", "--canvas", "240x240", "--margin", "6%", "--position", "bottom",
             "--background-color", "white", "-f", "jpeg", "--mode", "fast"]


@pytest.fixture(scope="module")
def session():
    with bgremove.new_session() as own:
        yield own


def folder(samples, tmp_path, *names: str):
    src = tmp_path / "in"
    src.mkdir(exist_ok=True)
    for name in names:
        shutil.copy(samples / name, src / name)
    return src


def test_a_catalogue_job_puts_every_product_on_one_canvas(samples, tmp_path):
    src = folder(samples, tmp_path, "coffee.png", "rocket.jpg", "camera.png")
    result = invoke(str(src), "-o", str(tmp_path / "web"), *CATALOGUE)
    assert result.returncode == 0, result.stderr.decode()
    for name in ("coffee.jpg", "rocket.jpg", "camera.jpg"):
        image = Image.open(tmp_path / "web" / name)
        assert image.size == (240, 240) and image.mode == "RGB", name
        pixels = np.asarray(image).astype(int)
        assert (pixels[0] > 245).all(), name  # white above the product: it stands at the bottom
    # The coffee cup is whole in its photo: a 6% margin under it. The camera man runs out of
    # the bottom of his: he stands on the canvas's bottom edge.
    cup = np.asarray(Image.open(tmp_path / "web" / "coffee.jpg").convert("L")).astype(int)
    man = np.asarray(Image.open(tmp_path / "web" / "camera.jpg").convert("L")).astype(int)
    assert (cup[-5:] > 245).all() and (man[-1] < 200).any()


@pytest.mark.parametrize("args, words", [
    (["--canvas", "0x0"], "WIDTHxHEIGHT in pixels (1200x1200) or an aspect ratio W:H"),
    (["--canvas", "9000x9000"], "81 MP is over the 50 MP limit"),
    (["--canvas", "big"], "WIDTHxHEIGHT"),
    (["--canvas", "300x300", "--margin", "150"], "--margin 150 leaves no room on a 300x300"),
    (["--margin", "-5"], "pixels (40) or a percentage of the subject's size (6%)"),
    (["--margin", "5 cm"], "pixels (40) or a percentage"),
    (["--position", "up"], "choose center, top, bottom, left, right, top-left"),
    (["--background-image", "missing.jpg"], "--background-image missing.jpg: cannot be read"),
    (["--background-image", "notes.txt"], "--background-image notes.txt: not an image"),
    (["--only-mask", "--background-image", "back.png"], "has no background to fill: drop "
                                                        "--background-image"),
    (["--include-mask", "--background-image", "back.png"], "--include-mask keeps it"),
])
def test_usage_errors_before_any_work(samples, tmp_path, args, words):
    (tmp_path / "notes.txt").write_text("not a picture\n")
    Image.new("RGB", (8, 8), "red").save(tmp_path / "back.png")
    result = invoke(str(samples / "coffee.png"), "-o", str(tmp_path / "out.png"), *args,
                    cwd=tmp_path)
    assert result.returncode == 2, result.stderr.decode()
    assert words in result.stderr.decode()
    assert not (tmp_path / "out.png").exists()


def test_library_keywords_and_their_errors(session, samples, tmp_path):
    back = tmp_path / "back.png"
    Image.new("RGB", (40, 30), (10, 120, 200)).save(back)
    data = bgremove.remove(samples / "coffee.png", session=session, mode="fast", crop=True,
                           margin="5%", canvas="300x200", position="bottom",
                           background_image=back, output_format="png")
    image = Image.open(io.BytesIO(data))
    assert image.size == (300, 200) and image.mode == "RGB"
    assert tuple(np.asarray(image)[2, 2]) == (10, 120, 200)  # the picture, not white
    with pytest.raises(OptionError, match="canvas"):
        bgremove.remove(b"", session=session, canvas="0x10")
    with pytest.raises(OptionError, match="position"):
        bgremove.remove(b"", session=session, canvas="1:1", position="up")
    with pytest.raises(OptionError, match="background_image"):
        bgremove.remove(b"", session=session, background_image=tmp_path / "none.png")


def test_settings_from_the_environment_and_the_config_file(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text('canvas = "1000x1000"\nmargin = "6%"\nposition = "bottom"\ncrop = true\n')
    settings = load(config=str(config), environ={"BGREMOVE_MARGIN": "40"})
    options = settings.removal_options()
    assert str(options.canvas) == "1000x1000" and options.crop and options.position == "bottom"
    assert str(options.margin) == "40" and settings.sources["margin"] == "env BGREMOVE_MARGIN"
    with pytest.raises(Exception, match="BGREMOVE_CANVAS: '0x0' is not valid"):
        load(environ={"BGREMOVE_CANVAS": "0x0"})


def test_a_photo_with_no_subject_fails_and_the_rest_go_on(samples, tmp_path):
    src = folder(samples, tmp_path, "coffee.png")
    # Transparent all over: the matte is the photo's own alpha times the model's, so empty.
    Image.new("RGBA", (64, 48), (200, 30, 30, 0)).save(src / "empty.png")
    result = invoke(str(src), "-o", str(tmp_path / "out"), "--crop", "--mode", "fast",
                    "-f", "png", "--json")
    assert result.returncode == 1
    lines = {json.loads(line)["input"].rsplit("/", 1)[-1]: json.loads(line)
             for line in result.stdout.decode().splitlines()}
    assert lines["empty.png"]["status"] == "failed"
    assert "no subject found" in lines["empty.png"]["error"]
    assert lines["coffee.png"]["status"] == "done"
    assert (tmp_path / "out" / "coffee.png").exists()
    assert not (tmp_path / "out" / "empty.png").exists()
    # Without --crop or --canvas an empty matte is a transparent cut-out, as before.
    plain = invoke(str(src / "empty.png"), "-o", str(tmp_path / "plain.png"), "--mode", "fast")
    assert plain.returncode == 0, plain.stderr.decode()


def test_a_changed_margin_redoes_the_outputs_and_check_sees_it(samples, tmp_path):
    src = folder(samples, tmp_path, "coffee.png", "chelsea.webp")
    out = str(tmp_path / "out")
    first = ["--crop", "--margin", "5%", "--mode", "fast", "-f", "png"]
    assert invoke(str(src), "-o", out, *first).returncode == 0
    assert invoke(str(src), "-o", out, *first, "--check").returncode == 0
    wider = ["--crop", "--margin", "8%", "--mode", "fast", "-f", "png"]
    check = invoke(str(src), "-o", out, *wider, "--check")
    assert check.returncode == 1 and b"options changed" in check.stdout + check.stderr
    size = Image.open(tmp_path / "out" / "coffee.png").size
    again = invoke(str(src), "-o", out, *wider, "--json")
    assert again.stdout.decode().count('"status": "done"') == 2
    bigger = Image.open(tmp_path / "out" / "coffee.png").size
    assert bigger[0] > size[0] and bigger[1] > size[1]
    assert invoke(str(src), "-o", out, *wider, "--check").returncode == 0
    # A position without a canvas places nothing: it leaves the outputs up to date.
    assert invoke(str(src), "-o", out, *wider, "--position", "top", "--check").returncode == 0


def test_a_changed_background_picture_redoes_the_outputs(samples, tmp_path):
    src = folder(samples, tmp_path, "coffee.png")
    back = tmp_path / "back.png"
    Image.new("RGB", (20, 20), "navy").save(back)
    args = [str(src), "-o", str(tmp_path / "out"), "--background-image", str(back),
            "--mode", "fast", "-f", "jpeg"]
    assert invoke(*args).returncode == 0
    assert invoke(*args, "--check").returncode == 0
    Image.new("RGB", (20, 20), "teal").save(back)
    assert invoke(*args, "--check").returncode == 1


@pytest.mark.parametrize("options", [
    {"crop": True, "margin": "20", "output_format": "png"},
    {"canvas": "300x300", "margin": "6%", "position": "bottom", "background_color": "white",
     "output_format": "jpeg"},
    {"canvas": "4:5", "output_format": "webp", "preserve_shadows": True},
    {"canvas": "200x200", "only_mask": True, "output_format": "png"},
    {"background_image": "BACK", "output_format": "png"},
])
def test_remote_equals_local_against_the_projects_server(session, samples, tmp_path, options):
    if options.get("background_image") == "BACK":
        Image.new("RGB", (30, 20), (200, 150, 20)).save(tmp_path / "back.png")
        options = {**options, "background_image": tmp_path / "back.png"}
    store = open_store(tmp_path / "keys.sqlite3")
    key = store.create("tester@example.com", 10)
    photo = (samples / "astronaut.jpg").read_bytes()
    with serve_app(create_app(store, session=session)) as base:
        with bgremove.RemoteSession(f"{base}/api/remove-background/", key) as remote:
            far = bgremove.remove(photo, mode="fast", session=remote, **options)
    near = bgremove.remove(photo, mode="fast", session=session, **options)
    a, b = Image.open(io.BytesIO(far)), Image.open(io.BytesIO(near))
    assert a.size == b.size and a.mode == b.mode
    diff = np.abs(np.asarray(a).astype(np.int16) - np.asarray(b))
    if a.mode == "RGBA":  # what is invisible may differ
        diff = diff * (np.asarray(b)[:, :, 3:] > 0)
    assert diff.mean() < 0.5 and np.percentile(diff, 99.9) <= 3
