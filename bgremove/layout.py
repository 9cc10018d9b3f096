"""The product-photo options, as values: `--margin`, `--canvas`, `--position`, `--background-image`.

Parsed here, from the text or values a user gives, into small frozen values that a stamp can
record and a Dask worker can unpickle; applied to pixels by imaging/shape.py. This module is
imported by `bgremove --help` (through options.py): nothing heavy is imported at its top.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass, field

from bgremove.errors import Option, OptionError

POSITIONS = ("center", "top", "bottom", "left", "right",
             "top-left", "top-right", "bottom-left", "bottom-right")
# A canvas is an image the engine makes: it is held to the limit of the images it takes
# (imaging/decode.py MAX_PIXELS, which a test keeps equal to this).
MAX_CANVAS_PIXELS = 50_000_000
MARGIN_FORMS = "pixels (40) or a percentage of the subject's size (6%)"
CANVAS_FORMS = "WIDTHxHEIGHT in pixels (1200x1200) or an aspect ratio W:H (1:1, 4:5)"


@dataclass(frozen=True)
class Margin:
    """Space between the subject and the output's edges: `value` pixels of the output, or, with
    `percent`, that percentage of the subject's longer side (so it scales with the subject)."""

    value: float
    percent: bool = False

    def __str__(self) -> str:
        return f"{self.value:g}%" if self.percent else f"{self.value:g}"


@dataclass(frozen=True)
class Canvas:
    """The output's size (`width` x `height` pixels), or with `aspect_only` only its shape: the
    smallest canvas of that ratio that holds the subject and its margin."""

    width: float
    height: float
    aspect_only: bool = False

    def __str__(self) -> str:
        if self.aspect_only:
            return f"{self.width:g}:{self.height:g}"
        return f"{int(self.width)}x{int(self.height)}"

    @property
    def ratio(self) -> float:
        return self.width / self.height


@dataclass(frozen=True)
class Backdrop:
    """A background image, read once when the options are made: its bytes travel with the
    options (to threads and Dask workers alike), and its content hash is what a stamp records,
    so a changed picture redoes the outputs and a moved one does not."""

    path: str
    sha256: str
    data: bytes = field(repr=False, compare=False)

    def __str__(self) -> str:
        return self.path


def parse_margin(value: object) -> Margin:
    """`40`, `40px`, `6%`, or a number of pixels."""
    if isinstance(value, Margin):
        return value
    text = str(value).strip().lower() if isinstance(value, (str, int, float)) else ""
    percent = text.endswith("%")
    number = text.rstrip("%").removesuffix("px").strip()
    try:
        amount = float(number) if not isinstance(value, bool) else -1.0
    except ValueError:
        amount = -1.0
    if not math.isfinite(amount) or amount < 0 or (percent and amount > 100) or (
            not percent and amount != int(amount)):
        raise OptionError(Option("margin"), f" {value!r}: give {MARGIN_FORMS}, not negative; "
                          "a percentage at most 100%")
    return Margin(amount, percent)


def parse_canvas(value: object) -> Canvas:
    """`1200x1200` (pixels), `1:1` (a shape), or a (width, height) pair of pixels."""
    if isinstance(value, Canvas):
        return value
    if isinstance(value, (tuple, list)) and len(value) == 2:
        value = f"{value[0]}x{value[1]}"
    text = str(value).strip().lower() if isinstance(value, str) else ""
    aspect = ":" in text
    parts = text.split(":" if aspect else "x")
    try:
        width, height = (float(p) if aspect else int(p) for p in parts)
    except ValueError:
        width = height = 0
    if not (len(parts) == 2 and math.isfinite(width) and math.isfinite(height)
            and width > 0 and height > 0):
        raise OptionError(Option("canvas"), f" {value!r}: give {CANVAS_FORMS}, both above 0")
    if aspect and not 0.01 <= width / height <= 100:
        raise OptionError(Option("canvas"), f" {value!r}: an aspect ratio between 1:100 and "
                          "100:1")
    if not aspect and width * height > MAX_CANVAS_PIXELS:
        raise OptionError(Option("canvas"), f" {value!r}: {width * height / 1e6:.0f} MP is over "
                          f"the {MAX_CANVAS_PIXELS / 1e6:.0f} MP limit of the images bgremove "
                          "makes")
    return Canvas(width, height, aspect)


def parse_position(value: object) -> str:
    text = str(value).strip().lower().replace("_", "-") if isinstance(value, str) else ""
    text = {"centre": "center", "middle": "center"}.get(text, text)
    if text not in POSITIONS:
        raise OptionError(Option("position"), f" {value!r}: choose {', '.join(POSITIONS)}")
    return text


def load_backdrop(value: object) -> Backdrop:
    """Read a background image from a path, refusing (before any work) one that cannot be
    decoded."""
    if isinstance(value, Backdrop):
        return value
    if not isinstance(value, (str, os.PathLike)):
        raise OptionError(Option("background_image"), f" {value!r}: give the path of an image "
                          "file")
    path = os.fspath(value)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise OptionError(Option("background_image"), f" {path}: cannot be read: "
                          f"{exc.strerror or exc}") from None
    from bgremove.errors import FileFailed
    from bgremove.imaging.decode import decode

    try:
        decode(data)
    except FileFailed as exc:
        raise OptionError(Option("background_image"), f" {path}: {exc}") from None
    return Backdrop(path, hashlib.sha256(data).hexdigest(), data)


def margin_room(margin: Margin | None, canvas: Canvas | None) -> None:
    """A margin in pixels must leave room for the subject on a canvas of fixed size."""
    if margin is None or margin.percent or canvas is None or canvas.aspect_only:
        return
    if 2 * margin.value >= min(canvas.width, canvas.height):
        raise OptionError(Option("margin"), f" {margin} leaves no room on a {canvas} ",
                          Option("canvas"), ": give less than half the canvas's shorter side, "
                          f"or {MARGIN_FORMS}")
