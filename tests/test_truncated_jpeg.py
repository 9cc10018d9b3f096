"""A JPEG whose data ends before the pixels its header claims is broken, not a grey-filled image:
libjpeg would decode it (filling the rest) and Pillow would not say so."""

from __future__ import annotations

import io
import struct

import pytest
from PIL import Image

from bgremove.errors import ImageError
from bgremove.imaging.decode import decode
from tests.conftest import run_cli


def with_jpeg_size(jpeg: bytes, width: int, height: int) -> bytes:
    """The same JPEG with its frame header (SOF) claiming another size."""
    i = 2
    while i < len(jpeg):
        marker = jpeg[i + 1]
        (length,) = struct.unpack(">H", jpeg[i + 2:i + 4])
        if marker in (0xC0, 0xC1, 0xC2):
            return jpeg[:i + 5] + struct.pack(">HH", height, width) + jpeg[i + 9:]
        i += 2 + length
    raise ValueError("no SOF marker")


def small_jpeg(samples, **options) -> bytes:
    image = Image.open(samples / "rocket.jpg")
    image.thumbnail((100, 100))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", **options)
    return buffer.getvalue()


@pytest.mark.parametrize("options", [{}, {"progressive": True}], ids=["baseline", "progressive"])
def test_a_7kb_jpeg_claiming_4000x4000_is_refused(samples, options):
    forged = with_jpeg_size(small_jpeg(samples, **options), 4000, 4000)
    assert len(forged) < 7000
    with pytest.raises(ImageError, match="truncated.*4000x4000"):
        decode(forged)


def test_the_smallest_real_jpegs_still_decode():
    # A uniform image is the cheapest a JPEG can be, and still well above the bound.
    for mode in ("RGB", "L"):
        for options in ({}, {"progressive": True, "optimize": True, "quality": 1}):
            buffer = io.BytesIO()
            Image.new(mode, (4000, 4000), 255).save(buffer, "JPEG", **options)
            assert decode(buffer.getvalue()).rgb.shape == (4000, 4000, 3)


def test_the_cli_reports_it_as_broken(samples, tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "forged.jpg").write_bytes(with_jpeg_size(small_jpeg(samples), 4000, 4000))
    (tmp_path / "in" / "fine.jpg").write_bytes(small_jpeg(samples))
    proc = run_cli(str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--mode", "fast")
    assert proc.returncode == 1
    stderr = proc.stderr.decode()
    assert "forged.jpg" in stderr and "truncated" in stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["fine.webp"]
