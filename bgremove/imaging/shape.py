"""Finished product images: the subject's box, a crop, a margin, a canvas, its placement, and a
background image. Pure functions on the transparent cut-out (H x W x 4 uint8, the alpha the
output would carry); the mask (`only_mask`) is that alpha, so it follows the same geometry.

The subject's box comes from the matte, robustly:
- a pixel counts from alpha 8/255 up: fainter ones are invisible on any background, and the
  matte's soft haze stays out;
- the box is that of the connected regions that carry the subject's mass: regions are found on a
  grid of at most 256 cells a side (a cell is on when any of its pixels is); a region with less
  than 2% of the largest region's mass (the sum of its alpha) is a speck and is left out unless
  it lies within 5% of the subject's size of the box (a detached small part of the product);
- a shadow kept by `preserve_shadows` is part of the output's alpha, so it belongs to the
  subject: the box is taken from the alpha the output carries, and cutting through a visible
  shadow would leave a hard edge in it. It touches the subject, so it is one region with it.

A side of the box that the photo's frame cuts (the subject runs out of the picture there, opaque
along that edge) gets no margin and stays against that side of the canvas, as Photoroom's
"snap on cropped sides" does: a person cut at the waist stands on the canvas's bottom edge.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

from bgremove.errors import FileFailed
from bgremove.layout import Backdrop, Canvas, Margin

VISIBLE = 8  # alpha (of 255) from which a pixel counts towards the box
OPAQUE = 128  # alpha from which a pixel on the frame's edge means the frame cuts the subject
GRID = 256  # cells on the longer side for finding the regions
SPECK_SHARE = 0.02  # a region under this share of the largest region's mass is a speck ...
NEAR = 0.05  # ... unless it is this close to the subject's box (a share of its longer side)
CUT_SHARE = 0.01  # opaque pixels along an edge, as a share of the box's extent, to call it cut
SIDES = ("left", "top", "right", "bottom")

NO_SUBJECT = "no subject found (the matte is empty): nothing to crop or place on a canvas"


@dataclass(frozen=True)
class Box:
    """The subject's box in the photo: columns x0..x1-1, rows y0..y1-1; `cut`: the sides on which
    the photo's frame cuts the subject."""

    x0: int
    y0: int
    x1: int
    y1: int
    cut: frozenset[str] = frozenset()

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0


@dataclass(frozen=True)
class Placement:
    """Where the box goes: an output of `size` (width, height), the subject scaled to `scaled`
    (width, height) with its top-left corner at `at` (x, y)."""

    size: tuple[int, int]
    scaled: tuple[int, int]
    at: tuple[int, int]


def _label(on: np.ndarray) -> np.ndarray:
    """Connected regions (8-neighbours) of a boolean grid: each on cell gets its region's number,
    off cells 0. Runs of on cells along each row are numbered at once (numpy), then runs that
    touch across rows are joined with a union-find over the distinct touching pairs: a few
    thousand at most on a 256-cell grid, where per-cell propagation took tens of passes."""
    height, width = on.shape
    starts = on.copy()
    starts[:, 1:] &= ~on[:, :-1]
    runs = np.cumsum(starts.ravel()).reshape(height, width)
    runs[~on] = 0
    count = int(runs.max())
    touching = []
    for upper, lower in ((runs[:-1], runs[1:]), (runs[:-1, :-1], runs[1:, 1:]),
                         (runs[:-1, 1:], runs[1:, :-1])):
        both = (upper > 0) & (lower > 0)
        touching.append(upper[both] * (count + 1) + lower[both])
    parent = list(range(count + 1))

    def root(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for pair in np.unique(np.concatenate(touching)).tolist():
        a, b = root(pair // (count + 1)), root(pair % (count + 1))
        if a != b:
            parent[max(a, b)] = min(a, b)
    return np.array([root(x) for x in range(count + 1)])[runs]


def subject_box(alpha: np.ndarray) -> Box | None:
    """The subject's box from an 8-bit matte (see the module's notes), or None when it is
    empty. One pass over the matte makes the grid; the exact box is then found in the four
    bands of pixels along the kept cells' rectangle, not over the whole photo."""
    height, width = alpha.shape
    cell = max(1, math.ceil(max(height, width) / GRID))
    gh, gw = -(-height // cell), -(-width // cell)
    whole = np.pad(alpha, ((0, gh * cell - height), (0, gw * cell - width)))
    # Two single-axis reductions: numpy is several times slower over two axes at once.
    peak = whole.reshape(gh, cell, gw * cell).max(axis=1).reshape(gh, gw, cell).max(axis=2)
    on = peak >= VISIBLE
    if not on.any():
        return None
    # Mass, to tell specks from the subject: each cell's mean alpha (Pillow's box reduction).
    mass = np.asarray(Image.fromarray(whole, "L").reduce(cell), dtype=np.float64)
    labels = _label(on)
    names, which = np.unique(labels[on], return_inverse=True)
    masses = np.bincount(which, weights=mass[on])
    big = masses >= SPECK_SHARE * masses.max()
    kept = np.zeros(on.shape, bool)
    kept[on] = big[which]
    if not big.all():
        rows, cols = np.nonzero(kept)
        y0, y1, x0, x1 = rows.min(), rows.max(), cols.min(), cols.max()
        reach = NEAR * max(y1 - y0 + 1, x1 - x0 + 1)
        ys, xs = np.nonzero(on)
        gap = np.maximum(np.maximum(y0 - ys, ys - y1), np.maximum(x0 - xs, xs - x1)).clip(0)
        nearest = np.full(len(names), np.inf)
        np.minimum.at(nearest, which, gap)
        kept[on] = big[which] | (nearest[which] <= reach)
    rows, cols = np.nonzero(kept)
    gy0, gy1, gx0, gx1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    top, bottom = gy0 * cell, min(gy1 * cell, height)
    left, right = gx0 * cell, min(gx1 * cell, width)

    def seen(y_a: int, y_b: int, x_a: int, x_b: int, cells: np.ndarray, axis: int) -> np.ndarray:
        """Which rows (axis 1) or columns (axis 0) of a band hold a visible pixel of a kept
        cell (a speck dropped beside the subject, in the same band, stays out)."""
        mine = np.repeat(cells, cell)[:(x_b - x_a) if axis == 1 else (y_b - y_a)]
        band = alpha[y_a:y_b, x_a:x_b] >= VISIBLE
        band &= mine[None, :] if axis == 1 else mine[:, None]
        return np.asarray(band.any(axis=axis))

    first_rows = seen(top, min(top + cell, height), left, right, kept[gy0, gx0:gx1], 1)
    last_top = (gy1 - 1) * cell
    last_rows = seen(last_top, bottom, left, right, kept[gy1 - 1, gx0:gx1], 1)
    first_cols = seen(top, bottom, left, min(left + cell, width), kept[gy0:gy1, gx0], 0)
    last_left = (gx1 - 1) * cell
    last_cols = seen(top, bottom, last_left, right, kept[gy0:gy1, gx1 - 1], 0)
    box = Box(int(left + np.argmax(first_cols)), int(top + np.argmax(first_rows)),
              int(last_left + len(last_cols) - np.argmax(last_cols[::-1])),
              int(last_top + len(last_rows) - np.argmax(last_rows[::-1])))
    return Box(box.x0, box.y0, box.x1, box.y1, _cut_sides(alpha, box))


def _cut_sides(alpha: np.ndarray, box: Box) -> frozenset[str]:
    height, width = alpha.shape
    edges = {
        "left": (box.x0 == 0, alpha[box.y0:box.y1, 0], box.height),
        "right": (box.x1 == width, alpha[box.y0:box.y1, width - 1], box.height),
        "top": (box.y0 == 0, alpha[0, box.x0:box.x1], box.width),
        "bottom": (box.y1 == height, alpha[height - 1, box.x0:box.x1], box.width),
    }
    return frozenset(side for side, (touches, line, extent) in edges.items()
                     if touches and np.count_nonzero(line >= OPAQUE) >= max(2, CUT_SHARE * extent))


def _margins(box: Box, margin: Margin | None, scale: float = 1.0) -> dict[str, float]:
    """The margin on each side in output pixels at `scale` (none on a side the frame cuts)."""
    if margin is None:
        amount = 0.0
    elif margin.percent:
        amount = margin.value / 100.0 * max(box.width, box.height) * scale
    else:
        amount = margin.value
    return {side: 0.0 if side in box.cut else amount for side in SIDES}


def place(box: Box, *, crop: bool, margin: Margin | None, canvas: Canvas | None,
          position: str = "center", enlarge: bool = True) -> Placement:
    """Where the subject's box goes in the output (pure geometry, no pixels)."""
    if canvas is None:  # --crop: the box and its margin
        m = _margins(box, margin)
        left, top = round(m["left"]), round(m["top"])
        size = (left + box.width + round(m["right"]), top + box.height + round(m["bottom"]))
        return Placement(size, (box.width, box.height), (left, top))
    if canvas.aspect_only:  # the smallest canvas of that shape around the box and its margin
        m = _margins(box, margin)
        need_w = box.width + m["left"] + m["right"]
        need_h = box.height + m["top"] + m["bottom"]
        if need_w / need_h < canvas.ratio:
            size = (math.ceil(need_h * canvas.ratio - 1e-9), math.ceil(need_h - 1e-9))
        else:
            size = (math.ceil(need_w - 1e-9), math.ceil(need_w / canvas.ratio - 1e-9))
        scale = 1.0
    else:
        size = (int(canvas.width), int(canvas.height))
        unit = _margins(box, margin, 1.0)
        if margin is not None and margin.percent:  # the margin scales with the subject
            scale = min(size[0] / (box.width + unit["left"] + unit["right"]),
                        size[1] / (box.height + unit["top"] + unit["bottom"]))
        else:
            scale = min((size[0] - unit["left"] - unit["right"]) / box.width,
                        (size[1] - unit["top"] - unit["bottom"]) / box.height)
        if not enlarge:
            scale = min(scale, 1.0)
        m = _margins(box, margin, scale)
    room_w = max(1, size[0] - round(m["left"]) - round(m["right"]))
    room_h = max(1, size[1] - round(m["top"]) - round(m["bottom"]))
    scaled = (min(room_w, max(1, round(box.width * scale))),
              min(room_h, max(1, round(box.height * scale))))
    x = _along(position, ("left", "right"), box.cut, size[0], scaled[0], m["left"], m["right"])
    y = _along(position, ("top", "bottom"), box.cut, size[1], scaled[1], m["top"], m["bottom"])
    return Placement(size, scaled, (x, y))


def _along(position: str, ends: tuple[str, str], cut: frozenset[str], length: int, extent: int,
           before: float, after: float) -> int:
    """The subject's offset on one axis: against a cut side (both cut: centred), else where the
    position says, within the margins."""
    start, end = ends
    words = position.split("-")
    if (start in cut) != (end in cut):
        return 0 if start in cut else length - extent
    if start in words and start not in cut:
        return round(before)
    if end in words and end not in cut:
        return length - round(after) - extent
    lo, hi = round(before), length - round(after) - extent
    return (lo + hi) // 2


def placed(rgb: np.ndarray, alpha: np.ndarray, *, crop: bool, margin: Margin | None,
           canvas: Canvas | None, position: str = "center",
           enlarge: bool = True) -> tuple[Image.Image, Placement]:
    """The subject (an RGBA image of its box, scaled) and where it goes, from the cut-out's
    colour (H x W x 3) and 8-bit alpha. Only the box is ever interleaved and resampled: a
    catalogue run does less work than a plain one. FileFailed "no subject found" when the
    matte is empty."""
    box = subject_box(alpha)
    if box is None:
        raise FileFailed(NO_SUBJECT)
    where = place(box, crop=crop, margin=margin, canvas=canvas, position=position,
                  enlarge=enlarge)
    inside = (slice(box.y0, box.y1), slice(box.x0, box.x1))
    subject = Image.fromarray(np.ascontiguousarray(rgb[inside]), "RGB")
    subject.putalpha(Image.fromarray(np.ascontiguousarray(alpha[inside]), "L"))
    if where.scaled != (box.width, box.height):
        # Pillow resamples RGBA premultiplied (RGBa), so transparent pixels' colours cannot
        # bleed into the edge. Lanczos; shrinking by 2x or more, a box reduction first
        # (reducing_gap 1): on a 2400-px photo to a 1000-px canvas that halves the resize's
        # CPU, for a mean difference of 0.4 levels from the full Lanczos filter (BENCHMARKS.md).
        subject = subject.resize(where.scaled, Image.Resampling.LANCZOS, reducing_gap=1.0)
    return subject, where


def shape(rgba: np.ndarray, *, crop: bool, margin: Margin | None, canvas: Canvas | None,
          position: str = "center", enlarge: bool = True) -> np.ndarray:
    """The transparent cut-out (H x W x 4) cropped and placed as the options say: a new
    transparent H' x W' x 4 array."""
    subject, where = placed(rgba[:, :, :3], rgba[:, :, 3], crop=crop, margin=margin,
                            canvas=canvas, position=position, enlarge=enlarge)
    out = Image.new("RGBA", where.size, (0, 0, 0, 0))
    out.paste(subject, where.at)
    return np.asarray(out)


@functools.lru_cache(maxsize=4)
def _backdrop_image(backdrop: Backdrop) -> Image.Image:
    from bgremove.imaging.decode import decode

    decoded = decode(backdrop.data)
    image = Image.fromarray(decoded.rgb, "RGB")
    if decoded.alpha is not None:
        image.putalpha(Image.fromarray(decoded.alpha, "L"))
    return image


@functools.lru_cache(maxsize=8)
def _covered(backdrop: Backdrop, size: tuple[int, int],
             colour: tuple[int, int, int]) -> Image.Image:
    image = ImageOps.fit(_backdrop_image(backdrop), size, Image.Resampling.LANCZOS)
    if image.mode == "RGBA":
        under = Image.new("RGB", size, colour)
        under.paste(image, mask=image.getchannel("A"))
        image = under
    return image


def cover(backdrop: Backdrop, size: tuple[int, int], colour: tuple[int, int, int]) -> Image.Image:
    """The background image scaled to cover `size` (width, height) and centred, over `colour`
    where it is transparent: an RGB image of its own, to paste on. The scaled picture is kept for
    the next output of the same size: a catalogue on one canvas scales it once."""
    return _covered(backdrop, size, colour).copy()
