"""Quality mode's matte: the model looks at the photo three ways and the looks are fused.

- the 320-px square of fast mode (the photo squashed to the square the model was trained on),
- the same square of the mirrored photo (the model is not symmetric: its mistakes differ),
- the photo at its own proportions, long side FINE_SIDE (the bundled graph takes any size:
  scripts/relabel_model.py); unsquashed, thin parts and edges look as they really are.

Fused as a weighted mean, then steepened about a centre below 0.5 (the two extra views are the
more cautious, so the mean sits a little low). Each extra view alone adds object parts that the
320-px square misses (maxF) but also lights up background and blurs the edge (MAE); their mean
with the 320-px map and the steepening keeps the first and undoes the second. One thing the
fusion may not do: fill a hole that the 320-px square saw (background enclosed by the subject:
a mesh, a ring, the gap between an arm and the body). There the fused map stays at or below
the square's; the matting stage (imaging/matting.py) then decides from the photo's colours.

Every constant was chosen by 5-fold cross-validation over sod-dev (scripts/tune_quality.py),
among those no worse than fast on soft mattes (GT01, its composites and hair/fur proxies);
larger views (448 to 640 px) scored higher on some folds but turned a close-up cat's head into
its two eyes. The held-out numbers, fold by fold, are in BENCHMARKS.md ("quality-cv").
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from bgremove.imaging.filters import resize

FINE_SIDE = 384
COARSE_WEIGHT = 0.35  # fast's map; the mirrored and the fine view share the rest equally
STEEPNESS = 2.0
CENTRE = 0.45


class AnySizeSegmenter(Protocol):
    """A model that runs at any input size and on a batch (OnnxSaliency with the bundled model)."""

    any_size: bool
    side: int

    def prepare(self, rgb: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray: ...

    def run(self, batch: np.ndarray) -> np.ndarray: ...


def supported(segmenter: object) -> bool:
    return bool(getattr(segmenter, "any_size", False))


def fine_size(width: int, height: int, side: int = FINE_SIDE) -> tuple[int, int]:
    """The photo's proportions, long side `side`, both sides rounded to a multiple of 32 (the
    model halves the image five times)."""
    scale = side / max(width, height)
    return (max(32, round(width * scale / 32) * 32), max(32, round(height * scale / 32) * 32))


def _along_rows(reached: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """`inside` pixels whose horizontal run of `inside` pixels holds a `reached` pixel."""
    height, width = inside.shape
    padded = np.zeros((height, width + 1), dtype=bool)  # a gap ends every row's last run
    padded[:, :width] = inside
    flat = padded.ravel()
    starts = flat.copy()
    starts[1:] &= ~flat[:-1]
    run = np.cumsum(starts)  # each pixel's run number (outside pixels: the run before them)
    hit = np.zeros(int(run[-1]) + 1, dtype=bool)
    hit[run[flat & np.pad(reached, ((0, 0), (0, 1))).ravel()]] = True
    return (flat & hit[run]).reshape(height, width + 1)[:, :width]


def enclosed(background: np.ndarray) -> np.ndarray:
    """Background pixels not connected to the image's border through background (4-neighbour):
    the subject's holes. Spread from the border along rows, then columns, until nothing changes:
    one round per turn of the longest path, a handful on real maps."""
    reached = np.zeros_like(background)
    reached[[0, -1], :] = background[[0, -1], :]
    reached[:, [0, -1]] = background[:, [0, -1]]
    while True:
        grown = _along_rows(_along_rows(reached, background).T, background.T).T
        if np.array_equal(grown, reached):
            return background & ~reached
        reached = grown


def _minmax(x: np.ndarray) -> np.ndarray:
    lo, hi = float(x.min()), float(x.max())
    return (x - lo) / max(hi - lo, 1e-6)


def quality_alpha(segmenter: AnySizeSegmenter, rgb: np.ndarray) -> np.ndarray:
    """The fused alpha at the image's size, float32 in [0, 1] (before finish_edges)."""
    height, width = rgb.shape[:2]
    mirrored = np.ascontiguousarray(rgb[:, ::-1])
    # One run per view: on the CPU two runs of one are a little faster than one of two, and on a
    # GPU the session's batcher gathers the views of every image in flight anyway.
    squares = [segmenter.run(segmenter.prepare(view))[0] for view in (rgb, mirrored)]
    fine = segmenter.run(segmenter.prepare(rgb, fine_size(width, height)))[0]
    coarse = _minmax(squares[0])  # exactly fast mode's map
    extra = (1.0 - COARSE_WEIGHT) / 2
    # Bilinear resizing is linear: the two squares are mixed at 320 px and resized once.
    square_mix = COARSE_WEIGHT * coarse + extra * squares[1][:, ::-1]
    fused = resize(np.asarray(square_mix, dtype=np.float32), (width, height)).copy()
    fused += extra * resize(np.asarray(fine, dtype=np.float32), (width, height))
    fused -= CENTRE
    fused *= STEEPNESS
    fused += 0.5
    np.clip(fused, 0.0, 1.0, out=fused)
    holes = enclosed(coarse < 0.5)
    if holes.any():
        inside = resize(holes.astype(np.float32), (width, height)) > 0.5
        seen = resize(np.asarray(coarse, dtype=np.float32), (width, height))
        fused[inside] = np.minimum(fused[inside], seen[inside])
    return fused
