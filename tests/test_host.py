"""A library leaves its host alone: making a session sets no warnings filter (filters are
process-wide, and `catch_warnings` is not thread-safe while sessions are built on worker threads),
and decoding a HEIC photo does not register pillow-heif with the host program's Pillow."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
from PIL import Image, UnidentifiedImageError

from bgremove.backends.local import LocalSession


def test_making_a_session_touches_no_warnings_filter(monkeypatch):
    touched: list[str] = []

    def refuse(name: str):
        def call(*args, **kwargs):
            touched.append(name)
            raise AssertionError(f"warnings.{name} changes every thread's warnings")
        return call

    for name in ("catch_warnings", "simplefilter", "filterwarnings", "resetwarnings"):
        monkeypatch.setattr(warnings, name, refuse(name))
    session = LocalSession(threads=1)
    session.close()
    assert touched == []


def test_a_heic_photo_is_decoded_without_registering_its_opener():
    pillow_heif = pytest.importorskip("pillow_heif")
    from bgremove.imaging.decode import decode

    pixels = np.random.default_rng(3).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    pillow_heif.from_pillow(Image.fromarray(pixels)).save(buffer, quality=90)
    heic = buffer.getvalue()

    Image.init()  # every plugin of Pillow's own, loaded as the decoder loads them
    opened_before = dict(Image.OPEN)
    decoded = decode(heic)
    assert decoded.rgb.shape[:2] == (48, 64)
    assert dict(Image.OPEN) == opened_before and "HEIF" not in Image.OPEN
    assert "HEIF" not in Image.SAVE
    with pytest.raises(UnidentifiedImageError):  # the host's Pillow opens what it opened before
        Image.open(io.BytesIO(heic))
