"""Quality mode's matting stage: the Laplacian is Levin's, soft edges come back from colour,
holes the model saw stay open, and the cost does not grow with the photo."""

from __future__ import annotations

import tracemalloc
from io import BytesIO

import numpy as np
import pytest
from PIL import Image

from bgremove.backends.local import LocalSession
from bgremove.imaging import matting, multiscale
from bgremove.options import Mode, OutputFormat, RemovalOptions


@pytest.fixture(scope="module")
def backend() -> LocalSession:
    return LocalSession()


def alphas(backend: LocalSession, rgb: np.ndarray) -> dict[Mode, np.ndarray]:
    """The alpha of the PNG each mode writes for `rgb`, in [0, 1]."""
    buffer = BytesIO()
    Image.fromarray(rgb).save(buffer, "PNG")
    out = {}
    for mode in Mode:
        options = RemovalOptions(mode=mode, output_format=OutputFormat.png)
        png = backend.process(buffer.getvalue(), options).data
        out[mode] = np.asarray(Image.open(BytesIO(png)))[:, :, 3] / 255.0
    return out


def textured_background(height: int, width: int, seed: int) -> np.ndarray:
    noise = np.random.default_rng(seed).random((height // 16 + 1, width // 16 + 1, 3))
    smooth = Image.fromarray((noise * 255).astype(np.uint8)).resize((width, height),
                                                                   Image.Resampling.BICUBIC)
    return np.asarray(smooth, dtype=np.float32) * 0.5 + 60


def over(fg: np.ndarray, bg: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    a = alpha[:, :, None]
    return np.clip(fg * a + bg * (1 - a) + 0.5, 0, 255).astype(np.uint8)


def levin_laplacian(image: np.ndarray, eps: float) -> np.ndarray:
    """Levin et al.'s matting Laplacian built entry by entry, 3x3 windows inside the image."""
    height, width = image.shape[:2]
    n = height * width
    laplacian = np.zeros((n, n))
    for y in range(height):
        for x in range(width):
            ys = range(max(0, y - 1), min(height, y + 2))
            xs = range(max(0, x - 1), min(width, x + 2))
            idx = [r * width + c for r in ys for c in xs]
            colours = np.array([image[r, c] for r in ys for c in xs], dtype=np.float64)
            mean = colours.mean(axis=0)
            cov = np.cov(colours.T, bias=True) + eps * np.eye(3)
            d = colours - mean
            block = np.eye(len(idx)) - (1 + d @ np.linalg.inv(cov) @ d.T) / len(idx)
            laplacian[np.ix_(idx, idx)] += block
    return laplacian


def test_the_laplacian_is_levins_without_building_it():
    rng = np.random.default_rng(0)
    image = rng.random((6, 7, 3)).astype(np.float32)
    p = rng.random((6, 7)).astype(np.float32)
    expected = (levin_laplacian(image, 1e-3) @ p.ravel()).reshape(6, 7)
    got = matting.MattingLaplacian(image, eps=1e-3) @ p
    np.testing.assert_allclose(got, expected, rtol=2e-3, atol=2e-3)


def test_a_blend_of_two_colours_is_solved_exactly():
    # Where the photo is a blend of one subject colour and one background colour, alpha is a
    # linear function of colour: the solve must find it from the two known ends alone.
    height, width = 20, 60
    truth = np.tile(np.clip((np.arange(width) - 15) / 30, 0, 1), (height, 1)).astype(np.float32)
    fg, bg = np.array([0.9, 0.3, 0.2]), np.array([0.1, 0.5, 0.8])
    image = (truth[:, :, None] * fg + (1 - truth[:, :, None]) * bg).astype(np.float32)
    unknown = (truth > 0) & (truth < 1)
    prior = np.where(unknown, 0.5, truth).astype(np.float32)
    solved = matting.solve(matting.MattingLaplacian(image), prior, unknown, 1e-6)
    assert np.abs(solved - truth)[unknown].max() < 0.02


def test_quality_finds_a_blurred_edge_in_the_photo_that_fast_smooths_over(backend):
    # A disc whose edge is blurred over 12 px, over a textured background: the soft pixels'
    # error (what hair and fluff are made of) must fall well below fast's.
    height, width = 600, 800
    yy, xx = np.mgrid[:height, :width]
    truth = np.clip((0.3 * height - np.hypot(yy - height / 2, xx - width / 2)) / 12 + 0.5, 0, 1)
    rgb = over(np.array([220.0, 60.0, 40.0]), textured_background(height, width, 0), truth)
    soft = (truth > 0.02) & (truth < 0.98)
    got = alphas(backend, rgb)
    error = {mode: np.abs(a - truth)[soft].sum() for mode, a in got.items()}
    assert error[Mode.quality] < 0.75 * error[Mode.fast]  # measured: 0.49x
    assert np.abs(got[Mode.quality] - truth).sum() < np.abs(got[Mode.fast] - truth).sum()


def test_holes_the_320_px_view_saw_are_not_filled_by_the_other_views():
    # The square view sees a ring; the mirrored and fine views see a filled disc: the fused map
    # keeps the hole at the square's value.
    side = 320
    yy, xx = np.mgrid[:side, :side]
    r = np.hypot(yy - side / 2, xx - side / 2)
    ring = ((r < 120) & (r > 50)).astype(np.float32)
    disc = (r < 120).astype(np.float32)

    class Views:
        any_size, side = True, 320

        def prepare(self, rgb, size=None):
            return (rgb, size)

        def run(self, batch):
            rgb, size = batch
            if size is not None:  # the fine view, at the photo's proportions
                return np.asarray(Image.fromarray(disc).resize(size))[None]
            return (ring if rgb[0, 0, 0] == 0 else disc)[None]  # the square, or its mirror

    rgb = np.zeros((side, side, 3), dtype=np.uint8)  # the unmirrored photo: rgb[0, 0, 0] == 0
    rgb[:, side // 2:] = 1  # its mirror image starts with 1
    fused = multiscale.quality_alpha(Views(), rgb)
    hole = r < 40
    assert fused[hole].max() <= 0.01
    assert fused[(r > 60) & (r < 110)].min() == 1.0


def mesh_holes(backend: LocalSession) -> dict[str, float]:
    """A dark sieve on a plain background: the mean alpha each mode writes in its holes (and,
    as quality, on its bars: key "solid")."""
    height, width, cell, bar = 600, 800, 48, 14
    yy, xx = np.mgrid[:height, :width]
    r = np.hypot(yy - height / 2, xx - width / 2)
    grid = ((yy % cell) < bar) | ((xx % cell) < bar)
    truth = (((r < 240) & grid) | ((r > 226) & (r < 240))).astype(np.float32)
    rgb = over(np.array([40.0, 40.0, 45.0]), np.full((height, width, 3), (235.0, 230.0, 220.0)),
               truth)
    got = alphas(backend, rgb)
    holes = (truth == 0) & (r < 210)
    return {**{m.value: float(got[m][holes].mean()) for m in Mode},
            "solid": float(got[Mode.quality][truth == 1].mean())}


@pytest.mark.parametrize("precision", [
    "fp32",
    # Issue 34, item 4, open: the int8 build (what --precision auto runs on CPUs with VNNI or
    # AMX) sees the sieve's holes a little fuller in its 320-px square (0.32 against fp32's
    # 0.29), so quality's hole rule keeps fewer of them open: quality 0.345 against fast 0.317.
    # Calibrating on quality's fine view too brings that to 0.322 against 0.299 (not shipped:
    # BENCHMARKS.md "precision"). Strict: when int8 passes, this marker must go.
    pytest.param("int8", marks=pytest.mark.xfail(strict=True, reason="issue 34 item 4: int8 "
                                                 "fills a fine mesh's holes in quality mode")),
])
def test_a_mesh_stays_open_in_quality_mode(precision):
    # A dark sieve on a plain background: its holes may be no more filled in than fast mode's.
    with LocalSession(precision=precision) as backend:
        holes = mesh_holes(backend)
    assert holes["quality"] <= holes["fast"] + 0.02
    assert holes["solid"] > 0.95


def test_the_band_is_solved_at_a_fixed_size_whatever_the_photo(monkeypatch):
    built = []
    real = matting.MattingLaplacian

    def spy(image, *args, **kwargs):
        built.append(image.shape[:2])
        return real(image, *args, **kwargs)

    monkeypatch.setattr(matting, "MattingLaplacian", spy)
    height, width = 3000, 4000
    yy, xx = np.mgrid[:height, :width]
    truth = np.clip((1000 - np.hypot(yy - 1500, xx - 2000)) / 40 + 0.5, 0, 1).astype(np.float32)
    rgb = over(np.array([200.0, 180.0, 60.0]), textured_background(height, width, 1), truth)
    hard = (truth >= 0.5).astype(np.float32)
    tracemalloc.start()
    try:
        out = matting.refine(rgb, hard)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert built and max(max(shape) for shape in built) <= matting.WORK_SIDE
    # 12 megapixels: the image itself is 36 MB, its float alpha 48 MB; the band's work stays
    # a few times that (measured 250 MB), never a multiple of megapixels x iterations.
    assert peak < 500 * 2**20
    soft = (truth > 0.02) & (truth < 0.98)
    assert np.abs(out - truth)[soft].mean() < np.abs(hard - truth)[soft].mean()


def test_enclosed_background_is_what_the_border_cannot_reach():
    background = np.ones((9, 12), dtype=bool)
    background[1:8, 1:6] = False  # a closed square with a hole at its centre
    background[4, 3] = True
    background[1:8, 7:11] = False  # and a "C" open to the right border
    background[3:6, 8:12] = True
    holes = multiscale.enclosed(background)
    assert holes[4, 3] and holes.sum() == 1
