"""From a model's coarse saliency map to a full-resolution alpha matte.

The modes are pipelines over the same model, each a superset of the one before:

- fast:     the model's map, scaled to the image's size.
- balanced: + edge-aware refinement at full resolution (a guided filter that snaps the soft,
            320-px edge of the model's map to the edges in the photo) and a steeper edge.
- quality:  + test-time augmentation (the mirrored image is segmented too and the two maps
            blended) and a second, fine-radius guided pass that recovers hair-scale detail;
            the compositor then also cleans the foreground colours in the soft edge.

Every constant below was chosen by measurement with benchmarks/quality.py (sod-dev: photos with
human masks; GT01: a soft alpha matte); the numbers are in BENCHMARKS.md.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
from PIL import Image

from bgremove.options import Mode

# Quality mode's test-time augmentation: the mirrored view's say, at most, where the model is
# unsure of the original. A plain average would let the mirrored view half-erase parts the
# original is sure of (and the model's map of a mirrored photo is measurably worse: sod-dev maxF
# 0.815 against 0.837), leaving a see-through subject, as it did to the astronaut's helmet; gated
# by the original's doubt, it only moves soft and doubtful regions, and maxF and MAE both gain.
MIRROR_WEIGHT = 0.5
# How much of the guided filter's output is kept, the rest being the model's own map. The filter
# follows the photo's edges, the model the object's outline: at full strength the filter wins
# on the soft matte (GT01) but costs sod-dev a little maxF, where salient-object outlines drawn by
# people are not always photo edges; half and half keeps maxF and most of the GT01 gain.
REFINE_MIX = 0.5
# The model's 320-px map, scaled up, has an edge several pixels wide, wider than real edges:
# stretching the alpha about 0.5 by this factor halves that width (MAE and SAD both drop).
EDGE_CONTRAST = 2.0


class Segmenter(Protocol):
    """A saliency model: RGB pixels in, a foreground probability map in [0, 1] out (any size)."""

    def predict(self, rgb: np.ndarray) -> np.ndarray: ...


def box(x: np.ndarray, radius: int) -> np.ndarray:
    """Mean over a (2r+1)-square window, per channel; edges repeat the border pixel."""
    # Imported here: scipy.ndimage takes ~0.5 s to import, and fast mode never filters.
    from scipy.ndimage import uniform_filter

    size = 2 * max(int(radius), 0) + 1
    if x.ndim == 3:
        return uniform_filter(x, size=(size, size, 1), mode="nearest")
    return uniform_filter(x, size=size, mode="nearest")


def resize(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a float32 H x W map to (width, height), antialiased when shrinking."""
    if (x.shape[1], x.shape[0]) == size:
        return x
    out = Image.fromarray(np.ascontiguousarray(x, dtype=np.float32), mode="F")
    return np.asarray(out.resize(size, Image.Resampling.BILINEAR))


def _guide(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    image = Image.fromarray(rgb)
    if image.size != size:
        image = image.resize(size, Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.float32) * (1.0 / 255.0)


def guided_filter(
    rgb: np.ndarray, p: np.ndarray, radius: int, eps: float, work_side: int
) -> np.ndarray:
    """Colour-guided filter (He et al., 2013), computed at `work_side` and applied at full size.

    The linear coefficients are estimated on a downscaled copy (the "fast guided filter"), then
    upsampled and applied to the full-resolution guide: the output follows the full-resolution
    edges while the cost stays that of a small image.
    """
    height, width = p.shape
    scale = min(1.0, work_side / max(height, width))
    small = (max(1, round(width * scale)), max(1, round(height * scale)))
    r = max(1, round(radius * scale))

    guide = _guide(rgb, small)
    ps = resize(p, small)
    mean_i = box(guide, r)
    mean_p = box(ps, r)
    cov_ip = box(guide * ps[:, :, None], r) - mean_i * mean_p[:, :, None]
    # 3x3 covariance of the guide per pixel, regularised by eps, inverted in closed form.
    var = np.empty(guide.shape[:2] + (3, 3), dtype=np.float32)
    for i in range(3):
        for j in range(i, 3):
            v = box(guide[:, :, i] * guide[:, :, j], r) - mean_i[:, :, i] * mean_i[:, :, j]
            var[:, :, i, j] = var[:, :, j, i] = v
    var += np.eye(3, dtype=np.float32) * eps
    a = np.linalg.solve(var, cov_ip[:, :, :, None])[:, :, :, 0]
    b = mean_p - np.einsum("hwc,hwc->hw", a, mean_i)
    mean_a = box(a, r)
    mean_b = box(b, r)

    full = _guide(rgb, (width, height))
    mean_a_full = np.stack([resize(mean_a[:, :, c], (width, height)) for c in range(3)], axis=2)
    mean_b_full = resize(mean_b, (width, height))
    q = np.einsum("hwc,hwc->hw", mean_a_full, full) + mean_b_full
    return np.clip(q, 0.0, 1.0, out=q)


def _edge_band(alpha: np.ndarray, lo: float = 0.02, hi: float = 0.98) -> np.ndarray:
    return (alpha > lo) & (alpha < hi)


def coarse_map(segmenter: Segmenter, rgb: np.ndarray, mode: Mode) -> np.ndarray:
    """The model's map; in quality mode, blended with the map of the mirrored image where the
    model is unsure (the mirrored map's weight: MIRROR_WEIGHT at 0.5, none at 0 or 1)."""
    saliency = segmenter.predict(rgb)
    if mode is Mode.quality:
        mirrored = segmenter.predict(np.ascontiguousarray(rgb[:, ::-1]))[:, ::-1]
        doubt = 1.0 - np.abs(2.0 * saliency - 1.0)
        saliency = saliency + MIRROR_WEIGHT * doubt * (mirrored - saliency)
    return saliency


def steepen(alpha: np.ndarray, factor: float) -> np.ndarray:
    """Stretch alpha about 0.5: the same edge, 1/factor as wide; the 0.5 contour stays put."""
    out = (alpha - 0.5) * factor + 0.5
    return np.clip(out, 0.0, 1.0, out=out)


def refine(rgb: np.ndarray, saliency: np.ndarray, mode: Mode) -> np.ndarray:
    """Scale the model's map to the image and refine it as the mode says. Returns float32 alpha."""
    height, width = rgb.shape[:2]
    alpha = resize(np.asarray(saliency, dtype=np.float32), (width, height))
    if mode is Mode.fast:
        return alpha
    side = max(height, width)
    # Radius ~1.7% of the image: wide enough to span the blur of a 320-px map upscaled, narrow
    # enough not to leak across neighbouring objects. eps 1e-4 lets weak photo edges count.
    snapped = guided_filter(rgb, alpha, radius=max(4, side // 60), eps=1e-4, work_side=640)
    alpha = REFINE_MIX * snapped + (1.0 - REFINE_MIX) * alpha
    if mode is Mode.quality:
        fine = guided_filter(rgb, alpha, radius=max(2, side // 200), eps=1e-4, work_side=1280)
        # Only the soft band gets the fine pass: flat interiors stay exactly as they were. A
        # radius of 0.5% recovered more of GT01 than 0.25% (SAD in the unknown region 1.19/1.25).
        band = _edge_band(alpha)
        alpha = np.where(band, fine, alpha)
    return steepen(alpha, EDGE_CONTRAST)


def finish_edges(alpha: np.ndarray, smooth: bool) -> np.ndarray:
    """Smooth: keep the anti-aliased soft edge, with near-0/near-1 haze snapped to clean values.
    Not smooth: the raw hard mask, each pixel fully in or fully out."""
    if not smooth:
        return (alpha >= 0.5).astype(np.float32)
    out = np.clip((alpha - 0.02) * (1.0 / 0.96), 0.0, 1.0)
    return out.astype(np.float32, copy=False)


def compute_alpha(segmenter: Segmenter, rgb: np.ndarray, mode: Mode, smooth: bool) -> np.ndarray:
    """The whole matting pipeline for one image: float32 alpha in [0, 1] at the image's size."""
    return finish_edges(refine(rgb, coarse_map(segmenter, rgb, mode), mode), smooth)


def estimate_foreground(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Foreground colours with the background's colour bled out of the soft edge.

    Blur-fusion (Forte & Pitie, "Approximate Fast Foreground Colour Estimation", ICIP 2021): two
    passes of local means of foreground and background, a wide one then a fine one.
    """
    image = rgb.astype(np.float32) * (1.0 / 255.0)
    a = alpha[:, :, None]
    fg, bg = image, image
    side = max(alpha.shape)
    for radius in (max(8, side // 25), max(3, side // 300)):
        blurred_a = box(a, radius)
        blurred_f = box(fg * a, radius) / (blurred_a + 1e-5)
        blurred_b = box(bg * (1 - a), radius) / ((1 - blurred_a) + 1e-5)
        fg = np.clip(blurred_f + a * (image - a * blurred_f - (1 - a) * blurred_b), 0.0, 1.0)
        bg = blurred_b
    return (fg * 255.0 + 0.5).astype(np.uint8)


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
    # The surface around each pixel: brightness and colour of background pixels only.
    weight = box(background, radius) + 1e-5
    bg_lum = box(lum * background, radius) / weight
    ratio = lum / (bg_lum + 1e-3)
    darkness = np.clip(1.0 - ratio, 0.0, 1.0)
    chroma = image / (image.sum(axis=2, keepdims=True) + 1.0)
    bg_chroma = box(chroma * background[:, :, None], radius) / weight[:, :, None]
    same_colour = np.clip(1.0 - np.abs(chroma - bg_chroma).sum(axis=2) / 0.45, 0.0, 1.0)
    not_black = np.clip((ratio - 0.03) / 0.07, 0.0, 1.0)
    # Shadows fall next to the subject: weight by how much subject lies within a wide window.
    near = np.clip(box(alpha, max(6, side // 20)) * 4.0, 0.0, 1.0)
    shadow = darkness * same_colour * not_black * near * background
    shadow = np.where(shadow > 0.08, np.minimum(shadow * 1.5, 0.85), 0.0)
    return box(shadow.astype(np.float32), 2)
