"""`bgremove frames W H`: raw rgb24 frames through a pipe, cut-outs out in input order."""

from __future__ import annotations

import io
import subprocess
import sys
import threading

import numpy as np
import pytest
from PIL import Image

import bgremove
from bgremove.imaging.compose import clear_invisible
from bgremove.options import RemovalOptions
from tests.conftest import cli_env, run_cli

W, H = 96, 64


@pytest.fixture(scope="module")
def session():
    with bgremove.new_session(threads=1) as own:
        yield own


@pytest.fixture(scope="module")
def clip(samples) -> list[np.ndarray]:
    """Seven different frames: the photo panned, so a frame out of order shows."""
    photo = np.asarray(Image.open(samples / "astronaut.jpg").convert("RGB").resize((160, 96)))
    return [np.ascontiguousarray(photo[16:16 + H, 8 * i:8 * i + W]) for i in range(7)]


def raw(frames: list[np.ndarray]) -> bytes:
    return b"".join(frame.tobytes() for frame in frames)


def expected(session, frame: np.ndarray, **options) -> Image.Image:
    chosen = RemovalOptions.build(mode="fast", **options)
    return session.remove_image(Image.fromarray(frame), chosen)


def split_pngs(stream: bytes) -> list[Image.Image]:
    """The images of a PNG stream: each ends with its IEND chunk."""
    end = b"IEND\xaeB`\x82"
    parts = stream.split(end)
    assert parts[-1] == b""
    return [Image.open(io.BytesIO(part + end)) for part in parts[:-1]]


def test_raw_frames_come_out_in_order_with_several_workers(session, clip):
    result = run_cli("frames", str(W), str(H), "--raw", "--mode", "fast", "--workers", "3",
                     input=raw(clip))
    assert result.returncode == 0, result.stderr.decode()
    assert b"7 frames of 96x64" in result.stderr
    size = W * H * 4
    assert len(result.stdout) == size * len(clip)
    for number, frame in enumerate(clip):
        got = result.stdout[number * size:(number + 1) * size]
        assert got == expected(session, frame).tobytes(), f"frame {number + 1}"


def test_png_stream_and_mask(session, clip):
    result = run_cli("frames", str(W), str(H), "--mode", "fast", "--only-mask", "--workers", "2",
                     input=raw(clip[:4]))
    assert result.returncode == 0, result.stderr.decode()
    images = split_pngs(result.stdout)
    assert [image.mode for image in images] == ["L"] * 4
    for image, frame in zip(images, clip[:4], strict=True):
        assert np.array_equal(np.asarray(image),
                              np.asarray(expected(session, frame, only_mask=True)))
    gray = run_cli("frames", str(W), str(H), "--mode", "fast", "-om", "--raw",
                   input=raw(clip[:2]))
    assert len(gray.stdout) == 2 * W * H


def test_numbered_files(session, clip, tmp_path):
    pattern = str(tmp_path / "out" / "%03d.png")
    result = run_cli("frames", str(W), str(H), "--mode", "fast", "-o", pattern, "-q",
                     input=raw(clip[:3]))
    assert result.returncode == 0 and result.stderr == b""
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["001.png", "002.png",
                                                                     "003.png"]
    second = np.asarray(Image.open(tmp_path / "out" / "002.png"))
    # The PNG writer clears the colour of fully transparent pixels (imaging/compose.py).
    made = clear_invisible(np.array(expected(session, clip[1])))
    assert np.array_equal(second, made)


def test_a_truncated_last_frame_is_an_error_after_the_frames_before_it(clip):
    cut = raw(clip[:3]) + clip[3].tobytes()[:1000]
    result = run_cli("frames", str(W), str(H), "--raw", "--mode", "fast", "--workers", "2",
                     input=cut)
    assert result.returncode == 1
    assert len(result.stdout) == 3 * W * H * 4  # every whole frame written
    message = result.stderr.decode()
    assert "frame 4" in message and "1000 of its 18432 bytes" in message
    assert "Traceback" not in message


def test_a_closed_stdout_ends_quietly(clip):
    # `bgremove frames ... | head -c 100`: the reader goes away after the first bytes.
    process = subprocess.Popen(
        [sys.executable, "-m", "bgremove", "frames", str(W), str(H), "--raw", "--mode", "fast"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cli_env())
    def feed() -> None:  # on its own thread: the pipes would fill and block both ends
        try:
            process.stdin.write(raw(clip * 3))
            process.stdin.close()
        except BrokenPipeError:
            pass

    threading.Thread(target=feed, daemon=True).start()
    assert len(process.stdout.read(100)) == 100
    process.stdout.close()
    process.wait(timeout=120)
    stderr = process.stderr.read().decode()
    assert process.returncode != 0 and stderr == ""


@pytest.mark.parametrize("args, words", [
    (["0", "64"], "at least 1"),
    (["20000", "20000"], "over the size limit"),
    (["96", "64", "-o", "out.png"], "number pattern"),
    (["96", "64", "-o", "out/%d.gif"], ".png, .webp or .jpg"),
    (["96", "64", "-o", "out/%d.png", "--raw"], "give one of them"),
    (["96", "64", "-om", "--background-color", "red"], "drop --background-color"),
])
def test_usage_errors(args, words, tmp_path):
    result = run_cli("frames", *args, input=b"", cwd=tmp_path)
    assert result.returncode == 2
    assert words in result.stderr.decode()
    assert not list(tmp_path.iterdir())
