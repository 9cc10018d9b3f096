"""Quality mode's soft edges: alpha estimated from the photo's colours where the model is unsure.

The model says where the subject is; it cannot say how much background shows through hair,
fluff or a mesh: scaled up from 320 px its edge is a smooth ramp, and the fused views make it
harder still. Closed-form matting (Levin, Lischinski & Weiss, PAMI 2008) can: inside each small
window alpha is a linear function of the colour, so one solve spreads what is known (sure
subject, sure background) across the unknown band along the photo's own colour lines.

Here it runs:
- in a band (a trimap) cut from the fused map: the pixels between its thresholds, widened on the
  subject's side where the photo has fine texture (hair, fur, twigs: what the model calls solid
  although background shows through), at widths that are fractions of the image;
- at a small, fixed working size (WORK_SIDE): the solve costs the same for every photo, and a
  3-pixel window there spans a wide stretch of a large photo, which measured better than solving
  at full size (propagation across the band is what matting needs; the detail comes back below);
- with the model's map as a weak prior, stronger where the local colours of subject and
  background overlap (camouflage: a cheetah on dry grass), where colour cannot tell them apart;
- matrix-free: the matting Laplacian is never built (He, Sun & Tang, CVPR 2010: L·p is a
  guided-filter pass), solved by conjugate gradients in numpy, no scipy or numba;
- back at full size through the same linear model (the "fast guided filter" upsampling: each
  window's colour-to-alpha coefficients are interpolated and applied to the full-resolution
  colours), on the band's pixels only, so a strand thinner than a working pixel comes back.

Every constant was chosen by cross-validation (scripts/tune_matting.py) over 21 real soft
mattes (alphamatting.com's training set) and sod-dev's salient-object folds; the held-out
numbers and the methods that lost are in BENCHMARKS.md ("matting").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from bgremove.imaging.filters import box, resize, sample

WORK_SIDE = 250  # the solve's long side, in pixels
TEXTURE_SIDE = 800  # fine texture is measured at this size (or the photo's, if smaller)
SURE_FG = 0.9  # the fused map's thresholds for sure subject / sure background
SURE_BG = 0.1
BAND = 0.01  # the band's half-width around the edge, as a fraction of the long side
BAND_TEXTURED = 0.04  # on the subject's side where the photo has fine texture
BAND_BACKGROUND = 0.005  # on the background's side
TEXTURE = 0.01  # mean local detail (grey levels / 255) above which a region is "fine texture"
SEPARATION = 1.0  # colour separation (Fisher ratio) at which colour alone is trusted
SEPARATION_RADIUS = 0.1  # of the working side: how far the local colour models reach
PRIOR_WEIGHT = 0.01  # the model's say where colour separates subject and background ...
PRIOR_WEIGHT_OVERLAP = 1.0  # ... and where it does not
EPSILON = 1e-5  # the matting Laplacian's regulariser (colour variance, per channel)
ITERATIONS = 200
TOLERANCE = 1e-3

_PAIRS = ((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2))


def window_sum(x: np.ndarray) -> np.ndarray:
    """Sum over each pixel's 3x3 window, clipped at the image's border, for (..., H, W) arrays.

    Clipped, not padded by repetition: then every window's term in the Laplacian is a symmetric
    matrix, which conjugate gradients needs."""
    y = x.copy()
    y[..., 1:, :] += x[..., :-1, :]
    y[..., :-1, :] += x[..., 1:, :]
    z = y.copy()
    z[..., :, 1:] += y[..., :, :-1]
    z[..., :, :-1] += y[..., :, 1:]
    return z


class MattingLaplacian:
    """The closed-form matting Laplacian of an image, applied without building it.

    For a map p, each 3x3 window k fits p ≈ a_k·I + b_k (ridge regression on the colours I, a
    guided filter's coefficients); then (L p)_i = n_i p_i - Σ_{k ∋ i} (a_k·I_i + b_k), with n_i
    the number of windows holding pixel i. Channel-first float32 arrays throughout.
    """

    def __init__(self, image: np.ndarray, eps: float | None = None):
        colours = np.ascontiguousarray(np.moveaxis(image.astype(np.float32), -1, 0))
        self.colours = colours
        self.count = window_sum(np.ones(colours.shape[1:], dtype=np.float32))
        self.inv_count = 1.0 / self.count
        self.mean = window_sum(colours) * self.inv_count
        products = np.stack([colours[i] * colours[j] for i, j in _PAIRS])
        cov = window_sum(products) * self.inv_count
        for k, (i, j) in enumerate(_PAIRS):
            cov[k] -= self.mean[i] * self.mean[j]
            if i == j:
                cov[k] += EPSILON if eps is None else eps
        # Each window's 3x3 (covariance + eps) inverted once, by cofactors (in float64: they
        # subtract products of small numbers).
        s00, s01, s02, s11, s12, s22 = cov.astype(np.float64)
        cof = np.stack([s11 * s22 - s12 * s12, s02 * s12 - s01 * s22, s01 * s12 - s02 * s11,
                        s00 * s22 - s02 * s02, s01 * s02 - s00 * s12, s00 * s11 - s01 * s01])
        det = s00 * cof[0] + s01 * cof[1] + s02 * cof[2]
        self.inverse = (cof / det).astype(np.float32)

    def coefficients(self, p: np.ndarray) -> np.ndarray:
        """Each window's (a_r, a_g, a_b, b) fitting p from the colours: 4 x H x W."""
        stack = np.empty((4,) + p.shape, dtype=np.float32)
        stack[0] = p
        np.multiply(self.colours, p, out=stack[1:])
        means = window_sum(stack)
        means *= self.inv_count
        mean_p = means[0]
        v = means[1:] - self.mean * mean_p
        m00, m01, m02, m11, m12, m22 = self.inverse
        out = np.empty_like(stack)
        out[0] = m00 * v[0] + m01 * v[1] + m02 * v[2]
        out[1] = m01 * v[0] + m11 * v[1] + m12 * v[2]
        out[2] = m02 * v[0] + m12 * v[1] + m22 * v[2]
        out[3] = mean_p - (out[0] * self.mean[0] + out[1] * self.mean[1]
                           + out[2] * self.mean[2])
        return out

    def __matmul__(self, p: np.ndarray) -> np.ndarray:
        sums = window_sum(self.coefficients(p))
        c = self.colours
        return self.count * p - (sums[0] * c[0] + sums[1] * c[1] + sums[2] * c[2] + sums[3])


def solve(laplacian: MattingLaplacian, prior: np.ndarray, unknown: np.ndarray,
          weight: np.ndarray | float) -> np.ndarray:
    """Alpha minimising αᵀLα + Σ weight·(α - prior)² with α = prior outside `unknown`.

    Conjugate gradients on the unknown pixels, Jacobi-preconditioned (L's diagonal is close to
    8/9 of the window count), started from the prior: a few dozen iterations at WORK_SIDE."""
    prior = prior.astype(np.float32)
    mask = unknown.astype(np.float32)
    known = prior * (1.0 - mask)
    weight = np.asarray(weight, dtype=np.float32)

    def operator(v: np.ndarray) -> np.ndarray:
        return (laplacian @ v + weight * v) * mask

    rhs = (weight * prior - laplacian @ known) * mask
    x = prior * mask
    r = rhs - operator(x)
    precondition = 1.0 / (laplacian.count * (8.0 / 9.0) + weight)
    z = r * precondition
    p = z.copy()
    rz = float(np.vdot(r, z))
    stop = TOLERANCE * (float(np.sqrt(np.vdot(rhs, rhs))) + 1e-12)
    for _ in range(ITERATIONS):
        ap = operator(p)
        step = rz / max(float(np.vdot(p, ap)), 1e-30)
        x += step * p
        r -= step * ap
        if float(np.sqrt(np.vdot(r, r))) < stop:
            break
        z = r * precondition
        rz, previous = float(np.vdot(r, z)), rz
        p = z + (rz / previous) * p
    return x + known


def erode(mask: np.ndarray, radius: int) -> np.ndarray:
    """Pixels whose whole (2r+1)-square lies in the mask."""
    return box(mask.astype(np.float32), radius) > 0.999


def fine_texture(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Mean local detail of the photo's grey levels (|pixel - its 3x3 mean|, averaged over a
    1%-of-the-side window), measured at TEXTURE_SIDE so that a threshold means the same on every
    photo size, returned at `size`."""
    height, width = rgb.shape[:2]
    scale = min(1.0, TEXTURE_SIDE / max(height, width))
    grey = Image.fromarray(rgb).convert("L")
    if scale < 1.0:
        grey = grey.resize((max(1, round(width * scale)), max(1, round(height * scale))),
                           Image.Resampling.BILINEAR, reducing_gap=2.0)
    y = np.asarray(grey, dtype=np.float32) * (1.0 / 255.0)
    return resize(box(np.abs(y - box(y, 1)), max(2, max(y.shape) // 100)), size)


def separation(image: np.ndarray, fg: np.ndarray, bg: np.ndarray) -> np.ndarray:
    """How well colour tells subject from background around each pixel, in [0, 1]: the Fisher
    ratio of the local colour models of the sure subject and sure background (squared distance of
    their means over the sum of their variances), 1 at SEPARATION; 0 where either is absent."""
    radius = max(2, round(max(image.shape[:2]) * SEPARATION_RADIUS))
    f, b = fg.astype(np.float32)[:, :, None], bg.astype(np.float32)[:, :, None]
    means = box(np.concatenate([f, image * f, image * image * f,
                                b, image * b, image * image * b], axis=2), radius)
    nf, nb = means[:, :, :1] + 1e-6, means[:, :, 7:8] + 1e-6
    mean_f, mean_b = means[:, :, 1:4] / nf, means[:, :, 8:11] / nb
    var_f = (means[:, :, 4:7] / nf - mean_f * mean_f).sum(axis=2)
    var_b = (means[:, :, 11:14] / nb - mean_b * mean_b).sum(axis=2)
    fisher = ((mean_f - mean_b) ** 2).sum(axis=2) / (var_f + var_b + 1e-3)
    present = (means[:, :, 0] > 0.02) & (means[:, :, 7] > 0.02)
    return np.where(present, np.clip(fisher / SEPARATION, 0.0, 1.0), 0.0)


@dataclass
class Trimap:
    """The band to solve, at the working size: sure subject, sure background, the rest unknown;
    `alpha` is the fused map there and `image` the photo, in [0, 1]."""

    image: np.ndarray
    alpha: np.ndarray
    fg: np.ndarray
    bg: np.ndarray

    @property
    def unknown(self) -> np.ndarray:
        return ~(self.fg | self.bg)

    @property
    def size(self) -> tuple[int, int]:
        return self.alpha.shape[1], self.alpha.shape[0]


def trimap(rgb: np.ndarray, alpha: np.ndarray) -> Trimap:
    """Where to doubt the fused map: between its thresholds, within BAND of the edge, and deeper
    on the subject's side where the photo has fine texture."""
    height, width = alpha.shape
    scale = min(1.0, WORK_SIDE / max(height, width))
    size = (max(8, round(width * scale)), max(8, round(height * scale)))
    small = resize(alpha, size)
    side = max(size)
    sure_fg = small >= SURE_FG
    fg = erode(sure_fg, max(1, round(side * BAND)))
    textured = fine_texture(rgb, size) >= TEXTURE
    fg &= erode(sure_fg, max(2, round(side * BAND_TEXTURED))) | ~textured
    bg = erode(small <= SURE_BG, max(1, round(side * BAND_BACKGROUND)))
    image = np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BILINEAR,
                                                   reducing_gap=2.0), dtype=np.float32)
    image *= 1.0 / 255.0
    return Trimap(image, small, fg, bg)


def solve_band(band: Trimap) -> tuple[MattingLaplacian, np.ndarray]:
    """The band's alpha at the working size (and the Laplacian it was solved with)."""
    prior = np.where(band.fg, 1.0, np.where(band.bg, 0.0, band.alpha)).astype(np.float32)
    weight = PRIOR_WEIGHT + (PRIOR_WEIGHT_OVERLAP - PRIOR_WEIGHT) * (
        1.0 - separation(band.image, band.fg, band.bg))
    laplacian = MattingLaplacian(band.image)
    return laplacian, np.clip(solve(laplacian, prior, band.unknown, weight), 0.0, 1.0)


def upsample(laplacian: MattingLaplacian, solved: np.ndarray, band: Trimap, rgb: np.ndarray,
             alpha: np.ndarray) -> np.ndarray:
    """`alpha` with the band replaced by `solved`, brought to full size: the solved alpha's
    window coefficients, averaged per pixel as a guided filter's are, interpolated and applied
    to the full-size colours, on the band's pixels only."""
    height, width = alpha.shape
    size = band.size
    coefficients = window_sum(laplacian.coefficients(solved)) * laplacian.inv_count
    coefficients = np.ascontiguousarray(np.moveaxis(coefficients, 0, -1))
    inside = resize(band.unknown.astype(np.float32), (width, height))
    rows, cols = np.nonzero(inside > 0.0)
    if size != (width, height):
        a = sample(coefficients, (rows + 0.5) * (size[1] / height) - 0.5,
                   (cols + 0.5) * (size[0] / width) - 0.5)
    else:
        a = coefficients[rows, cols]
    colour = rgb[rows, cols].astype(np.float32) * (1.0 / 255.0)
    matted = np.clip((a[:, :3] * colour).sum(axis=1) + a[:, 3], 0.0, 1.0)
    u = inside[rows, cols]  # the band's edge, blended into the fused map over a working pixel
    out = alpha.copy()
    out[rows, cols] = u * matted + (1.0 - u) * alpha[rows, cols]
    return out


def refine(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """`alpha` (the fused map at the photo's size, float32 in [0, 1]) with its uncertain band
    re-estimated from the photo's colours."""
    band = trimap(rgb, alpha)
    if not band.unknown.any():
        return alpha
    laplacian, solved = solve_band(band)
    return upsample(laplacian, solved, band, rgb, alpha)
