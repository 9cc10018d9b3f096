"""From a model's coarse saliency map to a full-resolution alpha matte.

The modes are pipelines over the same model:

- fast:     the model's 320-px map, scaled to the image's size.
- balanced: the same map with its edge made steeper, more on the subject's side: scaled up
            from 320 px, the map's edge is wider than the object's.
- quality:  three looks at the photo fused (imaging/multiscale.py): the 320-px square, its
            mirror image and a view at the photo's own proportions; then alpha in the uncertain
            band is estimated from the photo's colours (imaging/matting.py), and the compositor
            cleans the foreground colours in the soft edge.

Every constant was chosen by 5-fold cross-validation over sod-dev (scripts/tune_quality.py),
among constants no worse than fast on soft mattes; the held-out numbers are in BENCHMARKS.md.
What did not help on held-out folds left the modes: the colour-guided filter that snapped the
edge to the photo's edges (balanced and quality) and quality's fine-radius second pass gained
nothing on sod-dev's held-out folds, and on held-out soft mattes (hair, glass, net) they made
SAD worse than fast's.
"""

from __future__ import annotations

import functools
from typing import Protocol

import numpy as np
from PIL import Image

from bgremove.imaging import matting, multiscale
from bgremove.imaging.filters import box, resize, sample
from bgremove.options import Mode

# Balanced's steepening of the edge, above and below 0.5. The model's map, scaled up, is too
# soft on the subject's side (salient-object masks want those pixels opaque: sod-dev's MAE
# drops) but about right on the background's side of soft edges: steepening that side too
# sharpens GT01's petals but hardens hair and fur, where the held-out soft mattes showed the
# old balanced (steepened by 2 on both sides) losing to fast. Chosen by cross-validation among
# the settings no worse than fast in any soft matte's unknown region; BENCHMARKS.md
# ("quality-cv").
STEEPNESS_ABOVE = 1.5
STEEPNESS_BELOW = 1.1


class Segmenter(Protocol):
    """A saliency model: RGB pixels in, a foreground probability map in [0, 1] out (any size)."""

    def predict(self, rgb: np.ndarray) -> np.ndarray: ...


def steepen(alpha: np.ndarray, factor: float) -> np.ndarray:
    """Stretch alpha about 0.5: the same edge, 1/factor as wide; the 0.5 contour stays put."""
    out = (alpha - 0.5) * factor + 0.5
    return np.clip(out, 0.0, 1.0, out=out)


def steepen_split(alpha: np.ndarray, above: float, below: float) -> np.ndarray:
    """Stretch alpha away from 0.5 by `above` on the upper side and `below` on the lower."""
    out = alpha - 0.5
    out *= np.where(out > 0, np.float32(above), np.float32(below))
    out += 0.5
    return np.clip(out, 0.0, 1.0, out=out)


def matte(segmenter: Segmenter, rgb: np.ndarray, mode: Mode) -> np.ndarray:
    """The mode's alpha at the image's size, float32 in [0, 1], before the edges are finished.

    Quality mode needs a model that runs at any size (the bundled one); with another model it
    does what balanced does.
    """
    height, width = rgb.shape[:2]
    if mode is Mode.quality and multiscale.supported(segmenter):
        fused = multiscale.quality_alpha(segmenter, rgb)  # type: ignore[arg-type]
        return matting.refine(rgb, fused)
    alpha = resize(np.asarray(segmenter.predict(rgb), dtype=np.float32), (width, height))
    if mode is Mode.fast:
        return alpha
    return steepen_split(alpha, STEEPNESS_ABOVE, STEEPNESS_BELOW)


def finish_edges(alpha: np.ndarray, smooth: bool) -> np.ndarray:
    """Smooth: keep the anti-aliased soft edge, with near-0/near-1 haze snapped to clean values.
    Not smooth: the raw hard mask, each pixel fully in or fully out."""
    if not smooth:
        return (alpha >= 0.5).astype(np.float32)
    out = np.clip((alpha - 0.02) * (1.0 / 0.96), 0.0, 1.0)
    return out.astype(np.float32, copy=False)


def compute_alpha(segmenter: Segmenter, rgb: np.ndarray, mode: Mode, smooth: bool) -> np.ndarray:
    """The whole matting pipeline for one image: float32 alpha in [0, 1] at the image's size."""
    alpha = cutout_alpha(segmenter, rgb, mode, smooth)
    return alpha if alpha.dtype == np.float32 else alpha * np.float32(1.0 / 255.0)


def cutout_alpha(segmenter: Segmenter, rgb: np.ndarray, mode: Mode, smooth: bool,
                 source: Image.Image | None = None) -> np.ndarray:
    """compute_alpha as the compositor takes it: fast and balanced mode's smooth alpha already
    in 8 bits (uint8, 0..255), any other as float32 in [0, 1].

    Fast and balanced mode scale the model's map up and then change each pixel on its own
    (balanced's steepening, the edges' finish). The cut-out's alpha has 8 bits, so the map is
    scaled up in 8 bits and those per-pixel steps become one 256-entry table: a third of the
    image work of doing both in float at full size (BENCHMARKS.md "stages"). A pixel moves by a
    level or two at most, where the map's 8 bits meet a steep part of the table. `source`: the
    same pixels as an RGB Pillow image, if there is one (decode.Decoded.image), for the model.
    """
    if not smooth or (mode is Mode.quality and multiscale.supported(segmenter)):
        return finish_edges(matte(segmenter, rgb, mode), smooth)
    small = np.asarray(segmenter.predict(rgb if source is None else source),  # type: ignore[arg-type]
                       dtype=np.float32) * 255.0
    small += 0.5
    height, width = rgb.shape[:2]
    alpha = Image.fromarray(np.clip(small, 0.0, 255.0).astype(np.uint8), "L")
    if alpha.size != (width, height):
        alpha = alpha.resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(alpha.point(_table(mode is Mode.fast)))


@functools.cache
def _table(fast: bool) -> list[int]:
    """Each 8-bit level of the scaled-up map, as fast or balanced (the steepening; quality
    without a model that runs at any size does balanced) finish it: 8-bit alpha."""
    levels = np.arange(256, dtype=np.float32) * np.float32(1.0 / 255.0)
    if not fast:
        levels = steepen_split(levels, STEEPNESS_ABOVE, STEEPNESS_BELOW)
    return [int(v) for v in finish_edges(levels, True) * 255.0 + 0.5]


# Foreground clean-up works on at most this many pixels on the long side: its local means are
# smooth by construction, so on larger photos they are estimated on a reduced copy and only the
# final, per-pixel step runs at full resolution (on the soft edge's pixels alone).
FOREGROUND_WORK_SIDE = 1024


def estimate_foreground(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Foreground colours with the background's colour bled out of the soft edge.

    Blur-fusion (Forte & Pitie, "Approximate Fast Foreground Colour Estimation", ICIP 2021): two
    passes of local means of foreground and background, a wide one then a fine one. Only the
    soft edge needs it: where alpha is 1 the result is the photo's own colour, where it is 0 the
    pixel is invisible.
    """
    soft = (alpha > 0.0) & (alpha < 1.0)
    where = np.nonzero(soft)
    if where[0].size == 0:
        return rgb
    height, width = alpha.shape
    scale = min(1.0, FOREGROUND_WORK_SIDE / max(height, width))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if scale < 1.0:
        small_rgb = np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BILINEAR,
                                                           reducing_gap=2.0))
        small_alpha = resize(alpha, size)
    else:
        small_rgb, small_alpha = rgb, alpha
    image = small_rgb.astype(np.float32) * (1.0 / 255.0)
    a = small_alpha[:, :, None]
    fg, bg = image, image
    side = max(size)
    for radius in (max(8, side // 25), max(3, side // 300)):
        # One box filter over all seven channels: alpha, fg * alpha, bg * (1 - alpha).
        stack = np.concatenate([a, fg * a, bg * (1 - a)], axis=2)
        means = box(stack, radius)
        blurred_a = means[:, :, :1]
        blurred_f = means[:, :, 1:4] / (blurred_a + 1e-5)
        blurred_b = means[:, :, 4:7] / ((1 - blurred_a) + 1e-5)
        fg = np.clip(blurred_f + a * (image - a * blurred_f - (1 - a) * blurred_b), 0.0, 1.0)
        bg = blurred_b
    a = alpha[where][:, None]
    if scale < 1.0:
        # The last pass's local means at the soft pixels only, read bilinearly off the small
        # maps: the same values a full-size resize would give there, for a fraction of the work.
        rows = (where[0] + 0.5) * (size[1] / height) - 0.5
        cols = (where[1] + 0.5) * (size[0] / width) - 0.5
        f, b = (sample(np.clip(m, 0.0, 1.0), rows, cols) for m in (blurred_f, blurred_b))
    else:
        f, b = blurred_f[where], blurred_b[where]
    # The last pass's per-pixel step, on the soft edge's pixels only.
    pixel = rgb[where].astype(np.float32) * (1.0 / 255.0)
    edge = np.clip(f + a * (pixel - a * f - (1 - a) * b), 0.0, 1.0)
    out = rgb.copy()
    out[where] = (edge * 255.0 + 0.5).astype(np.uint8)
    return out


def shadow_matte(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Opacity of the subject's cast shadow, as a soft layer in [0, 1] (0 where there is none).

    A shadow is background near the subject that is darker than the surface around it. Two tests
    keep dark objects out: a shadow dims a surface rather than recolouring it (a loose test: the
    saucer's shadow on the coffee table is redder than the lit wood), and it is not near-black
    against a bright surround (the black table behind the astronaut's helmet). Without them the
    astronaut came out with that table and the flag's stripes as a "shadow".
    """
    image = rgb.astype(np.float32)
    lum = image @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    side = max(alpha.shape)
    background = 1.0 - alpha
    radius = max(8, side // 12)
    # The surface around each pixel: brightness and colour of background pixels only (one box
    # filter over the five channels).
    chroma = image / (image.sum(axis=2, keepdims=True) + 1.0)
    stack = np.concatenate([background[:, :, None], (lum * background)[:, :, None],
                            chroma * background[:, :, None]], axis=2)
    means = box(stack, radius)
    weight = means[:, :, 0] + 1e-5
    bg_lum = means[:, :, 1] / weight
    ratio = lum / (bg_lum + 1e-3)
    darkness = np.clip(1.0 - ratio, 0.0, 1.0)
    bg_chroma = means[:, :, 2:5] / weight[:, :, None]
    same_colour = np.clip(1.0 - np.abs(chroma - bg_chroma).sum(axis=2) / 0.45, 0.0, 1.0)
    not_black = np.clip((ratio - 0.03) / 0.07, 0.0, 1.0)
    # Shadows fall next to the subject: weight by how much subject lies within a wide window.
    near = np.clip(box(alpha, max(6, side // 20)) * 4.0, 0.0, 1.0)
    shadow = darkness * same_colour * not_black * near * background
    shadow = np.where(shadow > 0.08, np.minimum(shadow * 1.5, 0.85), 0.0)
    return box(shadow.astype(np.float32), 2)
