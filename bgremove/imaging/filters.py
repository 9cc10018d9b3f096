"""Image filters for the matting pipeline, written so that worker threads run them side by side.

The engine runs one image per worker thread in one process. A filter that holds Python's lock
(the GIL) for its whole loop lets only one worker filter at a time. Everything here is numpy
arithmetic on whole rows or whole images (which releases the lock for the arithmetic, with few
calls per image) or a Pillow resize (which releases it too). BENCHMARKS.md ("stages") has each
stage's cost and its speed-up from one thread to two.
"""

from __future__ import annotations

import numpy as np
from PIL import Image


def _running_sum(x: np.ndarray, radius: int) -> np.ndarray:
    """Sum over a (2r+1)-long window along axis 0, edges repeating the border row.

    A running sum, one vectorised addition per row: each call is a whole row (all columns and
    channels at once) and releases the GIL for its arithmetic. Faster than a cumulative sum along
    axis 0, whose inner loop walks down columns across the cache, and than scipy.ndimage.
    """
    n = x.shape[0]
    padded = np.empty((n + 2 * radius + 1,) + x.shape[1:], dtype=np.float32)
    padded[0] = 0.0
    padded[1 : radius + 1] = x[:1]
    padded[radius + 1 : radius + 1 + n] = x
    padded[radius + 1 + n :] = x[-1:]
    rows = list(padded)  # views, made once: the loop below is one ufunc call per row
    add = np.add
    for previous, row in zip(rows[:-1], rows[1:], strict=True):
        add(previous, row, out=row)
    return padded[2 * radius + 1 :] - padded[:n]


def box(x: np.ndarray, radius: int) -> np.ndarray:
    """Mean over a (2r+1)-square window (per channel if x is H x W x C); edges repeat the
    border pixel (scipy.ndimage.uniform_filter's mode "nearest")."""
    radius = max(int(radius), 0)
    x = np.asarray(x, dtype=np.float32)
    if radius == 0:
        return x.copy()
    down = _running_sum(x, radius)
    across = _running_sum(np.ascontiguousarray(np.swapaxes(down, 0, 1)), radius)
    out = np.ascontiguousarray(np.swapaxes(across, 0, 1))
    out *= 1.0 / (2 * radius + 1) ** 2
    return out


def resize(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a float32 H x W map to (width, height), antialiased when shrinking."""
    if (x.shape[1], x.shape[0]) == size:
        return x
    out = Image.fromarray(np.ascontiguousarray(x, dtype=np.float32), mode="F")
    return np.asarray(out.resize(size, Image.Resampling.BILINEAR))


def sample(image: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Bilinear samples of an H x W x C image at fractional (row, col) points: N x C. Points
    outside are clamped to the border, as an image resize treats its edges."""
    height, width = image.shape[:2]
    rows = np.clip(rows, 0.0, height - 1.0)
    cols = np.clip(cols, 0.0, width - 1.0)
    r0, c0 = rows.astype(np.intp), cols.astype(np.intp)
    r1, c1 = np.minimum(r0 + 1, height - 1), np.minimum(c0 + 1, width - 1)
    wr, wc = (rows - r0)[:, None], (cols - c0)[:, None]
    top = image[r0, c0] * (1.0 - wc) + image[r0, c1] * wc
    bottom = image[r1, c0] * (1.0 - wc) + image[r1, c1] * wc
    return (top * (1.0 - wr) + bottom * wr).astype(np.float32, copy=False)
